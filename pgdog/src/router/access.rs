//! Read/write classification of SQL text, for sending read-only statements to replicas.
//!
//! [`access`] parses a query string with the PostgreSQL parser and answers [`Access::Read`]
//! only when every statement in it is one a hot standby can run and that has no side effect
//! worth sending to the primary; anything else, including text that does not parse, is
//! [`Access::Write`]. [`AccessCache`] remembers the answer per text for the hot path.
//!
//! Read statements are:
//! - `SELECT` in all its forms (`WITH` whose CTEs are all `SELECT`s, `UNION`/`INTERSECT`/`EXCEPT`,
//!   `VALUES`, `TABLE x`), unless anywhere in it (subqueries and CTEs included) there is a locking
//!   clause (`FOR UPDATE`/`NO KEY UPDATE`/`SHARE`/`KEY SHARE`), an `INTO`, or a call to a function
//!   that writes or needs the primary (sequences, advisory locks, `set_config`,
//!   `pg_notify`, transaction ids, WAL position and switch, replication slots, large objects,
//!   `dblink_exec`);
//! - `SHOW x`;
//! - `EXPLAIN` without `ANALYZE` of a read statement.
//!
//! The checks inside a `SELECT` walk the whole parse tree generically (with the `walk` module,
//! through the `Serialize` implementation pg_query's protobuf types carry), so no expression
//! kind is skipped: a function call is found wherever it sits (select list, `WHERE`, `FROM`,
//! `LIMIT`, `VALUES`, casts, arrays, window clauses, subqueries, CTEs). Functions are matched by
//! the last part of their name, ignoring ASCII case, so `pg_catalog.nextval` counts.
//! User-defined functions that write cannot be told apart from readers by their name and are
//! classified as reads.

use std::ops::ControlFlow;

use pg_query::protobuf::{Node, SelectStmt};
use pg_query::{NodeEnum, ParserOptions};

use super::text_cache::TextCache;
use super::walk::{walk, Path, Visitor};

/// Where a query string may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Every statement only reads and has no side effect: a replica can serve it.
    Read,
    /// Anything else (writes, DDL, transaction control, `SET`, unparseable or empty text):
    /// it goes to the primary.
    Write,
}

/// Classifies `sql` (one or more statements) as [`Access::Read`] or [`Access::Write`].
///
/// Parses the text on every call; use [`AccessCache`] on the hot path.
pub fn access(sql: &str) -> Access {
    // pg_query's own post-processing of a parse result indexes into the tree; a panic there
    // must not take the caller down, and the safe answer is the primary.
    std::panic::catch_unwind(|| classify(sql)).unwrap_or(Access::Write)
}

fn classify(sql: &str) -> Access {
    let Ok(parsed) = pg_query::parse(sql, ParserOptions::DEFAULT) else {
        return Access::Write;
    };
    let stmts = &parsed.protobuf.stmts;
    let read = !stmts.is_empty()
        && stmts.iter().all(|raw| {
            raw.stmt
                .as_deref()
                .and_then(|stmt| stmt.node.as_ref())
                .is_some_and(statement_is_read)
        });
    if read {
        Access::Read
    } else {
        Access::Write
    }
}

/// Whether one top-level statement is a read.
fn statement_is_read(stmt: &NodeEnum) -> bool {
    match stmt {
        NodeEnum::SelectStmt(select) => select_is_read(select),
        NodeEnum::VariableShowStmt(_) => true,
        NodeEnum::ExplainStmt(explain) => {
            !explain.options.iter().any(analyze_on)
                && explain
                    .query
                    .as_deref()
                    .and_then(|query| query.node.as_ref())
                    .is_some_and(statement_is_read)
        }
        _ => false,
    }
}

/// Whether an `EXPLAIN` option turns `ANALYZE` on (`ANALYZE`, `(ANALYZE)`, `(ANALYZE true)`...).
/// Only an explicit false value (`false`, `off`, `no`, `0`) leaves it off.
fn analyze_on(option: &Node) -> bool {
    let Some(NodeEnum::DefElem(option)) = option.node.as_ref() else {
        return false;
    };
    if !option.defname.eq_ignore_ascii_case("analyze") {
        return false;
    }
    let explicitly_false = match option.arg.as_deref().and_then(|arg| arg.node.as_ref()) {
        Some(NodeEnum::Boolean(value)) => !value.boolval,
        Some(NodeEnum::Integer(value)) => value.ival == 0,
        Some(NodeEnum::String(value)) => ["false", "off", "no", "0"]
            .iter()
            .any(|no| value.sval.eq_ignore_ascii_case(no)),
        _ => false,
    };
    !explicitly_false
}

