-- POST /api/v1/calls/webhook: VAPI server messages for the seeded calls (external ids, one a line, in
-- the file BENCH_VOICE_CALLS_FILE), authenticated with x-vapi-secret (BENCH_VAPI_SECRET). Every
-- other event is a final transcript line (unique text and timestamp, so each is stored) and the rest
-- status updates ("in-progress": a call already answered keeps its status), as a live call sends them.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local ids = {}
local file = assert(io.open(os.getenv("BENCH_VOICE_CALLS_FILE") or "", "r"), "BENCH_VOICE_CALLS_FILE unreadable")
for line in file:lines() do
  if line:match("^%S+$") then ids[#ids + 1] = line end
end
file:close()
assert(#ids > 0, "no call ids in BENCH_VOICE_CALLS_FILE")

local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

local counter = 0
function init(args)
  wrk.method = "POST"
  wrk.path = "/api/v1/calls/webhook"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["x-vapi-secret"] = os.getenv("BENCH_VAPI_SECRET") or ""
  math.randomseed(os.time() + (tid or 0) * 7919)
end

function request()
  counter = counter + 1
  local id = ids[math.random(#ids)]
  local n = (tid or 0) * 100000000 + counter
  local body
  if counter % 2 == 0 then
    local role = (counter % 4 == 0) and "user" or "assistant"
    body = string.format(
      '{"message":{"type":"transcript","role":"%s","transcriptType":"final","transcript":"línea %d: me interesa un depto en Ñuñoa","timestamp":%d,"call":{"id":"%s"}}}',
      role, n, 1790000000000 + n, id)
  else
    body = string.format('{"message":{"type":"status-update","status":"in-progress","call":{"id":"%s"}}}', id)
  end
  return wrk.format(nil, nil, nil, body)
end
