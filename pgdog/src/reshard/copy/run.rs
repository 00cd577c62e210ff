//! One data copy, start to end: pre-flight check, schema sync before the copy, the slot and
//! its snapshot, what earlier runs left (resume), the workers, schema sync after the copy.
//! Used by `pgdog data-sync` and the admin database's `COPY_DATA` task alike.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgdog_config::ConfigAndUsers;
use tokio::sync::mpsc::{self, UnboundedReceiver};
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::progress::{CopyStatus, TableCopies};
use super::slot::{self, ExportedSnapshot};
use super::state::{self, TableState};
use super::tables::{self, TableJob};
use super::worker::{self, CopyContext, Unit};
use super::CopyError;
use crate::reshard::conn::Conn;
use crate::reshard::endpoints::ClusterEndpoints;
use crate::reshard::pg_dump::PgDumpError;
use crate::reshard::preflight::{self, PreflightInput, Problem};
use crate::reshard::publication;
use crate::reshard::schema::{
    self, KeyPlacement, Phase, PlannedPhase, SchemaSyncError, SchemaSyncLog, SchemaSyncOptions,
    SchemaSyncReport,
};
use crate::reshard::tasks::TaskHandle;
use crate::router::plan::ShardingSchema;

/// What to copy.
#[derive(Debug, Clone, Default)]
pub struct DataSyncOptions {
    /// Source database.
    pub from: String,
    /// Destination database.
    pub to: String,
    /// users.toml user for the source (default: its schema admin).
    pub from_user: Option<String>,
    /// users.toml user for the destination (default: its schema admin).
    pub to_user: Option<String>,
    /// Publication naming the tables.
    pub publication: String,
    /// Replication slot (default `pgdog_<publication>`).
    pub slot: Option<String>,
    /// Workers (default `resharding_parallel_copies`).
    pub table_jobs: Option<usize>,
    /// Skip schema sync before and after the copy.
    pub skip_schema_sync: bool,
    /// Go on despite pre-flight errors.
    pub force: bool,
    /// Copy only these tables (schema, name) of the publication (a stream copying a table
    /// again); the others are left as they are.
    pub only: Option<Vec<(String, String)>>,
    /// Copied for the stream that holds the slot and runs meanwhile: the slot may be in use,
    /// and the tables stay unfinished until the stream applied the changes it held for them.
    pub beside_stream: bool,
}

/// What a copy did.
#[derive(Debug, Clone, Default)]
pub struct DataSyncReport {
    /// Pre-flight warnings (and errors overridden with force).
    pub problems: Vec<Problem>,
    /// The replication slot the stream continues from.
    pub slot: String,
    /// Its starting point.
    pub slot_lsn: String,
    /// Whether this run created the slot.
    pub slot_created: bool,
    /// Tables copied by this run: (schema.table, rows, bytes).
    pub copied: Vec<(String, u64, u64)>,
    /// Tables an earlier run had copied already.
    pub skipped: Vec<String>,
    /// Wall time of the copy itself.
    pub copy_time: Duration,
}

