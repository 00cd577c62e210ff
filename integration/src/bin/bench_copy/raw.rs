//! The raw pipes, the machine's practical limit: `psql -c "COPY ... TO STDOUT (FORMAT
//! binary)" | psql -c "COPY t FROM STDIN (FORMAT binary)"` into tables without keys or
//! indexes, for every table at once or for 64 MB CTID ranges a few at a time.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

use crate::dataset::{self, TABLES};
use crate::runs::{pg_command, psql, Outcome};
use crate::setup::{uri, Bench};
use crate::timed::{self, Finished};
use crate::Tool;

/// Bytes per CTID range of the split raw pipes: pgdog's default copy range.
const RANGE_BYTES: u64 = 64 * 1024 * 1024;

/// What one raw pipe copies: a whole table, or heap pages `from..to` of it (`to` open for the
/// last range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unit {
    table: &'static str,
    pages: Option<(u64, Option<u64>)>,
}

impl Unit {
    /// The `COPY ... TO STDOUT` reading it.
    fn copy_out(&self) -> String {
        match self.pages {
            None => format!("COPY public.{} TO STDOUT (FORMAT binary)", self.table),
            Some((from, to)) => {
                let upper = to.map_or(String::new(), |to| format!(" AND ctid < '({to},0)'"));
                format!(
                    "COPY (SELECT * FROM ONLY public.{} WHERE ctid >= '({from},0)'{upper}) \
                     TO STDOUT (FORMAT binary)",
                    self.table
                )
            }
        }
    }
}

/// `table` of `bytes` (`pg_table_size`) over `pages` heap pages, in ranges of about
/// [`RANGE_BYTES`] (one unit when it is not larger).
pub(crate) fn split(table: &'static str, bytes: u64, pages: u64) -> Vec<Unit> {
    let n = bytes.div_ceil(RANGE_BYTES).max(1);
    if n == 1 || pages < n {
        return vec![Unit { table, pages: None }];
    }
    let step = pages.div_ceil(n);
    (0..n)
        .map(|k| {
            let to = (k + 1 < n).then_some((k + 1) * step);
            Unit {
                table,
                pages: Some((k * step, to)),
            }
        })
        .collect()
}

/// Raw pipes: the tables pre-created without keys or indexes (pg_dump's pre-data section,
/// untimed), then `psql -c "COPY ... TO STDOUT (FORMAT binary)" | psql -c "COPY t FROM STDIN
/// (FORMAT binary)"` per unit: every table at once ([`Tool::Raw`]), or tables cut in 64 MB
/// CTID ranges, `jobs` pipes at a time ([`Tool::RawSplit`]); every table at once with the
/// destination compressing TOAST values with lz4 ([`Tool::RawLz4`], what pgdog's copy does).
/// Timed from the first start to the last exit.
pub(crate) fn raw_pipes(
    bench: &Bench,
    database: &str,
    tool: Tool,
    jobs: usize,
    outcome: &mut Outcome,
) -> Result<(), String> {
    let target = uri(&bench.dests[0], database);
    let mut dump = pg_command("pg_dump");
    dump.args([
        "--schema-only",
        "--section=pre-data",
        "-d",
        &bench.source_uri(),
    ]);
    let mut restore = pg_command("psql");
    restore.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &target]);
    let (a, b) = timed::pipe(("pg_dump", dump), ("psql", restore), Instant::now())?;
    a.check()?;
    b.check()?;

    let mut units = Vec::new();
    for (table, (_, bytes)) in TABLES.iter().zip(&bench.tables) {
        match tool {
            Tool::RawSplit => {
                let sql = format!("SELECT pg_relation_size('public.{}') / 8192", table.name);
                let pages = bench
                    .source
                    .psql(dataset::SOURCE_DB, &sql)
                    .map_err(|e| format!("{sql}: {e}"))?;
                let pages = pages
                    .trim()
                    .parse()
                    .map_err(|_| format!("{sql}: {pages:?}"))?;
                units.extend(split(table.name, *bytes, pages));
            }
            _ => units.push(Unit {
                table: table.name,
                pages: None,
            }),
        }
    }
    let count = units.len();
    let at_once = match tool {
        Tool::RawSplit => jobs.min(count),
        _ => count,
    };
    let queue = Mutex::new(VecDeque::from(units));
    let finished: Mutex<Vec<(Unit, Finished, Finished)>> = Mutex::new(Vec::new());
    let failed: Mutex<Option<String>> = Mutex::new(None);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..at_once {
            scope.spawn(|| loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                let Some(unit) = next else { return };
                let out = psql(&bench.source_uri(), &unit.copy_out());
                let mut into = psql(
                    &target,
                    &format!("COPY public.{} FROM STDIN (FORMAT binary)", unit.table),
                );
                if tool == Tool::RawLz4 {
                    into.env("PGOPTIONS", "-c default_toast_compression=lz4");
                }
                let what = |side: &str| format!("psql {side} {unit:?}");
                match timed::pipe(
                    (&what("TO STDOUT"), out),
                    (&what("FROM STDIN"), into),
                    start,
                ) {
                    Ok((left, right)) => {
                        if let Ok(mut done) = finished.lock() {
                            done.push((unit, left, right));
                        }
                    }
                    Err(e) => {
                        if let Ok(mut failed) = failed.lock() {
                            failed.get_or_insert(e);
                        }
                        return;
                    }
                }
            });
        }
    });
    let ended = start.elapsed().as_secs_f64();
    let finished = finished
        .into_inner()
        .map_err(|_| "a pipe thread panicked")?;
    for (_, left, right) in &finished {
        outcome.log.push_str(&left.transcript());
        outcome.log.push_str(&right.transcript());
    }
    if let Ok(Some(e)) = failed.into_inner() {
        return Err(e);
    }
    for (_, left, right) in &finished {
        left.check()?;
        right.check()?;
    }
    outcome.copy = Some(ended);
    let mut per_table = Vec::new();
    for table in TABLES {
        let ends = finished.iter().filter(|(u, _, _)| u.table == table.name);
        let (pipes, last) = ends.fold((0, 0.0_f64), |(n, last), (_, _, right)| {
            (n + 1, last.max(right.ended))
        });
        per_table.push(match pipes {
            1 => format!("{} at {last:.1} s", table.name),
            _ => format!("{} ({pipes} ranges) at {last:.1} s", table.name),
        });
    }
    outcome.notes.push(format!(
        "{count} pipes, {at_once} at a time; tables done: {}",
        per_table.join(", ")
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctid_ranges() {
        assert_eq!(
            split("t", RANGE_BYTES, 100),
            vec![Unit {
                table: "t",
                pages: None
            }]
        );
        let units = split("t", 3 * RANGE_BYTES - 1, 100);
        assert_eq!(units.len(), 3);
        assert_eq!(units[0].pages, Some((0, Some(34))));
        assert_eq!(units[2].pages, Some((68, None)));
        assert!(units[1]
            .copy_out()
            .contains("ctid >= '(34,0)' AND ctid < '(68,0)'"));
        assert!(!units[2].copy_out().contains("ctid <"));
        assert_eq!(
            Unit {
                table: "t",
                pages: None
            }
            .copy_out(),
            "COPY public.t TO STDOUT (FORMAT binary)"
        );
    }
}
