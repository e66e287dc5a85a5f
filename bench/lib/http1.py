"""The request side of a minimal HTTP/1.1 keep-alive server, shared by the bench's fake providers
(`fake_openai.py`, `tg_reply.py`; stdlib only)."""

import asyncio


async def read_request(reader):
    """The next request on a keep-alive connection as `(path, body)`, or `None` once the client
    has closed it (or sent a head longer than the reader's limit). The body is read by its
    `Content-Length` (the clients here never send chunked bodies)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    path = parts[1] if len(parts) > 1 else ""
    length = 0
    for h in lines[1:]:
        if h.lower().startswith("content-length:"):
            length = int(h.split(":", 1)[1].strip())
    body = await reader.readexactly(length) if length else b""
    return path, body
