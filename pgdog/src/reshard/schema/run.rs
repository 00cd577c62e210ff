//! One schema-sync run, start to end: pre-flight check, the source's facts and dump, the
//! phase's plan, then every destination shard at once. Used by the CLI (`pgdog schema-sync`)
//! and by the admin database's `SCHEMA_SYNC` task alike.

use std::collections::BTreeSet;

use pgdog_config::ConfigAndUsers;
use tokio::task::JoinSet;
use tracing::info;

use super::apply::{self, RunOptions, ShardOutcome, Step};
use super::dump::{self, DumpError};
use super::facts::{Name, SourceFacts};
use super::log::SchemaSyncLog;
use super::plan;
pub use super::plan::KeyPlacement;
use super::sequences;
use super::Phase;
use crate::quote;
use crate::reshard::conn::{Conn, ConnError};
use crate::reshard::endpoints::{ClusterEndpoints, EndpointError};
use crate::reshard::pg_dump::{PgDump, PgDumpError};
use crate::reshard::preflight::{self, PreflightFailed, PreflightInput, Problem};
use crate::reshard::publication;
use crate::reshard::tasks::TaskHandle;

/// What to sync.
#[derive(Debug, Clone)]
pub struct SchemaSyncOptions {
    /// Source database (pgdog.toml name).
    pub from: String,
    /// Destination database (pgdog.toml name).
    pub to: String,
    /// Publication naming the tables.
    pub publication: String,
    /// Which phase.
    pub phase: Phase,
    /// Compare and report only.
    pub dry_run: bool,
    /// Keep going after failed statements.
    pub ignore_errors: bool,
    /// Go on despite pre-flight errors.
    pub force: bool,
    /// Indexes built at once per shard (`None`: `[replication] index_jobs`).
    pub index_jobs: Option<usize>,
    /// Cutover margin (`None`: `[replication] sequence_margin`).
    pub sequence_margin: Option<i64>,
    /// The caller already ran the pre-flight check (the data copy runs it once for all steps).
    pub skip_preflight: bool,
    /// Whether primary keys come with the tables (pre) or after the copy (post).
    pub keys: KeyPlacement,
    /// Only these tables (schema, name) of the publication and their objects (a stream
    /// creating a table added while it runs); `None`: every table.
    pub only_tables: Option<Vec<(String, String)>>,
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum SchemaSyncError {
    /// Source or destination unusable in the config.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The pre-flight check found errors.
    #[error(transparent)]
    Preflight(#[from] PreflightFailed),
    /// pg_dump could not run.
    #[error(transparent)]
    PgDump(#[from] PgDumpError),
    /// The source could not be read.
    #[error("reading the source: {0}")]
    Source(#[from] ConnError),
    /// The publication does not exist.
    #[error("publication \"{publication}\" does not exist on the source database \"{database}\"")]
    NoPublication {
        /// Its name.
        publication: String,
        /// Source database.
        database: String,
    },
    /// The dump could not be parsed.
    #[error(transparent)]
    Dump(#[from] DumpError),
    /// A statement could not be rewritten.
    #[error("{0}")]
    Plan(String),
    /// Stopped by STOP_TASK.
    #[error("stopped")]
    Stopped,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct SchemaSyncReport {
    /// Pre-flight problems (warnings, or errors overridden with force).
    pub problems: Vec<Problem>,
    /// One outcome per destination shard.
    pub shards: Vec<ShardOutcome>,
}

impl SchemaSyncReport {
    /// Nothing failed and nothing differs.
    pub fn is_clean(&self) -> bool {
        self.shards.iter().all(|s| s.failed == 0 && s.differ == 0)
    }

    /// Whether any statement failed.
    pub fn failed(&self) -> bool {
        self.shards.iter().any(|s| s.failed > 0)
    }

    /// One line per shard.
    pub fn summary(&self) -> String {
        self.shards
            .iter()
            .map(ShardOutcome::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Runs one phase. `on_preflight` sees the pre-flight problems before anything else happens
/// (the CLI prints them); the report carries them too.
pub async fn run(
    config: &ConfigAndUsers,
    options: &SchemaSyncOptions,
    log: &SchemaSyncLog,
    task: Option<&TaskHandle>,
    on_preflight: impl FnOnce(&[Problem]),
) -> Result<SchemaSyncReport, SchemaSyncError> {
    let step = |text: &str| {
        info!("schema sync {}: {text}", options.phase.as_str());
        if let Some(task) = task {
            task.set_step(text);
        }
    };
    let source = ClusterEndpoints::resolve(config, &options.from)?;
    let destination = ClusterEndpoints::resolve(config, &options.to)?;
    let problems = if options.skip_preflight {
        Vec::new()
    } else {
        step("pre-flight check");
        preflight::run(&PreflightInput {
            source: &source,
            destination: &destination,
            publication: &options.publication,
            phase: options.phase,
            pg_dump_path: config.config.replication.pg_dump_path.as_deref(),
        })
        .await
    };
    on_preflight(&problems);
    preflight::gate(&problems, options.force)?;
    let mut report = SchemaSyncReport {
        problems,
        shards: Vec::new(),
    };
    stopped(task)?;

    let planned = match options.phase {
        Phase::Pre | Phase::Post => plan_phase(config, options, task, true).await?,
        Phase::Cutover => {
            step("reading the source catalog");
            let mut conn = source.connect_primary(0).await?;
            let facts = read_facts(&mut conn, options).await;
            let steps = match facts {
                Ok(facts) => {
                    step("reading sequence values");
                    cutover_steps(config, options, &source, &destination, &mut conn, &facts).await
                }
                Err(e) => Err(e),
            };
            conn.close().await;
            PlannedPhase {
                options: options.clone(),
                destination,
                shards: steps?,
                show_steps: true,
                beside_copy: false,
            }
        }
        Phase::Sync => {
            return Err(SchemaSyncError::Plan(
                "phase sync compares a running stream's tables: SYNC_SCHEMA runs it".into(),
            ));
        }
    };
    stopped(task)?;
    let applied = apply_planned(config, planned, log, task).await?;
    report.shards = applied.shards;
    Ok(report)
}

/// The publication's tables (limited to `options.only_tables`) and what they need, read from
/// the source.
async fn read_facts(
    conn: &mut Conn,
    options: &SchemaSyncOptions,
) -> Result<SourceFacts, SchemaSyncError> {
    if !publication::exists(conn, &options.publication).await? {
        return Err(SchemaSyncError::NoPublication {
            publication: options.publication.clone(),
            database: options.from.clone(),
        });
    }
    let mut tables = publication::tables(conn, &options.publication).await?;
    if let Some(only) = &options.only_tables {
        tables.retain(|t| only.contains(&(t.schema.clone(), t.name.clone())));
    }
    Ok(SourceFacts::read(conn, &tables).await?)
}

/// The cutover phase's steps for every shard (sequence values read now).
async fn cutover_steps(
    config: &ConfigAndUsers,
    options: &SchemaSyncOptions,
    source: &ClusterEndpoints,
    destination: &ClusterEndpoints,
    conn: &mut Conn,
    facts: &SourceFacts,
) -> Result<Vec<Vec<Step>>, SchemaSyncError> {
    let plan = cutover_plan(config, options, conn, facts).await?;
    let (mut sources, mut shards) = cutover_connections(source, destination).await?;
    let steps = plan.steps(&mut sources, &mut shards).await;
    for conn in sources.into_iter().chain(shards) {
        conn.close().await;
    }
    Ok(steps?)
}

/// A pre or post phase compared with the shards as they are now, not applied yet: what each
/// shard lacks, in order. The data copy plans its post phase before copying and applies it
/// table by table ([`PlannedPhase::take_table`]) as tables are copied.
pub struct PlannedPhase {
    options: SchemaSyncOptions,
    destination: ClusterEndpoints,
    /// The steps of each shard.
    shards: Vec<Vec<Step>>,
    /// Whether applying it shows its steps in `SHOW TASKS` (not while the copy runs).
    show_steps: bool,
    /// It runs while the copy still copies other tables: see [`RunOptions::beside_copy`].
    beside_copy: bool,
}

impl PlannedPhase {
    /// Takes out the steps that need `table` alone (its indexes, primary key and other
    /// constraints but foreign keys, its ANALYZE), to run once the table is copied. Nothing
    /// when the plan attaches partitions (their keys and indexes go together, at the end).
    /// `beside_copy`: other tables are still being copied meanwhile.
    pub fn take_table(&mut self, table: &Name, beside_copy: bool) -> PlannedPhase {
        PlannedPhase {
            options: self.options.clone(),
            destination: self.destination.clone(),
            shards: take_table_steps(&mut self.shards, table),
            show_steps: false,
            beside_copy,
        }
    }

    /// Whether no shard has a step.
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(Vec::is_empty)
    }
}

/// Takes each shard's steps that need `table` alone out of `shards` (see
/// [`PlannedPhase::take_table`]).
fn take_table_steps(shards: &mut [Vec<Step>], table: &Name) -> Vec<Vec<Step>> {
    let attaches = shards.iter().flatten().any(|s| s.kind.ends_with(" ATTACH"));
    shards
        .iter_mut()
        .map(|steps| {
            if attaches {
                return Vec::new();
            }
            let (own, rest): (Vec<Step>, Vec<Step>) = std::mem::take(steps)
                .into_iter()
                .partition(|s| s.table.as_ref() == Some(table) && s.table_local());
            *steps = rest;
            own
        })
        .collect()
}

/// Reads the source and the shards and plans a pre or post phase (no pre-flight check);
/// `show_steps`: the task's step says what it does (not when it runs beside the copy).
pub async fn plan_phase(
    config: &ConfigAndUsers,
    options: &SchemaSyncOptions,
    task: Option<&TaskHandle>,
    show_steps: bool,
) -> Result<PlannedPhase, SchemaSyncError> {
    let step = |text: &str| {
        info!("schema sync {}: {text}", options.phase.as_str());
        if let Some(task) = task.filter(|_| show_steps) {
            task.set_step(text);
        }
    };
    let source = ClusterEndpoints::resolve(config, &options.from)?;
    let destination = ClusterEndpoints::resolve(config, &options.to)?;
    step("reading the source catalog");
    let mut conn = source.connect_primary(0).await?;
    let facts = read_facts(&mut conn, options).await;
    let version = conn.server_version_num();
    let addr = conn.addr().clone();
    conn.close().await;
    let facts = facts?;
    let pg_dump = PgDump::locate(config.config.replication.pg_dump_path.as_deref()).await?;
    if let Some(version) = version {
        pg_dump.check_server(&addr, version)?;
    }
    stopped(task)?;
    step("dumping the source schema");
    let source_dump = dump::parse(&pg_dump.schema(&source.shards[0].primary).await?)?;
    let planned = plan::plan(&source_dump, &facts, options.phase, options.keys)
        .map_err(SchemaSyncError::Plan)?;
    let shards = destination.shards.len();
    step(&format!("comparing with {shards} destination shard(s)"));
    let mut steps_per_shard = Vec::with_capacity(shards);
    for shard in &destination.shards {
        let shard_dump = dump::parse(&pg_dump.schema(&shard.primary).await?)?;
        let mut steps = apply::compare(&planned, &shard_dump);
        if options.phase == Phase::Post {
            steps.extend(analyze_steps(&facts.tables));
        }
        steps_per_shard.push(steps);
    }
    Ok(PlannedPhase {
        options: options.clone(),
        destination,
        shards: steps_per_shard,
        show_steps,
        beside_copy: false,
    })
}

/// Applies a planned phase on every shard at once.
pub async fn apply_planned(
    config: &ConfigAndUsers,
    planned: PlannedPhase,
    log: &SchemaSyncLog,
    task: Option<&TaskHandle>,
) -> Result<SchemaSyncReport, SchemaSyncError> {
    let steps = planned.shards.into_iter().map(|s| (s, None)).collect();
    let run = RunOptions {
        beside_copy: planned.beside_copy,
        ..run_options(config, &planned.options, task)
    };
    let shards = apply_all(
        &run,
        &planned.destination,
        steps,
        log,
        task,
        planned.show_steps,
    )
    .await;
    stopped(task)?;
    Ok(SchemaSyncReport {
        shards,
        ..Default::default()
    })
}

/// The cutover phase with the catalog read beforehand ([`prepare_cutover`]): moving the
/// sequences while traffic is paused then takes a few short queries per server.
pub struct PreparedCutover {
    options: SchemaSyncOptions,
    destination: ClusterEndpoints,
    plan: sequences::CutoverPlan,
    /// Open to every source shard and every destination shard (with pg_dump's session
    /// settings): nothing connects while traffic is paused.
    sources: Vec<Conn>,
    shards: Vec<Conn>,
}

/// Reads what the cutover phase of `options` will move (no pre-flight: the caller checked).
pub async fn prepare_cutover(
    config: &ConfigAndUsers,
    options: &SchemaSyncOptions,
) -> Result<PreparedCutover, SchemaSyncError> {
    let source = ClusterEndpoints::resolve(config, &options.from)?;
    let destination = ClusterEndpoints::resolve(config, &options.to)?;
    let mut conn = source.connect_primary(0).await?;
    let tables = publication::tables(&mut conn, &options.publication).await?;
    let facts = SourceFacts::read(&mut conn, &tables).await?;
    let plan = cutover_plan(config, options, &mut conn, &facts).await;
    conn.close().await;
    let plan = plan?;
    let (sources, shards) = cutover_connections(&source, &destination).await?;
    Ok(PreparedCutover {
        options: SchemaSyncOptions {
            phase: Phase::Cutover,
            ..options.clone()
        },
        destination,
        plan,
        sources,
        shards,
    })
}

/// Connections to every source shard and to every destination shard.
async fn cutover_connections(
    source: &ClusterEndpoints,
    destination: &ClusterEndpoints,
) -> Result<(Vec<Conn>, Vec<Conn>), ConnError> {
    let mut sources = Vec::with_capacity(source.shards.len());
    for shard in 0..source.shards.len() {
        sources.push(source.connect_primary(shard).await?);
    }
    let mut shards = Vec::with_capacity(destination.shards.len());
    for shard in 0..destination.shards.len() {
        shards.push(apply::connect(destination, shard).await?);
    }
    Ok((sources, shards))
}

/// Runs a prepared cutover phase on its open connections (the sequences' values are read
/// now).
pub async fn run_cutover(
    config: &ConfigAndUsers,
    prepared: PreparedCutover,
    log: &SchemaSyncLog,
    task: Option<&TaskHandle>,
) -> Result<SchemaSyncReport, SchemaSyncError> {
    let PreparedCutover {
        mut sources,
        mut shards,
        ..
    } = prepared;
    let steps = prepared.plan.steps(&mut sources, &mut shards).await;
    for conn in sources {
        conn.close().await;
    }
    let steps = steps?
        .into_iter()
        .zip(shards.into_iter().map(Some))
        .collect();
    let run = run_options(config, &prepared.options, task);
    let shards = apply_all(&run, &prepared.destination, steps, log, task, true).await;
    stopped(task)?;
    Ok(SchemaSyncReport {
        shards,
        ..Default::default()
    })
}

/// The sequences of the moved tables, and which belong to sharded tables of the destination.
async fn cutover_plan(
    config: &ConfigAndUsers,
    options: &SchemaSyncOptions,
    conn: &mut crate::reshard::conn::Conn,
    facts: &SourceFacts,
) -> Result<sequences::CutoverPlan, ConnError> {
    let sharded = sharded_tables(config, &options.to, conn, facts).await?;
    let sharded_sequences =
        sequences::of_tables(facts.table_sequences.iter(), |t| sharded.contains(t));
    Ok(sequences::CutoverPlan {
        sequences: facts
            .sequences
            .iter()
            .map(|s| (s.clone(), sharded_sequences.contains(s)))
            .collect(),
        margin: options
            .sequence_margin
            .unwrap_or(config.config.replication.sequence_margin),
    })
}

/// How `options` runs its steps for `task`.
fn run_options(
    config: &ConfigAndUsers,
    options: &SchemaSyncOptions,
    task: Option<&TaskHandle>,
) -> RunOptions {
    RunOptions {
        task_id: task.map(TaskHandle::id),
        phase: options.phase,
        dry_run: options.dry_run,
        ignore_errors: options.ignore_errors,
        index_jobs: options
            .index_jobs
            .unwrap_or(config.config.replication.index_jobs)
            .max(1),
        beside_copy: false,
    }
}

/// Runs each shard's steps, every shard at once; the outcomes by shard. `show_steps`: the
/// task's step says so.
async fn apply_all(
    run_options: &RunOptions,
    destination: &ClusterEndpoints,
    steps_per_shard: Vec<(Vec<Step>, Option<Conn>)>,
    log: &SchemaSyncLog,
    task: Option<&TaskHandle>,
    show_steps: bool,
) -> Vec<ShardOutcome> {
    let text = format!(
        "{} on {} destination shard(s)",
        if run_options.dry_run {
            "planning"
        } else {
            "applying"
        },
        destination.shards.len()
    );
    info!("schema sync {}: {text}", run_options.phase.as_str());
    if let Some(task) = task.filter(|_| show_steps) {
        task.set_step(&text);
    }
    let mut outcomes = Vec::new();
    let mut set = JoinSet::new();
    for (shard, (steps, conn)) in steps_per_shard.into_iter().enumerate() {
        let destination = destination.clone();
        let run_options = run_options.clone();
        let log = log.clone();
        let task = task.cloned();
        set.spawn(async move {
            apply::run_steps(
                &destination,
                shard,
                steps,
                conn,
                &run_options,
                &log,
                task.as_ref(),
            )
            .await
        });
    }
    while let Some(joined) = set.join_next().await {
        if let Ok(outcome) = joined {
            outcomes.push(outcome);
        }
    }
    outcomes.sort_by_key(|s| s.shard);
    outcomes
}

fn stopped(task: Option<&TaskHandle>) -> Result<(), SchemaSyncError> {
    match task {
        Some(task) if task.is_stopping() => Err(SchemaSyncError::Stopped),
        _ => Ok(()),
    }
}

/// `ANALYZE` of every moved table, after the post phase.
fn analyze_steps(tables: &BTreeSet<Name>) -> Vec<Step> {
    tables
        .iter()
        .map(|(schema, name)| {
            let mut step = Step::run(
                "ANALYZE",
                &format!("{schema}.{name}"),
                format!("ANALYZE {}", quote::qualified(schema, name)),
            );
            step.maintenance = true;
            step.table = Some((schema.clone(), name.clone()));
            step
        })
        .collect()
}

/// The moved tables that the destination shards by a key (`[[sharded_tables]]` of `database`):
/// by name (and schema, when given), or every table having the column when no name is given.
async fn sharded_tables(
    config: &ConfigAndUsers,
    database: &str,
    conn: &mut crate::reshard::conn::Conn,
    facts: &SourceFacts,
) -> Result<BTreeSet<Name>, ConnError> {
    let mut sharded = BTreeSet::new();
    for rule in config
        .config
        .sharded_tables
        .iter()
        .filter(|t| t.database == database)
    {
        match &rule.name {
            Some(name) => sharded.extend(
                facts
                    .tables
                    .iter()
                    .filter(|(s, t)| t == name && rule.schema.as_ref().is_none_or(|r| r == s))
                    .cloned(),
            ),
            None => {
                let rows = conn
                    .query(&format!(
                        "SELECT table_schema, table_name FROM information_schema.columns WHERE column_name = {}",
                        quote::literal(&rule.column)
                    ))
                    .await?;
                for row in rows.rows {
                    if let [Some(schema), Some(table)] = [&row[0], &row[1]] {
                        let name = (schema.clone(), table.clone());
                        if facts.tables.contains(&name)
                            && rule.schema.as_ref().is_none_or(|r| r == schema)
                        {
                            sharded.insert(name);
                        }
                    }
                }
            }
        }
    }
    Ok(sharded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(kind: &str, object: &str, table: &str) -> Step {
        let mut step = Step::run(kind, object, format!("-- {kind} {object}"));
        step.table = Some(("public".into(), table.into()));
        step
    }

    fn kinds(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| format!("{} {}", s.kind, s.object))
            .collect()
    }

    #[test]
    fn a_copied_table_takes_its_own_indexes_keys_and_analyze_only() {
        let shard = vec![
            step("CONSTRAINT", "orders_pkey", "orders"),
            step("INDEX", "orders_customer_idx", "orders"),
            step("FK CONSTRAINT", "orders_customer_fkey", "orders"),
            step("TRIGGER", "orders_audit", "orders"),
            step("INDEX", "customers_email_idx", "customers"),
            step("ANALYZE", "public.orders", "orders"),
        ];
        let mut shards = vec![shard.clone(), shard];
        let orders = ("public".to_string(), "orders".to_string());
        let taken = take_table_steps(&mut shards, &orders);
        for own in &taken {
            assert_eq!(
                kinds(own),
                [
                    "CONSTRAINT orders_pkey",
                    "INDEX orders_customer_idx",
                    "ANALYZE public.orders"
                ]
            );
        }
        for rest in &shards {
            assert_eq!(
                kinds(rest),
                [
                    "FK CONSTRAINT orders_customer_fkey",
                    "TRIGGER orders_audit",
                    "INDEX customers_email_idx"
                ]
            );
        }
        assert!(take_table_steps(&mut shards, &orders)
            .iter()
            .all(Vec::is_empty));
    }

    #[test]
    fn partition_attaches_keep_everything_for_the_end() {
        let mut shards = vec![vec![
            step("INDEX", "events_pkey", "events"),
            step("INDEX ATTACH", "events_2024_pkey", "events_2024"),
        ]];
        let events = ("public".to_string(), "events".to_string());
        assert!(take_table_steps(&mut shards, &events)
            .iter()
            .all(Vec::is_empty));
        assert_eq!(shards[0].len(), 2);
    }
}
