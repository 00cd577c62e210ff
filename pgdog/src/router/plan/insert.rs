//! INSERT: the shard of each VALUES row from its sharding key (a constant or a parameter, at
//! the key column's place in the column list), and, when the rows belong to several shards,
//! one INSERT per shard with that shard's rows and its parameters renumbered `$1..`.
//!
//! Omnisharded tables get every shard (the client gets one shard's answer); tables without a
//! sharding key every shard. An INSERT into a sharded table must give the key: not DEFAULT,
//! not an expression, and `INSERT ... SELECT` only with a constant key. Without a column list
//! the key's place comes from the table's columns, which the executor looks up
//! ([`super::Statement::needs_columns`]).

use pg_query::protobuf::{InsertStmt, SelectStmt, SetOperation, Token};
use pg_query::NodeEnum;

use super::keys::{decode_param, key_expr, Decoded, KeyExpr};
use super::schema::{ShardingSchema, TableClass, TableRule};
use super::survey::{Ctes, Level, Survey};
use super::tree::{deparse, names};
use super::ShardStatement;
use crate::net::{sqlstate, ErrorResponse};
use crate::router::route::{Params, Shards};
use crate::router::sharding::KeyValue;

/// The analysis of an INSERT.
#[derive(Debug, Clone)]
pub(super) struct InsertPlan {
    kind: Kind,
    /// The statement, for splitting it by shard.
    stmt: Box<InsertStmt>,
    version: i32,
}

#[derive(Debug, Clone)]
enum Kind {
    /// Every shard; `omnisharded`: the same write everywhere, one answer.
    All { omnisharded: bool },
    /// Rows placed by `rule`'s key at `position` of each row.
    Keys { rule: TableRule, position: usize },
    /// No column list: the key's position comes from the table's columns.
    ByColumns {
        table: (Option<String>, String),
        rules: Vec<TableRule>,
        /// A `[[sharded_tables]]` entry names the table (the key must be there).
        named: bool,
    },
    /// Cannot be routed.
    Error(ErrorResponse),
}

/// Where an INSERT runs.
pub(super) struct Routed {
    pub shards: Shards,
    pub omnisharded: bool,
    pub split: Vec<ShardStatement>,
}

impl InsertPlan {
    /// Analyzes an INSERT.
    pub(super) fn new(stmt: &InsertStmt, version: i32, schema: &ShardingSchema) -> InsertPlan {
        let kind = kind(stmt, schema);
        InsertPlan {
            kind,
            stmt: Box::new(stmt.clone()),
            version,
        }
    }

    /// The table whose columns are needed to route it.
    pub(super) fn needs_columns(&self) -> Option<(Option<&str>, &str)> {
        match &self.kind {
            Kind::ByColumns { table, .. } => Some((table.0.as_deref(), table.1.as_str())),
            _ => None,
        }
    }

