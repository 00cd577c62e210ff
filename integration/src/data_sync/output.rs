//! Reading what `pgdog data-sync` prints at the end of stdout: one line per table
//! (`public.customers: 2000 rows, 180 kB, ... verified` or `public.customers: already copied`)
//! and the summary (`copied 8 tables, 40000 rows ...; replication slot pgdog_pub at 0/1A2B3C`).

use std::collections::BTreeMap;

/// What the run did with one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableOutcome {
    /// Copied by this run: the row count printed, and whether the line ends with `verified`.
    Copied {
        /// The `<N> rows` of the line.
        rows: u64,
        /// The line ends with `verified`.
        verified: bool,
    },
    /// A previous run had copied it completely (`already copied`).
    AlreadyCopied,
}

/// The summary line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `copied <T> tables`.
    pub tables: u64,
    /// `<R> rows`.
    pub rows: u64,
    /// The replication slot's name.
    pub slot: String,
    /// Its LSN as printed (`X/Y`).
    pub lsn: String,
}

/// The table lines of `stdout` by table, named `schema.table` without quotes (a table printed
/// twice keeps its last line).
pub fn table_lines(stdout: &str) -> BTreeMap<String, TableOutcome> {
    stdout.lines().filter_map(parse_table_line).collect()
}

fn parse_table_line(line: &str) -> Option<(String, TableOutcome)> {
    let line = line.trim();
    if let Some(name) = line.strip_suffix(": already copied") {
        return Some((unquote(name), TableOutcome::AlreadyCopied));
    }
    let (name, rest) = line.rsplit_once(": ")?;
    let (rows, after) = rest.split_once(' ')?;
    if !after.starts_with("rows") || name.contains(' ') && !name.contains('"') {
        return None;
    }
    let rows = rows.parse().ok()?;
    Some((
        unquote(name),
        TableOutcome::Copied {
            rows,
            verified: rest.trim_end().ends_with("verified"),
        },
    ))
}

/// `schema.table` with double quotes removed (`"Sales".orders` → `Sales.orders`).
fn unquote(name: &str) -> String {
    name.trim().replace('"', "")
}

/// The last summary line of `stdout`, if any.
pub fn summary(stdout: &str) -> Option<Summary> {
    stdout.lines().rev().find_map(parse_summary)
}

fn parse_summary(line: &str) -> Option<Summary> {
    let rest = line.trim().strip_prefix("copied ")?;
    let (tables, rest) = rest.split_once(" tables, ")?;
    let (rows, rest) = rest.split_once(" rows")?;
    let (_, slot_part) = rest.rsplit_once("; replication slot ")?;
    let (slot, lsn) = slot_part.rsplit_once(" at ")?;
    Some(Summary {
        tables: tables.trim().parse().ok()?,
        rows: rows.trim().parse().ok()?,
        slot: slot.trim().to_string(),
        lsn: lsn.trim().to_string(),
    })
}

/// `text` without terminal control sequences (`ESC [ ... letter`, other `ESC x` pairs) and
/// with carriage returns as line breaks: what a terminal session's log reads as lines.
pub fn strip_terminal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.next_if_eq(&'[').is_some() {
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' => out.push('\n'),
            c => out.push(c),
        }
    }
    out
}

/// An LSN `X/Y` as a number.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.trim().split_once('/')?;
    let high = u64::from_str_radix(high, 16).ok()?;
    let low = u64::from_str_radix(low, 16).ok()?;
    Some((high << 32) | low)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lines_and_summary() {
        let stdout = "shard 0: 3 created, 0 already existed, 0 differ, 0 failed\n\
                      public.customers: 2000 rows, 180 kB, 1.2 MB/s, 0.2 s, verified\n\
                      \"Sales\".orders: 12000 rows, 2 MB in 3 s, verified\n\
                      public.countries: already copied\n\
                      copied 2 tables, 14000 rows in 3.1 s (4 MB/s); replication slot pgdog_pub at 0/1A2B3C\n";
        let lines = table_lines(stdout);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(
            lines["public.customers"],
            TableOutcome::Copied {
                rows: 2000,
                verified: true
            }
        );
        assert_eq!(
            lines["Sales.orders"],
            TableOutcome::Copied {
                rows: 12000,
                verified: true
            }
        );
        assert_eq!(lines["public.countries"], TableOutcome::AlreadyCopied);
        assert_eq!(
            summary(stdout),
            Some(Summary {
                tables: 2,
                rows: 14000,
                slot: "pgdog_pub".into(),
                lsn: "0/1A2B3C".into()
            })
        );
        assert_eq!(parse_lsn("1/10"), Some((1 << 32) + 16));
        assert_eq!(parse_lsn("nope"), None);
        assert_eq!(
            strip_terminal("\x1b[1A\x1b[2Kpublic.t: already copied\r\x1b[32mok\x1b[0m"),
            "public.t: already copied\nok"
        );
    }
}
