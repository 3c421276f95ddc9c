"""Traccar bodies -> fixes: formats, units, and everything that must be refused."""

from __future__ import annotations

import pytest

from ingest.errors import InvalidPosition
from ingest.traccar import parse_positions_body
from tests.helpers import seed_array_item, traccar_forward

T0 = 1_770_465_600_000  # 2026-02-07T12:00:00Z


def test_forward_body_converts_knots_and_keeps_attributes() -> None:
    [fix] = parse_positions_body(traccar_forward("DEV001", T0, 40.713, -74.0055, speed_kn=10))
    assert fix.device_id == "DEV001"
    assert fix.fix_time_ms == T0
    assert fix.speed_kmh == pytest.approx(18.52)
    assert (fix.lat, fix.lon) == (40.713, -74.0055)
    assert fix.protocol == "osmand"
    assert fix.attributes["batteryLevel"] == 87
    assert fix.attributes["traccarDeviceId"] == 17


def test_seed_array_body_reads_unique_id_from_attributes() -> None:
    fixes = parse_positions_body([seed_array_item("DEV001", T0, 40.7130, -74.0055)] * 2)
    assert [f.device_id for f in fixes] == ["DEV001", "DEV001"]
    assert fixes[0].speed_kmh == pytest.approx(5 * 1.852)


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-02-07T12:00:00Z",
        "2026-02-07T12:00:00.000Z",
        "2026-02-07T12:00:00+00:00",
        "2026-02-07T12:00:00.000+0000",
        "2026-02-07T13:00:00+01:00",
    ],
)
def test_every_traccar_time_form_means_the_same_instant(stamp: str) -> None:
    body = traccar_forward("DEV001", T0, 40.7, -74.0)
    body["position"]["fixTime"] = stamp  # type: ignore[index]
    assert parse_positions_body(body)[0].fix_time_ms == T0


def test_unknown_fields_are_ignored() -> None:
    body = traccar_forward("DEV001", T0, 40.7, -74.0)
    body["position"]["somethingNew"] = {"x": 1}  # type: ignore[index]
    body["extra"] = True
    assert len(parse_positions_body(body)) == 1


def _with(field: str, value: object) -> dict[str, object]:
    body = traccar_forward("DEV001", T0, 40.7, -74.0)
    body["position"][field] = value  # type: ignore[index]
    return body


@pytest.mark.parametrize(
    "body",
    [
        _with("latitude", 123.0),
        _with("longitude", -181),
        _with("latitude", "north"),
        _with("speed", -3),
        _with("course", 400),
        _with("fixTime", "yesterday"),
        {**traccar_forward("DEV001", T0, 40.7, -74.0), "device": {"name": "no id"}},
        {"position": {"latitude": 1}},
        [{"latitude": 40.7, "longitude": -74.0, "fixTime": "2026-02-07T12:00:00Z"}],
        [],
        [1, 2],
        "a string",
        _with("latitude", 0.0)
        | {"position": {**_with("latitude", 0.0)["position"], "longitude": 0.0}},  # type: ignore[dict-item]
    ],
    ids=[
        "lat-123",
        "lon-181",
        "lat-string",
        "negative-speed",
        "course-400",
        "bad-time",
        "missing-device-id",
        "position-without-fields",
        "array-without-device",
        "empty-array",
        "array-of-numbers",
        "string",
        "null-island",
    ],
)
def test_malformed_bodies_are_refused(body: object) -> None:
    with pytest.raises(InvalidPosition):
        parse_positions_body(body)
