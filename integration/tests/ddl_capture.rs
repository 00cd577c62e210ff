//! DDL that applications run through pgdog on a database being moved (a replication stream
//! reads from it) is written to the source's WAL as a `pgdog_ddl` logical message: the
//! session's search_path, a new line, the DDL text. A second slot on the source, decoded with
//! `test_decoding`, shows what was written and where: one message per DDL request (simple
//! query, extended protocol, pipelined), inside the client's transaction when one is open,
//! none for failed or rolled-back DDL, for DML or when no stream reads the database. The
//! client sees exactly what it would without pgdog's message (tags, rows, transaction
//! status), in transaction and session pooling.

use std::time::Duration;

use integration::data_sync::{admin, DataSyncOptions, DataSyncSetup, Scale, PUBLICATION, SOURCE};
use integration::raw::{self, bind, execute, parse, query, sync, tags, Raw};
use integration::schema_sync::{SCHEMA_ADMIN, SCHEMA_ADMIN_PASSWORD};
use integration::sharded::run_simple;
use tokio_postgres::{Client, SimpleQueryMessage};

/// The slot that watches what the source's WAL holds.
const WATCH_SLOT: &str = "ddl_watch";
/// The slot of the move's stream.
const STREAM_SLOT: &str = "ddl_stream";
/// How long the copy and the start of the stream may take.
const WAIT: Duration = Duration::from_secs(120);
/// The default search_path, as `current_setting` shows it.
const DEFAULT_PATH: &str = "\"$user\", public";
/// A user in session pooling, added by the test.
const SESSION_USER: &str = "session_app";
/// A user whose server role may not emit logical messages, added by the test.
const PLAIN_USER: &str = "plain_app";
/// That server role.
const PLAIN_ROLE: &str = "ddl_plain";

const TINY: Scale = Scale {
    customers: 100,
    orders: 200,
    documents: 50,
    devices: 50,
    events: 100,
};

/// Everything the watch slot decoded since the last call, once the WAL written so far is
/// flushed (the clusters run with `synchronous_commit = off`).
async fn decoded(watch: &Client) -> Vec<String> {
    let target: String = watch
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let flushed = format!("SELECT pg_current_wal_flush_lsn() >= '{target}'::pg_lsn");
    integration::eventually(Duration::from_secs(30), "the WAL to be flushed", || {
        let flushed = &flushed;
        async move {
            let row = watch.query_one(flushed.as_str(), &[]).await.ok()?;
            row.get::<_, bool>(0).then_some(())
        }
    })
    .await;
    watch
        .query(
            "SELECT data FROM pg_logical_slot_get_changes($1, NULL, NULL, 'skip-empty-xacts', '1')",
            &[&WATCH_SLOT],
        )
        .await
        .unwrap_or_else(|e| panic!("pg_logical_slot_get_changes: {e:?}"))
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The content of a decoded `pgdog_ddl` message line (transactional messages only).
fn message_content(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("message: transactional: 1 prefix: pgdog_ddl, sz: ")?;
    Some(rest.split_once(" content:")?.1)
}

/// The `pgdog_ddl` messages among decoded lines.
fn messages(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|line| message_content(line).map(str::to_string))
        .collect()
}

/// Every message expected: `(search_path, ddl)`.
fn expected(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs
        .iter()
        .map(|(path, ddl)| format!("{path}\n{ddl}"))
        .collect()
}

/// Panics unless the WAL written since the last check holds exactly `want` (in order); says
/// what the stream is doing, since a stream that ended stops the capture. Returns the lines.
async fn expect_messages(
    watch: &Client,
    admin: &Client,
    what: &str,
    want: &[(&str, &str)],
) -> Vec<String> {
    let lines = decoded(watch).await;
    let found = messages(&lines);
    if found != expected(want) {
        let streams = run_simple(admin, "SHOW REPLICATION")
            .await
            .map(|r| format!("{:?}", r.rows))
            .unwrap_or_else(|e| e.to_string());
        panic!(
            "{what}: expected messages {:?}, found {found:?}\ndecoded: {lines:#?}\nSHOW REPLICATION: {streams}",
            expected(want)
        );
    }
    lines
}

