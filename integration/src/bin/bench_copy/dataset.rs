//! The data set every tool copies: four tables in `public` (publication `pub` `FOR ALL
//! TABLES`), generated on the source in chunks by two sessions at once, then given their
//! primary keys and secondary indexes, frozen and analyzed. Also where the rows of each table
//! belong with two shards, as `[[sharded_tables]]` / `[[omnisharded_tables]]` entries.
//!
//! At scale 1 (about 1.5 GB of `pg_table_size`):
//! * `events` (4,500,000 rows, over half the bytes): bigint primary key, int4, text, numeric,
//!   timestamptz, uuid, text[] and jsonb columns; two secondary indexes. Sharded on `id`.
//! * `documents` (50,000 rows): bigint primary key and 3–13 kB of hex text per row (stored out
//!   of line in TOAST, default storage); one secondary index. Sharded on `id`.
//! * `accounts` (1,000,000 rows): int4 primary key, text, numeric, timestamptz, uuid, int4[],
//!   jsonb (a quarter NULL); one secondary index. Sharded on `id` (bigint).
//! * `countries` (250 rows, any scale): text primary key and jsonb. Omnisharded.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;

use pgdog::local::LocalCluster;

/// The database holding the data set on the source cluster.
pub(crate) const SOURCE_DB: &str = "source";
/// The publication naming every table.
pub(crate) const PUBLICATION: &str = "pub";

/// Where a table's rows go with two shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Sharded on this bigint-typed column: each row on one shard.
    Sharded(&'static str),
    /// Omnisharded: every row on every shard.
    Everywhere,
}

/// One table of the data set.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Table {
    /// Its name in `public`.
    pub(crate) name: &'static str,
    /// Rows at scale 1 (`None`: a fixed count at any scale, see [`COUNTRIES`]).
    per_scale: Option<u64>,
    /// Where its rows go with two shards.
    pub(crate) placement: Placement,
}

/// Rows of `countries`.
pub(crate) const COUNTRIES: u64 = 250;

/// The tables, largest first.
pub(crate) const TABLES: [Table; 4] = [
    Table {
        name: "events",
        per_scale: Some(4_500_000),
        placement: Placement::Sharded("id"),
    },
    Table {
        name: "documents",
        per_scale: Some(50_000),
        placement: Placement::Sharded("id"),
    },
    Table {
        name: "accounts",
        per_scale: Some(1_000_000),
        placement: Placement::Sharded("id"),
    },
    Table {
        name: "countries",
        per_scale: None,
        placement: Placement::Everywhere,
    },
];

impl Table {
    /// Rows at `scale` (at least 1).
    pub(crate) fn rows(&self, scale: f64) -> u64 {
        match self.per_scale {
            Some(n) => ((n as f64 * scale).round() as u64).max(1),
            None => COUNTRIES,
        }
    }
}

