//! Merges checked against PostgreSQL 15: every expected order and `avg` text below was
//! produced by a real server (C collation, DateStyle ISO, IntervalStyle postgres) for the same
//! values on one database, the values' binary forms by the types' `*send` functions. Shards
//! get each sorted row round-robin by its position in the input list.

use super::float::format_float8;
use super::message::tests::{column, row};
use super::numeric::Numeric;
use super::tests::{description, output};
use super::value::oid;
use super::{merge, ShardRows};
use crate::router::route::{Aggregate, AggregateFunction, MergeSpec, SortKey};

/// One `SELECT x ... ORDER BY x [DESC]` over values of one type.
struct Case {
    type_oid: u32,
    descending: bool,
    /// In the server's order: (shard, text form, binary form in hex); `None` is NULL.
    rows: &'static [(usize, Option<&'static str>, Option<&'static str>)],
}

#[rustfmt::skip]
const ORDERS: &[Case] = &[
    // int2 ORDER BY x
    Case { type_oid: 21, descending: false, rows: &[(0, Some("-32768"), Some("8000")), (1, Some("-1"), Some("ffff")), (2, Some("0"), Some("0000")), (1, Some("5"), Some("0005")), (0, Some("32767"), Some("7fff")), (2, None, None)] },
    // int2 ORDER BY x DESC
    Case { type_oid: 21, descending: true, rows: &[(2, None, None), (0, Some("32767"), Some("7fff")), (1, Some("5"), Some("0005")), (2, Some("0"), Some("0000")), (1, Some("-1"), Some("ffff")), (0, Some("-32768"), Some("8000"))] },
    // int4 ORDER BY x
    Case { type_oid: 23, descending: false, rows: &[(0, Some("-2147483648"), Some("80000000")), (0, Some("-5"), Some("fffffffb")), (2, Some("0"), Some("00000000")), (1, Some("17"), Some("00000011")), (2, Some("100"), Some("00000064")), (1, Some("2147483647"), Some("7fffffff")), (0, None, None)] },
    // int4 ORDER BY x DESC
    Case { type_oid: 23, descending: true, rows: &[(0, None, None), (1, Some("2147483647"), Some("7fffffff")), (2, Some("100"), Some("00000064")), (1, Some("17"), Some("00000011")), (2, Some("0"), Some("00000000")), (0, Some("-5"), Some("fffffffb")), (0, Some("-2147483648"), Some("80000000"))] },
    // int8 ORDER BY x
    Case { type_oid: 20, descending: false, rows: &[(0, Some("-9223372036854775808"), Some("8000000000000000")), (1, Some("-42"), Some("ffffffffffffffd6")), (2, Some("0"), Some("0000000000000000")), (0, Some("42"), Some("000000000000002a")), (1, Some("9223372036854775807"), Some("7fffffffffffffff")), (2, None, None)] },
    // int8 ORDER BY x DESC
    Case { type_oid: 20, descending: true, rows: &[(2, None, None), (1, Some("9223372036854775807"), Some("7fffffffffffffff")), (0, Some("42"), Some("000000000000002a")), (2, Some("0"), Some("0000000000000000")), (1, Some("-42"), Some("ffffffffffffffd6")), (0, Some("-9223372036854775808"), Some("8000000000000000"))] },
    // oid ORDER BY x
    Case { type_oid: 26, descending: false, rows: &[(0, Some("0"), Some("00000000")), (2, Some("12"), Some("0000000c")), (0, Some("100000"), Some("000186a0")), (1, Some("4294967295"), Some("ffffffff")), (1, None, None)] },
    // oid ORDER BY x DESC
    Case { type_oid: 26, descending: true, rows: &[(1, None, None), (1, Some("4294967295"), Some("ffffffff")), (0, Some("100000"), Some("000186a0")), (2, Some("12"), Some("0000000c")), (0, Some("0"), Some("00000000"))] },
    // float4 ORDER BY x
    Case { type_oid: 700, descending: false, rows: &[(2, Some("-Infinity"), Some("ff800000")), (1, Some("-1.5"), Some("bfc00000")), (0, Some("0"), Some("00000000")), (2, Some("1e-05"), Some("3727c5ac")), (1, Some("1.5"), Some("3fc00000")), (0, Some("3.4e+38"), Some("7f7fc99e")), (1, Some("Infinity"), Some("7f800000")), (0, Some("NaN"), Some("7fc00000")), (2, None, None)] },
    // float4 ORDER BY x DESC
    Case { type_oid: 700, descending: true, rows: &[(2, None, None), (0, Some("NaN"), Some("7fc00000")), (1, Some("Infinity"), Some("7f800000")), (0, Some("3.4e+38"), Some("7f7fc99e")), (1, Some("1.5"), Some("3fc00000")), (2, Some("1e-05"), Some("3727c5ac")), (0, Some("0"), Some("00000000")), (1, Some("-1.5"), Some("bfc00000")), (2, Some("-Infinity"), Some("ff800000"))] },
    // float8 ORDER BY x
    Case { type_oid: 701, descending: false, rows: &[(2, Some("-Infinity"), Some("fff0000000000000")), (1, Some("-1.5"), Some("bff8000000000000")), (0, Some("0"), Some("0000000000000000")), (2, Some("1e-300"), Some("01a56e1fc2f8f359")), (1, Some("0.1"), Some("3fb999999999999a")), (2, Some("123456789.125"), Some("419d6f3454800000")), (0, Some("1.7e+308"), Some("7fee42d130773b76")), (1, Some("Infinity"), Some("7ff0000000000000")), (0, Some("NaN"), Some("7ff8000000000000")), (0, None, None)] },
    // float8 ORDER BY x DESC
    Case { type_oid: 701, descending: true, rows: &[(0, None, None), (0, Some("NaN"), Some("7ff8000000000000")), (1, Some("Infinity"), Some("7ff0000000000000")), (0, Some("1.7e+308"), Some("7fee42d130773b76")), (2, Some("123456789.125"), Some("419d6f3454800000")), (1, Some("0.1"), Some("3fb999999999999a")), (2, Some("1e-300"), Some("01a56e1fc2f8f359")), (0, Some("0"), Some("0000000000000000")), (1, Some("-1.5"), Some("bff8000000000000")), (2, Some("-Infinity"), Some("fff0000000000000"))] },
    // numeric ORDER BY x
    Case { type_oid: 1700, descending: false, rows: &[(2, Some("-Infinity"), Some("00000000f0000020")), (1, Some("-100.001"), Some("00020000400000030064000a")), (1, Some("-1.5"), Some("000200004000000100011388")), (0, Some("0"), Some("0000000000000000")), (0, Some("0.00000001"), Some("0001fffe000000080001")), (2, Some("1.25"), Some("0002000000000002000109c4")), (0, Some("10"), Some("0001000000000000000a")), (2, Some("99999999999999999999.9999"), Some("0006000400000004270f270f270f270f270f270f")), (1, Some("Infinity"), Some("00000000d0000020")), (0, Some("NaN"), Some("00000000c0000000")), (1, None, None)] },
    // numeric ORDER BY x DESC
    Case { type_oid: 1700, descending: true, rows: &[(1, None, None), (0, Some("NaN"), Some("00000000c0000000")), (1, Some("Infinity"), Some("00000000d0000020")), (2, Some("99999999999999999999.9999"), Some("0006000400000004270f270f270f270f270f270f")), (0, Some("10"), Some("0001000000000000000a")), (2, Some("1.25"), Some("0002000000000002000109c4")), (0, Some("0.00000001"), Some("0001fffe000000080001")), (0, Some("0"), Some("0000000000000000")), (1, Some("-1.5"), Some("000200004000000100011388")), (1, Some("-100.001"), Some("00020000400000030064000a")), (2, Some("-Infinity"), Some("00000000f0000020"))] },
    // text ORDER BY x
    Case { type_oid: 25, descending: false, rows: &[(0, Some(""), Some("")), (2, Some("B"), Some("42")), (2, Some("Z"), Some("5a")), (1, Some("a"), Some("61")), (0, Some("a b"), Some("612062")), (1, Some("aa"), Some("6161")), (0, Some("ab"), Some("6162")), (1, Some("é"), Some("c3a9")), (2, None, None)] },
    // text ORDER BY x DESC
    Case { type_oid: 25, descending: true, rows: &[(2, None, None), (1, Some("é"), Some("c3a9")), (0, Some("ab"), Some("6162")), (1, Some("aa"), Some("6161")), (0, Some("a b"), Some("612062")), (1, Some("a"), Some("61")), (2, Some("Z"), Some("5a")), (2, Some("B"), Some("42")), (0, Some(""), Some(""))] },
    // varchar ORDER BY x
    Case { type_oid: 1043, descending: false, rows: &[(0, Some(""), Some("")), (2, Some("X"), Some("58")), (0, Some("x"), Some("78")), (1, Some("xy"), Some("7879")), (1, Some("~"), Some("7e")), (2, None, None)] },
    // varchar ORDER BY x DESC
    Case { type_oid: 1043, descending: true, rows: &[(2, None, None), (1, Some("~"), Some("7e")), (1, Some("xy"), Some("7879")), (0, Some("x"), Some("78")), (2, Some("X"), Some("58")), (0, Some(""), Some(""))] },
    // name ORDER BY x
    Case { type_oid: 19, descending: false, rows: &[(2, Some("Z"), Some("5a")), (1, Some("a"), Some("61")), (0, Some("abc"), Some("616263")), (0, Some("pg_class"), Some("70675f636c617373")), (1, None, None)] },
    // name ORDER BY x DESC
    Case { type_oid: 19, descending: true, rows: &[(1, None, None), (0, Some("pg_class"), Some("70675f636c617373")), (0, Some("abc"), Some("616263")), (1, Some("a"), Some("61")), (2, Some("Z"), Some("5a"))] },
    // char(3) ORDER BY x
    Case { type_oid: 1042, descending: false, rows: &[(1, Some("   "), Some("202020")), (0, Some("a  "), Some("612020")), (0, Some("a b"), Some("612062")), (1, Some("ab "), Some("616220")), (2, Some("b  "), Some("622020")), (2, None, None)] },
    // char(3) ORDER BY x DESC
    Case { type_oid: 1042, descending: true, rows: &[(2, None, None), (2, Some("b  "), Some("622020")), (1, Some("ab "), Some("616220")), (0, Some("a b"), Some("612062")), (0, Some("a  "), Some("612020")), (1, Some("   "), Some("202020"))] },
    // "char" ORDER BY x
    Case { type_oid: 18, descending: false, rows: &[(2, Some("0"), Some("30")), (1, Some("Z"), Some("5a")), (0, Some("a"), Some("61")), (0, Some("\\310"), Some("c8")), (1, None, None)] },
    // "char" ORDER BY x DESC
    Case { type_oid: 18, descending: true, rows: &[(1, None, None), (0, Some("\\310"), Some("c8")), (0, Some("a"), Some("61")), (1, Some("Z"), Some("5a")), (2, Some("0"), Some("30"))] },
    // bool ORDER BY x
    Case { type_oid: 16, descending: false, rows: &[(1, Some("f"), Some("00")), (0, Some("t"), Some("01")), (2, None, None)] },
    // bool ORDER BY x DESC
    Case { type_oid: 16, descending: true, rows: &[(2, None, None), (0, Some("t"), Some("01")), (1, Some("f"), Some("00"))] },
    // date ORDER BY x
    Case { type_oid: 1082, descending: false, rows: &[(2, Some("-infinity"), Some("80000000")), (2, Some("0044-03-15 BC"), Some("fff49d7b")), (1, Some("0001-12-31 BC"), Some("fff4dbf8")), (0, Some("0001-01-01"), Some("fff4dbf9")), (1, Some("1999-12-31"), Some("ffffffff")), (0, Some("2000-01-01"), Some("00000000")), (0, Some("20000-01-01"), Some("0064511d")), (1, Some("infinity"), Some("7fffffff")), (2, None, None)] },
    // date ORDER BY x DESC
    Case { type_oid: 1082, descending: true, rows: &[(2, None, None), (1, Some("infinity"), Some("7fffffff")), (0, Some("20000-01-01"), Some("0064511d")), (0, Some("2000-01-01"), Some("00000000")), (1, Some("1999-12-31"), Some("ffffffff")), (0, Some("0001-01-01"), Some("fff4dbf9")), (1, Some("0001-12-31 BC"), Some("fff4dbf8")), (2, Some("0044-03-15 BC"), Some("fff49d7b")), (2, Some("-infinity"), Some("80000000"))] },
    // time ORDER BY x
    Case { type_oid: 1083, descending: false, rows: &[(0, Some("00:00:00"), Some("0000000000000000")), (1, Some("12:00:00.25"), Some("0000000a0eef8090")), (0, Some("12:00:00.5"), Some("0000000a0ef35120")), (1, Some("23:59:59.999999"), Some("000000141dd75fff")), (2, Some("24:00:00"), Some("000000141dd76000")), (2, None, None)] },
    // time ORDER BY x DESC
    Case { type_oid: 1083, descending: true, rows: &[(2, None, None), (2, Some("24:00:00"), Some("000000141dd76000")), (1, Some("23:59:59.999999"), Some("000000141dd75fff")), (0, Some("12:00:00.5"), Some("0000000a0ef35120")), (1, Some("12:00:00.25"), Some("0000000a0eef8090")), (0, Some("00:00:00"), Some("0000000000000000"))] },
    // timetz ORDER BY x
    Case { type_oid: 1266, descending: false, rows: &[(1, Some("00:00:00+14"), Some("0000000000000000ffff3b20")), (0, Some("12:00:00+05:30"), Some("0000000a0eebb000ffffb2a8")), (0, Some("06:30:00+00"), Some("0000000572bfaa0000000000")), (1, Some("07:00:00+00"), Some("00000005de097c0000000000")), (2, Some("07:00:00-00:01"), Some("00000005de097c000000003c")), (2, Some("23:59:00-12"), Some("000000141a43d9000000a8c0")), (0, None, None)] },
    // timetz ORDER BY x DESC
    Case { type_oid: 1266, descending: true, rows: &[(0, None, None), (2, Some("23:59:00-12"), Some("000000141a43d9000000a8c0")), (2, Some("07:00:00-00:01"), Some("00000005de097c000000003c")), (1, Some("07:00:00+00"), Some("00000005de097c0000000000")), (0, Some("06:30:00+00"), Some("0000000572bfaa0000000000")), (0, Some("12:00:00+05:30"), Some("0000000a0eebb000ffffb2a8")), (1, Some("00:00:00+14"), Some("0000000000000000ffff3b20"))] },
    // timestamp ORDER BY x
    Case { type_oid: 1114, descending: false, rows: &[(1, Some("-infinity"), Some("8000000000000000")), (2, Some("0044-03-15 12:00:00 BC"), Some("ff1af9e8fb46d000")), (1, Some("1999-12-31 23:59:59.999999"), Some("ffffffffffffffff")), (0, Some("2000-01-01 00:00:00"), Some("0000000000000000")), (0, Some("2024-02-29 12:34:56.789"), Some("0002b58341728608")), (2, Some("294276-01-01 00:00:00"), Some("7fffe29909c76000")), (0, Some("infinity"), Some("7fffffffffffffff")), (1, None, None)] },
    // timestamp ORDER BY x DESC
    Case { type_oid: 1114, descending: true, rows: &[(1, None, None), (0, Some("infinity"), Some("7fffffffffffffff")), (2, Some("294276-01-01 00:00:00"), Some("7fffe29909c76000")), (0, Some("2024-02-29 12:34:56.789"), Some("0002b58341728608")), (0, Some("2000-01-01 00:00:00"), Some("0000000000000000")), (1, Some("1999-12-31 23:59:59.999999"), Some("ffffffffffffffff")), (2, Some("0044-03-15 12:00:00 BC"), Some("ff1af9e8fb46d000")), (1, Some("-infinity"), Some("8000000000000000"))] },
    // timestamptz set timezone='Europe/Amsterdam'; ORDER BY x
    Case { type_oid: 1184, descending: false, rows: &[(1, Some("-infinity"), Some("8000000000000000")), (2, Some("0044-03-15 00:00:00+00:19:32 BC"), Some("ff1af9dea67fd300")), (1, Some("1800-01-01 00:09:32+00:19:32"), Some("ffe993dcd453ba00")), (0, Some("1800-01-01 00:19:32+00:19:32"), Some("ffe993dcf8170000")), (2, Some("2024-01-01 08:00:00+01"), Some("0002b0dbb2f2bc00")), (0, Some("2024-01-01 10:00:00+01"), Some("0002b0dd601a0400")), (2, Some("2024-01-01 11:00:00.000001+01"), Some("0002b0de36ada801")), (1, Some("2024-07-01 02:00:00+02"), Some("0002bf230c078000")), (0, Some("infinity"), Some("7fffffffffffffff")), (0, None, None)] },
    // timestamptz set timezone='Europe/Amsterdam'; ORDER BY x DESC
    Case { type_oid: 1184, descending: true, rows: &[(0, None, None), (0, Some("infinity"), Some("7fffffffffffffff")), (1, Some("2024-07-01 02:00:00+02"), Some("0002bf230c078000")), (2, Some("2024-01-01 11:00:00.000001+01"), Some("0002b0de36ada801")), (0, Some("2024-01-01 10:00:00+01"), Some("0002b0dd601a0400")), (2, Some("2024-01-01 08:00:00+01"), Some("0002b0dbb2f2bc00")), (0, Some("1800-01-01 00:19:32+00:19:32"), Some("ffe993dcf8170000")), (1, Some("1800-01-01 00:09:32+00:19:32"), Some("ffe993dcd453ba00")), (2, Some("0044-03-15 00:00:00+00:19:32 BC"), Some("ff1af9dea67fd300")), (1, Some("-infinity"), Some("8000000000000000"))] },
    // timestamptz set timezone='America/St_Johns'; ORDER BY x
    Case { type_oid: 1184, descending: false, rows: &[(0, Some("1900-05-31 20:29:08-03:30:52"), Some("fff4d5cc16152000")), (0, Some("2024-01-01 03:30:00-03:30"), Some("0002b0dbb2f2bc00")), (2, Some("2024-01-01 03:59:59-03:30"), Some("0002b0dc1e2d4bc0")), (1, Some("2024-01-01 04:00:00-03:30"), Some("0002b0dc1e3c8e00")), (1, None, None)] },
    // timestamptz set timezone='America/St_Johns'; ORDER BY x DESC
    Case { type_oid: 1184, descending: true, rows: &[(1, None, None), (1, Some("2024-01-01 04:00:00-03:30"), Some("0002b0dc1e3c8e00")), (2, Some("2024-01-01 03:59:59-03:30"), Some("0002b0dc1e2d4bc0")), (0, Some("2024-01-01 03:30:00-03:30"), Some("0002b0dbb2f2bc00")), (0, Some("1900-05-31 20:29:08-03:30:52"), Some("fff4d5cc16152000"))] },
    // interval ORDER BY x
    Case { type_oid: 1186, descending: false, rows: &[(0, Some("-1 years"), Some("000000000000000000000000fffffff4")), (2, Some("-00:00:01"), Some("fffffffffff0bdc00000000000000000")), (2, Some("00:00:00"), Some("00000000000000000000000000000000")), (1, Some("00:00:01"), Some("00000000000f42400000000000000000")), (0, Some("1 day"), Some("00000000000000000000000100000000")), (1, Some("100:00:00"), Some("00000053d1ac10000000000000000000")), (0, Some("1 mon -1 days"), Some("0000000000000000ffffffff00000001")), (1, Some("1 mon"), Some("00000000000000000000000000000001")), (2, Some("30 days 00:00:01"), Some("00000000000f42400000001e00000000")), (0, Some("1 year 2 mons 3 days 04:05:06.5"), Some("000000036c9361a0000000030000000e")), (1, None, None)] },
    // interval ORDER BY x DESC
    Case { type_oid: 1186, descending: true, rows: &[(1, None, None), (0, Some("1 year 2 mons 3 days 04:05:06.5"), Some("000000036c9361a0000000030000000e")), (2, Some("30 days 00:00:01"), Some("00000000000f42400000001e00000000")), (1, Some("1 mon"), Some("00000000000000000000000000000001")), (0, Some("1 mon -1 days"), Some("0000000000000000ffffffff00000001")), (1, Some("100:00:00"), Some("00000053d1ac10000000000000000000")), (0, Some("1 day"), Some("00000000000000000000000100000000")), (1, Some("00:00:01"), Some("00000000000f42400000000000000000")), (2, Some("00:00:00"), Some("00000000000000000000000000000000")), (2, Some("-00:00:01"), Some("fffffffffff0bdc00000000000000000")), (0, Some("-1 years"), Some("000000000000000000000000fffffff4"))] },
    // uuid ORDER BY x
    Case { type_oid: 2950, descending: false, rows: &[(0, Some("00000000-0000-0000-0000-000000000000"), Some("00000000000000000000000000000000")), (0, Some("0a0eebc9-9c0b-4ef8-bb6d-6bb9bd380a11"), Some("0a0eebc99c0b4ef8bb6d6bb9bd380a11")), (2, Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), Some("a0eebc999c0b4ef8bb6d6bb9bd380a11")), (1, Some("ffffffff-ffff-ffff-ffff-ffffffffffff"), Some("ffffffffffffffffffffffffffffffff")), (1, None, None)] },
    // uuid ORDER BY x DESC
    Case { type_oid: 2950, descending: true, rows: &[(1, None, None), (1, Some("ffffffff-ffff-ffff-ffff-ffffffffffff"), Some("ffffffffffffffffffffffffffffffff")), (2, Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), Some("a0eebc999c0b4ef8bb6d6bb9bd380a11")), (0, Some("0a0eebc9-9c0b-4ef8-bb6d-6bb9bd380a11"), Some("0a0eebc99c0b4ef8bb6d6bb9bd380a11")), (0, Some("00000000-0000-0000-0000-000000000000"), Some("00000000000000000000000000000000"))] },
    // bytea ORDER BY x
    Case { type_oid: 17, descending: false, rows: &[(0, Some("\\x"), Some("")), (1, Some("\\x00"), Some("00")), (2, Some("\\x0001"), Some("0001")), (1, Some("\\x7f80"), Some("7f80")), (0, Some("\\xff"), Some("ff")), (2, None, None)] },
    // bytea ORDER BY x DESC
    Case { type_oid: 17, descending: true, rows: &[(2, None, None), (0, Some("\\xff"), Some("ff")), (1, Some("\\x7f80"), Some("7f80")), (2, Some("\\x0001"), Some("0001")), (1, Some("\\x00"), Some("00")), (0, Some("\\x"), Some(""))] },
];

