//! One pgbench run and what it measured.

use super::*;

/// The outcome of one pgbench run.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub(crate) round: usize,
    pub(crate) tps: Option<f64>,
    pub(crate) latency_ms: Option<f64>,
    pub(crate) failed: u64,
    pub(crate) code: i32,
    pub(crate) errors: Vec<String>,
}

impl Run {
    pub(crate) fn parse(round: usize, output: &ToolOutput) -> Run {
        let all = format!("{}\n{}", output.stdout, output.stderr);
        let tps = all.lines().find_map(|line| {
            let rest = line.trim().strip_prefix("tps = ")?;
            rest.contains("without initial connection time")
                .then(|| rest.split_whitespace().next()?.parse().ok())?
        });
        let latency_ms = pgbench_number(&all, "latency average = ");
        let failed = pgbench_number(&all, "number of failed transactions:").unwrap_or(0.0) as u64;
        let mut errors: Vec<String> = Vec::new();
        for line in all.lines().map(str::trim) {
            let lower = line.to_ascii_lowercase();
            let bad = ["error", "fatal", "abort", "could not", "panic"];
            if bad.iter().any(|word| lower.contains(word)) && !errors.iter().any(|e| e == line) {
                errors.push(line.to_string());
            }
        }
        Run {
            round,
            tps,
            latency_ms,
            failed,
            code: output.code,
            errors,
        }
    }

    /// Why this run is not clean, if it is not.
    pub(crate) fn problem(&self) -> Option<String> {
        let mut why = Vec::new();
        if self.code != 0 {
            why.push(format!("pgbench exit code {}", self.code));
        }
        if self.failed > 0 {
            why.push(format!("{} failed transactions", self.failed));
        }
        if self.tps.is_none() {
            why.push("no tps in the output".into());
        }
        if !self.errors.is_empty() {
            let shown: Vec<String> = self
                .errors
                .iter()
                .take(3)
                .map(|e| format!("`{e}`"))
                .collect();
            let more = self.errors.len().saturating_sub(3);
            let more = if more > 0 {
                format!(" (+{more} more lines)")
            } else {
                String::new()
            };
            why.push(format!("{}{more}", shown.join("; ")));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}

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

pub(crate) fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

// ---------------------------------------------------------------------------------------------
// The benchmark
