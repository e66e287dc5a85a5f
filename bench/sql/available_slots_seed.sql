-- Seed of the available_slots scenario (bench/run): a broker's AGENT users and, spread over its
-- first two weeks from :start_date (a Monday), their booked appointments: one lead each, one hour,
-- within the default hours (Monday–Friday 09:00–18:00, America/Santiago). Appointment k goes to agent
-- k mod :agents; an agent's j-th appointment takes weekday slot (7·j + agent) mod 90 of the 90 hourly
-- weekday slots, so an agent's appointments never overlap (7 and 90 are coprime) while different
-- agents are busy at different times. At most 90 appointments per agent.
--
--   psql -v broker_id=N -v agents=20 -v appointments=500 -v start_date=YYYY-MM-DD -f available_slots_seed.sql
\set ON_ERROR_STOP on

INSERT INTO users (email, hashed_password, name, role, broker_id)
SELECT format('slots-agent-%s-%s@bench.cl', :broker_id, g), 'bench: no login', format('Agente %s', lpad(g::text, 2, '0')),
       'AGENT', :broker_id
FROM generate_series(1, :agents) g;

INSERT INTO leads (broker_id, name, phone, email)
SELECT :broker_id, format('Lead Agenda %s', g), '+5697' || lpad(g::text, 7, '0'), format('agenda-%s@bench.cl', g)
FROM generate_series(1, :appointments) g;

WITH a AS (
    SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM users WHERE broker_id = :broker_id AND role = 'AGENT'
), l AS (
    SELECT id, row_number() OVER (ORDER BY id) - 1 AS k FROM leads
    WHERE broker_id = :broker_id AND email LIKE 'agenda-%@bench.cl'
), p AS (
    SELECT l.id AS lead_id, a.id AS agent_id, ((l.k / :agents) * 7 + a.n) % 90 AS s
    FROM l JOIN a ON a.n = l.k % :agents
), t AS (
    SELECT lead_id, agent_id,
           ((:'start_date'::date + ((s / 9) / 5 * 7 + (s / 9) % 5)::int)::timestamp
             + make_interval(hours => (9 + s % 9)::int)) AT TIME ZONE 'America/Santiago' AS start_time
    FROM p
)
INSERT INTO appointments (broker_id, lead_id, agent_id, appointment_type, status, start_time, end_time, duration_minutes)
SELECT :broker_id, lead_id, agent_id, 'virtual_meeting', 'scheduled', start_time, start_time + interval '1 hour', 60
FROM t;

ANALYZE users;
ANALYZE leads;
ANALYZE appointments;
