#!/usr/bin/env bash
# Sharding benchmark: key-routed pgbench scripts and a 1M-row COPY, straight to one database vs
# through pgdog with one shard vs through pgdog with two shards.
#
#   bash benches/sharding.sh            # 10 s runs, 2 rounds, 10 and 50 clients (~15 min)
#   bash benches/sharding.sh --quick    # 5 s runs, 1 round (smoke test, ~4 min)
#   bash benches/sharding.sh --duration 30 --rounds 3 --rows 1000000 --copy-rows 2000000
#
# Installs PostgreSQL from Debian's packages when missing (with sudo unless root), builds pgdog
# and the bench binary in release mode, runs the bench, prints a markdown report and writes it
# to benches/results/sharding.md. Flags go to the bench binary
# (integration/src/bin/bench_sharding/main.rs); see its header for all of them.
set -euo pipefail

cd "$(dirname "$0")/.."

# PostgreSQL and the rest, from Debian's packages when missing.
scripts/setup.sh

cargo build --release --quiet -p pgdog --bin pgdog -p integration --bin bench_sharding

target="${CARGO_TARGET_DIR:-target}/release"
export PGDOG_BIN="$PWD/$target/pgdog"
case "$target" in /*) PGDOG_BIN="$target/pgdog" ;; esac
export BENCH_COMMAND="bash benches/sharding.sh${*:+ $*}"
exec "$target/bench_sharding" "$@"
