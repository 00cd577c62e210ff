//! Named prepared statements in transaction mode. A client's statement names are private to it,
//! but the server it gets changes every transaction. Every distinct (SQL, parameter types) gets
//! one global name (`__pgdog_N`) and its `Parse` message; each server remembers which global
//! names it has prepared, and pgdog prepares missing ones on demand.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use dashmap::DashMap;

use crate::net::frame::Reader;
use crate::net::messages::Parse;

/// One statement known to pgdog under its global name.
#[derive(Debug)]
pub struct Statement {
    /// The global name used on servers.
    pub name: Arc<str>,
    /// A `Parse` message creating it under that name.
    pub parse: Bytes,
    /// Some server accepted it (ParseComplete): a client's Parse of it outside a transaction can
    /// be answered without a server.
    validated: AtomicBool,
    /// Whether it only reads (may run on a replica), classified on first use.
    read_only: OnceLock<bool>,
}

impl Statement {
    /// Whether a server has accepted this statement.
    pub fn is_validated(&self) -> bool {
        self.validated.load(Ordering::Relaxed)
    }

    /// Records that a server accepted it.
    pub fn set_validated(&self) {
        self.validated.store(true, Ordering::Relaxed);
    }

    /// Whether the statement only reads, by `classify` of its SQL text (asked once).
    pub fn read_only(&self, classify: impl FnOnce(&str) -> bool) -> bool {
        *self
            .read_only
            .get_or_init(|| self.query().is_some_and(classify))
    }

    /// The statement's SQL text, from its `Parse` message.
    pub fn query(&self) -> Option<&str> {
        let mut reader = Reader::new(self.parse.get(5..)?);
        reader.cstr().ok()?;
        reader.cstr().ok()
    }
}

/// Past this many cached statements, those no client uses any more are dropped from the cache.
const CACHE_PRUNE_THRESHOLD: usize = 10_000;

/// SQL text and raw parameter types: what makes two Parses the same statement.
type StatementKey = (Box<str>, Box<[u8]>);

/// The global statement cache, shared by all clients and servers.
#[derive(Default)]
pub struct PreparedStatements {
    by_text: DashMap<StatementKey, Arc<Statement>>,
    next_id: AtomicU64,
}

impl PreparedStatements {
    /// The global statement for a client's Parse, created on first sight.
    pub fn statement(&self, parse: &Parse<'_>) -> Arc<Statement> {
        let key = (
            Box::<str>::from(parse.query),
            Box::<[u8]>::from(parse.param_types),
        );
        if let Some(found) = self.by_text.get(&key) {
            return found.clone();
        }
        if self.by_text.len() >= CACHE_PRUNE_THRESHOLD {
            // Clients hold their statements; an entry only the cache holds is unused.
            self.by_text
                .retain(|_, statement| Arc::strong_count(statement) > 1);
        }
        self.by_text
            .entry(key)
            .or_insert_with(|| {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
                let name: Arc<str> = Arc::from(format!("__pgdog_{id}"));
                Arc::new(Statement {
                    parse: parse.renamed(&name),
                    name,
                    validated: AtomicBool::new(false),
                    read_only: OnceLock::new(),
                })
            })
            .clone()
    }

    /// How many distinct statements are cached.
    pub fn len(&self) -> usize {
        self.by_text.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.by_text.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Frame;

    #[test]
    fn same_text_same_name_different_types_different_name() {
        let cache = PreparedStatements::default();
        let a = Frame::new(b'P', b"s1\0select 1\0\0\0");
        let b = Frame::new(b'P', b"other\0select 1\0\0\0");
        let c = Frame::new(b'P', b"s1\0select 1\0\0\x01\0\0\0\x17");
        let sa = cache.statement(&Parse::decode(&a).unwrap());
        let sb = cache.statement(&Parse::decode(&b).unwrap());
        let sc = cache.statement(&Parse::decode(&c).unwrap());
        assert_eq!(sa.name, sb.name);
        assert_ne!(sa.name, sc.name);
        // The text survives the renaming to the global name.
        assert_eq!(sa.query(), Some("select 1"));
        assert!(sa.read_only(|sql| sql == "select 1"));
        assert_eq!(cache.len(), 2);
        // Unused entries are pruned once the cache is large.
        drop((sa, sb, sc));
        for i in 0..CACHE_PRUNE_THRESHOLD + 1 {
            let body = format!("s\0select {i}\0\0\0");
            let frame = Frame::new(b'P', body.as_bytes());
            drop(cache.statement(&Parse::decode(&frame).unwrap()));
        }
        assert!(cache.len() < CACHE_PRUNE_THRESHOLD);
    }
}

/// Whether a prepared statement exists on a server yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// Parse sent, ParseComplete not yet received.
    Pending,
    /// ParseComplete received.
    Ready,
}

