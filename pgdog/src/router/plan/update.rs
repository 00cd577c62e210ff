//! UPDATE and DELETE: the shards from the sharding keys of the WHERE clause (every shard
//! without one), and an UPDATE that assigns a new sharding key: when the rows may have to
//! move to another shard, a [`KeyUpdate`] tells the executor which table and rule.

use pg_query::protobuf::{DeleteStmt, Node, RangeVar, UpdateStmt, WithClause};
use pg_query::NodeEnum;

use super::keys::{decode_param, key_expr, Decoded, KeyExpr, KeyFilter, Scope};
use super::schema::{ShardingSchema, TableClass, TableRule};
use super::survey::{Ctes, Survey};
use super::tree::quote_ident;
use super::KeyUpdate;
use crate::net::{sqlstate, ErrorResponse};
use crate::router::route::{Params, Shards};

/// The analysis of an UPDATE or DELETE.
#[derive(Debug, Clone)]
pub(super) struct WritePlan {
    /// Every shard regardless of keys; `Some(true)` for an omnisharded table (one answer).
    all: Option<bool>,
    filter: KeyFilter,
    /// Why it cannot run on several shards.
    cross_problem: Option<ErrorResponse>,
    /// Why it cannot be routed at all.
    problem: Option<ErrorResponse>,
    key_change: Option<KeyChange>,
}

/// An UPDATE's assignment to the sharding key.
#[derive(Debug, Clone)]
struct KeyChange {
    table: String,
    rule: TableRule,
    /// The new value when it is a constant or a parameter.
    value: Option<KeyExpr>,
    returning: bool,
    from: bool,
}

/// Where an UPDATE/DELETE runs.
pub(super) struct Routed {
    pub shards: Shards,
    pub omnisharded: bool,
    pub key_update: Option<KeyUpdate>,
}

/// The parts of UPDATE and DELETE the analysis reads.
struct Parts<'a> {
    relation: Option<&'a RangeVar>,
    with: Option<&'a WithClause>,
    from: &'a [Node],
    where_clause: Option<&'a Node>,
    expressions: Vec<&'a Node>,
}

impl WritePlan {
    /// Analyzes an UPDATE.
    pub(super) fn update(stmt: &UpdateStmt, schema: &ShardingSchema) -> WritePlan {
        let mut expressions: Vec<&Node> = stmt.target_list.iter().collect();
        if let Some(returning) = &stmt.returning_clause {
            expressions.extend(&returning.exprs);
        }
        let mut plan = WritePlan::new(
            Parts {
                relation: stmt.relation.as_ref(),
                with: stmt.with_clause.as_ref(),
                from: &stmt.from_clause,
                where_clause: stmt.where_clause.as_deref(),
                expressions,
            },
            schema,
        );
        if plan.all.is_none() {
            plan.key_change = key_change(stmt, schema);
        }
        plan
    }

    /// Analyzes a DELETE.
    pub(super) fn delete(stmt: &DeleteStmt, schema: &ShardingSchema) -> WritePlan {
        let mut expressions: Vec<&Node> = Vec::new();
        if let Some(returning) = &stmt.returning_clause {
            expressions.extend(&returning.exprs);
        }
        WritePlan::new(
            Parts {
                relation: stmt.relation.as_ref(),
                with: stmt.with_clause.as_ref(),
                from: &stmt.using_clause,
                where_clause: stmt.where_clause.as_deref(),
                expressions,
            },
            schema,
        )
    }

    fn new(parts: Parts<'_>, schema: &ShardingSchema) -> WritePlan {
        let mut survey = Survey::new(schema);
        let mut ctes = Ctes::new();
        if let Some(with) = parts.with {
            survey.with_clause(with, &mut ctes);
        }
        for node in parts
            .from
            .iter()
            .chain(parts.where_clause)
            .chain(parts.expressions)
        {
            survey.expr(node, &ctes);
        }
        let reads_sharded = survey.touches;
        let mut plan = WritePlan {
            all: None,
            filter: KeyFilter::Unknown,
            cross_problem: survey.cross_problem,
            problem: survey.problem,
            key_change: None,
        };
        let Some(relation) = parts.relation else {
            plan.all = Some(false);
            return plan;
        };
        let table_schema =
            (!relation.schemaname.is_empty()).then_some(relation.schemaname.as_str());
        match schema.classify(table_schema, &relation.relname) {
            TableClass::Omnisharded => {
                if reads_sharded && plan.problem.is_none() {
                    plan.problem = Some(ErrorResponse::error(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        format!(
                            "writing omnisharded table \"{}\" with data of a sharded table cannot \
                             be routed: each shard would write different rows",
                            relation.relname
                        ),
                    ));
                }
                plan.all = Some(true);
            }
            TableClass::Catalog => plan.all = Some(false),
            TableClass::Sharded(_) | TableClass::Other(_) => {
                let cte_names = ctes.iter().map(|(name, _)| name.clone()).collect();
                let mut scope = Scope::new(cte_names);
                scope.add_table(schema, relation);
                scope.add_from(schema, parts.from);
                plan.filter = scope.filter(parts.where_clause);
            }
        }
        plan
    }

