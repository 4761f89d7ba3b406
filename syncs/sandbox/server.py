"""One loopback HTTP server hosting every sandbox app under its own path prefix.

Apps subclass `SandboxApp`, declare routes with `@route(METHOD, r"regex")`, and answer with `Response`.
The server applies, per app and before the handler runs: fault injection, the rate limit (429 with
Retry-After) and the concurrent-connection limit. Control endpoints let tests and the demo steer faults:
`POST /_control/<app>/faults` (JSON of `Faults` fields), `POST /_control/<app>/reset`,
`GET /_control/<app>/stats`.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import orjson

from syncs.sandbox.faults import Faults


@dataclass
class Request:
    method: str
    path: str  # below the app prefix, e.g. "/lists/abc"
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # named groups from the route regex

    def json(self) -> Any:
        """The body as JSON (RFC 8259, as the real APIs parse it: NaN and Infinity are not JSON)."""
        try:
            return orjson.loads(self.body or b"null")
        except orjson.JSONDecodeError as error:
            raise InvalidJSON(f"the body is not valid JSON: {error}") from None


class InvalidJSON(ValueError):
    """Answered 400, as the real APIs answer a body they cannot parse."""


@dataclass
class Response:
    status: int = 200
    body: Any = None  # JSON-serialisable, or bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def encoded(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        try:
            return orjson.dumps(self.body, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:  # integers beyond 64 bits
            return json.dumps(self.body).encode()


def route(method: str, pattern: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    def mark(fn: Callable[..., Response]) -> Callable[..., Response]:
        fn.__sandbox_route__ = (method.upper(), re.compile(f"^{pattern}$"))  # type: ignore[attr-defined]
        return fn

    return mark


class _Window:
    """Server-side limit: at most `rate` requests per second (1-second fixed windows)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self._window = 0
        self._count = 0
        self._lock = threading.Lock()

    def admit(self) -> float | None:
        """None if admitted, else seconds until the next window opens."""
        if self.rate is None:
            return None
        with self._lock:
            now = time.monotonic()
            window = math.floor(now)
            if window != self._window:
                self._window, self._count = window, 0
            if self._count < self.rate:
                self._count += 1
                return None
            return window + 1 - now


class SandboxApp:
    """Base for a sandbox app. Subclasses set `name` and `prefix` and define routes."""

    name: ClassVar[str]
    prefix: ClassVar[str]
    default_requests_per_second: ClassVar[float | None] = None
    default_max_concurrent: ClassVar[int | None] = None

    def __init__(self, *, requests_per_second: float | None = None, max_concurrent: int | None = None) -> None:
        self.lock = threading.RLock()
        self.faults = Faults()
        self._configured_rate = (
            requests_per_second if requests_per_second is not None else self.default_requests_per_second
        )
        self.limit = _Window(self._configured_rate)
        self.max_concurrent = max_concurrent if max_concurrent is not None else self.default_max_concurrent
        self._in_flight = 0
        self.stats: dict[str, int] = {}
        self._routes = [
            (*fn.__sandbox_route__, getattr(self, attr))
            for attr, fn in vars_of_class(type(self))
            if hasattr(fn, "__sandbox_route__")
        ]
        self.reset()

    def reset(self) -> None:
        """Forget everything received. Subclasses extend this to clear their own state."""
        with self.lock:
            self.stats = {"requests": 0, "rate_limited": 0, "faults_5xx": 0, "dropped": 0, "rejected": 0}

    def restore_defaults(self) -> None:
        """Forget everything received, clear every fault and restore the configured rate limit."""
        self.reset()
        self.faults.clear()
        self.set_rate_limit(self._configured_rate)

    def count(self, stat: str, n: int = 1) -> None:
        with self.lock:
            self.stats[stat] = self.stats.get(stat, 0) + n

    def set_rate_limit(self, requests_per_second: float | None) -> None:
        self.limit = _Window(requests_per_second)

    def dispatch(self, request: Request) -> Response:
        for method, pattern, handler in self._routes:
            match = pattern.match(request.path)
            if match and method == request.method:
                request.params = match.groupdict()
                return handler(request)
        return problem(404, "Resource Not Found", f"no route for {request.method} {request.path}")

    def enter(self) -> bool:
        with self.lock:
            if self.max_concurrent is not None and self._in_flight >= self.max_concurrent:
                return False
            self._in_flight += 1
            self.stats["peak_in_flight"] = max(self.stats.get("peak_in_flight", 0), self._in_flight)
            return True

    def leave(self) -> None:
        with self.lock:
            self._in_flight -= 1


