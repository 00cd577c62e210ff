//! An UPDATE that changes a row's sharding key moves the row: inside one transaction the
//! UPDATE runs on the row's current shard and returns the new rows (`RETURNING ctid, *`);
//! each row whose new key belongs to another shard is deleted there and inserted on its new
//! shard. The client sees one `UPDATE n`.

use bytes::BytesMut;

use super::execute::{quote_ident, quote_literal};
use super::unnamed::UnnamedRun;
use super::{Client, Wire};
use crate::backend::exchange::{column_names, columns, read_replies, Answer};
use crate::backend::expect::Expect;
use crate::net::{messages, sqlstate, Error, ErrorResponse};
use crate::router::plan::{Route, Statement as Planned};
use crate::router::route::{Params, Shards};

impl Client {
    /// Runs an UPDATE that assigns the sharding key, moving rows between shards as needed.
    pub(super) async fn update_sharding_key(
        &mut self,
        statement: &Planned,
        route: &Route,
        _params: &Params<'_>,
        wire: &Wire<'_>,
    ) -> Result<(), Error> {
        let Some(update) = &route.key_update else {
            return Ok(());
        };
        let returning = match returning_ctid(statement.sql()) {
            Ok(sql) => sql,
            Err(error) => {
                self.fail(wire, error);
                return Ok(());
            }
        };
        if self.sharded.transaction.is_none() {
            self.begin_implicit().await;
        }
        let sources = self
            .effective_shards(route.shards.clone())
            .list(self.cluster.shards.len());
        let mut updated = 0u64;
        for shard in sources {
            if let Err(error) = self.hold(shard, false).await {
                self.fail(wire, error);
                return Ok(());
            }
            let answer = match self.run_on(shard, &returning, wire).await {
                Ok(answer) => answer,
                Err(error) => {
                    self.fail(wire, error);
                    return Ok(());
                }
            };
            let Some(description) = &answer.description else {
                continue;
            };
            let names = match column_names(description) {
                Ok(names) => names,
                Err(e) => {
                    self.fail(wire, e.to_response());
                    return Ok(());
                }
            };
            let Some(key_at) = names
                .iter()
                .skip(1)
                .position(|n| *n == update.column)
                .map(|i| i + 1)
            else {
                self.fail(
                    wire,
                    ErrorResponse::error(
                        sqlstate::INTERNAL_ERROR,
                        format!(
                            "sharding key column \"{}\" missing from the updated row",
                            update.column
                        ),
                    ),
                );
                return Ok(());
            };
            // Generated columns are computed again on the new shard; identity columns keep
            // their values (OVERRIDING SYSTEM VALUE).
            let mut generated: Option<Vec<String>> = None;
            for row in &answer.rows {
                updated += 1;
                let values = match columns(row) {
                    Ok(values) => values,
                    Err(e) => {
                        self.fail(wire, e.to_response());
                        return Ok(());
                    }
                };
                let key = values
                    .get(key_at)
                    .copied()
                    .flatten()
                    .map(|v| String::from_utf8_lossy(v).into_owned());
                let target = match update.shards_of_text(key.as_deref(), &self.cluster.sharding) {
                    Ok(target) => target,
                    Err(error) => {
                        self.fail(wire, error);
                        return Ok(());
                    }
                };
                let target = match target {
                    Shards::One(target) => target,
                    _ => {
                        self.fail(
                            wire,
                            ErrorResponse::error(
                                sqlstate::FEATURE_NOT_SUPPORTED,
                                "the new sharding key does not belong to exactly one shard",
                            ),
                        );
                        return Ok(());
                    }
                };
                if target == shard {
                    continue;
                }
                let ctid = values
                    .first()
                    .copied()
                    .flatten()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                let delete = format!(
                    "DELETE FROM {} WHERE ctid = {}",
                    update.table,
                    quote_literal(&ctid)
                );
                if generated.is_none() {
                    let sql = format!(
                        "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = {}::regclass \
                         AND attnum > 0 AND attgenerated <> ''",
                        quote_literal(&update.table)
                    );
                    match self.run_on(shard, &sql, &Wire::Simple).await {
                        Ok(answer) => {
                            let mut list = Vec::new();
                            for row in &answer.rows {
                                if let Ok(values) = columns(row) {
                                    if let Some(Some(name)) = values.first() {
                                        list.push(String::from_utf8_lossy(name).into_owned());
                                    }
                                }
                            }
                            generated = Some(list);
                        }
                        Err(error) => {
                            self.fail(wire, error);
                            return Ok(());
                        }
                    }
                }
                let skip = generated.as_deref().unwrap_or_default();
                let (kept_names, kept_values): (Vec<String>, Vec<String>) = names
                    .iter()
                    .zip(values.iter())
                    .skip(1)
                    .filter(|(n, _)| !skip.contains(n))
                    .map(|(n, v)| {
                        let value = match v {
                            Some(v) => quote_literal(&String::from_utf8_lossy(v)),
                            None => "NULL".to_string(),
                        };
                        (quote_ident(n), value)
                    })
                    .unzip();
                let insert = format!(
                    "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES ({})",
                    update.table,
                    kept_names.join(", "),
                    kept_values.join(", ")
                );
                if let Err(error) = self.run_internal_on(shard, &delete).await {
                    self.fail(wire, error);
                    return Ok(());
                }
                if let Err(error) = self.hold(target, false).await {
                    self.fail(wire, error);
                    return Ok(());
                }
                if let Err(error) = self.run_internal_on(target, &insert).await {
                    self.fail(wire, error);
                    return Ok(());
                }
            }
        }
        self.answer_unit_locally(wire, &format!("UPDATE {updated}"));
        Ok(())
    }

