"""The ``fleetpulse`` command line: api, worker, migrate, seed, topics, stack."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from infrastructure.settings import Settings


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


async def _migrate(settings: Settings, *, seed: bool) -> None:
    from infrastructure.migrate import migrate
    from infrastructure.postgres import connect
    from infrastructure.seed import seed as seed_demo

    conn = await connect(settings.pg)
    try:
        applied = await migrate(conn)
        print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")
        if seed:
            await seed_demo(conn)
            print("demo data present")
    finally:
        await conn.close()


def _run_until_signal(coro_factory: object) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        assert callable(coro_factory)
        await coro_factory(stop)

    asyncio.run(main())


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
    p_run = sub.add_parser("run", help="the demo: api + enrichment workers (Ctrl-C stops)")
    p_run.add_argument("--workers", type=int, default=2)
    p_stack = sub.add_parser("stack", help="the local services (no Docker)")
    p_stack.add_argument("action", choices=["up", "down", "status"])
    p_stack.add_argument("services", nargs="*")
    args = parser.parse_args(argv)

    settings = Settings()
    _configure_logging(settings)

    if args.command == "api":
        import uvicorn

        from api.main import create_app

        uvicorn.run(
            create_app(settings),
            host=args.host or settings.http_host,
            port=args.port or settings.http_port,
            log_level=settings.log_level.lower(),
            access_log=False,
        )
    elif args.command == "worker":
        from ingest.worker import run_worker

        _run_until_signal(lambda stop: run_worker(settings, stop))
    elif args.command == "migrate":
        asyncio.run(_migrate(settings, seed=args.seed))
    elif args.command == "seed":
        asyncio.run(_migrate(settings, seed=True))
    elif args.command == "topics":
        from infrastructure.kafka import ensure_topics

        asyncio.run(ensure_topics(settings.kafka))
        print("topics present")
    elif args.command == "stack":
        return _stack(settings, args.action, args.services)
    elif args.command == "run":
        return _run_demo(settings, args.workers)
    return 0


def _run_demo(settings: Settings, workers: int) -> int:
    """Start N workers as child processes and the api in this one; stop them all on exit."""
    import subprocess

    children = [
        subprocess.Popen([sys.executable, "-m", "api.cli", "worker"]) for _ in range(workers)
    ]
    url = f"http://localhost:{settings.http_port}"
    print(
        f"""
FleetPulse is starting with {workers} enrichment workers.
  API docs      {url}/docs
  health        {url}/api/health
  demo login    admin@tenant1.com / admin123 (tenant-1)
  send a fix    curl -X POST {url}/api/traccar/positions -H 'X-API-Key: traccar-shared-key' \\
                  -H 'Content-Type: application/json' -d '[{{"fixTime": "<now ISO>",
                  "latitude": 40.713, "longitude": -74.0055, "speed": 5,
                  "attributes": {{"uniqueId": "DEV001"}}}}]'
Ctrl-C stops the api and the workers; the stack keeps running (make stack-down stops it).
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


def _stack(settings: Settings, action: str, services: list[str]) -> int:
    from infrastructure import stack

    names = services or None
    try:
        if action == "up":
            stack.up(settings, names)
            from infrastructure.kafka import ensure_topics

            asyncio.run(ensure_topics(settings.kafka))
        elif action == "down":
            stack.down(settings, names)
    except stack.StackError as exc:
        print(f"stack {action} failed: {exc}", file=sys.stderr)
        return 1
    rows = stack.status(settings)
    for s in rows:
        print(f"{s.name:<10} {'up' if s.up else 'down':<5} port {s.port:<6} log {s.log}")
    return 0 if action != "up" or all(s.up for s in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