/// Runs the whole copy. `on_preflight` sees the pre-flight problems first.
pub async fn run(
    config: &ConfigAndUsers,
    options: &DataSyncOptions,
    progress: &TableCopies,
    schema_log: &SchemaSyncLog,
    task: Option<&TaskHandle>,
    on_preflight: impl FnOnce(&[Problem]),
) -> Result<DataSyncReport, CopyError> {
    let step = |text: &str| show_step(task, text);
    let source = ClusterEndpoints::resolve_as(config, &options.from, options.from_user.as_deref())?;
    let destination =
        ClusterEndpoints::resolve_as(config, &options.to, options.to_user.as_deref())?;
    let slot_name = options
        .slot
        .clone()
        .unwrap_or_else(|| slot::default_name(&options.publication));
    let replicas = source.shards[0].replicas.len();
    if replicas > 0 {
        info!(
            "the source has {replicas} replica(s); the copy reads from the primary: the slot's \
             snapshot can only be imported there (replicas would need their own slots, PostgreSQL 16+)"
        );
    }
    let mut source_conn = source.connect_primary(0).await?;
    let existing = slot::find(&mut source_conn, &slot_name).await?;
    if let Some(existing) = &existing {
        let mut existing = existing.clone();
        // The stream asking for this copy holds the slot.
        existing.active &= !options.beside_stream;
        slot::check_existing(&slot_name, &existing, &source.shards[0].primary.database)?;
    }

    step("pre-flight check");
    let mut problems = preflight::run(&PreflightInput {
        source: &source,
        destination: &destination,
        publication: &options.publication,
        phase: Phase::Pre,
        pg_dump_path: config.config.replication.pg_dump_path.as_deref(),
    })
    .await;
    if existing.is_some() || has_progress(&destination, &slot_name).await {
        // Resuming: rows an earlier run copied are expected; the state decides.
        problems.retain(|p| p.check != "destination_not_empty");
    }
    on_preflight(&problems);
    preflight::gate(&problems, options.force)?;
    if !publication::exists(&mut source_conn, &options.publication).await? {
        return Err(CopyError::NoPublication {
            publication: options.publication.clone(),
            database: options.from.clone(),
        });
    }
    stopped(task)?;

    let schema_options = |phase| SchemaSyncOptions {
        from: options.from.clone(),
        to: options.to.clone(),
        publication: options.publication.clone(),
        phase,
        dry_run: false,
        ignore_errors: false,
        force: true,
        index_jobs: None,
        sequence_margin: None,
        skip_preflight: true,
        keys: KeyPlacement::AfterCopy,
        only_tables: None,
    };
    if !options.skip_schema_sync {
        step("schema sync before the copy");
        schema_sync(config, &schema_options(Phase::Pre), schema_log, task).await?;
    }
    stopped(task)?;

    step("planning the copy");
    let mut shards = Vec::new();
    for shard in 0..destination.shards.len() {
        let mut conn = destination.connect_primary(shard).await?;
        conn.create_if_missing(state::CREATE).await?;
        shards.push(conn);
    }
    let tables = publication::tables(&mut source_conn, &options.publication).await?;
    let sharding = ShardingSchema::new(&config.config, &options.to);
    let tables: Vec<_> = match &options.only {
        Some(only) => tables
            .into_iter()
            .filter(|t| only.contains(&(t.schema.clone(), t.name.clone())))
            .collect(),
        None => tables,
    };
    let jobs = tables::plan(
        &mut source_conn,
        &mut shards,
        &tables,
        &sharding,
        config.config.general.resharding_copy_range_bytes,
    )
    .await?;
    let mut states: Vec<BTreeMap<(String, String), TableState>> = Vec::new();
    for conn in shards.iter_mut() {
        states.push(state::read(conn, &slot_name).await?);
    }
    let mut report = DataSyncReport {
        problems,
        slot: slot_name.clone(),
        ..Default::default()
    };
    let mut to_copy: Vec<TableJob> = Vec::new();
    let mut to_verify: Vec<TableJob> = Vec::new();
    for mut job in jobs {
        let key = (job.table.schema.clone(), job.table.name.clone());
        let on_shards: Vec<Option<&TableState>> = states.iter().map(|s| s.get(&key)).collect();
        // Rows copied for a slot that no longer exists predate the new slot's start: the
        // changes in between would be lost, so such tables are copied again.
        let slot_is_new = existing.is_none();
        if !slot_is_new
            && on_shards
                .iter()
                .all(|s| s.is_some_and(TableState::complete))
        {
            let verified = on_shards.iter().all(|s| s.is_some_and(|s| s.verified));
            if !verified && !digested_as_recorded(&mut job, &on_shards) {
                info!(
                    "{} was copied by an earlier run whose digests this run cannot check: copying it again",
                    job.table
                );
                for conn in shards.iter_mut() {
                    state::clean(conn, &slot_name, &job.table).await?;
                }
                to_copy.push(job);
                continue;
            }
            if verified {
                let id = progress.add(
                    task.map(TaskHandle::id),
                    &job.table.schema,
                    &job.table.name,
                    "",
                    0,
                );
                progress.update(id, |r| r.verified = "ok".into());
                progress.set_status(id, CopyStatus::Skipped);
                report.skipped.push(job.table.qualified());
            } else {
                to_verify.push(job);
            }
            continue;
        }
        if on_shards.iter().any(Option::is_some) {
            if slot_is_new {
                warn!(
                    "{} was copied for an earlier slot named {slot_name} that no longer exists: copying it again",
                    job.table
                );
            } else {
                info!(
                    "{} was partly copied by an earlier run: copying it again",
                    job.table
                );
            }
            for conn in shards.iter_mut() {
                state::clean(conn, &slot_name, &job.table).await?;
            }
        } else {
            for (shard, conn) in shards.iter_mut().enumerate() {
                if state::has_rows(conn, &job.table).await? {
                    return Err(CopyError::DestinationHasRows {
                        table: job.table.qualified(),
                        shard,
                        slot: slot_name.clone(),
                    });
                }
            }
        }
        to_copy.push(job);
    }
    if existing.is_none() {
        // A stream position recorded for an earlier slot of that name means nothing for
        // the new one (it may even be of another source): forget it.
        for conn in shards.iter_mut() {
            crate::reshard::stream::state::forget(conn, &slot_name).await?;
        }
    }
    stopped(task)?;

    // The snapshot: the new slot's own, or (resuming) a fresh one from a temporary slot.
    let timeout = source.connect_timeout;
    let primary = source.shards[0].primary.clone();
    let snapshot: Option<ExportedSnapshot> = match &existing {
        None => {
            step("creating the replication slot");
            let exported = slot::create(&primary, timeout, &slot_name).await?;
            report.slot_created = true;
            report.slot_lsn = exported.lsn.clone();
            Some(exported)
        }
        Some(existing) => {
            report.slot_lsn = existing.confirmed_flush_lsn.clone().unwrap_or_default();
            if to_copy.is_empty() {
                None
            } else {
                Some(slot::temporary(&primary, timeout).await?)
            }
        }
    };
    source_conn.close().await;

    let started = Instant::now();
    let (verified_tx, verified_rx) = mpsc::unbounded_channel();
    let context = Arc::new(CopyContext {
        source: primary,
        destination: destination.clone(),
        slot: slot_name.clone(),
        snapshot: snapshot
            .as_ref()
            .map(|s| s.snapshot.clone())
            .unwrap_or_default(),
        retry_max: config
            .config
            .general
            .resharding_copy_retry_max_attempts
            .max(1),
        progress: progress.clone(),
        task: task.cloned(),
        abort: AtomicBool::new(false),
        timeout,
        toast_compression: config.config.replication.toast_compression.setting(),
        toast_refused: AtomicBool::new(false),
        on_verified: (!options.skip_schema_sync).then_some(verified_tx),
    });
    let mut queue = VecDeque::new();
    let mut copy_ids = Vec::new();
    for job in to_copy {
        let watermark = snapshot.as_ref().map(|s| s.lsn.clone()).unwrap_or_default();
        for conn in shards.iter_mut() {
            let start = state::TableStart {
                watermark: &watermark,
                ranges: job.ranges.len(),
                drain_pending: options.beside_stream,
                digest_method: job.digest_method(),
            };
            state::begin_table(conn, &slot_name, &job.table, start).await?;
        }
        let job = Arc::new(job);
        let copy = progress.add(
            task.map(TaskHandle::id),
            &job.table.schema,
            &job.table.name,
            &job.copy_out_sql(0),
            job.ranges.len(),
        );
        let size = job.bytes;
        progress.update(copy, |r| r.size = size);
        copy_ids.push((copy, job.clone()));
        queue.extend(Unit::ranges(job, copy, shards.len()));
    }
    for conn in shards {
        conn.close().await;
    }
    let jobs = options
        .table_jobs
        .unwrap_or(config.config.general.resharding_parallel_copies)
        .max(1);
    step(&format!(
        "copying {} table(s) with {jobs} worker(s)",
        copy_ids.len()
    ));
    let copy_ended = std::sync::OnceLock::new();
    let copying = async {
        let copied =
            copy_and_verify(context, queue, jobs, to_verify, snapshot, progress, task).await;
        let _ = copy_ended.set(Instant::now());
        copied
    };
    let post = async {
        if options.skip_schema_sync {
            return Ok(None);
        }
        let post = schema_options(Phase::Post);
        indexes_as_tables_finish(config, &post, verified_rx, schema_log, task)
            .await
            .map(Some)
    };
    let (copied, post) = tokio::join!(copying, post);
    report.skipped.extend(copied?);
    // The copy's own time: the indexes the post phase was still building are not part of it.
    report.copy_time = copy_ended
        .get()
        .map_or_else(|| started.elapsed(), |t| *t - started);
    let rest = post?;
    for (copy, job) in copy_ids {
        let record = progress.get(copy);
        let (rows, bytes) = record.map(|r| (r.rows, r.bytes)).unwrap_or_default();
        report.copied.push((job.table.qualified(), rows, bytes));
    }

    if let Some(rest) = rest {
        step("schema sync after the copy");
        clean(
            &schema::apply_planned(config, rest, schema_log, task).await?,
            Phase::Post,
        )?;
    }
    Ok(report)
}

