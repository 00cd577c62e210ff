#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, unit tests and the end-to-end tests against
# real PostgreSQL clusters created on the fly. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo build --quiet -p pgdog --bin pgdog
# A hung test must fail the run, not stall it: the whole suite takes a few minutes.
timeout --kill-after=30 1800 cargo test --workspace -- --test-threads=2
