//! `GROUP BY` and aggregates across shards: rows whose group columns are equal (all rows when
//! there are none) become one row, with the aggregate columns combined and every other column
//! taken from the group's first row. Groups come out in the order they were first seen.

use std::collections::HashMap;

use bytes::Bytes;

use super::aggregate::{Acc, Plan};
use super::message::{Column, Fields};
use super::value::equality_bytes;
use crate::net::ErrorResponse;
use crate::router::route::MergeSpec;

/// The values of some columns made comparable for equality (`None` is NULL, and NULLs group
/// together as in SQL).
pub type EqualityKey = Vec<Option<Bytes>>;

/// The equality key of `fields` over `which` columns.
pub fn equality_key(
    columns: &[Column],
    which: impl Iterator<Item = usize>,
    fields: &[Option<Bytes>],
) -> Result<EqualityKey, ErrorResponse> {
    which
        .map(|c| match fields.get(c).and_then(Option::as_ref) {
            None => Ok(None),
            Some(v) => equality_bytes(&columns[c], v).map(Some),
        })
        .collect()
}

/// Groups being built.
pub struct Grouper<'a> {
    columns: &'a [Column],
    group_by: &'a [usize],
    plans: Vec<Plan>,
    groups: Vec<(Fields, Vec<Acc>)>,
    index: HashMap<EqualityKey, usize>,
}

impl<'a> Grouper<'a> {
    /// A grouper for `spec` over `columns` (column numbers are already checked).
    pub fn new(spec: &'a MergeSpec, columns: &'a [Column]) -> Result<Grouper<'a>, ErrorResponse> {
        let plans = spec
            .aggregates
            .iter()
            .map(|a| Plan::new(a, columns))
            .collect::<Result<_, _>>()?;
        Ok(Grouper {
            columns,
            group_by: &spec.group_by,
            plans,
            groups: Vec::new(),
            index: HashMap::new(),
        })
    }

    /// The columns of the grouped result (avg columns change type).
    pub fn output_columns(&self) -> Vec<Column> {
        let mut out = self.columns.to_vec();
        for plan in &self.plans {
            out[plan.column] = plan.output_column(&self.columns[plan.column]);
        }
        out
    }

    /// Adds one row.
    pub fn push(&mut self, fields: Fields) -> Result<(), ErrorResponse> {
        let key = equality_key(self.columns, self.group_by.iter().copied(), &fields)?;
        match self.index.get(&key) {
            Some(&i) => {
                let accs = &mut self.groups[i].1;
                for (plan, acc) in self.plans.iter().zip(accs.iter_mut()) {
                    plan.add(acc, self.columns, &fields)?;
                }
            }
            None => {
                let mut accs: Vec<Acc> = self.plans.iter().map(Plan::start).collect();
                for (plan, acc) in self.plans.iter().zip(accs.iter_mut()) {
                    plan.add(acc, self.columns, &fields)?;
                }
                self.index.insert(key, self.groups.len());
                self.groups.push((fields, accs));
            }
        }
        Ok(())
    }

    /// One row per group, aggregate columns replaced by their combined values.
    pub fn finish(self) -> Result<Vec<Fields>, ErrorResponse> {
        let mut out = Vec::with_capacity(self.groups.len());
        for (mut fields, accs) in self.groups {
            for (plan, acc) in self.plans.iter().zip(accs) {
                fields[plan.column] = plan.finish(acc, self.columns)?;
            }
            out.push(fields);
        }
        Ok(out)
    }
}