    /// The shards for these parameters (and the table's columns when asked for).
    pub(super) fn route(
        &self,
        params: &Params<'_>,
        columns: Option<&[String]>,
    ) -> Result<Routed, ErrorResponse> {
        let (rule, position) = match &self.kind {
            Kind::All { omnisharded } => {
                return Ok(Routed {
                    shards: Shards::All,
                    omnisharded: *omnisharded,
                    split: Vec::new(),
                })
            }
            Kind::Error(error) => return Err(error.clone()),
            Kind::Keys { rule, position } => (rule, *position),
            Kind::ByColumns {
                table,
                rules,
                named,
            } => {
                let Some(columns) = columns else {
                    return Err(ErrorResponse::error(
                        sqlstate::INTERNAL_ERROR,
                        format!(
                            "routing this INSERT needs the columns of table \"{}\"",
                            table.1
                        ),
                    ));
                };
                let found = rules.iter().find_map(|rule| {
                    columns
                        .iter()
                        .position(|column| column == rule.column())
                        .map(|position| (rule, position))
                });
                match found {
                    Some(found) => found,
                    None if *named => {
                        return Err(ErrorResponse::error(
                            sqlstate::FEATURE_NOT_SUPPORTED,
                            format!(
                                "table \"{}\" has no column \"{}\", its sharding key",
                                table.1,
                                rules.first().map(TableRule::column).unwrap_or_default()
                            ),
                        ))
                    }
                    None => {
                        return Ok(Routed {
                            shards: Shards::All,
                            omnisharded: false,
                            split: Vec::new(),
                        })
                    }
                }
            }
        };
        let keys = row_keys(&self.stmt, position, rule)?;
        let mut shards = Vec::with_capacity(keys.len());
        for key in &keys {
            shards.push(row_shard(rule, key, params)?);
        }
        let mut distinct = shards.clone();
        distinct.sort_unstable();
        distinct.dedup();
        match distinct.as_slice() {
            [] => Ok(Routed {
                shards: Shards::Any,
                omnisharded: false,
                split: Vec::new(),
            }),
            [shard] => Ok(Routed {
                shards: Shards::One(*shard),
                omnisharded: false,
                split: Vec::new(),
            }),
            _ => {
                let split = distinct
                    .iter()
                    .map(|&shard| self.shard_statement(shard, &shards))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Routed {
                    shards: Shards::from_list(distinct, rule.shards()),
                    omnisharded: false,
                    split,
                })
            }
        }
    }

    /// The INSERT with only the rows of `shard` (`shards`: each row's shard).
    fn shard_statement(
        &self,
        shard: usize,
        shards: &[usize],
    ) -> Result<ShardStatement, ErrorResponse> {
        let mut stmt = self.stmt.clone();
        if let Some(NodeEnum::SelectStmt(select)) = stmt
            .select_stmt
            .as_deref_mut()
            .and_then(|node| node.node.as_mut())
        {
            let rows = std::mem::take(&mut select.values_lists);
            select.values_lists = rows
                .into_iter()
                .zip(shards)
                .filter(|(_, &row_shard)| row_shard == shard)
                .map(|(row, _)| row)
                .collect();
        }
        let failed = || {
            ErrorResponse::error(
                sqlstate::INTERNAL_ERROR,
                "could not split the INSERT by shard",
            )
        };
        let sql = deparse(self.version, NodeEnum::InsertStmt(stmt)).ok_or_else(failed)?;
        let (sql, params) = renumber_params(&sql).ok_or_else(failed)?;
        Ok(ShardStatement { shard, sql, params })
    }
}

fn kind(stmt: &InsertStmt, schema: &ShardingSchema) -> Kind {
    let Some(relation) = &stmt.relation else {
        return Kind::All { omnisharded: false };
    };
    let mut survey = Survey::new(schema);
    let mut ctes = Ctes::new();
    if let Some(with) = &stmt.with_clause {
        survey.with_clause(with, &mut ctes);
    }
    if let Some(NodeEnum::SelectStmt(select)) =
        stmt.select_stmt.as_deref().and_then(|n| n.node.as_ref())
    {
        survey.select(select, &ctes, Level::Nested);
    }
    if let Some(problem) = survey.problem {
        return Kind::Error(problem);
    }
    let table_schema = (!relation.schemaname.is_empty()).then(|| relation.schemaname.clone());
    let columns: Vec<&str> = stmt
        .cols
        .iter()
        .filter_map(|col| match col.node.as_ref() {
            Some(NodeEnum::ResTarget(target)) => Some(target.name.as_str()),
            _ => None,
        })
        .collect();
    let (rules, named) = match schema.classify(table_schema.as_deref(), &relation.relname) {
        TableClass::Omnisharded => {
            if survey.touches {
                return Kind::Error(ErrorResponse::error(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!(
                        "INSERT into omnisharded table \"{}\" from a sharded table cannot be routed: \
                         each shard would insert different rows",
                        relation.relname
                    ),
                ));
            }
            return Kind::All { omnisharded: true };
        }
        TableClass::Catalog => return Kind::All { omnisharded: false },
        TableClass::Other(rules) if rules.is_empty() => return Kind::All { omnisharded: false },
        TableClass::Other(rules) => (rules, false),
        TableClass::Sharded(rule) => (vec![rule], true),
    };
    if let Some(conflict) = &stmt.on_conflict_clause {
        for target in &conflict.target_list {
            if let Some(NodeEnum::ResTarget(target)) = target.node.as_ref() {
                if rules.iter().any(|rule| rule.column() == target.name) {
                    return Kind::Error(ErrorResponse::error(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "ON CONFLICT DO UPDATE cannot change the sharding key",
                    ));
                }
            }
        }
    }
    if named && stmt.select_stmt.is_none() {
        // DEFAULT VALUES.
        return Kind::Error(missing_key(&relation.relname, &rules[0]));
    }
    if columns.is_empty() {
        return Kind::ByColumns {
            table: (table_schema, relation.relname.clone()),
            rules,
            named,
        };
    }
    let found = rules.iter().find_map(|rule| {
        columns
            .iter()
            .position(|column| *column == rule.column())
            .map(|position| (rule, position))
    });
    match found {
        Some((rule, position)) => match row_keys(stmt, position, rule) {
            Ok(_) => Kind::Keys {
                rule: rule.clone(),
                position,
            },
            Err(error) => Kind::Error(error),
        },
        None if named => Kind::Error(missing_key(&relation.relname, &rules[0])),
        None => Kind::All { omnisharded: false },
    }
}

