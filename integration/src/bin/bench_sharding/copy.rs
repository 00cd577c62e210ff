//! The COPY benchmark: `COPY accounts_copy FROM STDIN` of the same rows into each target, in
//! text and binary format, by two clients: psql's `\copy` (a simple-protocol `Query`, as
//! psql and most tools send it) and tokio-postgres' `copy_in` (the extended protocol: Parse,
//! Bind, Execute). Each COPY is timed, then checked: the reported row count, and every
//! database holding exactly the rows that belong on it.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::SinkExt;
use integration::bench::interrupted;
use integration::tools::psql;
use tokio::runtime::Runtime;
use tokio_postgres::Client;

use crate::data::{copy_data, CopyData};
use crate::setup::{pg_error, Bench};
use crate::{Args, Target, PASSWORD, SERVER_DATABASE, TARGETS, USER};

/// Bytes per CopyData message `copy_in` sends, as a client streaming a file would send them
/// (row boundaries fall anywhere inside messages).
const CHUNK: usize = 64 * 1024;
/// A COPY that takes longer than this is abandoned and flagged.
const COPY_TIMEOUT: Duration = Duration::from_secs(120);

/// A COPY data format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Tab-separated text.
    Text,
    /// PostgreSQL's binary COPY format.
    Binary,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Binary => "binary",
        }
    }

    /// The options clause, if any.
    fn options(self) -> &'static str {
        match self {
            Format::Text => "",
            Format::Binary => " (FORMAT binary)",
        }
    }
}

/// The client sending the COPY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sender {
    /// `psql -c "\copy accounts_copy FROM 'file'"`: a simple-protocol Query.
    Psql,
    /// tokio-postgres `copy_in`: Parse, Bind, Execute.
    CopyIn,
}

/// One table row: a client and a format.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kind {
    /// Who sends the COPY.
    pub(crate) client: Sender,
    /// The data format.
    pub(crate) format: Format,
}

/// The table rows, in order.
pub(crate) const KINDS: [Kind; 4] = [
    Kind {
        client: Sender::Psql,
        format: Format::Text,
    },
    Kind {
        client: Sender::Psql,
        format: Format::Binary,
    },
    Kind {
        client: Sender::CopyIn,
        format: Format::Text,
    },
    Kind {
        client: Sender::CopyIn,
        format: Format::Binary,
    },
];

impl Kind {
    /// Its table row label.
    pub(crate) fn name(self) -> String {
        let client = match self.client {
            Sender::Psql => "psql `\\copy` (simple query)",
            Sender::CopyIn => "tokio-postgres `copy_in` (extended protocol)",
        };
        format!("{}, {client}", self.format.name())
    }
}

/// One COPY run.
#[derive(Debug, Clone)]
pub(crate) struct CopyRun {
    /// Its round (1-based).
    pub(crate) round: usize,
    /// Seconds the COPY took, if it finished.
    pub(crate) seconds: Option<f64>,
    /// What went wrong, if anything (the time, if any, still counts).
    pub(crate) problem: Option<String>,
}

/// The COPY runs of every round: `results[kind][target]`, with the data in memory (for
/// `copy_in`) and in files (for psql), removed on drop.
pub(crate) struct CopyBench {
    data: CopyData,
    dir: PathBuf,
    /// Rows per COPY.
    pub(crate) rows: u64,
    /// Every run, by kind (index into [`KINDS`]) and target.
    pub(crate) results: Vec<Vec<Vec<CopyRun>>>,
}

