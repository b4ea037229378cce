-- wrk script for `cargo bench --bench http`: sends DEPTH requests in one write (pipelining; `-- DEPTH`,
-- default 1), checks every response (status 200 and body "Hello, World"), and prints one JSON line at the
-- end: responses checked, bad ones, socket errors, bytes read, and the run's seconds.
--
-- With SOCKLAB_HTTP_LIGHT=1 in the environment the per-response hook is left out, since it costs wrk more CPU
-- than most servers spend on a request. wrk's own parser still frames every response and counts every
-- status >= 400 as an error, and the bench checks the bytes read against the responses times the length it
-- probed: every status and every length checked, not every body.
local light = os.getenv("SOCKLAB_HTTP_LIGHT") == "1"
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local depth = tonumber(args[1]) or 1
  local one = wrk.format()
  local all = {}
  for i = 1, depth do all[i] = one end
  batch = table.concat(all)
  bad = 0
  checked = 0
end

function request()
  return batch
end

if not light then
  function response(status, headers, body)
    checked = checked + 1
    if status ~= 200 or body ~= "Hello, World" then
      bad = bad + 1
    end
  end
end

function done(summary, latency, requests)
  local total_bad, total_checked = 0, 0
  for _, thread in ipairs(threads) do
    total_bad = total_bad + thread:get("bad")
    total_checked = total_checked + thread:get("checked")
  end
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  if light then total_checked = summary.requests end
  io.write(string.format('{"responses":%d,"bad":%d,"errors":%d,"seconds":%.3f,"wrk_requests":%d,"bytes":%d}\n',
    total_checked, total_bad, errors, summary.duration / 1e6, summary.requests, summary.bytes))
end
