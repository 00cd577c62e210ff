//! The sharding planner: for each SQL statement of a query string, which shard(s) run it and
//! how their answers become one.
//!
//! [`Analysis::analyze`] parses a query string once (with pg_query) against the sharding
//! rules of a database ([`ShardingSchema`]) and keeps, per [`Statement`], what routing needs;
//! [`Statement::route`] then decides, for one execution's Bind parameters, the [`Route`]:
//! target shards, merge of the rows ([`MergeSpec`]), a rewritten text, an INSERT split by
//! shard, or an UPDATE that moves rows. [`PlanCache`] keeps analyses by query text.
//!
//! The rules, in short (the modules have the details):
//! - `keys`: sharding keys in WHERE (`=`, `IN`, `= ANY`, `AND`/`OR`, joins, aliases), Bind
//!   parameters in text and binary format.
//! - `select`: cross-shard SELECTs (ORDER BY, LIMIT/OFFSET, aggregates, GROUP BY,
//!   DISTINCT, UNION) and what cannot be merged (an error, never a wrong answer).
//! - `insert`: rows placed by their key; a multi-row INSERT split by shard.
//! - `update`: UPDATE/DELETE, and UPDATEs that change the key.
//! - `command`: transaction control, SET/RESET of `pgdog.shard`/`pgdog.sharding_key`,
//!   session statements, COPY, DDL and other utility statements.
//! - `comment`: `/* pgdog_shard: N */` and `/* pgdog_sharding_key: V */` overrides, which
//!   win over everything else for their statement.
//! - `survey`: what a statement reads in subqueries and CTEs.
//! - `schema`: the rules from the config; `cache`: the analysis cache; `tree`: parse-tree
//!   helpers.
//!
//! Statements that read only omnisharded tables, catalogs or no table at all go to any one
//! shard ([`Shards::Any`]); writes to omnisharded tables go to every shard
//! ([`Route::omnisharded`]). Text that does not parse goes to any one shard, which reports
//! the syntax error. With a single shard everything goes to shard 0 unchecked. Errors found
//! while analyzing (unsupported statements) are returned by [`Statement::route`].

mod cache;
mod colocation;
mod command;
mod comment;
mod insert;
mod keys;
mod schema;
mod select;
mod survey;
mod tree;
mod update;

#[cfg(test)]
mod tests;

use std::panic::AssertUnwindSafe;

use pg_query::ParserOptions;

pub use cache::PlanCache;
pub use command::copy_options_of;
pub use comment::Manual;
pub use schema::{ShardingSchema, TableRule};

use crate::net::{sqlstate, ErrorResponse};
use crate::router::access::{access, Access};
use crate::router::route::{CopyOptions, MergeSpec, Params, Shards};
use crate::router::sharding::{DataType, KeyValue};

use self::insert::InsertPlan;
use self::select::SelectPlan;
use self::update::WritePlan;

/// Everything learned from parsing one query string (one or more statements). Cheap to route
/// many times.
#[derive(Debug, Clone)]
pub struct Analysis {
    statements: Vec<Statement>,
    /// [`ShardingSchema::id`] of the rules it was made with.
    schema_id: u64,
}

impl Analysis {
    /// Parses and analyzes `sql` with the rules of `schema`. Never panics: text that does not
    /// parse is one statement routed to any shard.
    pub fn analyze(sql: &str, schema: &ShardingSchema) -> Analysis {
        let statements = std::panic::catch_unwind(AssertUnwindSafe(|| statements(sql, schema)))
            .unwrap_or_else(|_| vec![Statement::unparsed(sql)]);
        Analysis {
            statements,
            schema_id: schema.id(),
        }
    }

    /// The statements, in order (one for most query strings). Empty text → empty.
    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// The [`ShardingSchema::id`] of the rules it was made with.
    pub fn schema_id(&self) -> u64 {
        self.schema_id
    }
}

/// One statement of a query string and its analysis.
#[derive(Debug, Clone)]
pub struct Statement {
    sql: String,
    command: Command,
    read: bool,
    manual: Option<Manual>,
    plan: Plan,
}

