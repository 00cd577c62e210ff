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
# (integration/src/bin/bench_pooler.rs); see its header for all of them.
set -euo pipefail

cd "$(dirname "$0")/.."
# pgbouncer lives in /usr/sbin, which is not on a normal user's PATH on Debian.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        echo "pooler.sh: need root or sudo to run: $*" >&2
        exit 1
    fi
}

apt_updated=0
apt_install() {
    if ! command -v apt-get >/dev/null; then
        echo "pooler.sh: $* missing and no apt-get here; install it by hand" >&2
        exit 1
    fi
    if [ "$apt_updated" -eq 0 ]; then
        as_root apt-get update -qq
        apt_updated=1
    fi
    echo "pooler.sh: installing $*" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

command -v pgbouncer >/dev/null || apt_install pgbouncer
if ! command -v pg_config >/dev/null || ! [ -x "$(pg_config --bindir)/pgbench" ]; then
    apt_install postgresql
fi
if ! command -v cargo >/dev/null; then
    echo "pooler.sh: cargo not found; install Rust first" >&2
    exit 1
fi

cargo build --release --quiet -p pgdog --bin pgdog -p integration --bin bench_pooler

target="${CARGO_TARGET_DIR:-target}/release"
export PGDOG_BIN="$PWD/$target/pgdog"
case "$target" in /*) PGDOG_BIN="$target/pgdog" ;; esac
export BENCH_COMMAND="bash benches/pooler.sh${*:+ $*}"
exec "$target/bench_pooler" "$@"
