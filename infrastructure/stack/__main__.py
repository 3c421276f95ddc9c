"""``python -m infrastructure.stack up|down|status|install [service...]``.

A shim usable before the main CLI exists (``fleetpulse stack ...`` calls the same functions).
Exit codes: 0 done (status: all up), 1 a service failed, 2 bad usage, 3 status: something down.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from infrastructure import stack
from infrastructure.settings import Settings


def format_status(rows: list[stack.ServiceStatus]) -> str:
    """Return the services' status as an aligned text table."""
    table = [("SERVICE", "PORT", "STATE", "PID", "LOG")]
    table += [
        (r.name, str(r.port), "up" if r.up else "down", str(r.pid or "-"), str(r.log)) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in table]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the stack command line; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m infrastructure.stack", description="Manage the local FleetPulse stack."
    )
    parser.add_argument("command", choices=["up", "down", "status", "install"])
    parser.add_argument(
        "services",
        nargs="*",
        metavar="service",
        help=f"some of {', '.join(stack.SERVICES)} (default: all)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    args = parser.parse_args(argv)
    unknown = [name for name in args.services if name not in stack.SERVICES]
    if unknown:
        parser.error(
            f"unknown service {', '.join(unknown)} (choose from {', '.join(stack.SERVICES)})"
        )
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
    )
    settings = Settings()
    services = args.services or None
    began = time.monotonic()
    try:
        if args.command == "up":
            stack.up(settings, services)
        elif args.command == "down":
            stack.down(settings, services)
        elif args.command == "install":
            stack.install(settings, services)
    except stack.StackError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    elapsed = time.monotonic() - began
    rows = [r for r in stack.status(settings) if services is None or r.name in services]
    sys.stdout.write(format_status(rows))
    if args.command != "status":
        sys.stdout.write(f"{args.command} took {elapsed:.1f} s\n")
    if args.command in ("up", "status") and not all(r.up for r in rows):
        return 3
    if args.command == "down" and any(r.up for r in rows):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
