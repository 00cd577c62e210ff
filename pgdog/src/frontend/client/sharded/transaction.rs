//! Transactions across shards: BEGIN replayed lazily on each shard a transaction uses,
//! SAVEPOINTs and SETs kept in step on all of them, and COMMIT on every shard together, with
//! two-phase commit (`two_phase_commit = true`) so a crash never leaves one shard committed
//! and another not.

use super::{Client, Wire};
use crate::backend::exchange::{simple_query, Answer};
use crate::backend::two_phase::{TransactionId, DECISION_TABLE};
use crate::net::{messages, sqlstate, Error, ErrorResponse};
use crate::router::route::Shards;
use tracing::{error, warn};

/// An open transaction of the sharded executor.
#[derive(Debug, Default)]
pub(in crate::frontend::client) struct Transaction {
    /// Statements a server joining the transaction runs first: BEGIN, SAVEPOINTs, SETs.
    pub replay: Vec<String>,
    /// A statement failed: only ROLLBACK is accepted now.
    pub failed: bool,
    /// `SET pgdog.shard` / `pgdog.sharding_key` inside the transaction.
    pub override_shards: Option<Shards>,
    /// pgdog opened it around one request (a write to several shards outside a transaction);
    /// it ends with that request.
    pub implicit: bool,
}

impl Client {
    /// BEGIN: answered by pgdog; each shard's server gets it when the transaction first uses it.
    pub(super) async fn begin(&mut self, sql: &str, wire: &Wire<'_>) -> Result<(), Error> {
        match self.sharded.transaction.as_mut() {
            Some(tx) if !tx.implicit => {
                let warning = ErrorResponse::with_severity(
                    "WARNING",
                    sqlstate::ACTIVE_SQL_TRANSACTION,
                    "there is already a transaction in progress",
                );
                self.out.extend_from_slice(&warning.to_notice());
            }
            Some(tx) => {
                tx.implicit = false;
            }
            None => {
                self.sharded.transaction = Some(Transaction {
                    replay: vec![sql.to_string()],
                    ..Default::default()
                });
                // Servers already held (session mode) begin now; the others when they join.
                self.begin_on_held(sql).await;
            }
        }
        self.answer_unit_locally(wire, "BEGIN");
        Ok(())
    }

    /// Opens pgdog's own transaction around a request that writes to several shards: servers
    /// it already holds begin now, the others when they join.
    pub(super) async fn begin_implicit(&mut self) {
        if self.sharded.transaction.is_some() {
            return;
        }
        self.sharded.transaction = Some(Transaction {
            replay: vec!["BEGIN".to_string()],
            implicit: true,
            ..Default::default()
        });
        self.begin_on_held("BEGIN").await;
    }

    /// Runs `begin` on the servers already held that are outside a transaction.
    async fn begin_on_held(&mut self, begin: &str) {
        for shard in self.sharded.held() {
            if self.sharded.unsynced.contains(&shard) {
                continue;
            }
            let Some(server) = self.sharded.servers.get_mut(shard).and_then(Option::as_mut) else {
                continue;
            };
            if server.status != b'I' {
                continue;
            }
            if simple_query(server, begin).await.is_err() {
                server.broken = true;
            }
        }
    }

    /// Ends pgdog's implicit transaction at the end of a request: commit everywhere, or roll
    /// back everywhere if anything failed.
    pub(super) async fn end_implicit(&mut self) -> Result<(), Error> {
        if !self
            .sharded
            .transaction
            .as_ref()
            .is_some_and(|t| t.implicit)
        {
            return Ok(());
        }
        let failed = self.sharded.transaction.as_ref().is_some_and(|t| t.failed) || self.failed;
        if let Err(error) = self.end_on_shards(!failed).await {
            self.out.extend_from_slice(&error.to_bytes());
        }
        Ok(())
    }

