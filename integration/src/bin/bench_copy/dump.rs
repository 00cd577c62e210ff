//! The PostgreSQL tools: `pg_dump | pg_restore`, `pg_dump -Fd -j` + `pg_restore -j`, and
//! `pgcopydb clone`, with their phases read from what they print.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use integration::tools::pg_tool;

use crate::runs::{pg_command, Outcome};
use crate::setup::{text, uri, Bench};
use crate::timed::{self, Finished};
use crate::Tool;

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
pub(crate) fn dump_pipe(
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
pub(crate) fn dump_dir(
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
pub(crate) fn pgcopydb(
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
/// FROM` ran on the destination (see [`crate::runs::run`]): it builds indexes and runs VACUUM ANALYZE of
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
