//! One run of each tool: into fresh destination databases, timed end to end and, where the
//! tool's output tells, for its copy phase alone; then the row counts are compared with the
//! source and the databases dropped.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use integration::tools::pg_tool;

use crate::dataset::{self, PUBLICATION, TABLES};
use crate::setup::{text, uri, Bench, PASSWORD, USER};
use crate::timed::{self, CpuTimes, Finished};
use crate::watch::{copy_window, CopyWatch};
use crate::Tool;

/// What one tool's run measured.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The tool.
    pub(crate) tool: Tool,
    /// Seconds end to end (schema, data, indexes); `None` for the raw pipes (copy only).
    pub(crate) total: Option<f64>,
    /// Seconds of the copy phase, when the tool lets us tell.
    pub(crate) copy: Option<f64>,
    /// How the copy phase was found, and other observations (one line each).
    pub(crate) notes: Vec<String>,
    /// Share of all CPUs busy during the run, in percent.
    pub(crate) cpu: Option<f64>,
    /// Why the run failed, if it did.
    pub(crate) error: Option<String>,
    /// Row-count differences with the source (empty: every count matched).
    pub(crate) count_problems: Vec<String>,
    /// What the tool's processes printed, with times (for `--logs`).
    pub(crate) log: String,
    /// When `COPY FROM` was seen running on the destinations (seconds since the start).
    pub(crate) observed: Option<(f64, f64)>,
}

/// Runs `tool` with `jobs` workers, checks its row counts and drops its databases.
pub(crate) fn run(bench: &Bench, tool: Tool, jobs: usize) -> Outcome {
    let mut outcome = Outcome {
        tool,
        total: None,
        copy: None,
        notes: Vec::new(),
        cpu: None,
        error: None,
        count_problems: Vec::new(),
        log: String::new(),
        observed: None,
    };
    let shards = tool.databases();
    let prepared = shards
        .iter()
        .try_for_each(|(k, db)| bench.fresh_database(*k, db))
        .and_then(|()| bench.checkpoint());
    if let Err(e) = prepared {
        outcome.error = Some(e);
        return outcome;
    }
    eprintln!("running {}...", tool.name());
    let before = CpuTimes::now();
    let start = Instant::now();
    let watches: Vec<CopyWatch> = bench
        .dests
        .iter()
        .filter_map(|d| CopyWatch::start(&uri(d, "postgres"), start).ok())
        .collect();
    let db = &shards[0].1;
    let result = match tool {
        Tool::Raw | Tool::RawSplit => raw_pipes(bench, db, tool, jobs, &mut outcome),
        Tool::DumpPipe => dump_pipe(bench, db, start, &mut outcome),
        Tool::DumpDir => dump_dir(bench, db, jobs, start, &mut outcome),
        Tool::Pgcopydb | Tool::PgcopydbSplit => {
            pgcopydb(bench, db, jobs, tool, start, &mut outcome)
        }
        Tool::Pgdog1 | Tool::Pgdog2 => pgdog(bench, &shards, jobs, tool, start, &mut outcome),
    };
    let samples: Vec<Vec<(f64, u64)>> = watches.into_iter().map(CopyWatch::stop).collect();
    outcome.observed = copy_window(&samples);
    if let Some((from, to)) = outcome.observed {
        if matches!(tool, Tool::Pgcopydb | Tool::PgcopydbSplit) {
            outcome.copy = Some(to - from);
        }
        outcome.notes.push(format!(
            "`COPY FROM` running on the destination from {from:.1} s to {to:.1} s \
             (pg_stat_progress_copy every 100 ms)"
        ));
    }
    outcome.cpu = before.busy_percent(CpuTimes::now());
    match result {
        Ok(()) => outcome.count_problems = bench.count_problems(&shards),
        Err(e) => outcome.error = Some(e),
    }
    if let Some(total) = outcome.total.or(outcome.copy) {
        eprintln!("  {}: {total:.1} s", tool.name());
    }
    for (k, db) in &shards {
        if let Err(e) = bench.drop_database(*k, db) {
            outcome.notes.push(format!("cleanup: {e}"));
        }
    }
    outcome
}

/// A client tool of the installed PostgreSQL (`pg_config --bindir`).
fn pg_command(name: &str) -> Command {
    let mut command = Command::new(pg_tool(name));
    command
        .env("PGPASSWORD", PASSWORD)
        .env("PGCONNECT_TIMEOUT", "10");
    command
}