    /// COMMIT or ROLLBACK from the client.
    pub(super) async fn finish_transaction(
        &mut self,
        commit: bool,
        wire: &Wire<'_>,
    ) -> Result<(), Error> {
        let Some(tx) = self.sharded.transaction.as_ref() else {
            let warning = ErrorResponse::with_severity(
                "WARNING",
                sqlstate::NO_ACTIVE_SQL_TRANSACTION,
                "there is no transaction in progress",
            );
            self.out.extend_from_slice(&warning.to_notice());
            self.answer_unit_locally(wire, if commit { "COMMIT" } else { "ROLLBACK" });
            return Ok(());
        };
        let commit = commit && !tx.failed;
        let tag = if commit { "COMMIT" } else { "ROLLBACK" };
        if !commit {
            // Settings changed in the transaction die with it.
            self.pending_changes.clear();
        }
        match self.end_on_shards(commit).await {
            Ok(()) => self.answer_unit_locally(wire, tag),
            Err(error) => {
                self.out.extend_from_slice(&error.to_bytes());
                if matches!(wire, Wire::Extended { .. }) {
                    self.sharded.skipping = true;
                }
            }
        }
        Ok(())
    }

    /// Ends the transaction on every shard it used and closes it. Committing several shards
    /// uses two-phase commit when configured.
    async fn end_on_shards(&mut self, commit: bool) -> Result<(), ErrorResponse> {
        self.sync_unsynced().await;
        let held = self.sharded.held();
        let two_phase = commit
            && held.len() > 1
            && self
                .state
                .databases()
                .config()
                .config
                .general
                .two_phase_commit;
        let result = if !commit {
            self.on_each(&held, |_| "ROLLBACK".to_string())
                .await
                .map(|_| ())
        } else if two_phase {
            self.two_phase_commit(&held).await
        } else {
            self.commit_each(&held).await
        };
        self.sharded.transaction = None;
        if result.is_err() {
            // Whatever state the servers are in, they are not reused.
            for server in self.sharded.servers.iter_mut().flatten() {
                if server.status != b'I' {
                    server.broken = true;
                }
            }
            self.failed = true;
        }
        result
    }

    /// Syncs servers left mid-batch (an extended batch whose Sync has not come yet) so that
    /// simple queries can run on them.
    async fn sync_unsynced(&mut self) {
        for shard in std::mem::take(&mut self.sharded.unsynced) {
            let Some(server) = self.sharded.servers.get_mut(shard).and_then(Option::as_mut) else {
                continue;
            };
            server.unsynced = false;
            server
                .pending
                .push(crate::backend::expect::Expect::Internal);
            if server.send(&messages::sync()).await.is_err() {
                server.broken = true;
                continue;
            }
            if crate::backend::exchange::read_replies(server, |_| {})
                .await
                .is_err()
            {
                server.broken = true;
            }
        }
    }

