"""The OsmAnd port's own HTTP server (api/osmand_server.py) over raw sockets: keep-alive,
pipelining in order, chunked bodies, and hostile input (malformed HTTP, slow or huge headers,
huge bodies, other methods) — each answered with the JSON error or cut off, nothing produced,
and the server keeps serving. The protocol's own cases (every format, bad fixes, unknown
devices, Kafka down) run on this server too, in test_receivers.py ("@port")."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator

import orjson
import pytest
from fastapi import FastAPI

from api import osmand_server
from api.osmand_server import OsmAndServer
from infrastructure.kafka import GPS_POSITIONS, end_offsets
from infrastructure.settings import Settings

pytestmark = pytest.mark.usefixtures("worker")

MAX_BODY = 4096


@pytest.fixture
async def port(app: FastAPI) -> AsyncIterator[int]:
    server = OsmAndServer(lambda: app.state.fleetpulse, MAX_BODY)
    bound = await server.start("127.0.0.1", 0)
    yield bound
    await server.close()


def fix_query(device: str, seconds_ago: int, lat: float = 40.713) -> str:
    stamp = int(time.time()) - seconds_ago
    return f"id={device}&lat={lat}&lon=-74.0055&timestamp={stamp}&speed=5"


async def exchange(port: int, data: bytes, *, wait_s: float = 5.0) -> bytes:
    """Send ``data``, then read until the server closes (or ``wait_s`` of silence)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        out = b""
        with contextlib.suppress(TimeoutError, ConnectionError):
            while chunk := await asyncio.wait_for(reader.read(65536), wait_s):
                out += chunk
        return out
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def closed_without_answer(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(100), 5) == b""
    except ConnectionError:  # our own writes hit the closed socket first
        return True


def statuses(raw: bytes) -> list[int]:
    # a JSON body has no line end: the next status line follows its closing brace directly
    return [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)]


async def test_pipelined_requests_are_answered_in_order_on_one_connection(
    port: int, settings: Settings
) -> None:
    form = fix_query("DEV001", 200).encode()
    requests = (
        f"GET /?{fix_query('DEV001', 201)} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        + b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        + b"Content-Length: %d\r\n\r\n%s" % (len(form), form)
        + f"GET /?{fix_query('GHOST-PIPE', 5)} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        # chunked, as some clients send: two chunks
        + b"POST /anything HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        + b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
        + b"%x\r\n%s\r\n" % (10, form[:10])
        + b"%x\r\n%s\r\n0\r\n\r\n" % (len(form) - 10, form[10:])
        + f"GET /?{fix_query('DEV001', 202)}&lat=91 HTTP/1.1\r\nConnection: close\r\n\r\n".encode()
    )
    raw = await exchange(port, requests)
    assert statuses(raw) == [200, 200, 400, 200, 400], raw
    assert b'"unknown_device"' in raw and b'"invalid_position"' in raw
    assert raw.rstrip().endswith(b"}")  # the last answer is complete, then the server closed


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400, b"bad_request"),
        (b"GET / HTTP/1.1\r\nContent-Length: nope\r\n\r\n", 400, b"bad_request"),
        (b"PUT /?id=DEV001&lat=1&lon=1 HTTP/1.1\r\nHost: x\r\n\r\n", 405, b"method_not_allowed"),
        (b"DELETE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405, b"method_not_allowed"),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
            400,
            b"bad_request",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1)
            + b"x" * (MAX_BODY + 1),
            413,
            b"payload_too_large",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n" % (MAX_BODY, b"x" * MAX_BODY) * 2
            + b"0\r\n\r\n",
            413,
            b"payload_too_large",
        ),
        (
            b"GET /?" + b"id=DEV001&" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            413,
            b"payload_too_large",
        ),
    ],
    ids=[
        "garbage",
        "bad-length",
        "put",
        "delete",
        "huge-header",
        "big-body",
        "big-chunked",
        "long-query",
    ],
)
async def test_bad_http_gets_a_json_4xx_and_produces_nothing(
    port: int, settings: Settings, request_bytes: bytes, status: int, code: bytes
) -> None:
    before = await end_offsets(settings.kafka, GPS_POSITIONS)
    raw = await exchange(port, request_bytes)
    assert statuses(raw)[:1] == [status], raw[:300]
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head
    assert orjson.loads(body.split(b"HTTP/1.1")[0])["error"] == code.decode()
    assert await end_offsets(settings.kafka, GPS_POSITIONS) == before
    # and the server still takes fixes
    ok = await exchange(port, f"GET /?{fix_query('DEV001', 300)} HTTP/1.0\r\n\r\n".encode())
    assert statuses(ok) == [200]


async def test_a_client_that_expects_100_continue_gets_it_then_its_answer(port: int) -> None:
    form = fix_query("DEV001", 600).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n\r\n" % len(form)
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(form)
        raw = await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()
    assert statuses(raw) == [200]


async def test_a_refused_body_sent_whole_before_reading_still_gets_its_answer(port: int) -> None:
    # What a naive client on a slow uplink does: write everything (far over the limit, in
    # pieces), then read. The server refuses at the headers; without reading and dropping
    # the rest, the client's next writes would hit a closed socket and reset the connection.
    big = b"x" * (MAX_BODY * 50)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(big))
        for i in range(0, len(big), 8192):
            writer.write(big[i : i + 8192])
            await writer.drain()
            await asyncio.sleep(0.01)
        raw = await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()
    assert statuses(raw) == [413]


async def test_headers_too_slow_and_idle_connections_are_closed(
    port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(osmand_server, "HEADER_TIMEOUT_S", 0.5)
    monkeypatch.setattr(osmand_server, "KEEP_ALIVE_S", 0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        for _ in range(20):  # a byte every 0.2 s: the headers never complete
            with contextlib.suppress(ConnectionError):
                writer.write(b"a")
                await writer.drain()
            await asyncio.sleep(0.2)
        assert await closed_without_answer(reader)
    finally:
        writer.close()
    # a kept-alive connection that sends nothing more is closed after KEEP_ALIVE_S
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET /?{fix_query('DEV001', 400)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert first.startswith(b"HTTP/1.1 200")
        assert await closed_without_answer(reader)
    finally:
        writer.close()


async def test_close_waits_for_a_request_in_progress(app: FastAPI) -> None:
    server = OsmAndServer(lambda: app.state.fleetpulse, MAX_BODY)
    bound = await server.start("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", bound)
    try:
        writer.write(f"GET /?{fix_query('DEV001', 500)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        for _ in range(1000):  # until the request is being served (Kafka takes milliseconds)
            if any(c.serving is not None for c in server._connections):
                break
            await asyncio.sleep(0.001)
        closing = asyncio.create_task(server.close())
        answer = await asyncio.wait_for(reader.read(65536), 10)
        await closing
        assert answer.startswith(b"HTTP/1.1 200"), answer
    finally:
        writer.close()