/// Makes `job` verify its shards the way the earlier run that copied it digested the
/// ranges; false when that is not possible (the shards disagree, or their digests need send
/// functions this run did not find).
fn digested_as_recorded(job: &mut TableJob, on_shards: &[Option<&TableState>]) -> bool {
    let methods: Vec<&str> = on_shards
        .iter()
        .flatten()
        .map(|s| s.digest_method.as_str())
        .collect();
    if methods.iter().all(|m| *m == tables::DIGEST_BYTES) {
        job.fields = None;
        true
    } else {
        methods.iter().all(|m| *m == tables::DIGEST_FIELDS) && job.fields.is_some()
    }
}

/// Runs the workers over `queue`, then verifies the tables an earlier run copied (returned:
/// they count as skipped). Its end drops the context, which tells the post phase that no
/// more tables come.
async fn copy_and_verify(
    context: Arc<CopyContext>,
    queue: VecDeque<Unit>,
    jobs: usize,
    to_verify: Vec<TableJob>,
    snapshot: Option<ExportedSnapshot>,
    progress: &TableCopies,
    task: Option<&TaskHandle>,
) -> Result<Vec<String>, CopyError> {
    let mut workers = JoinSet::new();
    if !queue.is_empty() {
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..jobs {
            workers.spawn(worker::run(context.clone(), queue.clone()));
        }
    }
    let mut first_error: Option<CopyError> = None;
    while let Some(joined) = workers.join_next().await {
        let result = joined.unwrap_or_else(|e| {
            Err(CopyError::Route {
                table: "(worker)".into(),
                error: e.to_string(),
            })
        });
        if let Err(e) = result {
            if first_error.is_none() || matches!(first_error, Some(CopyError::Stopped)) {
                first_error = Some(e);
            }
        }
    }
    if let Some(snapshot) = snapshot {
        snapshot.release().await;
    }
    if let Some(error) = first_error {
        return Err(error);
    }
    stopped(task)?;
    let mut skipped = Vec::new();
    if !to_verify.is_empty() {
        show_step(task, "verifying tables copied by an earlier run");
        let mut conns: Vec<Option<Conn>> = (0..context.destination.shards.len())
            .map(|_| None)
            .collect();
        for job in to_verify {
            let copy = progress.add(
                task.map(TaskHandle::id),
                &job.table.schema,
                &job.table.name,
                "",
                job.ranges.len(),
            );
            progress.update(copy, |r| r.ranges_done = r.ranges);
            worker::verify(&context, &job, copy, &mut conns).await?;
            skipped.push(job.table.qualified());
        }
    }
    Ok(skipped)
}