/// The global statements prepared on one server connection, bounded: past `limit`, the least
/// recently used one is evicted (pgdog then closes it on the server).
#[derive(Debug)]
pub struct ServerStatements {
    entries: std::collections::HashMap<Arc<str>, (Prepared, u64)>,
    clock: u64,
    limit: usize,
}

impl ServerStatements {
    /// An empty set holding at most `limit` statements (at least 1).
    pub fn new(limit: usize) -> Self {
        ServerStatements {
            entries: std::collections::HashMap::new(),
            clock: 0,
            limit: limit.max(1),
        }
    }

    /// Whether `name` is prepared (or being prepared); counts as a use.
    pub fn contains(&mut self, name: &str) -> bool {
        self.clock += 1;
        match self.entries.get_mut(name) {
            Some(entry) => {
                entry.1 = self.clock;
                true
            }
            None => false,
        }
    }

    /// Records a Parse sent for `name`. Returns the statement evicted to stay within the limit,
    /// which the caller must close on the server.
    pub fn insert(&mut self, name: Arc<str>) -> Option<Arc<str>> {
        self.clock += 1;
        self.entries
            .insert(name.clone(), (Prepared::Pending, self.clock));
        if self.entries.len() <= self.limit {
            return None;
        }
        let victim = self
            .entries
            .iter()
            .filter(|(n, _)| **n != name)
            .min_by_key(|(_, (_, used))| *used)
            .map(|(n, _)| n.clone())?;
        self.entries.remove(&victim);
        Some(victim)
    }

    /// The server confirmed `name` (ParseComplete). A statement evicted meanwhile stays evicted:
    /// its Close follows the Parse on the wire.
    pub fn set_ready(&mut self, name: &str) {
        if let Some(entry) = self.entries.get_mut(name) {
            entry.0 = Prepared::Ready;
        }
    }

    /// The server skipped pgdog's Close of `name` (after an error): it still has it.
    pub fn restore(&mut self, name: Arc<str>) {
        self.clock += 1;
        self.entries.insert(name, (Prepared::Ready, self.clock));
    }

    /// The Parse for `name` was skipped after an error: it does not exist on the server.
    pub fn forget_pending(&mut self, name: &str) {
        if matches!(self.entries.get(name), Some((Prepared::Pending, _))) {
            self.entries.remove(name);
        }
    }

    /// The server dropped all its statements (DISCARD ALL, DEALLOCATE ALL).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The state of `name`, without counting a use.
    pub fn state(&self, name: &str) -> Option<Prepared> {
        self.entries.get(name).map(|(state, _)| *state)
    }

    /// How many statements are on the server.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod server_statement_tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut s = ServerStatements::new(2);
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "c".into());
        assert_eq!(s.insert(a.clone()), None);
        assert_eq!(s.insert(b.clone()), None);
        assert!(s.contains("a"));
        assert_eq!(s.insert(c.clone()), Some(b.clone()));
        assert!(s.contains("a") && s.contains("c") && !s.contains("b"));
        s.forget_pending("c");
        assert!(!s.contains("c"));
        s.set_ready("a");
        s.forget_pending("a");
        assert_eq!(s.state("a"), Some(Prepared::Ready));
        // Confirmation of an evicted statement does not bring it back.
        s.set_ready("b");
        assert_eq!(s.state("b"), None);
        s.restore(b.clone());
        assert_eq!(s.state("b"), Some(Prepared::Ready));
    }
}
