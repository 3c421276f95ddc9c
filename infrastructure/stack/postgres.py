"""PostgreSQL with PostGIS and pgRouting: a private cluster under ``.stack/postgres``.

The cluster is created with ``initdb`` and run with ``pg_ctl`` as the ``postgres`` account:
the postmaster refuses to run as root.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from infrastructure.stack._proc import (
    StackError,
    check_traversable,
    chown_tree,
    process_alive,
    read_pid,
    run,
    tcp_open,
    write_if_changed,
)
from infrastructure.stack._service import AptRequirement, Service

PG_LIB = Path("/usr/lib/postgresql")
PG_SHARE = Path("/usr/share/postgresql")
OS_USER = "postgres"
INCLUDE_LINE = "include 'fleetpulse.conf'"


def installed_versions() -> list[int]:
    """Return the PostgreSQL server major versions installed, newest first."""
    if not PG_LIB.is_dir():
        return []
    found = [
        int(p.name)
        for p in PG_LIB.iterdir()
        if p.name.isdigit() and (p / "bin" / "postgres").exists()
    ]
    return sorted(found, reverse=True)


def candidate_version() -> int | None:
    """Return the major version Debian's ``postgresql`` package would install (needs apt lists)."""
    try:
        out = run("postgres", ["apt-cache", "depends", "postgresql"], timeout=60)
    except StackError:
        return None
    match = re.search(r"Depends: postgresql-(\d+)\b", out)
    return int(match.group(1)) if match else None


def sql_literal(value: str) -> str:
    """Quote a string as an SQL literal (standard_conforming_strings is on)."""
    return "'" + value.replace("'", "''") + "'"


def sql_ident(value: str) -> str:
    """Quote an SQL identifier."""
    return '"' + value.replace('"', '""') + '"'


