//! Sharded COPY on three shards. `COPY ... FROM STDIN` in text, CSV (HEADER, quoted fields
//! with delimiters, quotes and newlines, custom delimiters and quotes) and binary format, from
//! tokio-postgres, psql's `\copy` and a raw client cutting the data into tiny CopyData
//! messages: every row must land on the shard `satisfies_hash_partition` names, the count must
//! be the total, and the table must equal the reference database fed the same data. A bad row
//! fails the whole COPY and leaves no row on any shard. `COPY ... TO STDOUT` returns every
//! shard's rows once (one header and trailer in binary).

use std::pin::pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use integration::raw::{message, query, Raw};
use integration::sharded::{
    omnisharded_tables, run_simple, sharded_table, QueryError, ShardedSetup,
};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Client;

const SCHEMA: &str = "
    CREATE TABLE events (id bigint PRIMARY KEY, name text, note text, qty int);
    CREATE TABLE counters (id integer PRIMARY KEY, n int);
    CREATE TABLE tags (name varchar(50) PRIMARY KEY, n int);
    CREATE TABLE devices (id uuid PRIMARY KEY, label text);
    CREATE TABLE countries (code text PRIMARY KEY, name text);
";

async fn setup() -> ShardedSetup {
    let sharding = [
        sharded_table("events", "id", "bigint"),
        sharded_table("counters", "id", "bigint"),
        sharded_table("tags", "name", "varchar"),
        sharded_table("devices", "id", "uuid"),
        omnisharded_tables(&["countries"]),
    ]
    .concat();
    let setup = ShardedSetup::start(3, "", &sharding);
    setup.schema(SCHEMA).await;
    setup
}

/// COPY FROM STDIN with tokio-postgres, the data sent in chunks of `chunk` bytes.
async fn copy_in(client: &Client, sql: &str, data: &[u8], chunk: usize) -> Result<u64, QueryError> {
    let work = async {
        let sink = client.copy_in::<_, Bytes>(sql).await?;
        let mut sink = pin!(sink);
        for piece in data.chunks(chunk.max(1)) {
            sink.send(Bytes::copy_from_slice(piece)).await?;
        }
        Ok(sink.as_mut().finish().await?)
    };
    within_time_limit(work).await
}

/// How long one COPY may take before the test calls it hung.
const COPY_TIME_LIMIT: Duration = Duration::from_secs(30);

/// `work`'s result, or an error saying it hung.
async fn within_time_limit<T>(
    work: impl std::future::Future<Output = Result<T, QueryError>>,
) -> Result<T, QueryError> {
    match tokio::time::timeout(COPY_TIME_LIMIT, work).await {
        Ok(result) => result,
        Err(_) => Err(QueryError {
            code: String::new(),
            message: format!("no answer within {COPY_TIME_LIMIT:?}: the COPY hangs"),
        }),
    }
}

/// A binary COPY with tokio-postgres's [`BinaryCopyInWriter`]: `rows` of `types`.
async fn binary_copy(
    client: &Client,
    sql: &str,
    types: &[Type],
    rows: &[Vec<&(dyn ToSql + Sync)>],
) -> Result<u64, QueryError> {
    let work = async {
        let sink = client.copy_in(sql).await?;
        let mut writer = pin!(BinaryCopyInWriter::new(sink, types));
        for row in rows {
            writer.as_mut().write(row).await?;
        }
        Ok(writer.as_mut().finish().await?)
    };
    within_time_limit(work).await
}

/// The same COPY through pgdog and on the reference; pgdog's count (or error).
async fn copy_both(
    setup: &ShardedSetup,
    sql: &str,
    data: &[u8],
    chunk: usize,
) -> Result<u64, QueryError> {
    let reference = setup.reference().await;
    let want = copy_in(&reference, sql, data, 1 << 16)
        .await
        .unwrap_or_else(|e| panic!("the reference rejects {sql}: {e}"));
    let pgdog = setup.connect().await;
    let got = copy_in(&pgdog, sql, data, chunk).await?;
    assert_eq!(got, want, "row count of {sql}");
    Ok(got)
}

