-- Reports a wrk run as one JSON line, so the harness reads numbers instead of scraping wrk's text.
-- Owns only done(); loaded by itself (plain runs) or from pipeline.lua. Latency is in microseconds
-- and, as with any closed-loop wrk run, suffers from coordinated omission (see bench/README.md).
function done(summary, latency, requests)
  local e = summary.errors
  local p = {}
  for _, q in ipairs({{"p50", 50}, {"p90", 90}, {"p99", 99}, {"p99.9", 99.9}}) do
    p[#p + 1] = string.format('"%s": %.1f', q[1], latency:percentile(q[2]))
  end
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "errors": {"connect": %d, '
      .. '"read": %d, "write": %d, "status": %d, "timeout": %d}, "latency_us": {%s, "max": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, table.concat(p, ", "), latency.max))
end