/// `psql -X -q -v ON_ERROR_STOP=1 -d <uri> -c <sql>`.
fn psql(uri: &str, sql: &str) -> Command {
    let mut command = pg_command("psql");
    command.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", uri, "-c", sql]);
    command
}

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
/// CTID ranges, `jobs` pipes at a time ([`Tool::RawSplit`]). Timed from the first start to
/// the last exit.
fn raw_pipes(
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
                let into = psql(
                    &target,
                    &format!("COPY public.{} FROM STDIN (FORMAT binary)", unit.table),
                );
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

/// The first line containing `needle` and the first line after the last one containing it:
/// the window a tool spent on the items `needle` names.
fn window(process: &Finished, needle: &str) -> Option<(f64, f64)> {
    let first = process.first(needle)?;
    let last = process
        .stderr
        .iter()
        .rposition(|s| s.line.contains(needle))?;
    let end = process.stderr.get(last + 1).map_or(process.ended, |s| s.at);
    Some((first, end))
}

/// `pg_dump -Fc -Z0 | pg_restore --exit-on-error -d`: serial on both ends (pg_restore -j
/// needs a seekable archive, not a pipe). Copy phase: from pg_restore's first `processing
/// data for table` to the line after its last one.
fn dump_pipe(
    bench: &Bench,
    database: &str,
    start: Instant,
    outcome: &mut Outcome,
) -> Result<(), String> {
    let mut dump = pg_command("pg_dump");
    dump.args(["-v", "-Fc", "-Z0", "-d", &bench.source_uri()]);
    let mut restore = pg_command("pg_restore");
    let target = uri(&bench.dests[0], database);
    restore.args(["-v", "--exit-on-error", "-d", &target]);
    let (dump, restore) = timed::pipe(("pg_dump", dump), ("pg_restore", restore), start)?;
    outcome.log = dump.transcript() + &restore.transcript();
    dump.check()?;
    restore.check()?;
    outcome.total = Some(restore.ended.max(dump.ended));
    match window(&restore, "processing data for table") {
        Some((from, to)) => {
            outcome.copy = Some(to - from);
            outcome.notes.push(format!(
                "schema {from:.1} s, data {from:.1}–{to:.1} s, indexes and constraints {to:.1}–{:.1} s \
                 (pg_restore -v lines)",
                restore.ended
            ));
        }
        None => outcome
            .notes
            .push("no `processing data for table` line from pg_restore -v".into()),
    }
    Ok(())
}

/// `pg_dump -Fd -Z0 -j J` into a directory, then `pg_restore -j J`. Copy phase: pg_dump's
/// whole run (it reads the data) plus pg_restore's `TABLE DATA` items, from the first launched
/// to the last finished.
fn dump_dir(
    bench: &Bench,
    database: &str,
    jobs: usize,
    start: Instant,
    outcome: &mut Outcome,
) -> Result<(), String> {
    let dir = bench.dir.path("dump");
    let _ = std::fs::remove_dir_all(&dir);
    let jobs = jobs.to_string();
    let mut dump = pg_command("pg_dump");
    dump.args(["-v", "-Fd", "-Z0", "-j", &jobs, "-f", &text(&dir)]);
    dump.args(["-d", &bench.source_uri()]);
    let dump = timed::run("pg_dump", dump, start)?;
    outcome.log = dump.transcript();
    dump.check()?;
    let mut restore = pg_command("pg_restore");
    let target = uri(&bench.dests[0], database);
    restore.args([
        "-v",
        "--exit-on-error",
        "-j",
        &jobs,
        "-d",
        &target,
        &text(&dir),
    ]);
    let restore = timed::run("pg_restore", restore, start)?;
    outcome.log.push_str(&restore.transcript());
    let _ = std::fs::remove_dir_all(&dir);
    restore.check()?;
    outcome.total = Some(restore.ended);
    let launched = restore
        .stderr
        .iter()
        .find(|s| s.line.contains("launching item") && s.line.contains("TABLE DATA"));
    let finished = restore
        .stderr
        .iter()
        .rev()
        .find(|s| s.line.contains("finished item") && s.line.contains("TABLE DATA"));
    match (launched, finished) {
        (Some(a), Some(b)) => {
            outcome.copy = Some(dump.ended + (b.at - a.at));
            outcome.notes.push(format!(
                "pg_dump 0–{:.1} s; pg_restore: schema to {:.1} s, data {:.1}–{:.1} s, indexes \
                 and constraints to {:.1} s (pg_restore -v lines)",
                dump.ended, a.at, a.at, b.at, restore.ended
            ));
        }
        _ => outcome
            .notes
            .push("no `launching/finished item ... TABLE DATA` lines from pg_restore -v".into()),
    }
    Ok(())
}

/// `pgcopydb clone --table-jobs J --index-jobs J` (with `--split-tables-larger-than` for the
/// split variant). Copy phase: see [`pgcopydb_copy_phase`].
fn pgcopydb(
    bench: &Bench,
    database: &str,
    jobs: usize,
    tool: Tool,
    start: Instant,
    outcome: &mut Outcome,
) -> Result<(), String> {
    let dir = bench.dir.path("pgcopydb");
    let _ = std::fs::remove_dir_all(&dir);
    let jobs = jobs.to_string();
    let mut command = Command::new("pgcopydb");
    command.args(["clone", "--source", &bench.source_uri()]);
    command.args(["--target", &uri(&bench.dests[0], database)]);
    command.args([
        "--table-jobs",
        &jobs,
        "--index-jobs",
        &jobs,
        "--dir",
        &text(&dir),
    ]);
    if tool == Tool::PgcopydbSplit {
        command.args(["--split-tables-larger-than", crate::SPLIT_SIZE]);
    }
    // pgcopydb runs pg_dump and pg_restore; the ones of the installed server first.
    let bindir = Path::new(&pg_tool("pg_dump"))
        .parent()
        .map(text)
        .unwrap_or_default();
    let path = std::env::var("PATH").unwrap_or_default();
    command.env("PATH", format!("{bindir}:{path}"));
    let run = timed::run("pgcopydb clone", command, start)?;
    outcome.log = run.transcript();
    let _ = std::fs::remove_dir_all(&dir);
    run.check()?;
    outcome.total = Some(run.ended);
    pgcopydb_copy_phase(&run, outcome);
    Ok(())
}

/// What pgcopydb's log says about its phases. Its copy phase is the window in which `COPY
/// FROM` ran on the destination (see [`run`]): it builds indexes and runs VACUUM ANALYZE of
/// finished tables while others are still copied, and its own `COPY phase is done` line can
/// come after those.
fn pgcopydb_copy_phase(run: &Finished, outcome: &mut Outcome) {
    let first = run
        .stderr
        .iter()
        .find(|s| s.line.contains("COPY \"") || s.line.contains("COPY ("))
        .map(|s| s.at);
    let done = run.first("COPY phase is done");
    match (first, done) {
        (Some(from), Some(to)) => outcome.notes.push(format!(
            "pgcopydb log: schema to {from:.1} s, first COPY at {from:.1} s, `COPY phase is done` \
             at {to:.1} s, exit at {:.1} s (index builds and VACUUM ANALYZE of finished tables \
             overlap the copies)",
            run.ended
        )),
        _ => outcome
            .notes
            .push("no `COPY` or `COPY phase is done` line in pgcopydb's output".into()),
    }
}

/// The `pgdog.toml` of a data-sync run (`port`: unused by the CLI, but a valid one): database `source` and the shards of `destination`
/// (`(port, database)` each), `J` copy workers and index builds, and with several shards the
/// data set's sharding entries.
pub(crate) fn pgdog_toml(
    port: u16,
    source_port: u16,
    shards: &[(u16, String)],
    jobs: usize,
) -> String {
    let mut config = format!(
        "[general]\nhost = \"127.0.0.1\"\nport = {port}\nmin_pool_size = 0\n\
         resharding_parallel_copies = {jobs}\n\n[replication]\nindex_jobs = {jobs}\n\n\
         [[databases]]\nname = \"source\"\nhost = \"127.0.0.1\"\nport = {source_port}\n\
         database_name = \"{}\"\n\n",
        dataset::SOURCE_DB
    );
    for (k, (port, database)) in shards.iter().enumerate() {
        let _ = write!(
            config,
            "[[databases]]\nname = \"destination\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             database_name = \"{database}\"\nshard = {k}\n\n"
        );
    }
    if shards.len() > 1 {
        config.push_str(&dataset::sharding_toml("destination"));
    }
    config
}

/// The `users.toml`: user `bench` on both databases, as the superuser on the servers, with
/// `schema_admin = true` (resharding connects as it).
pub(crate) fn users_toml() -> String {
    let mut users = String::new();
    for database in ["source", "destination"] {
        let _ = write!(
            users,
            "[[users]]\nname = \"bench\"\ndatabase = \"{database}\"\npassword = \"bench\"\n\
             server_user = \"{USER}\"\nserver_password = \"{PASSWORD}\"\nschema_admin = true\n\n"
        );
    }
    users
}

/// What `pgdog data-sync` printed last: `copied <T> tables, <R> rows, <X> in <S> s (...)`;
/// returns the rows and the seconds.
pub(crate) fn pgdog_summary(stdout: &str) -> Option<(u64, f64)> {
    stdout.lines().rev().find_map(|line| {
        let rest = line.trim().strip_prefix("copied ")?;
        let (_, rest) = rest.split_once(" tables, ")?;
        let (rows, rest) = rest.split_once(" rows, ")?;
        let (_, rest) = rest.split_once(" in ")?;
        let (seconds, _) = rest.split_once(" s")?;
        Some((rows.trim().parse().ok()?, seconds.trim().parse().ok()?))
    })
}

/// `pgdog -c pgdog.toml -u users.toml data-sync --from-database source --to-database
/// destination --publication pub --sync-only --table-jobs J --replication-slot <slot>`; the
/// slot is dropped afterwards. Copy phase: the seconds of its summary line.
fn pgdog(
    bench: &Bench,
    shards: &[(usize, String)],
    jobs: usize,
    tool: Tool,
    start: Instant,
    outcome: &mut Outcome,
) -> Result<(), String> {
    let slot = format!("bench_copy_{}", shards.len());
    let files = bench.dir.path(&format!("pgdog-{}", shards.len()));
    std::fs::create_dir_all(&files).map_err(|e| format!("create {}: {e}", files.display()))?;
    let ports: Vec<(u16, String)> = shards
        .iter()
        .map(|(k, db)| (bench.dests[*k].port(), db.clone()))
        .collect();
    let (config, users) = (files.join("pgdog.toml"), files.join("users.toml"));
    let toml = pgdog_toml(integration::free_port(), bench.source.port(), &ports, jobs);
    std::fs::write(&config, &toml).map_err(|e| format!("write {}: {e}", config.display()))?;
    std::fs::write(&users, users_toml()).map_err(|e| format!("write {}: {e}", users.display()))?;
    let mut command = Command::new(integration::pgdog_process::pgdog_binary());
    command.arg("-c").arg(&config).arg("-u").arg(&users);
    command.args([
        "data-sync",
        "--from-database",
        "source",
        "--to-database",
        "destination",
        "--publication",
        PUBLICATION,
        "--sync-only",
        "--table-jobs",
        &jobs.to_string(),
        "--replication-slot",
        &slot,
    ]);
    command
        .env_remove("PGDOG_CONFIG")
        .env_remove("PGDOG_USERS")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let run = timed::run(tool.name(), command, start);
    let drop_slot = format!(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
         WHERE slot_name = '{slot}'"
    );
    if let Err(e) = bench.source.psql(dataset::SOURCE_DB, &drop_slot) {
        outcome.notes.push(format!("dropping slot {slot}: {e}"));
    }
    let run = run?;
    outcome.log = run.transcript();
    if let Err(e) = run.check() {
        return Err(format!("{e}\nstdout:\n{}", run.stdout.trim_end()));
    }
    outcome.total = Some(run.ended);
    match pgdog_summary(&run.stdout) {
        Some((rows, seconds)) => {
            outcome.copy = Some(seconds);
            if rows != bench.rows() {
                outcome.notes.push(format!(
                    "pgdog's summary counts {rows} rows, the source has {}",
                    bench.rows()
                ));
            }
        }
        None => outcome.notes.push(format!(
            "no `copied ... in <S> s` summary on pgdog's stdout:\n{}",
            run.stdout.trim_end()
        )),
    }
    if let Some(line) = run.stdout.lines().rev().find(|l| l.starts_with("copied ")) {
        outcome.notes.push(format!("pgdog: `{}`", line.trim()));
    }
    let steps: Vec<String> = run
        .stderr
        .iter()
        .filter_map(|s| {
            let (_, step) = s.line.split_once("data sync: ")?;
            Some(format!("{step} at {:.1} s", s.at))
        })
        .collect();
    if !steps.is_empty() {
        outcome.notes.push(format!(
            "steps (log lines as they arrived): {}; exit at {:.1} s",
            steps.join(", "),
            run.ended
        ));
    }
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

    #[test]
    fn reads_pgdog_summary() {
        let out = "public.events: 10 rows, 1 kB copied, verified\n\
                   copied 4 tables, 123456 rows, 75.3 MB in 1.7 s (44.3 MB/s); replication slot s at 0/1\n";
        assert_eq!(pgdog_summary(out), Some((123456, 1.7)));
        assert_eq!(pgdog_summary("nothing"), None);
    }

    #[test]
    fn pgdog_config_files() {
        let one = pgdog_toml(6432, 5000, &[(5001, "pgdog1".into())], 2);
        assert!(one.contains("resharding_parallel_copies = 2"));
        assert!(one.contains("[replication]\nindex_jobs = 2"));
        assert!(one.contains("port = 5001\ndatabase_name = \"pgdog1\"\nshard = 0"));
        assert!(!one.contains("sharded_tables"));
        let two = pgdog_toml(6432, 5000, &[(5001, "a".into()), (5002, "b".into())], 2);
        assert!(two.contains("port = 5002\ndatabase_name = \"b\"\nshard = 1"));
        assert!(two.contains("[[sharded_tables]]"));
        assert_eq!(users_toml().matches("schema_admin = true").count(), 2);
    }
}
