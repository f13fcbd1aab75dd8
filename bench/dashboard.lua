-- wrk script for scripts/bench-dashboard.sh: POSTs one GraphQL request body,
-- read from the file named by BENCH_BODY_FILE, with the Authorization header
-- from BENCH_AUTHORIZATION when set. With BENCH_FEATURES_FILE (one feature id
-- per line) every request draws a feature at random and puts it where the
-- body says __FEATURE__, so no two consecutive requests need hit the same
-- rows. At the end prints one machine-readable line:
-- RESULT <requests/s> <p50 µs> <p99 µs> <non-2xx> <socket errors> <requests>.

local body_file = assert(os.getenv("BENCH_BODY_FILE"), "BENCH_BODY_FILE is not set")
local file = assert(io.open(body_file, "r"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
local authorization = os.getenv("BENCH_AUTHORIZATION")
if authorization and authorization ~= "" then
  wrk.headers["Authorization"] = authorization
end

local features_file = os.getenv("BENCH_FEATURES_FILE")
if features_file and features_file ~= "" then
  local features = {}
  for line in io.lines(features_file) do
    if line ~= "" then
      features[#features + 1] = line
    end
  end
  assert(#features > 0, "BENCH_FEATURES_FILE lists no feature")
  local template = wrk.body
  math.randomseed(os.time())
  request = function()
    local feature = features[math.random(#features)]
    return wrk.format(nil, nil, nil, (template:gsub("__FEATURE__", feature)))
  end
end

function done(summary, latency, requests)
  local errors = summary.errors
  local socket_errors = errors.connect + errors.read + errors.write + errors.timeout
  io.write(string.format(
    "RESULT %.1f %d %d %d %d %d\n",
    summary.requests / (summary.duration / 1000000),
    latency:percentile(50),
    latency:percentile(99),
    errors.status,
    socket_errors,
    summary.requests
  ))
end
