//! Cutover end to end: applications write through pgdog to the source database while it is
//! copied and streamed to two shards; `CUTOVER` pauses them at transaction boundaries, waits for
//! the shards to apply everything, moves the sequences and swaps the configuration; the same
//! client connections go on writing, now to the shards, while a stream carries their writes
//! back to the old database. `CUTOVER` of that stream rolls back, and the forward stream runs
//! again. No client sees an error, ids handed out by the shards are unique and above the
//! source's, and every committed write ends up in the old database and on its hash-correct shard
//! exactly once.

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
async fn cutover_and_rollback_under_load_lose_nothing_and_fail_no_client() {
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
    // One more client, for single statements along the way.
    let app = pgdog
        .connect(SCHEMA_ADMIN, SCHEMA_ADMIN_PASSWORD, SOURCE)
        .await
        .unwrap_or_else(|e| panic!("connect through pgdog: {e}"));
    let writers = start_writers(clients).await;

    // Copy and stream while the writers run.
    let started = admin::copy_data(&admin_client, &format!("{SOURCE} destination pub")).await;
    admin::wait_streaming(&admin_client, &started.task_id, Duration::from_secs(180)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let before = writers.committed.load(Ordering::Relaxed);
    let (cutover_id, reverse_task) =
        cut_over(&admin_client, "CUTOVER", "now reach destination").await;
    // The writers go on, now against the shards.
    let at_switch = writers.committed.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Ids after the cutover: each shard's sequence hands out ids no other shard and no source
    // row has; rows with them written through pgdog reach the old database without conflict.
    let source_max: i64 = source
        .query_one("SELECT max(id)::int8 FROM public.customers", &[])
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .get(0);
    let mut new_ids = Vec::new();
    for k in 0..setup.shards() {
        let shard = setup.shard_client(k).await;
        for _ in 0..3 {
            let id: i64 = shard
                .query_one("SELECT nextval('public.customers_id_seq')", &[])
                .await
                .unwrap_or_else(|e| panic!("{e:?}"))
                .get(0);
            assert!(
                id > source_max,
                "shard {k} hands out {id}, the source used up to {source_max}"
            );
            new_ids.push(id);
        }
    }
    let mut unique = new_ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        new_ids.len(),
        "ids handed out twice: {new_ids:?}"
    );
    for id in &new_ids {
        app.execute(
            "INSERT INTO public.customers (id, name, email) VALUES ($1::int8, 'after cutover', 'new@example.com')",
            &[id],
        )
        .await
        .unwrap_or_else(|e| panic!("insert customer {id} through pgdog after the cutover: {e:?}"));
    }

    // Rows whose sharding key changes on the shards move between them (a delete on one, an
    // insert on another); the streams back from the two shards race, yet the old database ends
    // up with each row once, with its new key.
    // (Orders of shard 1 get no customer: rows without a key live on shard 0.)
    let moved: Vec<i64> = setup
        .shard_client(1)
        .await
        .query(
            "SELECT id FROM \"Sales\".orders WHERE customer_id IS NOT NULL AND id < 1000000 ORDER BY id LIMIT 20",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect();
    assert!(!moved.is_empty());
    for id in &moved {
        app.execute(
            "UPDATE \"Sales\".orders SET customer_id = NULL WHERE id = $1::int8",
            &[id],
        )
        .await
        .unwrap_or_else(|e| panic!("move order {id} to shard 0 after the cutover: {e:?}"));
    }

    // Roll back: the stream back is the task to cut over; the writers keep going.
    let (_, forward_again) = cut_over(
        &admin_client,
        &format!("CUTOVER {reverse_task}"),
        &format!("now reach {SOURCE}_before_cutover"),
    )
    .await;
    let at_rollback = writers.committed.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    writers.stop.store(true, Ordering::Relaxed);
    let mut committed = Vec::new();
    for handle in writers.handles {
        match handle.await {
            Ok(Ok(ids)) => committed.extend(ids),
            Ok(Err(e)) => panic!("a client saw an error: {e}"),
            Err(e) => panic!("writer panicked: {e}"),
        }
    }
    let after = committed.len() as u64;
    assert!(
        before > 0 && at_switch > before && at_rollback > at_switch && after > at_rollback,
        "writes before the cutover: {before}, at the switch: {at_switch}, at the rollback: {at_rollback}, in all: {after}"
    );

    // The old database has every write: its own before the cutover, the shards' (streamed
    // back) until the rollback, and its own since.
    let (balance, orders) = sum_balance_and_orders(&source).await;
    assert_eq!(
        orders, after as i64,
        "orders on the old database after the rollback"
    );
    assert!(
        (balance.parse::<f64>().unwrap_or(0.0) - (initial + after as f64)).abs() < 0.001,
        "balance on the old database {balance}, expected {}",
        initial + after as f64
    );
    let streamed_back: i64 = source
        .query_one(
            "SELECT count(*) FROM public.customers WHERE id = ANY($1)",
            &[&new_ids.iter().map(|i| *i as i32).collect::<Vec<i32>>()],
        )
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .get(0);
    assert_eq!(
        streamed_back,
        new_ids.len() as i64,
        "customers inserted on the shards, on the old database"
    );
    for id in &moved {
        let rows: Vec<Option<i32>> = source
            .query(
                "SELECT customer_id FROM \"Sales\".orders WHERE id = $1",
                &[id],
            )
            .await
            .unwrap_or_else(|e| panic!("{e:?}"))
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            rows,
            [None],
            "order {id} on the old database after moving between shards"
        );
    }
    // New ids on the old database stay above everything the shards handed out.
    let fresh: i32 = app
        .query_one(
            "INSERT INTO public.customers (name, email) VALUES ('after rollback', 'back@example.com') RETURNING id",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("insert with a default id after the rollback: {e:?}"))
        .get(0);
    assert!(
        i64::from(fresh) > *unique.last().unwrap_or(&0),
        "id {fresh} after the rollback, the shards handed out up to {unique:?}"
    );

    // The forward stream runs again: the shards catch up with the old database, each row on
    // its shard.
    integration::eventually(
        Duration::from_secs(60),
        "the shards to catch up again",
        || {
            let (setup, admin_client, forward_again) = (&setup, &admin_client, &forward_again);
            async move {
                let replication = run_simple(admin_client, "SHOW REPLICATION").await.ok()?;
                let lagging = (0..replication.rows.len()).any(|r| {
                    replication.cell(r, "task_id") == Some(forward_again.as_str())
                        && replication.cell(r, "lag_bytes") != Some("0")
                });
                if lagging {
                    return None;
                }
                let mut orders = 0;
                for k in 0..setup.shards() {
                    orders += sum_balance_and_orders(&setup.shard_client(k).await).await.1;
                }
                (orders == after as i64).then_some(())
            }
        },
    )
    .await;
    for k in 0..setup.shards() {
        let shard = setup.shard_client(k).await;
        for spec in TABLES {
            assert_eq!(
                misplaced(&shard, &spec, setup.shards(), k).await,
                0,
                "{} rows on the wrong shard {k}",
                spec.label()
            );
        }
    }
    let cutovers = run_simple(&admin_client, "SHOW CUTOVER")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{cutovers:?} (first cutover task {cutover_id})");
    drop(setup);
}

