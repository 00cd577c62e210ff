//! The cutover phase: destination sequences restart above the source's live values (the last
//! value handed out plus a margin, rounded up to a multiple of the shard count). Sequences of sharded tables step by the shard count with one offset per shard,
//! so every shard hands out ids no other shard and no earlier source row has. Sequences only
//! ever move forward: a shard already at or past its target is left alone.

use std::collections::BTreeSet;

use super::apply::Step;
use super::facts::Name;
use super::log::StatementState;
use crate::quote;
use crate::reshard::conn::{Conn, ConnError};

/// The sequences a cutover moves, found in the catalog beforehand: moving them while traffic
/// is paused then takes two short queries per server.
#[derive(Debug, Clone)]
pub struct CutoverPlan {
    /// Each sequence and whether a sharded table of the destination uses it.
    pub sequences: Vec<(Name, bool)>,
    /// Added above the last value the source handed out.
    pub margin: i64,
}

impl CutoverPlan {
    /// The steps for each destination shard: the source's position of each sequence is the
    /// furthest of its shards' (after a cutover the source may be sharded itself).
    /// `sources` are open to every source shard, `shards` to every destination shard.
    pub async fn steps(
        &self,
        sources: &mut [Conn],
        shards: &mut [Conn],
    ) -> Result<Vec<Vec<Step>>, ConnError> {
        let names: Vec<Name> = self.sequences.iter().map(|(n, _)| n.clone()).collect();
        let mut furthest: Vec<Option<Position>> = vec![None; names.len()];
        for conn in sources.iter_mut() {
            let here = positions(conn, &names).await?;
            for (best, found) in furthest.iter_mut().zip(here) {
                if let Some(found) = found {
                    if best.is_none_or(|b| used(found) > used(b)) {
                        *best = Some(found);
                    }
                }
            }
        }
        let count = shards.len();
        let mut steps_per_shard = Vec::with_capacity(count);
        for (shard, conn) in shards.iter_mut().enumerate() {
            let here = positions(conn, &names).await?;
            let mut steps = Vec::new();
            for (((sequence, sharded), source), here) in
                self.sequences.iter().zip(&furthest).zip(here)
            {
                let Some(source) = source else { continue };
                let Some(here) = here else {
                    let mut missing = Step::run(
                        "SEQUENCE VALUE",
                        &format!("{}.{}", sequence.0, sequence.1),
                        String::new(),
                    );
                    missing.state = StatementState::Differs;
                    missing.note = Some(
                        "the sequence does not exist on the shard; run the pre phase first".into(),
                    );
                    steps.push(missing);
                    continue;
                };
                steps.push(step(
                    sequence,
                    *source,
                    here,
                    self.margin,
                    *sharded,
                    shard,
                    count,
                ));
            }
            steps_per_shard.push(steps);
        }
        Ok(steps_per_shard)
    }
}

/// The last value a sequence handed out.
fn used(position: Position) -> i64 {
    position.next.saturating_sub(position.increment)
}

/// The positions of `names` on one server, `None` for those it does not have: two queries
/// whatever the number of sequences.
pub async fn positions(
    conn: &mut Conn,
    names: &[Name],
) -> Result<Vec<Option<Position>>, ConnError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let qualified: Vec<String> = names
        .iter()
        .map(|(schema, name)| quote::qualified(schema, name))
        .collect();
    let list = qualified
        .iter()
        .map(|n| quote::literal(n))
        .collect::<Vec<_>>()
        .join(", ");
    let found = conn
        .query(&format!(
            "SELECT u.i, p.seqincrement FROM unnest(ARRAY[{list}]::text[]) WITH ORDINALITY AS u(n, i) \
             JOIN pg_catalog.pg_sequence p ON p.seqrelid = pg_catalog.to_regclass(u.n) ORDER BY u.i"
        ))
        .await?;
    let mut increments: Vec<Option<i64>> = vec![None; names.len()];
    let mut selects = Vec::new();
    for r in 0..found.rows.len() {
        let index = found
            .get(r, 0)
            .and_then(|v| v.parse::<usize>().ok())
            .and_then(|i| i.checked_sub(1));
        let increment = found.get(r, 1).and_then(|v| v.parse::<i64>().ok());
        if let (Some(index), Some(increment)) = (index, increment) {
            if let (Some(slot), Some(name)) = (increments.get_mut(index), qualified.get(index)) {
                *slot = Some(increment);
                selects.push(format!("SELECT {index}, last_value, is_called FROM {name}"));
            }
        }
    }
    let mut out = vec![None; names.len()];
    if selects.is_empty() {
        return Ok(out);
    }
    let values = conn.query(&selects.join(" UNION ALL ")).await?;
    for r in 0..values.rows.len() {
        let index = values.get(r, 0).and_then(|v| v.parse::<usize>().ok());
        let last = values.get(r, 1).and_then(|v| v.parse::<i64>().ok());
        let called = values.get(r, 2) == Some("t");
        if let (Some(index), Some(last)) = (index, last) {
            let increment = increments.get(index).copied().flatten().unwrap_or(1);
            if let Some(slot) = out.get_mut(index) {
                *slot = Some(Position {
                    increment,
                    next: if called {
                        last.saturating_add(increment)
                    } else {
                        last
                    },
                });
            }
        }
    }
    Ok(out)
}

