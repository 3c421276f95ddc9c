"""Process, file and socket helpers shared by the services of the local stack."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

TAIL_LINES = 20


class StackError(RuntimeError):
    """A service of the local stack could not be installed, started or stopped.

    The message names the service and its log file and quotes the log's last lines.
    """

    def __init__(self, service: str, message: str, log: Path | None = None) -> None:
        self.service = service
        self.log = log
        text = f"{service}: {message}"
        if log is not None:
            text += f" (log: {log})"
            tail = tail_lines(log, TAIL_LINES)
            if tail:
                text += f"\n--- last {TAIL_LINES} lines of {log} ---\n{tail}"
        super().__init__(text)


def tail_lines(path: Path, count: int) -> str:
    """Return the last ``count`` lines of a text file, or "" when it cannot be read."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-count:])


def run(
    service: str,
    argv: Sequence[str],
    *,
    log: Path | None = None,
    stdin: str | None = None,
    user: str | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 300.0,
    new_session: bool = False,
) -> str:
    """Run a command to completion and return its output; raise StackError when it fails.

    With ``log`` the output is appended to that file (and quoted on failure); otherwise it is
    captured. With ``user`` the command runs as that account (PostgreSQL refuses root).
    """
    uid: int | None = None
    gid: int | None = None
    groups: list[int] | None = None
    if user is not None:
        account = pwd.getpwnam(user)
        uid, gid, groups = account.pw_uid, account.pw_gid, []
        env = {**(env or os.environ), "HOME": account.pw_dir, "USER": user, "LOGNAME": user}
    with contextlib.ExitStack() as stack:
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            handle = stack.enter_context(log.open("ab"))
            handle.write(f"\n$ {' '.join(argv)}\n".encode())
            handle.flush()
            out: IO[bytes] | int = handle
        else:
            out = subprocess.PIPE
        try:
            done = subprocess.run(
                list(argv),
                input=stdin.encode() if stdin is not None else None,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=dict(env) if env is not None else None,
                timeout=timeout,
                start_new_session=new_session,
                user=uid,
                group=gid,
                extra_groups=groups,
                check=False,
            )
        except FileNotFoundError as exc:
            raise StackError(service, f"command not found: {argv[0]}", log) from exc
        except subprocess.TimeoutExpired as exc:
            raise StackError(
                service, f"timed out after {timeout:.0f} s: {' '.join(argv)}", log
            ) from exc
    output = (done.stdout or b"").decode("utf-8", "replace")
    if done.returncode != 0:
        detail = f"\n{output.strip()}" if output.strip() else ""
        raise StackError(
            service, f"command failed with exit code {done.returncode}: {argv[0]}{detail}", log
        )
    return output


def spawn_detached(
    service: str,
    argv: Sequence[str],
    *,
    log: Path,
    pidfile: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start a long-running process in its own session, detached from this one; return its pid.

    A throwaway ``sh`` backgrounds the command (stdout and stderr appended to ``log``) and writes
    its pid, then exits: the daemon is reparented, so it outlives the Python process that
    started it, and no ``Popen`` object is left behind to warn about it.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    pidfile.unlink(missing_ok=True)
    script = '"$@" </dev/null >>"$FP_LOG" 2>&1 & echo $! >"$FP_PIDFILE"'
    full_env = {**(env or os.environ), "FP_LOG": str(log), "FP_PIDFILE": str(pidfile)}
    run(
        service,
        ["/bin/sh", "-c", script, "sh", *argv],
        cwd=cwd,
        env=full_env,
        timeout=30,
        new_session=True,
    )
    pid = read_pid(pidfile)
    if pid is None:
        raise StackError(service, f"could not start {argv[0]}", log)
    return pid


def read_pid(pidfile: Path) -> int | None:
    """Return the pid on the first line of a pid file, or None."""
    try:
        first = pidfile.read_text().split("\n", 1)[0].strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(first) if first.isdigit() else None


def process_alive(pid: int, marker: str) -> bool:
    """Return whether ``pid`` runs and its command line contains ``marker`` (pids get reused).

    Zombies count as dead: this machine's pid 1 may not reap orphans promptly.
    """
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and marker.encode() in cmdline


def _reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is our own child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def terminate(pid: int, marker: str, timeout: float) -> bool:
    """SIGTERM ``pid`` and wait for it to exit; SIGKILL after ``timeout``. Return True if killed."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_until(lambda: not process_alive(pid, marker), timeout):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not process_alive(pid, marker), 10)
    return True


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """Return whether a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except (OSError, OverflowError):  # OverflowError: a port outside 0..65535
        return False


def tcp_listening(port: int) -> bool:
    """Return whether some socket on this machine listens on TCP ``port`` (no connection made)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # fields[1] is "ADDRESS:PORT" in hex, fields[3] the state; 0A is LISTEN.
            if (
                len(fields) > 3
                and fields[3] == "0A"
                and int(fields[1].rsplit(":", 1)[1], 16) == port
            ):
                return True
    return False


def check_traversable(service: str, path: Path, user: str) -> None:
    """Raise StackError unless ``user`` can reach ``path`` (a stack root under /root cannot)."""
    account = pwd.getpwnam(user)
    for parent in path.resolve().parents:
        info = parent.stat()
        if info.st_uid == account.pw_uid:
            ok = bool(info.st_mode & stat.S_IXUSR)
        elif info.st_gid == account.pw_gid:
            ok = bool(info.st_mode & stat.S_IXGRP)
        else:
            ok = bool(info.st_mode & stat.S_IXOTH)
        if not ok:
            raise StackError(
                service,
                f"the {user} account cannot traverse {parent}: put the stack root elsewhere "
                f"(settings.stack.root) or chmod o+x {parent}",
            )


def chown(path: Path, user: str) -> None:
    """Give ``path`` (not what is under it) to ``user`` and that user's primary group."""
    account = pwd.getpwnam(user)
    os.chown(path, account.pw_uid, account.pw_gid, follow_symlinks=False)


def chown_tree(path: Path, user: str) -> None:
    """Give ``path`` and everything under it to ``user`` (and that user's primary group)."""
    account = pwd.getpwnam(user)
    os.chown(path, account.pw_uid, account.pw_gid, follow_symlinks=False)
    for root, dirs, files in os.walk(path):
        os.chown(root, account.pw_uid, account.pw_gid)
        for name in (*dirs, *files):
            os.chown(
                os.path.join(root, name), account.pw_uid, account.pw_gid, follow_symlinks=False
            )


def write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    """Write ``text`` to ``path`` unless it already holds exactly that; return whether it wrote."""
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)
    return True


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on the stack directory (two ``up`` at once must not race)."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # the postgres and mysql accounts traverse it to reach their directories
    with (root / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