/// What the executor does with a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Route with [`Statement::route`].
    Query,
    /// BEGIN / START TRANSACTION (any options); the executor forwards the text to each shard
    /// it uses.
    Begin,
    /// COMMIT / END (also `AND CHAIN`).
    Commit,
    /// ROLLBACK / ABORT.
    Rollback,
    /// SAVEPOINT / RELEASE / ROLLBACK TO: every shard the transaction holds.
    Savepoint,
    /// PREPARE TRANSACTION / COMMIT PREPARED / ROLLBACK PREPARED sent by the client.
    TwoPhase,
    /// SET/RESET/SET LOCAL of `pgdog.shard`: shard number (checked against the shard
    /// count), or None for RESET. `local`: SET LOCAL.
    SetShard {
        /// The shard.
        shard: Option<usize>,
        /// `SET LOCAL`.
        local: bool,
    },
    /// SET/RESET `pgdog.sharding_key`: value text or None for RESET (resolve it with
    /// [`ShardingSchema::shards_for_text`]).
    SetShardingKey {
        /// The value.
        value: Option<String>,
        /// `SET LOCAL`.
        local: bool,
    },
    /// Any other SET/RESET/DISCARD/DEALLOCATE session statement: every shard. (`RESET ALL`
    /// and `DISCARD ALL` do not reset `pgdog.shard`: that is up to the executor.)
    Session,
    /// COPY ... FROM STDIN / TO STDOUT on a table. (`COPY (query) TO STDOUT` is a
    /// [`Command::Query`] routed like the query, rows concatenated.)
    Copy(CopyStatement),
}

/// A `COPY` of a table from STDIN or to STDOUT.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyStatement {
    /// Schema, if the statement names one.
    pub schema: Option<String>,
    /// Table.
    pub table: String,
    /// The column list; empty = all columns.
    pub columns: Vec<String>,
    /// `FROM STDIN` (else `TO STDOUT`).
    pub from_stdin: bool,
    /// Format, delimiter, NULL marker, header, quote and escape.
    pub options: CopyOptions,
    /// How rows are placed, as far as the statement tells (see
    /// [`CopyStatement::placement_for`] when there is no column list).
    pub placement: CopyPlacement,
    /// Rules of `[[sharded_tables]]` entries without a table name that may apply (the table
    /// has no entry of its own and no column list says).
    candidates: Vec<TableRule>,
    /// An entry names the table.
    named: bool,
}

/// How the rows of a COPY are placed.
#[derive(Debug, Clone, PartialEq)]
pub enum CopyPlacement {
    /// Each row goes to the shard of its key ([`CopyPlacement::shards_of`] of the decoded
    /// key; [`TableRule::parse`] / [`TableRule::decode_binary`] read it).
    Sharded {
        /// The key column.
        column: String,
        /// Its type.
        data_type: DataType,
        /// The rule placing the rows.
        rule: TableRule,
    },
    /// The same rows on every shard: COPY FROM sends every row to every shard, COPY TO reads
    /// one shard.
    Omnisharded,
    /// No sharding key: every row to every shard (COPY FROM), every shard's rows (COPY TO).
    Unsharded,
}

impl CopyPlacement {
    /// Placement by `rule`.
    pub fn sharded(rule: TableRule) -> CopyPlacement {
        CopyPlacement::Sharded {
            column: rule.column().to_string(),
            data_type: rule.data_type(),
            rule,
        }
    }

    /// The shard(s) of a row with this decoded key (`None`: NULL): for sharded rows
    /// [`TableRule::shards_of`] (an error when no mapping rule takes the value); every shard
    /// otherwise.
    pub fn shards_of(&self, key: Option<&KeyValue>) -> Result<Shards, ErrorResponse> {
        match self {
            CopyPlacement::Sharded { rule, .. } => rule.shards_of(key),
            CopyPlacement::Omnisharded | CopyPlacement::Unsharded => Ok(Shards::All),
        }
    }
}

impl CopyStatement {
    /// The placement and, for sharded rows, the 0-based position of the key among each row's
    /// fields. `table_columns` are the table's columns in attnum order, needed when
    /// [`Statement::needs_columns`] asked (no column list); ignored otherwise.
    ///
    /// Errors when the table is sharded but the key is not among the copied columns (COPY
    /// FROM cannot place the rows), or the columns are needed and not given.
    pub fn placement_for(
        &self,
        table_columns: Option<&[String]>,
    ) -> Result<(CopyPlacement, Option<usize>), ErrorResponse> {
        let CopyPlacement::Sharded { rule, .. } = &self.placement else {
            return Ok((self.placement.clone(), None));
        };
        let columns: &[String] = if self.columns.is_empty() {
            match table_columns {
                Some(columns) => columns,
                None => {
                    return Err(ErrorResponse::error(
                        sqlstate::INTERNAL_ERROR,
                        format!("COPY needs the columns of table \"{}\"", self.table),
                    ))
                }
            }
        } else {
            &self.columns
        };
        let rules = if self.candidates.is_empty() {
            std::slice::from_ref(rule)
        } else {
            &self.candidates[..]
        };
        for rule in rules {
            if let Some(position) = columns.iter().position(|c| c == rule.column()) {
                return Ok((CopyPlacement::sharded(rule.clone()), Some(position)));
            }
        }
        if !self.named {
            return Ok((CopyPlacement::Unsharded, None));
        }
        if !self.from_stdin {
            return Ok((CopyPlacement::Unsharded, None));
        }
        Err(ErrorResponse::error(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!(
                "COPY into sharded table \"{}\" must include its sharding key \"{}\"",
                self.table,
                rule.column()
            ),
        ))
    }
}

