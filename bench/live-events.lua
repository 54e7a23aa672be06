-- wrk script: every request is a distinct PIOPIY live event (so dedupe never hides work).
--
-- Timed load:   wrk -t2 -c64 -d12s -s bench/live-events.lua http://127.0.0.1:PORT/webhooks/piopiy/live
-- Fixed count:  BENCH_FIXED_COUNT=1 wrk -t2 -c16 -d600s -s bench/live-events.lua URL -- COUNT THREADS
--   each thread stops sending after COUNT/THREADS answers (THREADS must equal -t). wrk itself
--   still waits for the end of -d, so bench/bench.py sends it SIGINT (wrk then prints its summary)
--   once the server has stored COUNT. A few more than COUNT may be stored (requests in flight):
--   read the exact number from the server, not from here.
--
-- done() prints one machine-readable line that bench/bench.py parses:
--   REQUESTS n NON2XX n P50_MS x P99_MS x RPS x
-- REQUESTS counts completed answers; NON2XX counts status >= 400 (wrk's summary.errors.status).
local counter = 0
-- `time` is the event's wall-clock time in milliseconds, as PIOPIY sends it (LuaJIT's ffi reads the
-- clock; wrk runs LuaJIT). Until 2026-12-01 it was a fixed 2024 base plus a per-thread counter,
-- which made the two wrk threads' events hours apart in `time` and never current.
local ffi = require("ffi")
ffi.cdef[[
  typedef struct { long tv_sec; long tv_usec; } bench_timeval;
  int gettimeofday(bench_timeval *tv, void *tz);
]]
local tv = ffi.new("bench_timeval")
local function now_ms()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + math.floor(tonumber(tv.tv_usec) / 1000)
end
-- A per-run salt: ids never repeat across runs against the same outbox.
math.randomseed(os.time() + os.clock() * 1e6)
local salt = tostring(os.time()) .. tostring(math.random(1, 1000000000))
thread_id = 0
limit = 0
local threads = {}
local wanted, nthreads = 0, 1

function init(args)
  -- Runs once per thread, in that thread's Lua state, before the first request.
  math.randomseed(os.time() * 1000 + thread_id * 7919 + math.floor(os.clock() * 1e6))
  if args[1] ~= nil then
    wanted = tonumber(args[1]) or 0
    nthreads = tonumber(args[2]) or 1
    limit = math.ceil(wanted / nthreads)
  end
end

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

-- A random UUID (version 4 layout), as PIOPIY's call ids are: a call id is indexed, so sequential
-- ids would make the outbox's index look cheaper than it is in production.
local function uuid()
  return string.format("%08x-%04x-4%03x-%04x-%04x%08x", math.random(0, 0x7fffffff) * 2 + math.random(0, 1),
    math.random(0, 0xffff), math.random(0, 0xfff), 0x8000 + math.random(0, 0x3fff), math.random(0, 0xffff),
    math.random(0, 0x7fffffff) * 2 + math.random(0, 1))
end

request = function()
  counter = counter + 1
  local call = uuid()
  local body = string.format(
    '{"appid":2222224,"callerid":440000000000,"conversation_uuid":"%s","direction":"outbound",' ..
    '"extra_params":"{\\"key\\":\\"value\\"}","from":440000000000,"leg":"a","request_id":"bench-%s-%d-%d",' ..
    '"status":"out_started","time":%d,"to":19170000000,"cmiuuid":"%s","vn":440000000000}',
    call, salt, thread_id, counter, now_ms(), call)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end

local answered = 0
response = nil
if os.getenv("BENCH_FIXED_COUNT") == "1" then
  -- Defining response() costs a Lua call per answer, so it only exists in fixed-count mode.
  response = function(status, headers, body)
    answered = answered + 1
    if limit > 0 and answered >= limit then wrk.thread:stop() end
  end
end

function done(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format("REQUESTS %d NON2XX %d P50_MS %.3f P99_MS %.3f RPS %.1f\n",
    summary.requests, non2xx, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests / (summary.duration / 1e6)))
  io.write(string.format("SOCKET_ERRORS connect %d read %d write %d timeout %d\n",
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
end
