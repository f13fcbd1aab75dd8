#!/usr/bin/env bash
# The whole test suite: unit tests and black-box tests against the real server
# on SQLite and on the machine's PostgreSQL (127.0.0.1:5432, user postgres),
# with specs in the fs store and in a GCS emulator (fake-gcs-server) and an S3
# emulator (moto) that this script starts on 127.0.0.1 and stops again, then
# the live board in headless chromium, then every MCP tool through the
# official TypeScript and Python SDKs' clients.
# With CI=true an unreachable PostgreSQL or emulator fails the run instead of
# being skipped; the board and client tests never skip: what they need is
# installed by scripts/setup.sh, or the run fails. Arguments go to
# `cargo nextest run` (e.g. a test filter).
set -euo pipefail
cd "$(dirname "$0")/.."

# One build directory outside the clone, shared by every run on this machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/plangraph-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# One-time machine setup (nextest, the emulator, chromium, npm packages) is
# scripts/setup.sh; it runs only when something is missing.
source scripts/setup.sh
missing="$(missing_setup)"
if [ -n "$missing" ]; then
  echo "Setting up this machine for the tests; missing: $(echo $missing)"
  setup_machine
fi

if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "PostgreSQL is not answering on 127.0.0.1:5432; trying to start the local cluster"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi

# A free port on 127.0.0.1 for an emulator.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until something answers HTTP at the emulator's URL $1 plus the path
# $2 (any status: an S3 emulator refuses anonymous requests); on failure
# prints the emulator's log ($4).
wait_for_emulator() {
  local endpoint="$1" path="$2" name="$3" log="$4"
  if ! python3 - "$endpoint$path" <<'PY'
import sys, time, urllib.error, urllib.request
for _ in range(600):
    try:
        urllib.request.urlopen(sys.argv[1], timeout=1)
        sys.exit(0)
    except urllib.error.HTTPError:
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
  then
    echo "The $name emulator did not answer on $endpoint; its log:" >&2
    cat "$log" >&2
    exit 1
  fi
  echo "$name emulator listening on $endpoint"
}

EMULATOR_PIDS=()
EMULATOR_LOGS=()
stop_emulators() {
  local pid
  for pid in "${EMULATOR_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -f "${EMULATOR_LOGS[@]}"
}
trap stop_emulators EXIT

# Tests read the emulators' URLs from PLANGRAPH_TEST_GCS_ENDPOINT and
# PLANGRAPH_TEST_S3_ENDPOINT, and start private instances (for outages) from
# PLANGRAPH_TEST_GCS_EMULATOR and PLANGRAPH_TEST_S3_EMULATOR.
PLANGRAPH_TEST_GCS_EMULATOR="$(gcs_emulator_binary)"
export PLANGRAPH_TEST_GCS_EMULATOR
GCS_PORT="$(free_port)"
GCS_LOG="$(mktemp -t plangraph-gcs-emulator.XXXXXX.log)"
EMULATOR_LOGS+=("$GCS_LOG")
"$PLANGRAPH_TEST_GCS_EMULATOR" -scheme http -host 127.0.0.1 -port "$GCS_PORT" \
  -backend memory -log-level warn >"$GCS_LOG" 2>&1 &
EMULATOR_PIDS+=($!)
export PLANGRAPH_TEST_GCS_ENDPOINT="http://127.0.0.1:$GCS_PORT"

PLANGRAPH_TEST_S3_EMULATOR="$(s3_emulator_binary)"
export PLANGRAPH_TEST_S3_EMULATOR
S3_PORT="$(free_port)"
S3_LOG="$(mktemp -t plangraph-s3-emulator.XXXXXX.log)"
EMULATOR_LOGS+=("$S3_LOG")
"$PLANGRAPH_TEST_S3_EMULATOR" -H 127.0.0.1 -p "$S3_PORT" >"$S3_LOG" 2>&1 &
EMULATOR_PIDS+=($!)
export PLANGRAPH_TEST_S3_ENDPOINT="http://127.0.0.1:$S3_PORT"

wait_for_emulator "$PLANGRAPH_TEST_GCS_ENDPOINT" "/storage/v1/b?project=test" GCS "$GCS_LOG"
wait_for_emulator "$PLANGRAPH_TEST_S3_ENDPOINT" / S3 "$S3_LOG"

# Builds only what runs: the library, the binary and the test targets
# (`--tests`), not the benches and examples; `cargo clippy --all-targets` in
# .ci/run keeps those compiling. The integration tests start the debug
# `plangraph` binary, so cargo builds it here too, for the board tests below.
cargo nextest run --workspace --tests --no-fail-fast "$@"

# The live board (/board) end to end in Debian's chromium, driven by
# playwright-core from npm (never a browser download).
PLANGRAPH_BIN="$CARGO_TARGET_DIR/debug/plangraph"
if [ ! -x "$PLANGRAPH_BIN" ]; then
  echo "No $PLANGRAPH_BIN to run the board tests with; run this without -p" >&2
  exit 1
fi
PLANGRAPH_BIN="$PLANGRAPH_BIN" node --test tests/board/

# Every MCP tool through the official SDKs' clients, which check results
# against the tools' output schemas: TypeScript (tests/clients' npm
# packages), then Python (the venv scripts/setup.sh made).
PLANGRAPH_BIN="$PLANGRAPH_BIN" node --test tests/clients/
PLANGRAPH_BIN="$PLANGRAPH_BIN" "$PYTHON_SDK_VENV/bin/python" tests/clients/python_sdk_test.py
