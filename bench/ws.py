"""Live feed benchmark: N real socket.io clients, drivers at 1 Hz, latency and api cost.

Starts one api process (uvicorn, ``api.main:create_asgi``) on a free port with its own Kafka
topic prefix, N socket.io clients spread over several processes (websocket transport, each
joined to its tenant room on connect), and a generator process that produces enriched
positions straight onto ``gps.positions.enriched`` (receivedAt = the send time) at
``drivers × rate`` per second. Reports latency receivedAt → client received (p50/p99, over
sampled batch entries), frames/s received, drops, CPU and RSS of the api process. JSON on
stdout.

    .venv/bin/python -m bench.ws --clients 500 --drivers 1000 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.stats import percentile_or_none

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
NS = "/tracking"


class _OrjsonShim:
    """What socket.io's packet encoder expects of a json module, backed by orjson."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        import orjson

        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(s: str | bytes) -> Any:
        import orjson

        return orjson.loads(s)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _clients_main(
    url: str,
    tokens: list[str],
    warmup: float,
    duration: float,
    sample: int,
    out: Any,
    light: bool = False,
    updates: bool = False,
) -> None:
    run = _light_clients if light else _clients
    asyncio.run(run(url, tokens, warmup, duration, sample, out, updates))


EVENT_PREFIX = f"42{NS},"
RECEIVED_AT = '"receivedAt":"'


async def _light_clients(
    url: str,
    tokens: list[str],
    warmup: float,
    duration: float,
    sample: int,
    out: Any,
    updates: bool = False,
) -> None:
    """socket.io clients speaking the wire protocol directly (Engine.IO 4 / socket.io 5 over
    a websocket): the handshake, the namespace connect with the token, ping/pong, and every
    frame read off the socket — but a frame is not JSON-decoded: the latency samples are the
    ``receivedAt`` of a few entries found by string search. A python-socketio client decodes
    every frame (about 1 ms for 1,000 entries), so 500 of them on this 2-core machine would
    mostly measure the clients."""
    import aiohttp
    import orjson

    rng = random.Random(os.getpid())
    latencies: list[float] = []
    stats = {"frames": 0, "entries": 0, "errors": 0, "disconnects": 0, "connected": 0}
    state = {"measuring": False, "done": False}
    feed_event = '["position:update"' if updates else '["positions:batch"'

    def on_frame(data: str) -> None:
        now = time.time() * 1000
        stats["frames"] += 1
        stats["entries"] += data.count(RECEIVED_AT)
        for _ in range(sample):
            i = data.find(RECEIVED_AT, rng.randrange(len(data)))
            if i < 0:
                i = data.find(RECEIVED_AT)
            if i < 0:
                return
            start = i + len(RECEIVED_AT)
            stamp = data[start : data.index('"', start)]
            latencies.append(now - datetime.fromisoformat(stamp).timestamp() * 1000)

    async def one(session: aiohttp.ClientSession, token: str) -> None:
        ws_url = url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
        for attempt in range(5):
            try:
                ws = await session.ws_connect(ws_url, max_msg_size=0, autoping=True)
                break
            except aiohttp.ClientError:
                await asyncio.sleep(0.5 + attempt)
        else:
            return
        opened = await ws.receive_str()
        if not opened.startswith("0"):
            stats["errors"] += 1
            return
        auth = {"token": token, "batches": not updates}  # seed clients do not opt in
        await ws.send_str(f"40{NS}," + orjson.dumps(auth).decode())
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data: str = msg.data
            if data == "2":  # Engine.IO ping
                await ws.send_str("3")
            elif data.startswith(EVENT_PREFIX):
                if data.startswith(feed_event, len(EVENT_PREFIX)):
                    if state["measuring"]:
                        on_frame(data)
                elif data.startswith('["error"', len(EVENT_PREFIX)):
                    stats["errors"] += 1
            elif data.startswith(f"40{NS},"):
                stats["connected"] += 1
            elif data.startswith(f"44{NS},"):  # connect refused
                stats["errors"] += 1
                break
            if state["done"]:
                break
        if state["measuring"]:
            stats["disconnects"] += 1
        await ws.close()

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = []
        for i in range(0, len(tokens), 25):
            tasks += [asyncio.create_task(one(session, t)) for t in tokens[i : i + 25]]
            await asyncio.sleep(0.05)
        await asyncio.sleep(warmup)
        state["measuring"] = True
        await asyncio.sleep(duration)
        state["measuring"] = False
        out.put({"kind": "protocol", "stats": stats, "latencies": latencies})
        state["done"] = True
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _clients(
    url: str,
    tokens: list[str],
    warmup: float,
    duration: float,
    sample: int,
    out: Any,
    updates: bool = False,
) -> None:
    import socketio

    rng = random.Random(os.getpid())
    latencies: list[float] = []
    stats = {"frames": 0, "entries": 0, "errors": 0, "disconnects": 0, "connected": 0}
    measuring = False

    def on_batch(frame: dict[str, Any]) -> None:
        if not measuring:
            return
        now = time.time() * 1000
        stats["frames"] += 1
        positions = frame["positions"]
        stats["entries"] += len(positions)
        for p in rng.sample(positions, min(sample, len(positions))):
            latencies.append(now - datetime.fromisoformat(p["receivedAt"]).timestamp() * 1000)

    clients = []

    async def one(token: str) -> None:
        sio = socketio.AsyncClient(reconnection=False, json=_OrjsonShim)
        if updates:  # a seed client: one position per event
            sio.on("position:update", lambda p: on_batch({"positions": [p]}), namespace=NS)
        else:
            sio.on("positions:batch", on_batch, namespace=NS)

        def err(data: Any = None) -> None:
            stats["errors"] += 1

        def gone(*_: Any) -> None:
            if measuring:
                stats["disconnects"] += 1

        sio.on("error", err, namespace=NS)
        sio.on("disconnect", gone, namespace=NS)
        for attempt in range(5):
            try:
                await sio.connect(
                    url,
                    namespaces=[NS],
                    auth={"token": token, "batches": not updates},
                    transports=["websocket"],
                    wait_timeout=30,
                )
                break
            except Exception:
                await asyncio.sleep(0.5 + attempt)
        if sio.connected:
            stats["connected"] += 1
            clients.append(sio)

    for i in range(0, len(tokens), 25):  # connect in waves: the server is also accepting
        await asyncio.gather(*(one(t) for t in tokens[i : i + 25]))
    await asyncio.sleep(warmup)
    measuring = True
    await asyncio.sleep(duration)
    measuring = False
    out.put({"kind": "python-socketio", "stats": stats, "latencies": latencies})
    await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)


