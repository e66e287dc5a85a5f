-- POST /webhooks/telegram: Telegram updates for the platform bot, as Telegram sends them, with the
-- secret token header (BENCH_TG_SECRET). Every request is a new update (unique update_id) with a new
-- message (unique message_id, so a new `{chat_id}:{message_id}` key) from one of BENCH_TG_SENDERS
-- private chats picked at random: a sender's first message creates its lead, later ones find it by
-- its earlier messages. The run phase (BENCH_PHONE_PREFIX: 5 warm-up, 6 measured) and the wrk thread
-- are part of the ids, so no two requests of a run share an update or a message.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local senders = tonumber(os.getenv("BENCH_TG_SENDERS") or "") or 20000
local phase = tonumber(os.getenv("BENCH_PHONE_PREFIX") or "") or 0

local pool = {
  "hola, busco un depto de 2 dormitorios en Ñuñoa (consulta %d)",
  "me interesa una casa en Maipú, referencia %d",
  "gano 1,5 millones líquidos, consulta %d",
  "no tengo DICOM, estoy al día (mensaje %d)",
  "mi presupuesto es de 3000 UF, consulta %d",
  "quiero comprar en los próximos 3 meses, mensaje %d",
  "¿el proyecto tiene estacionamiento? consulta %d",
  "busco algo cerca del metro en Providencia, mensaje %d",
}

local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

local counter = 0
function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-Telegram-Bot-Api-Secret-Token"] = os.getenv("BENCH_TG_SECRET") or ""
  math.randomseed(os.time() + (tid or 0) * 7919 + phase * 104729)
end

function request()
  counter = counter + 1
  -- phase (1 digit) . thread (1 digit) . counter (8 digits)
  local n = phase * 1000000000 + (tid or 0) * 100000000 + counter
  local chat = 700000000 + math.random(senders)
  local text = string.format(pool[counter % #pool + 1], n)
  local body = string.format(
    '{"update_id":%d,"message":{"message_id":%d,"date":%d,' ..
    '"from":{"id":%d,"is_bot":false,"first_name":"Cliente","last_name":"%d","language_code":"es"},' ..
    '"chat":{"id":%d,"first_name":"Cliente","last_name":"%d","type":"private"},"text":"%s"}}',
    n, n, 1790000000 + counter, chat, chat, chat, chat, text)
  return wrk.format(nil, nil, nil, body)
end
