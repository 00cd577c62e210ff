//! Extended-protocol flows of real drivers, spoken byte by byte: asyncpg-style Parse, Describe and
//! Flush before Sync, JDBC-style named statements, pipelined batches, and errors mid-pipeline,
//! all in transaction mode where every Sync may land on another server.

use integration::raw::{
    bind, close, data_row_text, describe, execute, flush, parse, query, sync, tags, Raw,
};
use integration::Setup;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_style_parse_describe_flush_then_execute() {
    let setup = Setup::new("auth_type = \"trust\"\ndefault_pool_size = 2", "");
    let mut a = Raw::login(setup.pgdog.port(), "postgres", "postgres", "app").await;
    let mut b = Raw::login(setup.pgdog.port(), "postgres", "postgres", "app").await;
    // asyncpg prepares with Parse + Describe + Flush and reads the answers before any Sync.
    a.send(&[
        parse("__asyncpg_stmt_1__", "SELECT $1::int * 3"),
        describe(b'S', "__asyncpg_stmt_1__"),
        flush(),
    ])
    .await;
    assert_eq!(tags(&a.until(b'T').await), "1tT");
    a.send(&[sync()]).await;
    assert_eq!(tags(&a.until(b'Z').await), "Z");
    // Another client holds a transaction, so A's next transaction may run elsewhere.
    b.send(&[query("BEGIN")]).await;
    b.until(b'Z').await;
    for i in 1..=5 {
        a.send(&[
            bind("", "__asyncpg_stmt_1__", &[&i.to_string()], &[]),
            execute("", 0),
            sync(),
        ])
        .await;
        let replies = a.until(b'Z').await;
        assert_eq!(tags(&replies), "2DCZ");
        assert_eq!(data_row_text(&replies), vec![(i * 3).to_string()]);
    }
    b.send(&[query("COMMIT")]).await;
    b.until(b'Z').await;
    // The same statement name on another client is its own statement.
    b.send(&[
        parse("__asyncpg_stmt_1__", "SELECT 'b:' || $1"),
        bind("", "__asyncpg_stmt_1__", &["x"], &[]),
        execute("", 0),
        sync(),
    ])
    .await;
    let replies = b.until(b'Z').await;
    assert_eq!(data_row_text(&replies), vec!["b:x".to_string()]);
    a.send(&[
        bind("", "__asyncpg_stmt_1__", &["7"], &[]),
        execute("", 0),
        sync(),
    ])
    .await;
    assert_eq!(data_row_text(&a.until(b'Z').await), vec!["21".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_batch_with_an_error_skips_to_sync_and_recovers() {
    let setup = Setup::new("auth_type = \"trust\"\ndefault_pool_size = 1", "");
    let mut c = Raw::login(setup.pgdog.port(), "postgres", "postgres", "app").await;
    c.send(&[
        parse("ok", "SELECT 1"),
        parse("bad", "SELECT * FROM no_such_table"),
        bind("", "ok", &[], &[]),
        execute("", 0),
        sync(),
    ])
    .await;
    // ParseComplete for "ok", then the error; the rest is skipped until Sync.
    let replies = c.until(b'Z').await;
    assert_eq!(tags(&replies), "1EZ");
    // "bad" never got prepared; "ok" did and works, on the next Sync, even after Close/re-Parse.
    c.send(&[
        bind("", "ok", &[], &[]),
        execute("", 0),
        close(b'S', "ok"),
        parse("ok", "SELECT 2"),
        bind("", "ok", &[], &[]),
        execute("", 0),
        sync(),
    ])
    .await;
    let replies = c.until(b'Z').await;
    assert_eq!(tags(&replies), "2DC312DCZ");
    assert_eq!(
        data_row_text(&replies),
        vec!["1".to_string(), "2".to_string()]
    );
    c.send(&[bind("", "bad", &[], &[]), execute("", 0), sync()])
        .await;
    let replies = c.until(b'Z').await;
    assert_eq!(tags(&replies), "EZ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_style_named_statements_across_many_clients() {
    // JDBC switches to named statements (S_1, S_2, ...) after a few executions; every client
    // uses the same names for different SQL.
    let setup = Setup::new("auth_type = \"trust\"\ndefault_pool_size = 2", "");
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(Raw::login(setup.pgdog.port(), "postgres", "postgres", "app").await);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(&[
            parse("S_1", &format!("SELECT {i} + $1::int")),
            bind("", "S_1", &["100"], &[]),
            execute("", 0),
            sync(),
        ])
        .await;
        assert_eq!(
            data_row_text(&c.until(b'Z').await),
            vec![(100 + i).to_string()]
        );
    }
    for round in 0..10 {
        for (i, c) in clients.iter_mut().enumerate() {
            c.send(&[
                bind("", "S_1", &[&round.to_string()], &[]),
                execute("", 0),
                sync(),
            ])
            .await;
            assert_eq!(
                data_row_text(&c.until(b'Z').await),
                vec![(round + i).to_string()]
            );
        }
    }
}