/// Index of the first line satisfying `pred`.
fn position(lines: &[String], what: &str, pred: impl Fn(&str) -> bool) -> usize {
    lines
        .iter()
        .position(|l| pred(l))
        .unwrap_or_else(|| panic!("no line for {what} in {lines:#?}"))
}

/// The message lies inside the transaction of the INSERT into `table`, before the insert.
fn assert_in_transaction_before_insert(lines: &[String], table: &str) {
    let message = position(lines, "the message", |l| message_content(l).is_some());
    let insert = position(lines, "the insert", |l| {
        l.starts_with(&format!("table public.{table}: INSERT"))
    });
    assert!(message < insert, "message after the insert: {lines:#?}");
    assert!(
        lines[message..insert]
            .iter()
            .all(|l| !l.starts_with("COMMIT")),
        "message and insert in different transactions: {lines:#?}"
    );
}

/// The message comes before the INSERT into `table` (in an earlier transaction or the same).
fn assert_before_insert(lines: &[String], table: &str) {
    let message = position(lines, "the message", |l| message_content(l).is_some());
    let insert = position(lines, "the insert", |l| {
        l.starts_with(&format!("table public.{table}: INSERT"))
    });
    assert!(message < insert, "message after the insert: {lines:#?}");
}

/// Command tags' row counts of a simple query; panics if it returned rows.
async fn command_counts(client: &Client, sql: &str) -> Vec<u64> {
    let mut counts = Vec::new();
    for message in client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
    {
        match message {
            SimpleQueryMessage::CommandComplete(n) => counts.push(n),
            SimpleQueryMessage::Row(_) => panic!("{sql}: unexpected row"),
            _ => {}
        }
    }
    counts
}

fn sqlstate(result: Result<impl std::fmt::Debug, tokio_postgres::Error>) -> String {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(e) => integration::sqlstate(&e).unwrap_or_else(|| panic!("no SQLSTATE: {e:?}")),
    }
}

