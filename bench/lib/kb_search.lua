-- POST /api/v1/kb/search {"query": …, "top_k": 5}, cycling through realistic questions (the same
-- list as WRK_QUESTIONS in worker/examples/kb_bench.rs, whose recall mode measures them too).
-- The Authorization header comes from wrk's -H.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local questions = {
  "¿Aceptan mascotas en el edificio?",
  "¿Cuál es el horario de visitas de la sala de ventas?",
  "¿Puedo postular con subsidio DS1?",
  "Estoy en DICOM, ¿me pueden dar crédito hipotecario?",
  "¿De cuánto es el pie y se puede pagar en cuotas?",
  "¿El estacionamiento viene incluido en el precio?",
  "¿Cuánto salen los gastos comunes?",
  "departamento con piscina temperada en Ñuñoa",
  "casa con jardín privado en La Florida",
  "oficina con estacionamiento en Providencia",
  "¿Hay departamentos de 3 dormitorios en Las Condes?",
  "¿Qué renta necesito para el dividendo?",
  "¿Cuándo se firma la escritura y entregan las llaves?",
  "arriendo con opción de compra en Maipú",
  "¿Las contribuciones tienen rebaja por DFL2?",
  "¿Tienen quincho y gimnasio en el condominio?",
}

local bodies = {}
for i, q in ipairs(questions) do
  bodies[i] = string.format('{"query":"%s","top_k":5}', q)
end

local counter = 0

function init(args)
  wrk.method = "POST"
  wrk.path = "/api/v1/kb/search"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, bodies[(counter % #bodies) + 1])
end
