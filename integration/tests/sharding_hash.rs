//! pgdog's sharding function against PostgreSQL's own hash partitioning: for every key,
//! `shard_of(key, N)` must be the remainder of the hash partition `(MODULUS N, REMAINDER k)` that
//! PostgreSQL 15 puts the row in, for bigint, integer, smallint, text, varchar and uuid keys.
//!
//! The keys are many pseudo-random values from a fixed seed (so a failure reproduces) plus the
//! edge cases: extremes of each integer type, every `smallint`, the empty string, every string
//! length around the hash's 12-byte blocks, non-ASCII and long strings, and uuids in all the text
//! forms PostgreSQL accepts. Each key is sent as text, parsed by pgdog with
//! [`KeyValue::parse`] and cast by PostgreSQL, so the parsers are checked too.
//!
//! The first test asks `satisfies_hash_partition` (the function behind hash partition
//! constraints) about every key, in one batched query per table and modulus, and reports the
//! keys where pgdog disagrees with the remainder PostgreSQL would pick. The second inserts the
//! keys into real hash-partitioned tables and checks which partition each row landed in.

use std::collections::BTreeMap;
use std::time::Instant;

use pgdog::router::sharding::{shard_of, DataType, KeyValue};
use tokio_postgres::{Client, NoTls};

/// The moduli (shard counts) checked with `satisfies_hash_partition`.
const MODULI: [usize; 4] = [2, 3, 4, 7];
/// Random values per type, on top of the edge cases.
const RANDOM_VALUES: usize = 2_000;

/// SplitMix64: a tiny deterministic generator, so the test needs no RNG dependency and the
/// same seed always gives the same keys.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// One table of the test: a key column type and the keys, as text.
struct Case {
    /// The table name suffix and the SQL type of the key.
    sql_type: &'static str,
    /// How pgdog parses the key text.
    data_type: DataType,
    /// The keys as text, as PostgreSQL's input function accepts them.
    texts: Vec<String>,
}

impl Case {
    /// pgdog's parsed keys, one per text.
    fn keys(&self) -> Vec<KeyValue<'_>> {
        self.texts
            .iter()
            .map(|text| {
                KeyValue::parse(self.data_type, text)
                    .unwrap_or_else(|e| panic!("pgdog rejects {} {text:?}: {e}", self.sql_type))
            })
            .collect()
    }

    /// The table's name for `prefix`: `p_bigint`, `r_varchar`, ...
    fn table(&self, prefix: &str) -> String {
        format!("{prefix}_{}", self.sql_type)
    }
}

/// Integers in the various notations PostgreSQL 15's `int8in`/`int4in`/`int2in` accept.
fn int_text(rng: &mut Rng, value: i64) -> String {
    match rng.below(10) {
        0 => format!(" {value}"),
        1 => format!("{value}\t\n "),
        2 if value >= 0 => format!("+{value}"),
        // Leading zeros.
        3 => format!(
            "{}000{}",
            if value < 0 { "-" } else { "" },
            value.unsigned_abs()
        ),
        _ => value.to_string(),
    }
}

/// Powers of two and their neighbours, positive and negative, that fit in `bits` bits.
fn power_edges(bits: u32) -> Vec<i64> {
    let mut values = vec![0, 1, -1];
    for shift in 0..bits - 1 {
        let power = 1i64 << shift;
        values.extend([power - 1, power, power + 1, -power + 1, -power, -power - 1]);
    }
    let max = i64::MAX >> (64 - bits);
    values.extend([max, max - 1, -max, -max - 1]);
    values.retain(|v| (-max - 1..=max).contains(v));
    values
}

fn bigint_case(rng: &mut Rng) -> Case {
    let mut values = power_edges(64);
    values.extend([i64::MIN, i64::MAX, i64::MIN + 1, i64::MAX - 1]);
    for _ in 0..RANDOM_VALUES {
        values.push(match rng.below(4) {
            0 => rng.next() as i64,
            1 => rng.next() as i32 as i64,
            2 => (rng.next() % 2001) as i64 - 1000,
            _ => {
                let value = (rng.next() >> rng.below(64)) as i64;
                match rng.chance(50) {
                    true => value.wrapping_neg(),
                    false => value,
                }
            }
        });
    }
    let texts = values.into_iter().map(|v| int_text(rng, v)).collect();
    Case {
        sql_type: "bigint",
        data_type: DataType::Bigint,
        texts,
    }
}

fn integer_case(rng: &mut Rng) -> Case {
    let mut values = power_edges(32);
    for _ in 0..RANDOM_VALUES {
        values.push(match rng.below(3) {
            0 => rng.next() as i32 as i64,
            1 => (rng.next() % 2001) as i64 - 1000,
            _ => (rng.next() as i32 >> rng.below(32)) as i64,
        });
    }
    let texts = values.into_iter().map(|v| int_text(rng, v)).collect();
    Case {
        sql_type: "integer",
        data_type: DataType::Bigint,
        texts,
    }
}

