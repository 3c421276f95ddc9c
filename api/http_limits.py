"""Limits uvicorn's HTTP protocol lacks: a deadline for a request's headers, and their size.

uvicorn (0.54, httptools) starts no timer until a first response is complete and
accumulates the URL and headers without bound, so a client that sends its headers a byte at
a time (slowloris) holds a connection for ever, and a huge header is held in memory. This
protocol closes a connection whose request line and headers are not complete within
``HEADER_TIMEOUT_S`` of the connection (or of the request's first byte on a kept-alive
connection), and answers 400 when they exceed ``MAX_HEADER_BYTES``. Used by
``fleetpulse api`` (api/cli.py); tests/reliability/test_http_limits.py proves both.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT_S = 10.0
MAX_HEADER_BYTES = 64 * 1024


class HeaderTooLarge(Exception):
    """Raised inside a parser callback; httptools turns it into a parse error (400)."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline and a header size limit."""

    header_timeout_s = HEADER_TIMEOUT_S
    max_header_bytes = MAX_HEADER_BYTES

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._start_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
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

    def _header_timeout(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.logger.debug("closing a connection whose request headers did not complete")
            self.transport.close()
