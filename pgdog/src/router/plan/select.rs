//! SELECT: which shards (the sharding keys of its WHERE clause) and, when it runs on several,
//! how their rows become one answer ([`MergeSpec`]) and what text the shards run instead
//! (the rewrite).
//!
//! Cross-shard SELECTs are merged from the top-level query: `ORDER BY` items resolved to
//! select-list positions (by number, output name or identical expression), `LIMIT`/`OFFSET`
//! (constants or parameters; the shards run `LIMIT limit + offset` without `OFFSET`),
//! `count`/`sum`/`min`/`max`/`bool_and`/`bool_or`/`every` and `avg` (run as `sum` plus a
//! hidden trailing `count`), `GROUP BY` items in the select list, `DISTINCT`, and `UNION`
//! / `UNION ALL` of plain branches. Anything the merge cannot combine exactly is an error
//! (0A000) when the query needs several shards, never a wrong answer: aggregates inside
//! expressions, `DISTINCT` aggregates, other aggregates, `HAVING`, window functions,
//! `DISTINCT ON`, grouping sets, `WITH TIES`, `INTERSECT`/`EXCEPT`, and subqueries or CTEs
//! that aggregate, group, limit or deduplicate rows of sharded tables.
//! With grouping or aggregates the shards run without `LIMIT`/`OFFSET` and the merger
//! applies order, offset and limit to the combined rows.

use pg_query::protobuf::{
    self, FuncCall, LimitOption, Node, ResTarget, SelectStmt, SetOperation, SortByDir, SortByNulls,
};
use pg_query::{NodeEnum, ParserOptions};

use super::keys::{decode_param, Decoded, KeyFilter, Scope};
use super::schema::ShardingSchema;
use super::survey::{find_functions, Ctes, Level, Survey};
use super::tree::{builtin_name, deparse, expression_text, is_aggregate, names};
use crate::net::{sqlstate, ErrorResponse};
use crate::router::route::{Aggregate, AggregateFunction, MergeSpec, Params, Shards, SortKey};
use crate::router::sharding::{DataType, KeyValue};

/// The analysis of a SELECT (or the query of `COPY (query) TO STDOUT`).
#[derive(Debug, Clone)]
pub(super) struct SelectPlan {
    /// Conditions on sharding keys.
    pub filter: KeyFilter,
    /// Reads a table that is not omnisharded.
    pub touches: bool,
    /// How to run it on several shards, or why it cannot be.
    pub cross: Result<CrossShard, ErrorResponse>,
    /// Why it cannot be routed at all.
    pub problem: Option<ErrorResponse>,
}

/// How a SELECT runs on several shards.
#[derive(Debug, Clone, Default)]
pub(super) struct CrossShard {
    /// The merge, without limit and offset (resolved with the parameters).
    pub spec: MergeSpec,
    /// `LIMIT`.
    pub limit: Count,
    /// `OFFSET`.
    pub offset: Count,
    /// The text the shards run instead of the original.
    pub rewrite: Option<String>,
}

/// A `LIMIT` or `OFFSET` value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum Count {
    /// None (or `LIMIT ALL` / NULL).
    #[default]
    None,
    /// A constant.
    Const(i64),
    /// Parameter (0-based index).
    Param(usize),
}

/// Where a routed SELECT runs and how its rows merge.
pub(super) struct Routed {
    pub shards: Shards,
    pub merge: MergeSpec,
    pub rewrite: Option<String>,
}

impl SelectPlan {
    /// Analyzes `select`; `ctes` are the CTEs of an enclosing statement.
    pub(super) fn new(select: &SelectStmt, version: i32, schema: &ShardingSchema) -> SelectPlan {
        let mut survey = Survey::new(schema);
        let partitioned = survey.select(select, &Ctes::new(), Level::Top);
        let filter = select_filter(select, schema, &[]);
        let op = SetOperation::try_from(select.op).unwrap_or(SetOperation::SetopNone);
        let cross = if let Some(problem) = survey.cross_problem.take() {
            Err(problem)
        } else if op != SetOperation::SetopNone {
            set_operation(select, partitioned)
        } else if survey.touches && !partitioned {
            Err(unsupported(
                "a query that reads sharded tables only in subqueries cannot run across \
                 shards: its rows would repeat once per shard",
            ))
        } else {
            Merge::new(select, version).build()
        };
        SelectPlan {
            filter,
            touches: survey.touches,
            cross,
            problem: survey.problem,
        }
    }

