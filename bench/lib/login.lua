-- POST /auth/login with the credentials in BENCH_LOGIN_EMAIL / BENCH_LOGIN_PASSWORD.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local email = os.getenv("BENCH_LOGIN_EMAIL") or error("BENCH_LOGIN_EMAIL is not set")
local password = os.getenv("BENCH_LOGIN_PASSWORD") or error("BENCH_LOGIN_PASSWORD is not set")

wrk.method = "POST"
wrk.path = "/auth/login"
wrk.headers["Content-Type"] = "application/json"
-- The harness only uses [A-Za-z0-9@.!_-] in credentials, so no JSON escaping is needed.
wrk.body = string.format('{"email":"%s","password":"%s"}', email, password)
