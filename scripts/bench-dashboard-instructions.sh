#!/usr/bin/env bash
# The dashboard request of scripts/bench-dashboard.sh (50 plans of one feature
# with claimer, feature, project), counted in user-space instructions per
# request by valgrind's callgrind: the same count for the same binary and data
# whatever else the machine is doing, so two builds can be compared on a busy
# machine where CPU seconds cannot (the kernel's share is not counted).
#
# Usage: bash scripts/bench-dashboard-instructions.sh [BINARY ...]
# Without arguments, builds and counts the release binary. With several,
# counts each against the same database and prints the ratios to the first
# (e.g. a copy of the binary built from the previous commit, then the new one).
# Knobs: BENCH_REQUESTS (200), CARGO_TARGET_DIR (/var/tmp/plangraph-target).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/plangraph-target}"
REQUESTS="${BENCH_REQUESTS:-200}"
PG_ADMIN_URL="postgres://postgres@127.0.0.1:5432/postgres"
DB_NAME="plangraph_instructions_$(date +%s)_$$"
DB_URL="postgres://postgres@127.0.0.1:5432/$DB_NAME?sslmode=disable"

for tool in valgrind callgrind_control psql python3; do
  command -v "$tool" >/dev/null || {
    echo "bench-dashboard-instructions: $tool is required" >&2
    exit 1
  }
done
if [ "$#" -eq 0 ]; then
  cargo build --release --quiet --bin plangraph
  set -- "$CARGO_TARGET_DIR/release/plangraph"
fi

WORK="$(mktemp -d -t plangraph-instructions.XXXXXX)"
SERVER=""
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
  psql "$PG_ADMIN_URL" -qX -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

psql "$PG_ADMIN_URL" -qX -v ON_ERROR_STOP=1 -c "CREATE DATABASE $DB_NAME" >/dev/null
COMMON=(--database-url "$DB_URL" --data-dir "$WORK/data")
"$1" migrate "${COMMON[@]}" >/dev/null
"$1" admin seed-demo --projects 10 --features 50 --plans 20 "${COMMON[@]}" >"$WORK/seed.out"
FEATURE="$(awk '$1 == "feature:" { print $2; exit }' "$WORK/seed.out")"
KEY="$(awk '$1 == "key:" { print $2; exit }' "$WORK/seed.out")"

# Starts the server under callgrind with instrumentation off, warms it up,
# counts `REQUESTS` requests on one keep-alive connection, prints the count.
count() {
  local binary=$1 port
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  rm -f "$WORK"/callgrind.out*
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/callgrind.out" \
    "$binary" serve --listen "127.0.0.1:$port" "${COMMON[@]}" >"$WORK/server.log" 2>&1 &
  SERVER=$!
  python3 - "$port" "$FEATURE" "$KEY" "$REQUESTS" "$SERVER" <<'PY'
import http.client, json, subprocess, sys, time
port, feature, key, requests, server = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
query = ("query Dashboard($feature: ID!) { plans(featureId: $feature, first: 50) { nodes { "
         "title status claimedBy { email } feature { title } project { name } lastActivityAt } } }")
body = json.dumps({"query": query, "variables": {"feature": feature}})
headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
deadline = time.time() + 120
while True:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("POST", "/graphql", body, headers)
        answer = connection.getresponse().read()
        break
    except OSError:
        if time.time() > deadline:
            sys.exit("the server did not start under valgrind within 120 s")
        time.sleep(0.2)
if b'"errors"' in answer or answer.count(b'"title"') < 100:
    sys.exit(f"unexpected answer: {answer[:300]!r}")
def send(times):
    for _ in range(times):
        connection.request("POST", "/graphql", body, headers)
        connection.getresponse().read()
send(20)
subprocess.run(["callgrind_control", "--instr=on", server], check=True, capture_output=True)
send(requests)
subprocess.run(["callgrind_control", "--dump", server], check=True, capture_output=True)
PY
  kill "$SERVER" 2>/dev/null
  wait "$SERVER" 2>/dev/null || true
  SERVER=""
  # The dump taken after the requests: its totals, per request.
  awk -v requests="$REQUESTS" '/^totals:/ { total += $2 } END { printf "%.0f\n", total / requests }' "$WORK"/callgrind.out.*
}

echo "user-space instructions per dashboard request (callgrind, $REQUESTS requests after 20 to warm up)"
first=""
for binary in "$@"; do
  instructions="$(count "$binary")"
  [ -n "$first" ] || first="$instructions"
  printf '%12s  %.3fx  %s\n' "$instructions" "$(python3 -c "print($instructions / $first)")" "$binary"
done
