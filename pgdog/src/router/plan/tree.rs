//! Typed helpers over pg_query's raw parse trees that the planner's modules share: the
//! children of an expression node, names of column references and functions, constants, and
//! deparsing a single expression or statement.

use pg_query::protobuf::{self, a_const, Node, ParseResult, RawStmt, ResTarget, SelectStmt};
use pg_query::NodeEnum;

use std::ops::ControlFlow;

use super::super::walk::{walk, Path, Visitor};

/// The direct children of an expression (or FROM item) node, in tree order. `None` when the
/// node kind is not one the planner knows; [`opaque`] says whether such a node could hide
/// a query, a table or a function call.
pub(super) fn children(node: &NodeEnum) -> Option<Vec<&Node>> {
    let mut out: Vec<&Node> = Vec::new();
    fn opt<'a>(out: &mut Vec<&'a Node>, node: &'a Option<Box<Node>>) {
        if let Some(node) = node.as_deref() {
            out.push(node);
        }
    }
    match node {
        NodeEnum::ColumnRef(_)
        | NodeEnum::ParamRef(_)
        | NodeEnum::AConst(_)
        | NodeEnum::AStar(_)
        | NodeEnum::SqlvalueFunction(_)
        | NodeEnum::SetToDefault(_)
        | NodeEnum::String(_)
        | NodeEnum::Integer(_)
        | NodeEnum::Float(_)
        | NodeEnum::Boolean(_)
        | NodeEnum::BitString(_)
        | NodeEnum::TypeName(_)
        | NodeEnum::RangeVar(_)
        | NodeEnum::Alias(_)
        | NodeEnum::CurrentOfExpr(_) => {}
        NodeEnum::AExpr(e) => {
            opt(&mut out, &e.lexpr);
            opt(&mut out, &e.rexpr);
        }
        NodeEnum::BoolExpr(e) => out.extend(&e.args),
        NodeEnum::BooleanTest(e) => opt(&mut out, &e.arg),
        NodeEnum::NullTest(e) => opt(&mut out, &e.arg),
        NodeEnum::CaseExpr(e) => {
            opt(&mut out, &e.arg);
            out.extend(&e.args);
            opt(&mut out, &e.defresult);
        }
        NodeEnum::CaseWhen(e) => {
            opt(&mut out, &e.expr);
            opt(&mut out, &e.result);
        }
        NodeEnum::CoalesceExpr(e) => out.extend(&e.args),
        NodeEnum::MinMaxExpr(e) => out.extend(&e.args),
        NodeEnum::FuncCall(f) => {
            out.extend(&f.args);
            out.extend(&f.agg_order);
            opt(&mut out, &f.agg_filter);
            if let Some(over) = f.over.as_deref() {
                out.extend(&over.partition_clause);
                out.extend(&over.order_clause);
            }
        }
        NodeEnum::TypeCast(e) => opt(&mut out, &e.arg),
        NodeEnum::CollateClause(e) => opt(&mut out, &e.arg),
        NodeEnum::SubLink(e) => {
            opt(&mut out, &e.testexpr);
            opt(&mut out, &e.subselect);
        }
        NodeEnum::RowExpr(e) => out.extend(&e.args),
        NodeEnum::AArrayExpr(e) => out.extend(&e.elements),
        NodeEnum::AIndirection(e) => {
            opt(&mut out, &e.arg);
            out.extend(&e.indirection);
        }
        NodeEnum::AIndices(e) => {
            opt(&mut out, &e.lidx);
            opt(&mut out, &e.uidx);
        }
        NodeEnum::List(list) => out.extend(&list.items),
        NodeEnum::NamedArgExpr(e) => opt(&mut out, &e.arg),
        NodeEnum::SortBy(e) => opt(&mut out, &e.node),
        NodeEnum::ResTarget(e) => {
            opt(&mut out, &e.val);
            out.extend(&e.indirection);
        }
        NodeEnum::MultiAssignRef(e) => opt(&mut out, &e.source),
        NodeEnum::GroupingSet(e) => out.extend(&e.content),
        NodeEnum::GroupingFunc(e) => out.extend(&e.args),
        NodeEnum::WindowDef(e) => {
            out.extend(&e.partition_clause);
            out.extend(&e.order_clause);
        }
        NodeEnum::RangeSubselect(e) => opt(&mut out, &e.subquery),
        NodeEnum::RangeFunction(e) => out.extend(&e.functions),
        NodeEnum::JoinExpr(e) => {
            opt(&mut out, &e.larg);
            opt(&mut out, &e.rarg);
            opt(&mut out, &e.quals);
        }
        NodeEnum::XmlExpr(e) => {
            out.extend(&e.named_args);
            out.extend(&e.args);
        }
        NodeEnum::XmlSerialize(e) => opt(&mut out, &e.expr),
        _ => return None,
    }
    Some(out)
}