/// The post phase of the copy: planned while the copy starts, then each table's own indexes,
/// keys and ANALYZE built as soon as every shard verified it, beside the tables still being
/// copied. Returns the rest (foreign keys, triggers, tables an earlier run copied) once no
/// more tables come. When a build beside the copy fails (a shard restarted), the rest is
/// planned again after the copy from what the shards then hold, so that nothing is lost and
/// nothing is built twice.
async fn indexes_as_tables_finish(
    config: &ConfigAndUsers,
    options: &SchemaSyncOptions,
    mut verified: UnboundedReceiver<(String, String)>,
    log: &SchemaSyncLog,
    task: Option<&TaskHandle>,
) -> Result<PlannedPhase, CopyError> {
    let mut plan = Some(plan_post(config, options, task).await?);
    while let Some(table) = verified.recv().await {
        let Some(planned) = plan.as_mut() else {
            continue;
        };
        // The channel closes when the copy ends: tables queued by then get the whole machine.
        let own = planned.take_table(&table, !verified.is_closed());
        if own.is_empty() {
            continue;
        }
        info!(
            "data sync: building the indexes of {}.{} while the copy goes on",
            table.0, table.1
        );
        let outcome = schema::apply_planned(config, own, log, task).await;
        stopped(task)?;
        let failure = match outcome {
            Ok(report) if report.is_clean() => continue,
            Ok(report) => report.summary(),
            Err(e) => e.to_string(),
        };
        warn!(
            "data sync: building the indexes of {}.{} beside the copy did not complete ({failure}); \
             the post phase is planned again after the copy",
            table.0, table.1
        );
        plan = None;
    }
    match plan {
        Some(plan) => Ok(plan),
        None => plan_post(config, options, task).await,
    }
}