/// The tables without keys or indexes.
const CREATE: &str = "
CREATE TABLE public.accounts (
    id integer NOT NULL,
    name text NOT NULL,
    email text NOT NULL,
    balance numeric(12,2) NOT NULL,
    created_at timestamptz NOT NULL,
    api_key uuid NOT NULL,
    scores integer[],
    prefs jsonb
);
CREATE TABLE public.events (
    id bigint NOT NULL,
    account_id integer NOT NULL,
    kind text NOT NULL,
    amount numeric(14,2),
    created_at timestamptz NOT NULL,
    ref uuid,
    tags text[],
    payload jsonb
);
CREATE TABLE public.documents (
    id bigint NOT NULL,
    account_id integer NOT NULL,
    title text NOT NULL,
    body text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE TABLE public.countries (
    code text NOT NULL,
    name text NOT NULL,
    info jsonb
);
";

/// Primary keys, then secondary indexes (each its own statement, built two at a time).
const INDEXES: [&str; 8] = [
    "ALTER TABLE public.events ADD PRIMARY KEY (id)",
    "ALTER TABLE public.documents ADD PRIMARY KEY (id)",
    "ALTER TABLE public.accounts ADD PRIMARY KEY (id)",
    "ALTER TABLE public.countries ADD PRIMARY KEY (code)",
    "CREATE INDEX events_account_idx ON public.events (account_id)",
    "CREATE INDEX events_created_idx ON public.events (created_at)",
    "CREATE INDEX documents_account_idx ON public.documents (account_id)",
    "CREATE INDEX accounts_email_idx ON public.accounts (email)",
];

/// The INSERT filling rows `from..=to` of `table` (`accounts_rows` is the size of
/// `accounts`, which `account_id` columns point into).
fn insert(table: &str, from: u64, to: u64, accounts_rows: u64) -> String {
    match table {
        "events" => format!(
            "INSERT INTO public.events \
             SELECT i, (i * 7919 % {accounts_rows}) + 1, \
                    (ARRAY['click', 'view', 'purchase', 'signup', 'logout'])[i % 5 + 1], \
                    CASE WHEN i % 10 = 0 THEN NULL ELSE ((i * 37) % 1000000 / 100.0)::numeric(14,2) END, \
                    timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second', \
                    md5(i::text)::uuid, \
                    ARRAY['t' || (i % 13), 'g' || (i % 101)], \
                    jsonb_build_object('ip', '10.' || (i % 256) || '.' || (i / 256 % 256) || '.1', \
                                       'agent', 'agent/' || (i % 50), 'n', i % 1000, 'ok', i % 3 = 0) \
             FROM generate_series({from}::bigint, {to}) AS i"
        ),
        "documents" => format!(
            "INSERT INTO public.documents \
             SELECT i, (i * 31 % {accounts_rows}) + 1, 'Document ' || i, \
                    (SELECT string_agg(md5(i::text || ':' || j::text), '') \
                     FROM generate_series(1, 100 + (i % 300)::int) AS j), \
                    timestamptz '2023-01-01 00:00:00+00' + i * interval '1 minute' \
             FROM generate_series({from}::bigint, {to}) AS i"
        ),
        "accounts" => format!(
            "INSERT INTO public.accounts \
             SELECT i, 'account ' || i, 'user' || i || '@example.com', \
                    (i * 1337 % 10000000 / 100.0)::numeric(12,2), \
                    timestamptz '2020-01-01 00:00:00+00' + i * interval '1 minute', \
                    md5('key' || i)::uuid, ARRAY[i % 100, i % 7, i % 1000], \
                    CASE WHEN i % 4 = 0 THEN NULL \
                         ELSE jsonb_build_object('theme', CASE WHEN i % 2 = 0 THEN 'dark' ELSE 'light' END, \
                                                 'lang', 'en', 'limits', jsonb_build_array(i % 10, i % 100)) END \
             FROM generate_series({from}::int, {to}::int) AS i"
        ),
        _ => format!(
            "INSERT INTO public.countries \
             SELECT 'C' || lpad(i::text, 3, '0'), 'Country ' || i, \
                    jsonb_build_object('region', i % 7, 'currency', 'X' || (i % 40)) \
             FROM generate_series({from}, {to}) AS i"
        ),
    }
}

/// The INSERT statements filling every table at `scale`, in chunks of at most
/// `chunk_rows(table)` so that two sessions can share the work.
pub(crate) fn inserts(scale: f64) -> Vec<String> {
    let accounts_rows = TABLES[2].rows(scale);
    let mut out = Vec::new();
    for table in TABLES {
        let rows = table.rows(scale);
        let chunk = match table.name {
            "events" => 500_000,
            "documents" => 10_000,
            _ => 250_000,
        };
        let mut from = 1;
        while from <= rows {
            let to = (from + chunk - 1).min(rows);
            out.push(insert(table.name, from, to, accounts_rows));
            from = to + 1;
        }
    }
    out
}

/// Runs `statements` on `database` of `cluster`, `sessions` at a time.
fn run_parallel(
    cluster: &LocalCluster,
    database: &str,
    statements: Vec<String>,
    sessions: usize,
) -> Result<(), String> {
    let queue = Mutex::new(VecDeque::from(statements));
    let failed: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..sessions.max(1) {
            scope.spawn(|| loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                let Some(sql) = next else { return };
                if let Err(e) = cluster.psql(database, &sql) {
                    if let Ok(mut failed) = failed.lock() {
                        failed.get_or_insert(format!("{sql}: {e}"));
                    }
                    return;
                }
            });
        }
    });
    match failed.into_inner() {
        Ok(None) => Ok(()),
        Ok(Some(e)) => Err(e),
        Err(_) => Err("a loading thread panicked".into()),
    }
}

