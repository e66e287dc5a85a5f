#!/usr/bin/env python3
"""webhook_to_reply for bench/run (stdlib only): a fake Telegram Bot API and a constant-rate sender
of Telegram webhooks in one asyncio process, so both ends read the same clock.

  tg_reply.py API_BASE WEBHOOK_PATH SECRET FAKE_PORT RATE SECONDS [--drain S] [--conns N]

- The fake listens on 127.0.0.1:FAKE_PORT (the api and the worker get
  TELEGRAM_API_BASE=http://127.0.0.1:FAKE_PORT) and answers `POST /bot{token}/sendMessage` as
  Telegram does: `{"ok": true, "result": {message object}}`; it records when each request has fully
  arrived, by `chat_id`. Any other method gets `{"ok": true, "result": true}`.
- The sender POSTs RATE updates per second for SECONDS (open loop: update i is due at
  start + i / RATE whatever the answers) over up to N keep-alive connections, each update a new
  private chat (a distinct sender, so no two share the 2 s burst-coalescing window) with one text.
  An update that finds every connection busy waits for one; how late updates went out is recorded.
- Then it waits up to S seconds (default 30) for the replies still missing.

Per message, latency = arrival of its sendMessage at the fake − the moment its webhook was written.
Printed: raw figures; minus the nominal 2 s window (`raw - 2000 ms`); and after the reply job's
due time (the job is scheduled at enqueue + 2 s rounded up to the whole second, the scheduled set's
resolution, so the due time is ceil(enqueue + 2 s); the enqueue happens between the webhook's
write and its 200, and a message whose two bounds round to different seconds is counted as
ambiguous and measured from the later). One line `BENCH_JSON {...}`.
"""

import argparse
import asyncio
import json
import math
import sys
import time

from http1 import read_request

WINDOW_S = 2.0  # shared::channels::inbound::COALESCE

POOL = [
    "hola, busco un depto de 2 dormitorios en Ñuñoa (consulta {n})",
    "me interesa una casa en Maipú, referencia {n}",
    "gano 1,5 millones líquidos, consulta {n}",
    "mi presupuesto es de 3000 UF, consulta {n}",
    "quiero comprar en los próximos 3 meses, mensaje {n}",
    "¿el proyecto tiene estacionamiento? consulta {n}",
    "busco algo cerca del metro en Providencia, mensaje {n}",
    "somos 4 en la familia, necesitamos 3 dormitorios ({n})",
]


def pct(values, q):
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))
    return round(s[k], 2)


def dist(values):
    if not values:
        return {"count": 0}
    return {"count": len(values), "mean": round(sum(values) / len(values), 2), "p50": pct(values, 50),
            "p90": pct(values, 90), "p99": pct(values, 99), "p99.9": pct(values, 99.9), "max": round(max(values), 2),
            "min": round(min(values), 2)}


