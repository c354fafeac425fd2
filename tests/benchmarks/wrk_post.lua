-- wrk script: POST the body in $WRK_BODY (or the bytes of the file $WRK_BODY_FILE, for binary bodies) with the
-- headers in $WRK_HEADERS ("Name: value" lines; default a JSON Content-Type), then print one JSON line of results.
wrk.method = "POST"
local body_file = os.getenv("WRK_BODY_FILE")
if body_file then
  local file = assert(io.open(body_file, "rb"))
  wrk.body = file:read("*a")
  file:close()
else
  wrk.body = os.getenv("WRK_BODY")
end
for name, value in string.gmatch(os.getenv("WRK_HEADERS") or "Content-Type: application/json",
                                 "([^:\n]+):%s*([^\n]*)") do
  wrk.headers[name] = value
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '\n{"requests": %d, "duration_us": %d, "non_2xx": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"timeout": %d, "p50_us": %d, "p99_us": %d, "mean_us": %.1f, "max_us": %d}\n',
    summary.requests, summary.duration, errors.status, errors.connect, errors.read, errors.write,
    errors.timeout, latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
