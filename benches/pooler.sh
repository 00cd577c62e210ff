#!/usr/bin/env bash
# Pooler benchmark: pgbench straight to PostgreSQL, through PgBouncer and through pgdog.
#
#   bash benches/pooler.sh            # 15 s runs, 2 rounds, 10 and 100 clients (~12 min)
#   bash benches/pooler.sh --quick    # 5 s runs, 1 round (smoke test, ~3 min)
#   bash benches/pooler.sh --duration 30 --rounds 3 --workers 2 --clients 10,50,100
#
# Installs PgBouncer and PostgreSQL from Debian's packages when missing (with sudo unless
# root), builds pgdog and the bench binary in release mode, runs the bench, prints a markdown
# table and writes it to benches/results/pooler.md. Flags go to the bench binary
# (integration/src/bin/bench_pooler/main.rs); see its header for all of them.
set -euo pipefail

cd "$(dirname "$0")/.."
# pgbouncer lives in /usr/sbin, which is not on a normal user's PATH on Debian.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# PostgreSQL, PgBouncer and the rest, from Debian's packages when missing.
scripts/setup.sh pgbouncer

cargo build --release --quiet -p pgdog --bin pgdog -p integration --bin bench_pooler

target="${CARGO_TARGET_DIR:-target}/release"
export PGDOG_BIN="$PWD/$target/pgdog"
case "$target" in /*) PGDOG_BIN="$target/pgdog" ;; esac
export BENCH_COMMAND="bash benches/pooler.sh${*:+ $*}"
exec "$target/bench_pooler" "$@"
