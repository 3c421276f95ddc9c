"""Redis: ``redis-server`` with a generated config, data and AOF under ``.stack/redis``.

The server requires the password of ``settings.redis`` (``requirepass``; ``.secrets.env``
holds a random one): a client that has not sent it gets ``NOAUTH`` for every command. A
running server without that password is moved to it by ``up``: ``CONFIG SET requirepass``
when it has none (its clients stay connected), a restart with the new config when it has
another one.
"""

from __future__ import annotations

import logging
import shutil
import socket
from collections.abc import Sequence
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

log = logging.getLogger("infrastructure.stack")

NO_PASSWORD_SET = b"without any password configured"


def redis_call(host: str, port: int, *commands: Sequence[str], timeout: float = 1.0) -> list[bytes]:
    """Send commands on one connection; return the first line of each reply (b"" if none).

    Raises OSError when the server cannot be reached.
    """
    replies: list[bytes] = []
    with socket.create_connection((host, port), timeout=timeout) as sock:
        reader = sock.makefile("rb")
        for command in commands:
            parts = [f"*{len(command)}\r\n".encode()]
            for arg in command:
                data = arg.encode()
                parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
            sock.sendall(b"".join(parts))
            replies.append(reader.readline().rstrip(b"\r\n"))
    return replies


def redis_ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """Return whether a Redis server at host:port answers PING (PONG, or NOAUTH: it is up
    and wants the password)."""
    try:
        (reply,) = redis_call(host, port, ["PING"], timeout=timeout)
    except (OSError, OverflowError):  # OverflowError: a port outside 0..65535
        return False
    return reply.startswith((b"+PONG", b"-NOAUTH"))


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
        # mode 600: the config holds the password
        write_if_changed(self.config, self._config_text(), 0o600)
        self.pidfile.unlink(missing_ok=True)
        # daemonize yes: redis-server forks, writes its pid file and the parent exits at once.
        run(self.name, [server, str(self.config)], cwd=self.dir, log=self.log, new_session=True)

    def _config_text(self) -> str:
        password = self.settings.redis.password.get_secret_value()
        if any(c in password for c in '"\\\r\n'):
            raise StackError(self.name, "the Redis password holds a quote, backslash or newline")
        requirepass = f'requirepass "{password}"\n' if password else ""
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
{requirepass}"""

    def provision(self) -> None:
        """Make the running server require exactly the configured password (none if empty)."""
        password = self.settings.redis.password.get_secret_value()
        write_if_changed(self.config, self._config_text(), 0o600)
        (reply,) = self._call(["AUTH", password] if password else ["PING"])
        if reply.startswith((b"+OK", b"+PONG")):
            pass
        elif password and NO_PASSWORD_SET in reply:
            # Clients connected without a password stay connected; new ones must send it.
            log.info("redis on port %d had no password: setting requirepass", self.port)
            self._call(["CONFIG", "SET", "requirepass", password], expect=b"+OK")
        else:
            # Another password (or one we no longer want): only a restart with our config
            # changes it without knowing the old one.
            pid = self.pid()
            if pid is None:
                raise StackError(
                    self.name,
                    f"the server on port {self.port} wants another password and was not started"
                    " by this stack; set FLEETPULSE_REDIS__PASSWORD to its password",
                    self.log,
                )
            log.info("restarting redis (pid %d) to apply its password", pid)
            self.shutdown(pid)
            self.launch()
            self._wait_ready()
            self._call(["AUTH", password] if password else ["PING"], expect=b"+")
        if password:
            (anonymous,) = self._call(["PING"])
            if not anonymous.startswith(b"-NOAUTH"):
                raise StackError(self.name, "the server answers clients without a password")

    def _call(self, command: list[str], *, expect: bytes | None = None) -> list[bytes]:
        try:
            replies = redis_call("127.0.0.1", self.port, command, timeout=5.0)
        except OSError as exc:
            raise StackError(self.name, f"{command[0]}: {exc}", self.log) from exc
        if expect is not None and not replies[0].startswith(expect):
            raise StackError(self.name, f"{command[0]} answered {replies[0]!r}", self.log)
        return replies

    def shutdown(self, pid: int) -> None:
        # SIGTERM makes redis flush the AOF, save the RDB and remove its pid file.
        terminate(pid, "redis-server", self.stop_timeout_s)
