-- wrk script: every request is a distinct PIOPIY live event (so dedupe never hides work).
-- Usage: wrk -t2 -c64 -d10s -s bench/live-events.lua http://127.0.0.1:PORT/webhooks/piopiy/live
local counter = 0
-- A per-run salt: ids never repeat across runs against the same outbox.
math.randomseed(os.time())
local salt = tostring(os.time()) .. tostring(math.random(1, 1000000000))
thread_id = 0
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

request = function()
  counter = counter + 1
  local body = string.format(
    '{"appid":2222224,"callerid":440000000000,"conversation_uuid":"bench-%s-%d-%d","direction":"outbound",' ..
    '"extra_params":"{\\"key\\":\\"value\\"}","from":440000000000,"leg":"a","request_id":"bench-%s-%d-%d",' ..
    '"status":"out_started","time":%d,"to":19170000000,"cmiuuid":"bench-%s-%d-%d","vn":440000000000}',
    salt, thread_id, counter, salt, thread_id, counter, 1725942871456 + counter, salt, thread_id, counter)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end

function done(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format("REQUESTS %d NON2XX %d P50_MS %.3f P99_MS %.3f RPS %.1f\n",
    summary.requests, non2xx, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests / (summary.duration / 1e6)))
end
