//! End-to-end tests of [`merge`](super::merge): shards' messages in, the client's messages out.

use bytes::Bytes;

use super::message::tests::{column, row};
use super::message::{self, parse_description, parse_row, Column};
use super::value::oid;
use super::{merge, Merged, ShardRows};
use crate::net::sqlstate;
use crate::router::route::{Aggregate, AggregateFunction, MergeSpec, SortKey};

/// A RowDescription message.
pub fn description(columns: &[Column]) -> Bytes {
    message::description(columns)
}

/// The merged DataRows' fields.
pub fn output(merged: &Merged, columns: usize) -> Vec<Vec<Option<Bytes>>> {
    let mut rows = merged.rows.clone().freeze();
    let mut out = Vec::new();
    while !rows.is_empty() {
        let len = i32::from_be_bytes(rows[1..5].try_into().unwrap()) as usize + 1;
        let message = rows.split_to(len);
        out.push(parse_row(&message, columns).unwrap());
    }
    assert_eq!(out.len() as u64, merged.row_count);
    out
}

/// The merged rows as text.
fn texts(merged: &Merged, columns: usize) -> Vec<Vec<Option<String>>> {
    output(merged, columns)
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|v| v.map(|v| String::from_utf8(v.to_vec()).unwrap()))
                .collect()
        })
        .collect()
}

/// Shards answering with text rows of `columns`.
fn shards(columns: &[Column], data: &[&[&[Option<&str>]]]) -> Vec<ShardRows> {
    data.iter()
        .map(|rows| ShardRows {
            description: Some(description(columns)),
            rows: rows
                .iter()
                .map(|r| {
                    let fields: Vec<Option<&[u8]>> =
                        r.iter().map(|v| v.map(str::as_bytes)).collect();
                    row(&fields)
                })
                .collect(),
            tag: Some(format!("SELECT {}", rows.len())),
        })
        .collect()
}

fn strings(rows: &[&[Option<&str>]]) -> Vec<Vec<Option<String>>> {
    rows.iter()
        .map(|r| r.iter().map(|v| v.map(str::to_string)).collect())
        .collect()
}

fn asc(column: usize) -> SortKey {
    SortKey {
        column,
        descending: false,
        nulls_first: false,
    }
}

fn desc(column: usize) -> SortKey {
    SortKey {
        column,
        descending: true,
        nulls_first: true,
    }
}

fn agg(column: usize, function: AggregateFunction) -> Aggregate {
    Aggregate { column, function }
}

#[test]
fn concat_keeps_shard_order_and_bytes() {
    let columns = [
        column("id", oid::INT4, false),
        column("name", oid::TEXT, false),
    ];
    let input = shards(
        &columns,
        &[
            &[&[Some("3"), Some("c")], &[Some("1"), None]],
            &[],
            &[&[Some("2"), Some("b")]],
        ],
    );
    let expected_rows: Vec<u8> = input.iter().flat_map(|s| s.rows.concat()).collect();
    let merged = merge(&MergeSpec::default(), input).unwrap();
    assert_eq!(merged.description, Some(description(&columns)));
    assert_eq!(&merged.rows[..], &expected_rows[..]);
    assert_eq!(merged.row_count, 3);
    assert_eq!(merged.tag.as_deref(), Some("SELECT 3"));
}

#[test]
fn offset_and_limit_span_shards() {
    let columns = [column("id", oid::INT4, false)];
    let data: &[&[&[Option<&str>]]] =
        &[&[&[Some("1")], &[Some("2")]], &[&[Some("3")], &[Some("4")]]];
    let spec = MergeSpec {
        offset: 1,
        limit: Some(2),
        ..MergeSpec::default()
    };
    let merged = merge(&spec, shards(&columns, data)).unwrap();
    assert_eq!(texts(&merged, 1), strings(&[&[Some("2")], &[Some("3")]]));
    assert_eq!(merged.tag.as_deref(), Some("SELECT 2"));
    let spec = MergeSpec {
        limit: Some(0),
        ..MergeSpec::default()
    };
    let merged = merge(&spec, shards(&columns, data)).unwrap();
    assert_eq!(
        (merged.row_count, merged.tag.as_deref()),
        (0, Some("SELECT 0"))
    );
    let spec = MergeSpec {
        offset: 10,
        ..MergeSpec::default()
    };
    assert_eq!(merge(&spec, shards(&columns, data)).unwrap().row_count, 0);
}