class Fake:
    """The Bot API side: records each sendMessage's arrival (monotonic seconds) by chat id."""

    def __init__(self):
        self.arrivals = {}  # chat_id -> [monotonic arrival, ...]
        self.other_calls = 0
        self.bad_requests = 0
        self.next_id = 1
        self.handlers = set()

    async def handle(self, reader, writer):
        self.handlers.add(asyncio.current_task())
        try:
            while True:
                request = await read_request(reader)
                if request is None:
                    return
                path, body = request
                arrived = time.monotonic()
                if path.endswith("/sendMessage"):
                    try:
                        req = json.loads(body)
                        chat = int(req["chat_id"])
                    except (ValueError, KeyError, TypeError):
                        self.bad_requests += 1
                        out = {"ok": False, "error_code": 400, "description": "Bad Request: chat_id is empty"}
                        status = "400 Bad Request"
                    else:
                        self.arrivals.setdefault(chat, []).append(arrived)
                        mid = self.next_id
                        self.next_id += 1
                        out = {"ok": True, "result": {
                            "message_id": mid, "date": int(time.time()),
                            "from": {"id": 7000000001, "is_bot": True, "first_name": "Sofía", "username": "sofia_bench_bot"},
                            "chat": {"id": chat, "first_name": "Cliente", "type": "private"},
                            "text": req.get("text", "")}}
                        status = "200 OK"
                else:
                    self.other_calls += 1
                    out, status = {"ok": True, "result": True}, "200 OK"
                data = json.dumps(out).encode()
                writer.write(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
                await writer.drain()
        except asyncio.CancelledError:
            pass
        finally:
            self.handlers.discard(asyncio.current_task())
            writer.close()


class Conn:
    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def post(self, path, headers, body):
        if self.writer is None:
            await self.open()
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += f"Content-Length: {len(body)}\r\n\r\n"
        self.writer.write(head.encode() + body)
        written_mono, written_wall = time.monotonic(), time.time()
        resp_head = await self.reader.readuntil(b"\r\n\r\n")
        lines = resp_head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        length, close = 0, False
        for h in lines[1:]:
            k, _, v = h.partition(":")
            if k.lower() == "content-length":
                length = int(v.strip())
            elif k.lower() == "connection" and v.strip().lower() == "close":
                close = True
        data = await self.reader.readexactly(length) if length else b""
        answered_wall = time.time()
        if close:
            self.writer.close()
            self.writer = None
        return status, data, written_mono, written_wall, answered_wall


async def main(a) -> int:
    fake = Fake()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", a.fake_port)
    host_port = a.api_base.split("://", 1)[1].rstrip("/")
    host, port = host_port.rsplit(":", 1)
    port = int(port)
    pool = asyncio.Queue()
    for _ in range(a.conns):
        pool.put_nowait(Conn(host, port))
    total = int(a.rate * a.seconds)
    base_chat = 800000000 + (int(time.time()) % 1000) * 100000  # distinct per run
    sent = {}  # chat -> (written_mono, written_wall, answered_wall)
    errors = {"status": 0, "socket": 0}
    error_samples = []
    lateness_ms = []
    webhook_ms = []

    async def one(i, due):
        conn = await pool.get()
        try:
            chat = base_chat + i
            lateness_ms.append((time.monotonic() - due) * 1000)
            body = json.dumps({"update_id": base_chat + i, "message": {
                "message_id": 1, "date": int(time.time()),
                "from": {"id": chat, "is_bot": False, "first_name": "Cliente", "last_name": str(i), "language_code": "es"},
                "chat": {"id": chat, "first_name": "Cliente", "last_name": str(i), "type": "private"},
                "text": POOL[i % len(POOL)].format(n=i)}}, ensure_ascii=False).encode()
            try:
                status, data, w_mono, w_wall, ans_wall = await conn.post(
                    a.path, {"X-Telegram-Bot-Api-Secret-Token": a.secret}, body)
            except (ConnectionError, asyncio.IncompleteReadError, OSError) as e:
                errors["socket"] += 1
                if len(error_samples) < 5:
                    error_samples.append(repr(e))
                conn.writer = None
                return
            webhook_ms.append((ans_wall - w_wall) * 1000)
            if status != 200:
                errors["status"] += 1
                if len(error_samples) < 5:
                    error_samples.append(f"{status} {data[:200]!r}")
                return
            sent[chat] = (w_mono, w_wall, ans_wall)
        finally:
            pool.put_nowait(conn)

    start = time.monotonic() + 0.2
    tasks = []
    for i in range(total):
        due = start + i / a.rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    send_s = time.monotonic() - start
    deadline = time.monotonic() + a.drain
    while time.monotonic() < deadline and any(c not in fake.arrivals for c in sent):
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # a second copy of a reply would arrive now
    server.close()
    for t in list(fake.handlers):
        t.cancel()
    await asyncio.gather(*fake.handlers, return_exceptions=True)
    while not pool.empty():
        c = pool.get_nowait()
        if c.writer is not None:
            c.writer.close()

    raw, minus_window, after_due = [], [], []
    ambiguous = duplicates = 0
    for chat, (w_mono, w_wall, ans_wall) in sent.items():
        got = fake.arrivals.get(chat)
        if not got:
            continue
        duplicates += len(got) - 1
        r = got[0] - w_mono
        raw.append(r * 1000)
        minus_window.append((r - WINDOW_S) * 1000)
        lo, hi = math.ceil(w_wall + WINDOW_S), math.ceil(ans_wall + WINDOW_S)
        if lo != hi:
            ambiguous += 1
        due_wall = hi
        after_due.append((w_wall + r - due_wall) * 1000)
    unexpected = sum(len(v) for c, v in fake.arrivals.items() if c not in sent)
    replied = len(raw)
    res = {
        "rate_per_sec": a.rate, "seconds": a.seconds, "messages": total, "webhooks_ok": len(sent),
        "replies": replied, "missing": len(sent) - replied, "duplicate_replies": duplicates,
        "unexpected_replies": unexpected, "fake_other_calls": fake.other_calls, "fake_bad_requests": fake.bad_requests,
        "errors_status": errors["status"], "errors_socket": errors["socket"], "error_samples": error_samples,
        "send_s": round(send_s, 2), "achieved_rate_per_sec": round(total / send_s, 1) if send_s > 0 else None,
        "send_lateness_ms": dist(lateness_ms), "webhook_latency_ms": dist(webhook_ms),
        "raw_ms": dist(raw), "minus_window_ms": dist(minus_window), "after_due_ms": dist(after_due),
        "after_due_ambiguous": ambiguous, "window_s": WINDOW_S, "client_connections": a.conns,
    }
    print("BENCH_JSON " + json.dumps(res, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("api_base")
    ap.add_argument("path")
    ap.add_argument("secret")
    ap.add_argument("fake_port", type=int)
    ap.add_argument("rate", type=float)
    ap.add_argument("seconds", type=float)
    ap.add_argument("--drain", type=float, default=30.0)
    ap.add_argument("--conns", type=int, default=32)
    sys.exit(asyncio.run(main(ap.parse_args())))