/// Built-in aggregates whose per-shard results the merger combines.
pub(super) const MERGEABLE_AGGREGATES: &[&str] = &[
    "count", "sum", "min", "max", "avg", "bool_and", "bool_or", "every",
];

/// Other built-in aggregates: their per-shard results cannot be combined.
const OTHER_AGGREGATES: &[&str] = &[
    "array_agg",
    "string_agg",
    "json_agg",
    "jsonb_agg",
    "json_agg_strict",
    "jsonb_agg_strict",
    "json_object_agg",
    "jsonb_object_agg",
    "json_object_agg_strict",
    "jsonb_object_agg_strict",
    "json_object_agg_unique",
    "jsonb_object_agg_unique",
    "json_object_agg_unique_strict",
    "jsonb_object_agg_unique_strict",
    "xmlagg",
    "bit_and",
    "bit_or",
    "bit_xor",
    "corr",
    "covar_pop",
    "covar_samp",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "regr_sxx",
    "regr_sxy",
    "regr_syy",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "mode",
    "percentile_cont",
    "percentile_disc",
    "range_agg",
    "range_intersect_agg",
    "any_value",
];

/// Whether a (lower-case, built-in) function name is an aggregate.
pub(super) fn is_aggregate_name(name: &str) -> bool {
    MERGEABLE_AGGREGATES.contains(&name) || OTHER_AGGREGATES.contains(&name)
}

/// Whether a function call is an aggregate (not used as a window function): a built-in
/// aggregate name, or `WITHIN GROUP`. User-defined aggregates cannot be told apart from
/// functions by their name.
pub(super) fn is_aggregate(func: &protobuf::FuncCall) -> bool {
    func.over.is_none()
        && (func.agg_within_group
            || builtin_name(func).is_some_and(|name| is_aggregate_name(&name)))
}

