-- Shared wrk `done` hook: prints one line `BENCH_JSON {...}` with the run's totals and latency
-- percentiles (microseconds), which bench/lib/report.py picks up. Loaded by the other scripts with
-- dofile; also usable on its own (`wrk -s bench/lib/report.lua …`) for plain GET scenarios.
--
-- wrk counts `errors.status` for responses with status >= 400; connect/read/write/timeout are socket
-- errors. Timed-out requests are not part of the latency distribution.

function done(summary, latency, requests)
  local e = summary.errors
  local p = function(q) return latency:percentile(q) end
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d,' ..
    '"latency_p50_us":%d,"latency_p75_us":%d,"latency_p90_us":%d,"latency_p99_us":%d,"latency_p999_us":%d,' ..
    '"latency_mean_us":%.1f,"latency_max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    p(50), p(75), p(90), p(99), p(99.9),
    latency.mean, latency.max))
end
