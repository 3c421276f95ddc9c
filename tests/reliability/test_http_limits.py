"""Hostile requests against a real `fleetpulse api` process (uvicorn, our protocol limits):
headers sent a byte at a time (slowloris), a body sent a byte at a time, oversized headers,
oversized bodies (declared and chunked), deeply nested JSON. Each is bounded, answered 4xx or
cut off, never a 5xx, and the process keeps serving."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from api.http_limits import BODY_TIMEOUT_S, HEADER_TIMEOUT_S, MAX_HEADER_BYTES
from tests.reliability.support import Fleet

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(300)]

NESTING = 100_000
NESTED_ARRAYS = b"[" * NESTING + b"]" * NESTING
NESTED_OBJECTS = b'{"a":' * NESTING + b"1" + b"}" * NESTING


async def raw_exchange(port: int, chunks: list[bytes], pause_s: float) -> bytes | None:
    """Send chunks with a pause between them; return what the server answered, or None if it
    closed the connection before the client was done sending."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for chunk in chunks:
            try:
                writer.write(chunk)
                await writer.drain()
            except (ConnectionResetError, BrokenPipeError):
                return None
            with contextlib.suppress(TimeoutError):
                data = await asyncio.wait_for(reader.read(65536), pause_s)
                if data == b"":
                    return None  # closed by the server mid-request
                return data + await read_rest(reader)
        return await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def read_rest(reader: asyncio.StreamReader) -> bytes:
    """The rest of a response already started: until the server closes or pauses 1 s."""
    rest = b""
    with contextlib.suppress(TimeoutError, ConnectionError):
        while chunk := await asyncio.wait_for(reader.read(65536), 1.0):
            rest += chunk
    return rest


async def assert_still_serving(url: str) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.get(f"{url}/api/health")).status_code == 200


