//! The pgbench benchmark: custom scripts that read and write `accounts` rows by their key
//! `aid`, so that pgdog with two shards sends each statement to one shard, run against every
//! target. After a writing run, the sum of `abalance` over the target's databases must have
//! grown by exactly the transactions pgbench counted: a statement sent to the wrong shard
//! updates nothing and pgbench would not notice.

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use integration::bench::{interrupted, PgbenchRun};
use integration::tools::pgbench;
use tokio::runtime::Runtime;

use crate::routing;
use crate::setup::Bench;
use crate::{Args, Target, PASSWORD, SERVER_DATABASE, TARGETS, THREADS, USER};

/// A pgbench custom script.
pub(crate) struct Workload {
    /// Its table label.
    pub(crate) name: &'static str,
    /// The script (`-f`); `:naccounts` is set with `-D`.
    pub(crate) script: &'static str,
    /// Whether each transaction adds exactly 1 to one row's `abalance`.
    pub(crate) adds_one: bool,
}

/// The scripts: a keyed read, a keyed write, and both in a transaction.
pub(crate) const WORKLOADS: [Workload; 3] = [
    Workload {
        name: "select by key",
        script: "\\set aid random(1, :naccounts)\n\
                 SELECT abalance FROM accounts WHERE aid = :aid;\n",
        adds_one: false,
    },
    Workload {
        name: "update by key",
        script: "\\set aid random(1, :naccounts)\n\\set delta 1\n\
                 UPDATE accounts SET abalance = abalance + :delta WHERE aid = :aid;\n",
        adds_one: true,
    },
    Workload {
        name: "transaction: update + select",
        script: "\\set aid random(1, :naccounts)\n\\set delta 1\nBEGIN;\n\
                 UPDATE accounts SET abalance = abalance + :delta WHERE aid = :aid;\n\
                 SELECT abalance FROM accounts WHERE aid = :aid;\nEND;\n",
        adds_one: true,
    },
];

/// pgbench query modes (`-M`).
pub(crate) const MODES: [&str; 2] = ["simple", "prepared"];

/// One table row: a script, a query mode and a client count.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Row {
    /// Index into [`WORKLOADS`].
    pub(crate) workload: usize,
    /// One of [`MODES`].
    pub(crate) mode: &'static str,
    /// pgbench clients.
    pub(crate) clients: u32,
}

/// One measured pgbench run and what the bench's own check found.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    /// What pgbench reported.
    pub(crate) run: PgbenchRun,
    /// Whether the writes landed (see the module doc), when they did not.
    pub(crate) check: Option<String>,
}

impl Measured {
    /// Everything wrong with this run.
    pub(crate) fn problem(&self) -> Option<String> {
        let all: Vec<String> = self
            .run
            .problem()
            .into_iter()
            .chain(self.check.clone())
            .collect();
        (!all.is_empty()).then(|| all.join("; "))
    }
}

/// Scripts on disk, the rows to run and every run's result.
pub(crate) struct PgbenchBench {
    dir: PathBuf,
    duration: u64,
    /// The table rows, in order.
    pub(crate) rows: Vec<Row>,
    /// `results[row][target]`: the runs of every round.
    pub(crate) results: Vec<Vec<Vec<Measured>>>,
    /// What the routing check found, per pgdog target.
    pub(crate) routing: Vec<(Target, Vec<String>)>,
}

impl PgbenchBench {
    /// Writes the scripts, checks routing through both pgdogs and warms every target up.
    pub(crate) fn new(args: &Args, bench: &Bench, runtime: &Runtime) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!("pgdog-bench-sharding-{}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        // From here on an early return drops `this`, which removes the dir.
        let mut this = PgbenchBench {
            dir,
            duration: args.duration,
            rows: Vec::new(),
            results: Vec::new(),
            routing: Vec::new(),
        };
        for (w, workload) in WORKLOADS.iter().enumerate() {
            let path = this.script(w);
            fs::write(&path, workload.script)
                .map_err(|e| format!("write {}: {e}", path.display()))?;
            for mode in MODES {
                for &clients in &args.clients {
                    this.rows.push(Row {
                        workload: w,
                        mode,
                        clients,
                    });
                }
            }
        }
        this.results = vec![vec![Vec::new(); TARGETS.len()]; this.rows.len()];

        for target in [Target::Pgdog1, Target::Pgdog2] {
            interrupted()?;
            let problems = runtime.block_on(routing::check(bench, target));
            match problems.is_empty() {
                true => eprintln!("routing check through {}: ok", target.name()),
                false => eprintln!(
                    "routing check through {}: FAILED\n  {}",
                    target.name(),
                    problems.join("\n  ")
                ),
            }
            this.routing.push((target, problems));
        }

        // Warm up pools and caches; failures show up again in the measured runs.
        let warmup = Row {
            workload: 0,
            mode: "prepared",
            clients: 10,
        };
        for target in TARGETS {
            interrupted()?;
            let run = PgbenchRun::parse(0, &this.pgbench(bench, target, warmup, 2));
            let problem = run.problem().map_or(String::new(), |p| format!("  !! {p}"));
            eprintln!("warm-up {:<14} {}{problem}", target.name(), run.summary());
        }
        Ok(this)
    }

