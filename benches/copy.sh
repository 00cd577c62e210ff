#!/usr/bin/env bash
# Data copy benchmark: one generated data set (~1.5 GB at scale 1) copied from a source cluster
# into fresh databases by raw binary COPY pipes (the machine's limit), pg_dump | pg_restore,
# pg_dump -Fd -j + pg_restore -j, pgcopydb clone (plain and splitting tables), pgdog data-sync
# 1→1 and pgdog data-sync 1→2 shards; MB/s and rows/s end to end and for the copy phase alone.
#
#   bash benches/copy.sh                  # full size (~1.5 GB), 2 jobs (~10 min on 2 cores); not for CI
#   bash benches/copy.sh --scale 0.05     # ~75 MB: a smoke run (~1 min)
#   bash benches/copy.sh --jobs 4 --tools raw,pgcopydb,pgdog2
#   bash benches/copy.sh --tools raw,pgcopydb,pgdog2 --rounds 3   # in turn, goals on the medians
#
# Installs PostgreSQL, its client tools and pgcopydb from Debian's packages when missing (with
# sudo unless root), builds pgdog and the bench binary in release mode, runs the bench, prints a
# markdown report and writes it to benches/results/copy.md. Flags go to the bench binary
# (integration/src/bin/bench_copy/main.rs); see its header for all of them.
set -euo pipefail

cd "$(dirname "$0")/.."

# PostgreSQL, psql/pg_dump/pg_restore and pgcopydb, from Debian's packages when missing.
scripts/setup.sh postgresql-client pgcopydb

cargo build --release --quiet -p pgdog --bin pgdog -p integration --bin bench_copy

target="${CARGO_TARGET_DIR:-target}/release"
export PGDOG_BIN="$PWD/$target/pgdog"
case "$target" in /*) PGDOG_BIN="$target/pgdog" ;; esac
export BENCH_COMMAND="bash benches/copy.sh${*:+ $*}"
exec "$target/bench_copy" "$@"