fn missing_key(table: &str, rule: &TableRule) -> ErrorResponse {
    ErrorResponse::error(
        sqlstate::FEATURE_NOT_SUPPORTED,
        format!(
            "INSERT into sharded table \"{table}\" must set its sharding key \"{}\"",
            rule.column()
        ),
    )
    .hint(format!(
        "give \"{}\" a value (a constant or a parameter) in the column list: a DEFAULT or \
         serial key cannot be routed",
        rule.column()
    ))
}

/// The key of each row: the item at `position` of each VALUES row, or of the select list of
/// `INSERT ... SELECT` (one key for all its rows).
fn row_keys(
    stmt: &InsertStmt,
    position: usize,
    rule: &TableRule,
) -> Result<Vec<KeyExpr>, ErrorResponse> {
    let table = stmt
        .relation
        .as_ref()
        .map(|r| r.relname.as_str())
        .unwrap_or_default();
    let Some(NodeEnum::SelectStmt(select)) =
        stmt.select_stmt.as_deref().and_then(|n| n.node.as_ref())
    else {
        // DEFAULT VALUES.
        return Err(missing_key(table, rule));
    };
    if !select.values_lists.is_empty() {
        let mut keys = Vec::with_capacity(select.values_lists.len());
        for row in &select.values_lists {
            let Some(NodeEnum::List(row)) = row.node.as_ref() else {
                return Err(missing_key(table, rule));
            };
            let Some(value) = row.items.get(position) else {
                return Err(missing_key(table, rule));
            };
            if matches!(value.node, Some(NodeEnum::SetToDefault(_))) {
                return Err(missing_key(table, rule));
            }
            keys.push(key_expr(value).ok_or_else(|| not_constant(rule))?);
        }
        return Ok(keys);
    }
    select_key(select, position)
        .map(|key| vec![key])
        .ok_or_else(|| {
            ErrorResponse::error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "INSERT ... SELECT into a sharded table cannot be routed (table \"{table}\")"
                ),
            )
            .hint(format!(
                "select a constant for \"{}\", or insert the rows with VALUES",
                rule.column()
            ))
        })
}

/// The constant (or parameter) key of `INSERT ... SELECT`.
fn select_key(select: &SelectStmt, position: usize) -> Option<KeyExpr> {
    if SetOperation::try_from(select.op).ok()? != SetOperation::SetopNone {
        return None;
    }
    let mut targets = select
        .target_list
        .iter()
        .map(|node| match node.node.as_ref() {
            Some(NodeEnum::ResTarget(target)) => target.val.as_deref(),
            _ => None,
        });
    let mut item = None;
    for (i, target) in targets.by_ref().enumerate() {
        let target = target?;
        if let Some(NodeEnum::ColumnRef(column)) = target.node.as_ref() {
            if names(&column.fields).last() == Some(&"*") {
                return None;
            }
        }
        if i == position {
            item = Some(target);
            break;
        }
    }
    key_expr(item?)
}