/// Each shard's `sum(x)` (`None`: NULL) and `count(x)`.
type Shards = &'static [(Option<&'static str>, i64)];

/// `avg(x)` over all values, from each shard's `sum(x)` (of the given type) and `count(x)`.
#[rustfmt::skip]
const AVERAGES: &[(u32, Shards, &str)] = &[
    // avg(int4) over [1, 2]
    (oid::INT8, &[(Some("1"), 1), (Some("2"), 1)], "1.5000000000000000"),
    // avg(int4) over [1, 2, 2]
    (oid::INT8, &[(Some("3"), 2), (Some("2"), 1)], "1.6666666666666667"),
    // avg(int4) over [0, 0]
    (oid::INT8, &[(Some("0"), 1), (Some("0"), 1)], "0.00000000000000000000"),
    // avg(int4) over [1, -2]
    (oid::INT8, &[(Some("1"), 1), (Some("-2"), 1)], "-0.50000000000000000000"),
    // avg(int4) over [-1, -2, -2]
    (oid::INT8, &[(Some("-3"), 2), (Some("-2"), 1), (None, 0)], "-1.6666666666666667"),
    // avg(int4) over [2147483647, 2147483647, 1]
    (oid::INT8, &[(Some("4294967294"), 2), (Some("1"), 1)], "1431655765.00000000"),
    // avg(int4) over [7, 11, 13]
    (oid::INT8, &[(Some("7"), 1), (Some("11"), 1), (Some("13"), 1)], "10.3333333333333333"),
    // avg(int2) over [1, 2, 3, 4, 5, 6, 7]
    (oid::INT8, &[(Some("6"), 3), (Some("22"), 4)], "4.0000000000000000"),
    // avg(int8) over [9223372036854775807, 9223372036854775807, 9223372036854775807]
    (oid::NUMERIC, &[(Some("18446744073709551614"), 2), (Some("9223372036854775807"), 1)], "9223372036854775807"),
    // avg(int8) over [-9223372036854775808, 1, 1]
    (oid::NUMERIC, &[(Some("-9223372036854775808"), 1), (Some("2"), 2)], "-3074457345618258602"),
    // avg(int8) over [100000000000, 3]
    (oid::NUMERIC, &[(Some("100000000000"), 1), (Some("3"), 1)], "50000000001.50000000"),
    // avg(numeric) over ['1.50', '2.25', '3']
    (oid::NUMERIC, &[(Some("3.75"), 2), (Some("3"), 1)], "2.2500000000000000"),
    // avg(numeric) over ['0.001', '0.002']
    (oid::NUMERIC, &[(Some("0.001"), 1), (Some("0.002"), 1)], "0.00150000000000000000"),
    // avg(numeric) over ['0.0000001', '0.0000002', '0.0000004']
    (oid::NUMERIC, &[(Some("0.0000003"), 2), (Some("0.0000004"), 1)], "0.000000233333333333333333"),
    // avg(numeric) over ['1e20', '3']
    (oid::NUMERIC, &[(Some("100000000000000000000"), 1), (Some("3"), 1)], "50000000000000000002"),
    // avg(numeric) over ['123456789.123456789', '1']
    (oid::NUMERIC, &[(Some("123456789.123456789"), 1), (Some("1"), 1)], "61728395.061728394500"),
    // avg(numeric) over ['-0.5', '0.25']
    (oid::NUMERIC, &[(Some("-0.5"), 1), (Some("0.25"), 1)], "-0.12500000000000000000"),
    // avg(numeric) over ['99999999999999999999.99', '1', '2']
    (oid::NUMERIC, &[(Some("99999999999999999999.99"), 1), (Some("1"), 1), (Some("2"), 1)], "33333333333333333334.33"),
    // avg(numeric) over ['12345678901234567890123456789', '1']
    (oid::NUMERIC, &[(Some("12345678901234567890123456789"), 1), (Some("1"), 1)], "6172839450617283945061728395"),
    // avg(numeric) over ['0.00000000000000000001', '0.00000000000000000002']
    (oid::NUMERIC, &[(Some("0.00000000000000000001"), 1), (Some("0.00000000000000000002"), 1)], "0.000000000000000000015000000000000000"),
    // avg(numeric) over ['2', '3', 'NaN']
    (oid::NUMERIC, &[(Some("2"), 1), (Some("3"), 1), (Some("NaN"), 1)], "NaN"),
    // avg(numeric) over ['2', 'Infinity']
    (oid::NUMERIC, &[(Some("2"), 1), (Some("Infinity"), 1)], "Infinity"),
    // avg(numeric) over ['1.000', '2.0']
    (oid::NUMERIC, &[(Some("1.000"), 1), (Some("2.0"), 1)], "1.5000000000000000"),
    // avg(numeric) over ['-9999.9999', '-0.0001', '1']
    (oid::NUMERIC, &[(Some("-9999.9999"), 1), (Some("0.9999"), 2)], "-3333.0000000000000000"),
    // avg(float8) over [0.1, 0.2, 0.3]
    (oid::FLOAT8, &[(Some("0.30000000000000004"), 2), (Some("0.3"), 1)], "0.20000000000000004"),
    // avg(float8) over [1, 2, 4]
    (oid::FLOAT8, &[(Some("1"), 1), (Some("6"), 2)], "2.3333333333333335"),
    // avg(float8) over [1e+20, 1e+20]
    (oid::FLOAT8, &[(Some("1e+20"), 1), (Some("1e+20"), 1)], "1e+20"),
    // avg(float8) over [1.5, -4.25]
    (oid::FLOAT8, &[(Some("1.5"), 1), (Some("-4.25"), 1)], "-1.375"),
    // avg(float8) over [1e-07, 3e-07]
    (oid::FLOAT8, &[(Some("1e-07"), 1), (Some("3e-07"), 1)], "2e-07"),
    // avg(float8) over [5, 5, 5]
    (oid::FLOAT8, &[(Some("5"), 1), (Some("5"), 1), (Some("5"), 1)], "5"),
    // avg(float4) over [1.5, 2.25]
    (oid::FLOAT4, &[(Some("1.5"), 1), (Some("2.25"), 1)], "1.875"),
];

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn orders_like_postgres() {
    for case in ORDERS {
        for binary in [false, true] {
            let value =
                |(_, text, hexed): &(usize, Option<&str>, Option<&str>)| -> Option<Vec<u8>> {
                    if binary {
                        hexed.map(hex)
                    } else {
                        text.map(|t| t.as_bytes().to_vec())
                    }
                };
            let columns = [column("x", case.type_oid, binary)];
            let mut shards = vec![ShardRows::default(); 3];
            for (i, shard) in shards.iter_mut().enumerate() {
                shard.description = Some(description(&columns));
                shard.rows = case
                    .rows
                    .iter()
                    .filter(|r| r.0 == i)
                    .map(|r| row(&[value(r).as_deref()]))
                    .collect();
            }
            let spec = MergeSpec {
                order_by: vec![SortKey {
                    column: 0,
                    descending: case.descending,
                    nulls_first: case.descending,
                }],
                ..MergeSpec::default()
            };
            let merged = merge(&spec, shards).unwrap();
            let got: Vec<Option<Vec<u8>>> = output(&merged, 1)
                .into_iter()
                .map(|r| r[0].as_ref().map(|b| b.to_vec()))
                .collect();
            let expected: Vec<Option<Vec<u8>>> = case.rows.iter().map(value).collect();
            assert_eq!(
                got, expected,
                "type {} binary {binary} desc {}",
                case.type_oid, case.descending
            );
        }
    }
}

