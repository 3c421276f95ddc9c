"""The local stack, no Docker: PostgreSQL + PostGIS (+ TimescaleDB), Redis, MariaDB, Kafka
(KRaft), Connect, and a second, plain PostgreSQL (``postgres-plain``).

Installed from Debian packages and Maven Central (TimescaleDB built from its source), run
detached in the background as the machine's own processes, with data, configuration, pid
files and logs under
``settings.stack.root/<service>/`` (``.stack/`` by default)::

    from infrastructure import stack
    stack.up(settings)                  # install if needed, start, wait until ready
    stack.status(settings)              # -> [ServiceStatus(name, port, up, pid, log), ...]
    stack.stop(settings, "kafka")       # simulate an outage ...
    stack.start(settings, "kafka")      # ... and recover (waits until ready)
    stack.down(settings)                # stop everything, keep the data

Everything is idempotent: ``up`` on a running stack only checks it (about a second).
Also usable as ``python -m infrastructure.stack up|down|status [service...]``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from infrastructure.progress import Progress
from infrastructure.secrets import ensure_local_secrets, with_local_secrets
from infrastructure.settings import LOCAL_SECRETS_FILE, Settings
from infrastructure.stack import _apt
from infrastructure.stack._proc import StackError, locked
from infrastructure.stack._service import Service, ServiceStatus
from infrastructure.stack.connect import Connect
from infrastructure.stack.kafka import Kafka
from infrastructure.stack.mariadb import MariaDB
from infrastructure.stack.postgres import PlainPostgres, Postgres
from infrastructure.stack.redis import Redis

__all__ = [
    "SERVICES",
    "ServiceStatus",
    "StackError",
    "down",
    "install",
    "start",
    "status",
    "stop",
    "up",
]

log = logging.getLogger(__name__)

SERVICES: tuple[str, ...] = ("postgres", "postgres-plain", "redis", "mariadb", "kafka", "connect")
_CLASSES: dict[str, type[Service]] = {
    "postgres": Postgres,
    "postgres-plain": PlainPostgres,
    "redis": Redis,
    "mariadb": MariaDB,
    "kafka": Kafka,
    "connect": Connect,
}


def install(settings: Settings, services: Sequence[str] | None = None) -> None:
    """Install what the services need (Debian packages, Kafka's jars); quick when present."""
    with locked(settings.stack.root):
        _install(settings, _select(settings, services))


def up(settings: Settings, services: Sequence[str] | None = None) -> None:
    """Start every (or the named) service in the background and wait until all are ready.

    Installs what is missing first (also for a running service whose install step has work,
    e.g. a new TimescaleDB source). Services already running are reused (and their app account,
    database, password and config checked), so a second call returns in about a second.
    """
    written = ensure_local_secrets()
    if written:
        log.info(
            "wrote random %s for this installation to %s (git-ignored; keep it private)",
            ", ".join(written),
            LOCAL_SECRETS_FILE,
        )
    # Never the repository's default password: a running service still using it (a stack
    # from before .secrets.env had passwords) is moved to the installation's own by the
    # provisioning below (ALTER ROLE / ALTER USER / requirepass), and so are connectors.
    settings = with_local_secrets(settings)
    with locked(settings.stack.root):
        selected = _select(settings, services)
        pending = [s for s in selected if not s.probe() or s.install_pending()]
        if not pending:
            _each(selected, lambda service: service.start())  # checks, about a second
        else:
            _install(settings, pending)
            # a start waits until the service answers (Kafka: ~10 s): say so while it waits
            with Progress("starting the local stack", len(selected), "services") as progress:

                def start(service: Service) -> None:
                    service.start()
                    progress.advance()

                _each(selected, start)
        connect = next((s for s in selected if isinstance(s, Connect)), None)
        if connect is not None:
            connect.update_connector_passwords()


def down(settings: Settings, services: Sequence[str] | None = None) -> None:
    """Stop every (or the named) service cleanly; their data stays under the stack root."""
    with locked(settings.stack.root):
        _each(list(reversed(_select(settings, services))), lambda service: service.stop())


def start(settings: Settings, name: str) -> None:
    """Start one service (installing it if needed) and wait until it is ready."""
    up(settings, [name])


def stop(settings: Settings, name: str) -> None:
    """Stop one service and wait until its process exited (tests simulate outages with it)."""
    down(settings, [name])


def status(settings: Settings) -> list[ServiceStatus]:
    """Probe every service and return its status, in start order."""
    return [service.status() for service in _select(settings, None)]


def _select(settings: Settings, names: Sequence[str] | None) -> list[Service]:
    if isinstance(names, str):
        names = [names]
    wanted = list(SERVICES) if names is None else list(names)
    unknown = [n for n in wanted if n not in _CLASSES]
    if unknown:
        raise ValueError(f"unknown service(s) {unknown}; known: {', '.join(SERVICES)}")
    return [_CLASSES[n](settings) for n in SERVICES if n in wanted]


def _install(settings: Settings, services: list[Service]) -> None:
    # the first run installs packages, downloads jars and builds TimescaleDB (minutes): a
    # line per step, and one every few seconds while a step runs (infrastructure/progress.py)
    names = ", ".join(s.name for s in services)
    with Progress(f"installing the local stack ({names})", len(services) + 1, "steps") as p:
        _install_packages(settings, services)
        p.advance()
        for service in services:
            service.install_extra()
            p.advance()


def _install_packages(settings: Settings, services: list[Service]) -> None:
    requirements = [r for s in services for r in s.apt_requirements()]
    if _apt.missing(requirements):
        logfile = settings.stack.root / "install.log"
        log.info("installing Debian packages (log: %s)", logfile)
        _apt.apt_update(logfile)
        needed = _apt.missing(r for s in services for r in s.apt_requirements(for_install=True))
        packages = [_apt.resolve(r) for r in needed]
        log.info("apt-get install %s", " ".join(packages))
        _apt.apt_install(packages, logfile)
        still = _apt.missing(r for s in services for r in s.apt_requirements())
        if still:
            names = ", ".join("|".join(r.alternatives) for r in still)
            raise StackError("install", f"still missing after apt-get: {names}", logfile)


def _each(services: list[Service], action: Callable[[Service], None]) -> None:
    """Run ``action`` on the services in parallel (they are independent); raise all failures."""
    if not services:
        return
    errors: list[StackError] = []
    with ThreadPoolExecutor(max_workers=len(services)) as pool:
        futures = [(s, pool.submit(action, s)) for s in services]
        for service, future in futures:
            exc = future.exception()
            if exc is None:
                continue
            if not isinstance(exc, StackError):
                wrapped = StackError(service.name, f"{type(exc).__name__}: {exc}", service.log)
                wrapped.__cause__ = exc
                exc = wrapped
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        names = ", ".join(e.service for e in errors)
        combined = StackError(names, "failed:\n\n" + "\n\n".join(str(e) for e in errors))
        combined.__cause__ = errors[0]
        raise combined
