"""TimescaleDB for the ``postgres`` service, built from its source tarball once.

No registry reachable here carries TimescaleDB for Debian 12's PostgreSQL 15, so its source
is kept beside the project (``../shared/vendor/timescaledb-*.tar.gz``; setting
``stack.timescaledb_source``). It is extracted and built under ``<stack root>/timescaledb/``
and installed with ``make install`` into PostgreSQL's own directories, where every cluster of
that PostgreSQL sees it (only a cluster that preloads it can ``CREATE EXTENSION`` it).

A stamp records the tarball's sha256 and ``pg_config --version``: nothing is rebuilt until
either changes or the installed library or control file is gone. The stamp is kept in the
stack root and beside the installed control file, so a second stack root on the same machine
(the fault tests' ``.stack-faults/``) reuses the installation instead of building it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from infrastructure.settings import PROJECT_ROOT, Settings
from infrastructure.stack import _apt
from infrastructure.stack._proc import StackError, run, tail_lines, write_if_changed
from infrastructure.stack._service import AptRequirement

log = logging.getLogger("infrastructure.stack")

SERVICE = "postgres"
TARBALL_GLOB = "timescaledb-*.tar.gz"
BOOTSTRAP_OPTIONS = ("-DREGRESS_CHECKS=OFF", "-DTAP_CHECKS=OFF", "-DWARNINGS_AS_ERRORS=OFF")
LIBRARY = "timescaledb.so"
CONTROL = "timescaledb.control"
# Beside the installed control file (PostgreSQL only reads *.control and *.sql there).
SHARED_STAMP = "timescaledb.fleetpulse-stamp"
PROGRESS_EVERY_S = 10.0
BUILD_TIMEOUT_S = 1800.0
# One build at a time on this machine, whichever stack root asks for it.
LOCK_FILE = Path(tempfile.gettempdir()) / "fleetpulse-timescaledb.lock"
MISSING_SOURCE = (
    "TimescaleDB source not found at %s; running plain PostgreSQL. To get TimescaleDB: "
    "Timescale's packages or docker compose"
)


@dataclass(frozen=True)
class Stamp:
    """What an installation of TimescaleDB was built from."""

    sha256: str
    pg_version: str

    def text(self, source: Path) -> str:
        """Return the stamp file's content (``source`` is informational)."""
        return f"sha256 {self.sha256}\npostgresql {self.pg_version}\nsource {source}\n"

    @classmethod
    def parse(cls, text: str) -> Stamp | None:
        """Return the stamp a file holds, or None when it is not a complete stamp."""
        fields: dict[str, str] = {}
        for line in text.splitlines():
            key, _, value = line.strip().partition(" ")
            if value.strip():
                fields[key] = value.strip()
        sha, version = fields.get("sha256"), fields.get("postgresql")
        if sha is None or version is None or not re.fullmatch(r"[0-9a-f]{64}", sha):
            return None
        return cls(sha, version)


@dataclass(frozen=True)
class PgConfig:
    """What ``pg_config`` says about the PostgreSQL the extension is built for."""

    path: Path
    version: str  # "PostgreSQL 15.18 (Debian 15.18-0+deb12u1)"
    pkglibdir: Path
    sharedir: Path

    @classmethod
    def of(cls, pg_config: Path) -> PgConfig:
        """Ask ``pg_config`` (one call)."""
        out = run(SERVICE, [str(pg_config), "--version", "--pkglibdir", "--sharedir"], timeout=30)
        version, pkglibdir, sharedir = out.strip().splitlines()[:3]
        return cls(pg_config, version.strip(), Path(pkglibdir.strip()), Path(sharedir.strip()))

    @property
    def extension_dir(self) -> Path:
        return self.sharedir / "extension"

    def has_timescaledb(self) -> bool:
        """Return whether TimescaleDB's library and control file are installed."""
        return (self.pkglibdir / LIBRARY).is_file() and (self.extension_dir / CONTROL).is_file()


def find_source(configured: Path) -> Path | None:
    """Return the tarball to build: ``configured`` itself, or the newest in that folder.

    Relative paths are taken from the project root. None when there is none.
    """
    path = resolve_path(configured)
    if path.is_file():
        return path
    if path.is_dir():
        found = sorted(path.glob(TARBALL_GLOB), key=lambda p: _version_key(p.name))
        return found[-1] if found else None
    return None