/// Where to run a statement and how to merge.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The shards.
    pub shards: Shards,
    /// Only reads (replica-safe): [`access`] of the statement's text is [`Access::Read`].
    pub read: bool,
    /// How to combine rows when `shards` is more than one shard (default = concat).
    pub merge: MergeSpec,
    /// Run this text instead of the original on every target shard (same parameters), when
    /// the merge needs a rewrite: `avg(x)` → `sum(x)` + hidden trailing `count(x)`; `OFFSET
    /// k LIMIT n` → `LIMIT n + k` without OFFSET (the merger applies offset and limit); no
    /// LIMIT/OFFSET on the shards when rows are grouped or aggregated.
    pub rewrite: Option<String>,
    /// Non-empty: a multi-row INSERT whose rows go to different shards, split: run these
    /// instead (one per shard in `shards`).
    pub split: Vec<ShardStatement>,
    /// An UPDATE that sets the sharding key and may move rows between shards.
    pub key_update: Option<KeyUpdate>,
    /// A write to an omnisharded table: every shard applies it, and the client gets one
    /// shard's answer (its rows and its row count), not the sum.
    pub omnisharded: bool,
}

impl Route {
    /// `shards`, concatenated, nothing else.
    pub fn to(shards: Shards, read: bool) -> Route {
        Route {
            shards,
            read,
            merge: MergeSpec::default(),
            rewrite: None,
            split: Vec::new(),
            key_update: None,
            omnisharded: false,
        }
    }
}

/// One shard's part of a split INSERT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardStatement {
    /// The shard.
    pub shard: usize,
    /// The INSERT with this shard's rows.
    pub sql: String,
    /// `$1..` of `sql` are these original parameters (0-based indexes).
    pub params: Vec<usize>,
}

/// An UPDATE that assigns the sharding key where the rows' new shard is not known to be their
/// old one. The executor runs, in a transaction, the UPDATE with `RETURNING *` on
/// `old_shards`; a returned row whose key (the `column` field, looked up by name) belongs to
/// another shard ([`TableRule::shards_of`]) is deleted there and inserted on its shard.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyUpdate {
    /// The table, quoted and qualified as the statement wrote it (`"public"."users"`).
    pub table: String,
    /// The key column.
    pub column: String,
    /// The rule placing the table's rows.
    pub rule: TableRule,
    /// The shard of the new key value, when the SET gives a constant or a parameter.
    pub new_shard: Option<usize>,
    /// The shards the rows may come from (the WHERE clause's).
    pub old_shards: Shards,
}

impl KeyUpdate {
    /// The shard(s) of a moved row from its new key's text (`None`: NULL), as the row's
    /// `column` field reads in text format ([`TableRule::shards_of_text`]).
    pub fn shards_of_text(
        &self,
        key: Option<&str>,
        _schema: &ShardingSchema,
    ) -> Result<Shards, ErrorResponse> {
        match key {
            Some(text) => self.rule.shards_of_text(text),
            None => self.rule.shards_of(None),
        }
    }
}

/// How a statement is routed (its analysis).
#[derive(Debug, Clone)]
enum Plan {
    /// Always these shards.
    Fixed { shards: Shards, omnisharded: bool },
    /// Cannot be routed.
    Error(ErrorResponse),
    /// A SELECT.
    Select(SelectPlan),
    /// `COPY (query) TO STDOUT`: like the query, rows concatenated.
    CopyOut(SelectPlan),
    /// `DECLARE CURSOR`: like the query, one shard only.
    Cursor(SelectPlan),
    /// An INSERT.
    Insert(InsertPlan),
    /// An UPDATE or DELETE.
    Write(WritePlan),
    /// `EXPLAIN` of a statement: its shards, output concatenated.
    Explain(Box<Plan>),
}

