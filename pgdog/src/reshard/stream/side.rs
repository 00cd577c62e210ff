//! Copying a table beside the stream (`RESYNC_TABLE`, a column added whose existing values only a copy brings,
//! a table new to the publication) while the other tables keep streaming. The table is first marked unfinished on
//! every shard (`drain_pending`); from then on its changes wait here, routed per shard but not
//! sent. The copy starts once every batch that still had changes of the table is committed
//! (the copy empties the table first), and reads a fresh snapshot. Once it is in, the waiting
//! changes committed at or after the snapshot's position go to each shard in one transaction
//! that also clears the mark, before any later change of the table. A session that ends
//! before that (crash, error, pause) leaves the mark, and the next session copies the table
//! again from scratch while it waits.

use tokio::task::JoinHandle;

use super::route::{Out, ShardSql};
use super::wal::Lsn;
use super::StreamError;
use crate::reshard::publication::TableRef;

/// Changes held at most (bytes of SQL over every shard) before the stream gives up copying
/// beside and copies the table the slow way (its session ends while the copy runs).
pub const LIMIT: usize = 256 * 1024 * 1024;

/// The copy itself: `Ok` once the rows are in and verified.
pub type CopyTask = JoinHandle<Result<(), StreamError>>;

/// One copy beside the stream.
pub struct SideCopy {
    /// The tables copied.
    pub tables: Vec<TableRef>,
    /// Whether they are emptied first (they have rows on the shards), or new to the move.
    pub clean: bool,
    /// The copy may start once this batch is committed on every shard (`None`: at once).
    pub after_batch: Option<u64>,
    /// The copy, once started and until it ends.
    task: Option<CopyTask>,
    /// Whether it started.
    started: bool,
    /// Whether it ended well (the rows are in).
    copied: bool,
    /// The tables' changes since, per shard.
    buffer: Vec<ShardSql>,
    /// Where each source transaction's changes start in `buffer`: its commit LSN and the
    /// length of every shard's SQL before it.
    marks: Vec<(Lsn, Vec<usize>)>,
}

impl SideCopy {
    /// A copy of `tables` for `shards` shards; `generation` keeps its prepared statements'
    /// names apart from the stream's and from earlier copies' of the session.
    pub fn new(
        tables: Vec<TableRef>,
        clean: bool,
        shards: usize,
        generation: usize,
        after_batch: Option<u64>,
    ) -> SideCopy {
        SideCopy {
            tables,
            clean,
            after_batch,
            task: None,
            started: false,
            copied: false,
            buffer: (0..shards)
                .map(|_| ShardSql::named(&format!("pgdog_side{generation}_")))
                .collect(),
            marks: Vec::new(),
        }
    }