/// Runs a cutover command, waits for its task to finish, and returns its task id and the
/// task id of the stream back (from SHOW CUTOVER).
async fn cut_over(admin_client: &Client, command: &str, done: &str) -> (String, String) {
    let result = run_simple(admin_client, command)
        .await
        .unwrap_or_else(|e| panic!("{command}: {e}"));
    let id = result.rows[0][0].clone().unwrap_or_default();
    let task = admin::wait_task_end(admin_client, &id, Duration::from_secs(120)).await;
    assert_eq!(task.status, "finished", "{command}: {task:?}");
    assert!(task.step.contains(done), "{command}: {task:?}");
    eprintln!("{command}: {}", task.step);
    let cutovers = run_simple(admin_client, "SHOW CUTOVER")
        .await
        .unwrap_or_else(|e| panic!("SHOW CUTOVER: {e}"));
    let row = (0..cutovers.rows.len())
        .find(|r| cutovers.cell(*r, "task_id") == Some(id.as_str()))
        .unwrap_or_else(|| panic!("cutover {id} not in SHOW CUTOVER: {cutovers:?}"));
    assert_eq!(cutovers.cell(row, "status"), Some("done"), "{cutovers:?}");
    let pause: u64 = cutovers
        .cell(row, "pause_ms")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pause in {cutovers:?}"));
    eprintln!("{command}: traffic paused {pause} ms");
    let reverse = cutovers
        .cell(row, "reverse_task_id")
        .unwrap_or_else(|| panic!("no stream back in {cutovers:?}"))
        .to_string();
    (id, reverse)
}