    fn script(&self, workload: usize) -> PathBuf {
        self.dir.join(format!("workload{workload}.sql"))
    }

    /// Runs pgbench for `row` against `target` for `duration` seconds.
    fn pgbench(
        &self,
        bench: &Bench,
        target: Target,
        row: Row,
        duration: u64,
    ) -> integration::tools::ToolOutput {
        let script = self.script(row.workload).display().to_string();
        let (clients, duration) = (row.clients.to_string(), duration.to_string());
        let naccounts = format!("naccounts={}", bench.rows);
        let args = [
            "-n", "-f", &script, "-M", row.mode, "-c", &clients, "-j", THREADS, "-T", &duration,
            "-D", &naccounts,
        ];
        pgbench(
            bench.port(target),
            USER,
            PASSWORD,
            bench.database(target),
            &args,
        )
    }

    /// Every row against every target once, targets in an order rotated per row and round.
    pub(crate) fn round(
        &mut self,
        bench: &Bench,
        round: usize,
        started: Instant,
    ) -> Result<(), String> {
        for r in 0..self.rows.len() {
            let row = self.rows[r];
            let workload = &WORKLOADS[row.workload];
            let mut order = TARGETS;
            order.rotate_left((round + r) % TARGETS.len());
            for target in order {
                interrupted()?;
                if bench.is_down(target) {
                    continue;
                }
                let before = match workload.adds_one {
                    true => Some(balance(bench, target)?),
                    false => None,
                };
                let run =
                    PgbenchRun::parse(round, &self.pgbench(bench, target, row, self.duration));
                let check = match before {
                    Some(before) => writes_check(&run, balance(bench, target)? - before),
                    None => None,
                };
                let measured = Measured { run, check };
                let problem = measured
                    .problem()
                    .map_or(String::new(), |p| format!("  !! {p}"));
                eprintln!(
                    "[round {round} {:>4.0}s] {:<28} {:<8} c={:<3} {:<14} {}{problem}",
                    started.elapsed().as_secs_f64(),
                    workload.name,
                    row.mode,
                    row.clients,
                    target.name(),
                    measured.run.summary(),
                );
                if measured.problem().is_some() {
                    bench.check_alive(target);
                }
                self.results[r][target.index()].push(measured);
            }
        }
        Ok(())
    }
}

impl Drop for PgbenchBench {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The sum of `abalance` over `target`'s databases, read straight from Postgres.
fn balance(bench: &Bench, target: Target) -> Result<i64, String> {
    let sql = "SELECT coalesce(sum(abalance), 0) FROM accounts";
    let mut total = 0;
    for cluster in bench.backends(target) {
        let text = cluster
            .psql(SERVER_DATABASE, sql)
            .map_err(|e| format!("{sql} on port {}: {e}", cluster.port()))?;
        total += text
            .trim()
            .parse::<i64>()
            .map_err(|e| format!("{sql} on port {}: {text:?}: {e}", cluster.port()))?;
    }
    Ok(total)
}

/// Whether a run of a script that adds 1 per transaction grew the balance by its transactions.
fn writes_check(run: &PgbenchRun, grown: i64) -> Option<String> {
    match run.transactions {
        Some(n) if n as i64 == grown => None,
        Some(n) => Some(format!(
            "pgbench counted {n} transactions but the balance grew by {grown}: \
             {} updates did not land",
            n as i64 - grown
        )),
        None => Some(format!(
            "no transaction count in pgbench's output (the balance grew by {grown})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use integration::tools::ToolOutput;

    fn run(transactions: &str) -> PgbenchRun {
        let stdout = format!("number of transactions actually processed: {transactions}\n");
        PgbenchRun::parse(
            1,
            &ToolOutput {
                code: 0,
                stdout,
                stderr: String::new(),
            },
        )
    }

    #[test]
    fn writes_must_all_land() {
        assert_eq!(writes_check(&run("100"), 100), None);
        let lost = writes_check(&run("100"), 60).unwrap();
        assert!(lost.contains("40 updates did not land"), "{lost}");
        assert!(writes_check(&run("x"), 3)
            .unwrap()
            .contains("no transaction count"));
    }

    #[test]
    fn scripts_use_the_key() {
        for workload in WORKLOADS {
            assert!(workload
                .script
                .starts_with("\\set aid random(1, :naccounts)\n"));
            assert!(workload.script.contains("WHERE aid = :aid;"));
            assert_eq!(
                workload.adds_one,
                workload.script.contains("abalance + :delta")
            );
        }
    }
}
