//! The pre-flight check of a resharding move against real clusters: every problem it knows has
//! a test showing its message, and a clean move reports nothing. Source and destination are
//! databases of one cluster (`source`, `shard_0`, `shard_1`) unless a check needs other server
//! settings.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use integration::{cluster_with, free_port, LocalCluster, LocalOptions};
use pgdog::reshard::preflight::{run, PreflightInput, Problem, Severity};
use pgdog::reshard::schema::Phase;
use pgdog::reshard::ClusterEndpoints;

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pgdog-preflight-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where the shards of the move are.
struct Layout<'a> {
    /// (port, database_name) of each source shard.
    source: Vec<(u16, &'a str)>,
    /// (port, database_name) of each destination shard.
    destination: Vec<(u16, &'a str)>,
    /// The schema_admin password for the source (the real one is `postgres`).
    source_password: &'a str,
}

impl<'a> Layout<'a> {
    /// `source` → `shard_0`, `shard_1`, all on `cluster`.
    fn on(cluster: &LocalCluster) -> Layout<'a> {
        Layout {
            source: vec![(cluster.port(), "source")],
            destination: vec![(cluster.port(), "shard_0"), (cluster.port(), "shard_1")],
            source_password: "postgres",
        }
    }

    /// Both clusters' endpoints, resolved from real pgdog.toml / users.toml files.
    fn endpoints(&self) -> (ClusterEndpoints, ClusterEndpoints) {
        let mut config = String::from("[general]\nconnect_timeout = 3000\n\n");
        for (name, shards) in [("source", &self.source), ("dest", &self.destination)] {
            for (shard, (port, database)) in shards.iter().enumerate() {
                config.push_str(&format!(
                    "[[databases]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\n\
                     database_name = \"{database}\"\nshard = {shard}\n\n"
                ));
            }
        }
        let users = format!(
            "[[users]]\nname = \"postgres\"\ndatabase = \"source\"\npassword = \"{}\"\n\
             schema_admin = true\n\n[[users]]\nname = \"postgres\"\ndatabase = \"dest\"\n\
             password = \"postgres\"\nschema_admin = true\n",
            self.source_password
        );
        let dir = TempDir::new();
        let cli = pgdog::cli::Cli {
            config: dir.0.join("pgdog.toml"),
            users: dir.0.join("users.toml"),
            command: None,
        };
        std::fs::write(&cli.config, config).unwrap();
        std::fs::write(&cli.users, users).unwrap();
        let loaded = pgdog::cli::load(&cli).unwrap_or_else(|e| panic!("config: {e}"));
        (
            ClusterEndpoints::resolve(&loaded, "source").unwrap(),
            ClusterEndpoints::resolve(&loaded, "dest").unwrap(),
        )
    }

    /// Runs the check.
    async fn check(&self, publication: &str, phase: Phase, pg_dump: Option<&Path>) -> Vec<Problem> {
        let (source, destination) = self.endpoints();
        let problems = run(&PreflightInput {
            source: &source,
            destination: &destination,
            publication,
            phase,
            pg_dump_path: pg_dump,
        })
        .await;
        for problem in &problems {
            eprintln!("{problem}");
        }
        problems
    }
}

/// A cluster with databases `source`, `shard_0` and `shard_1`, `sql` run in `source`.
fn setup(options: LocalOptions, sql: &str) -> LocalCluster {
    let cluster = cluster_with(options);
    for database in ["source", "shard_0", "shard_1"] {
        cluster.create_database(database).unwrap();
    }
    psql(&cluster, "source", sql);
    cluster
}

fn psql(cluster: &LocalCluster, database: &str, sql: &str) {
    if let Err(e) = cluster.psql(database, sql) {
        panic!("{database}: {sql}: {e}");
    }
}

/// `side shard N (postgres@127.0.0.1:port/db)`.
fn label(side: &str, shard: usize, port: u16, database: &str) -> String {
    format!("{side} shard {shard} (postgres@127.0.0.1:{port}/{database})")
}