/// Whether a `SELECT` (with everything nested in it) is a read: see the module doc.
fn select_is_read(select: &SelectStmt) -> bool {
    walk(select, &mut WriteFinder::default()).is_continue()
}

/// Exact names (last part, ASCII case ignored) of functions that write, lock, or need the
/// primary.
const WRITING_FUNCTIONS: &[&str] = &[
    "nextval",
    "setval",
    "currval",
    "lastval",
    "set_config",
    "pg_notify",
    "txid_current",
    "txid_current_if_assigned",
    "pg_current_xact_id",
    "pg_current_xact_id_if_assigned",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_drop_replication_slot",
    "dblink_exec",
    "loread",
    "lowrite",
];

/// Name prefixes of function families that do the same: advisory locks, large objects,
/// WAL positions of the primary.
const WRITING_PREFIXES: &[&str] = &["pg_advisory_", "pg_try_advisory_", "lo_", "pg_current_wal_"];

/// Whether a function name (its last part, without schema) names a function that writes,
/// takes a lock, or only works on the primary: the sequence functions, advisory locks,
/// `set_config`, `pg_notify`, the current transaction id, the primary's WAL position and
/// switch, replication slot creation and removal, large objects and `dblink_exec`.
fn writing_function(name: &str) -> bool {
    let name = name.as_bytes();
    let starts = |prefix: &str| {
        name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    };
    let ends = |suffix: &str| {
        name.len() >= suffix.len()
            && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
    };
    WRITING_FUNCTIONS
        .iter()
        .any(|exact| name.eq_ignore_ascii_case(exact.as_bytes()))
        || WRITING_PREFIXES.iter().any(|prefix| starts(prefix))
        || (starts("pg_create_") && ends("_replication_slot"))
}

/// Whether a parse node kind found anywhere inside a `SELECT` makes it a write: a data-modifying
/// statement (in a CTE), a locking clause, or `SELECT ... INTO`.
fn writing_node(name: &str) -> bool {
    (name.ends_with("Stmt") && name != "SelectStmt")
        || name == "LockingClause"
        || name == "IntoClause"
}

/// Looks for what makes a `SELECT` a write while [`walk`] visits its tree: a [`writing_node`]
/// anywhere, or a `FuncCall` whose last name part is a [`writing_function`].
#[derive(Default)]
struct WriteFinder {
    /// Whether the last name part read inside a `FuncCall.funcname` names a writing function.
    writing_part: bool,
}

impl Visitor for WriteFinder {
    fn node(&mut self, name: &'static str) -> ControlFlow<()> {
        stop_if(writing_node(name))
    }

    fn field(&mut self, _path: &Path) -> ControlFlow<()> {
        self.writing_part = false;
        ControlFlow::Continue(())
    }

    fn field_end(&mut self, path: &Path) -> ControlFlow<()> {
        // The name parts come in order, so after the list the flag is the last part's.
        stop_if(path.last() == Some(&("FuncCall", "funcname")) && self.writing_part)
    }

    fn string(&mut self, path: &Path, value: &str) -> ControlFlow<()> {
        // FuncCall.funcname is a list of Node { node: String { sval } }.
        if let [.., ("FuncCall", "funcname"), ("Node", "node"), ("String", "sval")] = path {
            self.writing_part = writing_function(value);
        }
        ControlFlow::Continue(())
    }
}

/// Stops the walk when `found`.
fn stop_if(found: bool) -> ControlFlow<()> {
    if found {
        ControlFlow::Break(())
    } else {
        ControlFlow::Continue(())
    }
}

/// A bounded, thread-safe memo of [`access`] keyed by query text, so the hot path parses each
/// distinct text once (a [`TextCache`]: at most about `capacity` texts, long texts classified
/// but not kept). Unparseable texts are remembered as [`Access::Write`] like any other answer.
#[derive(Debug)]
pub struct AccessCache {
    entries: TextCache<Access>,
}

