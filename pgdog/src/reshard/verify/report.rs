//! What `VERIFY` reports: per table its status, both sides' rows and checksums, each shard of
//! the sharded side (what it should hold, what it holds), notes; and how one table's digests
//! compare ([`Outcome`]).

use std::time::Duration;

use crate::reshard::copy::digest::Digest;

/// A table's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableStatus {
    /// Every shard holds what it should.
    Match,
    /// Some shard does not (or the definitions differ).
    Differs,
    /// The table is not on the destination (or on some shard of either side).
    Missing,
}

impl TableStatus {
    /// `match`, `differs` or `missing`.
    pub fn as_str(self) -> &'static str {
        match self {
            TableStatus::Match => "match",
            TableStatus::Differs => "differs",
            TableStatus::Missing => "missing",
        }
    }
}

/// One shard of the sharded side: what it should hold and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardCheck {
    /// Shard number.
    pub shard: usize,
    /// Rows and checksum routed to it from the other side.
    pub expected: Digest,
    /// Rows and checksum read from it.
    pub found: Digest,
}

impl ShardCheck {
    /// Whether it holds what it should.
    pub fn matches(&self) -> bool {
        self.expected == self.found
    }

    /// `0: 1000 rows ok`, `1: 998 rows DIFFERS (expected 999)`.
    pub fn describe(&self) -> String {
        let rows = self.found.rows;
        if self.matches() {
            format!("{}: {rows} rows ok", self.shard)
        } else if rows == self.expected.rows {
            format!(
                "{}: {rows} rows DIFFERS (same count, other checksum)",
                self.shard
            )
        } else {
            format!(
                "{}: {rows} rows DIFFERS (expected {})",
                self.shard, self.expected.rows
            )
        }
    }
}

/// The comparison of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableVerdict {
    /// Schema.
    pub schema: String,
    /// Table.
    pub table: String,
    /// Outcome.
    pub status: TableStatus,
    /// The source's rows and checksum (as the destination stores them: integers widened).
    pub source: Option<Digest>,
    /// The destination's.
    pub destination: Option<Digest>,
    /// Each shard of the sharded side (the destination's when both are sharded).
    pub shards: Vec<ShardCheck>,
    /// Time spent on the table (in the last comparison).
    pub elapsed: Duration,
    /// Comparisons made (more than one when it differed while a stream ran).
    pub attempts: usize,
    /// Remarks (why it differs or is missing, lag).
    pub notes: Vec<String>,
}

impl TableVerdict {
    /// An outcome with nothing read yet.
    pub(super) fn new(schema: &str, table: &str, status: TableStatus) -> TableVerdict {
        TableVerdict {
            schema: schema.to_string(),
            table: table.to_string(),
            status,
            source: None,
            destination: None,
            shards: Vec::new(),
            elapsed: Duration::ZERO,
            attempts: 1,
            notes: Vec::new(),
        }
    }

    /// `schema.table`.
    pub fn label(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }

    /// The shards, e.g. `0: 1000 rows ok, 1: 998 rows DIFFERS (expected 999)`.
    pub fn shards_text(&self) -> Option<String> {
        if self.shards.is_empty() {
            return None;
        }
        let parts: Vec<String> = self.shards.iter().map(ShardCheck::describe).collect();
        Some(parts.join(", "))
    }

    /// The notes joined, if any.
    pub fn note(&self) -> Option<String> {
        (!self.notes.is_empty()).then(|| self.notes.join("; "))
    }
}

/// What `VERIFY` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// One verdict per table, by schema and name.
    pub tables: Vec<TableVerdict>,
    /// Comparisons made (more than one when a live stream was waited for).
    pub attempts: usize,
}

impl VerifyReport {
    /// Whether every table matches.
    pub fn all_match(&self) -> bool {
        self.tables.iter().all(|t| t.status == TableStatus::Match)
    }

    /// `8 tables: 6 match, 1 differ (Sales.orders), 1 missing (public.x)`.
    pub fn summary(&self) -> String {
        let named = |status: TableStatus| -> (usize, String) {
            let labels: Vec<String> = self
                .tables
                .iter()
                .filter(|t| t.status == status)
                .map(TableVerdict::label)
                .collect();
            (labels.len(), labels.join(", "))
        };
        let (matching, _) = named(TableStatus::Match);
        let mut text = format!("{} tables: {matching} match", self.tables.len());
        for (status, word) in [
            (TableStatus::Differs, "differ"),
            (TableStatus::Missing, "missing"),
        ] {
            let (count, labels) = named(status);
            if count > 0 {
                text.push_str(&format!(", {count} {word} ({labels})"));
            }
        }
        text
    }
}