/// A sequence's position: its increment and the next value it would hand out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// `INCREMENT BY`.
    pub increment: i64,
    /// The value `nextval` returns next.
    pub next: i64,
}

/// What shard `shard` of `shards` should do with a sequence whose source is at `source`.
pub fn step(
    sequence: &Name,
    source: Position,
    destination: Position,
    margin: i64,
    sharded: bool,
    shard: usize,
    shards: usize,
) -> Step {
    let object = format!("{}.{}", sequence.0, sequence.1);
    let name = quote::qualified(&sequence.0, &sequence.1);
    let kind = "SEQUENCE VALUE";
    if source.increment <= 0 {
        let mut step = Step::run(kind, &object, String::new());
        step.state = StatementState::Differs;
        step.note = Some("descending sequences are not moved; set it by hand".into());
        return step;
    }
    // The last value the source handed out, plus the margin, rounded up to a multiple of the
    // shard count: the same start on every shard, whatever the sequence.
    let used = source.next.saturating_sub(source.increment);
    let n = shards.max(1) as i64;
    let start = used.saturating_add(margin).saturating_add(n - 1) / n * n;
    let (increment, next) = if sharded {
        (
            source.increment.saturating_mul(n),
            start.saturating_add(shard as i64 * source.increment),
        )
    } else {
        (source.increment, start)
    };
    let sql = if sharded {
        format!("ALTER SEQUENCE {name} INCREMENT BY {increment} RESTART WITH {next}")
    } else {
        format!(
            "SELECT pg_catalog.setval({}, {next}, false)",
            quote::literal(&name)
        )
    };
    let mut step = Step::run(kind, &object, sql);
    if destination.increment == increment && destination.next >= next {
        step.state = StatementState::Exists;
    }
    step
}

/// The sequences used by sharded tables.
pub fn of_tables<'a>(
    tables: impl Iterator<Item = (&'a Name, &'a BTreeSet<Name>)>,
    is_sharded: impl Fn(&Name) -> bool,
) -> BTreeSet<Name> {
    tables
        .filter(|(table, _)| is_sharded(table))
        .flat_map(|(_, sequences)| sequences.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq() -> Name {
        ("Sales".into(), "orders_id_seq".into())
    }

    #[test]
    fn sharded_sequences_interleave_above_the_source() {
        let source = Position {
            increment: 1,
            next: 52,
        };
        let fresh = Position {
            increment: 1,
            next: 1,
        };
        let steps: Vec<Step> = (0..2)
            .map(|k| step(&seq(), source, fresh, 1000, true, k, 2))
            .collect();
        assert_eq!(
            steps[0].sql,
            r#"ALTER SEQUENCE "Sales"."orders_id_seq" INCREMENT BY 2 RESTART WITH 1052"#
        );
        assert_eq!(
            steps[1].sql,
            r#"ALTER SEQUENCE "Sales"."orders_id_seq" INCREMENT BY 2 RESTART WITH 1053"#
        );
        assert_eq!(steps[0].state, StatementState::Pending);
    }

    #[test]
    fn other_sequences_move_forward_only() {
        let source = Position {
            increment: 1,
            next: 51,
        };
        let fresh = Position {
            increment: 1,
            next: 1,
        };
        let done = step(&seq(), source, fresh, 1000, false, 1, 2);
        assert_eq!(
            done.sql,
            r#"SELECT pg_catalog.setval('"Sales"."orders_id_seq"', 1050, false)"#
        );
        let ahead = Position {
            increment: 1,
            next: 5000,
        };
        assert_eq!(
            step(&seq(), source, ahead, 1000, false, 1, 2).state,
            StatementState::Exists
        );
        let after_cutover = Position {
            increment: 2,
            next: 1053,
        };
        assert_eq!(
            step(&seq(), source, after_cutover, 1000, true, 1, 2).state,
            StatementState::Exists
        );
    }
}