    /// The shards its key conditions select, ignoring whether it can run on them.
    pub(super) fn shards(&self, params: &Params<'_>, count: usize) -> Shards {
        if self.touches {
            self.filter.target(params).shards(count)
        } else {
            Shards::Any
        }
    }

    /// The shards and merge for these parameters.
    pub(super) fn route(&self, params: &Params<'_>, count: usize) -> Result<Routed, ErrorResponse> {
        if let Some(problem) = &self.problem {
            return Err(problem.clone());
        }
        let shards = self.shards(params, count);
        if matches!(shards, Shards::One(_) | Shards::Any) {
            return Ok(Routed {
                shards,
                merge: MergeSpec::default(),
                rewrite: None,
            });
        }
        let cross = self.cross.as_ref().map_err(Clone::clone)?;
        let mut merge = cross.spec.clone();
        merge.limit = match resolve_count(cross.limit, params) {
            Ok(limit) => limit,
            Err(()) => {
                return Err(ErrorResponse::error(
                    sqlstate::INVALID_ROW_COUNT_IN_LIMIT_CLAUSE,
                    "LIMIT must not be negative",
                ))
            }
        };
        merge.offset = match resolve_count(cross.offset, params) {
            Ok(offset) => offset.unwrap_or(0),
            Err(()) => {
                return Err(ErrorResponse::error(
                    sqlstate::INVALID_ROW_COUNT_IN_RESULT_OFFSET_CLAUSE,
                    "OFFSET must not be negative",
                ))
            }
        };
        Ok(Routed {
            shards,
            merge,
            rewrite: cross.rewrite.clone(),
        })
    }
}

/// The key conditions of a SELECT (a set operation: of any of its branches).
pub(super) fn select_filter(
    select: &SelectStmt,
    schema: &ShardingSchema,
    outer: &[String],
) -> KeyFilter {
    let mut ctes: Vec<String> = outer.to_vec();
    if let Some(with) = &select.with_clause {
        ctes.extend(with.ctes.iter().filter_map(|cte| match cte.node.as_ref() {
            Some(NodeEnum::CommonTableExpr(cte)) => Some(cte.ctename.clone()),
            _ => None,
        }));
    }
    if SetOperation::try_from(select.op).unwrap_or(SetOperation::SetopNone)
        != SetOperation::SetopNone
    {
        let branches = [&select.larg, &select.rarg]
            .into_iter()
            .flatten()
            .map(|branch| select_filter(branch, schema, &ctes))
            .collect();
        return KeyFilter::or(branches);
    }
    let mut scope = Scope::new(ctes);
    scope.add_from(schema, &select.from_clause);
    scope.filter(select.where_clause.as_deref())
}

/// A LIMIT/OFFSET value with the parameters: `Ok(None)` for none/NULL, `Err` when negative.
fn resolve_count(count: Count, params: &Params<'_>) -> Result<Option<u64>, ()> {
    let value = match count {
        Count::None => return Ok(None),
        Count::Const(value) => value,
        Count::Param(index) => match decode_param(DataType::Bigint, params, index) {
            Decoded::Key(KeyValue::Int(value)) => value,
            // NULL is no limit; an unreadable value fails on the shards themselves.
            _ => return Ok(None),
        },
    };
    u64::try_from(value).map(Some).map_err(|_| ())
}

fn unsupported(message: impl Into<String>) -> ErrorResponse {
    ErrorResponse::error(sqlstate::FEATURE_NOT_SUPPORTED, message).hint(
        "route the query to one shard: filter on the sharding key, or use a \
         /* pgdog_shard: N */ comment",
    )
}

/// A top-level UNION [ALL] (INTERSECT/EXCEPT, ORDER BY and LIMIT on it are not merged).
fn set_operation(select: &SelectStmt, partitioned: bool) -> Result<CrossShard, ErrorResponse> {
    let op = SetOperation::try_from(select.op).unwrap_or(SetOperation::SetopNone);
    if op != SetOperation::SetopUnion {
        return Err(unsupported("INTERSECT and EXCEPT cannot run across shards"));
    }
    if !select.sort_clause.is_empty()
        || select.limit_count.is_some()
        || select.limit_offset.is_some()
    {
        return Err(
            unsupported("ORDER BY, LIMIT or OFFSET on a UNION cannot run across shards")
                .detail("wrap the UNION in a subquery is not supported either; sort on the client"),
        );
    }
    if select.all {
        if !partitioned {
            return Err(unsupported(
                "UNION ALL with a branch that does not read a sharded table cannot run across \
                 shards: its rows would repeat once per shard",
            ));
        }
        return Ok(CrossShard::default());
    }
    Ok(CrossShard {
        spec: MergeSpec {
            distinct: true,
            ..MergeSpec::default()
        },
        ..CrossShard::default()
    })
}