/// Encodes a sum (as the server prints it) in the binary format of `type_oid`.
fn binary_sum(type_oid: u32, text: &str) -> Vec<u8> {
    match type_oid {
        oid::INT8 => text.parse::<i64>().unwrap().to_be_bytes().to_vec(),
        oid::NUMERIC => Numeric::parse_text(text.as_bytes())
            .unwrap()
            .to_binary()
            .unwrap(),
        oid::FLOAT4 => text.parse::<f32>().unwrap().to_be_bytes().to_vec(),
        _ => text.parse::<f64>().unwrap().to_be_bytes().to_vec(),
    }
}

#[test]
fn averages_like_postgres() {
    for (type_oid, shards, expected) in AVERAGES {
        for binary in [false, true] {
            let columns = [
                column("avg", *type_oid, binary),
                column("count", oid::INT8, binary),
            ];
            let input: Vec<ShardRows> = shards
                .iter()
                .map(|(sum, count)| {
                    let sum = sum.map(|s| {
                        if binary {
                            binary_sum(*type_oid, s)
                        } else {
                            s.as_bytes().to_vec()
                        }
                    });
                    let count = if binary {
                        count.to_be_bytes().to_vec()
                    } else {
                        count.to_string().into_bytes()
                    };
                    ShardRows {
                        description: Some(description(&columns)),
                        rows: vec![row(&[sum.as_deref(), Some(&count)])],
                        tag: Some("SELECT 1".into()),
                    }
                })
                .collect();
            let spec = MergeSpec {
                aggregates: vec![Aggregate {
                    column: 0,
                    function: AggregateFunction::Avg { count_column: 1 },
                }],
                hidden_columns: 1,
                ..MergeSpec::default()
            };
            let merged = merge(&spec, input).unwrap();
            assert_eq!(merged.tag.as_deref(), Some("SELECT 1"));
            let out =
                super::message::parse_description(merged.description.as_ref().unwrap()).unwrap();
            let float = matches!(*type_oid, oid::FLOAT4 | oid::FLOAT8);
            assert_eq!(out.len(), 1);
            assert_eq!(
                out[0].type_oid,
                if float { oid::FLOAT8 } else { oid::NUMERIC }
            );
            let rows = output(&merged, 1);
            let value = rows[0][0].clone().unwrap();
            let text = match (binary, float) {
                (false, _) => String::from_utf8(value.to_vec()).unwrap(),
                (true, true) => format_float8(f64::from_be_bytes(value[..].try_into().unwrap())),
                (true, false) => Numeric::decode_binary(&value).unwrap().to_text(),
            };
            assert_eq!(&text, expected, "{shards:?} binary {binary}");
        }
    }
}