impl Plan {
    fn fixed(shards: Shards) -> Plan {
        Plan::Fixed {
            shards,
            omnisharded: false,
        }
    }

    fn all() -> Plan {
        Plan::fixed(Shards::All)
    }
}

impl Statement {
    /// A statement that did not parse: any one shard reports the error.
    fn unparsed(sql: &str) -> Statement {
        Statement {
            sql: sql.trim().to_string(),
            command: Command::Query,
            read: false,
            manual: None,
            plan: Plan::fixed(Shards::Any),
        }
    }

    /// This statement's own text (trimmed, without the trailing `;`; comments before it are
    /// not included).
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// What the executor does with it.
    pub fn command(&self) -> &Command {
        &self.command
    }

    /// Whether it only reads ([`access`] is [`Access::Read`]).
    pub fn read(&self) -> bool {
        self.read
    }

    /// The routing comment of the statement, if it has one.
    pub fn manual(&self) -> Option<&Manual> {
        self.manual.as_ref()
    }

    /// Table whose column list pgdog needs to route this (INSERT without a column list, COPY
    /// without one), as (schema, name); the executor looks the columns up on a shard and
    /// passes them to [`Statement::route`] (or [`CopyStatement::placement_for`]).
    pub fn needs_columns(&self) -> Option<(Option<&str>, &str)> {
        if self.manual.is_some() {
            return None;
        }
        if let Command::Copy(copy) = &self.command {
            return (copy.columns.is_empty()
                && matches!(copy.placement, CopyPlacement::Sharded { .. }))
            .then_some((copy.schema.as_deref(), copy.table.as_str()));
        }
        let mut plan = &self.plan;
        while let Plan::Explain(inner) = plan {
            plan = inner;
        }
        match plan {
            Plan::Insert(insert) => insert.needs_columns(),
            _ => None,
        }
    }

    /// Where to run it and how to merge, for these Bind parameters ([`Params::NONE`] for
    /// simple queries) and, when [`Statement::needs_columns`] asked, the table's columns in
    /// attnum order.
    pub fn route(
        &self,
        params: &Params<'_>,
        columns: Option<&[String]>,
        schema: &ShardingSchema,
    ) -> Result<Route, ErrorResponse> {
        let count = schema.shards();
        if let Some(manual) = &self.manual {
            let shards = match manual {
                Manual::Shard(shard) if *shard < count => Shards::One(*shard),
                Manual::Shard(shard) => {
                    return Err(ErrorResponse::error(
                        sqlstate::INVALID_PARAMETER_VALUE,
                        format!(
                            "pgdog_shard: shard {shard} does not exist: the database has {count} \
                             shard(s), numbered from 0"
                        ),
                    ))
                }
                Manual::BadShard(text) => {
                    return Err(ErrorResponse::error(
                        sqlstate::INVALID_PARAMETER_VALUE,
                        format!("pgdog_shard: \"{text}\" is not a shard number"),
                    ))
                }
                Manual::ShardingKey(value) => schema.shards_for_text(value)?,
            };
            return Ok(Route::to(shards, self.read));
        }
        if count <= 1 {
            return Ok(Route::to(Shards::One(0), self.read));
        }
        route_plan(&self.plan, params, columns, count, self.read)
    }
}

