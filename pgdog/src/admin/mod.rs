//! The admin database: commands parsed by `pgdog-admin` run here against the live state.
//! [`execute`] is the one place that turns a command into a reply; [`show`] builds every
//! result table; [`session`] speaks the wire protocol to the operator's client. Commands that
//! need the servers (`SHOW REPLICATION_SLOTS`, `DROP_SLOT`, `PAUSE`) are awaited here, in the
//! admin client's own task, each server bounded by a time limit.

pub mod claims;
pub mod cutover;
pub mod primaries;
pub mod replication;
pub mod resharding;
pub mod session;
pub mod set;
pub mod show;
pub mod slots;
pub mod stream_control;
pub mod sync_schema;
pub mod verify;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use pgdog_admin::{Command, ResultTable};
use tracing::info;

use crate::backend::databases::Databases;
use crate::backend::pool::Pool;
use crate::net::{sqlstate, ErrorResponse};
use crate::state::PoolerState;

/// What a command returns.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Rows, then CommandComplete with `tag`.
    Table {
        /// The rows.
        table: ResultTable,
        /// CommandComplete tag.
        tag: String,
    },
    /// Only CommandComplete with this tag.
    Done(String),
}

impl Reply {
    fn done(tag: &str) -> Reply {
        Reply::Done(tag.to_string())
    }
}

/// Runs one command. An error means the command changed nothing.
pub async fn execute(state: &Arc<PoolerState>, command: &Command) -> Result<Reply, ErrorResponse> {
    match command {
        Command::Show(what) => Ok(Reply::Table {
            table: show::table(state, *what).await,
            tag: "SHOW".into(),
        }),
        Command::Reload => {
            state.reload_from_files().map_err(|e| {
                ErrorResponse::error(sqlstate::CONFIG_FILE_ERROR, format!("reload failed: {e}"))
                    .detail("the previous configuration is still in effect")
            })?;
            Ok(Reply::done("RELOAD"))
        }
        Command::Pause(database) => {
            pause(state, database.as_deref()).await?;
            Ok(Reply::done("PAUSE"))
        }
        Command::Resume(database) => {
            for name in database_names(state, database.as_deref())? {
                state.gate(&name).resume();
            }
            info!("resumed {}", database.as_deref().unwrap_or("all databases"));
            Ok(Reply::done("RESUME"))
        }
        Command::Reconnect => {
            for pool in state.databases().all_pools() {
                pool.reconnect();
            }
            Ok(Reply::done("RECONNECT"))
        }
        Command::Ban(id) => {
            let databases = state.databases();
            match id {
                Some(id) => {
                    let pool = pool_by_id(&databases, *id)?;
                    pool.ban("banned by an administrator (BAN)", None);
                }
                None => {
                    for cluster in databases.clusters() {
                        for shard in &cluster.shards {
                            for replica in &shard.replicas {
                                replica.ban("banned by an administrator (BAN)", None);
                            }
                        }
                    }
                }
            }
            Ok(Reply::done("BAN"))
        }
        Command::Unban(id) => {
            let databases = state.databases();
            match id {
                Some(id) => {
                    let pool = pool_by_id(&databases, *id)?;
                    pool.unban();
                }
                None => {
                    for pool in databases.all_pools() {
                        pool.unban();
                    }
                }
            }
            Ok(Reply::done("UNBAN"))
        }
        Command::Set { name, value } => {
            set::apply(state, name, value)?;
            Ok(Reply::done("SET"))
        }
        Command::StopTask(id) => match state.tasks.stop(*id) {
            Ok(()) => Ok(Reply::done("STOP_TASK")),
            Err(e @ crate::reshard::tasks::StopError::NotFound(_)) => Err(ErrorResponse::error(
                sqlstate::UNDEFINED_OBJECT,
                e.to_string(),
            )
            .hint("SHOW TASKS lists the tasks")),
            Err(e) => Err(ErrorResponse::error(
                sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                e.to_string(),
            )),
        },
        Command::SchemaSync(command) => resharding::schema_sync(state, command),
        Command::CopyData(command) => resharding::copy_data(state, command),
        Command::Replicate(command) => resharding::replicate(state, command),
        Command::DropSlot(slot) => slots::drop(state, slot).await,
        Command::Cutover(task_id) => cutover::start(state, *task_id),
        Command::Reshard(command) => cutover::reshard(state, command),
        Command::Verify(command) => verify::run(state, command).await,
        Command::SyncSchema { task_id, indexes } => sync_schema::start(state, *task_id, *indexes),
        Command::PauseReplication(id) => stream_control::pause(state, *id),
        Command::ResumeReplication(id) => stream_control::resume(state, *id),
        Command::ResyncTable { task_id, table } => stream_control::resync(state, *task_id, table),
        Command::Shutdown => {
            info!("SHUTDOWN requested from the admin database");
            state.begin_shutdown();
            Ok(Reply::done("SHUTDOWN"))
        }
    }
}

/// Pauses the databases named (all when `None`), waiting for their transactions to finish.
/// If they do not finish within `shutdown_timeout`, every database this command paused is
/// resumed and the error says what was still running.
async fn pause(state: &Arc<PoolerState>, database: Option<&str>) -> Result<(), ErrorResponse> {
    let names = database_names(state, database)?;
    let timeout = Duration::from_millis(state.databases().config().config.general.shutdown_timeout);
    let mut paused: Vec<Arc<crate::gate::Gate>> = Vec::new();
    for name in names {
        let gate = state.gate(&name);
        let was_paused = gate.is_paused();
        if let Err(e) = gate.pause(timeout).await {
            for gate in paused {
                gate.resume();
            }
            return Err(ErrorResponse::error(
                sqlstate::LOCK_NOT_AVAILABLE,
                format!("could not pause database \"{name}\": {e}"),
            )
            .detail("nothing was paused")
            .hint("retry when the long transactions end, or find them with SHOW CLIENTS"));
        }
        if !was_paused {
            paused.push(gate);
        }
    }
    info!("paused {}", database.unwrap_or("all databases"));
    Ok(())
}

/// The database named, checked to exist, or every configured database.
fn database_names(
    state: &PoolerState,
    database: Option<&str>,
) -> Result<Vec<String>, ErrorResponse> {
    let databases = state.databases();
    match database {
        Some(name) if databases.has_database(name) => Ok(vec![name.to_string()]),
        Some(name) => Err(ErrorResponse::error(
            sqlstate::INVALID_CATALOG_NAME,
            format!("database \"{name}\" does not exist"),
        )
        .hint("SHOW DATABASES lists the databases pgdog serves")),
        None => {
            let mut names: Vec<String> = databases
                .config()
                .config
                .databases
                .iter()
                .map(|d| d.name.clone())
                .collect();
            names.sort();
            names.dedup();
            Ok(names)
        }
    }
}

/// The pool with this id (as `SHOW POOLS` lists it).
fn pool_by_id(databases: &Databases, id: u64) -> Result<Pool, ErrorResponse> {
    databases
        .all_pools()
        .find(|p| p.id() == id)
        .cloned()
        .ok_or_else(|| unknown_pool(id))
}

fn unknown_pool(id: u64) -> ErrorResponse {
    ErrorResponse::error(
        sqlstate::UNDEFINED_OBJECT,
        format!("there is no pool with id {id}"),
    )
    .hint("SHOW POOLS lists the pools and their ids")
}