/// Builds the merge of a plain top-level SELECT.
struct Merge<'a> {
    select: &'a SelectStmt,
    version: i32,
    targets: Vec<&'a ResTarget>,
    /// Index of the first `*` in the select list: positions from there on are unknown.
    star: Option<usize>,
    /// Deparsed select-list expressions (computed on first use).
    texts: Option<Vec<Option<String>>>,
}

/// Which clause an item being resolved to a select-list position comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Clause {
    OrderBy,
    GroupBy,
}

impl<'a> Merge<'a> {
    fn new(select: &'a SelectStmt, version: i32) -> Merge<'a> {
        let targets: Vec<&ResTarget> = select
            .target_list
            .iter()
            .filter_map(|node| match node.node.as_ref() {
                Some(NodeEnum::ResTarget(target)) => Some(target.as_ref()),
                _ => None,
            })
            .collect();
        let star = targets.iter().position(|target| is_star(target));
        Merge {
            select,
            version,
            targets,
            star,
            texts: None,
        }
    }

    fn build(mut self) -> Result<CrossShard, ErrorResponse> {
        let select = self.select;
        let mut spec = MergeSpec::default();

        for node in select.target_list.iter().chain(&select.sort_clause) {
            let mut window = false;
            find_functions(node, &mut |func| window |= func.over.is_some());
            if window {
                return Err(unsupported("window functions cannot run across shards"));
            }
        }
        if select.having_clause.is_some() {
            return Err(unsupported("HAVING cannot run across shards"));
        }

        // Aggregates in the select list.
        let mut averages = Vec::new();
        for (column, target) in self.targets.iter().enumerate() {
            let Some(value) = target.val.as_deref() else {
                continue;
            };
            if let Some(NodeEnum::FuncCall(func)) = value.node.as_ref() {
                if is_aggregate(func) {
                    let function = aggregate_function(func)?;
                    self.position_ok(column)?;
                    if matches!(function, AggregateFunction::Avg { .. }) {
                        averages.push(column);
                    }
                    spec.aggregates.push(Aggregate { column, function });
                    continue;
                }
            }
            let mut nested = None;
            find_functions(value, &mut |func| {
                if is_aggregate(func) && nested.is_none() {
                    nested = builtin_name(func);
                }
            });
            if let Some(name) = nested {
                return Err(unsupported(format!(
                    "an aggregate inside an expression ({name}(...) in select-list item {}) \
                     cannot be merged across shards",
                    column + 1
                ))
                .detail("only count, sum, min, max, avg, bool_and, bool_or and every, each as a whole select-list item, are merged"));
            }
        }

        // GROUP BY.
        for item in &select.group_clause {
            if matches!(item.node.as_ref(), Some(NodeEnum::GroupingSet(_))) {
                return Err(unsupported(
                    "GROUPING SETS, ROLLUP and CUBE cannot run across shards",
                ));
            }
            let column = self.resolve(item, Clause::GroupBy)?.ok_or_else(|| {
                unsupported(format!(
                    "GROUP BY {} must appear in the select list for a cross-shard query",
                    self.describe(item)
                ))
            })?;
            spec.group_by.push(column);
        }

        // DISTINCT.
        match select.distinct_clause.as_slice() {
            [] => {}
            [only] if only.node.is_none() => spec.distinct = true,
            _ => return Err(unsupported("DISTINCT ON cannot run across shards")),
        }

        // ORDER BY.
        for item in &select.sort_clause {
            let Some(NodeEnum::SortBy(sort)) = item.node.as_ref() else {
                continue;
            };
            let dir = SortByDir::try_from(sort.sortby_dir).unwrap_or(SortByDir::SortbyDefault);
            if dir == SortByDir::SortbyUsing {
                return Err(unsupported("ORDER BY ... USING cannot run across shards"));
            }
            let Some(node) = sort.node.as_deref() else {
                continue;
            };
            let resolved = self.resolve(node, Clause::OrderBy)?;
            // With * in the select list, a plain column is found by name in the result (the
            // merger resolves it against the RowDescription).
            let by_name = match (resolved, self.star, node.node.as_ref()) {
                (None, Some(_), Some(NodeEnum::ColumnRef(column))) => {
                    names(&column.fields).last().map(|name| name.to_string())
                }
                _ => None,
            };
            let column = match (resolved, by_name) {
                (Some(column), _) => column,
                (None, Some(name)) => {
                    spec.order_by_names.push((spec.order_by.len(), name));
                    usize::MAX
                }
                (None, None) => {
                    let mut error = unsupported(format!(
                        "ORDER BY {} must appear in the select list for a cross-shard query",
                        self.describe(node)
                    ));
                    if self.star.is_some() {
                        error = error.hint("list the columns instead of *");
                    }
                    return Err(error);
                }
            };
            let descending = dir == SortByDir::SortbyDesc;
            let nulls_first = match SortByNulls::try_from(sort.sortby_nulls) {
                Ok(SortByNulls::SortbyNullsFirst) => true,
                Ok(SortByNulls::SortbyNullsLast) => false,
                _ => descending,
            };
            spec.order_by.push(SortKey {
                column,
                descending,
                nulls_first,
            });
        }

        // LIMIT / OFFSET.
        if select.limit_option == LimitOption::WithTies as i32 {
            return Err(unsupported("FETCH ... WITH TIES cannot run across shards"));
        }
        let limit = count(select.limit_count.as_deref(), "LIMIT")?;
        let offset = count(select.limit_offset.as_deref(), "OFFSET")?;

        // The rewrite.
        let grouped = !spec.aggregates.is_empty() || !spec.group_by.is_empty();
        let strip_limit = grouped && (limit != Count::None || offset != Count::None);
        let rewrite_limit = !grouped && offset != Count::None;
        let rewrite = if averages.is_empty() && !strip_limit && !rewrite_limit {
            None
        } else {
            if !averages.is_empty() && self.star.is_some() {
                return Err(unsupported(
                    "avg() with * in the select list cannot run across shards",
                )
                .hint("list the columns instead of *"));
            }
            let mut modified = select.clone();
            let width = self.targets.len();
            for (hidden, &column) in averages.iter().enumerate() {
                add_hidden_count(&mut modified, column);
                for aggregate in spec.aggregates.iter_mut().filter(|a| a.column == column) {
                    aggregate.function = AggregateFunction::Avg {
                        count_column: width + hidden,
                    };
                }
            }
            spec.hidden_columns = averages.len();
            if strip_limit {
                modified.limit_count = None;
                modified.limit_offset = None;
                modified.limit_option = LimitOption::Default as i32;
            } else if rewrite_limit {
                modified.limit_count = shard_limit(limit, offset).map(Box::new);
                modified.limit_offset = None;
                if modified.limit_count.is_none() {
                    modified.limit_option = LimitOption::Default as i32;
                }
            }
            Some(
                deparse(self.version, NodeEnum::SelectStmt(Box::new(modified))).ok_or_else(
                    || unsupported("this query cannot be rewritten to run across shards"),
                )?,
            )
        };

        Ok(CrossShard {
            spec,
            limit,
            offset,
            rewrite,
        })
    }

    /// Error when `column` is at or after a `*` (its position is unknown).
    fn position_ok(&self, column: usize) -> Result<usize, ErrorResponse> {
        match self.star {
            Some(star) if column >= star => Err(unsupported(
                "columns after * in the select list cannot be merged across shards",
            )
            .hint("list the columns instead of *")),
            _ => Ok(column),
        }
    }

    /// The select-list position an ORDER BY / GROUP BY item stands for: its number, the output
    /// name it is (ORDER BY first), or an identical expression (GROUP BY first).
    fn resolve(&mut self, node: &Node, clause: Clause) -> Result<Option<usize>, ErrorResponse> {
        if let Some(NodeEnum::AConst(value)) = node.node.as_ref() {
            if let Some(protobuf::a_const::Val::Ival(number)) = &value.val {
                let position = usize::try_from(number.ival)
                    .ok()
                    .and_then(|n| n.checked_sub(1));
                return match position {
                    Some(position) if position < self.targets.len() => {
                        self.position_ok(position).map(Some)
                    }
                    _ => Err(ErrorResponse::error(
                        sqlstate::INVALID_COLUMN_REFERENCE,
                        format!(
                            "{} position {} is not in select list",
                            match clause {
                                Clause::OrderBy => "ORDER BY",
                                Clause::GroupBy => "GROUP BY",
                            },
                            number.ival
                        ),
                    )),
                };
            }
        }
        let by_name = |merge: &Self| -> Option<usize> {
            let Some(NodeEnum::ColumnRef(column)) = node.node.as_ref() else {
                return None;
            };
            let [name] = names(&column.fields)[..] else {
                return None;
            };
            merge
                .targets
                .iter()
                .position(|target| output_name(target).as_deref() == Some(name))
        };
        let found = match clause {
            Clause::OrderBy => match by_name(self) {
                Some(position) => Some(position),
                None => self.by_expression(node),
            },
            Clause::GroupBy => match self.by_expression(node) {
                Some(position) => Some(position),
                None => by_name(self),
            },
        };
        match found {
            Some(position) => self.position_ok(position).map(Some),
            None => Ok(None),
        }
    }

    /// The select-list item with the same expression as `node` (column references also match
    /// by column name when only one side is qualified).
    fn by_expression(&mut self, node: &Node) -> Option<usize> {
        if let Some(NodeEnum::ColumnRef(column)) = node.node.as_ref() {
            let wanted = names(&column.fields);
            let found = self.targets.iter().position(|target| {
                match target.val.as_deref().and_then(|v| v.node.as_ref()) {
                    Some(NodeEnum::ColumnRef(other)) => {
                        let other = names(&other.fields);
                        other == wanted
                            || (other.len() == 1 || wanted.len() == 1)
                                && other.last() == wanted.last()
                    }
                    _ => false,
                }
            });
            if found.is_some() {
                return found;
            }
        }
        let version = self.version;
        let wanted = expression_text(version, node)?;
        let targets = &self.targets;
        let texts = self.texts.get_or_insert_with(|| {
            targets
                .iter()
                .map(|target| {
                    target
                        .val
                        .as_deref()
                        .and_then(|value| expression_text(version, value))
                })
                .collect()
        });
        texts
            .iter()
            .position(|text| text.as_deref() == Some(wanted.as_str()))
    }

    /// How an item is shown in an error message.
    fn describe(&self, node: &Node) -> String {
        expression_text(self.version, node)
            .and_then(|text| text.strip_prefix("SELECT ").map(str::to_string))
            .unwrap_or_else(|| "item".to_string())
    }
}

/// Whether a select-list item is `*` or `t.*` (or `(x).*`).
fn is_star(target: &ResTarget) -> bool {
    match target.val.as_deref().and_then(|v| v.node.as_ref()) {
        Some(NodeEnum::ColumnRef(column)) => names(&column.fields).last() == Some(&"*"),
        Some(NodeEnum::AIndirection(indirection)) => indirection
            .indirection
            .iter()
            .any(|node| matches!(node.node, Some(NodeEnum::AStar(_)))),
        _ => false,
    }
}

/// The name PostgreSQL gives a select-list item's column (alias, column or function name).
fn output_name(target: &ResTarget) -> Option<String> {
    if !target.name.is_empty() {
        return Some(target.name.clone());
    }
    let mut node = target.val.as_deref()?;
    loop {
        match node.node.as_ref()? {
            NodeEnum::ColumnRef(column) => {
                return names(&column.fields)
                    .last()
                    .filter(|name| **name != "*")
                    .map(|name| name.to_string())
            }
            NodeEnum::FuncCall(func) => return names(&func.funcname).last().map(|n| n.to_string()),
            NodeEnum::TypeCast(cast) => match cast.arg.as_deref() {
                Some(arg) if !matches!(arg.node, Some(NodeEnum::AConst(_))) => node = arg,
                _ => {
                    return cast
                        .type_name
                        .as_ref()
                        .and_then(|t| names(&t.names).last().map(|n| n.to_string()))
                }
            },
            _ => return None,
        }
    }
}

/// How an aggregate's per-shard values combine; an error for those that cannot be.
fn aggregate_function(func: &FuncCall) -> Result<AggregateFunction, ErrorResponse> {
    let name = builtin_name(func).unwrap_or_default();
    if func.agg_within_group {
        return Err(unsupported(format!(
            "the aggregate {name}(...) WITHIN GROUP cannot be merged across shards"
        )));
    }
    let function = match name.as_str() {
        "count" => AggregateFunction::Count,
        "sum" => AggregateFunction::Sum,
        "min" => AggregateFunction::Min,
        "max" => AggregateFunction::Max,
        "avg" => AggregateFunction::Avg { count_column: 0 },
        "bool_and" | "every" => AggregateFunction::BoolAnd,
        "bool_or" => AggregateFunction::BoolOr,
        _ => {
            return Err(unsupported(format!(
                "the aggregate {name}() cannot be merged across shards"
            ))
            .detail("count, sum, min, max, avg, bool_and, bool_or and every are merged"))
        }
    };
    let distinct_matters = matches!(
        function,
        AggregateFunction::Count | AggregateFunction::Sum | AggregateFunction::Avg { .. }
    );
    if func.agg_distinct && distinct_matters {
        return Err(unsupported(format!(
            "{name}(DISTINCT ...) cannot be merged across shards"
        )));
    }
    Ok(function)
}

/// A LIMIT or OFFSET clause: a constant, a parameter (casts allowed) or NULL/ALL.
fn count(node: Option<&Node>, clause: &str) -> Result<Count, ErrorResponse> {
    let Some(node) = node else {
        return Ok(Count::None);
    };
    match super::tree::strip_casts(node).node.as_ref() {
        Some(NodeEnum::AConst(value)) if value.isnull => Ok(Count::None),
        Some(NodeEnum::ParamRef(param)) => super::keys::param_index(param)
            .map(Count::Param)
            .ok_or_else(|| unsupported(format!("bad {clause} parameter"))),
        Some(NodeEnum::AConst(value)) => {
            match super::tree::const_text(value).and_then(|text| text.trim().parse::<i64>().ok()) {
                Some(value) => Ok(Count::Const(value)),
                None => Err(unsupported(format!(
                    "{clause} must be an integer constant or a parameter in a cross-shard query"
                ))),
            }
        }
        _ => Err(unsupported(format!(
            "{clause} must be a constant or a parameter in a cross-shard query"
        ))),
    }
}

/// The LIMIT the shards run for `LIMIT limit OFFSET offset`: `limit + offset` (no limit
/// when there is none).
fn shard_limit(limit: Count, offset: Count) -> Option<Node> {
    let text = |count: Count| match count {
        Count::None => None,
        Count::Const(value) => Some(value.to_string()),
        Count::Param(index) => Some(format!("${}::bigint", index + 1)),
    };
    let expression = match (limit, offset) {
        (Count::None, _) => return None,
        (Count::Const(l), Count::Const(o)) => l.checked_add(o)?.to_string(),
        (limit, Count::None) => text(limit)?,
        (limit, offset) => format!("{} + {}", text(limit)?, text(offset)?),
    };
    let parsed = pg_query::parse(
        &format!("SELECT LIMIT {expression}"),
        ParserOptions::DEFAULT,
    )
    .ok()?;
    let raw = parsed.protobuf.stmts.into_iter().next()?;
    match raw.stmt?.node? {
        NodeEnum::SelectStmt(select) => select.limit_count.map(|node| *node),
        _ => None,
    }
}

/// Replaces `avg(x)` in select-list item `column` with `sum(x)` (named `avg` as before) and
/// appends `count(x)` as a hidden trailing column.
fn add_hidden_count(select: &mut SelectStmt, column: usize) {
    let mut targets = select
        .target_list
        .iter_mut()
        .filter_map(|node| match node.node.as_mut() {
            Some(NodeEnum::ResTarget(target)) => Some(target),
            _ => None,
        });
    let Some(target) = targets.nth(column) else {
        return;
    };
    let Some(NodeEnum::FuncCall(func)) = target.val.as_deref_mut().and_then(|v| v.node.as_mut())
    else {
        return;
    };
    let mut count = func.clone();
    func.funcname = vec![string_node("sum")];
    count.funcname = vec![string_node("count")];
    if target.name.is_empty() {
        target.name = "avg".to_string();
    }
    select.target_list.push(Node {
        node: Some(NodeEnum::ResTarget(Box::new(ResTarget {
            val: Some(Box::new(Node {
                node: Some(NodeEnum::FuncCall(count)),
            })),
            ..ResTarget::default()
        }))),
    });
}

fn string_node(value: &str) -> Node {
    Node {
        node: Some(NodeEnum::String(protobuf::String {
            sval: value.to_string(),
        })),
    }
}
