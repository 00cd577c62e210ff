//! What kind of statement each parsed statement is for the executor ([`Command`]):
//! transaction control, `SET`/`RESET` of `pgdog.shard` and `pgdog.sharding_key`, other session
//! statements, `COPY`; and, for the rest, which analysis routes it ([`Plan`]).
//!
//! Fixed routes: DDL, `VACUUM`, `ANALYZE`, `CALL`, `DO` and other utility statements go to
//! every shard; `SHOW` to any one; `LISTEN`/`NOTIFY`/`UNLISTEN` to shard 0 (so listeners and
//! notifiers meet). Refused (0A000): `PREPARE`/`EXECUTE` (use the extended protocol),
//! `FETCH`/`MOVE`/`CLOSE` (cursors need a manual shard), `MERGE` into a sharded table,
//! `COPY` to or from a server file or program.

use pg_query::protobuf::{
    self, CopyStmt, Node, TransactionStmtKind, VariableSetKind, VariableSetStmt,
};
use pg_query::NodeEnum;

use super::insert::InsertPlan;
use super::schema::{ShardingSchema, TableClass};
use super::select::SelectPlan;
use super::survey::{Ctes, Survey};
use super::tree::{const_text, names};
use super::update::WritePlan;
use super::{Command, CopyPlacement, CopyStatement, Plan};
use crate::net::{sqlstate, ErrorResponse};
use crate::router::route::{CopyFormat, CopyOptions, Shards};

/// The command and plan of one statement.
pub(super) fn classify(node: &NodeEnum, version: i32, schema: &ShardingSchema) -> (Command, Plan) {
    let query = |plan: Plan| (Command::Query, plan);
    match node {
        NodeEnum::SelectStmt(select) if select.into_clause.is_some() => query(Plan::all()),
        NodeEnum::SelectStmt(select) => {
            query(Plan::Select(SelectPlan::new(select, version, schema)))
        }
        NodeEnum::InsertStmt(insert) => {
            query(Plan::Insert(InsertPlan::new(insert, version, schema)))
        }
        NodeEnum::UpdateStmt(update) => query(Plan::Write(WritePlan::update(update, schema))),
        NodeEnum::DeleteStmt(delete) => query(Plan::Write(WritePlan::delete(delete, schema))),
        NodeEnum::ExplainStmt(explain) => {
            let inner = explain
                .query
                .as_deref()
                .and_then(|q| q.node.as_ref())
                .map(|inner| classify(inner, version, schema).1)
                .unwrap_or_else(Plan::all);
            query(Plan::Explain(Box::new(inner)))
        }
        NodeEnum::TransactionStmt(stmt) => (transaction(stmt.kind), Plan::all()),
        NodeEnum::VariableSetStmt(stmt) => variable_set(stmt, schema),
        NodeEnum::DiscardStmt(_) | NodeEnum::DeallocateStmt(_) => (Command::Session, Plan::all()),
        NodeEnum::VariableShowStmt(_) => query(Plan::fixed(Shards::Any)),
        NodeEnum::ListenStmt(_) | NodeEnum::NotifyStmt(_) | NodeEnum::UnlistenStmt(_) => {
            query(Plan::fixed(Shards::One(0)))
        }
        NodeEnum::CopyStmt(copy) => copy_command(copy, version, schema),
        NodeEnum::PrepareStmt(_) | NodeEnum::ExecuteStmt(_) => query(Plan::Error(
            ErrorResponse::error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "PREPARE and EXECUTE statements are not supported on a sharded database",
            )
            .hint("use the extended query protocol (your driver's prepared statements)"),
        )),
        NodeEnum::DeclareCursorStmt(declare) => {
            let plan = match declare.query.as_deref().and_then(|q| q.node.as_ref()) {
                Some(NodeEnum::SelectStmt(select)) => {
                    Plan::Cursor(SelectPlan::new(select, version, schema))
                }
                _ => Plan::all(),
            };
            query(plan)
        }
        NodeEnum::FetchStmt(_) | NodeEnum::ClosePortalStmt(_) => query(Plan::Error(
            ErrorResponse::error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "cursors are not supported across shards",
            )
            .hint("route the cursor's statements with a /* pgdog_shard: N */ comment"),
        )),
        NodeEnum::MergeStmt(merge) => query(merge_plan(merge, schema)),
        _ => query(Plan::all()),
    }
}

fn transaction(kind: i32) -> Command {
    match TransactionStmtKind::try_from(kind) {
        Ok(TransactionStmtKind::TransStmtBegin | TransactionStmtKind::TransStmtStart) => {
            Command::Begin
        }
        Ok(TransactionStmtKind::TransStmtCommit) => Command::Commit,
        Ok(TransactionStmtKind::TransStmtRollback) => Command::Rollback,
        Ok(
            TransactionStmtKind::TransStmtSavepoint
            | TransactionStmtKind::TransStmtRelease
            | TransactionStmtKind::TransStmtRollbackTo,
        ) => Command::Savepoint,
        Ok(
            TransactionStmtKind::TransStmtPrepare
            | TransactionStmtKind::TransStmtCommitPrepared
            | TransactionStmtKind::TransStmtRollbackPrepared,
        ) => Command::TwoPhase,
        _ => Command::Session,
    }
}

