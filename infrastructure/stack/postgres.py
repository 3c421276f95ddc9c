"""PostgreSQL with PostGIS and pgRouting: private clusters under ``.stack/``.

``postgres`` (``.stack/postgres``, port ``settings.pg.port``) preloads TimescaleDB, which its
install step builds from source (``timescaledb.py``); ``postgres-plain``
(``.stack/postgres-plain``, port ``settings.stack.plain_pg_port``) never does: it is the
plain-PostgreSQL backend's server. Each cluster is created with ``initdb`` and run with
``pg_ctl`` as the ``postgres`` account: the postmaster refuses to run as root.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from infrastructure.settings import Settings
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
from infrastructure.stack.timescaledb import PgConfig, TimescaleDB, requirements_for

log = logging.getLogger("infrastructure.stack")

PG_LIB = Path("/usr/lib/postgresql")
PG_SHARE = Path("/usr/share/postgresql")
OS_USER = "postgres"
INCLUDE_LINE = "include 'fleetpulse.conf'"
# Settings of the generated config that a running server only takes on at a restart.
RESTART_SETTINGS = (
    "shared_preload_libraries",
    "max_worker_processes",
    "max_connections",
    "shared_buffers",
    "wal_buffers",
    "timescaledb.max_background_workers",
)


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


def parse_conf(text: str) -> dict[str, str]:
    """Return the ``name = value`` settings of a postgresql.conf text (quotes removed)."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        value = value.strip()
        if value.startswith("'"):
            value = value[1 : value.rfind("'")].replace("''", "'") if value.count("'") > 1 else ""
        else:
            value = value.split("#", 1)[0].strip()
        values[name.strip().lower()] = value
    return values


def restart_needed(desired: Mapping[str, str], running: Mapping[str, str | None]) -> list[str]:
    """Return the restart-only settings whose running value differs from the config's.

    ``running`` maps a setting to ``current_setting(name, true)`` (None: unknown to the server,
    e.g. ``timescaledb.*`` before the library is loaded).
    """
    return [
        name
        for name in RESTART_SETTINGS
        if name in desired and _normal(running.get(name)) != _normal(desired[name])
    ]


def _normal(value: str | None) -> str:
    if value is None:
        return ""
    return ",".join(part.strip() for part in value.split(",")) if "," in value else value.strip()


class Postgres(Service):
    """The main cluster: TimescaleDB built at install and preloaded (setting stack.timescaledb)."""

    name = "postgres"
    ready_timeout_s = 120.0
    # Whether this cluster preloads TimescaleDB when it is installed and the settings want it.
    with_timescaledb: ClassVar[bool] = True
    shared_buffers: ClassVar[str] = "1GB"
    effective_cache_size: ClassVar[str] = "8GB"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        # Set by install_extra when it (re)built TimescaleDB: a server running it restarts.
        self.timescaledb_built = False

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
        needs = [
            AptRequirement(("postgresql", *(f"postgresql-{v}" for v in versions))),
            AptRequirement(
                ("postgresql-postgis", *(f"postgresql-{v}-postgis-3" for v in versions))
            ),
            AptRequirement(
                ("postgresql-pgrouting", *(f"postgresql-{v}-pgrouting" for v in versions))
            ),
        ]
        if self.with_timescaledb:
            try:
                major: int | None = int(self.bindir().parent.name)
            except StackError:
                major = versions[0] if versions else None
            needs += requirements_for(self.settings, major)
        return needs

    def timescaledb(self) -> TimescaleDB | None:
        """Return the TimescaleDB build for this cluster's server, when wanted and possible."""
        if not (self.with_timescaledb and self.settings.stack.timescaledb):
            return None
        try:
            bindir = self.bindir()
        except StackError:
            return None
        return TimescaleDB(self.settings, bindir / "pg_config")

    def install_extra(self) -> None:
        build = self.timescaledb()
        if build is not None:
            build.ensure()
            self.timescaledb_built = build.built

    def install_pending(self) -> bool:
        build = self.timescaledb()
        return build is not None and build.pending()

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

    def start(self) -> None:
        """Start the cluster; a running one gets the current config, restarted if it must."""
        if self.probe() and self.pid() is not None:
            self._apply_config()
        super().start()

    def _apply_config(self) -> None:
        """Rewrite the config of the running server; reload it, or restart when that is needed.

        The running values are compared, not the file: a config written by an earlier ``up``
        whose restart did not happen still gets applied.
        """
        bindir = self.bindir()
        conf, changed = self._write_config(bindir)
        self._chown_written()
        desired = parse_conf(conf)
        names = ", ".join(sql_literal(n) for n in RESTART_SETTINGS if n in desired)
        query = (
            "SELECT n || '=' || coalesce(current_setting(n, true), '<unset>')"
            f" FROM unnest(ARRAY[{names}]) AS n;\n"
        )
        running: dict[str, str | None] = {}
        for line in self._psql(query, tuples_only=True).splitlines():
            name, sep, value = line.partition("=")
            if sep:
                running[name.strip()] = None if value == "<unset>" else value
        reasons = restart_needed(desired, running)
        loaded = (running.get("shared_preload_libraries") or "").split(",")
        if self.timescaledb_built and "timescaledb" in (lib.strip() for lib in loaded):
            reasons.append("the new TimescaleDB build")
        if not reasons:
            if changed:
                self._psql("SELECT pg_reload_conf();\n")
            return
        log.info("restarting %s to apply %s", self.name, ", ".join(reasons))
        run(
            self.name,
            [
                str(bindir / "pg_ctl"),
                "restart",
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-m",
                "fast",
                "-W",  # the shutdown is waited for; readiness is polled by Service.start
            ],
            user=OS_USER,
            cwd=self.dir,
            log=self.dir / "pg_ctl.log",
            new_session=True,
            timeout=self.stop_timeout_s + 60,
        )
        self._wait_ready()

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
        self._chown_written()
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

    def _chown_written(self) -> None:
        # Only what root wrote: walking a big data directory on every start would be slow.
        for path in (self.dir, self.log, self.dir / "pg_ctl.log", *self.data.glob("*.conf")):
            if path.exists():
                chown_tree(path, OS_USER)

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

    def preload_libraries(self, bindir: Path) -> list[str]:
        """Return the libraries to preload: TimescaleDB (where wanted), pg_stat_statements.

        Only those present in ``pg_config --pkglibdir``.
        """
        pg_config = bindir / "pg_config"
        pg = PgConfig.of(pg_config) if pg_config.exists() else None
        libdir = pg.pkglibdir if pg is not None else bindir.parent / "lib"
        timescaledb = self.with_timescaledb and self.settings.stack.timescaledb
        wanted = ["timescaledb", "pg_stat_statements"] if timescaledb else ["pg_stat_statements"]
        return [name for name in wanted if (libdir / f"{name}.so").exists()]

    def _write_config(self, bindir: Path) -> tuple[str, bool]:
        """Write fleetpulse.conf and pg_hba.conf; return the former's text, whether any changed."""
        libraries = self.preload_libraries(bindir)
        preload = ",".join(libraries)
        timescaledb = "timescaledb" in libraries
        # TimescaleDB's own background workers (jobs: policies, refreshes) come out of
        # max_worker_processes, beside the parallel query workers and logical replication.
        workers = 16 if timescaledb else 8
        conf = f"""\
# Written by infrastructure/stack on every start: change the generator, not this file.
# Sized for the 2-core / 24 GB development machine.
listen_addresses = '127.0.0.1'
port = {self.port}
unix_socket_directories = '{self.socket_dir}'
max_connections = 200
shared_buffers = {self.shared_buffers}
effective_cache_size = {self.effective_cache_size}
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
max_worker_processes = {workers}
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
        if timescaledb:
            conf += """\