def _generator_main(
    env: dict[str, str], drivers: int, tenants: list[str], rate: float, seconds: float
) -> None:
    os.environ.update(env)
    asyncio.run(_generate(drivers, tenants, rate, seconds))


async def _generate(drivers: int, tenants: list[str], rate: float, seconds: float) -> None:
    """Every driver reports every 1/rate s, spread evenly over the period, on a random walk."""
    import orjson
    from aiokafka import AIOKafkaProducer

    from infrastructure.kafka import GPS_POSITIONS_ENRICHED
    from infrastructure.settings import Settings

    settings = Settings()
    topic = settings.kafka.topic(GPS_POSITIONS_ENRICHED)
    rng = random.Random(1)
    fleet = [
        (
            str(uuid.uuid4()),
            tenants[i % len(tenants)],
            24.9 + rng.random() * 0.2,
            60.1 + rng.random() * 0.1,
        )
        for i in range(drivers)
    ]
    pos = {d: [lon, lat] for d, _, lon, lat in fleet}
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, linger_ms=5)
    await producer.start()
    period = 1.0 / rate
    slices = 20
    per_slice = max(1, len(fleet) // slices)
    start = time.monotonic()
    try:
        k = 0
        while time.monotonic() - start < seconds:
            chunk = fleet[(k % slices) * per_slice : (k % slices + 1) * per_slice]
            now = time.time()
            iso = datetime.fromtimestamp(now, tz=UTC).isoformat(timespec="milliseconds")
            for d, tenant, _, _ in chunk:
                p = pos[d]
                p[0] += rng.uniform(-1e-4, 1e-4)
                p[1] += rng.uniform(-1e-4, 1e-4)
                msg = {
                    "schema": 1,
                    "tenantId": tenant,
                    "driverId": d,
                    "driverName": f"Driver {d[:6]}",
                    "deviceId": f"DEV-{d[:8]}",
                    "fixTime": iso,
                    "fixTimeMs": int(now * 1000),
                    "receivedAt": iso,
                    "lat": p[1],
                    "lon": p[0],
                    "speed": 30.0,
                    "course": 90.0,
                    "routeId": None,
                    "nextVisitId": None,
                    "etaSeconds": None,
                    "geofenceId": None,
                }
                await producer.send(topic, key=d.encode(), value=orjson.dumps(msg))
            k += 1
            next_at = start + k * period / slices
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--client-procs", type=int, default=4)
    parser.add_argument(
        "--full-clients",
        type=int,
        default=20,
        help="of --clients, how many are python-socketio clients (the rest speak the "
        "protocol directly and do not decode frames; see _light_clients)",
    )
    parser.add_argument("--drivers", type=int, default=1000)
    parser.add_argument("--tenants", type=int, default=1, help="drivers and viewers spread over")
    parser.add_argument("--rate", type=float, default=1.0, help="fixes per driver per second")
    parser.add_argument("--interval-ms", type=int, default=1000, help="batch interval")
    parser.add_argument(
        "--ws", default="auto", help="uvicorn's websocket implementation (as `fleetpulse api`)"
    )
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--sample", type=int, default=20, help="latency samples per frame")
    parser.add_argument(
        "--feed",
        choices=("batches", "updates"),
        default="batches",
        help="viewers opt into positions:batch, or are seed clients (position:update per "
        "driver per interval in the tenant room)",
    )
    args = parser.parse_args()

    import httpx
    import psutil

    from api.security import Principal, issue_access_token
    from infrastructure.kafka import delete_topics, ensure_topics
    from infrastructure.settings import Settings

    run = uuid.uuid4().hex[:8]
    env = {
        "FLEETPULSE_KAFKA__TOPIC_PREFIX": f"bench-ws-{run}.",
        "FLEETPULSE_REDIS__KEY_PREFIX": f"bench-ws-{run}:",
        "FLEETPULSE_LIVE__BATCH_INTERVAL_MS": str(args.interval_ms),
        "FLEETPULSE_LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    settings = Settings()
    asyncio.run(ensure_topics(settings.kafka))
    tenants = [f"tenant-{i + 1}" for i in range(args.tenants)]
    port = _free_port()
    api = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.main:create_asgi", "--factory"]
        + ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        + ["--ws-per-message-deflate", "false", "--no-access-log", "--ws", args.ws],
        env={**os.environ},
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    admin = issue_access_token(
        Principal(str(uuid.uuid4()), "tenant-1", "admin", "bench@x"), settings.auth
    )
    headers = {"Authorization": f"Bearer {admin}"}
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/api/live/metrics", headers=headers).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        proc = psutil.Process(api.pid)
        tokens = [
            issue_access_token(
                Principal(str(uuid.uuid4()), tenants[i % len(tenants)], "dispatcher", "d@x"),
                settings.auth,
            )
            for i in range(args.clients)
        ]
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        connect_s = 5.0 + args.clients / 50
        total = connect_s + args.warmup + args.duration + 5
        gen = ctx.Process(
            target=_generator_main, args=(env, args.drivers, tenants, args.rate, total + 10)
        )
        gen.start()
        full = min(args.full_clients, args.clients)
        light_tokens = tokens[full:]
        procs = (
            [
                ctx.Process(
                    target=_clients_main,
                    args=(url, tokens[:full], connect_s + args.warmup, args.duration, 1, out),
                    kwargs={"light": False, "updates": args.feed == "updates"},
                )
            ]
            if full
            else []
        )
        procs += [
            ctx.Process(
                target=_clients_main,
                args=(
                    url,
                    light_tokens[i :: args.client_procs],
                    connect_s + args.warmup,
                    args.duration,
                    args.sample,
                    out,
                ),
                kwargs={"light": True, "updates": args.feed == "updates"},
            )
            for i in range(args.client_procs)
            if light_tokens[i :: args.client_procs]
        ]
        for p in procs:
            p.start()
        time.sleep(connect_s + args.warmup)
        m0 = httpx.get(f"{url}/api/live/metrics", headers=headers).json()
        proc.cpu_percent(None)
        clients_ps = [psutil.Process(p.pid) for p in procs]
        clients_cpu0 = sum(sum(c.cpu_times()[:2]) for c in clients_ps)
        machine0 = psutil.cpu_times()
        rss_peak, t0 = 0, time.monotonic()
        cpu_samples = []
        while time.monotonic() - t0 < args.duration:
            time.sleep(1.0)
            cpu_samples.append(proc.cpu_percent(None))
            rss_peak = max(rss_peak, proc.memory_info().rss)
        wall = time.monotonic() - t0
        clients_cores = (sum(sum(c.cpu_times()[:2]) for c in clients_ps) - clients_cpu0) / wall
        machine1 = psutil.cpu_times()
        machine_cores = (machine1.user + machine1.system - machine0.user - machine0.system) / wall
        m1 = httpx.get(f"{url}/api/live/metrics", headers=headers).json()
        results = [out.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(30)
        gen.terminate()
        latencies = [x for r in results for x in r["latencies"]]
        full_latencies = [
            x for r in results if r["kind"] == "python-socketio" for x in r["latencies"]
        ]
        stats = {k: sum(r["stats"][k] for r in results) for k in results[0]["stats"]}
        report = {
            "clients": args.clients,
            "clientsConnected": stats["connected"],
            "clientProcesses": args.client_procs,
            "drivers": args.drivers,
            "tenants": args.tenants,
            "fixesPerSecond": args.drivers * args.rate,
            "batchIntervalMs": args.interval_ms,
            "uvicornWs": args.ws,
            "durationS": args.duration,
            "latencyMs": {
                "p50": percentile_or_none(latencies, 0.50),
                "p99": percentile_or_none(latencies, 0.99),
                "max": percentile_or_none(latencies, 1.0),
                "samples": len(latencies),
            },
            "latencyMsPythonSocketioClients": {
                "clients": full,
                "p50": percentile_or_none(full_latencies, 0.50),
                "p99": percentile_or_none(full_latencies, 0.99),
                "samples": len(full_latencies),
            },
            "feed": args.feed,
            "positionUpdatesSentPerSecond": round(
                (m1["positionUpdatesSent"] - m0["positionUpdatesSent"]) / args.duration, 1
            ),
            "framesReceivedPerSecond": round(stats["frames"] / args.duration, 1),
            "entriesReceivedPerSecond": round(stats["entries"] / args.duration, 1),
            "serverFramesPerSecond": m1["framesPerSecond"],
            "positionsInPerSecond": round(
                (m1["positionsIn"] - m0["positionsIn"]) / args.duration, 1
            ),
            "drops": m1["dropped"] - m0["dropped"],
            "directClients": m1.get("directClients"),
            "maxClientQueue": m1["maxClientQueue"],
            "clientErrors": stats["errors"],
            "clientDisconnects": stats["disconnects"],
            "apiCpuPercent": {
                "mean": round(sum(cpu_samples) / max(1, len(cpu_samples)), 1),
                "max": max(cpu_samples, default=0.0),
            },
            "apiRssMb": round(rss_peak / 2**20, 1),
            # the viewers run on the same cores as the server: what they take is not the api's
            "clientProcessesCpuCores": round(clients_cores, 2),
            "machineCpuCores": round(machine_cores, 2),
            "generator": "bench/ws.py built-in (enriched messages straight to the topic)",
            "cpuCount": os.cpu_count(),
            "loadAverage": os.getloadavg(),
        }
        print(json.dumps(report, indent=2))
    finally:
        api.terminate()
        try:
            api.wait(20)
        except subprocess.TimeoutExpired:
            api.kill()
        asyncio.run(delete_topics(settings.kafka, f"bench-ws-{run}."))


if __name__ == "__main__":
    main()
