//! Cutover end to end: applications write through pgdog to the source database while it is
//! copied and streamed to two shards; `CUTOVER` pauses them at transaction boundaries, waits for
//! the shards to apply everything, moves the sequences and swaps the configuration; the same
//! client connections go on writing, now to the shards. No client sees an error, every
//! committed write is on the shards exactly once and on its hash-correct shard, and the source
//! holds exactly what was committed before the switch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use integration::data_sync::admin;
use integration::data_sync::verify::misplaced;
use integration::data_sync::{DataSyncOptions, DataSyncSetup, SOURCE, TABLES};
use integration::schema_sync::{SCHEMA_ADMIN, SCHEMA_ADMIN_PASSWORD};
use integration::sharded::run_simple;
use tokio_postgres::Client;

/// First order id the writers use (the data set's ids are far below).
const ORDER_BASE: i64 = 50_000_000;
const WRITERS: i64 = 4;

struct Writers {
    stop: Arc<AtomicBool>,
    committed: Arc<AtomicU64>,
    handles: Vec<tokio::task::JoinHandle<Result<Vec<i64>, String>>>,
}

/// Each writer: its own connection through pgdog; transactions of an UPDATE of a customer
/// (sharded by id) and an INSERT of an order (sharded by customer_id), until stopped. Returns
/// the ids of the orders committed, or the first error.
async fn start_writers(clients: Vec<Client>) -> Writers {
    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for (w, client) in clients.into_iter().enumerate() {
        let (stop, committed) = (stop.clone(), committed.clone());
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut seq: i64 = 0;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let id = ORDER_BASE + w as i64 * 1_000_000 + seq;
                let customer = (id * 7919) % 2000 + 1;
                let result = async {
                    client.batch_execute("BEGIN").await?;
                    client
                        .execute(
                            "UPDATE public.customers SET balance = balance + 1 WHERE id = $1::int4",
                            &[&(customer as i32)],
                        )
                        .await?;
                    client
                        .execute(
                            "INSERT INTO \"Sales\".orders (id, customer_id, amount, quantity, placed_at) \
                             VALUES ($1, $2::int4, 1, 1, now())",
                            &[&id, &(customer as i32)],
                        )
                        .await?;
                    client.batch_execute("COMMIT").await
                }
                .await;
                match result {
                    Ok(()) => {
                        ids.push(id);
                        committed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => return Err(format!("writer {w}, order {id}: {e:?}")),
                }
            }
            Ok(ids)
        }));
    }
    Writers {
        stop,
        committed,
        handles,
    }
}

fn failed_customer(error: &str) -> i32 {
    error
        .split("(customer_id)=(")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn sum_balance_and_orders(client: &Client) -> (String, i64) {
    let row = client
        .query_one(
            &format!(
                "SELECT (SELECT sum(balance)::text FROM public.customers), \
                 (SELECT count(*) FROM \"Sales\".orders WHERE id >= {ORDER_BASE})"
            ),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("sums: {e:?}"));
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_under_load_loses_nothing_and_fails_no_client() {
    let mut setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    let source = setup.source_client(SOURCE).await;
    let (initial_balance, _) = sum_balance_and_orders(&source).await;
    let initial: f64 = initial_balance.parse().unwrap_or(0.0);
    let pgdog = setup.start_pgdog();
    let admin_client = pgdog.admin().await;
    let mut clients = Vec::new();
    for _ in 0..WRITERS {
        clients.push(
            pgdog
                .connect(SCHEMA_ADMIN, SCHEMA_ADMIN_PASSWORD, SOURCE)
                .await
                .unwrap_or_else(|e| panic!("connect through pgdog: {e}")),
        );
    }
    let writers = start_writers(clients).await;

    // Copy and stream while the writers run.
    let started = admin::copy_data(&admin_client, &format!("{SOURCE} destination pub")).await;
    integration::eventually(
        Duration::from_secs(180),
        "the copy to end and streaming to start",
        || {
            let (admin_client, id) = (&admin_client, &started.task_id);
            async move {
                let task = admin::task(admin_client, id).await?;
                assert_eq!(task.status, "running", "the copy task ended: {task:?}");
                task.step.starts_with("streaming changes").then_some(())
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let before = writers.committed.load(Ordering::Relaxed);
    let result = run_simple(&admin_client, "CUTOVER")
        .await
        .unwrap_or_else(|e| panic!("CUTOVER: {e}"));
    let cutover_id = result.rows[0][0].clone().unwrap_or_default();
    let done = admin::wait_task_end(&admin_client, &cutover_id, Duration::from_secs(120)).await;
    assert_eq!(done.status, "finished", "{done:?}");
    assert!(done.step.contains("now reach destination"), "{done:?}");
    eprintln!("cutover: {}", done.step);
    // The writers go on, now against the shards.
    let at_switch = writers.committed.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    writers.stop.store(true, Ordering::Relaxed);
    let mut committed = Vec::new();
    for handle in writers.handles {
        match handle.await {
            Ok(Ok(ids)) => committed.extend(ids),
            Ok(Err(e)) => {
                for k in 0..setup.shards() {
                    let shard = setup.shard_client(k).await;
                    let rows = shard
                        .query(
                            "SELECT 'customer', id::text FROM public.customers WHERE id = $1 \
                             UNION ALL SELECT 'order', id::text || '/' || customer_id FROM \"Sales\".orders WHERE id >= 50000000 AND customer_id = $1",
                            &[&i64::from(failed_customer(&e))],
                        )
                        .await
                        .map(|rows| rows.iter().map(|r| format!("{}:{}", r.get::<_, String>(0), r.get::<_, String>(1))).collect::<Vec<_>>());
                    eprintln!("shard {k}: {rows:?}");
                }
                panic!("a client saw an error: {e}")
            }
            Err(e) => panic!("writer panicked: {e}"),
        }
    }
    let after = committed.len() as u64;
    assert!(
        before > 0 && after > at_switch,
        "writes before the cutover: {before}, at the switch: {at_switch}, in all: {after}"
    );

    // The shards hold every committed write exactly once, each row on its shard.
    let mut shard_orders = 0;
    let mut shard_balance = 0.0;
    for k in 0..setup.shards() {
        let shard = setup.shard_client(k).await;
        let (balance, orders) = sum_balance_and_orders(&shard).await;
        shard_orders += orders;
        shard_balance += balance.parse::<f64>().unwrap_or(0.0);
        for spec in TABLES {
            assert_eq!(
                misplaced(&shard, &spec, setup.shards(), k).await,
                0,
                "{} rows on the wrong shard {k}",
                spec.label()
            );
        }
    }
    assert_eq!(shard_orders, after as i64, "orders on the shards");
    assert!(
        (shard_balance - (initial + after as f64)).abs() < 0.001,
        "balance on the shards {shard_balance}, expected {}",
        initial + after as f64
    );
    // The source got only what was committed before the switch.
    let (_, source_orders) = sum_balance_and_orders(&source).await;
    assert!(
        source_orders as u64 >= before && (source_orders as u64) <= at_switch,
        "orders on the source {source_orders}: before the cutover {before}, at the switch {at_switch}"
    );
    let tasks = run_simple(&admin_client, "SHOW TASKS")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{tasks:?}");
    drop(setup);
}