# TimescaleDB (built by the stack from its source): no telemetry; its job scheduler's workers.
timescaledb.telemetry_level = off
timescaledb.max_background_workers = 8
"""
        changed = write_if_changed(self.data / "fleetpulse.conf", conf, 0o600)
        hba = """\
# Written by infrastructure/stack on every start.
# TYPE  DATABASE  USER      ADDRESS        METHOD
local   all       postgres                 peer
local   all       all                      scram-sha-256
host    all       all       127.0.0.1/32   scram-sha-256
host    all       all       ::1/128        scram-sha-256
"""
        changed = write_if_changed(self.data / "pg_hba.conf", hba, 0o600) or changed
        return conf, changed

    def _remove_stale_locks(self) -> None:
        """Remove lock files a killed postmaster left: a recycled pid would block the start."""
        pidfile = self.data / "postmaster.pid"
        if pidfile.exists() and self.pid() is None:
            pidfile.unlink()
        for lock in self.socket_dir.glob(".s.PGSQL.*.lock"):
            pid = read_pid(lock)
            if pid is None or not process_alive(pid, "postgres"):
                lock.unlink(missing_ok=True)

    def _psql(self, sql: str, database: str = "postgres", *, tuples_only: bool = False) -> str:
        return run(
            self.name,
            [
                str(self.bindir() / "psql"),
                "-X",
                "-q",
                *(["-A", "-t"] if tuples_only else []),
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
        sql = self._role_sql()
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

    def _role_sql(self) -> str:
        """SQL creating (or updating) the app role of settings.pg."""
        pg = self.settings.pg
        role = pg.user
        # The app role is SUPERUSER in this local development cluster only: tests create their
        # own databases and run CREATE EXTENSION postgis (and pgrouting) in them, which needs a
        # superuser on PostgreSQL 15 (postgis is not a trusted extension).
        return f"""
SELECT format('CREATE ROLE %I', {sql_literal(role)})
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {sql_literal(role)})
\\gexec
ALTER ROLE {sql_ident(role)} WITH LOGIN SUPERUSER CREATEDB
  PASSWORD {sql_literal(pg.password.get_secret_value())};
"""

    def shutdown(self, pid: int) -> None:
        pg_ctl = str(self.bindir() / "pg_ctl")
        stop = [pg_ctl, "stop", "-D", str(self.data), "-w", "-t", str(int(self.stop_timeout_s))]
        try:
            run(self.name, [*stop, "-m", "fast"], user=OS_USER, cwd=self.dir, log=self.log)
        except StackError:
            run(self.name, [*stop, "-m", "immediate"], user=OS_USER, cwd=self.dir, log=self.log)


class PlainPostgres(Postgres):
    """A second cluster that never preloads TimescaleDB: the plain-PostgreSQL backend's server.

    TimescaleDB is installed into the shared PostgreSQL directories, so this cluster lists it
    in ``pg_available_extensions``, but ``CREATE EXTENSION timescaledb`` here is answered with
    FATAL: the application must check ``shared_preload_libraries`` and fall back. It has the
    app role but no app database (tests create their own).
    """

    name = "postgres-plain"
    with_timescaledb = False
    shared_buffers = "256MB"
    effective_cache_size = "2GB"

    @property
    def port(self) -> int:
        return self.settings.stack.plain_pg_port

    def provision(self) -> None:
        self._psql(self._role_sql())
