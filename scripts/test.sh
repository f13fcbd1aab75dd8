#!/usr/bin/env bash
# The whole test suite: unit tests and black-box tests against the real server
# on SQLite and on the machine's PostgreSQL (127.0.0.1:5432, user postgres).
# With CI=true an unreachable PostgreSQL fails the run instead of being skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# One build directory outside the clone, shared by every run on this machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/plangraph-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "PostgreSQL is not answering on 127.0.0.1:5432; trying to start the local cluster"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi

if ! command -v cargo-nextest >/dev/null; then
  cargo install cargo-nextest --locked
fi

cargo build --workspace --all-targets
cargo nextest run --workspace --no-fail-fast "$@"
