//! `ORDER BY` across shards: the typed sort keys of a row, their order (direction and NULL
//! placement per key), the k-way merge of shards whose rows each arrive sorted, and the full
//! (stable) sort used after grouping.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use bytes::Bytes;

use super::message::{parse_row, Column};
use super::value::{compare, decode, Key, Kind};
use super::Row;
use crate::net::ErrorResponse;
use crate::router::route::SortKey;

/// The sort keys of a result, with each key column's kind.
#[derive(Debug)]
pub struct SortPlan {
    keys: Vec<(SortKey, Kind)>,
}

/// A row's decoded sort key values (`None` is NULL).
pub type Keys = Vec<Option<Key>>;

impl SortPlan {
    /// The plan for `order` over `columns`; a key column of a type that cannot be ordered is
    /// a 0A000 error.
    pub fn new(order: &[SortKey], columns: &[Column]) -> Result<SortPlan, ErrorResponse> {
        let keys = order
            .iter()
            .map(|key| {
                Ok((
                    *key,
                    Kind::of_column(&columns[key.column], key.column, "sort by")?,
                ))
            })
            .collect::<Result<_, ErrorResponse>>()?;
        Ok(SortPlan { keys })
    }

    /// The sort key values of one row.
    pub fn keys(
        &self,
        columns: &[Column],
        fields: &[Option<Bytes>],
    ) -> Result<Keys, ErrorResponse> {
        self.keys
            .iter()
            .map(
                |(key, kind)| match fields.get(key.column).and_then(Option::as_ref) {
                    None => Ok(None),
                    Some(v) => decode(&columns[key.column], *kind, v).map(Some),
                },
            )
            .collect()
    }

    /// The order of two rows' keys.
    pub fn compare(&self, a: &[Option<Key>], b: &[Option<Key>]) -> Ordering {
        for (i, (key, _)) in self.keys.iter().enumerate() {
            let order = match (&a[i], &b[i]) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) if key.nulls_first => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) if key.nulls_first => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(x), Some(y)) if key.descending => compare(x, y).reverse(),
                (Some(x), Some(y)) => compare(x, y),
            };
            if order != Ordering::Equal {
                return order;
            }
        }
        Ordering::Equal
    }

    /// Sorts `rows` (stable: equal rows keep their order).
    pub fn sort(&self, columns: &[Column], rows: Vec<Row>) -> Result<Vec<Row>, ErrorResponse> {
        let mut keyed = rows
            .into_iter()
            .map(|row| Ok((self.keys(columns, &row.fields)?, row)))
            .collect::<Result<Vec<_>, ErrorResponse>>()?;
        keyed.sort_by(|(a, _), (b, _)| self.compare(a, b));
        Ok(keyed.into_iter().map(|(_, row)| row).collect())
    }
}

/// The next row of one shard, waiting in the merge.
struct Head<'a> {
    plan: &'a SortPlan,
    keys: Keys,
    shard: usize,
    row: Row,
}

impl PartialEq for Head<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head<'_> {}

impl PartialOrd for Head<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head<'_> {
    /// Reversed, so that the max-heap pops the smallest row; ties go to the lower shard.
    fn cmp(&self, other: &Self) -> Ordering {
        self.plan
            .compare(&other.keys, &self.keys)
            .then_with(|| other.shard.cmp(&self.shard))
    }
}

/// Merges shards whose rows are each sorted by the plan into one sorted stream. Each row is
/// decoded when it reaches the front of its shard.
pub struct KWayMerge<'a> {
    plan: &'a SortPlan,
    columns: &'a [Column],
    shards: Vec<std::vec::IntoIter<Bytes>>,
    heap: BinaryHeap<Head<'a>>,
}

