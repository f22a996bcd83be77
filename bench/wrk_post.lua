-- POST the file named by $WRK_BODY to the URL given to wrk, with the headers in $WRK_HEADERS
-- ("Name: value|Name: value"); at the end print one line "WRKJSON {...}" for
-- bench/cpu_per_request.py to read.
local body_file = assert(io.open(os.getenv("WRK_BODY"), "rb"))
wrk.method = "POST"
wrk.body = body_file:read("*a")
body_file:close()
for pair in string.gmatch(os.getenv("WRK_HEADERS") or "", "[^|]+") do
  local name, value = string.match(pair, "^%s*([^:]+):%s*(.*)$")
  if name then wrk.headers[name] = value end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"p50_us":%d,"p99_us":%d,"errors_connect":%d,"errors_read":%d,' ..
    '"errors_write":%d,"errors_status":%d,"errors_timeout":%d}\n',
    summary.requests, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
