"""Minimal loopback HTTP receivers that stand in for "the machine's ceiling".

With `acknowledge_rows=False` it answers every request with the same small body without parsing it: the fastest a
client can push bytes through loopback HTTP. With `acknowledge_rows=True` it parses a webhook batch and acknowledges
every row but keeps nothing, so a long sync can run against it without the receiver's memory growing (the sandbox
keeps every delivered row for the tests to inspect).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

NULL_ANSWER = b'{"ok":true}'


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY the second waits for the client's delayed ACK
    # (about 40 ms on Linux loopback), which would cap every connection at ~25 requests per second.
    disable_nagle_algorithm = True
    acknowledge_rows = False

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        payload = self._acknowledgement(body) if self.acknowledge_rows else NULL_ANSWER
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    @staticmethod
    def _acknowledgement(body: bytes) -> bytes:
        rows = orjson.loads(body)["rows"]
        return orjson.dumps({"results": [{"key": row["key"], "status": "accepted"} for row in rows]})


class _AckHandler(_Handler):
    acknowledge_rows = True


class LoopbackReceiver:
    """A threaded HTTP server on 127.0.0.1 with an ephemeral port; use as a context manager."""

    def __init__(self, *, acknowledge_rows: bool) -> None:
        handler = _AckHandler if acknowledge_rows else _Handler
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="bench-receiver", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> LoopbackReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
