//! Named prepared statements in transaction mode. A client's statement names are private to it,
//! but the server it gets changes every transaction. Every distinct (SQL, parameter types) gets
//! one global name (`__pgdog_N`) and its `Parse` message; each server remembers which global
//! names it has prepared, and pgdog prepares missing ones on demand.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;

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
}

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
        self.by_text
            .entry(key)
            .or_insert_with(|| {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
                let name: Arc<str> = Arc::from(format!("__pgdog_{id}"));
                Arc::new(Statement {
                    parse: parse.renamed(&name),
                    name,
                    validated: AtomicBool::new(false),
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
        assert_eq!(cache.len(), 2);
    }
}