/// Whether a node the planner does not know could change how a statement is routed or
/// merged: it holds a query, a table, a data-modifying statement or an aggregate (a
/// built-in aggregate's name, or SQL/JSON's `JSON_ARRAYAGG`/`JSON_OBJECTAGG`).
pub(super) fn opaque(node: &NodeEnum) -> bool {
    struct Finder;
    impl Visitor for Finder {
        fn node(&mut self, name: &'static str) -> ControlFlow<()> {
            let found = matches!(
                name,
                "SelectStmt"
                    | "RangeVar"
                    | "InsertStmt"
                    | "UpdateStmt"
                    | "DeleteStmt"
                    | "MergeStmt"
                    | "JsonObjectAgg"
                    | "JsonArrayAgg"
                    | "WindowDef"
            );
            if found {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }

        fn string(&mut self, path: &Path, value: &str) -> ControlFlow<()> {
            if let [.., ("FuncCall", "funcname"), ("Node", "node"), ("String", "sval")] = path {
                if is_aggregate_name(&value.to_ascii_lowercase()) {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        }
    }
    walk(node, &mut Finder).is_break()
}

/// The string parts of a name list (`funcname`, `TypeName.names`, `ColumnRef.fields`); a `*`
/// is `"*"`.
pub(super) fn names(list: &[Node]) -> Vec<&str> {
    list.iter()
        .map(|node| match node.node.as_ref() {
            Some(NodeEnum::String(s)) => s.sval.as_str(),
            Some(NodeEnum::AStar(_)) => "*",
            _ => "",
        })
        .collect()
}

/// The last part of a function's name, lower-cased, when it is unqualified or in
/// `pg_catalog` (built-in functions); `None` for functions of other schemas.
pub(super) fn builtin_name(func: &protobuf::FuncCall) -> Option<String> {
    let parts = names(&func.funcname);
    match parts.as_slice() {
        [name] => Some(name.to_ascii_lowercase()),
        ["pg_catalog", name] => Some(name.to_ascii_lowercase()),
        _ => None,
    }
}

/// The operator name of an `A_Expr` (`=`, `<>`, ...), without a `pg_catalog` qualifier.
pub(super) fn operator(name: &[Node]) -> Option<&str> {
    match names(name).as_slice() {
        [op] | ["pg_catalog", op] => Some(op),
        _ => None,
    }
}

/// Casts around a node removed (`$1::bigint`, `'5'::int` → `$1`, `'5'`).
pub(super) fn strip_casts(mut node: &Node) -> &Node {
    while let Some(NodeEnum::TypeCast(cast)) = node.node.as_ref() {
        match cast.arg.as_deref() {
            Some(arg) => node = arg,
            None => break,
        }
    }
    node
}

/// A constant's text as PostgreSQL's input function would receive it; `None` for NULL.
pub(super) fn const_text(node: &protobuf::AConst) -> Option<String> {
    if node.isnull {
        return None;
    }
    match node.val.as_ref() {
        Some(a_const::Val::Ival(value)) => Some(value.ival.to_string()),
        Some(a_const::Val::Fval(value)) => Some(value.fval.clone()),
        Some(a_const::Val::Sval(value)) => Some(value.sval.clone()),
        Some(a_const::Val::Boolval(value)) => Some(value.boolval.to_string()),
        Some(a_const::Val::Bsval(value)) => Some(value.bsval.clone()),
        None => None,
    }
}

/// Deparses one statement.
pub(super) fn deparse(version: i32, statement: NodeEnum) -> Option<String> {
    let tree = ParseResult {
        version,
        stmts: vec![RawStmt {
            stmt: Some(Box::new(Node {
                node: Some(statement),
            })),
            stmt_location: 0,
            stmt_len: 0,
        }],
    };
    pg_query::deparse(&tree, Default::default()).ok()
}

/// A canonical text of an expression, for comparing two expressions (ORDER BY / GROUP BY
/// items against select-list items): the deparsed `SELECT <expr>`.
pub(super) fn expression_text(version: i32, node: &Node) -> Option<String> {
    let select = SelectStmt {
        target_list: vec![Node {
            node: Some(NodeEnum::ResTarget(Box::new(ResTarget {
                val: Some(Box::new(node.clone())),
                ..Default::default()
            }))),
        }],
        limit_option: protobuf::LimitOption::Default as i32,
        op: protobuf::SetOperation::SetopNone as i32,
        ..Default::default()
    };
    deparse(version, NodeEnum::SelectStmt(Box::new(select)))
}

pub(super) use crate::quote::ident as quote_ident;

#[cfg(test)]
mod tests {
    use super::*;
    use pg_query::ParserOptions;

    fn first_target(sql: &str) -> (i32, Node) {
        let parsed = pg_query::parse(sql, ParserOptions::DEFAULT).unwrap();
        let version = parsed.protobuf.version;
        let stmt = parsed.protobuf.stmts[0].stmt.clone().unwrap();
        let Some(NodeEnum::SelectStmt(select)) = stmt.node else {
            panic!("not a select")
        };
        let Some(NodeEnum::ResTarget(target)) = select.target_list[0].node.clone() else {
            panic!("no target")
        };
        (version, *target.val.unwrap())
    }

    #[test]
    fn expression_texts_ignore_spacing_and_case() {
        let (v, a) = first_target("SELECT lower( name )");
        let (_, b) = first_target("select LOWER(name)");
        let (_, c) = first_target("SELECT lower(t.name)");
        assert_eq!(expression_text(v, &a), expression_text(v, &b));
        assert_ne!(expression_text(v, &a), expression_text(v, &c));
    }

    #[test]
    fn casts_and_constants() {
        let (_, node) = first_target("SELECT '5'::int::bigint");
        let Some(NodeEnum::AConst(value)) = strip_casts(&node).node.as_ref() else {
            panic!("not a constant")
        };
        assert_eq!(const_text(value).as_deref(), Some("5"));
        let (_, node) = first_target("SELECT NULL::int");
        let Some(NodeEnum::AConst(value)) = strip_casts(&node).node.as_ref() else {
            panic!("not a constant")
        };
        assert_eq!(const_text(value), None);
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn opaque_nodes() {
        let parsed = pg_query::parse(
            "SELECT JSON_ARRAYAGG(x), JSON_OBJECT('a': 1) FROM t",
            ParserOptions::DEFAULT,
        )
        .unwrap();
        let stmt = parsed.protobuf.stmts[0].stmt.clone().unwrap().node.unwrap();
        let NodeEnum::SelectStmt(select) = stmt else {
            panic!()
        };
        for target in &select.target_list {
            let Some(NodeEnum::ResTarget(target)) = target.node.as_ref() else {
                panic!()
            };
            let val = target.val.as_deref().unwrap().node.as_ref().unwrap();
            assert!(children(val).is_none());
        }
        let agg = select.target_list[0].node.as_ref().unwrap();
        assert!(opaque(agg));
    }
}
