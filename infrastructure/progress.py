"""Progress of a long step: count/total, rate and time left, on a terminal or in a log.

On a terminal one line is redrawn in place; otherwise (CI, a log file, ``make run``'s output
piped somewhere) a plain line is printed every ``interval_s`` seconds and once at the end. A
background ticker keeps reporting while a step makes no countable progress (a package
install, a compile, a download): a silence of more than a few seconds looks like a hang.

    with Progress("creating visits", total=14_000, unit="visits") as progress:
        for visit in visits:
            ...
            progress.advance()

    with Progress("building TimescaleDB") as progress:   # no count: time spent so far
        build()

Thread-safe: ``advance`` may be called from any thread or from an event loop. Callers in
``simulator/`` (which may import only ``geo``) take a factory with this constructor's
signature instead (``simulator.run.ProgressFactory``) and the command line passes this class.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

TTY_REDRAW_S = 0.5
LOG_INTERVAL_S = 10.0


def format_duration(seconds: float) -> str:
    """Return ``45s``, ``3m 05s`` or ``2h 03m`` (``?`` when unknown)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


class Progress:
    """Reports a step's progress until closed (a context manager closes it)."""

    def __init__(
        self,
        what: str,
        total: int | None = None,
        unit: str = "",
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        ticker: bool = True,
    ) -> None:
        self.what = what
        self.total = total
        self.unit = unit
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"
        self.tty = tty
        self.interval_s = interval_s or (TTY_REDRAW_S if tty else LOG_INTERVAL_S)
        self._clock = clock
        self.started = clock()
        self._last_emit = self.started
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._width = 0
        self._emit(self.line(), final=False)
        self._thread: threading.Thread | None = None
        if ticker:
            self._thread = threading.Thread(target=self._tick, name=f"progress {what}", daemon=True)
            self._thread.start()

    # -- counting ----------------------------------------------------------------------------

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more done; report when the interval has passed."""
        with self._lock:
            self.done += n
            due = self._clock() - self._last_emit >= self.interval_s
        if due:
            self._report()

    def set_total(self, total: int | None) -> None:
        """Change the total (known only once the work is listed, say)."""
        with self._lock:
            self.total = total

    def close(self, *, failed: bool = False) -> None:
        """Stop the ticker and print the final line (once)."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.interval_s)
        with self._lock:
            text = self.line(finished=not failed, failed=failed)
            self._emit(text, final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(failed=exc_type is not None)

    # -- the text ----------------------------------------------------------------------------

    def rate(self) -> float:
        """Items per second since the start."""
        elapsed = self._clock() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self, *, finished: bool = False, failed: bool = False) -> str:
        """The current report, e.g. ``creating visits: 3,200/14,000 visits (23 %), 180/s,
        1m 00s left``."""
        elapsed = self._clock() - self.started
        unit = f" {self.unit}" if self.unit else ""
        if failed:
            done = f" ({self.done:,}{unit} done)" if self.done or self.total is not None else ""
            return f"{self.what}: failed after {format_duration(elapsed)}{done}"
        if self.total is None and self.done == 0:
            state = "done in" if finished else "running for"
            return f"{self.what}: {state} {format_duration(elapsed)}"
        rate = self.rate()
        if self.total is None:
            count = f"{self.done:,}{unit}"
        else:
            pct = 100.0 * self.done / self.total if self.total else 100.0
            count = f"{self.done:,}/{self.total:,}{unit} ({pct:.0f} %)"
        if finished:
            return f"{self.what}: {count} in {format_duration(elapsed)}, {rate:,.0f}/s"
        text = f"{self.what}: {count}, {rate:,.0f}/s"
        if self.total is not None and rate > 0:
            text += f", {format_duration((self.total - self.done) / rate)} left"
        elif self.total is not None:
            text += f", {format_duration(elapsed)} so far"
        return text

    # -- output ------------------------------------------------------------------------------

    def _tick(self) -> None:
        step = min(self.interval_s, 1.0)
        while not self._closed.wait(step):
            if self._clock() - self._last_emit >= self.interval_s:
                self._report()

    def _report(self) -> None:
        with self._lock:
            if self._closed.is_set():
                return
            self._emit(self.line(), final=False)

    def _emit(self, text: str, *, final: bool) -> None:
        """Write one report (the lock is held, or the object is being built)."""
        self._last_emit = self._clock()
        try:
            if self.tty:
                pad = " " * max(0, self._width - len(text))
                self.stream.write("\r" + text + pad + ("\n" if final else ""))
                self._width = 0 if final else len(text)
            else:
                self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed stream: progress is best effort
            pass
