//! Combining aggregate columns across shards: the plan for each aggregate column (decided from
//! its type before any row is read), the running state of one group, and the final value,
//! encoded in the column's format. `count`/`sum` add exactly (integers as i128, `numeric`
//! exactly, floats as PostgreSQL adds them), `min`/`max` keep the typed extreme, `avg` divides
//! the summed sums by the summed counts and is typed like PostgreSQL's `avg`.

use bytes::Bytes;

use super::float::{format_float4, format_float8};
use super::message::{Column, Fields};
use super::numeric::Numeric;
use super::value::{self, compare, oid, Key, Kind};
use crate::net::{sqlstate, ErrorResponse};
use crate::router::route::{Aggregate, AggregateFunction};

/// How sums of a column's values are added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SumKind {
    Int,
    Numeric,
    Float4,
    Float8,
}

/// What an aggregate column does with its values.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// `count` and `sum`.
    Sum(SumKind),
    /// `min` (`max: false`) or `max`.
    Extreme { kind: Kind, max: bool },
    /// `bool_and` (`and: true`) or `bool_or`.
    Bool { and: bool },
    /// `avg`: this column's sums divided by the counts in `count_column`.
    Avg { sum: SumKind, count_column: usize },
}

/// How one aggregate column is combined.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// The result column.
    pub column: usize,
    op: Op,
}

/// A running sum.
#[derive(Debug, Clone)]
pub enum Total {
    /// Integers, exactly.
    Int(i128),
    /// `numeric`, exactly.
    Numeric(Numeric),
    /// Floating point.
    Float(f64),
}

/// The state of one aggregate column in one group.
#[derive(Debug, Clone)]
pub enum Acc {
    /// Sum so far (`None`: only NULLs yet).
    Sum(Option<Total>),
    /// The extreme value so far and its bytes as the shard sent them.
    Extreme(Option<(Key, Bytes)>),
    /// bool_and/bool_or so far.
    Bool(Option<bool>),
    /// Sum and count so far.
    Avg(Option<Total>, i128),
}

fn unsupported(column: &Column, index: usize, function: &str) -> ErrorResponse {
    ErrorResponse::error(
        sqlstate::FEATURE_NOT_SUPPORTED,
        format!(
            "cannot combine {function}() of column \"{}\" (result column {}) across shards: type OID {} is not supported",
            column.name,
            index + 1,
            column.type_oid
        ),
    )
}

fn sum_kind(column: &Column) -> Option<SumKind> {
    match Kind::of(column.type_oid)? {
        Kind::Int => Some(SumKind::Int),
        Kind::Numeric => Some(SumKind::Numeric),
        Kind::Float4 => Some(SumKind::Float4),
        Kind::Float8 => Some(SumKind::Float8),
        _ => None,
    }
}

impl Plan {
    /// The plan for `aggregate` over `columns` (column numbers are already checked).
    pub fn new(aggregate: &Aggregate, columns: &[Column]) -> Result<Plan, ErrorResponse> {
        let index = aggregate.column;
        let column = &columns[index];
        let op = match aggregate.function {
            AggregateFunction::Count => match sum_kind(column) {
                Some(kind @ (SumKind::Int | SumKind::Numeric)) => Op::Sum(kind),
                _ => return Err(unsupported(column, index, "count")),
            },
            AggregateFunction::Sum => {
                Op::Sum(sum_kind(column).ok_or_else(|| unsupported(column, index, "sum"))?)
            }
            AggregateFunction::Min | AggregateFunction::Max => Op::Extreme {
                kind: Kind::of_column(column, index, "take min()/max() of")?,
                max: aggregate.function == AggregateFunction::Max,
            },
            AggregateFunction::BoolAnd | AggregateFunction::BoolOr => {
                if column.type_oid != oid::BOOL {
                    return Err(unsupported(column, index, "bool_and/bool_or"));
                }
                Op::Bool {
                    and: aggregate.function == AggregateFunction::BoolAnd,
                }
            }
            AggregateFunction::Avg { count_column } => {
                let sum = sum_kind(column).ok_or_else(|| unsupported(column, index, "avg"))?;
                let counts = &columns[count_column];
                if sum_kind(counts) != Some(SumKind::Int) {
                    return Err(unsupported(counts, count_column, "the count behind avg"));
                }
                Op::Avg { sum, count_column }
            }
        };
        Ok(Plan { column: index, op })
    }

