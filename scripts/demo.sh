#!/usr/bin/env bash
# The demo: throwaway PostgreSQL clusters (a source with sample data, two empty shards), pgdog in
# front of them, a small write workload through pgdog, and a live reshard onto the shards with
# progress, a cutover and a summary; then how to psql in. Extra arguments go to `pgdog demo`
# (e.g. --port 7432). Installs what is missing and builds pgdog (release) first.
# Ctrl-C at any time stops everything and removes the clusters and their files.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --quiet -p pgdog --bin pgdog
exec target/release/pgdog demo --reshard "$@"