impl CopyBench {
    /// Generates the rows once, in both formats, and writes them to files for psql.
    pub(crate) fn new(args: &Args) -> Result<CopyBench, String> {
        eprintln!("generating {} COPY rows...", args.copy_rows);
        let dir = std::env::temp_dir().join(format!("pgdog-bench-copy-{}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        // From here on an early return drops `this`, which removes the dir.
        let this = CopyBench {
            data: copy_data(args.copy_rows),
            dir,
            rows: args.copy_rows,
            results: vec![vec![Vec::new(); TARGETS.len()]; KINDS.len()],
        };
        for format in [Format::Text, Format::Binary] {
            let path = this.file(format);
            fs::write(&path, this.bytes(format))
                .map_err(|e| format!("write {}: {e}", path.display()))?;
        }
        Ok(this)
    }

    fn file(&self, format: Format) -> PathBuf {
        self.dir.join(format!("accounts.{}", format.name()))
    }

    fn bytes(&self, format: Format) -> &Bytes {
        match format {
            Format::Text => &self.data.text,
            Format::Binary => &self.data.binary,
        }
    }

    /// Every kind into every target once, targets in an order rotated per round and kind.
    pub(crate) fn round(
        &mut self,
        runtime: &Runtime,
        bench: &Bench,
        round: usize,
        started: Instant,
    ) -> Result<(), String> {
        for (k, kind) in KINDS.into_iter().enumerate() {
            let mut order = TARGETS;
            order.rotate_left((round + k) % TARGETS.len());
            for target in order {
                interrupted()?;
                if bench.is_down(target) {
                    continue;
                }
                let run = self.run(runtime, bench, kind, target, round)?;
                let shown = match run.seconds {
                    Some(s) => format!("{s:.2} s, {:.0} rows/s", self.rows as f64 / s),
                    None => "no result".into(),
                };
                let problem = run
                    .problem
                    .as_ref()
                    .map_or(String::new(), |p| format!("  !! {p}"));
                eprintln!(
                    "[round {round} {:>4.0}s] COPY {:<52} {:<14} {shown}{problem}",
                    started.elapsed().as_secs_f64(),
                    kind.name(),
                    target.name(),
                );
                if run.problem.is_some() {
                    bench.check_alive(target);
                }
                self.results[k][target.index()].push(run);
            }
        }
        Ok(())
    }

    /// One COPY: empty the tables, checkpoint, COPY, check what landed where.
    fn run(
        &self,
        runtime: &Runtime,
        bench: &Bench,
        kind: Kind,
        target: Target,
        round: usize,
    ) -> Result<CopyRun, String> {
        for cluster in bench.clusters() {
            // A lock timeout, so that a COPY left open by an earlier failure cannot hang us.
            let truncate = "SET lock_timeout = '60s'; TRUNCATE accounts_copy";
            for sql in [truncate, "CHECKPOINT"] {
                cluster
                    .psql(SERVER_DATABASE, sql)
                    .map_err(|e| format!("{sql} on port {}: {e}", cluster.port()))?;
            }
        }
        let (copied, seconds) = match kind.client {
            Sender::Psql => self.psql(bench, kind.format, target),
            Sender::CopyIn => match self.copy_in(runtime, bench, kind.format, target) {
                Ok(timed) => timed,
                Err(problem) => {
                    let problems: Vec<String> = std::iter::once(problem)
                        .chain(left_in_copy(bench)?)
                        .collect();
                    return Ok(CopyRun {
                        round,
                        seconds: None,
                        problem: Some(problems.join("; ")),
                    });
                }
            },
        };
        let finished = copied.is_ok();
        let mut problems = Vec::new();
        match copied {
            Ok(Some(n)) if n != self.rows => {
                problems.push(format!("COPY reported {n} rows, not {}", self.rows))
            }
            Ok(_) => {}
            Err(e) => problems.push(format!("COPY failed: {e}")),
        }
        problems.extend(self.placement(bench, target, finished)?);
        if !problems.is_empty() {
            problems.extend(left_in_copy(bench)?);
        }
        Ok(CopyRun {
            round,
            seconds: finished.then_some(seconds),
            problem: (!problems.is_empty()).then(|| problems.join("; ")),
        })
    }

    /// psql `\copy` from the file: the row count it printed (if it printed one) and seconds,
    /// psql's start-up and login included.
    fn psql(
        &self,
        bench: &Bench,
        format: Format,
        target: Target,
    ) -> (Result<Option<u64>, String>, f64) {
        let command = format!(
            "\\copy accounts_copy FROM '{}'{}",
            self.file(format).display(),
            format.options()
        );
        let start = Instant::now();
        let out = psql(
            bench.port(target),
            USER,
            PASSWORD,
            bench.database(target),
            &["-c", &command],
        );
        let seconds = start.elapsed().as_secs_f64();
        let copied = match out.code {
            0 => Ok(copy_tag(&out.stdout)),
            code => Err(format!("psql exit code {code}: {}", out.stderr.trim())),
        };
        (copied, seconds)
    }

    /// tokio-postgres `copy_in` of the rows in memory: the row count and seconds from the COPY
    /// statement to its completion. An error when no connection could be made or the COPY
    /// timed out.
    fn copy_in(
        &self,
        runtime: &Runtime,
        bench: &Bench,
        format: Format,
        target: Target,
    ) -> Result<(Result<Option<u64>, String>, f64), String> {
        let sql = format!("COPY accounts_copy FROM STDIN{}", format.options());
        runtime.block_on(async {
            let client = bench.connect(target).await?;
            let start = Instant::now();
            let copied =
                tokio::time::timeout(COPY_TIMEOUT, copy_in(&client, &sql, self.bytes(format)))
                    .await
                    .map_err(|_| format!("the COPY did not finish within {COPY_TIMEOUT:?}"))?;
            Ok((copied.map(Some), start.elapsed().as_secs_f64()))
        })
    }

    /// Where the rows went wrong: after a COPY that finished, each of `target`'s databases
    /// must hold exactly its rows; after one that failed, none.
    fn placement(
        &self,
        bench: &Bench,
        target: Target,
        finished: bool,
    ) -> Result<Vec<String>, String> {
        let backends = bench.backends(target);
        let expected: Vec<u64> = match (finished, backends.len()) {
            (false, n) => vec![0; n],
            (true, 1) => vec![self.rows],
            (true, _) => self.data.per_shard.to_vec(),
        };
        let mut problems = Vec::new();
        for (k, (cluster, want)) in backends.iter().zip(expected).enumerate() {
            let sql = "SELECT count(*) FROM accounts_copy";
            let got = cluster
                .psql(SERVER_DATABASE, sql)
                .map_err(|e| format!("{sql} on port {}: {e}", cluster.port()))?;
            if got.trim() != want.to_string() {
                let place = match target {
                    Target::Pgdog2 => format!("shard {k}"),
                    _ => "the database".to_string(),
                };
                let after = if finished {
                    ""
                } else {
                    " after the failed COPY"
                };
                problems.push(format!(
                    "{place} holds {} rows{after}, not {want}",
                    got.trim()
                ));
            }
        }
        Ok(problems)
    }
}

impl Drop for CopyBench {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// After a failed COPY: ends the sessions still inside a COPY on any cluster (e.g. pgdog's
/// server connections of a COPY that never finished), which would hold their lock on
/// `accounts_copy` forever, and says where there were any.
fn left_in_copy(bench: &Bench) -> Result<Vec<String>, String> {
    let sql = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
               WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() \
               AND state = 'active' AND query ILIKE 'COPY accounts_copy%'";
    let mut problems = Vec::new();
    for (name, cluster) in ["direct", "shard0", "shard1"]
        .into_iter()
        .zip(bench.clusters())
    {
        let ended = cluster
            .psql(SERVER_DATABASE, sql)
            .map_err(|e| format!("ending sessions left in COPY on {name}: {e}"))?;
        if ended.trim() != "0" {
            problems.push(format!(
                "{} session(s) on {name} were still inside the COPY afterwards (terminated)",
                ended.trim()
            ));
        }
    }
    Ok(problems)
}

/// The row count of the `COPY n` command tag psql printed, if it printed one.
fn copy_tag(stdout: &str) -> Option<u64> {
    stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("COPY ")?.parse().ok())
}

/// Streams `data` through `COPY ... FROM STDIN` (`sql`) in [`CHUNK`]-byte messages; returns the
/// row count the server reported.
pub(crate) async fn copy_in(client: &Client, sql: &str, data: &Bytes) -> Result<u64, String> {
    let sink = client
        .copy_in::<_, Bytes>(sql)
        .await
        .map_err(|e| pg_error(&e))?;
    futures_util::pin_mut!(sink);
    let mut offset = 0;
    while offset < data.len() {
        let end = (offset + CHUNK).min(data.len());
        sink.send(data.slice(offset..end))
            .await
            .map_err(|e| pg_error(&e))?;
        offset = end;
    }
    sink.as_mut().finish().await.map_err(|e| pg_error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_tag_from_psql_output() {
        assert_eq!(copy_tag("COPY 1000000\n"), Some(1_000_000));
        assert_eq!(copy_tag(""), None);
    }

    #[test]
    fn kinds_name_their_client_and_format() {
        assert_eq!(KINDS[0].name(), "text, psql `\\copy` (simple query)");
        assert_eq!(
            KINDS[3].name(),
            "binary, tokio-postgres `copy_in` (extended protocol)"
        );
    }
}
