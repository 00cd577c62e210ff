//! The pgbench command line of one run (what a run measured is `integration::bench::PgbenchRun`).

use super::*;

pub(crate) fn bench_args(clients: u32, duration: u64, mode: &Mode) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "-c".into(),
        clients.to_string(),
        "-j".into(),
        THREADS.into(),
    ];
    args.extend(["-T".into(), duration.to_string(), "--no-vacuum".into()]);
    args.extend(mode.flags.iter().map(|f| f.to_string()));
    args
}

pub(crate) fn run_pgbench(port: u16, args: &[String]) -> ToolOutput {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    pgbench(port, USER, PASSWORD, DATABASE, &args)
}