#[test]
fn statements_without_rows_combine_tags() {
    let input = vec![
        ShardRows {
            tag: Some("INSERT 0 2".into()),
            ..ShardRows::default()
        },
        ShardRows {
            tag: Some("INSERT 0 1".into()),
            ..ShardRows::default()
        },
    ];
    let merged = merge(&MergeSpec::default(), input).unwrap();
    assert_eq!(merged.description, None);
    assert_eq!(merged.tag.as_deref(), Some("INSERT 0 3"));
    assert_eq!(merged.row_count, 0);
    // CREATE TABLE AS has a SELECT tag but no rows: the count is the shards' sum.
    let input = vec![
        ShardRows {
            tag: Some("SELECT 5".into()),
            ..ShardRows::default()
        },
        ShardRows {
            tag: Some("SELECT 6".into()),
            ..ShardRows::default()
        },
    ];
    assert_eq!(
        merge(&MergeSpec::default(), input).unwrap().tag.as_deref(),
        Some("SELECT 11")
    );
    // INSERT ... RETURNING keeps its own tag.
    let columns = [column("id", oid::INT8, false)];
    let mut input = shards(&columns, &[&[&[Some("1")]], &[&[Some("2")]]]);
    for s in &mut input {
        s.tag = Some("INSERT 0 1".into());
    }
    let merged = merge(&MergeSpec::default(), input).unwrap();
    assert_eq!(
        (merged.row_count, merged.tag.as_deref()),
        (2, Some("INSERT 0 2"))
    );
    assert_eq!(merge(&MergeSpec::default(), vec![]).unwrap().tag, None);
}

#[test]
fn k_way_merge_with_two_keys_offset_limit() {
    let columns = [
        column("a", oid::TEXT, false),
        column("b", oid::NUMERIC, false),
    ];
    let input = shards(
        &columns,
        &[
            &[
                &[Some("a"), Some("10")],
                &[Some("a"), Some("2.5")],
                &[Some("c"), None],
            ],
            &[
                &[Some("a"), Some("3")],
                &[Some("b"), Some("1")],
                &[Some("c"), Some("1")],
            ],
        ],
    );
    let spec = MergeSpec {
        order_by: vec![asc(0), desc(1)],
        ..MergeSpec::default()
    };
    let merged = merge(&spec, input.clone()).unwrap();
    assert_eq!(
        texts(&merged, 2),
        strings(&[
            &[Some("a"), Some("10")],
            &[Some("a"), Some("3")],
            &[Some("a"), Some("2.5")],
            &[Some("b"), Some("1")],
            &[Some("c"), None],
            &[Some("c"), Some("1")],
        ])
    );
    let spec = MergeSpec {
        order_by: vec![asc(0), desc(1)],
        offset: 2,
        limit: Some(2),
        ..MergeSpec::default()
    };
    let merged = merge(&spec, input).unwrap();
    assert_eq!(
        texts(&merged, 2),
        strings(&[&[Some("a"), Some("2.5")], &[Some("b"), Some("1")]])
    );
    assert_eq!(merged.tag.as_deref(), Some("SELECT 2"));
}

#[test]
fn count_of_empty_table() {
    // SELECT count(*) FROM t: one row per shard, even when empty.
    let columns = [column("count", oid::INT8, false)];
    let input = shards(
        &columns,
        &[&[&[Some("0")]], &[&[Some("0")]], &[&[Some("5")]]],
    );
    let spec = MergeSpec {
        aggregates: vec![agg(0, AggregateFunction::Count)],
        ..MergeSpec::default()
    };
    let merged = merge(&spec, input).unwrap();
    assert_eq!(texts(&merged, 1), strings(&[&[Some("5")]]));
    assert_eq!(merged.tag.as_deref(), Some("SELECT 1"));
    assert_eq!(merged.description, Some(description(&columns)));
    // No rows at all (HAVING filtered everything): no row.
    let merged = merge(&spec, shards(&columns, &[&[], &[]])).unwrap();
    assert_eq!(
        (merged.row_count, merged.tag.as_deref()),
        (0, Some("SELECT 0"))
    );
}