class Postgres(Service):
    name = "postgres"
    ready_timeout_s = 120.0

    @property
    def port(self) -> int:
        return self.settings.pg.port

    @property
    def log(self) -> Path:
        return self.dir / "postgres.log"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.dir / "run"

    def bindir(self) -> Path:
        """Return the bin dir of the server version to run: the cluster's, or the newest.

        An existing cluster pins its major version (PG_VERSION); a new one uses the newest
        installed server that has PostGIS, else the newest.
        """
        version_file = self.data / "PG_VERSION"
        if version_file.exists():
            version = version_file.read_text().strip()
            path = PG_LIB / version / "bin"
            if not (path / "postgres").exists():
                raise StackError(
                    self.name,
                    f"the cluster in {self.data} is PostgreSQL {version}, which is not installed",
                    self.log,
                )
            return path
        versions = installed_versions()
        if not versions:
            raise StackError(self.name, f"no PostgreSQL server under {PG_LIB}", self.log)
        with_postgis = [
            v for v in versions if (PG_SHARE / str(v) / "extension" / "postgis.control").exists()
        ]
        return PG_LIB / str((with_postgis or versions)[0]) / "bin"

    def apt_requirements(self, *, for_install: bool = False) -> list[AptRequirement]:
        versions = installed_versions()
        if for_install and not versions:
            candidate = candidate_version()
            versions = [candidate] if candidate is not None else []
        return [
            AptRequirement(("postgresql", *(f"postgresql-{v}" for v in versions))),
            AptRequirement(
                ("postgresql-postgis", *(f"postgresql-{v}-postgis-3" for v in versions))
            ),
            AptRequirement(
                ("postgresql-pgrouting", *(f"postgresql-{v}-pgrouting" for v in versions))
            ),
        ]

    def pid(self) -> int | None:
        pid = read_pid(self.data / "postmaster.pid")
        return pid if pid is not None and process_alive(pid, "postgres") else None

    def probe(self) -> bool:
        if not tcp_open("127.0.0.1", self.port, 0.5):
            return False
        try:
            bindir: Path | None = self.bindir()
        except StackError:
            bindir = None
        isready = (
            str(bindir / "pg_isready")
            if bindir is not None and (bindir / "pg_isready").exists()
            else shutil.which("pg_isready")
        )
        if isready is None:
            return True
        try:
            run(
                self.name,
                [
                    isready,
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                    "-t",
                    "3",
                ],
            )
        except StackError:
            return False
        return True

    def launch(self) -> None:
        bindir = self.bindir()
        self.dir.mkdir(parents=True, exist_ok=True)
        check_traversable(self.name, self.dir, OS_USER)
        self.socket_dir.mkdir(exist_ok=True)
        chown_tree(self.socket_dir, OS_USER)
        if not self._initialized():
            self._initdb(bindir)
        self._write_config(bindir)
        self._remove_stale_locks()
        # Only what root wrote: walking a big data directory on every start would be slow.
        for path in (self.dir, self.log, self.dir / "pg_ctl.log", *self.data.glob("*.conf")):
            if path.exists():
                chown_tree(path, OS_USER)
        run(
            self.name,
            [
                str(bindir / "pg_ctl"),
                "start",
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-W",  # do not wait here: Service.start polls, so all services start together
            ],
            user=OS_USER,
            cwd=self.dir,
            log=self.dir / "pg_ctl.log",
            new_session=True,  # the postmaster must not get this session's Ctrl-C
            timeout=60,
        )

    def _initialized(self) -> bool:
        """Return whether initdb completed: the include line is appended only after it."""
        try:
            return INCLUDE_LINE in (self.data / "postgresql.conf").read_text()
        except OSError:
            return False

    def _initdb(self, bindir: Path) -> None:
        if self.data.exists():
            shutil.rmtree(self.data)  # a half-made cluster from an interrupted initdb
        self.data.mkdir(mode=0o700)
        self.log.touch()
        chown_tree(self.dir, OS_USER)
        run(
            self.name,
            [
                str(bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
            ],
            user=OS_USER,
            cwd=self.dir,
            log=self.log,
            timeout=300,
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# FleetPulse local stack settings (rewritten on each start)\n")
            conf.write(INCLUDE_LINE + "\n")

    def _write_config(self, bindir: Path) -> None:
        libdir = bindir.parent / "lib"
        preload = "pg_stat_statements" if (libdir / "pg_stat_statements.so").exists() else ""
        conf = f"""\
# Written by infrastructure/stack on every start: change the generator, not this file.
# Sized for the 2-core / 24 GB development machine.
listen_addresses = '127.0.0.1'
port = {self.port}
unix_socket_directories = '{self.socket_dir}'
max_connections = 200
shared_buffers = 1GB
effective_cache_size = 8GB
maintenance_work_mem = 512MB
work_mem = 16MB
wal_buffers = 16MB
min_wal_size = 512MB
max_wal_size = 4GB
checkpoint_timeout = 15min
checkpoint_completion_target = 0.9
fsync = on
# A crash may lose the last few hundred milliseconds of commits but never corrupts data:
# acceptable for a development stack, and ingest throughput benefits a lot.
synchronous_commit = off
random_page_cost = 1.1
effective_io_concurrency = 200
max_worker_processes = 8
max_parallel_workers = 2
max_parallel_workers_per_gather = 1
max_parallel_maintenance_workers = 1
# JIT compilation costs more than it saves on the short OLTP and geo queries we run.
jit = off
shared_preload_libraries = '{preload}'
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
log_min_duration_statement = 2000
lc_messages = 'C.UTF-8'
"""
        write_if_changed(self.data / "fleetpulse.conf", conf, 0o600)
        hba = """\
# Written by infrastructure/stack on every start.
# TYPE  DATABASE  USER      ADDRESS        METHOD
local   all       postgres                 peer
local   all       all                      scram-sha-256
host    all       all       127.0.0.1/32   scram-sha-256
host    all       all       ::1/128        scram-sha-256
"""
        write_if_changed(self.data / "pg_hba.conf", hba, 0o600)

    def _remove_stale_locks(self) -> None:
        """Remove lock files a killed postmaster left: a recycled pid would block the start."""
        pidfile = self.data / "postmaster.pid"
        if pidfile.exists() and self.pid() is None:
            pidfile.unlink()
        for lock in self.socket_dir.glob(".s.PGSQL.*.lock"):
            pid = read_pid(lock)
            if pid is None or not process_alive(pid, "postgres"):
                lock.unlink(missing_ok=True)

    def _psql(self, sql: str, database: str = "postgres") -> str:
        return run(
            self.name,
            [
                str(self.bindir() / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
            ],
            stdin=sql,
            user=OS_USER,
            cwd=self.dir,
            timeout=120,
        )

    def provision(self) -> None:
        """Create the app role, and the app database with PostGIS unless this is a test run.

        With ``environment == "test"`` the database in the settings is the test run's own,
        which its fixtures create (and drop) themselves: creating it here would collide.
        """
        pg = self.settings.pg
        role = pg.user
        # The app role is SUPERUSER in this local development cluster only: tests create their
        # own databases and run CREATE EXTENSION postgis (and pgrouting) in them, which needs a
        # superuser on PostgreSQL 15 (postgis is not a trusted extension).
        sql = f"""
SELECT format('CREATE ROLE %I', {sql_literal(role)})
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {sql_literal(role)})
\\gexec
ALTER ROLE {sql_ident(role)} WITH LOGIN SUPERUSER CREATEDB
  PASSWORD {sql_literal(pg.password.get_secret_value())};
"""
        if self.settings.environment == "test":
            self._psql(sql)
            return
        sql += f"""
SELECT format('CREATE DATABASE %I OWNER %I', {sql_literal(pg.database)}, {sql_literal(role)})
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = {sql_literal(pg.database)})
\\gexec
"""
        self._psql(sql)
        self._psql("CREATE EXTENSION IF NOT EXISTS postgis;\n", database=pg.database)

    def shutdown(self, pid: int) -> None:
        pg_ctl = str(self.bindir() / "pg_ctl")
        stop = [pg_ctl, "stop", "-D", str(self.data), "-w", "-t", str(int(self.stop_timeout_s))]
        try:
            run(self.name, [*stop, "-m", "fast"], user=OS_USER, cwd=self.dir, log=self.log)
        except StackError:
            run(self.name, [*stop, "-m", "immediate"], user=OS_USER, cwd=self.dir, log=self.log)
