//! What a statement reads, everywhere in it (subqueries, CTEs, set operations): whether it
//! touches a table that is not omnisharded, whether its rows come from sharded tables
//! ("partitioned": each shard returns its own part of the answer), and what in it would make
//! running it on several shards and concatenating the answers wrong.

use pg_query::protobuf::{self, Node, SelectStmt, SetOperation, WithClause};
use pg_query::NodeEnum;

use super::schema::{ShardingSchema, TableClass};
use super::tree::{children, is_aggregate, opaque};
use crate::net::{sqlstate, ErrorResponse};

/// The CTEs visible at a point of a statement: name and whether its rows are partitioned
/// (`None`: it touches no sharded table).
pub(super) type Ctes = Vec<(String, Option<bool>)>;

/// How a SELECT node sits in the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Level {
    /// The statement itself (or a set operation the top-level merge covers).
    Top,
    /// Inside another query: its own aggregates, limits... run per shard.
    Nested,
}

/// The findings of a survey.
#[derive(Debug, Default)]
pub(super) struct Survey<'s> {
    schema: Option<&'s ShardingSchema>,
    /// A table that is not omnisharded (nor a catalog) is read or written somewhere.
    pub touches: bool,
    /// Why running on several shards would give a wrong answer (first reason found).
    pub cross_problem: Option<ErrorResponse>,
    /// Why the statement cannot be routed at all (data-modifying CTEs).
    pub problem: Option<ErrorResponse>,
}