#[test]
fn group_by_with_aggregates_sorted() {
    // SELECT g, count(*), sum(x), min(x), max(t), bool_and(b) ... GROUP BY g ORDER BY g
    let columns = [
        column("g", oid::NUMERIC, false),
        column("count", oid::INT8, false),
        column("sum", oid::NUMERIC, false),
        column("min", oid::INT4, false),
        column("max", oid::TEXT, false),
        column("every", oid::BOOL, false),
    ];
    let input = shards(
        &columns,
        &[
            &[
                &[
                    Some("1.0"),
                    Some("2"),
                    Some("1.5"),
                    Some("-3"),
                    Some("b"),
                    Some("t"),
                ],
                &[
                    Some("2"),
                    Some("1"),
                    Some("7"),
                    Some("7"),
                    Some("x"),
                    Some("t"),
                ],
                &[None, Some("1"), None, None, None, None],
            ],
            &[
                &[
                    Some("1.00"),
                    Some("3"),
                    Some("2.25"),
                    Some("10"),
                    Some("c"),
                    Some("f"),
                ],
                &[None, Some("4"), Some("1"), Some("0"), Some("a"), Some("t")],
            ],
            &[&[
                Some("0.5"),
                Some("1"),
                Some("-1"),
                Some("1"),
                Some("a"),
                None,
            ]],
        ],
    );
    let spec = MergeSpec {
        group_by: vec![0],
        aggregates: vec![
            agg(1, AggregateFunction::Count),
            agg(2, AggregateFunction::Sum),
            agg(3, AggregateFunction::Min),
            agg(4, AggregateFunction::Max),
            agg(5, AggregateFunction::BoolAnd),
        ],
        order_by: vec![asc(0)],
        ..MergeSpec::default()
    };
    let merged = merge(&spec, input).unwrap();
    assert_eq!(
        texts(&merged, 6),
        strings(&[
            &[
                Some("0.5"),
                Some("1"),
                Some("-1"),
                Some("1"),
                Some("a"),
                None
            ],
            &[
                Some("1.0"),
                Some("5"),
                Some("3.75"),
                Some("-3"),
                Some("c"),
                Some("f")
            ],
            &[
                Some("2"),
                Some("1"),
                Some("7"),
                Some("7"),
                Some("x"),
                Some("t")
            ],
            &[None, Some("5"), Some("1"), Some("0"), Some("a"), Some("t")],
        ])
    );
    assert_eq!(merged.tag.as_deref(), Some("SELECT 4"));
}

#[test]
fn groups_sorted_by_aggregate_with_limit() {
    // SELECT g, count(*) ... GROUP BY g ORDER BY count DESC, g LIMIT 2
    let columns = [
        column("g", oid::TEXT, false),
        column("count", oid::INT8, false),
    ];
    let input = shards(
        &columns,
        &[
            &[
                &[Some("a"), Some("1")],
                &[Some("b"), Some("5")],
                &[Some("c"), Some("2")],
            ],
            &[&[Some("a"), Some("9")], &[Some("c"), Some("2")]],
        ],
    );
    let spec = MergeSpec {
        group_by: vec![0],
        aggregates: vec![agg(1, AggregateFunction::Count)],
        order_by: vec![desc(1), asc(0)],
        limit: Some(2),
        ..MergeSpec::default()
    };
    let merged = merge(&spec, input).unwrap();
    assert_eq!(
        texts(&merged, 2),
        strings(&[&[Some("a"), Some("10")], &[Some("b"), Some("5")]])
    );
}

#[test]
fn group_by_without_aggregates_collapses() {
    let columns = [
        column("g", oid::FLOAT8, false),
        column("other", oid::TEXT, false),
    ];
    let input = shards(
        &columns,
        &[
            &[&[Some("-0"), Some("first")], &[Some("1.5"), Some("x")]],
            &[
                &[Some("0"), Some("second")],
                &[Some("NaN"), Some("y")],
                &[Some("NaN"), Some("z")],
            ],
        ],
    );
    let spec = MergeSpec {
        group_by: vec![0],
        ..MergeSpec::default()
    };
    let merged = merge(&spec, input).unwrap();
    assert_eq!(
        texts(&merged, 2),
        strings(&[
            &[Some("-0"), Some("first")],
            &[Some("1.5"), Some("x")],
            &[Some("NaN"), Some("y")]
        ])
    );
}

#[test]
fn avg_hides_count_and_retypes() {
    // SELECT g, avg(x) → g, sum(x), count(x) with the count hidden.
    let columns = [
        column("g", oid::TEXT, false),
        column("avg", oid::INT8, false),
        column("count", oid::INT8, false),
    ];
    let input = shards(
        &columns,
        &[
            &[
                &[Some("a"), Some("3"), Some("2")],
                &[Some("b"), None, Some("0")],
            ],
            &[&[Some("a"), Some("2"), Some("1")]],
        ],
    );
    let spec = MergeSpec {
        group_by: vec![0],
        aggregates: vec![agg(1, AggregateFunction::Avg { count_column: 2 })],
        hidden_columns: 1,
        order_by: vec![asc(0)],
        ..MergeSpec::default()
    };
    let merged = merge(&spec, input).unwrap();
    let out = parse_description(merged.description.as_ref().unwrap()).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0], columns[0]);
    assert_eq!(
        (out[1].type_oid, out[1].typlen, out[1].name.as_str()),
        (oid::NUMERIC, -1, "avg")
    );
    assert_eq!(
        texts(&merged, 2),
        strings(&[&[Some("a"), Some("1.6666666666666667")], &[Some("b"), None]])
    );
}