    /// The tables, for messages.
    pub fn names(&self) -> String {
        self.tables
            .iter()
            .map(TableRef::qualified)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether the copy started.
    pub fn started(&self) -> bool {
        self.started
    }

    /// The copy started.
    pub fn start(&mut self, task: CopyTask) {
        self.task = Some(task);
        self.started = true;
    }

    /// Whether the copy ended well: what waited can go.
    pub fn copied(&self) -> bool {
        self.copied
    }

    /// Takes the copy's end if it ended: an error when it failed.
    pub async fn finished(&mut self) -> Result<(), StreamError> {
        if !self.task.as_ref().is_some_and(JoinHandle::is_finished) {
            return Ok(());
        }
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match task.await {
            Ok(Ok(())) => {
                self.copied = true;
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(StreamError::Protocol(format!(
                "the copy of {} ended: {e}",
                self.names()
            ))),
        }
    }

    /// Whether DDL `sql` changes one of the copied tables (by name: an unqualified name
    /// matches any schema), or cannot be read. Creating one does not count: the copy creates
    /// it where missing, and either finds the other's work done.
    pub fn named_by(&self, sql: &str) -> bool {
        let Ok(statements) = pg_query::split_with_parser(sql) else {
            return true;
        };
        statements.iter().any(|statement| {
            if crate::reshard::schema::rewrite::creates_table(statement) {
                return false;
            }
            crate::reshard::schema::rewrite::target_of(statement).is_some_and(|(schema, name)| {
                self.tables
                    .iter()
                    .any(|t| t.name == name && (schema.is_empty() || t.schema == schema))
            })
        })
    }

    /// Whether `table` is one of the copied tables.
    pub fn has(&self, table: &TableRef) -> bool {
        self.tables.iter().any(|t| t.oid == table.oid)
    }

    /// Where a change of the transaction committing at `commit_lsn` goes.
    pub fn out<'a>(&'a mut self, commit_lsn: Lsn, active: &'a [bool]) -> Out<'a> {
        if self.marks.last().map(|(lsn, _)| *lsn) != Some(commit_lsn) {
            for shard in &mut self.buffer {
                shard.begin_transaction();
            }
            let at = self.buffer.iter().map(|s| s.sql.len()).collect();
            self.marks.push((commit_lsn, at));
        }
        Out {
            shards: &mut self.buffer,
            active,
        }
    }

    /// Bytes of SQL held.
    pub fn bytes(&self) -> usize {
        self.buffer.iter().map(|s| s.sql.len()).sum()
    }

    /// Each shard's PREPAREs and held statements of the transactions committed at or after
    /// `watermark` (the earlier ones are in the copy); nothing is held afterwards.
    pub fn drain(&mut self, watermark: Lsn) -> Vec<(Vec<String>, String)> {
        let cut = self
            .marks
            .iter()
            .find(|(lsn, _)| *lsn >= watermark)
            .map(|(_, at)| at.clone());
        self.marks.clear();
        self.buffer
            .iter_mut()
            .enumerate()
            .map(|(shard, sql)| {
                // The buffer writes every change as it comes (no net): offsets hold.
                let (prepares, text) = sql.take();
                let kept = match &cut {
                    Some(at) => text
                        .get(at[shard].min(text.len())..)
                        .unwrap_or_default()
                        .trim_start_matches(";\n")
                        .to_string(),
                    None => String::new(),
                };
                (prepares, kept)
            })
            .collect()
    }
}

impl Drop for SideCopy {
    /// A copy still running when the session ends is stopped: its tables stay unfinished,
    /// and the next session copies them again.
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(oid: u32) -> TableRef {
        TableRef {
            schema: "public".into(),
            name: format!("t{oid}"),
            oid,
        }
    }

    #[test]
    fn keeps_the_transactions_at_or_after_the_watermark() {
        let mut side = SideCopy::new(vec![table(7)], true, 2, 1, None);
        assert!(side.has(&table(7)));
        assert!(!side.has(&table(8)));
        let active = [true, true];
        for (lsn, text) in [(10u64, "a"), (20, "b"), (30, "c")] {
            let out = side.out(Lsn(lsn), &active);
            out.shards[0].push_statement(&format!("-- {text}0"));
            out.shards[1].push_statement(&format!("-- {text}1"));
            // A second change of the same transaction makes no new mark.
            let out = side.out(Lsn(lsn), &active);
            out.shards[0].push_statement(&format!("-- {text}0 again"));
        }
        assert!(side.bytes() > 0);
        let drained = side.drain(Lsn(20));
        assert_eq!(drained[0].1, "-- b0;\n-- b0 again;\n-- c0;\n-- c0 again");
        assert_eq!(drained[1].1, "-- b1;\n-- c1");
        assert_eq!(side.bytes(), 0);
        assert!(side.drain(Lsn(0)).iter().all(|(_, sql)| sql.is_empty()));
    }

    #[test]
    fn ddl_naming_a_copied_table() {
        let side = SideCopy::new(vec![table(7)], true, 1, 1, None);
        assert!(side.named_by("ALTER TABLE t7 ADD COLUMN c int"));
        assert!(side.named_by("CREATE INDEX i ON public.t7 (c)"));
        assert!(side.named_by("CREATE TABLE x (a int); ALTER TABLE t7 DROP COLUMN c"));
        assert!(!side.named_by("ALTER TABLE other.t7 ADD COLUMN c int"));
        assert!(!side.named_by("CREATE INDEX i ON t8 (c)"));
        assert!(!side.named_by("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'"));
        assert!(side.named_by("ALTER TABLE t7 ADD COLUMN ("));
        assert!(!side.named_by("CREATE TABLE public.t7 (id bigint PRIMARY KEY)"));
    }

    #[test]
    fn nothing_at_or_after_the_watermark_drains_nothing() {
        let mut side = SideCopy::new(vec![table(7)], false, 1, 1, None);
        let out = side.out(Lsn(10), &[true]);
        out.shards[0].push_statement("-- a");
        assert_eq!(side.drain(Lsn(11))[0].1, "");
    }
}
