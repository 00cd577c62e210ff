//! Operator control of a running stream from the admin database: pause and resume
//! (`PAUSE_REPLICATION` / `RESUME_REPLICATION`; the slot keeps its place meanwhile) and
//! tables to copy again (`RESYNC_TABLE`), picked up by the stream between transactions.

use std::sync::Mutex;

use tokio::sync::watch;

use crate::reshard::publication::TableRef;

/// The requests an operator made to one stream.
#[derive(Debug)]
pub struct StreamControl {
    paused: watch::Sender<bool>,
    resyncs: Mutex<Vec<String>>,
    /// The move's tables, once the stream has read them.
    tables: Mutex<Option<Vec<TableRef>>>,
}

impl Default for StreamControl {
    fn default() -> Self {
        StreamControl {
            paused: watch::channel(false).0,
            resyncs: Mutex::new(Vec::new()),
            tables: Mutex::new(None),
        }
    }
}

impl StreamControl {
    /// Asks the stream to stop applying after its current batch.
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    /// Lets a paused stream continue (also after it paused itself on a schema change it
    /// could not apply).
    pub fn resume(&self) {
        self.paused.send_replace(false);
    }

    /// Whether a pause was asked for.
    pub fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }

    /// Waits until the stream may run (returns at once when it is not paused).
    pub async fn resumed(&self) {
        let mut paused = self.paused.subscribe();
        let _ = paused.wait_for(|paused| !*paused).await;
    }

    /// Asks the stream to copy `table` (`name` or `schema.name`) again.
    pub fn request_resync(&self, table: &str) {
        self.lock().push(table.to_string());
    }

    /// The tables asked to be copied again since the last call.
    pub fn take_resyncs(&self) -> Vec<String> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.resyncs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the move's tables as the stream read them.
    pub fn set_tables(&self, tables: Vec<TableRef>) {
        *self.tables.lock().unwrap_or_else(|e| e.into_inner()) = Some(tables);
    }

    /// Whether `name` (`table` or `schema.table`) is a table of the move; `None` before the
    /// stream has read its tables.
    pub fn has_table(&self, name: &str) -> Option<bool> {
        let tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        Some(tables.as_ref()?.iter().any(|t| t.is_named(name)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_paused_stream_waits_until_resumed() {
        let control = Arc::new(StreamControl::default());
        assert!(!control.is_paused());
        control.resumed().await;
        control.pause();
        assert!(control.is_paused());
        let waiting = tokio::spawn({
            let control = control.clone();
            async move { control.resumed().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        control.resume();
        waiting.await.unwrap();
    }

    #[test]
    fn tables_of_the_move_by_name() {
        let control = StreamControl::default();
        assert_eq!(control.has_table("orders"), None);
        control.set_tables(vec![TableRef {
            schema: "Sales".into(),
            name: "orders".into(),
            oid: 1,
        }]);
        assert_eq!(control.has_table("orders"), Some(true));
        assert_eq!(control.has_table("Sales.orders"), Some(true));
        assert_eq!(control.has_table("public.orders"), Some(false));
        assert_eq!(control.has_table("nope"), Some(false));
    }

    #[test]
    fn resync_requests_are_taken_once() {
        let control = StreamControl::default();
        control.request_resync("orders");
        control.request_resync("public.items");
        assert_eq!(control.take_resyncs(), vec!["orders", "public.items"]);
        assert!(control.take_resyncs().is_empty());
    }
}