/// What a raw COPY FROM STDIN got back: CommandComplete tags and the error's SQLSTATE.
async fn raw_copy_in(
    raw: &mut Raw,
    sql: &str,
    data: &[u8],
    chunk: usize,
) -> (Vec<String>, Option<String>) {
    raw.send(&[query(sql)]).await;
    let mut tags = Vec::new();
    let mut error = None;
    loop {
        let (tag, body) = raw.next().await;
        match tag {
            b'G' => break,
            b'E' => error = Some(integration::raw::error_code(&body)),
            b'Z' => return (tags, error),
            _ => {}
        }
    }
    let mut messages: Vec<Vec<u8>> = data
        .chunks(chunk.max(1))
        .map(|c| message(b'd', c))
        .collect();
    messages.push(message(b'c', &[]));
    raw.send(&messages).await;
    for (tag, body) in raw.until(b'Z').await {
        match tag {
            b'C' => tags.push(String::from_utf8_lossy(&body[..body.len() - 1]).into_owned()),
            b'E' => error = Some(integration::raw::error_code(&body)),
            _ => {}
        }
    }
    (tags, error)
}

/// What a raw COPY TO STDOUT got back: the CopyOutResponse body, the data, the tags and the
/// error's SQLSTATE.
struct CopyOut {
    response: Vec<u8>,
    data: Vec<u8>,
    tags: Vec<String>,
    error: Option<String>,
}

async fn raw_copy_out(raw: &mut Raw, sql: &str) -> CopyOut {
    raw.send(&[query(sql)]).await;
    let mut out = CopyOut {
        response: Vec::new(),
        data: Vec::new(),
        tags: Vec::new(),
        error: None,
    };
    for (tag, body) in raw.until(b'Z').await {
        match tag {
            b'H' => out.response = body,
            b'd' => out.data.extend_from_slice(&body),
            b'C' => out
                .tags
                .push(String::from_utf8_lossy(&body[..body.len() - 1]).into_owned()),
            b'E' => out.error = Some(integration::raw::error_code(&body)),
            _ => {}
        }
    }
    out
}