    /// Runs a statement on each of `shards` (one after the other); the first error wins.
    async fn on_each(
        &mut self,
        shards: &[usize],
        sql: impl Fn(usize) -> String,
    ) -> Result<Vec<Answer>, ErrorResponse> {
        let mut answers = Vec::with_capacity(shards.len());
        let mut first_error = None;
        for &shard in shards {
            let Some(server) = self.sharded.servers.get_mut(shard).and_then(Option::as_mut) else {
                continue;
            };
            match simple_query(server, &sql(shard)).await {
                Ok(answer) => {
                    if let Some(error) = &answer.error {
                        first_error.get_or_insert(error.clone());
                    }
                    answers.push(answer);
                }
                Err(lost) => {
                    first_error.get_or_insert(lost.0);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(answers),
        }
    }

    /// COMMIT on every shard without two-phase commit: a failure after some shards committed
    /// is reported with the shards that did.
    async fn commit_each(&mut self, shards: &[usize]) -> Result<(), ErrorResponse> {
        let mut committed = Vec::new();
        for &shard in shards {
            let Some(server) = self.sharded.servers.get_mut(shard).and_then(Option::as_mut) else {
                continue;
            };
            let answer = simple_query(server, "COMMIT").await.map_err(|l| l.0)?;
            if let Some(error) = answer.error {
                let rest: Vec<usize> = shards
                    .iter()
                    .copied()
                    .filter(|s| !committed.contains(s) && *s != shard)
                    .collect();
                let _ = self.on_each(&rest, |_| "ROLLBACK".to_string()).await;
                return Err(if committed.is_empty() {
                    error
                } else {
                    ErrorResponse::error(&error.code, error.message).detail(format!(
                        "shards {committed:?} committed, shard {shard} did not and the others rolled back; set two_phase_commit = true to make commits across shards atomic"
                    ))
                });
            }
            if answer.tag.as_deref() == Some("ROLLBACK") {
                let rest: Vec<usize> = shards
                    .iter()
                    .copied()
                    .filter(|s| !committed.contains(s) && *s != shard)
                    .collect();
                let _ = self.on_each(&rest, |_| "ROLLBACK".to_string()).await;
                return Err(ErrorResponse::error(
                    sqlstate::TRANSACTION_ROLLBACK,
                    format!("the transaction was rolled back on shard {shard}"),
                ));
            }
            committed.push(shard);
        }
        Ok(())
    }

    /// Two-phase commit (see `backend::two_phase`): the decision record on the first shard,
    /// PREPARE TRANSACTION everywhere, COMMIT PREPARED on the first shard (the decision), then
    /// on the others. If any shard cannot prepare, everything is rolled back.
    async fn two_phase_commit(&mut self, shards: &[usize]) -> Result<(), ErrorResponse> {
        self.sharded.two_phase_counter += 1;
        let first = shards[0];
        let id = TransactionId::new(self.login.key.pid, self.sharded.two_phase_counter, first);
        let mut prepared = Vec::new();
        let mut failure = None;
        let record = id.record_sql();
        match self.on_each(&[first], move |_| record.clone()).await {
            Ok(_) => {}
            Err(error) => {
                failure = Some(
                    ErrorResponse::error(&error.code, error.message).detail(format!(
                        "two-phase commit could not write its decision record into {DECISION_TABLE} on shard {first}; pgdog creates that table on every shard at startup"
                    )),
                )
            }
        }
        for &shard in shards {
            if failure.is_some() {
                break;
            }
            let Some(server) = self.sharded.servers.get_mut(shard).and_then(Option::as_mut) else {
                continue;
            };
            let sql = format!("PREPARE TRANSACTION '{}'", id.on_shard(shard));
            match simple_query(server, &sql).await {
                Ok(answer)
                    if answer.error.is_none()
                        && answer.tag.as_deref() == Some("PREPARE TRANSACTION") =>
                {
                    prepared.push(shard)
                }
                Ok(answer) => {
                    failure = Some(answer.error.unwrap_or_else(|| {
                        ErrorResponse::error(
                            sqlstate::TRANSACTION_ROLLBACK,
                            format!("the transaction was rolled back on shard {shard}"),
                        )
                    }));
                }
                Err(lost) => failure = Some(lost.0),
            }
        }
        if let Some(error) = failure {
            let rest: Vec<usize> = shards
                .iter()
                .copied()
                .filter(|s| !prepared.contains(s))
                .collect();
            let _ = self.on_each(&rest, |_| "ROLLBACK".to_string()).await;
            let rollback = id.clone();
            if self
                .on_each(&prepared, move |s| {
                    format!("ROLLBACK PREPARED '{}'", rollback.on_shard(s))
                })
                .await
                .is_err()
            {
                warn!(
                    "two-phase commit {}: rolling back prepared shards failed; recovery will finish it",
                    id.base
                );
            }
            return Err(error);
        }
        // The decision: once the first shard commits, the transaction is committed.
        let decision = id.clone();
        self.on_each(&[first], move |s| {
            format!("COMMIT PREPARED '{}'", decision.on_shard(s))
        })
        .await?;
        let others: Vec<usize> = shards.iter().copied().filter(|&s| s != first).collect();
        let commit = id.clone();
        if let Err(e) = self
            .on_each(&others, move |s| {
                format!("COMMIT PREPARED '{}'", commit.on_shard(s))
            })
            .await
        {
            // Committed: a shard that missed COMMIT PREPARED is finished by recovery.
            error!(
                "two-phase commit {}: COMMIT PREPARED failed on a shard after the decision: {e}; recovery will finish it",
                id.base
            );
        }
        Ok(())
    }

    /// SAVEPOINT, RELEASE, ROLLBACK TO: on every shard in the transaction, and replayed on
    /// shards that join later.
    pub(super) async fn savepoint(&mut self, sql: &str, wire: &Wire<'_>) -> Result<(), Error> {
        let Some(tx) = self.sharded.transaction.as_mut() else {
            self.fail(
                wire,
                ErrorResponse::error(
                    sqlstate::NO_ACTIVE_SQL_TRANSACTION,
                    "SAVEPOINT can only be used in transaction blocks",
                ),
            );
            return Ok(());
        };
        tx.replay.push(sql.to_string());
        let tag = savepoint_tag(sql);
        self.sync_unsynced().await;
        let held = self.sharded.held();
        let text = sql.to_string();
        match self.on_each(&held, move |_| text.clone()).await {
            Ok(_) => self.answer_unit_locally(wire, tag),
            Err(error) => self.fail(wire, error),
        }
        Ok(())
    }

    /// SET/RESET and other session statements: on a transaction's shards (and replayed on
    /// later ones), or on one shard outside a transaction (the setting then follows the client
    /// to every server it gets, like with one shard).
    pub(super) async fn session_statement(
        &mut self,
        sql: &str,
        wire: &Wire<'_>,
    ) -> Result<(), Error> {
        match self.sharded.transaction.as_mut() {
            Some(tx) => {
                tx.replay.push(sql.to_string());
                let mut held = self.sharded.held();
                if held.is_empty() {
                    let shard = self.any_shard();
                    if let Err(error) = self.hold(shard, false).await {
                        self.fail(wire, error);
                        return Ok(());
                    }
                    // The replay just ran it there.
                    held.clear();
                    self.answer_unit_locally(wire, session_tag(sql));
                    return Ok(());
                }
                let (first, rest) = held.split_at(1);
                let text = sql.to_string();
                if let Err(error) = self.on_each(rest, move |_| text.clone()).await {
                    self.fail(wire, error);
                    return Ok(());
                }
                self.exec_single(first[0], sql, false, wire).await
            }
            None => {
                let shard = self.any_shard();
                self.exec_single(shard, sql, false, wire).await
            }
        }
    }

    /// Sets or clears the manual shard choice, for the transaction or the session.
    pub(super) fn set_override(&mut self, shards: Option<Shards>, local: bool) {
        match self.sharded.transaction.as_mut() {
            Some(tx) if !tx.implicit => tx.override_shards = shards,
            _ if local => {}
            _ => self.sharded.session_override = shards,
        }
    }
}

/// The command tag of a savepoint statement.
fn savepoint_tag(sql: &str) -> &'static str {
    let upper = sql.trim_start().to_ascii_uppercase();
    if upper.starts_with("RELEASE") {
        "RELEASE"
    } else if upper.starts_with("ROLLBACK") {
        "ROLLBACK"
    } else {
        "SAVEPOINT"
    }
}

/// The command tag of a session statement answered without running it again.
fn session_tag(sql: &str) -> &'static str {
    let upper = sql.trim_start().to_ascii_uppercase();
    if upper.starts_with("RESET") {
        "RESET"
    } else if upper.starts_with("DISCARD") {
        "DISCARD ALL"
    } else {
        "SET"
    }
}