/// Adds [`SESSION_USER`] (session pooling) and [`PLAIN_USER`] (server role [`PLAIN_ROLE`]) on
/// the source and reloads.
async fn add_users(setup: &mut DataSyncSetup, admin: &Client) {
    let pgdog = setup.start_pgdog();
    let read = |name: &str| {
        std::fs::read_to_string(pgdog.dir().join(name))
            .unwrap_or_else(|e| panic!("read {name}: {e}"))
    };
    let users = format!(
        "{}\n[[users]]\nname = \"{SESSION_USER}\"\ndatabase = \"{SOURCE}\"\npassword = \"{SCHEMA_ADMIN_PASSWORD}\"\n\
         server_user = \"postgres\"\nserver_password = \"postgres\"\npooler_mode = \"session\"\n\n\
         [[users]]\nname = \"{PLAIN_USER}\"\ndatabase = \"{SOURCE}\"\npassword = \"{SCHEMA_ADMIN_PASSWORD}\"\n\
         server_user = \"{PLAIN_ROLE}\"\nserver_password = \"plain\"\n",
        read("users.toml")
    );
    pgdog.write_config(&read("pgdog.toml"), &users);
    run_simple(admin, "RELOAD")
        .await
        .unwrap_or_else(|e| panic!("RELOAD: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_through_pgdog_reaches_the_wal_while_a_stream_reads_the_database() {
    let mut setup = DataSyncSetup::start(DataSyncOptions {
        shards: 2,
        scale: TINY,
        general: "auth_type = \"md5\"\n".into(),
        ..Default::default()
    })
    .await;
    let watch = setup.source_client(SOURCE).await;
    watch
        .query_one(
            "SELECT pg_create_logical_replication_slot($1, 'test_decoding')::text",
            &[&WATCH_SLOT],
        )
        .await
        .unwrap_or_else(|e| panic!("creating the watch slot: {e:?}"));
    let pgdog = setup.start_pgdog();
    let port = pgdog.port();
    let admin = pgdog.admin().await;
    let mut app = pgdog
        .connect(SCHEMA_ADMIN, SCHEMA_ADMIN_PASSWORD, SOURCE)
        .await
        .unwrap_or_else(|e| panic!("connect through pgdog: {e}\n{}", pgdog.log()));

    // No stream reads the database yet: DDL runs as usual, nothing is written.
    assert_eq!(
        command_counts(&app, "CREATE TABLE ddl_before (id int)").await,
        [0]
    );
    expect_messages(&watch, &admin, "before the move", &[]).await;

    // The move: copy, then stream.
    let copy = admin::copy_data(
        &admin,
        &format!("{SOURCE} destination {PUBLICATION} {STREAM_SLOT}"),
    )
    .await;
    admin::wait_streaming(&admin, &copy.task_id, WAIT).await;
    admin::wait_stream_status(
        &admin,
        &copy.task_id,
        "the stream to be listed",
        WAIT,
        |s| s == "streaming",
    )
    .await;
    decoded(&watch).await;

    // Simple query: one message, the client sees only its CommandComplete.
    let create_a = "CREATE TABLE ddl_a (id bigint PRIMARY KEY, v text)";
    assert_eq!(command_counts(&app, create_a).await, [0]);
    expect_messages(&watch, &admin, "simple query", &[(DEFAULT_PATH, create_a)]).await;

    // The search_path the DDL ran with comes first.
    app.batch_execute("CREATE SCHEMA ddl_s").await.unwrap();
    app.batch_execute("SET search_path TO ddl_s, public")
        .await
        .unwrap();
    app.batch_execute("CREATE TABLE ddl_b (id int)")
        .await
        .unwrap();
    app.batch_execute("RESET search_path").await.unwrap();
    expect_messages(
        &watch,
        &admin,
        "search_path",
        &[
            (DEFAULT_PATH, "CREATE SCHEMA ddl_s"),
            ("ddl_s, public", "CREATE TABLE ddl_b (id int)"),
        ],
    )
    .await;

    // Extended protocol (tokio-postgres prepares, then binds and executes in a second Sync
    // group); what follows works.
    let index = "CREATE INDEX ddl_a_v ON ddl_a (v)";
    assert_eq!(app.execute(index, &[]).await.unwrap(), 0);
    let count: i64 = app
        .query_one("SELECT count(*) FROM ddl_a", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0);
    expect_messages(
        &watch,
        &admin,
        "extended protocol",
        &[(DEFAULT_PATH, index)],
    )
    .await;

    // Several statements: only the DDL is carried.
    let index2 = "CREATE INDEX ddl_a_id_v ON ddl_a (id, v)";
    assert_eq!(
        command_counts(
            &app,
            &format!("{index2}; INSERT INTO ddl_a VALUES (1, 'one')")
        )
        .await,
        [0, 1]
    );
    expect_messages(&watch, &admin, "DDL and DML", &[(DEFAULT_PATH, index2)]).await;

    // Plain DML: nothing.
    app.batch_execute(
        "INSERT INTO ddl_a VALUES (2, 'two'); UPDATE ddl_a SET v = 'deux' WHERE id = 2",
    )
    .await
    .unwrap();
    app.execute("DELETE FROM ddl_a WHERE id = $1", &[&2i64])
        .await
        .unwrap();
    let lines = expect_messages(&watch, &admin, "DML", &[]).await;
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("table public.ddl_a: DELETE")),
        "{lines:#?}"
    );

    // Inside a transaction: the message is part of it, before the rows written after the DDL.
    let create_c = "CREATE TABLE ddl_c (id int)";
    {
        let tx = app.transaction().await.unwrap();
        tx.execute(create_c, &[]).await.unwrap();
        tx.execute("INSERT INTO ddl_c VALUES (1)", &[])
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let lines = expect_messages(
        &watch,
        &admin,
        "committed transaction",
        &[(DEFAULT_PATH, create_c)],
    )
    .await;
    assert_in_transaction_before_insert(&lines, "ddl_c");

    // Rolled back: nothing, in either protocol.
    {
        let tx = app.transaction().await.unwrap();
        tx.execute("CREATE TABLE ddl_rb (id int)", &[])
            .await
            .unwrap();
        tx.rollback().await.unwrap();
    }
    app.batch_execute("BEGIN; CREATE TABLE ddl_rb2 (id int); ROLLBACK")
        .await
        .unwrap();
    app.batch_execute("BEGIN").await.unwrap();
    app.batch_execute("CREATE TABLE ddl_rb3 (id int)")
        .await
        .unwrap();
    app.batch_execute("ROLLBACK").await.unwrap();
    expect_messages(&watch, &admin, "rolled back", &[]).await;

    // Failing DDL: the client gets the server's error, nothing is written.
    assert_eq!(
        sqlstate(app.batch_execute("CREATE TABLE ddl_a (id int)").await),
        "42P07"
    );
    assert_eq!(
        sqlstate(
            app.execute("CREATE INDEX ddl_bad ON no_such_table (x)", &[])
                .await
        ),
        "42P01"
    );
    app.batch_execute("BEGIN").await.unwrap();
    assert_eq!(
        sqlstate(
            app.batch_execute("ALTER TABLE no_such_table ADD c int")
                .await
        ),
        "42P01"
    );
    app.batch_execute("ROLLBACK").await.unwrap();
    let one: i32 = app.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    expect_messages(&watch, &admin, "failed DDL", &[]).await;

    // Byte for byte: the messages and transaction status the client would see anyway.
    let mut raw = Raw::login(port, SCHEMA_ADMIN, SCHEMA_ADMIN_PASSWORD, SOURCE).await;
    raw.send(&[query("BEGIN; CREATE TABLE ddl_raw (id int)")])
        .await;
    let reply = raw.until(b'Z').await;
    assert_eq!(tags(&reply), "CCZ");
    assert_eq!(reply[2].1, b"T", "still in the transaction");
    raw.send(&[query("INSERT INTO ddl_raw VALUES (1)"), query("COMMIT")])
        .await;
    let mut reply = raw.until(b'Z').await;
    reply.extend(raw.until(b'Z').await);
    assert_eq!(tags(&reply), "CZCZ");
    assert_eq!(reply[3].1, b"I");
    let lines = expect_messages(
        &watch,
        &admin,
        "raw transaction",
        &[(DEFAULT_PATH, "CREATE TABLE ddl_raw (id int)")],
    )
    .await;
    assert_in_transaction_before_insert(&lines, "ddl_raw");

    // Pipelined behind DDL: answered in order, the DDL's message written before what follows.
    raw.send(&[
        query("CREATE TABLE ddl_pipe (id int)"),
        query("INSERT INTO ddl_pipe VALUES (7)"),
        query("SELECT id FROM ddl_pipe"),
    ])
    .await;
    let mut reply = Vec::new();
    for _ in 0..3 {
        reply.extend(raw.until(b'Z').await);
    }
    assert_eq!(tags(&reply), "CZCZTDCZ");
    assert_eq!(raw::data_row_text(&reply), ["7"]);
    assert!(reply.iter().filter(|m| m.0 == b'Z').all(|m| m.1 == b"I"));
    let lines = expect_messages(
        &watch,
        &admin,
        "pipelined simple queries",
        &[(DEFAULT_PATH, "CREATE TABLE ddl_pipe (id int)")],
    )
    .await;
    assert_before_insert(&lines, "ddl_pipe");

    let alter = "ALTER TABLE ddl_pipe ADD COLUMN note text";
    raw.send(&[
        parse("", alter),
        bind("", "", &[], &[]),
        execute("", 0),
        sync(),
        parse("", "INSERT INTO ddl_pipe VALUES (8, 'x')"),
        bind("", "", &[], &[]),
        execute("", 0),
        sync(),
    ])
    .await;
    let mut reply = raw.until(b'Z').await;
    reply.extend(raw.until(b'Z').await);
    assert_eq!(tags(&reply), "12CZ12CZ");
    let lines = expect_messages(
        &watch,
        &admin,
        "pipelined extended protocol",
        &[(DEFAULT_PATH, alter)],
    )
    .await;
    assert_before_insert(&lines, "ddl_pipe");

    // Session pooling.
    add_users(&mut setup, &admin).await;
    let session = setup
        .start_pgdog()
        .connect(SESSION_USER, SCHEMA_ADMIN_PASSWORD, SOURCE)
        .await
        .unwrap_or_else(|e| panic!("connect as {SESSION_USER}: {e}"));
    let create_s = "CREATE TABLE ddl_session (id int)";
    assert_eq!(command_counts(&session, create_s).await, [0]);
    session
        .execute("ALTER TABLE ddl_session ADD COLUMN v text", &[])
        .await
        .unwrap();
    expect_messages(
        &watch,
        &admin,
        "session pooling",
        &[
            (DEFAULT_PATH, create_s),
            (DEFAULT_PATH, "ALTER TABLE ddl_session ADD COLUMN v text"),
        ],
    )
    .await;

    // The server role may not emit the message: logged, the client's work goes on unharmed
    // (its transaction included).
    watch
        .batch_execute(&format!(
            "CREATE ROLE {PLAIN_ROLE} LOGIN PASSWORD 'plain'; \
             GRANT CREATE ON SCHEMA public TO {PLAIN_ROLE}; \
             REVOKE EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) FROM PUBLIC"
        ))
        .await
        .unwrap_or_else(|e| panic!("creating {PLAIN_ROLE}: {e:?}"));
    let mut plain = setup
        .start_pgdog()
        .connect(PLAIN_USER, SCHEMA_ADMIN_PASSWORD, SOURCE)
        .await
        .unwrap_or_else(|e| panic!("connect as {PLAIN_USER}: {e}"));
    assert_eq!(
        command_counts(&plain, "CREATE TABLE ddl_plain_a (id int)").await,
        [0]
    );
    {
        let tx = plain.transaction().await.unwrap();
        tx.execute("CREATE TABLE ddl_plain_b (id int)", &[])
            .await
            .unwrap();
        tx.execute("INSERT INTO ddl_plain_b VALUES (1)", &[])
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let rows: i64 = plain
        .query_one("SELECT count(*) FROM ddl_plain_a, ddl_plain_b", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0);
    let rows: i64 = plain
        .query_one("SELECT count(*) FROM ddl_plain_b", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "the transaction committed");
    let lines = expect_messages(&watch, &admin, "no permission", &[]).await;
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("table public.ddl_plain_b: INSERT")),
        "{lines:#?}"
    );
    let log = setup.start_pgdog().log();
    assert_eq!(
        log.matches("could not record DDL for the replication stream")
            .count(),
        2,
        "{log}"
    );
    watch
        .batch_execute(
            "GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) TO PUBLIC",
        )
        .await
        .unwrap();

    // The stream stopped: nothing is written any more.
    run_simple(&admin, &format!("STOP_TASK {}", copy.task_id))
        .await
        .unwrap_or_else(|e| panic!("STOP_TASK: {e}"));
    admin::wait_task_end(&admin, &copy.task_id, WAIT).await;
    assert_eq!(
        command_counts(&app, "CREATE TABLE ddl_after (id int)").await,
        [0]
    );
    expect_messages(&watch, &admin, "after the stream stopped", &[]).await;
}