/// Lines of `text`, sorted.
fn sorted_lines(text: &[u8]) -> Vec<String> {
    let mut lines: Vec<String> = String::from_utf8_lossy(text)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// The 300 rows of `events` in text format, with escapes, NULLs and non-ASCII text.
fn text_rows(ids: impl Iterator<Item = i64>) -> String {
    let mut out = String::new();
    for (i, id) in ids.enumerate() {
        let name = match i % 5 {
            0 => format!("tab\\there {i}"),
            1 => format!("back\\\\slash {i}"),
            2 => format!("żółć 🦀 {i}"),
            3 => format!("newline\\nin value {i}"),
            _ => format!("plain {i}"),
        };
        let note = if i % 4 == 0 {
            "\\N".to_string()
        } else {
            format!("note {i}")
        };
        out.push_str(&format!("{id}\t{name}\t{note}\t{}\n", i % 50));
    }
    out
}

/// Keys spread over the whole bigint range, negatives included.
fn spread_ids(n: i64) -> impl Iterator<Item = i64> {
    (1..=n).map(|i| i * 7919 - 1_000_000 + (i % 3) * (1 << 40))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_text_rows_land_on_their_shards() {
    let setup = setup().await;
    let data = text_rows(spread_ids(300));
    let n = copy_both(&setup, "COPY events FROM STDIN", data.as_bytes(), 4000)
        .await
        .unwrap_or_else(|e| panic!("COPY events FROM STDIN: {e}"));
    assert_eq!(n, 300);
    setup.assert_placement("events", "id", "bigint").await;
    let counts = setup.counts("events", "").await;
    assert!(
        counts.iter().all(|c| *c > 0),
        "every shard got rows: {counts:?}"
    );

    // A column list with the key not first.
    let data: String = (0..50)
        .map(|i| format!("listed {i}\t{}\n", 5_000_000 + i))
        .collect();
    copy_both(
        &setup,
        "COPY events (name, id) FROM STDIN",
        data.as_bytes(),
        100,
    )
    .await
    .unwrap_or_else(|e| panic!("COPY with a column list: {e}"));
    // The optional end-of-data marker.
    let data = "6000001\twith marker\t\\N\t1\n6000002\twith marker\t\\N\t2\n\\.\n";
    copy_both(&setup, "COPY events FROM STDIN", data.as_bytes(), 7)
        .await
        .unwrap_or_else(|e| panic!("COPY with \\.: {e}"));
    // Tiny CopyData messages that cut rows, escapes and UTF-8 characters anywhere.
    let data = text_rows(spread_ids(40).map(|id| id + 3));
    let mut raw = setup.raw().await;
    let (tags, error) = raw_copy_in(&mut raw, "COPY events FROM STDIN", data.as_bytes(), 3).await;
    assert_eq!((tags, error), (vec!["COPY 40".to_string()], None));
    copy_in(
        &setup.reference().await,
        "COPY events FROM STDIN",
        data.as_bytes(),
        1 << 16,
    )
    .await
    .unwrap();

    setup.assert_placement("events", "id", "bigint").await;
    setup.assert_same("SELECT * FROM events").await;

    // varchar and uuid keys in text format.
    let data: String = (0..60).map(|i| format!("tag {i} ł\t{i}\n")).collect();
    copy_both(&setup, "COPY tags FROM STDIN", data.as_bytes(), 50)
        .await
        .unwrap_or_else(|e| panic!("COPY tags: {e}"));
    setup.assert_placement("tags", "name", "varchar").await;
    let data: String = (0..60u64)
        .map(|i| format!("{}\tdevice {i}\n", uuid_text(i)))
        .collect();
    copy_both(&setup, "COPY devices FROM STDIN", data.as_bytes(), 50)
        .await
        .unwrap_or_else(|e| panic!("COPY devices: {e}"));
    setup.assert_placement("devices", "id", "uuid").await;
    setup.assert_same("SELECT * FROM tags").await;
    setup.assert_same("SELECT * FROM devices").await;
}

/// A uuid for `i` in one of the text forms PostgreSQL accepts.
fn uuid_text(i: u64) -> String {
    let canonical = uuid(i);
    match i % 4 {
        0 => canonical,
        1 => canonical.to_uppercase(),
        2 => format!("{{{canonical}}}"),
        _ => canonical.replace('-', ""),
    }
}

fn uuid(i: u64) -> String {
    let a = (i.wrapping_mul(2_654_435_761)) & 0xffff_ffff;
    format!(
        "{a:08x}-{:04x}-4{:03x}-9000-{i:012x}",
        (i * 31) & 0xffff,
        i & 0xfff
    )
}

fn uuid_bytes(text: &str) -> [u8; 16] {
    let hex: String = text.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_csv_with_header_quotes_newlines_and_custom_delimiters() {
    let setup = setup().await;
    let mut data = String::from("id,name,note,qty\n");
    for i in 0..200i64 {
        let id = i * 104_729 - 7_000_000;
        let row = match i % 6 {
            0 => format!("{id},\"quoted, with comma {i}\",note,{}\n", i % 9),
            1 => format!(
                "{id},\"multi\nline\r\nvalue {i}\",\"also\nmulti\",{}\n",
                i % 9
            ),
            2 => format!("{id},\"with \"\"quotes\"\" {i}\",,{}\n", i % 9),
            3 => format!("\"{id}\",plain {i},\"\",{}\n", i % 9),
            4 => format!("{id},\"\\back\\slash {i}\",\"a,b,\"\"c\"\"\",\n"),
            _ => format!("{id},żółć {i},\"\n\",{}\n", i % 9),
        };
        data.push_str(&row);
    }
    let n = copy_both(
        &setup,
        "COPY events FROM STDIN WITH (FORMAT csv, HEADER true)",
        data.as_bytes(),
        333,
    )
    .await
    .unwrap_or_else(|e| panic!("CSV with HEADER: {e}"));
    assert_eq!(n, 200);
    // The old syntax, and rows cut into tiny messages.
    let data: String = (0..30)
        .map(|i| format!("{},\"old, syntax\",,{i}\n", 9_000_000 + i))
        .collect();
    let mut raw = setup.raw().await;
    let (tags, error) = raw_copy_in(
        &mut raw,
        "COPY events FROM STDIN WITH CSV",
        data.as_bytes(),
        2,
    )
    .await;
    assert_eq!(
        (tags, error),
        (vec!["COPY 30".to_string()], None),
        "COPY ... WITH CSV"
    );
    copy_in(
        &setup.reference().await,
        "COPY events FROM STDIN WITH CSV",
        data.as_bytes(),
        1 << 16,
    )
    .await
    .unwrap();
    setup.assert_placement("events", "id", "bigint").await;
    setup.assert_same("SELECT * FROM events").await;

    // A custom delimiter, with the delimiter inside quoted keys.
    let data: String = (0..80)
        .map(|i| match i % 3 {
            0 => format!("\"a;b {i}\";{i}\n"),
            1 => format!("plain {i};{i}\n"),
            _ => format!("\"quo\"\"ted {i}\";{i}\n"),
        })
        .collect();
    copy_both(
        &setup,
        "COPY tags FROM STDIN WITH (FORMAT csv, DELIMITER ';')",
        data.as_bytes(),
        64,
    )
    .await
    .unwrap_or_else(|e| panic!("CSV with DELIMITER ';': {e}"));
    // A custom quote character.
    let data: String = (0..40).map(|i| format!("'it''s, {i}',{i}\n")).collect();
    copy_both(
        &setup,
        "COPY tags FROM STDIN WITH (FORMAT csv, QUOTE '''')",
        data.as_bytes(),
        64,
    )
    .await
    .unwrap_or_else(|e| panic!("CSV with QUOTE: {e}"));
    setup.assert_placement("tags", "name", "varchar").await;
    setup.assert_same("SELECT * FROM tags").await;

    // uuid keys, '|' as delimiter, a header.
    let mut data = String::from("id|label\n");
    for i in 0..90u64 {
        data.push_str(&format!("{}|\"label | {i}\"\n", uuid_text(i)));
    }
    copy_both(
        &setup,
        "COPY devices FROM STDIN WITH (FORMAT csv, DELIMITER '|', HEADER)",
        data.as_bytes(),
        100,
    )
    .await
    .unwrap_or_else(|e| panic!("CSV uuid: {e}"));
    setup.assert_placement("devices", "id", "uuid").await;
    setup.assert_same("SELECT * FROM devices").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_binary_rows_land_on_their_shards() {
    let setup = setup().await;
    let ids: Vec<i64> = spread_ids(300).collect();
    let names: Vec<String> = (0..300).map(|i| format!("binary\t{i} ż")).collect();
    let notes: Vec<Option<String>> = (0..300)
        .map(|i| (i % 3 != 0).then(|| format!("note {i}")))
        .collect();
    let qty: Vec<i32> = (0..300).collect();
    let types = [Type::INT8, Type::TEXT, Type::TEXT, Type::INT4];
    let mut counts = Vec::new();
    let rows: Vec<Vec<&(dyn ToSql + Sync)>> = (0..300)
        .map(|i| {
            let row: Vec<&(dyn ToSql + Sync)> = vec![&ids[i], &names[i], &notes[i], &qty[i]];
            row
        })
        .collect();
    let sql = "COPY events (id, name, note, qty) FROM STDIN (FORMAT binary)";
    for (client, name) in [
        (setup.reference().await, "the reference"),
        (setup.connect().await, "pgdog"),
    ] {
        let n = binary_copy(&client, sql, &types, &rows)
            .await
            .unwrap_or_else(|e| panic!("binary COPY through {name}: {e}"));
        counts.push(n);
    }
    assert_eq!(counts, vec![300, 300]);
    setup.assert_placement("events", "id", "bigint").await;
    setup.assert_same("SELECT * FROM events").await;

    // An integer (4-byte) key.
    let pgdog = setup.connect().await;
    let keys: Vec<(i32, i32)> = (-50..50).map(|i| (i, i * 2)).collect();
    let rows: Vec<Vec<&(dyn ToSql + Sync)>> = keys
        .iter()
        .map(|(i, n)| {
            let row: Vec<&(dyn ToSql + Sync)> = vec![i, n];
            row
        })
        .collect();
    let n = binary_copy(
        &pgdog,
        "COPY counters FROM STDIN BINARY",
        &[Type::INT4, Type::INT4],
        &rows,
    )
    .await
    .unwrap_or_else(|e| panic!("binary COPY with an int4 key: {e}"));
    assert_eq!(n, 100);
    setup.assert_placement("counters", "id", "bigint").await;

    // uuid and varchar keys, the stream written by hand and cut into small messages.
    let mut stream = binary_header();
    for i in 0..70u64 {
        let id = uuid_bytes(&uuid(i));
        let label = format!("hand {i}");
        binary_tuple(&mut stream, &[Some(&id), Some(label.as_bytes())]);
    }
    stream.extend_from_slice(&(-1i16).to_be_bytes());
    let mut raw = setup.raw().await;
    let (tags, error) = raw_copy_in(
        &mut raw,
        "COPY devices FROM STDIN WITH (FORMAT binary)",
        &stream,
        5,
    )
    .await;
    assert_eq!((tags, error), (vec!["COPY 70".to_string()], None));
    setup.assert_placement("devices", "id", "uuid").await;
    let mut stream = binary_header();
    for i in 0..70i32 {
        let name = format!("bin tag {i} ł");
        binary_tuple(
            &mut stream,
            &[Some(name.as_bytes()), Some(&i.to_be_bytes())],
        );
    }
    stream.extend_from_slice(&(-1i16).to_be_bytes());
    let (tags, error) = raw_copy_in(
        &mut raw,
        "COPY tags FROM STDIN WITH (FORMAT binary)",
        &stream,
        11,
    )
    .await;
    assert_eq!((tags, error), (vec!["COPY 70".to_string()], None));
    setup.assert_placement("tags", "name", "varchar").await;
    assert_eq!(setup.counts("tags", "").await.iter().sum::<i64>(), 70);
}

/// The binary COPY signature, flags and an empty header extension.
fn binary_header() -> Vec<u8> {
    let mut out = b"PGCOPY\n\xff\r\n\0".to_vec();
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    out
}

/// One binary COPY tuple.
fn binary_tuple(out: &mut Vec<u8>, fields: &[Option<&[u8]>]) {
    out.extend_from_slice(&(fields.len() as i16).to_be_bytes());
    for field in fields {
        match field {
            Some(value) => {
                out.extend_from_slice(&(value.len() as i32).to_be_bytes());
                out.extend_from_slice(value);
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_copy_from_files_in_text_csv_and_binary() {
    let setup = setup().await;
    let dir = setup.pgdog.dir().to_path_buf();
    let text = dir.join("events.txt");
    std::fs::write(&text, text_rows(spread_ids(120))).unwrap();
    let csv = dir.join("events.csv");
    let rows: String = (0..80)
        .map(|i| format!("{},\"csv, {i}\",\"multi\nline\",{i}\n", 3_000_000 + i * 17))
        .collect();
    std::fs::write(&csv, format!("id,name,note,qty\n{rows}")).unwrap();
    for (file, options) in [(&text, ""), (&csv, " WITH (FORMAT csv, HEADER)")] {
        let command = format!("\\copy events FROM '{}'{options}", file.display());
        let out = setup.psql(&["-c", &command]);
        assert_eq!(out.code, 0, "{command}: {}", out.stderr);
        let expected = if options.is_empty() {
            "COPY 120"
        } else {
            "COPY 80"
        };
        assert_eq!(out.stdout.trim(), expected, "{command}");
        let out = setup.psql_direct("reference", &["-c", &command]);
        assert_eq!(out.code, 0, "{command} on the reference: {}", out.stderr);
    }
    setup.assert_placement("events", "id", "bigint").await;
    setup.assert_same("SELECT * FROM events").await;

    // Binary: exported from the reference, imported through pgdog into the emptied table.
    let binary = dir.join("events.bin");
    let command = format!(
        "\\copy events TO '{}' WITH (FORMAT binary)",
        binary.display()
    );
    let out = setup.psql_direct("reference", &["-c", &command]);
    assert_eq!(out.code, 0, "{command}: {}", out.stderr);
    run_simple(&setup.connect().await, "DELETE FROM events")
        .await
        .unwrap();
    assert_eq!(setup.counts("events", "").await, vec![0, 0, 0]);
    let command = format!(
        "\\copy events FROM '{}' WITH (FORMAT binary)",
        binary.display()
    );
    let out = setup.psql(&["-c", &command]);
    assert_eq!(out.code, 0, "{command}: {}", out.stderr);
    assert_eq!(out.stdout.trim(), "COPY 200");
    setup.assert_placement("events", "id", "bigint").await;
    setup.assert_same("SELECT * FROM events").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_row_fails_the_whole_copy_on_every_shard() {
    let setup = setup().await;
    let existing = 424_242i64;
    run_simple(
        &setup.connect().await,
        &format!("INSERT INTO events VALUES ({existing}, 'existing', NULL, 0)"),
    )
    .await
    .unwrap();
    let good = text_rows(spread_ids(300));
    let lines: Vec<&str> = good.lines().collect();
    let with_line = |at: usize, line: &str| -> String {
        let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        out[at] = line.to_string();
        out.join("\n") + "\n"
    };
    let cases = [
        (
            "an unparseable key",
            with_line(150, "abc\tbad key\t\\N\t1"),
            Some("22P02"),
        ),
        (
            "a bad value in another column",
            with_line(200, "777777\tbad qty\t\\N\tx"),
            Some("22P02"),
        ),
        (
            "a missing column",
            with_line(100, "888888\tshort"),
            Some("22P04"),
        ),
        (
            "an extra column",
            with_line(250, "999999\tlong\t\\N\t1\textra"),
            Some("22P04"),
        ),
        (
            "a duplicate key",
            with_line(280, &format!("{existing}\tdup\t\\N\t1")),
            Some("23505"),
        ),
        (
            "a value too long in the last row",
            with_line(299, "555555\tok\tok\t99999999999"),
            Some("22003"),
        ),
    ];
    let pgdog = setup.connect().await;
    let mut failures = Vec::new();
    for (what, data, code) in &cases {
        for chunk in [64usize, 1 << 16] {
            match copy_in(&pgdog, "COPY events FROM STDIN", data.as_bytes(), chunk).await {
                Ok(n) => failures.push(format!(
                    "COPY with {what} (chunks of {chunk}) succeeded with {n} rows"
                )),
                Err(e) if code.is_some_and(|c| c != e.code) => failures.push(format!(
                    "COPY with {what}: SQLSTATE {}, expected {code:?} ({})",
                    e.code, e.message
                )),
                Err(_) => {}
            }
            let counts = setup.counts("events", "").await;
            if counts.iter().sum::<i64>() != 1 {
                failures.push(format!("after the COPY with {what} (chunks of {chunk}) the shards hold {counts:?} rows (expected only the existing one)"));
            }
            // The connection is usable afterwards.
            if let Err(e) = run_simple(&pgdog, "SELECT count(*) FROM events").await {
                failures.push(format!("after the COPY with {what}: {e}"));
            }
        }
    }
    // CSV with an unterminated quote, and a binary tuple with a wrong field count.
    let csv = "1,\"ok\",,1\n2,\"never closed,,2\n3,x,,3\n";
    if let Ok(n) = copy_in(
        &pgdog,
        "COPY events FROM STDIN (FORMAT csv)",
        csv.as_bytes(),
        5,
    )
    .await
    {
        failures.push(format!(
            "CSV with an unterminated quote succeeded with {n} rows"
        ));
    }
    let mut stream = binary_header();
    for i in 0..50i64 {
        let id = (i * 1000 + 1).to_be_bytes();
        let qty = 1i32.to_be_bytes();
        if i == 40 {
            binary_tuple(&mut stream, &[Some(&id), Some(b"short")]);
        } else {
            binary_tuple(&mut stream, &[Some(&id), Some(b"n"), None, Some(&qty)]);
        }
    }
    stream.extend_from_slice(&(-1i16).to_be_bytes());
    match copy_in(
        &pgdog,
        "COPY events FROM STDIN (FORMAT binary)",
        &stream,
        64,
    )
    .await
    {
        Ok(n) => failures.push(format!(
            "binary COPY with a short tuple succeeded with {n} rows"
        )),
        Err(e) if e.code != "22P04" => failures.push(format!(
            "binary COPY with a short tuple: {e}, expected 22P04"
        )),
        Err(_) => {}
    }
    let counts = setup.counts("events", "").await;
    if counts.iter().sum::<i64>() != 1 {
        failures.push(format!(
            "after the bad CSV and binary COPYs the shards hold {counts:?} rows"
        ));
    }
    // A good COPY on the same connection works.
    match copy_in(&pgdog, "COPY events FROM STDIN", good.as_bytes(), 4096).await {
        Ok(300) => {}
        other => failures.push(format!("the good COPY after the failures: {other:?}")),
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    setup.assert_placement("events", "id", "bigint").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_inside_a_transaction_commits_and_rolls_back_with_it() {
    let setup = setup().await;
    let pgdog = setup.connect().await;
    let data = text_rows(spread_ids(100));
    run_simple(&pgdog, "BEGIN").await.unwrap();
    let n = copy_in(&pgdog, "COPY events FROM STDIN", data.as_bytes(), 1000)
        .await
        .unwrap_or_else(|e| panic!("COPY in a transaction: {e}"));
    assert_eq!(n, 100);
    let count = run_simple(&pgdog, "SELECT count(*) FROM events")
        .await
        .unwrap();
    assert_eq!(
        count.rows,
        vec![vec![Some("100".to_string())]],
        "the transaction sees its COPY"
    );
    run_simple(&pgdog, "ROLLBACK").await.unwrap();
    assert_eq!(setup.counts("events", "").await, vec![0, 0, 0]);

    run_simple(&pgdog, "BEGIN").await.unwrap();
    copy_in(&pgdog, "COPY events FROM STDIN", data.as_bytes(), 1000)
        .await
        .unwrap_or_else(|e| panic!("COPY in a transaction: {e}"));
    run_simple(
        &pgdog,
        "INSERT INTO events VALUES (1, 'after copy', NULL, 1)",
    )
    .await
    .unwrap();
    run_simple(&pgdog, "COMMIT").await.unwrap();
    assert_eq!(setup.counts("events", "").await.iter().sum::<i64>(), 101);
    setup.assert_placement("events", "id", "bigint").await;

    // A failed COPY aborts the transaction.
    run_simple(&pgdog, "BEGIN").await.unwrap();
    run_simple(
        &pgdog,
        "INSERT INTO events VALUES (2, 'before copy', NULL, 1)",
    )
    .await
    .unwrap();
    let bad = text_rows((1..=50).map(|i| i + 10_000_000)) + "bad\tkey\t\\N\t1\n";
    assert!(
        copy_in(&pgdog, "COPY events FROM STDIN", bad.as_bytes(), 100)
            .await
            .is_err()
    );
    let err = run_simple(&pgdog, "SELECT 1")
        .await
        .expect_err("the transaction is aborted");
    assert_eq!(err.code, "25P02");
    run_simple(&pgdog, "ROLLBACK").await.unwrap();
    assert_eq!(setup.counts("events", "").await.iter().sum::<i64>(), 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_stdout_returns_the_rows_of_every_shard() {
    let setup = setup().await;
    setup
        .load(
            "events",
            "id",
            "bigint",
            "SELECT i * 7919 - 500000, 'name ' || i || CASE WHEN i % 5 = 0 THEN E'\\t\\\\x\\n' ELSE '' END, \
                    CASE WHEN i % 4 = 0 THEN NULL ELSE 'n, \"' || i || '\"' END, i % 17 \
             FROM generate_series(1, 300) i",
        )
        .await;
    let mut pgdog = setup.raw().await;
    let mut reference = setup.raw_direct("reference").await;
    let mut failures = Vec::new();
    for sql in [
        "COPY events TO STDOUT",
        "COPY events TO STDOUT WITH (FORMAT csv)",
        "COPY events (id, name) TO STDOUT WITH (FORMAT csv, DELIMITER ';', HEADER)",
        "COPY events TO STDOUT WITH (FORMAT binary)",
        "COPY events TO STDOUT WITH CSV HEADER",
    ] {
        let want = raw_copy_out(&mut reference, sql).await;
        assert_eq!(want.error, None, "the reference rejects {sql}");
        let got = raw_copy_out(&mut pgdog, sql).await;
        if got.error.is_some() || got.tags != want.tags || got.response != want.response {
            failures.push(format!(
                "{sql}: error {:?}, tags {:?} (expected {:?}), CopyOutResponse {:?} (expected {:?})",
                got.error, got.tags, want.tags, got.response, want.response
            ));
            continue;
        }
        let same = if sql.contains("binary") {
            binary_tuples(&got.data) == binary_tuples(&want.data)
        } else if sql.contains("HEADER") {
            let first = |d: &[u8]| {
                String::from_utf8_lossy(d)
                    .lines()
                    .next()
                    .map(str::to_string)
            };
            first(&got.data) == first(&want.data)
                && sorted_lines(&got.data) == sorted_lines(&want.data)
        } else {
            sorted_lines(&got.data) == sorted_lines(&want.data)
        };
        if !same {
            failures.push(format!(
                "{sql}: data differs\n  pgdog:     {:?}\n  reference: {:?}",
                String::from_utf8_lossy(&got.data[..got.data.len().min(600)]),
                String::from_utf8_lossy(&want.data[..want.data.len().min(600)])
            ));
        }
    }
    // A query's rows, where pgdog may refuse (0A000) but must not answer wrongly.
    let sql = "COPY (SELECT id, name FROM events WHERE qty > 10) TO STDOUT";
    let want = raw_copy_out(&mut reference, sql).await;
    let got = raw_copy_out(&mut pgdog, sql).await;
    match got.error.as_deref() {
        Some("0A000") => eprintln!("refused with 0A000: {sql}"),
        Some(other) => failures.push(format!("{sql}: error {other}")),
        None if got.tags != want.tags || sorted_lines(&got.data) != sorted_lines(&want.data) => {
            failures.push(format!(
                "{sql}: tags {:?} (expected {:?}) or rows differ",
                got.tags, want.tags
            ))
        }
        None => {}
    }
    // psql prints the same rows.
    let out = setup.psql(&["-c", "COPY events TO STDOUT"]);
    let want = setup.psql_direct("reference", &["-c", "COPY events TO STDOUT"]);
    if out.code != 0 || sorted_lines(out.stdout.as_bytes()) != sorted_lines(want.stdout.as_bytes())
    {
        failures.push(format!(
            "psql COPY events TO STDOUT: exit {} {}",
            out.code, out.stderr
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The tuples of a binary COPY stream, sorted; panics unless the stream is one header, tuples
/// and one trailer.
fn binary_tuples(data: &[u8]) -> Vec<Vec<u8>> {
    let header = binary_header();
    assert!(
        data.starts_with(&header),
        "binary COPY data without its header"
    );
    let mut at = header.len();
    let mut tuples = Vec::new();
    loop {
        let fields = i16::from_be_bytes([data[at], data[at + 1]]);
        if fields == -1 {
            assert_eq!(at + 2, data.len(), "bytes after the binary COPY trailer");
            break;
        }
        let start = at;
        at += 2;
        for _ in 0..fields {
            let len = i32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
            at += 4 + len.max(0) as usize;
        }
        tuples.push(data[start..at].to_vec());
    }
    tuples.sort();
    tuples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_into_an_omnisharded_table_reaches_every_shard() {
    let setup = setup().await;
    let data = "pl\tPoland\nde\tGermany\nfr\tFrance\nes\tSpain\nit\tItaly\n";
    let pgdog = setup.connect().await;
    let n = copy_in(&pgdog, "COPY countries FROM STDIN", data.as_bytes(), 9)
        .await
        .unwrap_or_else(|e| panic!("COPY into an omnisharded table: {e}"));
    assert_eq!(n, 5, "COPY count of an omnisharded table");
    assert_eq!(setup.counts("countries", "").await, vec![5, 5, 5]);
    let mut raw = setup.raw().await;
    let out = raw_copy_out(&mut raw, "COPY countries TO STDOUT").await;
    assert_eq!(out.error, None);
    assert_eq!(
        sorted_lines(&out.data),
        sorted_lines(data.as_bytes()),
        "rows once"
    );
}