    /// The column as the client sees it: `avg` is `numeric`, or `double precision` for
    /// floating point input.
    pub fn output_column(&self, column: &Column) -> Column {
        let mut out = column.clone();
        if let Op::Avg { sum, .. } = self.op {
            let (type_oid, typlen) = match sum {
                SumKind::Float4 | SumKind::Float8 => (oid::FLOAT8, 8),
                SumKind::Int | SumKind::Numeric => (oid::NUMERIC, -1),
            };
            out.type_oid = type_oid;
            out.typlen = typlen;
            out.typmod = -1;
        }
        out
    }

    /// The state before any row.
    pub fn start(&self) -> Acc {
        match self.op {
            Op::Sum(_) => Acc::Sum(None),
            Op::Extreme { .. } => Acc::Extreme(None),
            Op::Bool { .. } => Acc::Bool(None),
            Op::Avg { .. } => Acc::Avg(None, 0),
        }
    }

    /// Adds one row's values.
    pub fn add(
        &self,
        acc: &mut Acc,
        columns: &[Column],
        fields: &Fields,
    ) -> Result<(), ErrorResponse> {
        let column = &columns[self.column];
        let value = fields.get(self.column).and_then(Option::as_ref);
        match (self.op, acc) {
            (Op::Sum(kind), Acc::Sum(total)) => {
                if let Some(v) = value {
                    add_total(total, kind, column, v)?;
                }
            }
            (Op::Avg { sum, count_column }, Acc::Avg(total, count)) => {
                if let Some(v) = value {
                    add_total(total, sum, column, v)?;
                }
                let counts = &columns[count_column];
                if let Some(n) = fields.get(count_column).and_then(Option::as_ref) {
                    let n =
                        value::int(n, counts.binary).ok_or_else(|| value::unreadable(counts, n))?;
                    *count = count.checked_add(n).ok_or_else(out_of_range)?;
                }
            }
            (Op::Extreme { kind, max }, Acc::Extreme(best)) => {
                if let Some(v) = value {
                    let key = value::decode(column, kind, v)?;
                    let better = match best {
                        None => true,
                        Some((current, _)) => {
                            let order = compare(&key, current);
                            if max {
                                order.is_gt()
                            } else {
                                order.is_lt()
                            }
                        }
                    };
                    if better {
                        *best = Some((key, v.clone()));
                    }
                }
            }
            (Op::Bool { and }, Acc::Bool(state)) => {
                if let Some(v) = value {
                    let b = value::boolean(v, column.binary)
                        .ok_or_else(|| value::unreadable(column, v))?;
                    *state = Some(match *state {
                        None => b,
                        Some(s) if and => s && b,
                        Some(s) => s || b,
                    });
                }
            }
            _ => {
                return Err(ErrorResponse::error(
                    sqlstate::INTERNAL_ERROR,
                    "aggregate state does not match its plan",
                ))
            }
        }
        Ok(())
    }

    /// The combined value, encoded for the client (`None` is NULL).
    pub fn finish(&self, acc: Acc, columns: &[Column]) -> Result<Option<Bytes>, ErrorResponse> {
        let column = &columns[self.column];
        let binary = column.binary;
        Ok(match acc {
            Acc::Sum(None) | Acc::Extreme(None) | Acc::Bool(None) => None,
            Acc::Sum(Some(total)) => Some(encode_total(total, column)?),
            Acc::Extreme(Some((_, bytes))) => Some(bytes),
            Acc::Bool(Some(b)) => Some(Bytes::from_static(match (binary, b) {
                (false, true) => b"t",
                (false, false) => b"f",
                (true, true) => &[1],
                (true, false) => &[0],
            })),
            Acc::Avg(_, 0) | Acc::Avg(None, _) => None,
            Acc::Avg(Some(total), count) => {
                let count = u64::try_from(count).map_err(|_| {
                    ErrorResponse::error(
                        sqlstate::INTERNAL_ERROR,
                        format!(
                            "negative count {count} behind avg() of column \"{}\"",
                            column.name
                        ),
                    )
                })?;
                let average = match total {
                    Total::Int(sum) => Total::Numeric(Numeric::from_i128(sum).div_count(count)),
                    Total::Numeric(sum) => Total::Numeric(sum.div_count(count)),
                    Total::Float(sum) => Total::Float(sum / count as f64),
                };
                Some(encode_total(average, &self.output_column(column))?)
            }
        })
    }
}

