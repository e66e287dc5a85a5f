-- POST /api/v1/chat/test: each request a new message from one of the seeded leads (ids, one a line,
-- in the file BENCH_CHAT_LEADS_FILE), in turn. Messages come from a pool of ordinary lead messages, each made
-- unique by a counter, so no lead ever repeats itself (which Sofía would treat as a loop and hand to
-- a person) and every request runs the whole pipeline.
-- The Authorization header comes from wrk's -H.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local ids = {}
local file = assert(io.open(os.getenv("BENCH_CHAT_LEADS_FILE") or "", "r"), "BENCH_CHAT_LEADS_FILE unreadable")
for line in file:lines() do
  if line:match("^%d+$") then ids[#ids + 1] = line end
end
file:close()
assert(#ids > 0, "no lead ids in BENCH_CHAT_LEADS_FILE")

local pool = {
  "hola, busco un depto de 2 dormitorios en Ñuñoa (consulta %d)",
  "me interesa una casa en Maipú, referencia %d",
  "gano 1,5 millones líquidos, consulta %d",
  "no tengo DICOM, estoy al día (mensaje %d)",
  "mi presupuesto es de 3000 UF, consulta %d",
  "quiero comprar en los próximos 3 meses, mensaje %d",
  "¿el proyecto tiene estacionamiento? consulta %d",
  "busco algo cerca del metro en Providencia, mensaje %d",
  "somos 4 en la familia, necesitamos 3 dormitorios (%d)",
  "trabajo como independiente hace 5 años, consulta %d",
}

local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

local counter = 0
function init(args)
  wrk.method = "POST"
  wrk.path = "/api/v1/chat/test"
  wrk.headers["Content-Type"] = "application/json"
  math.randomseed(os.time() + (tid or 0) * 7919)
end

-- The threads take turns through the leads in order (thread t of T: leads t, t + T, t + 2T, …), so a
-- lead writes again only after every other lead has: never while its previous message is still being
-- answered (a lead's turns are answered one at a time, under its lock, and waiting behind itself
-- is not what this measures).
local nthreads = tonumber(os.getenv("BENCH_WRK_THREADS") or "1") or 1

function request()
  counter = counter + 1
  local id = ids[((counter - 1) * nthreads + (tid or 0)) % #ids + 1]
  local text = string.format(pool[math.random(#pool)], (tid or 0) * 1000000 + counter)
  local body = string.format('{"message":"%s","lead_id":%s}', text, id)
  return wrk.format(nil, nil, nil, body)
end