impl AccessCache {
    /// How many texts [`AccessCache::default`] keeps.
    pub const DEFAULT_CAPACITY: usize = TextCache::<Access>::DEFAULT_CAPACITY;
    /// Longest text (in bytes) that is kept; longer ones are parsed on every call.
    pub const MAX_TEXT_LEN: usize = TextCache::<Access>::MAX_TEXT_LEN;

    /// An empty cache keeping at most `capacity` texts (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: TextCache::new(capacity),
        }
    }

    /// The [`access`] of `sql`, from the cache or parsed (and then remembered).
    pub fn access(&self, sql: &str) -> Access {
        if let Some(hit) = self.entries.get(sql) {
            return hit;
        }
        let answer = access(sql);
        self.entries.insert(sql, answer);
        answer
    }

    /// How many texts are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no text is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets every text.
    pub fn clear(&self) {
        self.entries.clear();
    }
}

impl Default for AccessCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn read(sql: &str) {
        assert_eq!(access(sql), Access::Read, "expected Read: {sql}");
    }

    /// A Write that comes from the rules, not from a parse error.
    #[track_caller]
    fn write(sql: &str) {
        assert!(
            pg_query::parse(sql, ParserOptions::DEFAULT).is_ok(),
            "does not parse: {sql}"
        );
        assert_eq!(access(sql), Access::Write, "expected Write: {sql}");
    }

    /// Text that pg_query rejects or that holds no statement.
    #[track_caller]
    fn unparsed(sql: &str) {
        let statements = pg_query::parse(sql, ParserOptions::DEFAULT)
            .map(|parsed| parsed.protobuf.stmts.len())
            .unwrap_or(0);
        assert_eq!(statements, 0, "parses: {sql}");
        assert_eq!(access(sql), Access::Write, "expected Write: {sql}");
    }

    #[test]
    fn plain_selects_are_reads() {
        read("SELECT 1");
        read("select * from t where id = $1");
        read("SELECT a, count(*) FROM t JOIN u USING (id) GROUP BY a HAVING count(*) > 1 ORDER BY 1 LIMIT 10");
        read("SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE EXISTS (SELECT 1 FROM v))");
        read("SELECT * FROM generate_series(1, 10) g, lateral (SELECT now()) n");
        read("SELECT lower('X'), coalesce(a, b)::text, ARRAY[abs(-1)] FROM t");
        read("SELECT 1;");
        read("SELECT 1; SELECT 2");
        read("  -- comment\nSELECT /* hi */ 1");
    }

    #[test]
    fn set_operations_values_and_table_are_reads() {
        read("SELECT 1 UNION SELECT 2");
        read("SELECT a FROM t UNION ALL SELECT a FROM u EXCEPT SELECT a FROM v INTERSECT SELECT 3");
        read("VALUES (1, 'a'), (2, 'b')");
        read("TABLE t");
        write("SELECT 1 UNION SELECT nextval('s')");
        write("VALUES (nextval('s'))");
    }

    #[test]
    fn ctes() {
        read("WITH x AS (SELECT 1) SELECT * FROM x");
        read("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r");
        read("WITH x AS MATERIALIZED (SELECT * FROM t), y AS (SELECT * FROM x) SELECT * FROM y");
        write("WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x");
        write("WITH x AS (INSERT INTO t VALUES (1) RETURNING id) SELECT * FROM x");
        write("WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM x");
        write("WITH x AS (SELECT * FROM t FOR UPDATE) SELECT * FROM x");
        write("WITH x AS (SELECT nextval('s')) SELECT * FROM x");
        write("SELECT * FROM (WITH y AS (DELETE FROM t RETURNING *) SELECT * FROM y) s");
    }

    #[test]
    fn locking_clauses_are_writes() {
        write("SELECT * FROM t FOR UPDATE");
        write("SELECT * FROM t FOR NO KEY UPDATE");
        write("SELECT * FROM t FOR SHARE");
        write("SELECT * FROM t FOR KEY SHARE");
        write("SELECT * FROM t FOR UPDATE OF t SKIP LOCKED");
        write("SELECT * FROM t FOR UPDATE NOWAIT");
        write("SELECT * FROM (SELECT * FROM t FOR SHARE) s");
        write("SELECT * FROM t WHERE id IN (SELECT id FROM u FOR UPDATE)");
        write("SELECT 1 UNION SELECT 2 FROM (SELECT 1 FROM t FOR KEY SHARE) s");
        read("SELECT 'FOR UPDATE' AS for_update");
    }

    #[test]
    fn select_into_is_a_write() {
        write("SELECT 1 INTO t2");
        write("SELECT * INTO TEMP t2 FROM t");
        write("CREATE TABLE t2 AS SELECT 1");
    }

    #[test]
    fn writing_functions_anywhere_are_writes() {
        write("SELECT nextval('s')");
        write("SELECT setval('s', 10)");
        write("SELECT currval('s')");
        write("SELECT lastval()");
        write("SELECT pg_catalog.nextval('s')");
        write("SELECT NEXTVAL('s')");
        write("SELECT \"nextval\"('s')");
        write("SELECT * FROM t WHERE id = nextval('s')");
        write("SELECT * FROM nextval('s')");
        write("SELECT * FROM t WHERE id IN (SELECT nextval('s'))");
        write("SELECT nextval('s')::text");
        write("SELECT ARRAY[nextval('s')]");
        write("SELECT CASE WHEN true THEN nextval('s') END");
        write("SELECT coalesce(null, nextval('s'))");
        write("SELECT 1 FROM t LIMIT nextval('s')");
        write("SELECT 1 FROM t ORDER BY nextval('s')");
        write("SELECT count(*) FILTER (WHERE nextval('s') > 0) FROM t");
        write("SELECT upper(lower(nextval('s')::text))");
        write("SELECT (SELECT setval('s', 1)) + 1");
        write("SELECT 1 WHERE EXISTS (SELECT txid_current())");
        read("SELECT nextval FROM t");
        read("SELECT 'nextval(1)'");
        read("SELECT my_schema.next_value('s')");
    }

    #[test]
    fn lock_and_session_functions_are_writes() {
        for sql in [
            "SELECT pg_advisory_lock(1)",
            "SELECT pg_advisory_lock_shared(1)",
            "SELECT pg_advisory_xact_lock(1, 2)",
            "SELECT pg_advisory_unlock(1)",
            "SELECT pg_advisory_unlock_all()",
            "SELECT pg_try_advisory_lock(1)",
            "SELECT pg_try_advisory_xact_lock_shared(1)",
            "SELECT set_config('search_path', 'x', false)",
            "SELECT pg_notify('chan', 'msg')",
            "SELECT txid_current()",
            "SELECT pg_current_xact_id()",
            "SELECT pg_current_wal_lsn()",
            "SELECT pg_current_wal_insert_lsn()",
            "SELECT pg_switch_wal()",
            "SELECT pg_create_physical_replication_slot('s')",
            "SELECT * FROM pg_create_logical_replication_slot('s', 'pgoutput')",
            "SELECT pg_drop_replication_slot('s')",
            "SELECT lo_create(0)",
            "SELECT lo_import('/tmp/x')",
            "SELECT lo_unlink(1)",
            "SELECT lo_open(1, 131072)",
            "SELECT lowrite(0, 'x')",
            "SELECT loread(0, 10)",
            "SELECT dblink_exec('conn', 'DELETE FROM t')",
            "SELECT public.dblink_exec('DELETE FROM t')",
        ] {
            write(sql);
        }
        read("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn(), current_setting('x')");
        read("SELECT pg_advisory FROM t");
    }

    #[test]
    fn show_and_explain() {
        read("SHOW search_path");
        read("SHOW ALL");
        read("SHOW TRANSACTION ISOLATION LEVEL");
        read("EXPLAIN SELECT 1");
        read("EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM t");
        read("EXPLAIN (ANALYZE false) SELECT 1");
        read("EXPLAIN (ANALYZE off) SELECT 1");
        write("EXPLAIN ANALYZE SELECT 1");
        write("EXPLAIN (ANALYZE) SELECT 1");
        write("EXPLAIN (ANALYZE true, BUFFERS) SELECT 1");
        write("EXPLAIN (FORMAT JSON, ANALYZE on) SELECT 1");
        write("EXPLAIN INSERT INTO t VALUES (1)");
        write("EXPLAIN SELECT * FROM t FOR UPDATE");
        write("EXPLAIN SELECT nextval('s')");
    }

    #[test]
    fn everything_else_is_a_write() {
        for sql in [
            "BEGIN",
            "START TRANSACTION READ ONLY",
            "COMMIT",
            "ROLLBACK",
            "SAVEPOINT a",
            "SET x = 1",
            "SET search_path TO public",
            "RESET ALL",
            "DISCARD ALL",
            "INSERT INTO t VALUES (1)",
            "INSERT INTO t SELECT * FROM u",
            "UPDATE t SET a = 1",
            "DELETE FROM t",
            "MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE",
            "CREATE TABLE t (id int)",
            "ALTER TABLE t ADD COLUMN a int",
            "DROP TABLE t",
            "TRUNCATE t",
            "CALL p()",
            "DO $$ BEGIN END $$",
            "COPY t TO STDOUT",
            "COPY (SELECT 1) TO STDOUT",
            "LISTEN chan",
            "NOTIFY chan",
            "LOCK TABLE t",
            "VACUUM t",
            "PREPARE p AS SELECT 1",
            "EXECUTE p",
            "DECLARE c CURSOR FOR SELECT 1",
            "FETCH c",
            "SELECT 1; INSERT INTO t VALUES (1)",
            "INSERT INTO t VALUES (1); SELECT 1",
            "SELECT 1; BEGIN",
        ] {
            write(sql);
        }
    }

    #[test]
    fn unparseable_and_empty_text_is_a_write() {
        for sql in [
            "not sql",
            "SELECT FROM WHERE",
            "SELECT 'unterminated",
            "SELECT 1\0",
            "",
            "   ",
            ";",
            "-- only a comment",
        ] {
            unparsed(sql);
        }
    }

    #[test]
    fn writing_function_names() {
        assert!(writing_function("nextval"));
        assert!(writing_function("NextVal"));
        assert!(writing_function("pg_advisory_xact_lock_shared"));
        assert!(writing_function("pg_create_logical_replication_slot"));
        assert!(writing_function("lo_get"));
        assert!(!writing_function("pg_create_"));
        assert!(!writing_function("now"));
        assert!(!writing_function("lower"));
        assert!(!writing_function("nextvalue"));
        assert!(!writing_function("löwrite"));
    }

    #[test]
    fn cache_answers_like_access() {
        let cache = AccessCache::default();
        assert!(cache.is_empty());
        for sql in ["SELECT 1", "INSERT INTO t VALUES (1)", "not sql", ""] {
            let first = cache.access(sql);
            assert_eq!(first, access(sql), "{sql}");
            assert_eq!(cache.access(sql), first, "{sql}");
        }
        assert_eq!(cache.len(), 4);
        assert_eq!(cache.access("not sql"), Access::Write);
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn cache_is_bounded() {
        let cache = AccessCache::new(8);
        for i in 0..100 {
            let sql = format!("SELECT {i}");
            assert_eq!(cache.access(&sql), Access::Read);
            assert!(cache.len() <= 8, "len {} after {i}", cache.len());
        }
        // The newest text is always kept.
        assert!(cache.entries.get("SELECT 99").is_some());

        let long = format!("SELECT '{}'", "x".repeat(AccessCache::MAX_TEXT_LEN));
        assert_eq!(cache.access(&long), Access::Read);
        assert!(cache.entries.get(&long).is_none());
    }

    #[test]
    fn cache_is_shared_across_threads() {
        let cache = std::sync::Arc::new(AccessCache::new(64));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let select = format!("SELECT {}", i % 20);
                        assert_eq!(cache.access(&select), Access::Read);
                        let insert = format!("INSERT INTO t{t} VALUES ({i})");
                        assert_eq!(cache.access(&insert), Access::Write);
                    }
                })
            })
            .collect();
        for thread in threads {
            assert!(thread.join().is_ok());
        }
        assert!(cache.len() <= 64 + 4);
    }
}