def vars_of_class(cls: type) -> list[tuple[str, Any]]:
    """Attributes defined on a class and its bases (subclass wins), without touching instances."""
    seen: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        seen.update(vars(klass))
    return list(seen.items())


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    """An RFC 7807-style problem document, the error shape most of these APIs use."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return Response(status=status, body=body, content_type="application/problem+json")


def retry_after_header(seconds: float, as_http_date: bool) -> str:
    if as_http_date:
        return email.utils.formatdate(time.time() + max(1.0, seconds), usegmt=True)
    return str(max(1, math.ceil(seconds)))


class SandboxServer:
    """Serves apps on 127.0.0.1. Use as a context manager or call start()/stop()."""

    def __init__(self, apps: list[SandboxApp], host: str = "127.0.0.1", port: int = 0) -> None:
        self.apps = {app.name: app for app in apps}
        self._by_prefix = sorted(apps, key=lambda a: len(a.prefix), reverse=True)
        self._httpd = ThreadingHTTPServer((host, port), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def app(self, name: str) -> SandboxApp:
        return self.apps[name]

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="sandbox", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def find_app(self, path: str) -> tuple[SandboxApp, str] | None:
        for app in self._by_prefix:
            if path == app.prefix or path.startswith(app.prefix + "/"):
                return app, path[len(app.prefix) :] or "/"
        return None


def _make_handler(server: SandboxServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Answer at once: with Nagle on, a small response waits for the client's delayed ACK (~40 ms a request).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # requests carry PII: log nothing
            return

        def _handle(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if split.path.startswith("/_control/"):
                self._send(self._control(split.path, body))
                return
            found = server.find_app(split.path)
            if found is None:
                self._send(problem(404, "Not Found", f"no sandbox at {split.path}"))
                return
            app, sub_path = found
            request = Request(
                method=self.command,
                path=sub_path,
                query=parse_qs(split.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            self._send(self._through_guards(app, request))

        def _through_guards(self, app: SandboxApp, request: Request) -> Response | None:
            app.count("requests")
            # The connection limit spans the whole request: a slow answer holds its connection.
            if not app.enter():
                app.count("rate_limited")
                return Response(
                    429,
                    {"title": "Too Many Requests", "status": 429, "detail": "too many simultaneous connections"},
                    {"Retry-After": "1"},
                )
            try:
                response = self._answer(app, request)
            finally:
                app.leave()
            return response

        def _answer(self, app: SandboxApp, request: Request) -> Response | None:
            if app.faults.latency_seconds:
                time.sleep(app.faults.latency_seconds)
            fault = app.faults.draw()
            if fault == "drop":
                app.count("dropped")
                return None
            if fault == "5xx":
                app.count("faults_5xx")
                return problem(503, "Service Unavailable", "injected fault")
            wait = app.limit.admit()
            if fault == "429" or wait is not None:
                app.count("rate_limited")
                seconds = app.faults.retry_after_seconds if fault == "429" else wait or 1.0
                header = retry_after_header(seconds, app.faults.retry_after_http_date)
                return Response(
                    429,
                    {"title": "Too Many Requests", "status": 429, "detail": "rate limit exceeded"},
                    {"Retry-After": header},
                )
            try:
                response = app.dispatch(request)
            except InvalidJSON as exc:
                response = problem(400, "Bad Request", str(exc))
            except Exception as exc:  # a sandbox bug must surface as a 500, not a hung client
                response = problem(500, "Internal Server Error", type(exc).__name__)
            if response.status >= 400:
                app.count("rejected")
            return response

        def _control(self, path: str, body: bytes) -> Response:
            parts = path.strip("/").split("/")
            if len(parts) != 3 or parts[1] not in server.apps:
                return problem(404, "Not Found", f"known apps: {sorted(server.apps)}")
            app, action = server.apps[parts[1]], parts[2]
            if action == "faults" and self.command == "POST":
                try:
                    app.faults.update(**json.loads(body or b"{}"))
                except ValueError as exc:
                    return problem(400, "Bad Request", str(exc))
                return Response(200, {"ok": True})
            if action == "rate_limit" and self.command == "POST":
                app.set_rate_limit(json.loads(body or b"{}").get("requests_per_second"))
                return Response(200, {"ok": True})
            if action == "reset" and self.command == "POST":
                app.reset()
                app.faults.update(
                    **{
                        f: 0
                        for f in ("error_rate", "latency_seconds", "burst_5xx", "burst_429", "drop_rate", "drop_next")
                    }
                )
                return Response(200, {"ok": True})
            if action == "stats":
                with app.lock:
                    return Response(200, dict(app.stats))
            return problem(404, "Not Found", f"unknown control action {action}")

        def _send(self, response: Response | None) -> None:
            if response is None:
                self.close_connection = True
                self.connection.close()
                return
            payload = response.encoded()
            try:
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client went away (a killed sync): nobody to answer
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    return Handler