/// The route of a plan.
fn route_plan(
    plan: &Plan,
    params: &Params<'_>,
    columns: Option<&[String]>,
    count: usize,
    read: bool,
) -> Result<Route, ErrorResponse> {
    match plan {
        Plan::Fixed {
            shards,
            omnisharded,
        } => Ok(Route {
            omnisharded: *omnisharded,
            ..Route::to(shards.clone(), read)
        }),
        Plan::Error(error) => Err(error.clone()),
        Plan::Select(select) => {
            let routed = select.route(params, count)?;
            Ok(Route {
                merge: routed.merge,
                rewrite: routed.rewrite,
                ..Route::to(routed.shards, read)
            })
        }
        Plan::CopyOut(select) | Plan::Cursor(select) => {
            let shards = select.shards(params, count);
            if matches!(shards, Shards::One(_) | Shards::Any) {
                select.route(params, count)?;
                return Ok(Route::to(shards, read));
            }
            let concatenates = matches!(plan, Plan::CopyOut(_))
                && select
                    .route(params, count)
                    .is_ok_and(|routed| routed.merge.is_concat() && routed.rewrite.is_none());
            if !concatenates {
                let what = if matches!(plan, Plan::Cursor(_)) {
                    "a cursor over several shards is not supported"
                } else {
                    "COPY (query) TO STDOUT whose rows must be sorted, limited or aggregated \
                     across shards is not supported"
                };
                return Err(ErrorResponse::error(sqlstate::FEATURE_NOT_SUPPORTED, what)
                    .hint("route the statement to one shard with a /* pgdog_shard: N */ comment"));
            }
            Ok(Route::to(shards, read))
        }
        Plan::Insert(insert) => {
            let routed = insert.route(params, columns)?;
            Ok(Route {
                omnisharded: routed.omnisharded,
                split: routed.split,
                ..Route::to(routed.shards, read)
            })
        }
        Plan::Write(write) => {
            let routed = write.route(params, count)?;
            Ok(Route {
                omnisharded: routed.omnisharded,
                key_update: routed.key_update,
                ..Route::to(routed.shards, read)
            })
        }
        Plan::Explain(inner) => {
            let routed = match (
                route_plan(inner, params, columns, count, read),
                inner.as_ref(),
            ) {
                (Ok(routed), _) => routed,
                // The plan of a query that cannot be merged can still be shown.
                (Err(_), Plan::Select(select)) => Route::to(select.shards(params, count), read),
                (Err(error), _) => return Err(error),
            };
            if !routed.split.is_empty() || routed.key_update.is_some() {
                return Err(ErrorResponse::error(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "EXPLAIN of a statement pgdog splits or rewrites across shards is not \
                     supported",
                ));
            }
            Ok(Route {
                omnisharded: routed.omnisharded,
                ..Route::to(routed.shards, read)
            })
        }
    }
}

/// Parses `sql` into analyzed statements.
fn statements(sql: &str, schema: &ShardingSchema) -> Vec<Statement> {
    let parsed = match pg_query::parse(sql, ParserOptions::DEFAULT) {
        Ok(parsed) => parsed,
        Err(_) if sql.trim().is_empty() => return Vec::new(),
        Err(_) => return vec![Statement::unparsed(sql)],
    };
    let version = parsed.protobuf.version;
    let raws = parsed.protobuf.stmts;
    let comments = comment::routing_comments(sql);
    let ranges: Vec<(usize, usize)> = raws
        .iter()
        .map(|raw| {
            let start = usize::try_from(raw.stmt_location)
                .unwrap_or(0)
                .min(sql.len());
            let end = match usize::try_from(raw.stmt_len) {
                Ok(0) | Err(_) => sql.len(),
                Ok(len) => start.saturating_add(len).min(sql.len()),
            };
            (start, end)
        })
        .collect();
    let mut out = Vec::with_capacity(raws.len());
    for (i, raw) in raws.into_iter().enumerate() {
        let (start, end) = ranges[i];
        let text = sql.get(start..end).unwrap_or(sql).trim();
        let text = text.strip_suffix(';').unwrap_or(text).trim_end();
        // A statement's comments: from the end of the previous statement to its own end (the
        // last statement also takes the comments after it).
        let lower = if i == 0 { 0 } else { ranges[i - 1].1 };
        let upper = if i + 1 == ranges.len() {
            usize::MAX
        } else {
            end
        };
        let manual = comments
            .iter()
            .find(|(at, _)| *at >= lower && *at < upper)
            .map(|(_, manual)| manual.clone());
        let (command, plan) = match raw.stmt.and_then(|stmt| stmt.node) {
            Some(node) => command::classify(&node, version, schema),
            None => (Command::Query, Plan::fixed(Shards::Any)),
        };
        let (command, plan) = if schema.shards() <= 1 {
            single_shard(command, plan)
        } else {
            (command, plan)
        };
        out.push(Statement {
            sql: text.to_string(),
            read: access(text) == Access::Read,
            command,
            manual,
            plan,
        });
    }
    out
}

/// With one shard nothing needs routing: every query goes to shard 0, COPY rows too.
fn single_shard(command: Command, plan: Plan) -> (Command, Plan) {
    let command = match command {
        Command::Copy(mut copy) => {
            copy.placement = CopyPlacement::Unsharded;
            copy.candidates.clear();
            Command::Copy(copy)
        }
        Command::Query => Command::Query,
        other => return (other, plan),
    };
    (command, Plan::fixed(Shards::One(0)))
}