impl<'a> KWayMerge<'a> {
    /// Starts the merge of `shards` (each shard's DataRow messages in order).
    pub fn new(
        plan: &'a SortPlan,
        columns: &'a [Column],
        shards: Vec<Vec<Bytes>>,
    ) -> Result<KWayMerge<'a>, ErrorResponse> {
        let mut merge = KWayMerge {
            plan,
            columns,
            heap: BinaryHeap::with_capacity(shards.len()),
            shards: shards.into_iter().map(Vec::into_iter).collect(),
        };
        for shard in 0..merge.shards.len() {
            merge.advance(shard)?;
        }
        Ok(merge)
    }

    /// Puts the next row of `shard` (if any) into the heap.
    fn advance(&mut self, shard: usize) -> Result<(), ErrorResponse> {
        if let Some(message) = self.shards[shard].next() {
            let fields = parse_row(&message, self.columns.len())?;
            let keys = self.plan.keys(self.columns, &fields)?;
            self.heap.push(Head {
                plan: self.plan,
                keys,
                shard,
                row: Row {
                    original: Some(message),
                    fields,
                },
            });
        }
        Ok(())
    }

    /// The next row in order, `None` when every shard is exhausted.
    pub fn next_row(&mut self) -> Result<Option<Row>, ErrorResponse> {
        let Some(head) = self.heap.pop() else {
            return Ok(None);
        };
        self.advance(head.shard)?;
        Ok(Some(head.row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::merge::message::tests::{column, row};
    use crate::router::merge::value::oid;

    fn key(column: usize, descending: bool, nulls_first: bool) -> SortKey {
        SortKey {
            column,
            descending,
            nulls_first,
        }
    }

    fn ints(values: &[Option<i64>]) -> Vec<Bytes> {
        values
            .iter()
            .map(|v| {
                let text = v.map(|v| v.to_string());
                row(&[text.as_deref().map(str::as_bytes)])
            })
            .collect()
    }

    fn merged(order: SortKey, shards: Vec<Vec<Bytes>>) -> Vec<Option<i64>> {
        let columns = [column("x", oid::INT4, false)];
        let plan = SortPlan::new(&[order], &columns).unwrap();
        let mut merge = KWayMerge::new(&plan, &columns, shards).unwrap();
        let mut out = Vec::new();
        while let Some(row) = merge.next_row().unwrap() {
            out.push(
                row.fields[0]
                    .as_ref()
                    .map(|v| std::str::from_utf8(v).unwrap().parse().unwrap()),
            );
        }
        out
    }

    #[test]
    fn k_way_merge() {
        let out = merged(
            key(0, false, false),
            vec![
                ints(&[Some(1), Some(5), None]),
                ints(&[]),
                ints(&[Some(2), Some(10), None]),
            ],
        );
        assert_eq!(out, vec![Some(1), Some(2), Some(5), Some(10), None, None]);
        let out = merged(
            key(0, true, true),
            vec![ints(&[None, Some(5), Some(1)]), ints(&[Some(10), Some(2)])],
        );
        assert_eq!(out, vec![None, Some(10), Some(5), Some(2), Some(1)]);
        // ASC NULLS FIRST and DESC NULLS LAST.
        let out = merged(
            key(0, false, true),
            vec![ints(&[None, Some(3)]), ints(&[Some(-1)])],
        );
        assert_eq!(out, vec![None, Some(-1), Some(3)]);
        let out = merged(
            key(0, true, false),
            vec![ints(&[Some(3), None]), ints(&[Some(4)])],
        );
        assert_eq!(out, vec![Some(4), Some(3), None]);
    }

    #[test]
    fn ties_keep_shard_order_and_sort_is_stable() {
        let columns = [column("k", oid::INT4, false), column("v", oid::TEXT, false)];
        let plan = SortPlan::new(&[key(0, false, false)], &columns).unwrap();
        let shard = |v: &[u8]| vec![row(&[Some(b"1"), Some(v)])];
        let mut merge =
            KWayMerge::new(&plan, &columns, vec![shard(b"a"), shard(b"b"), shard(b"c")]).unwrap();
        let mut seen = Vec::new();
        while let Some(row) = merge.next_row().unwrap() {
            seen.push(row.fields[1].clone().unwrap());
        }
        assert_eq!(seen, vec!["a", "b", "c"]);
        let rows: Vec<Row> = [
            (&b"2"[..], &b"x"[..]),
            (b"1", b"y"),
            (b"2", b"z"),
            (b"1", b"w"),
        ]
        .iter()
        .map(|(k, v)| Row {
            original: None,
            fields: vec![
                Some(Bytes::copy_from_slice(k)),
                Some(Bytes::copy_from_slice(v)),
            ],
        })
        .collect();
        let sorted = plan.sort(&columns, rows).unwrap();
        let values: Vec<_> = sorted
            .iter()
            .map(|r| r.fields[1].clone().unwrap())
            .collect();
        assert_eq!(values, vec!["y", "w", "x", "z"]);
    }

    #[test]
    fn unsupported_and_bad_rows() {
        let columns = [column("j", 3802, false)];
        assert!(SortPlan::new(&[key(0, false, false)], &columns).is_err());
        let columns = [column("x", oid::INT4, false)];
        let plan = SortPlan::new(&[key(0, false, false)], &columns).unwrap();
        assert!(KWayMerge::new(&plan, &columns, vec![vec![row(&[Some(b"x1")])]]).is_err());
        assert!(KWayMerge::new(&plan, &columns, vec![vec![Bytes::from_static(b"D\0\0")]]).is_err());
    }
}
