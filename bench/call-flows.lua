-- wrk script for the call-state benchmark (bench/callstate.py): each connection plays whole
-- outbound calls, four webhooks each, as PIOPIY sends them: out_started (leg a), out_answered
-- (leg a), out_bridged (leg b), out_hangup (leg a). Every call is new (random UUIDs), so every
-- webhook changes its call's state: the worst case for the state's cost per webhook.
local ffi = require("ffi")
ffi.cdef[[
  typedef struct { long tv_sec; long tv_usec; } flows_timeval;
  int gettimeofday(flows_timeval *tv, void *tz);
]]
local tv = ffi.new("flows_timeval")
local function now_ms()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + math.floor(tonumber(tv.tv_usec) / 1000)
end

local function uuid()
  return string.format("%08x-%04x-4%03x-%04x-%04x%08x", math.random(0, 0x7fffffff) * 2 + math.random(0, 1),
    math.random(0, 0xffff), math.random(0, 0xfff), 0x8000 + math.random(0, 0x3fff), math.random(0, 0xffff),
    math.random(0, 0x7fffffff) * 2 + math.random(0, 1))
end

thread_id = 0
local threads = {}
function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  math.randomseed(os.time() * 1000 + thread_id * 7919 + math.floor(os.clock() * 1e6))
end

local step, conversation, legA, legB = 4, nil, nil, nil
local statuses = { {"out_started", "a"}, {"out_answered", "a"}, {"out_bridged", "b"}, {"out_hangup", "a"} }
request = function()
  step = step + 1
  if step > 4 then
    step, conversation, legA, legB = 1, uuid(), uuid(), uuid()
  end
  local status, leg = statuses[step][1], statuses[step][2]
  local body = string.format(
    '{"appid":2222224,"cmiuuid":"%s","conversation_uuid":"%s","direction":"outbound","from":440000000000,' ..
    '"leg":"%s","status":"%s","time":%d,"to":19170000000,"request_id":"bench-%s"}',
    leg == "a" and legA or legB, conversation, leg, status, now_ms(), conversation)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end

function done(summary, latency, requests)
  io.write(string.format("REQUESTS %d NON2XX %d P50_MS %.3f P99_MS %.3f RPS %.1f\n",
    summary.requests, summary.errors.status, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests / (summary.duration / 1e6)))
end
