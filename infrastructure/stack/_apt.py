"""Debian packages: check with dpkg-query, install with apt-get only when something is missing."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from infrastructure.stack._proc import StackError, run
from infrastructure.stack._service import AptRequirement

log = logging.getLogger("infrastructure.stack")

POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
# Another engineer's apt-get may hold the dpkg lock: wait for it rather than fail.
APT_LOCK_WAIT = ("-o", "DPkg::Lock::Timeout=600")


def installed_packages(names: Iterable[str]) -> dict[str, str]:
    """Return which of ``names`` dpkg reports as installed, with their installed version."""
    names = sorted(set(names))
    if not names:
        return {}
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Status} ${Version}\n", *names],
        capture_output=True,
        text=True,
        check=False,
    )
    found = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "installed":
            found[parts[0].split(":")[0]] = parts[2]
    return found


def installed_version(name: str) -> str | None:
    """Return the installed Debian version of package ``name``, or None."""
    return installed_packages([name]).get(name)


def satisfied(requirement: AptRequirement, installed: Mapping[str, str]) -> bool:
    """Return whether an installed alternative (at the pinned version, if any) meets it."""
    return any(
        name in installed and requirement.version in (None, installed[name])
        for name in requirement.alternatives
    )


def missing(requirements: Iterable[AptRequirement]) -> list[AptRequirement]:
    """Return the requirements none of whose alternatives is installed (at its version)."""
    requirements = list(requirements)
    present = installed_packages(name for r in requirements for name in r.alternatives)
    return [r for r in requirements if not satisfied(r, present)]


def package_exists(name: str) -> bool:
    """Return whether apt knows a real (installable) package of that name."""
    done = subprocess.run(
        ["apt-cache", "show", "--no-all-versions", name],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode == 0 and "Package:" in done.stdout


def resolve(requirement: AptRequirement) -> str:
    """Return the first alternative apt can install (version-agnostic names come first).

    A pinned requirement resolves to ``name=version``, which apt must know.
    """
    for name in requirement.alternatives:
        if package_exists(requirement.spec(name)):
            return requirement.spec(name)
    specs = ", ".join(requirement.spec(name) for name in requirement.alternatives)
    raise StackError("install", f"no installable package among {specs}")


def apt_update(logfile: Path) -> None:
    """Refresh the package lists."""
    run("install", ["apt-get", *APT_LOCK_WAIT, "update", "-q"], log=logfile, env=_apt_env())


def apt_install(packages: list[str], logfile: Path) -> None:
    """Install ``packages`` without letting their maintainer scripts start any daemon.

    There is no init system here and the stack runs its own instances on its own ports, so a
    temporary policy-rc.d answering 101 ("action forbidden") stops postinst from starting the
    system-wide services.
    """
    own_policy = not POLICY_RC_D.exists()
    if own_policy:
        POLICY_RC_D.write_text("#!/bin/sh\n# temporary, from infrastructure/stack\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
    try:
        run(
            "install",
            [
                "apt-get",
                *APT_LOCK_WAIT,
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "--allow-downgrades",  # a pinned version older than what is installed
                "-o",
                "Dpkg::Options::=--force-confdef",
                "-o",
                "Dpkg::Options::=--force-confold",
                *packages,
            ],
            log=logfile,
            env=_apt_env(),
            timeout=1800,
        )
    finally:
        if own_policy:
            POLICY_RC_D.unlink(missing_ok=True)


def _apt_env() -> dict[str, str]:
    return {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "NEEDRESTART_MODE": "a"}
