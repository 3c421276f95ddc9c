"""Redis: ``redis-server`` with a generated config, data and AOF under ``.stack/redis``."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from infrastructure.stack._proc import (
    StackError,
    process_alive,
    read_pid,
    run,
    terminate,
    write_if_changed,
)
from infrastructure.stack._service import AptRequirement, Service


def redis_ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """Return whether a Redis server at host:port answers PING with PONG."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except (OSError, OverflowError):  # OverflowError: a port outside 0..65535
        return False


class Redis(Service):
    name = "redis"
    ready_timeout_s = 60.0  # replaying a large AOF takes a while

    @property
    def port(self) -> int:
        return self.settings.redis.port

    @property
    def log(self) -> Path:
        return self.dir / "redis.log"

    @property
    def pidfile(self) -> Path:
        return self.dir / "redis.pid"

    @property
    def config(self) -> Path:
        return self.dir / "redis.conf"

    def apt_requirements(self, *, for_install: bool = False) -> list[AptRequirement]:
        return [AptRequirement(("redis-server",))]

    def pid(self) -> int | None:
        pid = read_pid(self.pidfile)
        return pid if pid is not None and process_alive(pid, "redis-server") else None

    def probe(self) -> bool:
        return redis_ping("127.0.0.1", self.port)

    def launch(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise StackError(self.name, "redis-server is not installed", self.log)
        self.dir.mkdir(parents=True, exist_ok=True)
        write_if_changed(self.config, self._config_text())
        self.pidfile.unlink(missing_ok=True)
        # daemonize yes: redis-server forks, writes its pid file and the parent exits at once.
        run(self.name, [server, str(self.config)], cwd=self.dir, log=self.log, new_session=True)

    def _config_text(self) -> str:
        return f"""\
# Written by infrastructure/stack on every start: change the generator, not this file.
bind 127.0.0.1
port {self.port}
protected-mode yes
daemonize yes
supervised no
pidfile "{self.pidfile}"
logfile "{self.log}"
loglevel notice
dir "{self.dir}"
dbfilename dump.rdb
save 3600 1 300 100 60 10000
appendonly yes
appendfilename "appendonly.aof"
appendfsync everysec
# Live state only: a full dev box must not page; writes fail loudly instead of evicting.
maxmemory 4gb
maxmemory-policy noeviction
tcp-keepalive 60
timeout 0
"""

    def shutdown(self, pid: int) -> None:
        # SIGTERM makes redis flush the AOF, save the RDB and remove its pid file.
        terminate(pid, "redis-server", self.stop_timeout_s)
