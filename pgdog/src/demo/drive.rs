//! What the demo does inside the running pgdog: starts the workload, prints how to connect,
//! and with `--reshard` runs the move with live progress, then prints the summary and the new
//! connection instructions. A failure is printed and stops pgdog (which then cleans up).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::clusters::CUSTOMERS;
use super::config::{APP_DATABASE, APP_PASSWORD, APP_USER};
use super::instructions::{self, Places};
use super::progress::Display;
use super::summary::{self, ClientsSeen};
use super::workload::{self, WorkloadOptions, WorkloadStats};
use super::{reshard, DemoError, Out};
use crate::backend::server::ServerAddress;
use crate::state::PoolerState;

/// Client connections of the workload.
pub const CLIENTS: usize = 4;
/// The workload's transactions per second (all clients).
pub const RATE: f64 = 50.0;
/// How long the workload runs before the move starts, and after the cutover before the
/// summary (so both sides of the switch have transactions).
const SETTLE: Duration = Duration::from_secs(2);

/// What the demo runs with.
pub struct Plan {
    /// pgdog's port.
    pub port: u16,
    /// Whether to run the move.
    pub reshard: bool,
    /// Run the move as COPY_DATA and CUTOVER instead of RESHARD.
    pub steps: bool,
    /// The source PostgreSQL's port.
    pub source_port: u16,
    /// The shards' PostgreSQL ports.
    pub shard_ports: Vec<u16>,
    /// The config files' directory.
    pub dir: PathBuf,
    /// Where messages go.
    pub out: Out,
    /// Whether `out` is a terminal.
    pub terminal: bool,
    /// Set to the reason when the demo fails.
    pub failure: Arc<Mutex<Option<String>>>,
}

/// Runs the demo in pgdog's runtime until done (then the workload keeps going until Ctrl-C).
pub async fn drive(state: Arc<PoolerState>, plan: Plan) {
    let admin_password = state.admin_password();
    let places = Places {
        port: plan.port,
        admin_password: &admin_password,
        source_port: plan.source_port,
        shard_ports: &plan.shard_ports,
        dir: &plan.dir,
        clients: CLIENTS,
        rate: RATE,
    };
    let stats = workload::start(
        &state,
        WorkloadOptions {
            address: ServerAddress {
                host: "127.0.0.1".into(),
                port: plan.port,
                database: APP_DATABASE.into(),
                user: APP_USER.into(),
                password: Some(APP_PASSWORD.into()),
            },
            clients: CLIENTS,
            rate: RATE,
            customers: CUSTOMERS,
        },
    );
    plan.out.print(&instructions::before(&places, plan.reshard));
    if !plan.reshard {
        return;
    }
    match reshard_and_report(&state, &stats, &plan, &places).await {
        Ok(()) | Err(DemoError::Interrupted) => {}
        Err(e) => {
            plan.out.print(&format!(
                "\n{e}\n{}\nStopping the demo (RUST_LOG=info pgdog demo --reshard shows pgdog's log).\n",
                stats
                    .last_error()
                    .map(|last| format!("The last client error: {last}"))
                    .unwrap_or_default()
            ));
            *plan.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
            state.begin_shutdown();
        }
    }
}

/// The move, the summary and the instructions after it.
async fn reshard_and_report(
    state: &Arc<PoolerState>,
    stats: &WorkloadStats,
    plan: &Plan,
    places: &Places<'_>,
) -> Result<(), DemoError> {
    let mut display = Display::new(plan.out.clone(), plan.terminal);
    settle(
        state,
        stats,
        &mut display,
        "the clients are writing to the source",
    )
    .await?;
    let report = reshard::run(state, stats, &mut display, plan.steps).await?;
    settle(
        state,
        stats,
        &mut display,
        "cutover done: the clients are writing to the shards",
    )
    .await?;
    display.finish();
    let shards = summary::shard_counts(&plan.shard_ports).await;
    let clients = ClientsSeen {
        committed: stats.committed(),
        errors: stats.errors(),
        longest: stats.longest(),
    };
    plan.out.print(&summary::render(&report, clients, &shards));
    plan.out.print(&instructions::after(places));
    Ok(())
}

/// Shows the progress line for [`SETTLE`].
async fn settle(
    state: &PoolerState,
    stats: &WorkloadStats,
    display: &mut Display,
    step: &str,
) -> Result<(), DemoError> {
    let ticks = SETTLE.as_millis() / 250;
    for _ in 0..ticks {
        if state.shutting_down() {
            return Err(DemoError::Interrupted);
        }
        display.update(state, stats, step);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}
