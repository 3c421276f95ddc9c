"""A request body sent too slowly is answered 408 and the connection closed
(api/http_limits.py, issue 19 finding 9), with a real uvicorn server on our protocol in this
process; no services needed. The deadline is lowered so that the tests stay quick; each
assertion is about what the server did before the client was done, never about how long it
took."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
import websockets

from api.http_limits import BODY_TIMEOUT_S, BoundedHttpToolsProtocol

DEADLINE_S = 1.0
# uvicorn's default WebSocket implementation (what `fleetpulse api` runs) is websockets' legacy
# one, which warns when imported.
pytestmark = pytest.mark.filterwarnings("ignore:websockets.legacy is deprecated")


class QuickDeadline(BoundedHttpToolsProtocol):
    body_timeout_s = DEADLINE_S


async def echo_length(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer the body's length once it is complete; echo WebSocket messages."""
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message.get("text") or ""})
        return
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    config = uvicorn.Config(
        echo_length,
        host="127.0.0.1",
        port=0,
        http=QuickDeadline,
        ws="auto",  # as `fleetpulse api`
        lifespan="off",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), task
        await asyncio.sleep(0.01)
    yield int(server.servers[0].sockets[0].getsockname()[1])
    server.should_exit = True
    await task


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def connect(port: int) -> AsyncIterator[Any]:
    """Open connections to the server; close them at the end."""
    opened: list[asyncio.StreamWriter] = []

    async def open_one() -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        opened.append(writer)
        return reader, writer

    yield open_one
    for writer in opened:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def send_slowly(
    connection: Connection, head: bytes, pieces: list[bytes], pause_s: float
) -> tuple[bytes, int]:
    """Send the head, then the pieces with a pause between them; return what the server
    answered and how many pieces had been sent when its answer (or hang-up) came."""
    reader, writer = connection
    writer.write(head)
    await writer.drain()
    for sent, piece in enumerate(pieces):
        with contextlib.suppress(TimeoutError):
            data = await asyncio.wait_for(reader.read(65536), pause_s)
            return data, sent
        try:
            writer.write(piece)
            await writer.drain()
        except ConnectionError:
            return b"", sent
    return await asyncio.wait_for(reader.read(65536), 10), len(pieces)


def test_the_served_deadline_is_the_documented_one() -> None:
    assert BoundedHttpToolsProtocol.body_timeout_s == BODY_TIMEOUT_S == 30.0


async def test_a_body_sent_a_byte_at_a_time_is_answered_408_and_cut_off(connect: Any) -> None:
    # A body that would take 6x the deadline to arrive: the server answers first.
    pieces = [b"a"] * int(DEADLINE_S * 6 / 0.1)
    head = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(pieces)
    answer, sent = await send_slowly(await connect(), head, pieces, 0.1)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b'"error":"request_timeout"' in answer and b"connection: close" in answer
    assert sent < len(pieces)


async def test_a_chunked_body_that_never_ends_is_cut_off(connect: Any) -> None:
    pieces = [b"1\r\na\r\n"] * int(DEADLINE_S * 6 / 0.1)
    head = b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer, sent = await send_slowly(await connect(), head, pieces, 0.1)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert sent < len(pieces)


async def test_a_body_in_pieces_within_the_deadline_and_the_next_request_are_served(
    connect: Any,
) -> None:
    body = b"x" * 64
    head = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 64\r\n\r\n"
    pieces = [body[i : i + 16] for i in range(0, 64, 16)]
    reader, writer = connection = await connect()
    answer, _ = await send_slowly(connection, head, pieces, 0.05)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"64"), answer
    # The same kept-alive connection, idle longer than the body deadline (but not uvicorn's
    # 5 s keep-alive): idling is not a slow body, and the next request is served.
    await asyncio.sleep(DEADLINE_S * 2)
    writer.write(b"GET /y HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    await writer.drain()
    again = await asyncio.wait_for(reader.read(65536), 10)
    assert again.startswith(b"HTTP/1.1 200") and again.endswith(b"\r\n\r\n0"), again


async def test_a_websocket_is_not_timed_like_a_body(port: int) -> None:
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
        await asyncio.sleep(DEADLINE_S * 3)
        await ws.send("still here")
        assert await asyncio.wait_for(ws.recv(), 10) == "still here"
