#!/usr/bin/env python3
"""chat_llm for bench/run (stdlib only): a fake OpenAI-compatible server that answers every
`POST /v1/chat/completions` after a fixed delay, as a real model would after thinking.

  fake_openai.py PORT DELAY_MS

- Plain requests get a `chat.completion` object; `"stream": true` gets the same answer as
  `chat.completion.chunk` server-sent events ending in `data: [DONE]`; both carry `usage`.
- JSON-mode requests (`response_format: {"type": "json_object"}`, the extraction call) get `{}`:
  the model found nothing the rules had not.
- HTTP/1.1 keep-alive, one asyncio task per connection, so the delay is waited concurrently for
  every request in flight. It counts the requests and, on SIGTERM, prints one line
  `FAKE_JSON {"requests": n, "json_mode": n, "max_in_flight": n}`.
"""

import asyncio
import json
import signal
import sys
import time

from http1 import read_request

REPLY = "¡Hola! Con gusto te ayudo a encontrar tu próxima propiedad. ¿En qué comuna te gustaría vivir?"


class Fake:
    def __init__(self, delay_s):
        self.delay_s = delay_s
        self.requests = 0
        self.json_mode = 0
        self.in_flight = 0
        self.max_in_flight = 0

    def answer(self, req):
        json_mode = (req.get("response_format") or {}).get("type") == "json_object"
        content = "{}" if json_mode else REPLY
        usage = {"prompt_tokens": 420, "completion_tokens": 2 if json_mode else 24,
                 "total_tokens": 422 if json_mode else 444}
        model = req.get("model") or "gpt-4o-mini"
        created = int(time.time())
        if not req.get("stream"):
            body = {"id": f"chatcmpl-bench{self.requests}", "object": "chat.completion", "created": created,
                    "model": model, "choices": [{"index": 0, "finish_reason": "stop",
                                                 "message": {"role": "assistant", "content": content}}],
                    "usage": usage}
            return "application/json", json.dumps(body).encode()
        chunks = []
        words = content.split(" ")
        for i, w in enumerate(words):
            piece = w if i == 0 else " " + w
            chunks.append({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": created,
                           "model": model, "choices": [{"index": 0, "delta": {"content": piece},
                                                        "finish_reason": None}]})
        chunks.append({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage})
        data = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return "text/event-stream", data.encode()

    async def handle(self, reader, writer):
        try:
            while True:
                request = await read_request(reader)
                if request is None:
                    return
                path, body = request
                self.requests += 1
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    if not path.endswith("/chat/completions"):
                        status, ctype, data = "404 Not Found", "application/json", b'{"error":{"message":"not found"}}'
                    else:
                        try:
                            req = json.loads(body)
                        except ValueError:
                            req = {}
                        if (req.get("response_format") or {}).get("type") == "json_object":
                            self.json_mode += 1
                        await asyncio.sleep(self.delay_s)
                        ctype, data = self.answer(req)
                        status = "200 OK"
                finally:
                    self.in_flight -= 1
                writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                             f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
                await writer.drain()
        except (asyncio.CancelledError, ConnectionError):
            pass
        finally:
            writer.close()


async def main():
    port, delay_ms = int(sys.argv[1]), float(sys.argv[2])
    fake = Fake(delay_ms / 1000.0)
    server = await asyncio.start_server(fake.handle, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"fake openai on 127.0.0.1:{port}, {delay_ms} ms per answer", file=sys.stderr, flush=True)
    async with server:
        await stop.wait()
    print("FAKE_JSON " + json.dumps({"requests": fake.requests, "json_mode": fake.json_mode,
                                     "max_in_flight": fake.max_in_flight}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
