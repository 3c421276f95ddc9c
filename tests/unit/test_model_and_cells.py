"""The Kafka message model and H3 helpers."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import h3
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from geo.cells import cell_to_parent, cell_to_string, point_to_cell
from geo.timestamps import iso_ms, ms_to_datetime
from ingest.errors import UndecodableMessage
from ingest.model import Fix, Position
from ingest.validation import check_fix_time


def test_position_round_trips_through_bytes() -> None:
    fix = Fix("DEV001", 1_770_465_600_123, 60.17, 24.94, 36.0, 90.0, attributes={"batt": 80})
    pos = fix.to_position("tenant-1", 1_770_465_601_000)
    assert Position.from_bytes(pos.to_bytes()) == pos


@pytest.mark.parametrize(
    "raw",
    [
        None,
        b"not json",
        b"[]",
        b'{"schema": 99}',
        b'{"schema": 1, "lat": 1}',
        b'{"schema":1,"tenant_id":"t","device_id":"d","fix_time_ms":1,"received_ms":1,'
        b'"lat":91,"lon":0}',
    ],
)
def test_undecodable_records_raise_their_own_error(raw: bytes | None) -> None:
    with pytest.raises(UndecodableMessage):
        Position.from_bytes(raw)


@given(
    lat=st.floats(min_value=-89.9, max_value=89.9),
    lon=st.floats(min_value=-179.9, max_value=179.9),
)
def test_cells_agree_with_h3_and_parents_contain_children(lat: float, lon: float) -> None:
    cell = point_to_cell(lon, lat, 10)
    assert cell_to_string(cell) == h3.latlng_to_cell(lat, lon, 10)
    assert cell_to_string(cell_to_parent(cell, 7)) == h3.cell_to_parent(
        h3.latlng_to_cell(lat, lon, 10), 7
    )


def test_fix_time_window() -> None:
    now = 1_770_465_600_000
    check_fix_time(now - 3600_000, now, max_future_s=60, max_age_s=86400)
    with pytest.raises(ValueError, match="future"):
        check_fix_time(now + 120_000, now, max_future_s=60, max_age_s=86400)
    with pytest.raises(ValueError, match="retention"):
        check_fix_time(now - 2 * 86400_000, now, max_future_s=60, max_age_s=86400)


@given(st.integers(min_value=0, max_value=253_402_300_799_999))  # to 9999-12-31
def test_iso_ms_is_the_datetime_iso_format_to_the_millisecond(ms: int) -> None:
    exact = datetime.fromtimestamp(ms // 1000, tz=UTC).replace(microsecond=ms % 1000 * 1000)
    assert iso_ms(ms) == exact.isoformat(timespec="milliseconds")


@given(st.integers(min_value=0, max_value=253_402_300_799_999))
def test_ms_to_datetime_is_exact(ms: int) -> None:
    exact = datetime.fromtimestamp(ms // 1000, tz=UTC).replace(microsecond=ms % 1000 * 1000)
    assert ms_to_datetime(ms) == exact
    assert ms_to_datetime(ms).tzinfo is UTC


def test_position_bytes_are_its_fields_in_order_and_unknown_members_are_ignored() -> None:
    pos = Fix("DEV001", 1_770_465_600_123, 60.17, 24.94, None, 90.0).to_position("t", 5)
    raw = orjson.loads(pos.to_bytes())
    assert list(raw) == [f.name for f in dataclasses.fields(Position)]
    assert Position.from_bytes(orjson.dumps({**raw, "later_field": [1]})) == pos
    del raw["attributes"], raw["protocol"], raw["valid"]  # optional: their defaults
    back = Position.from_bytes(orjson.dumps(raw))
    assert (back.attributes, back.protocol, back.valid) == ({}, "unknown", True)
    del raw["received_ms"]
    with pytest.raises(UndecodableMessage, match="received_ms"):
        Position.from_bytes(orjson.dumps(raw))