/// The digests of one table compared shard by shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Outcome {
    /// The routed side's rows (for a table on every placed shard, what one shard holds).
    pub(super) routed: Digest,
    /// The placed side's: the union of its shards, or for a table on every shard, the first
    /// shard that differs (else shard 0).
    pub(super) placed: Digest,
    /// Each placed shard.
    pub(super) shards: Vec<ShardCheck>,
}

impl Outcome {
    /// Compares `expected` (routed) with `found` (read) shard by shard; `everywhere`: the
    /// table is whole on every placed shard.
    pub(super) fn of(expected: &[Digest], found: &[Digest], everywhere: bool) -> Outcome {
        let shards: Vec<ShardCheck> = expected
            .iter()
            .zip(found)
            .enumerate()
            .map(|(shard, (expected, found))| ShardCheck {
                shard,
                expected: *expected,
                found: *found,
            })
            .collect();
        let sum = |digests: &mut dyn Iterator<Item = Digest>| {
            let mut total = Digest::default();
            digests.for_each(|d| total.merge(d));
            total
        };
        if everywhere {
            let shown = shards
                .iter()
                .find(|s| !s.matches())
                .or(shards.first())
                .map(|s| s.found)
                .unwrap_or_default();
            Outcome {
                routed: expected.first().copied().unwrap_or_default(),
                placed: shown,
                shards,
            }
        } else {
            Outcome {
                routed: sum(&mut expected.iter().copied()),
                placed: sum(&mut found.iter().copied()),
                shards,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reshard::verify::LAG_NOTE;

    fn digest(rows: u64, sum: u64) -> Digest {
        Digest { rows, sum }
    }

    #[test]
    fn outcomes_per_shard() {
        let expected = [digest(3, 10), digest(2, 20)];
        let same = Outcome::of(&expected, &expected, false);
        assert!(same.shards.iter().all(ShardCheck::matches));
        assert_eq!(same.routed, digest(5, 30));
        assert_eq!(same.placed, digest(5, 30));
        assert_eq!(
            same.shards
                .iter()
                .map(ShardCheck::describe)
                .collect::<Vec<_>>(),
            ["0: 3 rows ok", "1: 2 rows ok"]
        );

        let changed = Outcome::of(&expected, &[digest(3, 11), digest(1, 5)], false);
        assert_eq!(changed.placed, digest(4, 16));
        assert_eq!(
            changed
                .shards
                .iter()
                .map(ShardCheck::describe)
                .collect::<Vec<_>>(),
            [
                "0: 3 rows DIFFERS (same count, other checksum)",
                "1: 1 rows DIFFERS (expected 2)"
            ]
        );

        // On every shard: the source's rows once, the destination's from the shard that differs.
        let everywhere = [digest(4, 9), digest(4, 9)];
        let outcome = Outcome::of(&everywhere, &[digest(4, 9), digest(3, 7)], true);
        assert_eq!(outcome.routed, digest(4, 9));
        assert_eq!(outcome.placed, digest(3, 7));
        let outcome = Outcome::of(&everywhere, &everywhere, true);
        assert_eq!(outcome.placed, digest(4, 9));
    }

    #[test]
    fn report_texts() {
        let mut ok = TableVerdict::new("public", "a", TableStatus::Match);
        ok.shards = vec![ShardCheck {
            shard: 0,
            expected: digest(1, 1),
            found: digest(1, 1),
        }];
        let mut bad = TableVerdict::new("Sales", "orders", TableStatus::Differs);
        bad.notes = vec!["x".into(), LAG_NOTE.into()];
        let gone = TableVerdict::new("public", "gone", TableStatus::Missing);
        let report = VerifyReport {
            tables: vec![ok.clone(), bad.clone(), gone],
            attempts: 1,
        };
        assert!(!report.all_match());
        assert_eq!(
            report.summary(),
            "3 tables: 1 match, 1 differ (Sales.orders), 1 missing (public.gone)"
        );
        assert_eq!(ok.shards_text().as_deref(), Some("0: 1 rows ok"));
        assert_eq!(ok.note(), None);
        assert_eq!(bad.shards_text(), None);
        assert_eq!(bad.note(), Some(format!("x; {LAG_NOTE}")));
        assert!(VerifyReport::default().all_match());
    }
}
