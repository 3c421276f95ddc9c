"""The OsmAnd port's own HTTP/1.1 server: what phones running Traccar Client talk to.

A phone sends one fix per request, so on this port the cost of a request is the cost of a
position. Served through FastAPI (routing, middleware, dependencies, telemetry hooks) it was
~320 µs of CPU a request, three quarters of it the framework (py-spy, bench/ingest.py
``--protocol osmand``); Traccar itself serves the protocol from a bare Netty handler. This is
the same idea on asyncio: httptools parses, :func:`api.receiving.accept_osmand` does the
work (the very function behind ``/api/osmand`` on the main port), and the answers are
Traccar's: 200 with an empty body once Kafka acknowledged, 400 for anything that is not a
fix of a registered device, 503 when Kafka does not acknowledge (the phone keeps the fix
and retries). Error bodies are the API's JSON errors (:func:`api.errors.error_response`).

HTTP as phones use it: GET or POST on any path, keep-alive, pipelining (answers in order),
``Content-Length`` or chunked bodies. Bounded like the main port (api/http_limits.py): the
request line and headers must arrive within ``HEADER_TIMEOUT_S`` and fit in
``MAX_HEADER_BYTES`` (400), a body over ``ingest.max_body_bytes`` is refused with 413 as soon
as that is known, an idle kept-alive connection is closed after ``KEEP_ALIVE_S``, and a
client that pipelines without reading is paused after ``MAX_PIPELINED`` requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import cast

import httptools
import orjson

from api.errors import error_body, error_response
from api.http_limits import HEADER_TIMEOUT_S, MAX_HEADER_BYTES
from api.receiving import OSMAND, accept_osmand, refusal_reason
from api.state import AppState

log = logging.getLogger(__name__)

KEEP_ALIVE_S = 10.0
MAX_PIPELINED = 16
SWEEP_S = 0.25  # how often deadlines are checked
LINGER_S = 2.0  # after a refusal, how long the rest of the request is read and dropped
_OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
_OK_CLOSE = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


@dataclass(slots=True)
class _Request:
    method: bytes
    url: bytes
    content_type: str | None
    body: bytes
    keep_alive: bool


@dataclass(slots=True)
class _Refusal:
    """An answer decided while parsing (bad HTTP, too large): sent, then the connection ends."""

    status: int
    code: str
    message: str


def _response(
    status: int, body: dict[str, object], headers: dict[str, str], *, close: bool
) -> bytes:
    payload = orjson.dumps(body)
    head = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "content-type: application/json",
        f"content-length: {len(payload)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    if close:
        head.append("connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload


class OsmAndServer:
    """Listens on the OsmAnd port; ``get_state`` returns the api's state (None while starting)."""

    def __init__(self, get_state: Callable[[], AppState | None], max_body_bytes: int) -> None:
        self.get_state = get_state
        self.max_body_bytes = max_body_bytes
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._connections: set[_Connection] = set()

    async def start(self, host: str, port: int) -> int:
        """Start listening; return the port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), host, port, reuse_address=True, backlog=2048
        )
        self._sweeper = asyncio.create_task(self._sweep())
        sockets = self._server.sockets
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def _sweep(self) -> None:
        """Hang up connections past their deadline (slow headers, idle keep-alive)."""
        while True:
            await asyncio.sleep(SWEEP_S)
            now = time.monotonic()
            for conn in [c for c in self._connections if c.deadline is not None]:
                if conn.deadline is not None and now >= conn.deadline:
                    conn._expire()

    async def close(self, grace_s: float = 10.0) -> None:
        """Stop accepting, let requests in progress finish (up to ``grace_s``), close."""
        if self._server is None:
            return
        self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self._connections):
            conn.close_when_idle()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_s):
                while self._connections:  # noqa: ASYNC110 - a few connections, briefly
                    await asyncio.sleep(0.05)
        for conn in list(self._connections):
            conn.abort()
        await self._server.wait_closed()

    async def answer(self, req: _Request) -> bytes:
        """The response to one complete request."""
        close = not req.keep_alive
        if req.method not in (b"GET", b"POST"):
            OSMAND.refuse("method_not_allowed")
            body = error_body("method_not_allowed", "the OsmAnd protocol is GET or POST")
            return _response(405, body, {"allow": "GET, POST"}, close=close)
        state = self.get_state()
        if state is None:
            OSMAND.refuse("service_unavailable")
            body = error_body("service_unavailable", "the receiver is starting, retry later")
            return _response(503, body, {"Retry-After": "5"}, close=close)
        _, _, query = req.url.partition(b"?")
        query_text = query.split(b"#", 1)[0].decode("latin-1")
        try:
            published = await accept_osmand(state, query_text, req.content_type, req.body)
        except Exception as exc:  # noqa: BLE001 - every failure becomes the JSON error
            OSMAND.refuse(refusal_reason(exc))
            status, body, headers = error_response(exc, "OsmAnd port")
            return _response(status, body, headers, close=close)
        OSMAND.accepted(published)
        return _OK if req.keep_alive else _OK_CLOSE


class _Connection(asyncio.Protocol):
    def __init__(self, server: OsmAndServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[_Request | _Refusal] = deque()
        self.serving: asyncio.Task[None] | None = None
        self.paused = False
        self.closing = False
        self.deadline: float | None = None  # monotonic time to hang up at (see _arm)
        self.refused = False  # an error was queued: nothing after it is read or answered
        self._reset_message()

    def _reset_message(self) -> None:
        self.url = b""
        self.content_type: str | None = None
        self.body: list[bytes] = []
        self.body_size = 0
        self.head_size = 0
        self.declared = 0
        self.expects_continue = False

    # ---- connection ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport; uvloop's does not subclass asyncio.Transport, so no isinstance
        self.transport = cast(asyncio.Transport, transport)
        self.server._connections.add(self)
        self._arm(HEADER_TIMEOUT_S)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.server._connections.discard(self)
        # A request in progress finishes (its fix may already be on its way to Kafka); its
        # answer goes nowhere and the phone, having none, sends the fix again (idempotent).
        self.closing = True

    def data_received(self, data: bytes) -> None:
        if self.closing or self.refused:
            return  # after a refusal the rest of the stream is not read
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "bad_request", "protocol upgrades are not supported here")
        except httptools.HttpParserError as exc:
            if not self.refused:  # a callback may have refused already (size limits)
                self._refuse(400, "bad_request", f"malformed HTTP request: {exc}")

    def close_when_idle(self) -> None:
        self.closing = True
        if self.serving is None and self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # Deadlines are checked by the server's sweeper (OsmAndServer._sweep) instead of a timer
    # per connection: re-arming a TimerHandle two or three times a request cost more than
    # the rest of the connection handling.
    def _arm(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def _disarm(self) -> None:
        self.deadline = None

    def _expire(self) -> None:
        # headers too slow, or kept alive with nothing to do: hang up without an answer
        self.deadline = None
        if self.serving is None and self.transport is not None:
            self.transport.close()

    # ---- httptools callbacks ---------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset_message()
        self._arm(HEADER_TIMEOUT_S)

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value))
        lowered = name.lower()
        if lowered == b"content-type":
            self.content_type = value.decode("latin-1")
        elif lowered == b"content-length" and value.strip().isdigit():
            self.declared = int(value)  # httptools itself refuses a malformed one
        elif lowered == b"expect" and value.strip().lower() == b"100-continue":
            self.expects_continue = True

    def on_headers_complete(self) -> None:
        self._disarm()
        if self.declared > self.server.max_body_bytes:
            self._too_large()  # at once, before the body arrives
        elif self.expects_continue and self.serving is None and not self.queue:
            # curl asks before sending a body over 1 KiB (and otherwise waits a second);
            # only when no earlier answer is pending, so the interim one cannot overtake it
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self.refused:
            return
        self.body_size += len(body)
        if self.body_size > self.server.max_body_bytes:
            self._too_large()
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.refused:
            return
        self.queue.append(
            _Request(
                self.parser.get_method(),
                self.url,
                self.content_type,
                b"".join(self.body),
                self.parser.should_keep_alive(),
            )
        )
        if len(self.queue) >= MAX_PIPELINED and self.transport is not None and not self.paused:
            self.transport.pause_reading()  # a client that sends without reading waits
            self.paused = True
        self._serve()

    # ---- answering -------------------------------------------------------------------

    def _count_head(self, size: int) -> None:
        self.head_size += size
        if self.head_size > MAX_HEADER_BYTES and not self.refused:
            self._refuse(
                400, "bad_request", f"request line and headers over {MAX_HEADER_BYTES} bytes"
            )

    def _too_large(self) -> None:
        limit = self.server.max_body_bytes
        self._refuse(413, "payload_too_large", f"request body exceeds {limit} bytes")

    def _refuse(self, status: int, code: str, message: str) -> None:
        if self.refused:
            return
        self.refused = True
        self._disarm()
        self.queue.append(_Refusal(status, code, message))
        self._serve()

    def _linger(self, transport: asyncio.Transport) -> None:
        """Half-close after a refusal and discard what the client still sends for a moment:
        closing with its body unread would reset the connection, and a client that writes
        the whole body before reading could lose the answer."""
        if transport.can_write_eof():
            transport.write_eof()
            if self.paused:
                transport.resume_reading()
            asyncio.get_running_loop().call_later(LINGER_S, transport.close)
        else:
            transport.close()

    def _serve(self) -> None:
        if self.serving is None:
            self.serving = asyncio.get_running_loop().create_task(self._answer_queue())

    async def _answer_queue(self) -> None:
        transport = self.transport
        assert transport is not None
        try:
            while self.queue and not transport.is_closing():
                item = self.queue.popleft()
                if isinstance(item, _Refusal):
                    OSMAND.refuse(item.code)
                    body = error_body(item.code, item.message)
                    transport.write(_response(item.status, body, {}, close=True))
                    self._linger(transport)
                    return
                transport.write(await self.server.answer(item))
                if not item.keep_alive:
                    transport.close()
                    return
                if self.paused and len(self.queue) < MAX_PIPELINED // 2:
                    self.paused = False
                    transport.resume_reading()
        except Exception:  # noqa: BLE001 - never leave a phone without an answer silently
            log.exception("OsmAnd connection failed")
            transport.close()
            return
        finally:
            self.serving = None
        if self.closing:
            transport.close()
        elif not transport.is_closing():
            self._arm(KEEP_ALIVE_S)
