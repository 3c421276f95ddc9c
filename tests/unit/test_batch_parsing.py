"""Batch bodies (NDJSON or a JSON array) -> one fix or one error per line."""

from __future__ import annotations

import orjson
import pytest

from ingest.batch import BatchTooLarge, parse_item, split_json_array, split_ndjson
from ingest.errors import InvalidPosition
from tests.helpers import iso, seed_array_item, traccar_forward

T0 = 1_770_465_600_000


def line(**extra: object) -> dict[str, object]:
    base: dict[str, object] = {"deviceId": "DEV001", "fixTime": T0, "lat": 40.713, "lon": -74.0}
    base.update(extra)
    return base


def test_our_schema_with_every_field() -> None:
    fix = parse_item(
        line(
            fixTime=iso(T0),
            speed=18.52,
            course=90,
            altitude=12,
            accuracy=8,
            valid=False,
            protocol="gateway-7",
            attributes={"batteryLevel": 87},
            unknownField=1,
        )
    )
    assert fix.fix_time_ms == T0
    assert fix.speed_kmh == 18.52  # already km/h: not converted
    assert (fix.course, fix.altitude, fix.accuracy, fix.valid) == (90, 12, 8, False)
    assert fix.protocol == "gateway-7"
    assert fix.attributes == {"batteryLevel": 87}
    assert parse_item(line()).protocol == "batch"


@pytest.mark.parametrize("stamp", [T0, iso(T0), "2026-02-07T13:00:00+01:00", "2026-02-07T12:00:00"])
def test_fix_time_forms(stamp: object) -> None:
    assert parse_item(line(fixTime=stamp)).fix_time_ms == T0


def test_traccar_objects_are_accepted_as_lines() -> None:
    assert parse_item(traccar_forward("DEV002", T0, 40.7, -74.0, 10)).speed_kmh == pytest.approx(
        18.52
    )
    assert parse_item(seed_array_item("DEV003", T0, 40.7, -74.0)).device_id == "DEV003"


@pytest.mark.parametrize(
    "bad",
    [
        line(deviceId=None),
        line(deviceId=17),
        line(lat=91),
        line(lon=181),
        line(lat="40.7"),
        line(lat=True),
        line(fixTime="yesterday"),
        line(fixTime=1.5),
        line(fixTime=None),
        line(fixTime=-1),
        line(speed=-1),
        line(valid="yes"),
        line(attributes=[1]),
        [1, 2],
    ],
)
def test_bad_lines(bad: object) -> None:
    with pytest.raises(InvalidPosition):
        parse_item(bad)


def test_ndjson_lines_are_independent_and_numbered_from_one() -> None:
    body = b"\n".join(
        [
            orjson.dumps(line()),
            b"",  # blank lines are skipped but counted
            b"{not json",
            orjson.dumps(line(lat=91)),
            orjson.dumps(line(fixTime=T0 + 1000)),
        ]
    )
    lines = split_ndjson(body + b"\n", max_lines=10)
    assert [ln.number for ln in lines] == [1, 3, 4, 5]
    assert [ln.fix is not None for ln in lines] == [True, False, False, True]
    assert lines[1].error is not None and "JSON" in str(lines[1].error)


def test_json_array_and_limits() -> None:
    lines = split_json_array(orjson.dumps([line(), "x"]), max_lines=2)
    assert [ln.fix is not None for ln in lines] == [True, False]
    with pytest.raises(BatchTooLarge):
        split_json_array(orjson.dumps([line()] * 3), max_lines=2)
    with pytest.raises(BatchTooLarge):
        split_ndjson(b"\n".join([orjson.dumps(line())] * 3), max_lines=2)
    for body in (b"{not json", orjson.dumps(line())):
        with pytest.raises(InvalidPosition):
            split_json_array(body, max_lines=2)
