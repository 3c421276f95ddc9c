"""What the JVM services (Kafka, Kafka Connect) share: Java and Maven from apt, jars from
Maven Central copied into a directory stamped with what was resolved."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from infrastructure.stack._proc import StackError, run
from infrastructure.stack._service import AptRequirement


def java_maven_requirements() -> list[AptRequirement]:
    """The Debian packages missing for running Java and resolving jars with Maven."""
    needs = []
    if shutil.which("java") is None:
        needs.append(AptRequirement(("openjdk-17-jre-headless", "default-jre-headless")))
    if shutil.which("mvn") is None:
        needs.append(AptRequirement(("maven",)))
    return needs


def java(service: str, log: Path) -> str:
    """The java executable; a StackError naming the service when there is none."""
    path = shutil.which("java")
    if path is None:
        raise StackError(service, "java is not installed", log)
    return path


def stamp_matches(directory: Path, stamp: str) -> bool:
    """Whether ``directory`` was filled by ``resolve_jars`` with this stamp."""
    path = directory / ".stamp"
    return path.exists() and path.read_text().strip() == stamp


def resolve_jars(
    service: str,
    *,
    pom: Path,
    target: Path,
    properties: Sequence[str],
    expect: str,
    stamp: str,
    workdir: Path,
) -> None:
    """Copy a pom's runtime dependencies into ``target`` through a staging directory, so a
    failed or interrupted download never leaves a half-filled ``target``; ``expect`` is a jar
    that must be among them, ``stamp`` is written beside them (see ``stamp_matches``)."""
    mvn = shutil.which("mvn")
    log = workdir / "install.log"
    if mvn is None:
        raise StackError(service, "maven (mvn) is not installed", log)
    workdir.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(target.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    run(
        service,
        [
            mvn,
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            *properties,
            f"-DoutputDirectory={staging}",
        ],
        cwd=workdir,
        log=log,
        timeout=900,
    )
    if not (staging / expect).exists():
        raise StackError(service, f"maven did not fetch {expect}", log)
    (staging / ".stamp").write_text(stamp + "\n")
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(target)
