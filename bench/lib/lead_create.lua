-- POST /api/v1/leads, every request with a phone and email never used before.
--
-- Phone: +569 P T CCCCCC where P is BENCH_PHONE_PREFIX (one digit; bench/run uses a different one for
-- the warm-up and the measured run, and neither is used by the seeded leads), T the wrk thread number
-- and CCCCCC a per-thread counter (so at most 10 threads and 999 999 requests per thread).
-- The Authorization header comes from wrk's -H.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local prefix = os.getenv("BENCH_PHONE_PREFIX") or "5"
local threads = 0

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
  if threads > 10 then error("lead_create.lua supports at most 10 threads") end
end

local counter = 0

function init(args)
  wrk.method = "POST"
  wrk.path = "/api/v1/leads"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local n = string.format("%s%d%06d", prefix, tid or 0, counter)
  local body = string.format(
    '{"phone":"+569%s","name":"Bench Lead %s","email":"c%s@bench.cl","tags":["bench"]}', n, n, n)
  return wrk.format(nil, nil, nil, body)
end
