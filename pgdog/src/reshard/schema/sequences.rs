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

/// A sequence's position: its increment and the next value it would hand out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// `INCREMENT BY`.
    pub increment: i64,
    /// The value `nextval` returns next.
    pub next: i64,
}

/// Reads a sequence's position.
pub async fn position(conn: &mut Conn, sequence: &Name) -> Result<Position, ConnError> {
    let name = quote::qualified(&sequence.0, &sequence.1);
    let rows = conn
        .query(&format!(
            "SELECT s.last_value, s.is_called, p.seqincrement FROM {name} s, pg_catalog.pg_sequence p \
             WHERE p.seqrelid = {}::regclass",
            quote::literal(&name)
        ))
        .await?;
    let number = |column: usize| rows.get(0, column).and_then(|v| v.parse::<i64>().ok());
    let last = number(0).unwrap_or(0);
    let increment = number(2).unwrap_or(1);
    let called = rows.get(0, 1) == Some("t");
    Ok(Position {
        increment,
        next: if called {
            last.saturating_add(increment)
        } else {
            last
        },
    })
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