fn out_of_range() -> ErrorResponse {
    ErrorResponse::error(
        sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
        "value out of range: overflow",
    )
}

/// Adds value `v` of `column` to a running sum.
fn add_total(
    total: &mut Option<Total>,
    kind: SumKind,
    column: &Column,
    v: &Bytes,
) -> Result<(), ErrorResponse> {
    let unreadable = || value::unreadable(column, v);
    let next = match kind {
        SumKind::Int => {
            let n = value::int(v, column.binary).ok_or_else(unreadable)?;
            match total {
                Some(Total::Int(sum)) => Total::Int(sum.checked_add(n).ok_or_else(out_of_range)?),
                _ => Total::Int(n),
            }
        }
        SumKind::Numeric => {
            let n = value::numeric(v, column.binary).ok_or_else(unreadable)?;
            match total {
                Some(Total::Numeric(sum)) => Total::Numeric(sum.add(&n)),
                _ => Total::Numeric(n),
            }
        }
        SumKind::Float4 | SumKind::Float8 => {
            let kind4 = kind == SumKind::Float4;
            let f = value::float(
                if kind4 { Kind::Float4 } else { Kind::Float8 },
                v,
                column.binary,
            )
            .ok_or_else(unreadable)?;
            match total {
                Some(Total::Float(sum)) => {
                    let result = if kind4 {
                        f64::from(*sum as f32 + f as f32)
                    } else {
                        *sum + f
                    };
                    // PostgreSQL's float addition fails instead of overflowing to infinity.
                    if result.is_infinite() && !sum.is_infinite() && !f.is_infinite() {
                        return Err(out_of_range());
                    }
                    Total::Float(result)
                }
                _ => Total::Float(f),
            }
        }
    };
    *total = Some(next);
    Ok(())
}