/// `SET`/`RESET` of `pgdog.shard`, `pgdog.sharding_key` or anything else.
fn variable_set(stmt: &VariableSetStmt, schema: &ShardingSchema) -> (Command, Plan) {
    let name = stmt.name.to_ascii_lowercase();
    let kind = VariableSetKind::try_from(stmt.kind).unwrap_or(VariableSetKind::Undefined);
    let local = stmt.is_local;
    let reset = matches!(
        kind,
        VariableSetKind::VarReset | VariableSetKind::VarSetDefault
    );
    let value = || -> Option<String> {
        match stmt.args.as_slice() {
            [arg] => match super::tree::strip_casts(arg).node.as_ref() {
                Some(NodeEnum::AConst(value)) => const_text(value),
                _ => None,
            },
            _ => None,
        }
    };
    let bad = |message: String| {
        (
            Command::Query,
            Plan::Error(ErrorResponse::error(
                sqlstate::INVALID_PARAMETER_VALUE,
                message,
            )),
        )
    };
    match name.as_str() {
        "pgdog.shard" if reset => (Command::SetShard { shard: None, local }, Plan::all()),
        "pgdog.shard" if kind == VariableSetKind::VarSetValue => {
            let Some(text) = value() else {
                return bad("pgdog.shard must be set to a shard number".to_string());
            };
            match text.trim().parse::<usize>() {
                Ok(shard) if shard < schema.shards() => (
                    Command::SetShard {
                        shard: Some(shard),
                        local,
                    },
                    Plan::all(),
                ),
                Ok(shard) => bad(format!(
                    "shard {shard} does not exist: the database has {} shard(s), numbered from 0",
                    schema.shards()
                )),
                Err(_) => bad(format!("invalid value for pgdog.shard: \"{text}\"")),
            }
        }
        "pgdog.sharding_key" if reset => {
            (Command::SetShardingKey { value: None, local }, Plan::all())
        }
        "pgdog.sharding_key" if kind == VariableSetKind::VarSetValue => match value() {
            Some(value) => (
                Command::SetShardingKey {
                    value: Some(value),
                    local,
                },
                Plan::all(),
            ),
            None => bad("pgdog.sharding_key must be set to a single value".to_string()),
        },
        "pgdog.shard" | "pgdog.sharding_key" => {
            bad(format!("{} must be set to a single value", stmt.name))
        }
        _ => (Command::Session, Plan::all()),
    }
}

/// `COPY`.
fn copy_command(copy: &CopyStmt, version: i32, schema: &ShardingSchema) -> (Command, Plan) {
    let refuse = |message: &str| {
        (
            Command::Query,
            Plan::Error(ErrorResponse::error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                message.to_string(),
            )),
        )
    };
    if !copy.filename.is_empty() || copy.is_program {
        return refuse(
            "COPY to or from a file or program on the server is not supported on a sharded \
             database: use COPY ... FROM STDIN / TO STDOUT",
        );
    }
    if let Some(query) = copy.query.as_deref().and_then(|q| q.node.as_ref()) {
        return match query {
            NodeEnum::SelectStmt(select) => (
                Command::Query,
                Plan::CopyOut(SelectPlan::new(select, version, schema)),
            ),
            _ => {
                refuse("COPY of a data-modifying statement is not supported on a sharded database")
            }
        };
    }
    let Some(relation) = &copy.relation else {
        return refuse("COPY without a table");
    };
    let table_schema = (!relation.schemaname.is_empty()).then(|| relation.schemaname.clone());
    let columns: Vec<String> = names(&copy.attlist).iter().map(|s| s.to_string()).collect();
    let class = schema.classify(table_schema.as_deref(), &relation.relname);
    let (placement, candidates, named) = match class {
        TableClass::Sharded(rule) => (CopyPlacement::sharded(rule), Vec::new(), true),
        TableClass::Omnisharded => (CopyPlacement::Omnisharded, Vec::new(), false),
        TableClass::Catalog => (CopyPlacement::Unsharded, Vec::new(), false),
        TableClass::Other(rules) => {
            let listed = rules
                .iter()
                .find(|rule| columns.iter().any(|c| c == rule.column()))
                .cloned();
            match (listed, columns.is_empty(), rules.first()) {
                (Some(rule), _, _) => (CopyPlacement::sharded(rule), Vec::new(), false),
                (None, true, Some(first)) => {
                    (CopyPlacement::sharded(first.clone()), rules.clone(), false)
                }
                _ => (CopyPlacement::Unsharded, Vec::new(), false),
            }
        }
    };
    let survey_problem = copy.where_clause.as_deref().and_then(|clause| {
        let mut survey = Survey::new(schema);
        survey.expr(clause, &Ctes::new());
        survey.cross_problem.or(survey.problem)
    });
    if let Some(problem) = survey_problem {
        return (Command::Query, Plan::Error(problem));
    }
    let shards = match (&placement, copy.is_from) {
        (CopyPlacement::Omnisharded, false) => Shards::Any,
        _ if schema.shards() <= 1 => Shards::One(0),
        _ => Shards::All,
    };
    let statement = CopyStatement {
        schema: table_schema,
        table: relation.relname.clone(),
        columns,
        from_stdin: copy.is_from,
        options: copy_options(&copy.options),
        placement,
        candidates,
        named,
    };
    (Command::Copy(statement), Plan::fixed(shards))
}

