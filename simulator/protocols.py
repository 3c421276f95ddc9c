"""The wire formats the simulated phones speak, and the senders that retry like devices do.

* ``osmand`` (default): what Traccar Client sends — a form POST with ``id``, ``timestamp``
  (epoch milliseconds), ``lat``, ``lon``, ``speed`` (knots), ``bearing``, ``accuracy``.
* ``traccar``: a Traccar server's JSON forwarder body ``{"position": ..., "device": ...}``
  (speed in knots) to ``/api/traccar/positions`` with an API key.
* ``batch``: NDJSON lines of our own schema (speed in km/h) to ``/api/positions/batch``, many
  drivers' fixes per request.

A device keeps a fix until the receiver answered 2xx: 503, 429 and connection errors are
retried with back-off; other 4xx are counted as rejected (a bug, never expected here).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import quote_plus, urlsplit

import httpx
import orjson

from simulator.driving import Fix

Protocol = Literal["osmand", "traccar", "batch"]
KNOTS_PER_KMH = 1 / 1.852
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def osmand_form(fix: Fix) -> bytes:
    """One fix as Traccar Client's form body (what ``urlencode`` gives, at a third of the
    cost: only the device id can need quoting, the numbers never do)."""
    return (
        f"id={quote_plus(fix.device_id)}&timestamp={fix.fix_ms}&lat={fix.lat:.7f}"
        f"&lon={fix.lon:.7f}&speed={fix.speed_kmh * KNOTS_PER_KMH:.3f}"
        f"&bearing={fix.course:.1f}&accuracy={fix.accuracy:.1f}"
    ).encode()


def traccar_forward(fix: Fix) -> bytes:
    """One fix as a Traccar server's JSON forwarder sends it."""
    return orjson.dumps(
        {
            "position": {
                "fixTime": iso_ms(fix.fix_ms),
                "latitude": fix.lat,
                "longitude": fix.lon,
                "speed": round(fix.speed_kmh * KNOTS_PER_KMH, 3),
                "course": fix.course,
                "accuracy": fix.accuracy,
                "valid": True,
                "protocol": "osmand",
                "attributes": {},
            },
            "device": {"uniqueId": fix.device_id},
        }
    )


def batch_line(fix: Fix) -> bytes:
    """One fix as a line of the batch endpoint's NDJSON."""
    return orjson.dumps(
        {
            "deviceId": fix.device_id,
            "fixTime": fix.fix_ms,
            "lat": fix.lat,
            "lon": fix.lon,
            "speed": fix.speed_kmh,
            "course": fix.course,
            "accuracy": fix.accuracy,
            "protocol": "simulator",
        }
    )


def batch_body(fixes: list[Fix]) -> bytes:
    """Fixes as the batch endpoint's NDJSON body, one ``batch_line`` each."""
    return b"\n".join([batch_line(f) for f in fixes])


# POST (url, body, headers) -> (status, body); status 0 when the connection failed.
Poster = Callable[[str, bytes, dict[str, str]], Awaitable[tuple[int, bytes]]]


def httpx_poster(client: httpx.AsyncClient) -> Poster:
    """POST through an httpx client (any transport: a URL, or the app in-process)."""

    async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        try:
            resp = await client.post(url, content=body, headers=headers)
        except (httpx.TransportError, OSError):
            return 0, b""
        return resp.status_code, resp.content

    return post