impl<'s> Survey<'s> {
    /// A survey with the rules of `schema`.
    pub(super) fn new(schema: &'s ShardingSchema) -> Survey<'s> {
        Survey {
            schema: Some(schema),
            ..Survey::default()
        }
    }

    /// A survey with the same rules as `other`, and no findings yet.
    pub(super) fn new_like(other: &Survey<'s>) -> Survey<'s> {
        Survey {
            schema: other.schema,
            ..Survey::default()
        }
    }

    /// The sharding rules this survey uses.
    pub(super) fn rules(&self) -> Option<&'s ShardingSchema> {
        self.schema
    }

    fn cross(&mut self, message: String) {
        if self.cross_problem.is_none() {
            self.cross_problem = Some(
                ErrorResponse::error(sqlstate::FEATURE_NOT_SUPPORTED, message).hint(
                    "route the query to one shard: filter on the sharding key, or use a \
                     /* pgdog_shard: N */ comment",
                ),
            );
        }
    }

    /// Surveys a table reference; returns whether its rows are partitioned (`None`: a table
    /// that is the same on every shard).
    pub(super) fn table(&mut self, table: &protobuf::RangeVar, ctes: &Ctes) -> Option<bool> {
        if table.schemaname.is_empty() {
            if let Some((_, partitioned)) =
                ctes.iter().rev().find(|(name, _)| *name == table.relname)
            {
                if partitioned.is_some() {
                    self.touches = true;
                }
                return *partitioned;
            }
        }
        let schema = (!table.schemaname.is_empty()).then_some(table.schemaname.as_str());
        let class = self
            .schema
            .map(|rules| rules.classify(schema, &table.relname));
        match class {
            Some(TableClass::Omnisharded) | Some(TableClass::Catalog) => None,
            _ => {
                self.touches = true;
                Some(true)
            }
        }
    }

    /// Surveys the CTEs of a WITH clause, adding them to `ctes`.
    pub(super) fn with_clause(&mut self, with: &WithClause, ctes: &mut Ctes) {
        for cte in &with.ctes {
            let Some(NodeEnum::CommonTableExpr(cte)) = cte.node.as_ref() else {
                continue;
            };
            if with.recursive {
                // A recursive CTE refers to itself: assume its rows are partitioned while
                // surveying it.
                ctes.push((cte.ctename.clone(), Some(true)));
            }
            let partitioned = match cte.ctequery.as_deref().and_then(|q| q.node.as_ref()) {
                Some(NodeEnum::SelectStmt(select)) => {
                    let before = std::mem::replace(&mut self.touches, false);
                    let partitioned = self.select(select, ctes, Level::Nested);
                    let touched = self.touches;
                    self.touches |= before;
                    touched.then_some(partitioned)
                }
                Some(_) => {
                    if self.problem.is_none() {
                        self.problem = Some(
                            ErrorResponse::error(
                                sqlstate::FEATURE_NOT_SUPPORTED,
                                "data-modifying statements in WITH are not supported on a \
                                 sharded database",
                            )
                            .hint("run them as separate statements, or use a /* pgdog_shard: N */ comment"),
                        );
                    }
                    self.touches = true;
                    Some(true)
                }
                None => None,
            };
            if with.recursive {
                ctes.pop();
            }
            ctes.push((cte.ctename.clone(), partitioned));
        }
    }

    /// Surveys a SELECT; returns whether its rows are partitioned (every row comes from a
    /// sharded table, so the shards' answers are disjoint parts of the whole).
    pub(super) fn select(&mut self, select: &SelectStmt, ctes: &Ctes, level: Level) -> bool {
        let before = std::mem::replace(&mut self.touches, false);
        let mut ctes = ctes.clone();
        if let Some(with) = &select.with_clause {
            self.with_clause(with, &mut ctes);
        }
        let op = SetOperation::try_from(select.op).unwrap_or(SetOperation::SetopNone);
        let partitioned = if op == SetOperation::SetopNone {
            let mut partitioned = false;
            for item in &select.from_clause {
                partitioned |= self.in_from(item, &ctes);
            }
            for list in [
                &select.target_list,
                &select.group_clause,
                &select.window_clause,
                &select.values_lists,
                &select.distinct_clause,
            ] {
                for node in list.iter() {
                    self.expr(node, &ctes);
                }
            }
            if let Some(node) = select.where_clause.as_deref() {
                self.expr(node, &ctes);
            }
            if let Some(node) = select.having_clause.as_deref() {
                self.expr(node, &ctes);
            }
            if partitioned {
                if let Some(problem) = self.colocation_problem(select, &ctes) {
                    self.cross(problem);
                }
            }
            partitioned
        } else {
            // The branches of a set operation: UNION ALL (and UNION, under the top-level
            // DISTINCT merge) chains stay at the top level; anything else is nested.
            let mut partitioned = true;
            for branch in [&select.larg, &select.rarg].into_iter().flatten() {
                let branch_op =
                    SetOperation::try_from(branch.op).unwrap_or(SetOperation::SetopNone);
                let same_chain = level == Level::Top
                    && branch_op == SetOperation::SetopUnion
                    && (op == SetOperation::SetopUnion && !select.all || branch.all);
                let branch_level = if same_chain {
                    Level::Top
                } else {
                    Level::Nested
                };
                partitioned &= self.select(branch, &ctes, branch_level);
            }
            op == SetOperation::SetopUnion && select.all && partitioned
        };
        for node in &select.sort_clause {
            self.expr(node, &ctes);
        }
        for node in [&select.limit_count, &select.limit_offset]
            .into_iter()
            .flatten()
        {
            self.expr(node, &ctes);
        }
        let touched = self.touches;
        if level == Level::Nested && touched {
            if let Some(reason) = per_shard_feature(select) {
                self.cross(format!(
                    "a subquery with {reason} over a sharded table cannot run across shards"
                ));
            }
        }
        self.touches |= before;
        partitioned && touched
    }

    /// Surveys a FROM item; returns whether it makes the rows partitioned.
    fn in_from(&mut self, item: &Node, ctes: &Ctes) -> bool {
        match item.node.as_ref() {
            Some(NodeEnum::RangeVar(table)) => self.table(table, ctes) == Some(true),
            Some(NodeEnum::JoinExpr(join)) => {
                let mut partitioned = false;
                for side in [&join.larg, &join.rarg].into_iter().flatten() {
                    partitioned |= self.in_from(side, ctes);
                }
                if let Some(quals) = join.quals.as_deref() {
                    self.expr(quals, ctes);
                }
                partitioned
            }
            Some(NodeEnum::RangeSubselect(sub)) => {
                match sub.subquery.as_deref().and_then(|q| q.node.as_ref()) {
                    Some(NodeEnum::SelectStmt(select)) => self.select(select, ctes, Level::Nested),
                    _ => false,
                }
            }
            Some(_) => {
                self.expr(item, ctes);
                false
            }
            None => false,
        }
    }

    /// Surveys an expression (the queries in it).
    pub(super) fn expr(&mut self, node: &Node, ctes: &Ctes) {
        let Some(inner) = node.node.as_ref() else {
            return;
        };
        match inner {
            NodeEnum::SelectStmt(select) => {
                self.select(select, ctes, Level::Nested);
            }
            NodeEnum::RangeVar(table) => {
                self.table(table, ctes);
            }
            other => match children(other) {
                Some(kids) => {
                    for kid in kids {
                        self.expr(kid, ctes);
                    }
                }
                None => {
                    if opaque(other) {
                        self.touches = true;
                        self.cross(
                            "this query has an expression pgdog cannot route across shards"
                                .to_string(),
                        );
                    }
                }
            },
        }
    }
}

/// What in a SELECT makes its per-shard answer differ from its part of the whole answer
/// (aggregates, grouping, DISTINCT, LIMIT/OFFSET, window functions, set operations other
/// than UNION ALL), if anything.
pub(super) fn per_shard_feature(select: &SelectStmt) -> Option<&'static str> {
    let op = SetOperation::try_from(select.op).unwrap_or(SetOperation::SetopNone);
    if op != SetOperation::SetopNone {
        return (!(op == SetOperation::SetopUnion && select.all))
            .then_some("UNION, INTERSECT or EXCEPT");
    }
    if !select.group_clause.is_empty() || select.having_clause.is_some() {
        return Some("GROUP BY or HAVING");
    }
    if !select.distinct_clause.is_empty() {
        return Some("DISTINCT");
    }
    if select.limit_count.is_some() || select.limit_offset.is_some() {
        return Some("LIMIT or OFFSET");
    }
    let mut found = None;
    for node in select.target_list.iter().chain(&select.sort_clause) {
        find_functions(node, &mut |func| {
            if func.over.is_some() {
                found = Some("a window function");
            } else if is_aggregate(func) && found.is_none() {
                found = Some("an aggregate");
            }
        });
    }
    found
}

/// Calls `f` on every function call in an expression, not looking into subqueries.
pub(super) fn find_functions<'a>(node: &'a Node, f: &mut dyn FnMut(&'a protobuf::FuncCall)) {
    let Some(inner) = node.node.as_ref() else {
        return;
    };
    if let NodeEnum::FuncCall(func) = inner {
        f(func);
    }
    if matches!(inner, NodeEnum::SelectStmt(_) | NodeEnum::SubLink(_)) {
        if let NodeEnum::SubLink(link) = inner {
            if let Some(test) = link.testexpr.as_deref() {
                find_functions(test, f);
            }
        }
        return;
    }
    if let Some(kids) = children(inner) {
        for kid in kids {
            find_functions(kid, f);
        }
    }
}
