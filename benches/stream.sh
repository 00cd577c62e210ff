#!/usr/bin/env bash
# Replication stream benchmark: pgdog data-sync streaming 1→1 and 1→2 shards vs native logical
# replication (CREATE SUBSCRIPTION) 1→1, on a pgbench source: catch-up of a backlog written
# while the applier is stopped (changes/s, MB/s of WAL), lag at half the source's maximum TPS
# (p50/p99/max from a 100 ms heartbeat, max lag bytes), and row counts and balance sums checked.
#
#   bash benches/stream.sh                # scale 10, 1M changes, 30 s steady state (~15 min on 2 cores)
#   bash benches/stream.sh --quick        # scale 1, 50k changes, 10 s: a smoke run (~2 min)
#   bash benches/stream.sh --tools pgdog2,native --changes 200000 --logs /tmp/stream-logs
#   bash benches/stream.sh --rounds 3         # every tool three times in turn; goals on the medians
#
# Installs PostgreSQL and its client tools from Debian's packages when missing (with sudo unless
# root), builds pgdog and the bench binary in release mode, runs the bench, prints a markdown
# report and writes it to benches/results/stream.md. Flags go to the bench binary
# (integration/src/bin/bench_stream/main.rs); see its header for all of them.
set -euo pipefail

cd "$(dirname "$0")/.."

# PostgreSQL with psql and pgbench, from Debian's packages when missing.
scripts/setup.sh postgresql-client

cargo build --release --quiet -p pgdog --bin pgdog -p integration --bin bench_stream

target="${CARGO_TARGET_DIR:-target}/release"
export PGDOG_BIN="$PWD/$target/pgdog"
case "$target" in /*) PGDOG_BIN="$target/pgdog" ;; esac
export BENCH_COMMAND="bash benches/stream.sh${*:+ $*}"
exec "$target/bench_stream" "$@"
