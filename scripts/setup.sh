#!/usr/bin/env bash
# Installs what building and testing pgdog needs on Debian/Ubuntu, skipping what is present:
# PostgreSQL (server and client tools), openssl (test certificates), a C toolchain and libclang
# (pg_query's build generates its bindings with bindgen).
# Usage: scripts/setup.sh [extra apt packages...]
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need=()
pg_bindir() { pg_config --bindir 2>/dev/null || true; }
if [ -z "$(pg_bindir)" ] || [ ! -x "$(pg_bindir)/initdb" ]; then
  need+=(postgresql postgresql-contrib postgresql-client)
fi
command -v openssl >/dev/null || need+=(openssl)
command -v cc >/dev/null || need+=(build-essential)
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done

if [ "${#need[@]}" -gt 0 ]; then
  echo "Installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "Rust is required: install it from your distribution or rustup, then re-run." >&2
  exit 1
fi