/// Plans the post phase; while pg_dump or the source cannot reach a server (a restart), it is
/// tried again after a backoff, as many times as a range of the copy would be.
async fn plan_post(
    config: &ConfigAndUsers,
    options: &SchemaSyncOptions,
    task: Option<&TaskHandle>,
) -> Result<PlannedPhase, CopyError> {
    let attempts = config
        .config
        .general
        .resharding_copy_retry_max_attempts
        .max(1);
    let mut attempt = 1;
    loop {
        match schema::plan_phase(config, options, task, false).await {
            Ok(plan) => return Ok(plan),
            Err(e) if attempt < attempts && unreachable(&e) => {
                let delay = worker::backoff(attempt);
                warn!(
                    "data sync: planning the post phase failed (attempt {attempt} of {attempts}): {e}; \
                     retrying in {delay:?}"
                );
                tokio::time::sleep(delay).await;
                stopped(task)?;
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether a schema-sync error may be a server that is restarting.
fn unreachable(error: &SchemaSyncError) -> bool {
    match error {
        SchemaSyncError::PgDump(PgDumpError::Failed { .. }) => true,
        SchemaSyncError::Source(e) => worker::retryable(e),
        _ => false,
    }
}

/// Whether any destination shard has copy progress recorded for `slot` (shards that cannot be
/// read count as not: the pre-flight check reports them).
async fn has_progress(destination: &ClusterEndpoints, slot: &str) -> bool {
    for shard in 0..destination.shards.len() {
        if let Ok(mut conn) = destination.connect_primary(shard).await {
            let found = conn
                .query(&format!(
                    "SELECT 1 FROM pgdog.copy_tables WHERE slot = {} LIMIT 1",
                    crate::quote::literal(slot)
                ))
                .await
                .is_ok_and(|rows| !rows.rows.is_empty());
            conn.close().await;
            if found {
                return true;
            }
        }
    }
    false
}

fn stopped(task: Option<&TaskHandle>) -> Result<(), CopyError> {
    match task {
        Some(task) if task.is_stopping() => Err(CopyError::Stopped),
        _ => Ok(()),
    }
}

/// A schema-sync phase as one step of the copy: its failure (or a difference) stops it.
async fn schema_sync(
    config: &ConfigAndUsers,
    options: &SchemaSyncOptions,
    log: &SchemaSyncLog,
    task: Option<&TaskHandle>,
) -> Result<(), CopyError> {
    clean(
        &schema::run(config, options, log, task, |_| {}).await?,
        options.phase,
    )
}

/// A schema-sync report as the copy's outcome: anything failed or different stops it.
fn clean(report: &SchemaSyncReport, phase: Phase) -> Result<(), CopyError> {
    if report.is_clean() {
        return Ok(());
    }
    Err(CopyError::Route {
        table: format!("(schema sync {})", phase.as_str()),
        error: format!(
            "did not complete cleanly: {} (SHOW SCHEMA_SYNC lists each statement)",
            report.summary()
        ),
    })
}

/// Logs a step of the copy and shows it in `SHOW TASKS`.
fn show_step(task: Option<&TaskHandle>, text: &str) {
    info!("data sync: {text}");
    if let Some(task) = task {
        task.set_step(text);
    }
}