/// The data options of a `COPY` statement's text; `None` when it is not a COPY (or does not
/// parse).
pub fn copy_options_of(sql: &str) -> Option<CopyOptions> {
    let parsed =
        std::panic::catch_unwind(|| pg_query::parse(sql, pg_query::ParserOptions::DEFAULT).ok())
            .ok()??;
    match parsed
        .protobuf
        .stmts
        .first()?
        .stmt
        .as_ref()?
        .node
        .as_ref()?
    {
        NodeEnum::CopyStmt(copy) => Some(copy_options(&copy.options)),
        _ => None,
    }
}

/// The options of a COPY, PostgreSQL's defaults for the rest. Values PostgreSQL rejects are
/// left at their defaults (the server reports the error).
fn copy_options(options: &[Node]) -> CopyOptions {
    let elements: Vec<&protobuf::DefElem> = options
        .iter()
        .filter_map(|node| match node.node.as_ref() {
            Some(NodeEnum::DefElem(element)) => Some(element.as_ref()),
            _ => None,
        })
        .collect();
    let text = |element: &protobuf::DefElem| -> Option<String> {
        match element.arg.as_deref().and_then(|arg| arg.node.as_ref()) {
            Some(NodeEnum::String(value)) => Some(value.sval.clone()),
            Some(NodeEnum::Integer(value)) => Some(value.ival.to_string()),
            Some(NodeEnum::Boolean(value)) => Some(value.boolval.to_string()),
            _ => None,
        }
    };
    let format = elements
        .iter()
        .find(|e| e.defname == "format")
        .and_then(|e| text(e))
        .map(|name| match name.to_ascii_lowercase().as_str() {
            "csv" => CopyFormat::Csv,
            "binary" => CopyFormat::Binary,
            _ => CopyFormat::Text,
        })
        .unwrap_or_default();
    let mut out = CopyOptions::defaults(format);
    let mut escape = None;
    let byte = |value: Option<String>| -> Option<u8> {
        let value = value?;
        match value.as_bytes() {
            [byte] => Some(*byte),
            _ => None,
        }
    };
    for element in elements {
        match element.defname.as_str() {
            "delimiter" => {
                if let Some(delimiter) = byte(text(element)) {
                    out.delimiter = delimiter;
                }
            }
            "null" => {
                if let Some(null) = text(element) {
                    out.null = null;
                }
            }
            "header" => {
                out.header = match text(element) {
                    None => true,
                    Some(value) => !matches!(
                        value.to_ascii_lowercase().as_str(),
                        "false" | "off" | "0" | "no"
                    ),
                }
            }
            "quote" => {
                if let Some(quote) = byte(text(element)) {
                    out.quote = quote;
                }
            }
            "escape" => escape = byte(text(element)),
            _ => {}
        }
    }
    out.escape = escape.unwrap_or(out.quote);
    out
}

/// `MERGE`: only into tables without a sharding key or omnisharded ones.
fn merge_plan(merge: &protobuf::MergeStmt, schema: &ShardingSchema) -> Plan {
    let Some(relation) = &merge.relation else {
        return Plan::all();
    };
    let table_schema = (!relation.schemaname.is_empty()).then_some(relation.schemaname.as_str());
    let class = schema.classify(table_schema, &relation.relname);
    let mut survey = Survey::new(schema);
    if let Some(source) = merge.source_relation.as_deref() {
        survey.expr(source, &Ctes::new());
    }
    match class {
        TableClass::Omnisharded if !survey.touches => Plan::Fixed {
            shards: Shards::All,
            omnisharded: true,
        },
        TableClass::Catalog => Plan::all(),
        TableClass::Other(rules) if rules.is_empty() => Plan::all(),
        _ => Plan::Error(
            ErrorResponse::error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "MERGE into \"{}\" is not supported on a sharded database",
                    relation.relname
                ),
            )
            .hint(
                "use INSERT ... ON CONFLICT, UPDATE and DELETE, or a /* pgdog_shard: N */ comment",
            ),
        ),
    }
}