    /// Runs the (rewritten) client statement on `shard` with the client's parameters, rows
    /// returned in text, and collects the answer.
    async fn run_on(
        &mut self,
        shard: usize,
        sql: &str,
        wire: &Wire<'_>,
    ) -> Result<Answer, ErrorResponse> {
        self.sync_for_simple(shard).await;
        let Some(server) = self.sharded.servers.get_mut(shard).and_then(Option::as_mut) else {
            return Err(ErrorResponse::error(
                sqlstate::CONNECTION_FAILURE,
                "lost connection to a shard",
            ));
        };
        let mut to_server = BytesMut::new();
        match wire {
            Wire::Simple => {
                server.pending.push(Expect::Query);
                to_server.extend_from_slice(&messages::query(sql));
            }
            Wire::Extended {
                bind, param_types, ..
            } => {
                UnnamedRun {
                    sql,
                    param_types,
                    bind,
                    params: None,
                    text_results: true,
                    describe: true,
                    sync: true,
                }
                .encode(server, &mut to_server);
            }
        }
        if server.send(&to_server).await.is_err() {
            server.broken = true;
            return Err(ErrorResponse::error(
                sqlstate::CONNECTION_FAILURE,
                "lost connection to a shard",
            ));
        }
        let mut frames = Vec::new();
        read_replies(server, |f| frames.push(f))
            .await
            .map_err(|l| l.0)?;
        Answer::collect(frames).ok()
    }

    /// Runs one of pgdog's statements on `shard`; its error is the result.
    async fn run_internal_on(&mut self, shard: usize, sql: &str) -> Result<(), ErrorResponse> {
        self.sync_for_simple(shard).await;
        let Some(server) = self.sharded.servers.get_mut(shard).and_then(Option::as_mut) else {
            return Err(ErrorResponse::error(
                sqlstate::CONNECTION_FAILURE,
                "lost connection to a shard",
            ));
        };
        crate::backend::exchange::simple_query(server, sql)
            .await
            .map_err(|l| l.0)?
            .ok()
            .map(|_| ())
    }

    /// A server with extended messages since its last Sync is synced before a simple query
    /// (inside the transaction this only ends the protocol batch).
    async fn sync_for_simple(&mut self, shard: usize) {
        if !self.sharded.unsynced.contains(&shard) {
            return;
        }
        self.sharded.unsynced.retain(|&s| s != shard);
        let Some(server) = self.sharded.servers.get_mut(shard).and_then(Option::as_mut) else {
            return;
        };
        server.unsynced = false;
        server.pending.push(Expect::Internal);
        if server.send(&messages::sync()).await.is_err()
            || read_replies(server, |_| {}).await.is_err()
        {
            server.broken = true;
        }
    }
}

/// The UPDATE with `RETURNING ctid, *` (it must not have its own RETURNING).
fn returning_ctid(sql: &str) -> Result<String, ErrorResponse> {
    let unsupported = |why: &str| {
        ErrorResponse::error(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!("an UPDATE that moves rows to another shard {why}"),
        )
    };
    let mut parsed = pg_query::parse(sql, pg_query::ParserOptions::DEFAULT)
        .map_err(|e| ErrorResponse::error(sqlstate::SYNTAX_ERROR, e.to_string()))?;
    let Some(raw) = parsed.protobuf.stmts.first_mut() else {
        return Err(unsupported("must be one statement"));
    };
    let Some(pg_query::NodeEnum::UpdateStmt(update)) =
        raw.stmt.as_mut().and_then(|s| s.node.as_mut())
    else {
        return Err(unsupported("must be an UPDATE"));
    };
    if update
        .returning_clause
        .as_ref()
        .is_some_and(|r| !r.exprs.is_empty())
    {
        return Err(unsupported("cannot have a RETURNING clause"));
    }
    let column = |name: Option<&str>| {
        let fields = match name {
            Some(name) => vec![pg_query::Node {
                node: Some(pg_query::NodeEnum::String(pg_query::protobuf::String {
                    sval: name.to_string(),
                })),
            }],
            None => vec![pg_query::Node {
                node: Some(pg_query::NodeEnum::AStar(pg_query::protobuf::AStar {})),
            }],
        };
        pg_query::Node {
            node: Some(pg_query::NodeEnum::ResTarget(Box::new(
                pg_query::protobuf::ResTarget {
                    name: String::new(),
                    indirection: Vec::new(),
                    val: Some(Box::new(pg_query::Node {
                        node: Some(pg_query::NodeEnum::ColumnRef(
                            pg_query::protobuf::ColumnRef {
                                fields,
                                location: -1,
                            },
                        )),
                    })),
                    location: -1,
                },
            ))),
        }
    };
    update.returning_clause = Some(pg_query::protobuf::ReturningClause {
        options: Vec::new(),
        exprs: vec![column(Some("ctid")), column(None)],
    });
    parsed
        .protobuf
        .deparse(Default::default())
        .map_err(|e| unsupported(&format!("could not be rewritten: {e}")))
}
