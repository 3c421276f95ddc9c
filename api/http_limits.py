"""Limits uvicorn's HTTP protocol lacks: deadlines for a request's headers and its body, and
the headers' size.

uvicorn (0.54, httptools) starts no timer until a first response is complete and
accumulates the URL and headers without bound, so a client that sends its headers a byte at
a time (slowloris) holds a connection for ever, and a huge header is held in memory; nor does
it time a body, so a client that declares a body and sends it a byte at a time holds the
connection and a request task for ever. This protocol closes a connection whose request line
and headers are not complete within ``HEADER_TIMEOUT_S`` of the connection (or of the
request's first byte on a kept-alive connection), answers 400 when they exceed
``MAX_HEADER_BYTES``, and answers 408 (then closes) when a request's body is not complete
within ``BODY_TIMEOUT_S`` of its headers. WebSocket upgrades are not timed (they have no
body). Used by ``fleetpulse api`` (api/cli.py); tests/reliability/test_http_limits.py and
tests/unit/test_http_body_timeout.py prove them.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT_S = 10.0
MAX_HEADER_BYTES = 64 * 1024
# The largest body (FLEETPULSE_INGEST__MAX_BODY_BYTES, 1 MB) needs ~35 KB/s to make it; a
# phone's OsmAnd request is a few hundred bytes.
BODY_TIMEOUT_S = 30.0
_TIMEOUT_BODY = b'{"error":"request_timeout","message":"the request body was not sent in time"}'
REQUEST_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


class HeaderTooLarge(Exception):
    """Raised inside a parser callback; httptools turns it into a parse error (400)."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body deadlines and a header size limit."""

    header_timeout_s = HEADER_TIMEOUT_S
    max_header_bytes = MAX_HEADER_BYTES
    body_timeout_s = BODY_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._start_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        self._cancel_body_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        self._header_bytes = 0
        self._start_header_timer()
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self._cancel_body_timer()
            self._body_timer = self.loop.call_later(self.body_timeout_s, self._body_timeout)

    def on_message_complete(self) -> None:
        self._cancel_body_timer()
        super().on_message_complete()

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.max_header_bytes:
            raise HeaderTooLarge(f"request line and headers over {self.max_header_bytes} bytes")

    def _start_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timeout(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        self.logger.debug("closing a connection whose request body did not complete")
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            # The app waiting for the body sees a disconnect; whatever it answers is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
            self.transport.write(REQUEST_TIMEOUT_RESPONSE)
        self.transport.close()

    def _header_timeout(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.logger.debug("closing a connection whose request headers did not complete")
            self.transport.close()