/// The checks of `problems`, in order.
fn checks(problems: &[Problem]) -> Vec<&'static str> {
    problems.iter().map(|p| p.check).collect()
}

/// The one problem of `check` about `object`; its message must contain `message`.
fn problem<'a>(
    problems: &'a [Problem],
    severity: Severity,
    check: &str,
    object: &str,
    message: &str,
) -> &'a Problem {
    let found = problems
        .iter()
        .find(|p| p.check == check && p.object == object)
        .unwrap_or_else(|| panic!("no {check} problem about {object} in {problems:#?}"));
    assert_eq!(found.severity, severity, "{found}");
    assert!(found.message.contains(message), "{found}");
    assert!(!found.hint.is_empty(), "{found}");
    found
}

const TABLE: &str =
    "CREATE TABLE t (id bigint PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a');";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_move_has_no_problems() {
    let schema = r#"
        CREATE SCHEMA "Sales";
        CREATE TABLE "Sales"."Orders" (id serial PRIMARY KEY, doc jsonb, tags text[]);
        CREATE TABLE events (id bigint, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
        CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
        CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
        CREATE TRIGGER touch BEFORE UPDATE ON "Sales"."Orders" FOR EACH ROW EXECUTE FUNCTION touch();
    "#;
    let cluster = setup(
        LocalOptions::default(),
        &format!("{schema} {TABLE} CREATE PUBLICATION moving FOR ALL TABLES;"),
    );
    let layout = Layout::on(&cluster);
    assert_eq!(layout.check("moving", Phase::Pre, None).await, []);
    // After the pre phase (tables there, empty or not) the later phases have nothing to say.
    for shard in ["shard_0", "shard_1"] {
        psql(&cluster, shard, &format!("{schema} {TABLE}"));
    }
    assert_eq!(layout.check("moving", Phase::Post, None).await, []);
    assert_eq!(layout.check("moving", Phase::Cutover, None).await, []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_servers_are_reported_and_the_others_checked() {
    let cluster = setup(
        LocalOptions::default(),
        &format!("{TABLE} CREATE PUBLICATION moving FOR ALL TABLES;"),
    );
    let closed = free_port();
    let mut layout = Layout::on(&cluster);
    layout.source_password = "wrong";
    layout.destination[1].0 = closed;
    let problems = layout.check("moving", Phase::Pre, None).await;
    assert_eq!(checks(&problems), ["connection", "connection"]);
    let port = cluster.port();
    let login = problem(
        &problems,
        Severity::Error,
        "connection",
        &label("source", 0, port, "source"),
        "password authentication failed",
    );
    assert!(login.hint.contains("users.toml"), "{login}");
    let down = problem(
        &problems,
        Severity::Error,
        "connection",
        &label("destination", 1, closed, "shard_1"),
        "could not connect",
    );
    assert!(down.hint.contains(&format!("127.0.0.1:{closed}")), "{down}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_empty_publications() {
    let cluster = setup(
        LocalOptions::default(),
        &format!("{TABLE} CREATE PUBLICATION empty;"),
    );
    let layout = Layout::on(&cluster);
    let source = label("source", 0, cluster.port(), "source");

    let problems = layout.check("moving", Phase::Pre, None).await;
    assert_eq!(checks(&problems), ["publication"]);
    let missing = problem(
        &problems,
        Severity::Error,
        "publication",
        &source,
        "publication \"moving\" does not exist",
    );
    assert!(missing
        .hint
        .contains("CREATE PUBLICATION \"moving\" FOR ALL TABLES"));

    let problems = layout.check("empty", Phase::Pre, None).await;
    assert_eq!(checks(&problems), ["publication"]);
    problem(
        &problems,
        Severity::Warning,
        "publication",
        &source,
        "contains no tables",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_settings_wal_level_slots_and_senders() {
    let settings = [
        ("wal_level", "replica"),
        ("max_replication_slots", "1"),
        ("max_wal_senders", "0"),
    ];
    let options = LocalOptions {
        extra_settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..LocalOptions::default()
    };
    let cluster = setup(
        options,
        &format!(
            "{TABLE} CREATE PUBLICATION moving FOR ALL TABLES;
             SELECT pg_create_physical_replication_slot('taken');"
        ),
    );
    let source = label("source", 0, cluster.port(), "source");
    let layout = Layout::on(&cluster);

    let problems = layout.check("moving", Phase::Pre, None).await;
    assert_eq!(
        checks(&problems),
        ["wal_level", "replication_slots", "wal_senders"]
    );
    let wal = problem(
        &problems,
        Severity::Error,
        "wal_level",
        &source,
        "wal_level is replica",
    );
    assert!(wal.hint.contains("ALTER SYSTEM SET wal_level = logical"));
    let slots = problem(
        &problems,
        Severity::Error,
        "replication_slots",
        &source,
        "max_replication_slots is 1 and 1 in use (taken (inactive)): 0 free",
    );
    assert!(slots.hint.contains("max_replication_slots = 2"), "{slots}");
    problem(
        &problems,
        Severity::Error,
        "wal_senders",
        &source,
        "max_wal_senders is 0",
    );

    // After the copy the slot exists already: only wal_level still matters.
    for shard in ["shard_0", "shard_1"] {
        psql(&cluster, shard, TABLE);
    }
    let problems = layout.check("moving", Phase::Post, None).await;
    assert_eq!(checks(&problems), ["wal_level"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_without_a_usable_replica_identity() {
    let cluster = setup(
        LocalOptions::default(),
        r#"
        CREATE TABLE no_pk (id int, v text);
        CREATE TABLE has_candidate (id int NOT NULL, v text);
        CREATE UNIQUE INDEX has_candidate_id ON has_candidate (id);
        CREATE TABLE nothing (id int PRIMARY KEY) ;
        ALTER TABLE nothing REPLICA IDENTITY NOTHING;
        CREATE TABLE full_no_pk (v text);
        ALTER TABLE full_no_pk REPLICA IDENTITY FULL;
        CREATE TABLE by_index (id int NOT NULL, v text);
        CREATE UNIQUE INDEX by_index_id ON by_index (id);
        ALTER TABLE by_index REPLICA IDENTITY USING INDEX by_index_id;
        CREATE TABLE events (id int, at date) PARTITION BY RANGE (at);
        CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
        CREATE SCHEMA "Sales";
        CREATE TABLE "Sales"."Orders" (id int);
        CREATE PUBLICATION moving FOR ALL TABLES;
        "#,
    );
    let problems = Layout::on(&cluster).check("moving", Phase::Pre, None).await;
    assert_eq!(checks(&problems), ["primary_key"; 6]);
    let no_pk = r#"has no primary key (replica identity DEFAULT): UPDATE and DELETE on it cannot be replicated"#;
    problem(
        &problems,
        Severity::Error,
        "primary_key",
        r#""Sales"."Orders""#,
        no_pk,
    );
    problem(
        &problems,
        Severity::Error,
        "primary_key",
        r#""public"."no_pk""#,
        no_pk,
    );
    // Partitions hold the rows and need the identity; their partitioned parent is not reported.
    problem(
        &problems,
        Severity::Error,
        "primary_key",
        r#""public"."events_2024""#,
        no_pk,
    );
    let candidate = problem(
        &problems,
        Severity::Error,
        "primary_key",
        r#""public"."has_candidate""#,
        no_pk,
    );
    assert!(candidate.hint.contains(
        r#"ALTER TABLE "public"."has_candidate" REPLICA IDENTITY USING INDEX "has_candidate_id""#
    ));
    let nothing = problem(
        &problems,
        Severity::Error,
        "primary_key",
        r#""public"."nothing""#,
        "has REPLICA IDENTITY NOTHING",
    );
    assert!(nothing.hint.contains("REPLICA IDENTITY DEFAULT"));
    problem(
        &problems,
        Severity::Warning,
        "primary_key",
        r#""public"."full_no_pk""#,
        "REPLICA IDENTITY FULL: replication works",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_dump_missing_or_older_than_the_servers() {
    let cluster = setup(
        LocalOptions::default(),
        &format!("{TABLE} CREATE PUBLICATION moving FOR ALL TABLES;"),
    );
    let layout = Layout::on(&cluster);
    let port = cluster.port();

    let missing = Path::new("/nonexistent/pg_dump");
    let problems = layout.check("moving", Phase::Pre, Some(missing)).await;
    assert_eq!(checks(&problems), ["pg_dump"]);
    problem(
        &problems,
        Severity::Error,
        "pg_dump",
        "pg_dump (/nonexistent/pg_dump)",
        "cannot run /nonexistent/pg_dump",
    );

    // There is no older pg_dump installed: a script answers `--version` like pg_dump 12 would.
    // A shell writes it, so no file descriptor of this (threaded) process holds it open for
    // writing when it runs.
    let dir = TempDir::new();
    let old = dir.0.join("pg_dump");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf '#!/bin/sh\\necho \"pg_dump (PostgreSQL) 12.0\"\\n' > '{0}' && chmod 755 '{0}'",
            old.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let problems = layout.check("moving", Phase::Pre, Some(&old)).await;
    assert_eq!(checks(&problems), ["pg_dump"; 3]);
    problem(
        &problems,
        Severity::Error,
        "pg_dump",
        &label("source", 0, port, "source"),
        "is version 12 but the server",
    );
    for (shard, database) in ["shard_0", "shard_1"].iter().enumerate() {
        problem(
            &problems,
            Severity::Error,
            "pg_dump",
            &label("destination", shard, port, database),
            "is version 12 but the server",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_tables_with_rows_before_the_copy() {
    let cluster = setup(
        LocalOptions::default(),
        &format!("{TABLE} CREATE TABLE u (id int PRIMARY KEY); CREATE PUBLICATION moving FOR ALL TABLES;"),
    );
    // shard_0 has leftovers in t; shard_1 has t, empty (fine: schema sync is idempotent).
    psql(&cluster, "shard_0", TABLE);
    psql(
        &cluster,
        "shard_1",
        "CREATE TABLE t (id bigint PRIMARY KEY, v text)",
    );
    let problems = Layout::on(&cluster).check("moving", Phase::Pre, None).await;
    assert_eq!(checks(&problems), ["destination_not_empty"]);
    let found = problem(
        &problems,
        Severity::Error,
        "destination_not_empty",
        r#""public"."t""#,
        &format!(
            "already has rows on {}: copying the source's rows would add them a second time",
            label("destination", 0, cluster.port(), "shard_0")
        ),
    );
    assert!(!found.message.contains("shard_1"), "{found}");
    assert!(found.hint.contains(r#"TRUNCATE "public"."t""#), "{found}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_tables_missing_after_the_copy() {
    let cluster = setup(
        LocalOptions::default(),
        &format!("{TABLE} CREATE TABLE u (id int PRIMARY KEY); CREATE PUBLICATION moving FOR ALL TABLES;"),
    );
    psql(
        &cluster,
        "shard_0",
        &format!("{TABLE} CREATE TABLE u (id int PRIMARY KEY);"),
    );
    psql(&cluster, "shard_1", TABLE);
    let problems = Layout::on(&cluster)
        .check("moving", Phase::Post, None)
        .await;
    assert_eq!(checks(&problems), ["destination_missing_tables"]);
    let found = problem(
        &problems,
        Severity::Error,
        "destination_missing_tables",
        &label("destination", 1, cluster.port(), "shard_1"),
        r#"1 of the publication's 2 tables do not exist here: "public"."u""#,
    );
    assert!(found.hint.contains("pgdog schema-sync"), "{found}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_on_the_source() {
    let cluster = setup(
        LocalOptions::default(),
        &format!("{TABLE} CREATE PUBLICATION moving FOR ALL TABLES; SELECT lo_create(0);"),
    );
    let problems = Layout::on(&cluster).check("moving", Phase::Pre, None).await;
    assert_eq!(checks(&problems), ["large_objects"]);
    problem(
        &problems,
        Severity::Error,
        "large_objects",
        &label("source", 0, cluster.port(), "source"),
        "1 large object(s) (pg_largeobject_metadata): logical replication does not carry",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relations_a_publication_for_all_tables_skips() {
    let cluster = setup(
        LocalOptions::default(),
        &format!(
            "{TABLE}
             CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY);
             CREATE MATERIALIZED VIEW totals AS SELECT count(*) FROM t;
             CREATE EXTENSION file_fdw;
             CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;
             CREATE FOREIGN TABLE outside (line text) SERVER files OPTIONS (filename '/dev/null');
             CREATE PUBLICATION moving FOR ALL TABLES;
             CREATE PUBLICATION listed FOR TABLE t;"
        ),
    );
    let layout = Layout::on(&cluster);
    let problems = layout.check("moving", Phase::Pre, None).await;
    assert_eq!(checks(&problems), ["unlogged_tables"; 3]);
    let unlogged = problem(
        &problems,
        Severity::Error,
        "unlogged_tables",
        r#""public"."scratch""#,
        "is an unlogged table: publication \"moving\" takes every table, but logical \
         replication skips unlogged ones",
    );
    assert!(unlogged
        .hint
        .contains(r#"ALTER TABLE "public"."scratch" SET LOGGED"#));
    problem(
        &problems,
        Severity::Warning,
        "unlogged_tables",
        r#""public"."outside""#,
        "is a foreign table",
    );
    problem(
        &problems,
        Severity::Warning,
        "unlogged_tables",
        r#""public"."totals""#,
        "is a materialized view",
    );
    // A table list leaves them out knowingly.
    assert_eq!(layout.check("listed", Phase::Pre, None).await, []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extensions_the_tables_need_missing_on_the_destination() {
    // Column type and array of it (hstore), a domain over an extension type (citext), a column
    // default calling an extension function (uuid-ossp) and an index operator class (pg_trgm).
    let cluster = setup(
        LocalOptions::default(),
        r#"
        CREATE EXTENSION hstore; CREATE EXTENSION citext;
        CREATE EXTENSION "uuid-ossp"; CREATE EXTENSION pg_trgm;
        CREATE TABLE attrs (id int PRIMARY KEY, a hstore);
        CREATE TABLE history (id int PRIMARY KEY, a hstore[]);
        CREATE DOMAIN email AS citext;
        CREATE TABLE people (id int PRIMARY KEY, mail email);
        CREATE TABLE tokens (id uuid PRIMARY KEY DEFAULT uuid_generate_v4());
        CREATE TABLE docs (id int PRIMARY KEY, body text);
        CREATE INDEX docs_body ON docs USING gin (body gin_trgm_ops);
        CREATE TABLE plain (id int PRIMARY KEY);
        CREATE PUBLICATION moving FOR ALL TABLES;
        "#,
    );
    // The same installation serves both sides: renaming the extensions in the source's catalog
    // makes them ones no destination has available.
    psql(
        &cluster,
        "source",
        "UPDATE pg_extension SET extname = 'gone_' || replace(extname, '-', '_')
         WHERE extname IN ('hstore', 'citext', 'uuid-ossp', 'pg_trgm')",
    );
    let problems = Layout::on(&cluster).check("moving", Phase::Pre, None).await;
    assert_eq!(checks(&problems), ["extensions"; 4]);
    let shards = format!(
        "{}, {}",
        label("destination", 0, cluster.port(), "shard_0"),
        label("destination", 1, cluster.port(), "shard_1")
    );
    for (extension, tables) in [
        ("gone_hstore", r#""public"."attrs", "public"."history""#),
        ("gone_citext", r#""public"."people""#),
        ("gone_uuid_ossp", r#""public"."tokens""#),
        ("gone_pg_trgm", r#""public"."docs""#),
    ] {
        let found = problem(
            &problems,
            Severity::Error,
            "extensions",
            &format!("extension \"{extension}\""),
            &format!("needed by {tables} (version "),
        );
        assert!(
            found
                .message
                .contains(&format!("not available on {shards}")),
            "{found}"
        );
    }
}