class HttpPoster:
    """POSTs over pooled HTTP/1.1 keep-alive connections on plain asyncio streams.

    A load generator's cost per request lands on the machine it measures: aiohttp spent
    ~170 µs of CPU a request (bench/ingest.py, OsmAnd at 3,300 requests/s, 0.57 of a core),
    more than the receiver it was loading; this writes one pre-formatted request and reads
    status, headers and a ``Content-Length`` or chunked body. ``url`` is a path on
    ``base_url`` or an absolute ``http://`` URL (the OsmAnd port is another port).
    """

    def __init__(self, base_url: str, *, connections: int = 64, timeout_s: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._sem = asyncio.Semaphore(connections)
        self._idle: dict[tuple[str, int], list[_HttpConnection]] = {}
        self._timeout_s = timeout_s
        # Exchanges in progress and when each must end: one sweeper aborts the late ones, as
        # a timer per request (asyncio.timeout) cost the load generator ~9 % of its CPU.
        self._deadlines: dict[_HttpConnection, float] = {}
        self._sweeper: asyncio.Task[None] | None = None

    async def __call__(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        parts = urlsplit(url if url.startswith("http") else self.base_url + url)
        host, port = parts.hostname or "localhost", parts.port or 80
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        request = head.encode("latin-1") + body
        async with self._sem:
            idle = self._idle.setdefault((host, port), [])
            # a kept-alive connection first; the server may have closed it meanwhile
            if idle and (answer := await self._exchange(idle, idle.pop(), host, port, request)):
                return answer
            return await self._exchange(idle, None, host, port, request) or (0, b"")

    async def _exchange(
        self,
        idle: list[_HttpConnection],
        conn: _HttpConnection | None,
        host: str,
        port: int,
        request: bytes,
    ) -> tuple[int, bytes] | None:
        """One request over ``conn`` (a new connection if None); None if it failed."""
        try:
            if conn is None:
                async with asyncio.timeout(self._timeout_s):
                    conn = await _HttpConnection.open(host, port)
            loop = asyncio.get_running_loop()
            self._deadlines[conn] = loop.time() + self._timeout_s
            if self._sweeper is None:
                self._sweeper = loop.create_task(self._sweep())
            try:
                status, content, keep = await conn.exchange(request)
            finally:
                del self._deadlines[conn]
        except (OSError, EOFError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            if conn is not None:
                conn.close()
            return None
        if keep:
            idle.append(conn)
        else:
            conn.close()
        return status, content

    async def _sweep(self) -> None:
        """Abort the exchanges past their deadline: the reader then fails like a reset."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, self._timeout_s / 4))
            now = loop.time()
            for conn in [c for c, deadline in self._deadlines.items() if deadline < now]:
                conn.abort()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()


class _HttpConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> _HttpConnection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> tuple[int, bytes, bool]:
        """Send one request; return (status, body, whether the connection stays open)."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head[:-4].split(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        fields = {}
        for line in lines:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip().lower()
        if fields.get(b"transfer-encoding") == b"chunked":
            body = b""
            while size := int((await self.reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16):
                body += (await self.reader.readexactly(size + 2))[:-2]
            await self.reader.readuntil(b"\r\n")  # the (empty) trailer
        else:
            body = await self.reader.readexactly(int(fields.get(b"content-length", b"0")))
        return status, body, fields.get(b"connection") != b"close"

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.transport.abort()


@dataclass
class SendStats:
    """What was sent and what the receivers said; ``ack_ms`` are send → 2xx latencies."""

    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    retries: int = 0
    unsent: int = 0  # given up on after the run was stopped (the api was gone)
    requests: int = 0
    ack_ms: list[float] = field(default_factory=list)
    accepted_at: dict[tuple[str, int], float] = field(default_factory=dict)
    keep_accept_times: bool = False


class Sender:
    """Posts fixes with one protocol over one HTTP client, retrying like a device."""

    def __init__(
        self,
        client: httpx.AsyncClient | Poster,
        protocol: Protocol,
        *,
        osmand_url: str = "/api/osmand",
        api_key: str = "traccar-shared-key",
        batch_max: int = 2_000,
        batch_linger_s: float = 0.05,
        max_in_flight: int = 64,
        stats: SendStats | None = None,
    ) -> None:
        self.post = httpx_poster(client) if isinstance(client, httpx.AsyncClient) else client
        self.protocol = protocol
        self.osmand_url = osmand_url
        self.api_key = api_key
        self.stats = stats or SendStats()
        self._sem = asyncio.Semaphore(max_in_flight)
        self._batch_max = batch_max
        self._linger = batch_linger_s
        # one future per send() call, not per fix: at 10,000 fixes/s the load generator
        # shares the cores with what it measures
        self._pending: list[tuple[list[Fix], asyncio.Future[None]]] = []
        self._pending_fixes = 0
        self._flusher: asyncio.Task[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        # After a stop, a failing post is retried only until then: the demo's Ctrl-C stops
        # the api too, and a phone retrying for ever kept the simulator from exiting.
        self.retry_until: float | None = None

    async def send(self, fixes: list[Fix]) -> None:
        """Deliver the fixes in order; return once every one was acknowledged."""
        if not fixes:
            return
        self.stats.sent += len(fixes)
        if self.protocol == "batch":
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._pending.append((fixes, fut))
            self._pending_fixes += len(fixes)
            if self._pending_fixes >= self._batch_max:
                self._flush_now()
            elif self._flusher is None:
                self._flusher = asyncio.create_task(self._linger_flush())
            await fut
            return
        for f in fixes:
            if self.protocol == "osmand":
                await self._post(
                    self.osmand_url,
                    osmand_form(f),
                    {"Content-Type": "application/x-www-form-urlencoded"},
                    [f],
                )
            else:
                await self._post(
                    "/api/traccar/positions",
                    traccar_forward(f),
                    {"Content-Type": "application/json", "X-API-Key": self.api_key},
                    [f],
                )

    async def _linger_flush(self) -> None:
        await asyncio.sleep(self._linger)
        self._flusher = None
        self._flush_now()

    def _flush_now(self) -> None:
        items, self._pending, self._pending_fixes = self._pending, [], 0
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        if items:
            task = asyncio.create_task(self._send_batch(items))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def send_encoded(self, ndjson: bytes, fixes: list[Fix]) -> None:
        """Post ``fixes``, already encoded (``batch_body``), in one request."""
        self.stats.sent += len(fixes)
        await self._post_batch(ndjson, fixes)

    async def _post_batch(self, ndjson: bytes, fixes: list[Fix]) -> None:
        headers = {"Content-Type": "application/x-ndjson", "X-API-Key": self.api_key}
        await self._post("/api/positions/batch", ndjson, headers, fixes)

    async def _send_batch(self, items: list[tuple[list[Fix], asyncio.Future[None]]]) -> None:
        fixes = [f for group, _ in items for f in group]
        try:
            await self._post_batch(batch_body(fixes), fixes)
        except BaseException as exc:
            for _, fut in items:
                if not fut.done():
                    fut.set_exception(exc)
            raise
        for _, fut in items:
            if not fut.done():
                fut.set_result(None)

    async def _post(self, url: str, body: bytes, headers: dict[str, str], fixes: list[Fix]) -> None:
        delay = 0.2
        while True:
            async with self._sem:
                started = time.perf_counter()
                self.stats.requests += 1
                status, content = await self.post(url, body, headers)
                elapsed = (time.perf_counter() - started) * 1000
            if 200 <= status < 300:
                rejected = 0
                if self.protocol == "batch":
                    rejected = len(orjson.loads(content).get("rejected", []))
                self.stats.accepted += len(fixes) - rejected
                self.stats.rejected += rejected
                self.stats.ack_ms.append(elapsed)
                if self.stats.keep_accept_times:
                    now = time.time()
                    for f in fixes:
                        self.stats.accepted_at[(f.device_id, f.fix_ms)] = now
                return
            if status and status not in RETRY_STATUSES:
                self.stats.rejected += len(fixes)
                return
            if self.retry_until is not None and time.monotonic() >= self.retry_until:
                self.stats.unsent += len(fixes)
                return
            self.stats.retries += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def close(self) -> None:
        self._flush_now()
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