/// Every smallint there is.
fn smallint_case(rng: &mut Rng) -> Case {
    let texts = (i16::MIN..=i16::MAX)
        .map(|v| int_text(rng, v.into()))
        .collect();
    Case {
        sql_type: "smallint",
        data_type: DataType::Bigint,
        texts,
    }
}

/// A random character: mostly ASCII, often from a few scripts and emoji, sometimes any Unicode
/// scalar value PostgreSQL accepts in UTF-8 (everything but NUL).
fn random_char(rng: &mut Rng) -> char {
    const PICKS: &[char] = &[
        'ą',
        'ę',
        'ł',
        'ż',
        'ó',
        'ć',
        'ñ',
        'ü',
        'ß',
        'é',
        'Ж',
        'я',
        'λ',
        'Ω',
        'ש',
        'ع',
        '日',
        '本',
        '語',
        '中',
        '文',
        '한',
        'ク',
        '🦀',
        '😀',
        '👍',
        '🎉',
        '\u{1F3FD}',
        '\u{200D}',
        '\u{FFFD}',
        '\u{10FFFF}',
        '\'',
        '"',
        '\\',
        '\t',
        '\n',
        ' ',
    ];
    match rng.below(10) {
        0..=5 => char::from(0x20 + rng.below(0x5f) as u8),
        6..=8 => PICKS[rng.below(PICKS.len())],
        _ => loop {
            if let Some(c) = char::from_u32(1 + rng.below(0x10FFFF) as u32) {
                break c;
            }
        },
    }
}

fn text_case(rng: &mut Rng, sql_type: &'static str) -> Case {
    let mut texts: Vec<String> = [
        "",
        " ",
        "a",
        "żółć",
        "日本語",
        "🦀",
        "👩\u{200D}👩\u{200D}👧",
        "it's",
        "\\",
        "\\N",
        "NULL",
        "\t\n",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Every length around the 12-byte blocks, in ASCII and in 2-byte characters.
    texts.extend((0..=50).map(|len| "x".repeat(len)));
    texts.extend((0..=25).map(|len| "ł".repeat(len)));
    texts.push("long ".repeat(40));
    texts.push("日本語のテキスト".repeat(10));
    for _ in 0..RANDOM_VALUES {
        let chars = match rng.below(10) {
            0..=6 => rng.below(40),
            7 | 8 => 40 + rng.below(100),
            _ => 100 + rng.below(400),
        };
        texts.push((0..chars).map(|_| random_char(rng)).collect());
    }
    Case {
        sql_type,
        data_type: DataType::Varchar,
        texts,
    }
}

/// A uuid in one of the forms PostgreSQL accepts: canonical, upper or mixed case, in braces,
/// without hyphens, or with a hyphen after every four digits.
fn uuid_text(rng: &mut Rng, bytes: [u8; 16]) -> String {
    let canonical = KeyValue::Uuid(bytes).to_string();
    let digits: String = canonical.chars().filter(|c| *c != '-').collect();
    match rng.below(7) {
        0 => canonical.to_uppercase(),
        1 => format!("{{{canonical}}}"),
        2 => digits,
        3 => {
            let groups: Vec<&str> = (0..8).map(|i| &digits[i * 4..i * 4 + 4]).collect();
            groups.join("-")
        }
        4 => canonical
            .chars()
            .map(|c| match rng.chance(50) {
                true => c.to_ascii_uppercase(),
                false => c,
            })
            .collect(),
        5 => format!("{{{}}}", digits.to_uppercase()),
        _ => canonical,
    }
}

fn uuid_case(rng: &mut Rng) -> Case {
    let mut values = vec![[0u8; 16], [0xff; 16]];
    for i in 0..16 {
        let mut one = [0u8; 16];
        one[i] = 1;
        values.push(one);
    }
    for _ in 0..RANDOM_VALUES {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&rng.next().to_le_bytes());
        bytes[8..].copy_from_slice(&rng.next().to_le_bytes());
        values.push(bytes);
    }
    let texts = values.into_iter().map(|b| uuid_text(rng, b)).collect();
    Case {
        sql_type: "uuid",
        data_type: DataType::Uuid,
        texts,
    }
}

fn cases() -> Vec<Case> {
    let mut rng = Rng(0x5eed_5eed);
    vec![
        bigint_case(&mut rng),
        integer_case(&mut rng),
        smallint_case(&mut rng),
        text_case(&mut rng, "text"),
        text_case(&mut rng, "varchar"),
        uuid_case(&mut rng),
    ]
}