def resolve_path(configured: Path) -> Path:
    """Return ``configured``, taken from the project root when relative."""
    return configured if configured.is_absolute() else PROJECT_ROOT / configured


def _version_key(name: str) -> tuple[tuple[int, ...], str]:
    numbers = re.search(r"(\d+(?:\.\d+)*)", name)
    return (tuple(int(n) for n in numbers.group(1).split(".")) if numbers else (), name)


def sha256_of(path: Path) -> str:
    """Return the hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_requirements(major: int | None, server_version: str | None) -> list[AptRequirement]:
    """Return the Debian packages the build needs.

    The server headers must be of exactly the installed server's version (apt's candidate may
    be newer); with no server installed yet both come from the same apt run, unpinned.
    """
    needs = [AptRequirement(("cmake",)), AptRequirement(("libkrb5-dev",))]
    if major is not None:
        needs.append(AptRequirement((f"postgresql-server-dev-{major}",), version=server_version))
    return needs


def progress_line(output: str) -> str:
    """Return a short summary of a build's output so far: make's last percentage and line."""
    percents = re.findall(r"^\[\s*(\d+)%\]", output, re.M)
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if len(last) > 120:
        last = last[:117] + "..."
    return f"{percents[-1]}% - {last}" if percents else last


def format_duration(seconds: float) -> str:
    """Return ``seconds`` as "1 min 7 s" (or "42 s")."""
    whole = round(seconds)
    minutes, secs = divmod(whole, 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    with LOCK_FILE.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class TimescaleDB:
    """The build of TimescaleDB for the PostgreSQL whose ``pg_config`` is given."""

    def __init__(self, settings: Settings, pg_config: Path) -> None:
        self.settings = settings
        self.pg_config = pg_config
        # Set once ``ensure`` built and installed it (a server that runs it must restart).
        self.built = False

    @property
    def dir(self) -> Path:
        return self.settings.stack.root / "timescaledb"

    @property
    def build_dir(self) -> Path:
        return self.dir / "build"

    @property
    def log(self) -> Path:
        return self.dir / "build.log"

    @property
    def stamp_path(self) -> Path:
        return self.dir / "installed.stamp"

    def source(self) -> Path | None:
        """Return the source tarball, or None when there is none."""
        return find_source(self.settings.stack.timescaledb_source)

    def wanted(self, source: Path, pg: PgConfig) -> Stamp:
        """Return the stamp an installation of ``source`` for this PostgreSQL has."""
        return Stamp(sha256_of(source), pg.version)

    def installed_stamp(self) -> Stamp | None:
        """Return the stamp of what this stack root last installed, or None."""
        try:
            return Stamp.parse(self.stamp_path.read_text())
        except OSError:
            return None

    def up_to_date(self, source: Path, pg: PgConfig) -> bool:
        """Return whether ``source`` is installed for this PostgreSQL (no build needed)."""
        if not pg.has_timescaledb():
            return False
        wanted = self.wanted(source, pg)
        if self.installed_stamp() == wanted:
            return True
        try:
            shared = Stamp.parse((pg.extension_dir / SHARED_STAMP).read_text())
        except OSError:
            return False
        if shared != wanted:
            return False
        # Installed from another stack root on this machine: adopt it.
        write_if_changed(self.stamp_path, wanted.text(source))
        return True

    def pending(self) -> bool:
        """Return whether ``ensure`` has something to do or say (cheap: a hash, ``pg_config``).

        True when a build is due, and when there is neither a source nor an installation (so
        that every ``up`` warns).
        """
        if not self.pg_config.exists():
            return False
        pg = PgConfig.of(self.pg_config)
        source = self.source()
        if source is None:
            return not pg.has_timescaledb()
        return not self.up_to_date(source, pg)

    def ensure(self) -> bool:
        """Build and install TimescaleDB unless up to date; return whether it is installed.

        Without a source tarball: the installed one if any, else one warning and False (the
        cluster runs plain PostgreSQL).
        """
        source = self.source()
        configured = resolve_path(self.settings.stack.timescaledb_source)
        if not self.pg_config.exists():
            raise StackError(SERVICE, f"{self.pg_config} is missing: cannot build TimescaleDB")
        if source is None:
            if PgConfig.of(self.pg_config).has_timescaledb():
                log.info("no TimescaleDB source at %s: using the one installed", configured)
                return True
            log.warning(MISSING_SOURCE, configured)
            return False
        with _build_lock():
            pg = PgConfig.of(self.pg_config)
            if self.up_to_date(source, pg):
                log.debug("TimescaleDB from %s already installed", source)
                return True
            self._build(source, pg)
        return True

    def _build(self, source: Path, pg: PgConfig) -> None:
        wanted = self.wanted(source, pg)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log.write_text(f"# TimescaleDB build of {source} for {pg.version}\n")
        log.info(
            "building TimescaleDB from %s (about 1-2 min on 2 cores), log: %s", source, self.log
        )
        began = time.monotonic()
        if self.build_dir.exists():
            shutil.rmtree(self.build_dir)
        self.build_dir.mkdir()
        run(SERVICE, ["tar", "-xzf", str(source), "-C", str(self.build_dir)], log=self.log)
        tops = [p for p in self.build_dir.iterdir() if p.is_dir()]
        if len(tops) != 1 or not (tops[0] / "bootstrap").is_file():
            raise StackError(SERVICE, f"{source} is not a TimescaleDB source tarball", self.log)
        src = tops[0]
        env = {**os.environ, "BUILD_FORCE_REMOVE": "true"}
        jobs = str(max(1, os.cpu_count() or 1))
        steps: list[tuple[str, Sequence[str], Path]] = [
            ("configure", ["./bootstrap", *BOOTSTRAP_OPTIONS, f"-DPG_CONFIG={pg.path}"], src),
            ("compile", ["make", f"-j{jobs}"], src / "build"),
            ("install", ["make", "install"], src / "build"),
        ]
        for label, argv, cwd in steps:
            if label == "install":
                # make install rewrites an existing library in place, under the feet of any
                # server that has it mapped: remove it first (a running server keeps its copy).
                for old in pg.pkglibdir.glob("timescaledb*.so"):
                    old.unlink()
            self._step(label, argv, cwd, env, began)
        if not pg.has_timescaledb():
            raise StackError(SERVICE, f"make install left no {LIBRARY} in {pg.pkglibdir}", self.log)
        write_if_changed(pg.extension_dir / SHARED_STAMP, wanted.text(source))
        write_if_changed(self.stamp_path, wanted.text(source))
        self.built = True
        log.info(
            "TimescaleDB built and installed into %s in %s",
            pg.pkglibdir,
            format_duration(time.monotonic() - began),
        )

    def _step(
        self, label: str, argv: Sequence[str], cwd: Path, env: dict[str, str], began: float
    ) -> None:
        """Run one build step with its output appended to the log, reporting progress."""
        with self.log.open("ab") as out:
            out.write(f"\n$ {' '.join(argv)}  (in {cwd})\n".encode())
            out.flush()
            try:
                proc = subprocess.Popen(
                    list(argv),
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            except OSError as exc:
                raise StackError(SERVICE, f"TimescaleDB {label}: {exc}", self.log) from exc
            deadline = time.monotonic() + BUILD_TIMEOUT_S
            while True:
                try:
                    code = proc.wait(timeout=PROGRESS_EVERY_S)
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() > deadline:
                        proc.kill()
                        proc.wait()
                        raise StackError(
                            SERVICE, f"TimescaleDB {label} timed out", self.log
                        ) from None
                    log.info(
                        "TimescaleDB %s, %s: %s",
                        label,
                        format_duration(time.monotonic() - began),
                        progress_line(tail_lines(self.log, 40)),
                    )
        if code != 0:
            raise StackError(
                SERVICE,
                f"TimescaleDB {label} failed (exit code {code}); fix it, or switch TimescaleDB "
                "off with FLEETPULSE_STACK__TIMESCALEDB=false",
                self.log,
            )


def requirements_for(settings: Settings, major: int | None) -> list[AptRequirement]:
    """Return the build's Debian packages when the settings want TimescaleDB and it has a source.

    ``major`` is the PostgreSQL major version of the cluster (None when none is installed yet).
    """
    if not settings.stack.timescaledb or find_source(settings.stack.timescaledb_source) is None:
        return []
    server = _apt.installed_version(f"postgresql-{major}") if major is not None else None
    return build_requirements(major, server)