fn not_constant(rule: &TableRule) -> ErrorResponse {
    ErrorResponse::error(
        sqlstate::FEATURE_NOT_SUPPORTED,
        format!(
            "the sharding key \"{}\" of an INSERT must be a constant or a parameter",
            rule.column()
        ),
    )
    .hint("compute the value in the application, or pass it as a parameter")
}

/// The shard a row with this key goes to.
fn row_shard(rule: &TableRule, key: &KeyExpr, params: &Params<'_>) -> Result<usize, ErrorResponse> {
    let shards = match key {
        KeyExpr::Const(None) => rule.shards_of(None)?,
        KeyExpr::Const(Some(text)) => rule.shards_of_text(text)?,
        KeyExpr::Param(index) => match decode_param(rule.data_type(), params, *index) {
            Decoded::Null => rule.shards_of(None)?,
            Decoded::Key(key) => rule.shards_of(Some(&key))?,
            Decoded::Unknown => return Err(bad_param(rule, params, *index)),
        },
        KeyExpr::ArrayText(_) | KeyExpr::ArrayParam(_) => return Err(not_constant(rule)),
    };
    match shards {
        Shards::One(shard) => Ok(shard),
        _ => Err(not_constant(rule)),
    }
}

/// Why a parameter is not a key of the rule's type.
fn bad_param(rule: &TableRule, params: &Params<'_>, index: usize) -> ErrorResponse {
    match params.get(index) {
        None => ErrorResponse::error(
            sqlstate::PROTOCOL_VIOLATION,
            format!("no value for parameter ${}", index + 1),
        ),
        Some((Some(bytes), false, _)) => match std::str::from_utf8(bytes) {
            Ok(text) => match rule.parse(text) {
                Err(error) => error,
                Ok(key) => ErrorResponse::error(
                    sqlstate::INVALID_TEXT_REPRESENTATION,
                    format!("invalid sharding key {}", KeyValue::to_string(&key)),
                ),
            },
            Err(_) => ErrorResponse::error(
                sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
                "invalid UTF-8 in a sharding key parameter",
            ),
        },
        Some((Some(bytes), true, _)) => match rule.decode_binary(bytes) {
            Err(error) => error,
            Ok(_) => ErrorResponse::error(
                sqlstate::INVALID_BINARY_REPRESENTATION,
                format!(
                    "parameter ${} has a type that is not the sharding key's ({})",
                    index + 1,
                    rule.data_type()
                ),
            ),
        },
        Some((None, _, _)) => ErrorResponse::error(sqlstate::INTERNAL_ERROR, "NULL key"),
    }
}

/// Renumbers the parameters of `sql` `$1..` in order of first appearance; returns the text
/// and, for each new number, the original parameter's 0-based index.
pub(super) fn renumber_params(sql: &str) -> Option<(String, Vec<usize>)> {
    let tokens = pg_query::scan(sql).ok()?.tokens;
    let mut out = String::with_capacity(sql.len());
    let mut order: Vec<usize> = Vec::new();
    let mut last = 0usize;
    for token in tokens {
        if token.token != Token::Param as i32 {
            continue;
        }
        let start = usize::try_from(token.start).ok()?;
        let end = usize::try_from(token.end).ok()?;
        let number: usize = sql.get(start + 1..end)?.parse().ok()?;
        let index = number.checked_sub(1)?;
        let new = match order.iter().position(|&seen| seen == index) {
            Some(position) => position,
            None => {
                order.push(index);
                order.len() - 1
            }
        };
        out.push_str(sql.get(last..start)?);
        out.push_str(&format!("${}", new + 1));
        last = end;
    }
    out.push_str(sql.get(last..)?);
    Some((out, order))
}
