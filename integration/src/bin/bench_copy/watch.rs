//! Watching a destination cluster during a run: one psql session asks every 100 ms how many
//! `COPY FROM` commands are in progress (`pg_stat_progress_copy`), so that the window in which
//! rows were written can be told for every tool alike, whatever it prints.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Instant;

use integration::tools::pg_tool;

use crate::setup::PASSWORD;

/// The query psql repeats.
const QUERY: &str =
    "SELECT count(*) FROM pg_stat_progress_copy WHERE command = 'COPY FROM' \\watch 0.1\n";

/// A running sampler; [`stop`](Self::stop) ends it and returns the samples.
pub(crate) struct CopyWatch {
    child: Child,
    reader: Option<JoinHandle<Vec<(f64, u64)>>>,
}

impl CopyWatch {
    /// Starts sampling the cluster at `uri` (any database), times counted from `start`.
    pub(crate) fn start(uri: &str, start: Instant) -> Result<CopyWatch, String> {
        let mut child = Command::new(pg_tool("psql"))
            .args(["-X", "-q", "-A", "-t", "-d", uri])
            .env("PGPASSWORD", PASSWORD)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start psql to watch {uri}: {e}"))?;
        if let Some(stdin) = child.stdin.as_mut() {
            stdin
                .write_all(QUERY.as_bytes())
                .map_err(|e| format!("psql watching {uri}: {e}"))?;
        }
        let reader = child.stdout.take().map(|out| {
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(count) = line.trim().parse::<u64>() {
                        samples.push((start.elapsed().as_secs_f64(), count));
                    }
                }
                samples
            })
        });
        Ok(CopyWatch { child, reader })
    }

    /// Stops psql and returns `(seconds, COPY FROM count)` samples.
    pub(crate) fn stop(mut self) -> Vec<(f64, u64)> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reader
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

/// From the first to the last sample with a `COPY FROM` in progress, over all clusters'
/// samples; `None` when none was seen.
pub(crate) fn copy_window(samples: &[Vec<(f64, u64)>]) -> Option<(f64, f64)> {
    let busy = samples.iter().flatten().filter(|(_, n)| *n > 0);
    busy.fold(None, |window, (at, _)| match window {
        None => Some((*at, *at)),
        Some((from, to)) => Some((from.min(*at), to.max(*at))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_over_clusters() {
        let a = vec![(0.1, 0), (0.2, 1), (0.3, 2), (0.4, 0)];
        let b = vec![(0.15, 0), (0.35, 1), (0.45, 1), (0.55, 0)];
        assert_eq!(copy_window(&[a.clone(), b]), Some((0.2, 0.45)));
        assert_eq!(copy_window(&[vec![(0.1, 0)]]), None);
        assert_eq!(copy_window(&[a]), Some((0.2, 0.3)));
    }
}