/// A sum or average in the type and format of `column`.
fn encode_total(total: Total, column: &Column) -> Result<Bytes, ErrorResponse> {
    let binary = column.binary;
    let too_big = || {
        ErrorResponse::error(
            sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
            format!(
                "combined value of column \"{}\" is out of range for its type",
                column.name
            ),
        )
    };
    let bytes: Vec<u8> = match (total, column.type_oid) {
        (Total::Int(n), oid::NUMERIC) => {
            return encode_total(Total::Numeric(Numeric::from_i128(n)), column)
        }
        (Total::Int(n), oid::INT2) => {
            let n = i16::try_from(n).map_err(|_| too_big())?;
            if binary {
                n.to_be_bytes().to_vec()
            } else {
                n.to_string().into_bytes()
            }
        }
        (Total::Int(n), oid::INT4) => {
            let n = i32::try_from(n).map_err(|_| too_big())?;
            if binary {
                n.to_be_bytes().to_vec()
            } else {
                n.to_string().into_bytes()
            }
        }
        (Total::Int(n), _) => {
            let n = i64::try_from(n).map_err(|_| too_big())?;
            if binary {
                n.to_be_bytes().to_vec()
            } else {
                n.to_string().into_bytes()
            }
        }
        (Total::Numeric(n), _) => {
            if binary {
                n.to_binary().ok_or_else(too_big)?
            } else {
                n.to_text().into_bytes()
            }
        }
        (Total::Float(f), oid::FLOAT4) => {
            let f = f as f32;
            if binary {
                f.to_be_bytes().to_vec()
            } else {
                format_float4(f).into_bytes()
            }
        }
        (Total::Float(f), _) => {
            if binary {
                f.to_be_bytes().to_vec()
            } else {
                format_float8(f).into_bytes()
            }
        }
    };
    Ok(Bytes::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::merge::message::tests::column;

    fn run(
        function: AggregateFunction,
        columns: &[Column],
        rows: &[Vec<Option<&[u8]>>],
    ) -> Result<Option<Bytes>, ErrorResponse> {
        let plan = Plan::new(
            &Aggregate {
                column: 0,
                function,
            },
            columns,
        )?;
        let mut acc = plan.start();
        for row in rows {
            let fields: Fields = row.iter().map(|f| f.map(Bytes::copy_from_slice)).collect();
            plan.add(&mut acc, columns, &fields)?;
        }
        plan.finish(acc, columns)
    }

    fn text(function: AggregateFunction, type_oid: u32, values: &[Option<&str>]) -> Option<String> {
        let rows: Vec<Vec<Option<&[u8]>>> =
            values.iter().map(|v| vec![v.map(str::as_bytes)]).collect();
        run(function, &[column("c", type_oid, false)], &rows)
            .unwrap()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    #[test]
    fn sums_and_counts() {
        use AggregateFunction::*;
        assert_eq!(
            text(Count, oid::INT8, &[Some("3"), Some("0"), Some("4")]).as_deref(),
            Some("7")
        );
        assert_eq!(
            text(Sum, oid::INT8, &[Some("-3"), None, Some("4")]).as_deref(),
            Some("1")
        );
        assert_eq!(text(Sum, oid::INT8, &[None, None]), None);
        assert_eq!(
            text(
                Sum,
                oid::NUMERIC,
                &[Some("9223372036854775807"), Some("1"), Some("0.50")]
            )
            .as_deref(),
            Some("9223372036854775808.50")
        );
        assert_eq!(
            text(Sum, oid::NUMERIC, &[Some("NaN"), Some("1")]).as_deref(),
            Some("NaN")
        );
        assert_eq!(
            text(Sum, oid::FLOAT8, &[Some("0.1"), Some("0.2")]).as_deref(),
            Some("0.30000000000000004")
        );
        assert_eq!(
            text(Sum, oid::FLOAT4, &[Some("0.1"), Some("0.2")]).as_deref(),
            Some("0.3")
        );
        assert_eq!(
            text(Sum, oid::FLOAT8, &[Some("Infinity"), Some("1")]).as_deref(),
            Some("Infinity")
        );
        assert_eq!(
            text(Max, oid::TEXT, &[Some("b"), None, Some("a")]).as_deref(),
            Some("b")
        );
        assert_eq!(
            text(Min, oid::NUMERIC, &[Some("2"), Some("1.50"), Some("1.5")]).as_deref(),
            Some("1.50")
        );
        assert_eq!(
            text(
                Max,
                oid::FLOAT8,
                &[Some("1"), Some("NaN"), Some("Infinity")]
            )
            .as_deref(),
            Some("NaN")
        );
        assert_eq!(text(Min, oid::DATE, &[None, None]), None);
        assert_eq!(
            text(BoolAnd, oid::BOOL, &[Some("t"), None, Some("f")]).as_deref(),
            Some("f")
        );
        assert_eq!(
            text(BoolOr, oid::BOOL, &[Some("f"), None, Some("t")]).as_deref(),
            Some("t")
        );
        assert_eq!(text(BoolOr, oid::BOOL, &[None]), None);
    }

    #[test]
    fn overflow_and_unsupported() {
        let columns = [column("c", oid::INT8, false)];
        let rows = vec![
            vec![Some(&b"9223372036854775807"[..])],
            vec![Some(&b"1"[..])],
        ];
        let err = run(AggregateFunction::Sum, &columns, &rows).unwrap_err();
        assert_eq!(err.code, sqlstate::NUMERIC_VALUE_OUT_OF_RANGE);
        let columns = [column("c", oid::FLOAT8, true)];
        let big = f64::MAX.to_be_bytes();
        let err = run(
            AggregateFunction::Sum,
            &columns,
            &[vec![Some(&big[..])], vec![Some(&big[..])]],
        )
        .unwrap_err();
        assert_eq!(err.code, sqlstate::NUMERIC_VALUE_OUT_OF_RANGE);
        for (function, type_oid) in [
            (AggregateFunction::Sum, oid::TEXT),
            (AggregateFunction::Count, oid::FLOAT8),
            (AggregateFunction::Max, 114),
            (AggregateFunction::BoolAnd, oid::INT4),
            (AggregateFunction::Avg { count_column: 0 }, oid::INTERVAL),
        ] {
            let err = run(function, &[column("c", type_oid, false)], &[]).unwrap_err();
            assert_eq!(err.code, sqlstate::FEATURE_NOT_SUPPORTED);
        }
    }

    #[test]
    fn binary_results() {
        let columns = [column("c", oid::INT8, true)];
        let a = 5i64.to_be_bytes();
        let b = 6i64.to_be_bytes();
        let out = run(
            AggregateFunction::Count,
            &columns,
            &[vec![Some(&a[..])], vec![Some(&b[..])]],
        )
        .unwrap();
        assert_eq!(out.unwrap()[..], 11i64.to_be_bytes());
        let columns = [column("c", oid::BOOL, true)];
        let out = run(
            AggregateFunction::BoolAnd,
            &columns,
            &[vec![Some(&[1][..])], vec![Some(&[1][..])]],
        )
        .unwrap();
        assert_eq!(out.unwrap()[..], [1]);
    }

    /// avg over `(sum, count)` rows of a sum column of `type_oid`.
    fn avg(
        type_oid: u32,
        binary: bool,
        rows: &[(Option<Vec<u8>>, i64)],
    ) -> (Column, Option<Bytes>) {
        let columns = [
            column("avg", type_oid, binary),
            column("n", oid::INT8, binary),
        ];
        let plan = Plan::new(
            &Aggregate {
                column: 0,
                function: AggregateFunction::Avg { count_column: 1 },
            },
            &columns,
        )
        .unwrap();
        let mut acc = plan.start();
        for (sum, count) in rows {
            let count = if binary {
                count.to_be_bytes().to_vec()
            } else {
                count.to_string().into_bytes()
            };
            let fields: Fields = vec![sum.clone().map(Bytes::from), Some(Bytes::from(count))];
            plan.add(&mut acc, &columns, &fields).unwrap();
        }
        (
            plan.output_column(&columns[0]),
            plan.finish(acc, &columns).unwrap(),
        )
    }

    #[test]
    fn averages() {
        let t = |s: &str| Some(s.as_bytes().to_vec());
        let (out, v) = avg(oid::INT8, false, &[(t("1"), 1), (t("4"), 2)]);
        assert_eq!((out.type_oid, out.typlen), (oid::NUMERIC, -1));
        assert_eq!(v.unwrap(), "1.6666666666666667");
        let (out, v) = avg(oid::FLOAT8, false, &[(t("1"), 1), (t("2"), 1)]);
        assert_eq!((out.type_oid, out.typlen), (oid::FLOAT8, 8));
        assert_eq!(v.unwrap(), "1.5");
        let (_, v) = avg(
            oid::FLOAT4,
            true,
            &[(Some(1.5f32.to_be_bytes().to_vec()), 1), (None, 0)],
        );
        assert_eq!(v.unwrap()[..], 1.5f64.to_be_bytes());
        let (_, v) = avg(oid::NUMERIC, false, &[(None, 0), (None, 0)]);
        assert_eq!(v, None);
        let binary = Numeric::parse_text(b"3.00").unwrap().to_binary().unwrap();
        let (_, v) = avg(oid::NUMERIC, true, &[(Some(binary), 2)]);
        let v = Numeric::decode_binary(&v.unwrap()).unwrap();
        assert_eq!(v.to_text(), "1.5000000000000000");
    }
}