async fn connect(cluster: &integration::LocalCluster) -> Client {
    let url = cluster.connection_string("postgres", "postgres", "postgres");
    let (client, connection) = tokio_postgres::connect(&url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let encoding: String = client
        .query_one("SHOW server_encoding", &[])
        .await
        .expect("SHOW server_encoding")
        .get(0);
    // Text keys are hashed as UTF-8 bytes; another server encoding stores other bytes.
    assert_eq!(encoding, "UTF8", "the test needs a UTF8 database");
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_of_agrees_with_satisfies_hash_partition() {
    let started = Instant::now();
    let cases = cases();
    let cluster = integration::cluster();
    let client = connect(&cluster).await;
    let setup = started.elapsed();

    let mut failures = Vec::new();
    let mut checked = 0;
    for case in &cases {
        let table = case.table("p");
        let ty = case.sql_type;
        client
            .batch_execute(&format!(
                "CREATE TABLE {table} (k {ty}) PARTITION BY HASH (k)"
            ))
            .await
            .unwrap_or_else(|e| panic!("CREATE TABLE {table}: {e}"));
        let keys = case.keys();
        // The keys that fail, with every remainder PostgreSQL accepts for them.
        let sql = format!(
            "SELECT t.i, t.v, \
                    (SELECT array_agg(k) FROM generate_series(0, $3 - 1) k \
                     WHERE satisfies_hash_partition('{table}'::regclass, $3, k, t.v::{ty}))::text \
             FROM unnest($1::text[], $2::int4[]) WITH ORDINALITY AS t(v, r, i) \
             WHERE satisfies_hash_partition('{table}'::regclass, $3, t.r, t.v::{ty}) IS NOT TRUE \
             ORDER BY t.i"
        );
        for modulus in MODULI {
            let remainders: Vec<i32> = keys
                .iter()
                .map(|key| shard_of(key, modulus) as i32)
                .collect();
            let rows = client
                .query(&sql, &[&case.texts, &remainders, &(modulus as i32)])
                .await
                .unwrap_or_else(|e| panic!("checking {table} modulus {modulus}: {e:?}"));
            checked += keys.len();
            for row in rows {
                let index: i64 = row.get(0);
                let text: String = row.get(1);
                let postgres: Option<String> = row.get(2);
                failures.push(format!(
                    "{ty} {text:?} modulus {modulus}: pgdog says {}, PostgreSQL says {}",
                    remainders[index as usize - 1],
                    postgres.as_deref().unwrap_or("none"),
                ));
            }
        }
    }
    let total = started.elapsed();
    eprintln!(
        "checked {checked} (key, modulus) pairs: setup {setup:?}, total {total:?}, {} failures",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} keys on the wrong shard, first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(50)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_land_in_the_partition_of_their_shard() {
    const MODULUS: usize = 5;
    let started = Instant::now();
    let cases = cases();
    let cluster = integration::cluster();
    let client = connect(&cluster).await;

    let mut failures = Vec::new();
    let mut rows_checked = 0;
    for case in &cases {
        let table = case.table("r");
        let ty = case.sql_type;
        let mut ddl = format!("CREATE TABLE {table} (i bigint, k {ty}) PARTITION BY HASH (k);");
        for remainder in 0..MODULUS {
            ddl.push_str(&format!(
                "CREATE TABLE {table}_{remainder} PARTITION OF {table} \
                 FOR VALUES WITH (MODULUS {MODULUS}, REMAINDER {remainder});"
            ));
        }
        client
            .batch_execute(&ddl)
            .await
            .unwrap_or_else(|e| panic!("creating {table}: {e}"));
        client
            .execute(
                &format!(
                    "INSERT INTO {table} (i, k) \
                     SELECT t.i, t.v::{ty} FROM unnest($1::text[]) WITH ORDINALITY AS t(v, i)"
                ),
                &[&case.texts],
            )
            .await
            .unwrap_or_else(|e| panic!("INSERT INTO {table}: {e}"));
        let keys = case.keys();
        let landed: BTreeMap<i64, String> = client
            .query(
                &format!("SELECT i, tableoid::regclass::text FROM {table}"),
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("SELECT FROM {table}: {e}"))
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        assert_eq!(landed.len(), keys.len(), "rows in {table}");
        for (index, key) in keys.iter().enumerate() {
            let expected = format!("{table}_{}", shard_of(key, MODULUS));
            let actual = &landed[&(index as i64 + 1)];
            if *actual != expected {
                failures.push(format!(
                    "{ty} {:?}: pgdog says {expected}, PostgreSQL put it in {actual}",
                    case.texts[index]
                ));
            }
            rows_checked += 1;
        }
    }
    eprintln!(
        "checked {rows_checked} rows in {MODULUS} partitions each in {:?}, {} failures",
        started.elapsed(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} rows in another partition than their shard, first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(50)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
