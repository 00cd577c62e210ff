#!/usr/bin/env bash
# The demo: a throwaway PostgreSQL with sample data and pgdog in front of it.
# Installs what is missing, builds pgdog (release) and runs `pgdog demo`. Ctrl-C cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --quiet -p pgdog --bin pgdog
exec target/release/pgdog demo "$@"
