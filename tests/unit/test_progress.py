"""infrastructure/progress.py: count/total, rate and time left; redrawn on a terminal, plain
periodic lines in a log; a step without a count reports the time spent."""

from __future__ import annotations

import io

from infrastructure.progress import Progress, format_duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_durations_read_like_a_person_writes_them() -> None:
    assert [format_duration(s) for s in (0, 45, 185, 7380)] == ["0s", "45s", "3m 05s", "2h 03m"]
    assert format_duration(float("inf")) == "?"


def test_a_log_gets_a_plain_line_per_interval_with_count_rate_and_time_left() -> None:
    out, clock = io.StringIO(), FakeClock()
    with Progress(
        "creating visits",
        1000,
        "visits",
        stream=out,
        tty=False,
        interval_s=10,
        clock=clock,
        ticker=False,
    ) as progress:
        clock.now += 5
        progress.advance(100)  # before the interval: nothing printed
        clock.now += 5
        progress.advance(100)  # 200 in 10 s: 20/s, 800 left: 40 s
    lines = out.getvalue().splitlines()
    assert lines == [
        "creating visits: 0/1,000 visits (0 %), 0/s, 0s so far",
        "creating visits: 200/1,000 visits (20 %), 20/s, 40s left",
        "creating visits: 200/1,000 visits (20 %) in 10s, 20/s",
    ]
    assert "\r" not in out.getvalue()


def test_a_terminal_line_is_redrawn_in_place_and_ends_with_a_newline() -> None:
    out, clock = io.StringIO(), FakeClock()
    progress = Progress(
        "drivers", 10, stream=out, tty=True, interval_s=0.5, clock=clock, ticker=False
    )
    clock.now += 1
    progress.advance(5)
    clock.now += 1
    progress.close()
    text = out.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1
    assert text.split("\r")[-1].startswith("drivers: 5/10 (50 %) in 2s")


def test_a_step_without_a_count_reports_time_spent_and_a_failure_says_so() -> None:
    out, clock = io.StringIO(), FakeClock()
    try:
        with Progress("building", stream=out, tty=False, clock=clock, ticker=False):
            clock.now += 75
            raise RuntimeError("compiler died")
    except RuntimeError:
        pass
    assert out.getvalue().splitlines() == [
        "building: running for 0s",
        "building: failed after 1m 15s",
    ]


def test_the_ticker_reports_while_nothing_is_counted() -> None:
    out = io.StringIO()
    progress = Progress("installing", stream=out, tty=False, interval_s=0.05)
    try:
        deadline = 200
        while out.getvalue().count("\n") < 3 and deadline:  # woken by the ticker thread
            deadline -= 1
            progress._closed.wait(0.05)
    finally:
        progress.close()
    assert out.getvalue().count("installing: running for") >= 2