#[test]
fn hidden_sort_column_is_dropped() {
    // SELECT name FROM t ORDER BY id → name, id (hidden).
    let columns = [
        column("name", oid::TEXT, false),
        column("id", oid::INT8, false),
    ];
    let input = shards(
        &columns,
        &[
            &[&[Some("x"), Some("1")], &[Some("y"), Some("30")]],
            &[&[Some("z"), Some("2")]],
        ],
    );
    let spec = MergeSpec {
        order_by: vec![asc(1)],
        hidden_columns: 1,
        ..MergeSpec::default()
    };
    let merged = merge(&spec, input.clone()).unwrap();
    assert_eq!(merged.description, Some(description(&columns[..1])));
    assert_eq!(
        texts(&merged, 1),
        strings(&[&[Some("x")], &[Some("z")], &[Some("y")]])
    );
    // Concatenation with a hidden column.
    let spec = MergeSpec {
        hidden_columns: 1,
        ..MergeSpec::default()
    };
    let merged = merge(&spec, input).unwrap();
    assert_eq!(
        texts(&merged, 1),
        strings(&[&[Some("x")], &[Some("y")], &[Some("z")]])
    );
}

#[test]
fn distinct_rows() {
    let columns = [
        column("a", oid::TEXT, false),
        column("n", oid::NUMERIC, false),
    ];
    let input = shards(
        &columns,
        &[
            &[&[Some("a"), Some("1.0")], &[Some("b"), None]],
            &[
                &[Some("a"), Some("1.00")],
                &[Some("b"), None],
                &[Some("b"), Some("1")],
            ],
        ],
    );
    let spec = MergeSpec {
        distinct: true,
        ..MergeSpec::default()
    };
    let merged = merge(&spec, input.clone()).unwrap();
    assert_eq!(
        texts(&merged, 2),
        strings(&[
            &[Some("a"), Some("1.0")],
            &[Some("b"), None],
            &[Some("b"), Some("1")]
        ])
    );
    // DISTINCT ... ORDER BY a DESC OFFSET 1: the offset counts distinct rows.
    let spec = MergeSpec {
        distinct: true,
        order_by: vec![desc(0)],
        offset: 1,
        ..MergeSpec::default()
    };
    let input = shards(
        &columns,
        &[
            &[&[Some("b"), None], &[Some("a"), Some("1.0")]],
            &[
                &[Some("b"), None],
                &[Some("b"), Some("1")],
                &[Some("a"), Some("1.00")],
            ],
        ],
    );
    let merged = merge(&spec, input).unwrap();
    assert_eq!(
        texts(&merged, 2),
        strings(&[&[Some("b"), Some("1")], &[Some("a"), Some("1.0")]])
    );
}

#[test]
fn binary_aggregates() {
    let columns = [
        column("count", oid::INT8, true),
        column("max", oid::TIMESTAMPTZ, true),
    ];
    let input: Vec<ShardRows> = [(2i64, 100i64), (3, -5)]
        .iter()
        .map(|(n, t)| ShardRows {
            description: Some(description(&columns)),
            rows: vec![row(&[Some(&n.to_be_bytes()), Some(&t.to_be_bytes())])],
            tag: Some("SELECT 1".into()),
        })
        .collect();
    let spec = MergeSpec {
        aggregates: vec![
            agg(0, AggregateFunction::Count),
            agg(1, AggregateFunction::Max),
        ],
        ..MergeSpec::default()
    };
    let merged = merge(&spec, input).unwrap();
    let rows = output(&merged, 2);
    assert_eq!(rows[0][0].as_deref(), Some(&5i64.to_be_bytes()[..]));
    assert_eq!(rows[0][1].as_deref(), Some(&100i64.to_be_bytes()[..]));
}

