"""Fuzzing: on arbitrary input every receiver's parser returns fixes or raises InvalidPosition.

Any other exception would be a 500 at the edge instead of the protocol's 4xx.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.batch import parse_item, split_ndjson
from ingest.errors import InvalidPosition
from ingest.model import Fix
from ingest.osmand import parse_params, parse_request
from ingest.traccar import parse_positions_body, parse_url_params

NOW = 1_770_465_600_000
KEYS = st.sampled_from(
    [
        "id", "deviceid", "lat", "lon", "location", "timestamp", "speed", "bearing", "heading",
        "altitude", "accuracy", "hdop", "batt", "charge", "valid", "cell", "wifi",
        "driverUniqueId", "x",
    ]
)  # fmt: skip
VALUES = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"-?[0-9]{1,20}(\.[0-9]{0,5})?([eE]-?[0-9]{1,4})?", fullmatch=True),
    st.sampled_from(["NaN", "Infinity", "1,2", "1,2,3,4,5", "true", "2026-02-07 12:00:00"]),
    st.datetimes().map(lambda d: d.isoformat()),
)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
TRACCAR_KEYS = st.sampled_from(
    [
        "latitude", "longitude", "fixTime", "deviceTime", "speed", "course", "altitude",
        "accuracy", "valid", "attributes", "uniqueId", "deviceId", "protocol",
    ]
)  # fmt: skip


def _check(result: list[Fix]) -> None:
    for fix in result:
        assert -90 <= fix.lat <= 90 and -180 <= fix.lon <= 180
        assert isinstance(fix.device_id, str) and fix.device_id
        assert fix.speed_kmh is None or math.isfinite(fix.speed_kmh)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(KEYS | st.text(max_size=8), VALUES), max_size=12))
def test_osmand_params(params: list[tuple[str, str]]) -> None:
    try:
        _check([parse_params(params, now_ms=NOW)])
    except InvalidPosition:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.text(max_size=60), st.sampled_from([None, "application/json"]))
def test_osmand_raw_request(body: bytes, query: str, content_type: str | None) -> None:
    try:
        _check(parse_request(query, content_type, body, now_ms=NOW))
    except InvalidPosition:
        pass


def client_body(coords: dict[str, Any], rest: dict[str, Any]) -> dict[str, Any]:
    return {"device_id": "DEV001", "location": {"timestamp": "2026-02-07T12:00:00Z", **rest,
            "coords": coords}}  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["latitude", "longitude", "speed", "heading", "accuracy", "altitude"]),
        JSON,
    ),
    st.dictionaries(
        st.sampled_from(["battery", "extras", "odometer", "is_moving", "activity", "event"]), JSON
    ),
    JSON,
)
def test_osmand_json(coords: dict[str, Any], rest: dict[str, Any], anything: Any) -> None:
    import orjson

    for body in (client_body(coords, rest), anything):
        try:
            raw = orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
        except (TypeError, orjson.JSONEncodeError):
            continue
        try:
            _check(parse_request("", "application/json", raw, now_ms=NOW))
        except InvalidPosition:
            pass


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(TRACCAR_KEYS, JSON), JSON)
def test_traccar_json(position: dict[str, Any], anything: Any) -> None:
    for body in (
        {"position": position, "device": {"uniqueId": "DEV001"}},
        [position],
        position,
        anything,
    ):
        try:
            _check(parse_positions_body(body))
        except InvalidPosition:
            pass


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(TRACCAR_KEYS | st.just("gprmc"), VALUES))
def test_traccar_url(params: dict[str, str]) -> None:
    try:
        _check([parse_url_params({"uniqueId": "DEV001", **params})])
    except InvalidPosition:
        pass


@settings(max_examples=300, deadline=None)
@given(JSON, st.binary(max_size=200))
def test_batch(item: Any, body: bytes) -> None:
    try:
        _check([parse_item(item)])
    except InvalidPosition:
        pass
    for ln in split_ndjson(body, max_lines=1000):
        assert (ln.fix is None) != (ln.error is None)
