#!/usr/bin/env python3
"""Time to first token of POST /api/v1/chat/stream (standard library only).

Keeps CONNS requests in flight for SECONDS, each a new message from one of the seeded leads, and
measures, per request, the time from sending it to the first `data: {"token": …}` frame (the api's
whole pipeline plus the first frame, before the word-by-word replay pacing), and to the `done`
frame. Each request uses its own connection (`Connection: close`), so the stream's end is the
socket's end. Prints one line `BENCH_JSON {...}`.

usage: sse_ttft.py BASE_URL TOKEN LEADS_FILE CONNS SECONDS
"""
import asyncio
import json
import random
import sys
import time
from urllib.parse import urlparse

MESSAGES = [
    "hola, busco un depto de 2 dormitorios en Ñuñoa (consulta {n})",
    "me interesa una casa en Maipú, referencia {n}",
    "gano 1,5 millones líquidos, consulta {n}",
    "no tengo DICOM, estoy al día (mensaje {n})",
    "mi presupuesto es de 3000 UF, consulta {n}",
    "busco algo cerca del metro en Providencia, mensaje {n}",
]


def pct(values, q):
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))], 3)


async def one(host, port, token, lead_id, n, stats):
    body = json.dumps({"message": random.choice(MESSAGES).format(n=n), "lead_id": lead_id}).encode()
    head = (
        f"POST /api/v1/chat/stream HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    t0 = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        stats["errors"] += 1
        return
    try:
        writer.write(head + body)
        await writer.drain()
        buf = b""
        first = None
        status = None
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            buf += chunk
            if status is None and b"\r\n" in buf:
                try:
                    status = int(buf.split(b"\r\n", 1)[0].split()[1])
                except (IndexError, ValueError):
                    status = 0
            if first is None and b'data: {"token": ' in buf:
                first = time.perf_counter()
        t_end = time.perf_counter()
        if status != 200 or first is None or b'"done": true' not in buf:
            stats["errors"] += 1
            if len(stats["error_samples"]) < 3:
                stats["error_samples"].append(buf[:300].decode("utf-8", "replace"))
            return
        stats["ttft"].append((first - t0) * 1000)
        stats["total"].append((t_end - t0) * 1000)
    finally:
        writer.close()


async def worker(host, port, token, ids, deadline, stats, wid):
    n = 0
    while time.perf_counter() < deadline:
        n += 1
        await one(host, port, token, random.choice(ids), wid * 1_000_000 + n, stats)


async def main():
    base, token, leads_file, conns, seconds = sys.argv[1:6]
    u = urlparse(base)
    ids = [int(x) for x in open(leads_file).read().split() if x.isdigit()]
    stats = {"ttft": [], "total": [], "errors": 0, "error_samples": []}
    t0 = time.perf_counter()
    deadline = t0 + float(seconds)
    await asyncio.gather(*(worker(u.hostname, u.port, token, ids, deadline, stats, i) for i in range(int(conns))))
    elapsed = time.perf_counter() - t0
    ok = len(stats["ttft"])
    out = {
        "requests": ok + stats["errors"],
        "errors": stats["errors"],
        "error_samples": stats["error_samples"],
        "duration_s": round(elapsed, 2),
        "connections": int(conns),
        "requests_per_sec": round(ok / elapsed, 1) if elapsed else None,
        "ttft_ms": {q: pct(stats["ttft"], v) for q, v in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))},
        "stream_total_ms": {q: pct(stats["total"], v) for q, v in (("p50", 50), ("p99", 99))},
    }
    print("BENCH_JSON " + json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
