"""What every service of the local stack has in common: start, wait until ready, stop, status."""

from __future__ import annotations

import abc
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from infrastructure.settings import Settings
from infrastructure.stack._proc import StackError

log = logging.getLogger("infrastructure.stack")

# A process that left no pid this long after its launch is taken to have died during startup.
PID_GRACE_S = 10.0


@dataclass(frozen=True)
class ServiceStatus:
    """One service as probed right now."""

    name: str
    port: int
    up: bool
    pid: int | None
    log: Path


@dataclass(frozen=True)
class AptRequirement:
    """Debian packages of which any one, installed, satisfies a need; the first that exists wins.

    With ``version`` only that exact Debian version counts and is installed (``name=version``),
    e.g. server headers that must match the installed server rather than apt's candidate.
    """

    alternatives: tuple[str, ...]
    version: str | None = None

    def spec(self, name: str) -> str:
        """Return what ``apt-get install`` is given for the alternative ``name``."""
        return name if self.version is None else f"{name}={self.version}"


class Service(abc.ABC):
    """One daemon of the local stack, with its data and log under ``<stack root>/<name>/``."""

    name: ClassVar[str]
    ready_timeout_s: ClassVar[float] = 60.0
    stop_timeout_s: ClassVar[float] = 60.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def dir(self) -> Path:
        """Return the directory holding this service's data, config, pid and log."""
        return self.settings.stack.root / self.name

    @property
    @abc.abstractmethod
    def port(self) -> int:
        """Return the TCP port the service listens on."""

    @property
    @abc.abstractmethod
    def log(self) -> Path:
        """Return the service's log file."""

    @abc.abstractmethod
    def pid(self) -> int | None:
        """Return the pid of the running daemon, or None when it is not running."""

    @abc.abstractmethod
    def probe(self) -> bool:
        """Return whether the service answers a real request right now."""

    @abc.abstractmethod
    def launch(self) -> None:
        """Create the data directory and config if needed and start the daemon (no waiting)."""

    @abc.abstractmethod
    def shutdown(self, pid: int) -> None:
        """Stop the running daemon cleanly and wait until it exited."""

    def apt_requirements(self, *, for_install: bool = False) -> list[AptRequirement]:
        """Return the Debian packages this service needs.

        ``for_install`` is set after ``apt-get update``, when versioned fallback names can be
        looked up.
        """
        return []

    def install_extra(self) -> None:  # noqa: B027 - optional hook, most services need nothing
        """Fetch what Debian does not package (Kafka's jars); quick when already present."""

    def install_pending(self) -> bool:
        """Return whether ``install_extra`` has work to do even though the service runs.

        ``up`` installs only for services that do not answer yet, unless this says so.
        """
        return False

    def provision(self) -> None:  # noqa: B027 - optional hook
        """Create the application's account and database if missing (service is ready)."""

    def start(self) -> None:
        """Start the service unless it already answers, wait until ready, then provision it."""
        if self.probe():
            log.debug("%s already running", self.name)
            self.provision()
            return
        if self.pid() is None:
            log.info("starting %s on port %d", self.name, self.port)
            self.launch()
        else:
            log.info("waiting for %s (pid %s) to become ready", self.name, self.pid())
        self._wait_ready()
        self.provision()
        log.info("%s ready on port %d (pid %s)", self.name, self.port, self.pid())

    def stop(self) -> None:
        """Stop the service if it runs; keep its data."""
        pid = self.pid()
        if pid is None:
            if self.probe():
                raise StackError(
                    self.name,
                    f"something answers on port {self.port} but it was not started by the stack "
                    f"(no live pid file under {self.dir}); stop it by hand",
                    self.log,
                )
            return
        log.info("stopping %s (pid %d)", self.name, pid)
        self.shutdown(pid)

    def status(self) -> ServiceStatus:
        """Return the service's current status, probing it."""
        return ServiceStatus(self.name, self.port, self.probe(), self.pid(), self.log)

    def _wait_ready(self) -> None:
        started = time.monotonic()
        deadline = started + self.ready_timeout_s
        seen_pid = False
        while True:
            if self.probe():
                return
            now = time.monotonic()
            if self.pid() is not None:
                seen_pid = True
            elif seen_pid or now - started > PID_GRACE_S:
                raise StackError(self.name, "exited during startup", self.log)
            if now >= deadline:
                raise StackError(
                    self.name, f"not ready after {self.ready_timeout_s:.0f} s", self.log
                )
            time.sleep(0.25)