    /// The shards for these parameters.
    pub(super) fn route(&self, params: &Params<'_>, count: usize) -> Result<Routed, ErrorResponse> {
        if let Some(problem) = &self.problem {
            return Err(problem.clone());
        }
        if let Some(omnisharded) = self.all {
            return Ok(Routed {
                shards: if count <= 1 {
                    Shards::One(0)
                } else {
                    Shards::All
                },
                omnisharded,
                key_update: None,
            });
        }
        let shards = self.filter.target(params).shards(count);
        let several = matches!(shards, Shards::Many(_) | Shards::All);
        if several {
            if let Some(problem) = &self.cross_problem {
                return Err(problem.clone());
            }
        }
        let mut routed = Routed {
            shards,
            omnisharded: false,
            key_update: None,
        };
        let Some(change) = &self.key_change else {
            return Ok(routed);
        };
        let new_shard = match &change.value {
            Some(value) => Some(new_shard(&change.rule, value, params)?),
            None => None,
        };
        let stays = match (&routed.shards, new_shard) {
            (Shards::Any, _) => true,
            (Shards::One(old), Some(new)) => *old == new,
            _ => false,
        };
        if stays {
            return Ok(routed);
        }
        let refuse = |what: &str| {
            Err(ErrorResponse::error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "an UPDATE {what} that changes the sharding key \"{}\" cannot move rows \
                     between shards",
                    change.rule.column()
                ),
            )
            .hint(
                "filter on the old key so the row stays on one shard, or delete and insert the row",
            ))
        };
        if change.returning {
            return refuse("with RETURNING");
        }
        if change.from {
            return refuse("with FROM");
        }
        routed.key_update = Some(KeyUpdate {
            table: change.table.clone(),
            column: change.rule.column().to_string(),
            rule: change.rule.clone(),
            new_shard,
            old_shards: routed.shards.clone(),
        });
        Ok(routed)
    }
}

/// The assignment to the sharding key in an UPDATE, if any.
fn key_change(stmt: &UpdateStmt, schema: &ShardingSchema) -> Option<KeyChange> {
    let relation = stmt.relation.as_ref()?;
    let table_schema = (!relation.schemaname.is_empty()).then_some(relation.schemaname.as_str());
    let rules = match schema.classify(table_schema, &relation.relname) {
        TableClass::Sharded(rule) => vec![rule],
        TableClass::Other(rules) => rules,
        _ => return None,
    };
    for target in &stmt.target_list {
        let Some(NodeEnum::ResTarget(target)) = target.node.as_ref() else {
            continue;
        };
        let Some(rule) = rules.iter().find(|rule| rule.column() == target.name) else {
            continue;
        };
        let value = target
            .val
            .as_deref()
            .and_then(|value| match value.node.as_ref() {
                // `(a, key) = (1, 2)`: the item of the row for this column.
                Some(NodeEnum::MultiAssignRef(multi)) => {
                    match multi.source.as_deref()?.node.as_ref()? {
                        NodeEnum::RowExpr(row) => {
                            let index = usize::try_from(multi.colno).ok()?.checked_sub(1)?;
                            key_expr(row.args.get(index)?)
                        }
                        _ => None,
                    }
                }
                _ => key_expr(value),
            });
        let table = match table_schema {
            Some(s) => format!("{}.{}", quote_ident(s), quote_ident(&relation.relname)),
            None => quote_ident(&relation.relname),
        };
        return Some(KeyChange {
            table,
            rule: rule.clone(),
            value,
            returning: stmt
                .returning_clause
                .as_ref()
                .is_some_and(|returning| !returning.exprs.is_empty()),
            from: !stmt.from_clause.is_empty(),
        });
    }
    None
}

/// The shard of an UPDATE's new key value.
fn new_shard(
    rule: &TableRule,
    value: &KeyExpr,
    params: &Params<'_>,
) -> Result<usize, ErrorResponse> {
    let shards = match value {
        KeyExpr::Const(None) => rule.shards_of(None)?,
        KeyExpr::Const(Some(text)) => rule.shards_of_text(text)?,
        KeyExpr::Param(index) => match decode_param(rule.data_type(), params, *index) {
            Decoded::Null => rule.shards_of(None)?,
            Decoded::Key(key) => rule.shards_of(Some(&key))?,
            Decoded::Unknown => {
                return Err(ErrorResponse::error(
                    sqlstate::INVALID_TEXT_REPRESENTATION,
                    format!(
                        "parameter ${} is not a valid sharding key of type {}",
                        index + 1,
                        rule.data_type()
                    ),
                ))
            }
        },
        KeyExpr::ArrayText(_) | KeyExpr::ArrayParam(_) => Shards::All,
    };
    match shards {
        Shards::One(shard) => Ok(shard),
        _ => Err(ErrorResponse::error(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "the new sharding key must be a single value",
        )),
    }
}