/// Creates database [`SOURCE_DB`] on `cluster` and loads the data set at `scale`.
pub(crate) fn load(cluster: &LocalCluster, scale: f64) -> Result<(), String> {
    cluster
        .create_database(SOURCE_DB)
        .map_err(|e| format!("CREATE DATABASE {SOURCE_DB}: {e}"))?;
    cluster
        .psql(SOURCE_DB, CREATE)
        .map_err(|e| format!("creating the tables: {e}"))?;
    run_parallel(cluster, SOURCE_DB, inserts(scale), 2)?;
    let indexes = INDEXES.iter().map(|s| s.to_string()).collect();
    run_parallel(cluster, SOURCE_DB, indexes, 2)?;
    for sql in [
        "VACUUM (FREEZE, ANALYZE)",
        &format!("CREATE PUBLICATION {PUBLICATION} FOR ALL TABLES"),
        "CHECKPOINT",
    ] {
        cluster
            .psql(SOURCE_DB, sql)
            .map_err(|e| format!("{sql}: {e}"))?;
    }
    Ok(())
}

/// Row count and `pg_table_size` (heap, TOAST, free space and visibility maps; no indexes)
/// of every table, in [`TABLES`] order.
pub(crate) fn measure(cluster: &LocalCluster) -> Result<Vec<(u64, u64)>, String> {
    let mut out = Vec::new();
    for table in TABLES {
        let sql = format!(
            "SELECT count(*), pg_table_size('public.{0}') FROM public.{0}",
            table.name
        );
        let text = cluster
            .psql(SOURCE_DB, &sql)
            .map_err(|e| format!("{sql}: {e}"))?;
        let parsed = text
            .split_once('|')
            .and_then(|(rows, bytes)| Some((rows.parse().ok()?, bytes.trim().parse().ok()?)));
        out.push(parsed.ok_or_else(|| format!("{sql}: unexpected answer {text:?}"))?);
    }
    Ok(out)
}

/// The `[[sharded_tables]]` and `[[omnisharded_tables]]` entries of database `database`.
pub(crate) fn sharding_toml(database: &str) -> String {
    let mut toml = String::new();
    let mut everywhere = Vec::new();
    for table in TABLES {
        match table.placement {
            Placement::Sharded(column) => {
                let _ = write!(
                    toml,
                    "[[sharded_tables]]\ndatabase = \"{database}\"\nname = \"{}\"\n\
                     column = \"{column}\"\ndata_type = \"bigint\"\n\n",
                    table.name
                );
            }
            Placement::Everywhere => everywhere.push(format!("\"{}\"", table.name)),
        }
    }
    if !everywhere.is_empty() {
        let _ = write!(
            toml,
            "[[omnisharded_tables]]\ndatabase = \"{database}\"\ntables = [{}]\n\n",
            everywhere.join(", ")
        );
    }
    toml
}

/// One line per table saying how it is placed with two shards, for the report.
pub(crate) fn placement_text() -> String {
    TABLES
        .iter()
        .map(|t| match t.placement {
            Placement::Sharded(column) => format!("`{}` sharded on `{column}` (bigint)", t.name),
            Placement::Everywhere => format!("`{}` omnisharded (every row on both shards)", t.name),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_row_once() {
        let statements = inserts(1.0);
        let events: Vec<&String> = statements
            .iter()
            .filter(|s| s.contains("INTO public.events"))
            .collect();
        assert_eq!(events.len(), 9);
        assert!(events[0].contains("generate_series(1::bigint, 500000)"));
        assert!(events[8].contains("generate_series(4000001::bigint, 4500000)"));
        let small = inserts(0.0001);
        assert!(
            small[0].contains("generate_series(1::bigint, 450)"),
            "{}",
            small[0]
        );
        assert_eq!(TABLES[3].rows(0.0001), COUNTRIES);
    }

    #[test]
    fn sharding_entries() {
        let toml = sharding_toml("destination");
        assert_eq!(toml.matches("[[sharded_tables]]").count(), 3);
        assert!(toml.contains("name = \"events\"\ncolumn = \"id\"\ndata_type = \"bigint\""));
        assert!(toml.contains("tables = [\"countries\"]"));
    }
}
