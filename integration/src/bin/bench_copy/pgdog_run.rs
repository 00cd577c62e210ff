//! pgdog's own data copy: `pgdog data-sync` with config files written for the run, to one
//! shard or to two.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Instant;

use crate::dataset::{self, PUBLICATION};
use crate::runs::Outcome;
use crate::setup::{Bench, PASSWORD, USER};
use crate::timed;
use crate::Tool;

/// The `pgdog.toml` of a data-sync run (`port`: unused by the CLI, but a valid one): database
/// `source` and the shards of `destination` (`(port, database)` each), `J` copy workers and
/// index builds, and with several shards the data set's sharding entries.
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
pub(crate) fn pgdog(
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
