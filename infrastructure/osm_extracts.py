"""OpenStreetMap extracts the project fetches itself, verified by sha256 and cached.

Liechtenstein's extract of 2013-08-03 (592 KB, 352 km of drivable road) ships as
``tests/data/liechtenstein-2013-08-03.osm.pbf`` in Debian 12's source package of osm2pgsql
(``1.8.0+ds-1``). ``apt-get source --download-only`` fetches that package when apt sees a
``deb-src`` line for bookworm main; a private sources list, package-list directory and
cache directory (``-o Dir::Etc::sourcelist=… -o Dir::Etc::sourceparts=- -o
Dir::State::Lists=… -o Dir::Cache=…``) do that without touching the machine's apt
configuration. Only the .pbf is taken out of the orig tarball (``tarfile``), checked against
its pinned sha256 and kept in the cache directory; the downloaded sources are thrown away.

The cache is ``$XDG_CACHE_HOME/fleetpulse``, else ``~/.cache/fleetpulse`` (the XDG rule, not
a FleetPulse setting: nothing in it is configuration). The file is immutable (pinned by its
hash), so every clone and every stack root on the machine can share one copy, and a CI runner
can keep that folder between runs. A second call finds the file there and does not touch the
network.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
APT_SOURCES = Path("/etc/apt/sources.list")
APT_SOURCES_D = Path("/etc/apt/sources.list.d")


class ExtractError(RuntimeError):
    """An extract could not be fetched or does not match its pinned hash."""


@dataclass(frozen=True, slots=True)
class DebianSourceExtract:
    """A file inside a Debian source package's orig tarball, pinned by version and sha256."""

    name: str
    package: str
    version: str
    suite: str
    member: str  # path inside the orig tarball, below its top folder
    sha256: str
    size: int

    @property
    def filename(self) -> str:
        return Path(self.member).name


LIECHTENSTEIN = DebianSourceExtract(
    name="liechtenstein",
    package="osm2pgsql",
    version="1.8.0+ds-1",
    suite="bookworm",
    member="tests/data/liechtenstein-2013-08-03.osm.pbf",
    sha256="edb2b075be057662691fc343abed4ed58f139dd7c501c243197640fcb3ea82d4",
    size=592_570,
)

EXTRACTS = {LIECHTENSTEIN.name: LIECHTENSTEIN}


def cache_dir() -> Path:
    """Where fetched extracts (and the simulator's parsed networks) are kept."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "fleetpulse"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract_path(name: str, *, directory: Path | None = None) -> Path:
    """Return the cached extract ``name``, fetching and verifying it on first use."""
    try:
        extract = EXTRACTS[name]
    except KeyError:
        known = ", ".join(sorted(EXTRACTS))
        raise ExtractError(f"unknown extract {name!r} (known: {known})") from None
    folder = (directory or cache_dir()) / "osm"
    target = folder / extract.filename
    if _verified(target, extract):
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder / f".{extract.filename}.lock"):
        if _verified(target, extract):  # another process fetched it meanwhile
            return target
        fetch_debian_source_extract(extract, target)
    return target


def _verified(path: Path, extract: DebianSourceExtract) -> bool:
    return (
        path.is_file()
        and path.stat().st_size == extract.size
        and file_sha256(path) == extract.sha256
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line sources), or the CDN."""
    texts = []
    for path in [
        APT_SOURCES,
        *sorted(APT_SOURCES_D.glob("*.sources")),
        *sorted(APT_SOURCES_D.glob("*.list")),
    ]:
        with contextlib.suppress(OSError):
            texts.append(path.read_text())
    for text in texts:
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and "bookworm" in suites.group(1).split():
                if "security" not in uris.group(1):
                    return uris.group(1).rstrip("/")
        for line in text.splitlines():
            m = re.match(r"^\s*deb(?:-src)?\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s", line)
            if m and "security" not in m.group(1):
                return m.group(1).rstrip("/")
    return DEFAULT_MIRROR


def fetch_debian_source_extract(extract: DebianSourceExtract, target: Path) -> None:
    """Download the source package with a private apt setup; keep only the verified file."""
    if shutil.which("apt-get") is None:
        raise ExtractError(
            f"apt-get is not available to fetch {extract.package} {extract.version}; put "
            f"{extract.filename} (sha256 {extract.sha256}) into {target.parent} by hand"
        )
    with tempfile.TemporaryDirectory(prefix="fleetpulse-osm-") as tmp:
        work = Path(tmp)
        (work / "lists" / "partial").mkdir(parents=True)
        (work / "cache" / "archives" / "partial").mkdir(parents=True)
        (work / "src").mkdir()
        signed = f"[signed-by={DEBIAN_KEYRING}] " if DEBIAN_KEYRING.exists() else ""
        sources = work / "sources.list"
        sources.write_text(f"deb-src {signed}{debian_mirror()} {extract.suite} main\n")
        options = [
            "-q",
            "-o",
            f"Dir::Etc::sourcelist={sources}",
            "-o",
            "Dir::Etc::sourceparts=-",
            "-o",
            f"Dir::State::Lists={work / 'lists'}",
            "-o",
            f"Dir::Cache={work / 'cache'}",
            # the download folder is ours (root-owned tmp): no sandbox user needs to reach it
            "-o",
            "APT::Sandbox::User=root" if os.geteuid() == 0 else "APT::Sandbox::User=_apt",
        ]
        _apt(["apt-get", *options, "update"], work)
        _apt(
            [
                "apt-get",
                *options,
                "source",
                "--download-only",
                f"{extract.package}={extract.version}",
            ],
            work / "src",
        )
        origs = sorted((work / "src").glob(f"{extract.package}_*.orig.tar.*"))
        if not origs:
            raise ExtractError(f"apt-get source left no orig tarball of {extract.package}")
        data = _member(origs[0], extract.member)
    digest = hashlib.sha256(data).hexdigest()
    if digest != extract.sha256:
        raise ExtractError(
            f"{extract.filename} from {extract.package} {extract.version} has sha256 {digest}, "
            f"expected {extract.sha256}"
        )
    partial = target.with_suffix(target.suffix + ".partial")
    partial.write_bytes(data)
    partial.replace(target)


def _member(tarball: Path, member: str) -> bytes:
    """The bytes of ``member`` (a path below the tarball's top folder)."""
    with tarfile.open(tarball) as tf:
        for info in tf:
            if info.isfile() and info.name.split("/", 1)[-1] == member:
                f = tf.extractfile(info)
                if f is not None:
                    return f.read()
    raise ExtractError(f"{member} is not in {tarball.name}")


def _apt(command: list[str], cwd: Path) -> None:
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, check=False, timeout=600
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise ExtractError(f"{' '.join(command[:1] + command[-2:])} failed:\n{tail}")