#[test]
fn errors_are_responses() {
    let columns = [column("j", 3802, false)];
    let input = shards(&columns, &[&[&[Some("{}")]], &[&[Some("[]")]]]);
    let spec = MergeSpec {
        order_by: vec![asc(0)],
        ..MergeSpec::default()
    };
    let err = merge(&spec, input.clone()).unwrap_err();
    assert_eq!(err.code, sqlstate::FEATURE_NOT_SUPPORTED);
    assert!(
        err.message.contains("3802") && err.message.contains("\"j\""),
        "{}",
        err.message
    );
    // Plain concatenation of an unknown type is fine.
    assert_eq!(
        merge(&MergeSpec::default(), input.clone())
            .unwrap()
            .row_count,
        2
    );

    // A column number beyond the result.
    let spec = MergeSpec {
        order_by: vec![asc(3)],
        ..MergeSpec::default()
    };
    assert_eq!(
        merge(&spec, input.clone()).unwrap_err().code,
        sqlstate::INTERNAL_ERROR
    );
    let spec = MergeSpec {
        hidden_columns: 2,
        ..MergeSpec::default()
    };
    assert_eq!(
        merge(&spec, input.clone()).unwrap_err().code,
        sqlstate::INTERNAL_ERROR
    );

    // Malformed rows, with and without decoding.
    let columns = [column("x", oid::INT4, false)];
    for spec in [
        MergeSpec::default(),
        MergeSpec {
            order_by: vec![asc(0)],
            ..MergeSpec::default()
        },
    ] {
        let mut input = shards(&columns, &[&[&[Some("1")]]]);
        input[0].rows.push(Bytes::from_static(b"D\0\0\0\x06\0\x02"));
        assert_eq!(
            merge(&spec, input).unwrap_err().code,
            sqlstate::PROTOCOL_VIOLATION
        );
        let mut input = shards(&columns, &[&[&[Some("1")]]]);
        input[0].rows.push(Bytes::from_static(b"D\0\0"));
        assert_eq!(
            merge(&spec, input).unwrap_err().code,
            sqlstate::PROTOCOL_VIOLATION
        );
    }
    let mut input = shards(&columns, &[&[&[Some("1")]]]);
    input[0].description = Some(Bytes::from_static(b"T\0\0\0\x06\0"));
    assert_eq!(
        merge(&MergeSpec::default(), input).unwrap_err().code,
        sqlstate::PROTOCOL_VIOLATION
    );
    let input = vec![ShardRows {
        rows: vec![row(&[Some(b"1")])],
        ..ShardRows::default()
    }];
    assert_eq!(
        merge(&MergeSpec::default(), input).unwrap_err().code,
        sqlstate::PROTOCOL_VIOLATION
    );

    // Shards that disagree.
    let mut input = shards(&columns, &[&[&[Some("1")]], &[&[Some("2")]]]);
    input[1].description = Some(description(&[column("x", oid::INT8, false)]));
    assert_eq!(
        merge(&MergeSpec::default(), input).unwrap_err().code,
        sqlstate::INTERNAL_ERROR
    );
    let mut input = shards(&columns, &[&[&[Some("1")]], &[&[Some("2")]]]);
    input[1].tag = Some("UPDATE 1".into());
    assert_eq!(
        merge(&MergeSpec::default(), input).unwrap_err().code,
        sqlstate::INTERNAL_ERROR
    );
    // User-defined types may have other OIDs on other shards.
    let mut input = shards(
        &[column("e", 16400, false)],
        &[&[&[Some("1")]], &[&[Some("2")]]],
    );
    input[1].description = Some(description(&[column("e", 16500, false)]));
    assert_eq!(merge(&MergeSpec::default(), input).unwrap().row_count, 2);

    // A value that is not its type's text (e.g. DateStyle is not ISO).
    let columns = [column("d", oid::DATE, false)];
    let input = shards(
        &columns,
        &[&[&[Some("01/02/2000")]], &[&[Some("2000-01-03")]]],
    );
    let spec = MergeSpec {
        order_by: vec![asc(0)],
        ..MergeSpec::default()
    };
    assert_eq!(
        merge(&spec, input).unwrap_err().code,
        sqlstate::FEATURE_NOT_SUPPORTED
    );
}

#[test]
fn shard_without_description_uses_the_first() {
    let columns = [column("x", oid::INT4, false)];
    let mut input = shards(&columns, &[&[&[Some("2")]], &[&[Some("1")]]]);
    input[0].description = None;
    let spec = MergeSpec {
        order_by: vec![asc(0)],
        ..MergeSpec::default()
    };
    let merged = merge(&spec, input).unwrap();
    assert_eq!(texts(&merged, 1), strings(&[&[Some("1")], &[Some("2")]]));
}
