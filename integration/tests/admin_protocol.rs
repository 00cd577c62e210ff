//! The admin database over the wire: psql and tokio-postgres (simple and extended protocol,
//! binary results), errors with SQLSTATE and hint, refused logins, SHUTDOWN, and the
//! extended protocol spoken byte by byte (row limits, errors mid-batch, invalid messages).

use std::time::Duration;

use integration::raw::{
    bind, close, columns, cstr, describe, error_code, execute, message, parse, query, sync, tags,
    terminate, values, Raw,
};
use integration::{sqlstate, Setup, ADMIN_PASSWORD};
use tokio_postgres::SimpleQueryMessage;

fn setup(general: &str) -> Setup {
    Setup::new(general, "")
}

async fn admin(setup: &Setup) -> tokio_postgres::Client {
    setup.admin().await
}

fn admin_psql(setup: &Setup, args: &[&str]) -> integration::tools::ToolOutput {
    setup.admin_psql(args)
}

/// The rows of a simple query's results, one Vec per result set.
fn result_sets(messages: &[SimpleQueryMessage]) -> Vec<Vec<Vec<Option<String>>>> {
    let mut sets = Vec::new();
    let mut current = Vec::new();
    for message in messages {
        match message {
            SimpleQueryMessage::Row(row) => current.push(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            SimpleQueryMessage::CommandComplete(_) => sets.push(std::mem::take(&mut current)),
            _ => {}
        }
    }
    sets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_runs_show_commands_and_reports_syntax_errors() {
    let setup = setup("");

    let out = admin_psql(&setup, &["-c", "SHOW VERSION"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.trim().starts_with("pgdog "), "{}", out.stdout);

    // Two commands in one query, any case: both results are printed.
    let out = admin_psql(&setup, &["-c", "show pools; SHOW CLIENTS"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().filter(|l| !l.is_empty()).collect();
    assert!(
        lines.iter().any(|l| l.contains("|app|postgres|127.0.0.1|")),
        "no pool row: {}",
        out.stdout
    );
    assert!(
        lines.iter().any(|l| l.contains("|admin|admin|")),
        "no client row for this admin session: {}",
        out.stdout
    );

    // With headers, psql shows the column names it got in RowDescription.
    let out = integration::tools::psql(
        setup.pgdog.port(),
        "admin",
        ADMIN_PASSWORD,
        "admin",
        &["-P", "tuples_only=off", "-c", "SHOW VERSION"],
    );
    assert!(out.stdout.contains("version"), "{}", out.stdout);

    let out = admin_psql(&setup, &["-v", "VERBOSITY=verbose", "-c", "SHOW POLS"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("42601"), "{}", out.stderr);
    assert!(out.stderr.contains("HINT"), "{}", out.stderr);
    assert!(out.stderr.contains("SHOW POOLS"), "{}", out.stderr);

    // An empty query and a comment-only line are fine.
    let out = admin_psql(&setup, &["-c", ";"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_simple_and_extended_protocol() {
    let setup = setup("");
    let client = admin(&setup).await;

    // Simple protocol: several results, then an error with code and hint.
    let messages = client
        .simple_query("SHOW VERSION; show pools")
        .await
        .unwrap();
    let sets = result_sets(&messages);
    assert_eq!(sets.len(), 2, "{messages:?}");
    assert_eq!(sets[0].len(), 1);
    assert!(sets[1].iter().any(|row| row[1].as_deref() == Some("app")));

    let error = client.simple_query("SHOW POLS").await.unwrap_err();
    let db = error.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "42601");
    assert!(
        db.hint().unwrap_or_default().contains("SHOW POOLS"),
        "{db:?}"
    );
    // Not an admin command: the parser's error, the connection stays usable.
    let error = client.simple_query("BEGIN").await.unwrap_err();
    assert_eq!(sqlstate(&error).as_deref(), Some("42601"));

    // Extended protocol: tokio-postgres asks for binary results.
    let rows = client.query("SHOW POOLS", &[]).await.unwrap();
    assert!(!rows.is_empty());
    let row = &rows[0];
    let id: i64 = row.get("id");
    assert!(id >= 0);
    let database: String = row.get("database");
    assert_eq!(database, "app");
    let user: String = row.get("user");
    assert_eq!(user, "postgres");
    let port: i64 = row.get("port");
    assert_eq!(port, i64::from(setup.cluster.port()));
    let paused: bool = row.get("paused");
    assert!(!paused);
    let banned: bool = row.get("banned");
    assert!(!banned);

    // SHOW CLIENTS has numeric columns: the rows still arrive, text and bigint read fine.
    let rows = client.query("SHOW CLIENTS", &[]).await.unwrap();
    assert!(rows.iter().any(|r| r.get::<_, String>("user") == "admin"));

    // A named statement executed twice.
    let statement = client.prepare("SHOW VERSION").await.unwrap();
    assert_eq!(statement.params().len(), 0);
    assert_eq!(statement.columns()[0].name(), "version");
    for _ in 0..2 {
        let rows = client.query(&statement, &[]).await.unwrap();
        assert_eq!(rows.len(), 1);
        let version: String = rows[0].get(0);
        assert!(version.starts_with("pgdog "), "{version}");
    }
    let statement = client.prepare("SHOW DATABASES").await.unwrap();
    for _ in 0..2 {
        let rows = client.query(&statement, &[]).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get::<_, String>("name"), "app");
        assert_eq!(
            rows[0].get::<_, i64>("port"),
            i64::from(setup.cluster.port())
        );
    }

    // A command without rows runs at Execute.
    assert_eq!(client.execute("RESUME", &[]).await.unwrap(), 0);

    // Parse errors: a bad command, several commands, a transaction command.
    for (sql, message) in [
        ("SHOW POLS", None),
        (
            "SHOW POOLS; SHOW CLIENTS",
            Some("cannot insert multiple commands into a prepared statement"),
        ),
        ("BEGIN", None),
    ] {
        let error = client.prepare(sql).await.unwrap_err();
        assert_eq!(sqlstate(&error).as_deref(), Some("42601"), "{sql}: {error}");
        if let Some(message) = message {
            assert_eq!(integration::error_message(&error), message);
        }
    }
    // Still usable after the errors.
    let rows = client.query("SHOW VERSION", &[]).await.unwrap();
    assert_eq!(rows.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_admin_logins_are_refused() {
    let setup = setup("");
    for (user, password) in [("nobody", ADMIN_PASSWORD), ("admin", "wrong")] {
        match setup.pgdog.connect(user, password, "admin").await {
            Ok(_) => panic!("{user}/{password} should not log in to the admin database"),
            Err(e) => assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e}"),
        }
    }
    // The application's user cannot use the admin database either.
    let error = match setup.pgdog.connect("postgres", "postgres", "admin").await {
        Ok(_) => panic!("postgres must not log in to the admin database"),
        Err(e) => e,
    };
    assert_eq!(sqlstate(&error).as_deref(), Some("28P01"));
    admin(&setup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_before_closing() {
    let setup = setup("");
    let (watched, connection) = setup
        .pgdog
        .connect_watched("admin", ADMIN_PASSWORD, "admin")
        .await
        .unwrap();
    let client = admin(&setup).await;
    let messages = client.simple_query("SHUTDOWN").await.unwrap();
    assert!(
        matches!(
            messages.last(),
            Some(SimpleQueryMessage::CommandComplete(_))
        ),
        "{messages:?}"
    );
    // Idle admin sessions are told why they are closed.
    let ended = tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the idle admin session was not closed")
        .unwrap();
    let error = ended.expect_err("the session should end with an error");
    assert_eq!(sqlstate(&error).as_deref(), Some("57P01"), "{error}");
    drop(watched);
}

// ---- The extended protocol byte by byte. ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_byte_by_byte() {
    let setup = setup("auth_type = \"md5\"");
    let port = setup.pgdog.port();
    let mut raw = Raw::login(port, "admin", ADMIN_PASSWORD, "admin").await;
    assert_eq!(raw.auth(), 5, "md5 authentication expected");

    // SHOW CONFIG has many rows: fetch them two at a time from a named portal, in binary.
    raw.send(&[
        parse("config", "show config"),
        describe(b'S', "config"),
        bind("p", "config", &[], &[1]),
        describe(b'P', "p"),
        execute("p", 2),
        execute("p", 2),
        execute("p", 0),
        sync(),
    ])
    .await;
    let reply = raw.until(b'Z').await;
    let t = tags(&reply);
    assert!(t.starts_with("1tT2TDDsDDsD"), "{t}");
    assert!(t.ends_with("CZ"), "{t}");
    // Describe 'S' reports text formats, Describe 'P' the portal's binary ones.
    let statement_columns = columns(&reply[2].1);
    assert_eq!(
        statement_columns,
        vec![
            ("name".to_string(), 25, 0),
            ("value".to_string(), 25, 0),
            ("tunable".to_string(), 16, 0)
        ]
    );
    let portal_columns = columns(&reply[4].1);
    assert!(
        portal_columns.iter().all(|c| c.2 == 1),
        "{portal_columns:?}"
    );
    let rows: Vec<_> = reply.iter().filter(|m| m.0 == b'D').collect();
    assert!(rows.len() > 4);
    for (_, body) in &rows {
        let row = values(body);
        // bool in binary is one byte.
        assert!(
            matches!(row[2].as_deref(), Some([0]) | Some([1])),
            "{row:?}"
        );
    }
    let names: Vec<String> = rows
        .iter()
        .map(|(_, body)| String::from_utf8(values(body)[0].clone().unwrap()).unwrap())
        .collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "a row was sent twice: {names:?}");
    assert_eq!(reply[reply.len() - 2].1, cstr("SHOW"));

    // The portal is gone after Sync; the statement stays, and per-column formats work.
    raw.send(&[
        execute("p", 0),
        sync(),
        bind("", "config", &[], &[0, 0, 1]),
        execute("", 1),
        sync(),
    ])
    .await;
    let reply = raw.until(b'Z').await;
    assert_eq!(tags(&reply), "EZ");
    assert_eq!(error_code(&reply[0].1), "34000");
    let reply = raw.until(b'Z').await;
    assert_eq!(tags(&reply), "2DsZ");
    let row = values(&reply[1].1);
    assert!(String::from_utf8(row[1].clone().unwrap()).is_ok());
    assert!(matches!(row[2].as_deref(), Some([0]) | Some([1])));

    // A wrong number of result formats is an error; messages until Sync are skipped.
    raw.send(&[
        bind("", "config", &[], &[0, 1]),
        execute("", 0),
        parse("", "SHOW VERSION"),
        sync(),
    ])
    .await;
    let reply = raw.until(b'Z').await;
    assert_eq!(tags(&reply), "2EZ", "{reply:?}");
    assert_eq!(error_code(&reply[1].1), "08P01");

    // A syntax error at Parse: 42601, the rest of the batch is skipped.
    raw.send(&[
        parse("bad", "SHOW POLS"),
        bind("", "bad", &[], &[]),
        execute("", 0),
        sync(),
    ])
    .await;
    let reply = raw.until(b'Z').await;
    assert_eq!(tags(&reply), "EZ");
    assert_eq!(error_code(&reply[0].1), "42601");

    // Numeric columns in binary: SHOW CLIENTS' wait_time ("x.yyy" ms) has dscale 3.
    raw.send(&[
        parse("", "SHOW CLIENTS"),
        bind("", "", &[], &[1]),
        describe(b'P', ""),
        execute("", 0),
        sync(),
    ])
    .await;
    let reply = raw.until(b'Z').await;
    let t = tags(&reply);
    assert!(t.starts_with("12TD"), "{t}");
    let cols = columns(&reply[2].1);
    let wait_time = cols.iter().position(|c| c.0 == "wait_time").unwrap();
    assert_eq!(cols[wait_time].1, 1700);
    let row = values(&reply[3].1);
    let numeric = row[wait_time].clone().unwrap();
    assert!(numeric.len() >= 8);
    let ndigits = i16::from_be_bytes([numeric[0], numeric[1]]) as usize;
    assert_eq!(numeric.len(), 8 + 2 * ndigits);
    assert_eq!(&numeric[4..6], &[0, 0], "positive");
    assert_eq!(&numeric[6..8], &3u16.to_be_bytes(), "dscale 3");

    // Commands without rows: NoData at Describe, run at Execute; an empty query; Close.
    raw.send(&[
        parse("resume", "RESUME"),
        describe(b'S', "resume"),
        bind("", "resume", &[], &[]),
        describe(b'P', ""),
        execute("", 0),
        parse("", ""),
        bind("", "", &[], &[]),
        describe(b'P', ""),
        execute("", 0),
        close(b'S', "resume"),
        close(b'S', "never-prepared"),
        bind("", "resume", &[], &[]),
        sync(),
    ])
    .await;
    let reply = raw.until(b'Z').await;
    assert_eq!(tags(&reply), "1tn2nC12nI33EZ");
    assert_eq!(reply[5].1, cstr("RESUME"));
    assert_eq!(error_code(&reply[12].1), "26000");

    // Simple queries on the same connection, pipelined: the whole text is parsed before
    // anything runs, so one bad command fails all of it.
    raw.send(&[
        query("SHOW VERSION; SHOW POLS"),
        query(""),
        query("SHOW VERSION; SHOW BANS"),
    ])
    .await;
    let reply = raw.until(b'Z').await;
    assert_eq!(tags(&reply), "EZ");
    assert_eq!(error_code(&reply[0].1), "42601");
    let reply = raw.until(b'Z').await;
    assert_eq!(tags(&reply), "IZ");
    let reply = raw.until(b'Z').await;
    let t = tags(&reply);
    assert!(t.starts_with("TDCT") && t.ends_with("CZ"), "{t}");

    // Duplicate names.
    raw.send(&[
        parse("dup", "SHOW VERSION"),
        parse("dup", "SHOW VERSION"),
        sync(),
    ])
    .await;
    let reply = raw.until(b'Z').await;
    assert_eq!(tags(&reply), "1EZ");
    assert_eq!(error_code(&reply[1].1), "42P05");

    // Bind with a parameter: there are none to bind.
    raw.send(&[bind("", "dup", &["1"], &[]), sync()]).await;
    let reply = raw.until(b'Z').await;
    assert_eq!(tags(&reply), "EZ");
    assert_eq!(error_code(&reply[0].1), "08P01");

    // Terminate closes quietly.
    raw.send(&[terminate()]).await;
    assert_eq!(tags(&raw.until_closed().await), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_messages_close_the_admin_session() {
    let setup = setup("auth_type = \"md5\"");
    let port = setup.pgdog.port();
    let truncated_bind = message(b'B', b"\0\0\0");
    let cases: [(&str, Vec<u8>); 5] = [
        ("CopyData", message(b'd', b"data")),
        ("FunctionCall", message(b'F', &[0; 8])),
        ("unknown type", message(b'z', &[])),
        ("truncated Bind", truncated_bind),
        ("bad length", vec![b'Q', 0, 0, 0, 1]),
    ];
    for (name, bytes) in cases {
        let mut raw = Raw::login(port, "admin", ADMIN_PASSWORD, "admin").await;
        assert_eq!(raw.auth(), 5, "md5 authentication expected");
        raw.send(&[bytes]).await;
        let reply = raw.until_closed().await;
        assert_eq!(tags(&reply), "E", "{name}: {reply:?}");
        assert_eq!(error_code(&reply[0].1), "08P01", "{name}");
        let severity = reply[0].1.split(|b| *b == 0).next().unwrap().to_vec();
        assert_eq!(severity, b"SFATAL", "{name}");
    }
    // pgdog is still up.
    let client = admin(&setup).await;
    assert_eq!(client.query("SHOW VERSION", &[]).await.unwrap().len(), 1);
}
