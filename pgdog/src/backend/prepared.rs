//! Named prepared statements in transaction mode. A client's statement names are private to it,
//! but the server it gets changes every transaction. Every distinct (SQL, parameter types) gets
//! one global name (`__pgdog_N`) and its `Parse` message; each server remembers which global
//! names it has prepared, and pgdog prepares missing ones on demand.
//!
//! Drivers leave parameter types unspecified, Describe the statement and then encode binary
//! parameters by the types the server described. Once a server described a statement, the types
//! it gave are pinned: every later Parse of the statement declares them, so a server whose schema
//! would infer other types (e.g. `bigint` after a resharding cutover) still accepts the bytes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use dashmap::DashMap;

use crate::net::frame::Reader;
use crate::net::messages::{self, Parse};
use crate::net::Frame;

/// The first OID of user-defined objects (`FirstNormalObjectId`): types below it are built in and
/// have the same OID on every server; types at or above it may differ between servers.
const FIRST_NORMAL_OBJECT_ID: u32 = 16384;

/// One statement known to pgdog under its global name.
#[derive(Debug)]
pub struct Statement {
    /// The global name used on servers.
    pub name: Arc<str>,
    /// The client's `Parse` under that name, with the parameter types the client declared. Send
    /// [`Statement::server_parse`] to servers instead.
    pub parse: Bytes,
    /// The `Parse` declaring the types a server described for the statement, built once.
    pinned: OnceLock<Bytes>,
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

    /// The `Parse` to send to a server that lacks the statement: the one declaring the described
    /// parameter types once a server described them, the client's before that.
    pub fn server_parse(&self) -> &Bytes {
        self.pinned.get().unwrap_or(&self.parse)
    }

    /// Pins the parameter types of a ParameterDescription (`t`) a server returned for a Describe
    /// of this statement. The first description wins; a malformed one is ignored.
    pub fn pin_described(&self, description: &Frame) {
        if self.pinned.get().is_some() {
            return;
        }
        match pinned_parse(&self.parse, description.body()) {
            Ok(parse) => {
                let _ = self.pinned.set(parse);
            }
            Err(e) => tracing::debug!(statement = %self.name, "parameter types not pinned: {e}"),
        }
    }

    /// The statement's SQL text, from its `Parse` message.
    pub fn query(&self) -> Option<&str> {
        let mut reader = Reader::new(self.parse.get(5..)?);
        reader.cstr().ok()?;
        reader.cstr().ok()
    }
}

/// `parse` (a whole Parse message) declaring the parameter types of `description` (a
/// ParameterDescription body) where the client left them unspecified (0). Types the client
/// declared stay; user-defined types (OID >= `FirstNormalObjectId`) stay unspecified, as their OIDs
/// differ between servers. Returns `parse` itself when nothing changes.
fn pinned_parse(parse: &Bytes, description: &[u8]) -> Result<Bytes, crate::net::Error> {
    let frame = Frame {
        tag: b'P',
        bytes: parse.clone(),
    };
    let decoded = Parse::decode(&frame)?;
    let described = described_types(description)?;
    let declared = messages::param_type_oids(decoded.param_types);
    let types = pinned_types(&declared, &described);
    if types == declared {
        return Ok(parse.clone());
    }
    Ok(messages::parse_with_types(
        decoded.name,
        decoded.query,
        &types,
    ))
}

/// The OIDs of a ParameterDescription body (int16 count, int32 OID each), checked.
fn described_types(description: &[u8]) -> Result<Vec<u32>, crate::net::Error> {
    let mut reader = Reader::new(description);
    let count = reader.i16()?;
    if count < 0 || reader.rest().len() != count as usize * 4 {
        return Err(crate::net::Error::Malformed(
            "ParameterDescription types do not match their count",
        ));
    }
    Ok(messages::param_type_oids(description))
}

/// The parameter types to declare: the client's where it gave one, the described built-in type
/// where it did not, unspecified (0) otherwise.
fn pinned_types(declared: &[u32], described: &[u32]) -> Vec<u32> {
    (0..declared.len().max(described.len()))
        .map(|i| match declared.get(i).copied().unwrap_or(0) {
            0 => described
                .get(i)
                .copied()
                .filter(|oid| *oid < FIRST_NORMAL_OBJECT_ID)
                .unwrap_or(0),
            own => own,
        })
        .collect()
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
                    pinned: OnceLock::new(),
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

    fn description(oids: &[u32]) -> Frame {
        let mut body = (oids.len() as i16).to_be_bytes().to_vec();
        for oid in oids {
            body.extend_from_slice(&oid.to_be_bytes());
        }
        Frame::new(b't', &body)
    }

    fn server_types(statement: &Statement) -> Vec<u32> {
        let frame = Frame {
            tag: b'P',
            bytes: statement.server_parse().clone(),
        };
        let parse = Parse::decode(&frame).unwrap();
        assert_eq!(parse.name, &*statement.name);
        assert_eq!(Some(parse.query), statement.query());
        messages::param_type_oids(parse.param_types)
    }

    #[test]
    fn pinned_types_keep_declared_and_skip_user_types() {
        // Built-in types are pinned; user types (enum, domain: OIDs differ per server) are not.
        assert_eq!(
            pinned_types(&[], &[23, 16_384, 20, 16_383]),
            vec![23, 0, 20, 16_383]
        );
        // A type the client declared wins over the described one, even a user type.
        assert_eq!(
            pinned_types(&[20, 0, 90_000], &[23, 25, 90_000]),
            vec![20, 25, 90_000]
        );
        // The client may declare fewer types than there are parameters.
        assert_eq!(
            pinned_types(&[0, 1043], &[23, 1043, 16]),
            vec![23, 1043, 16]
        );
        assert_eq!(pinned_types(&[], &[]), Vec::<u32>::new());
    }

    #[test]
    fn described_statement_is_parsed_with_its_types_once() {
        let cache = PreparedStatements::default();
        let client = Frame::new(
            b'P',
            b"s\0insert into t values ($1, $2, $3)\0\0\x01\0\0\0\x15",
        );
        let statement = cache.statement(&Parse::decode(&client).unwrap());
        // Nobody described it: the client's Parse.
        assert_eq!(server_types(&statement), vec![21]);
        assert_eq!(statement.server_parse(), &statement.parse);
        // A malformed description pins nothing.
        statement.pin_described(&Frame::new(b't', b"\0\x02\0\0\0\x17"));
        assert_eq!(statement.server_parse(), &statement.parse);
        statement.pin_described(&description(&[21, 23, 70_000]));
        assert_eq!(server_types(&statement), vec![21, 23, 0]);
        // The first description wins (a server with another schema does not re-pin it).
        statement.pin_described(&description(&[21, 20, 20]));
        assert_eq!(server_types(&statement), vec![21, 23, 0]);
        // The cache key stays the client's Parse.
        let again = cache.statement(&Parse::decode(&client).unwrap());
        assert!(Arc::ptr_eq(&statement, &again));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn description_adding_nothing_keeps_the_clients_parse() {
        let cache = PreparedStatements::default();
        let client = Frame::new(b'P', b"s\0select $1\0\0\x01\0\0\0\x14");
        let statement = cache.statement(&Parse::decode(&client).unwrap());
        statement.pin_described(&description(&[20]));
        // The same bytes, not a copy.
        assert_eq!(statement.server_parse().as_ptr(), statement.parse.as_ptr());
        let user_type =
            cache.statement(&Parse::decode(&Frame::new(b'P', b"s\0select $1\0\0\0")).unwrap());
        user_type.pin_described(&description(&[40_000]));
        assert_eq!(server_types(&user_type), vec![0]);
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