async def test_headers_sent_a_byte_at_a_time_are_cut_off(fleet: Fleet) -> None:
    api = fleet.alive("api")[0]
    assert api.port is not None
    head = [b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: "]
    # A header that would take 6x the deadline to arrive: the server hangs up first.
    drip = [b"a"] * int(HEADER_TIMEOUT_S * 6 / 0.5)
    answer = await raw_exchange(api.port, head + drip, pause_s=0.5)
    assert answer is None, answer
    await assert_still_serving(api.url)


async def test_headers_sent_in_pieces_within_the_deadline_are_served(fleet: Fleet) -> None:
    api = fleet.alive("api")[0]
    assert api.port is not None
    request = b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    pieces = [request[i : i + 8] for i in range(0, len(request), 8)]
    answer = await raw_exchange(api.port, pieces, pause_s=0.05)
    assert answer is not None and answer.startswith(b"HTTP/1.1 200"), answer


async def test_a_body_sent_a_byte_at_a_time_gets_408(fleet: Fleet) -> None:
    """`fleetpulse api` runs the body deadline (tests/unit/test_http_body_timeout.py has the
    details with a shorter one): a body that would take twice the deadline is answered 408
    before it is sent, and the process keeps serving."""
    api = fleet.alive("api")[0]
    assert api.port is not None
    drip = [b"a"] * int(BODY_TIMEOUT_S * 2 / 0.5)
    head = (
        b"POST /api/osmand HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n" % len(drip)
    )
    answer = await raw_exchange(api.port, [head, *drip], pause_s=0.5)
    assert answer is not None and answer.startswith(b"HTTP/1.1 408"), answer
    assert b"request_timeout" in answer
    await assert_still_serving(api.url)


@pytest.mark.parametrize(
    ("size", "refused"), [(MAX_HEADER_BYTES // 2, False), (MAX_HEADER_BYTES * 2, True)]
)
async def test_oversized_headers_are_refused(fleet: Fleet, size: int, refused: bool) -> None:
    api = fleet.alive("api")[0]
    assert api.port is not None
    request = (
        b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Big: "
        + b"a" * size
        + b"\r\n\r\n"
    )
    answer = await raw_exchange(api.port, [request], pause_s=10)
    assert answer is not None
    assert answer.startswith(b"HTTP/1.1 400" if refused else b"HTTP/1.1 200"), answer[:200]
    await assert_still_serving(api.url)


@pytest.mark.parametrize("chunked", [False, True])
async def test_oversized_bodies_get_413(fleet: Fleet, chunked: bool) -> None:
    """Over a raw socket, reading after every piece: the server answers 413 as soon as it
    knows (declared length at once, chunked once 1 MB has arrived) without waiting for the
    rest. (An HTTP client that writes the whole body before reading may instead see the
    connection reset: the server does not read what it refused.)"""
    api = fleet.alive("api")[0]
    assert api.port is not None
    line = b'{"deviceId": "FLT001", "fixTime": 0, "lat": 0, "lon": 0}\n'
    body = line * (2_300_000 // len(line))  # 2.3 MB, over the 1 MB limit
    pieces = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    head = (
        b"POST /api/positions/batch HTTP/1.1\r\nHost: localhost\r\n"
        b"X-API-Key: traccar-shared-key\r\nContent-Type: application/x-ndjson\r\n"
    )
    if chunked:
        head += b"Transfer-Encoding: chunked\r\n\r\n"
        pieces = [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces] + [b"0\r\n\r\n"]
    else:
        head += b"Content-Length: %d\r\n\r\n" % len(body)
    answer = await raw_exchange(api.port, [head + pieces[0], *pieces[1:]], pause_s=0.3)
    assert answer is not None, "closed without an answer"
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b'"payload_too_large"' in answer
    await assert_still_serving(api.url)


@pytest.mark.parametrize(
    ("path", "content_type", "needs"),
    [
        ("/api/positions/batch", "application/json", "key"),
        ("/api/positions/batch", "application/x-ndjson", "key"),
        ("/api/traccar/positions", "application/json", "key"),
        ("/api/traccar/events", "application/json", "key"),
        ("/api/auth/login", "application/json", None),
        ("/api/geofences", "application/json", "token"),
        ("/api/routes", "application/json", "token"),
    ],
)
@pytest.mark.parametrize("body", [NESTED_ARRAYS, NESTED_OBJECTS], ids=["arrays", "objects"])
async def test_deeply_nested_json_is_a_4xx(
    fleet: Fleet, path: str, content_type: str, needs: str | None, body: bytes
) -> None:
    from tests.reliability.support import login_token

    api = fleet.alive("api")[0]
    headers = {"Content-Type": content_type}
    if needs == "key":
        headers["X-API-Key"] = "traccar-shared-key"
    elif needs == "token":
        headers["Authorization"] = f"Bearer {await login_token(api.url)}"
    async with httpx.AsyncClient(timeout=30) as http:
        resp = await http.post(f"{api.url}{path}", content=body, headers=headers)
    if content_type == "application/x-ndjson":
        # NDJSON is judged line by line: the one line is refused, nothing accepted.
        assert resp.status_code == 200, (resp.status_code, resp.text[:300])
        got = resp.json()
        assert got["accepted"] == 0 and [r["line"] for r in got["rejected"]] == [1], got
    else:
        assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:300])
        assert "error" in resp.json()
    await assert_still_serving(api.url)


async def test_a_forged_forwarded_for_does_not_split_the_login_limit(fleet: Fleet) -> None:
    """uvicorn believed X-Forwarded-For from 127.0.0.1, so each forged address got a fresh
    per-address counter. Without trusted proxies the TCP peer is the address."""
    from infrastructure.redis import create_redis

    api = fleet.alive("api")[0]
    limit = fleet.settings.auth.login_max_failures_per_address
    statuses = []
    try:
        async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
            for i in range(limit + 1):
                resp = await http.post(
                    "/api/auth/login",
                    json={"email": f"nobody{i}@x.org", "password": "w", "tenantId": "t"},
                    headers={"X-Forwarded-For": f"203.0.113.{i + 1}"},
                )
                statuses.append(resp.status_code)
    finally:  # the other tests log in from 127.0.0.1 too
        redis = create_redis(fleet.settings.redis)
        await redis.delete(
            f"{fleet.settings.redis.key_prefix}auth:login_failures:address:127.0.0.1"
        )
        await redis.aclose()
    assert statuses[:limit] == [401] * limit
    assert statuses[limit] == 429
