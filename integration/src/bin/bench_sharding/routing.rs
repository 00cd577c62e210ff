//! The routing check before any measurement: through a pgdog target, keyed lookups of rows
//! spread over the key range (prepared with parameters, and as simple queries with literals)
//! must each return their row, and `count(*)` over the whole table must be the row count.
//! A lookup sent to the wrong shard returns no row without an error, which pgbench would count
//! as a fast, successful transaction.

use std::time::Duration;

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::setup::{pg_error, Bench};
use crate::Target;

/// Keys looked up per query style.
const LOOKUPS: u64 = 200;
/// The whole check's time limit.
const TIMEOUT: Duration = Duration::from_secs(120);
/// Problems reported in full; the rest are counted.
const SHOWN: usize = 3;

/// What is wrong with routing through `target` (empty when all is well).
pub(crate) async fn check(bench: &Bench, target: Target) -> Vec<String> {
    match tokio::time::timeout(TIMEOUT, check_inner(bench, target)).await {
        Ok(Ok(problems)) => problems,
        Ok(Err(problem)) => vec![problem],
        Err(_) => vec![format!(
            "the routing check did not finish within {TIMEOUT:?}"
        )],
    }
}

async fn check_inner(bench: &Bench, target: Target) -> Result<Vec<String>, String> {
    let client = bench.connect(target).await?;
    let mut problems = Vec::new();
    let mut failures = 0usize;
    for aid in keys(bench.rows, LOOKUPS) {
        for problem in [prepared(&client, aid).await, simple(&client, aid).await]
            .into_iter()
            .flatten()
        {
            failures += 1;
            if problems.len() < SHOWN {
                problems.push(problem);
            }
        }
    }
    if failures > SHOWN {
        problems.push(format!("... {} more failed lookups", failures - SHOWN));
    }
    if failures > 0 {
        problems.insert(
            0,
            format!("{failures} of {} keyed lookups failed", 2 * LOOKUPS),
        );
    }
    let sql = "SELECT count(*) FROM accounts";
    match client.query_one(sql, &[]).await {
        Ok(row) => match row.try_get::<_, i64>(0) {
            Ok(n) if n as u64 == bench.rows => {}
            Ok(n) => problems.push(format!("`{sql}` returned {n}, not {}", bench.rows)),
            Err(e) => problems.push(format!("`{sql}`: {}", pg_error(&e))),
        },
        Err(e) => problems.push(format!("`{sql}` failed: {}", pg_error(&e))),
    }
    Ok(problems)
}

/// `count` keys spread over `1..=rows` (a fixed pseudo-random sequence), always with both ends.
fn keys(rows: u64, count: u64) -> Vec<i64> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = vec![1, rows as i64];
    while (out.len() as u64) < count.min(rows) {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.push((state % rows) as i64 + 1);
    }
    out.truncate(count.min(rows).max(1) as usize);
    out
}

/// A lookup with `aid` as a bound parameter: it must return that row only.
async fn prepared(client: &Client, aid: i64) -> Option<String> {
    let sql = "SELECT aid FROM accounts WHERE aid = $1";
    match client.query(sql, &[&aid]).await {
        Ok(rows) => {
            let found: Vec<i64> = rows.iter().filter_map(|r| r.try_get(0).ok()).collect();
            (found != [aid]).then(|| format!("`{sql}` with $1 = {aid} returned {found:?}"))
        }
        Err(e) => Some(format!("`{sql}` with $1 = {aid} failed: {}", pg_error(&e))),
    }
}

/// A lookup with `aid` as a literal, in the simple protocol: it must return that row only.
async fn simple(client: &Client, aid: i64) -> Option<String> {
    let sql = format!("SELECT aid FROM accounts WHERE aid = {aid}");
    match client.simple_query(&sql).await {
        Ok(messages) => {
            let found: Vec<String> = messages
                .iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                    _ => None,
                })
                .collect();
            (found != [aid.to_string()]).then(|| format!("`{sql}` returned {found:?}"))
        }
        Err(e) => Some(format!("`{sql}` failed: {}", pg_error(&e))),
    }
}

#[cfg(test)]
mod tests {
    use super::keys;

    #[test]
    fn keys_in_range_with_both_ends() {
        let k = keys(1000, 200);
        assert_eq!(k.len(), 200);
        assert_eq!(&k[..2], &[1, 1000]);
        assert!(k.iter().all(|&a| (1..=1000).contains(&a)));
        assert_eq!(keys(1, 200), vec![1]);
        assert_eq!(keys(5, 200).len(), 5);
    }
}
