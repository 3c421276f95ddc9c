"""OsmAnd requests -> fixes, as Traccar's OsmAndProtocolDecoder reads them."""

from __future__ import annotations

from urllib.parse import urlencode

import orjson
import pytest

from ingest.errors import InvalidPosition
from ingest.osmand import parse_json, parse_params, parse_request, parse_timestamp, typed_value

T0 = 1_770_465_600_000  # 2026-02-07T12:00:00Z
NOW = 1_770_465_999_000


def params(**extra: str) -> list[tuple[str, str]]:
    base = {"id": "DEV001", "lat": "40.713", "lon": "-74.0055", "timestamp": str(T0 // 1000)}
    base.update(extra)
    return list(base.items())


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        (str(T0 // 1000), T0),  # epoch seconds
        (str(T0), T0),  # epoch milliseconds
        ("2147483646", 2_147_483_646_000),  # just below Integer.MAX_VALUE: seconds
        ("2147483647", 2_147_483_647),  # Integer.MAX_VALUE itself: milliseconds
        ("2026-02-07T12:00:00Z", T0),
        ("2026-02-07T12:00:00.000Z", T0),
        ("2026-02-07T13:00:00+01:00", T0),
        ("2026-02-07T07:00:00-0500", T0),
        ("2026-02-07T12:00:00", T0),  # naive ISO: UTC (Traccar would refuse it)
        ("2026-02-07 12:00:00", T0),  # yyyy-MM-dd HH:mm:ss: UTC
        ("+1770465600", T0),  # Long.parseLong accepts a sign
    ],
)
def test_every_timestamp_form(stamp: str, expected: int) -> None:
    assert parse_timestamp(stamp) == expected
    assert parse_params(params(timestamp=stamp), now_ms=NOW).fix_time_ms == expected


@pytest.mark.parametrize(
    "stamp",
    ["yesterday", "1.77e9", "2026-02-30 12:00:00", "2026-02-07T25:00:00Z", "12:00", "-5", "0x10"],
)
def test_timestamp_garbage_is_refused(stamp: str) -> None:
    with pytest.raises(InvalidPosition):
        parse_params(params(timestamp=stamp), now_ms=NOW)


def test_missing_timestamp_means_now_and_empty_values_are_skipped() -> None:
    fix = parse_params(
        [("id", "DEV001"), ("lat", "40.7"), ("lon", "-74"), ("timestamp", ""), ("speed", "")],
        now_ms=NOW,
    )
    assert fix.fix_time_ms == NOW
    assert fix.speed_kmh is None


def test_units_fields_and_typed_attributes() -> None:
    fix = parse_params(
        params(
            speed="10",
            bearing="271.5",
            altitude="12.5",
            accuracy="8",
            hdop="1.2",
            batt="87",
            charge="true",
            driverUniqueId="4242",
            valid="0",
            odometer="1234.5",
            ignition="false",
            motion="true",
            note="hello world",
            count="007",
        ),
        now_ms=NOW,
    )
    assert fix.device_id == "DEV001"
    assert (fix.lat, fix.lon) == (40.713, -74.0055)
    assert fix.speed_kmh == pytest.approx(18.52)  # knots -> km/h, once
    assert fix.course == 271.5
    assert fix.altitude == 12.5
    assert fix.accuracy == 8
    assert fix.valid is False
    assert fix.protocol == "osmand"
    assert fix.attributes == {
        "hdop": 1.2,
        "batteryLevel": 87.0,
        "charge": True,
        "driverUniqueId": "4242",  # a string even though it looks like a number
        "odometer": 1234.5,
        "ignition": False,
        "motion": True,
        "note": "hello world",
        "count": 7.0,
    }


@pytest.mark.parametrize(("value", "valid"), [("true", True), ("TRUE", True), ("1", True)])
def test_valid_is_true_or_1(value: str, valid: bool) -> None:
    assert parse_params(params(valid=value), now_ms=NOW).valid is valid


def test_heading_alias_deviceid_alias_and_location() -> None:
    fix = parse_params(
        [("deviceid", "DEV002"), ("location", "40.5,-73.25"), ("heading", "90")], now_ms=NOW
    )
    assert (fix.device_id, fix.lat, fix.lon, fix.course) == ("DEV002", 40.5, -73.25, 90.0)


def test_cell_and_wifi_are_repeatable_and_go_to_network() -> None:
    fix = parse_params(
        params()
        + [
            ("cell", "310,410,1234,5678"),
            ("cell", "310,410,1234,5679,-70"),
            ("wifi", "aa-bb-cc-dd-ee-ff,-60"),
        ],
        now_ms=NOW,
    )
    network = fix.attributes["network"]
    assert len(network["cellTowers"]) == 2
    assert network["cellTowers"][1] == {
        "mobileCountryCode": 310,
        "mobileNetworkCode": 410,
        "locationAreaCode": 1234,
        "cellId": 5679,
        "signalStrength": -70,
    }
    assert network["wifiAccessPoints"] == [
        {"macAddress": "aa:bb:cc:dd:ee:ff", "signalStrength": -60}
    ]


def test_typed_value_rules() -> None:
    assert typed_value("12") == 12.0
    assert typed_value("-1.5e3") == -1500.0
    assert typed_value("true") is True and typed_value("false") is False
    assert typed_value("True") == "True"  # only the lower-case words, like Traccar
    for text in ("NaN", "Infinity", "1_000", "0x10", "abc", "٣"):
        assert typed_value(text) == text


@pytest.mark.parametrize(
    "bad",
    [
        [("lat", "40.7"), ("lon", "-74")],  # missing id
        [("id", "DEV001"), ("lon", "-74")],  # missing lat: never stored as 0,0
        [("id", "DEV001")],  # a status report without a fix
        params(lat="91"),
        params(lon="181"),
        params(lat="0", lon="0"),
        params(lat="NaN"),
        params(lat="1_0"),
        params(speed="-3"),
        params(bearing="400"),
        params(location="40.7"),
        params(cell="1,2,3"),
        params(cell="1,2,x,4"),
        params(wifi="aa:bb"),
        [("id", "X" * 129), ("lat", "40.7"), ("lon", "-74")],
    ],
)
def test_bad_parameters_are_refused(bad: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidPosition):
        parse_params(bad, now_ms=NOW)


def test_query_wins_and_form_body_is_read_only_when_the_query_is_empty() -> None:
    form = urlencode(params(speed="5")).encode()
    [from_form] = parse_request("", "application/x-www-form-urlencoded", form, now_ms=NOW)
    assert from_form.speed_kmh == pytest.approx(9.26)
    [from_query] = parse_request(
        urlencode(params(speed="10")), "application/x-www-form-urlencoded", form, now_ms=NOW
    )
    assert from_query.speed_kmh == pytest.approx(18.52)
    # Traccar does not care about the content type of a form body (only JSON is special).
    [plain] = parse_request("", "text/plain", form, now_ms=NOW)
    assert plain == from_form
    with pytest.raises(InvalidPosition):
        parse_request("", None, b"", now_ms=NOW)


def client_json(**coords: object) -> dict[str, object]:
    """A body as Traccar Client (background-geolocation) sends it."""
    return {
        "device_id": "DEV001",
        "location": {
            "timestamp": "2026-02-07T12:00:00.000Z",
            "coords": {
                "latitude": 40.713,
                "longitude": -74.0055,
                "accuracy": 8,
                "speed": 10 * 1852 / 3600,  # m/s
                "heading": 90,
                "altitude": 12,
                **coords,
            },
            "is_moving": True,
            "odometer": 1234,
            "event": "motionchange",
            "battery": {"level": 0.87, "is_charging": True},
            "activity": {"type": "in_vehicle"},
            "mock": False,
            "extras": {"route": "R1", "stop": 3, "ratio": 0.5, "late": True, "skip": None},
        },
    }


def test_traccar_client_json_body() -> None:
    body = orjson.dumps(client_json())
    [fix] = parse_request("", "application/json; charset=utf-8", body, now_ms=NOW)
    assert fix.device_id == "DEV001"
    assert fix.fix_time_ms == T0
    assert fix.speed_kmh == pytest.approx(18.52)  # m/s -> km/h
    assert (fix.course, fix.altitude, fix.accuracy) == (90.0, 12.0, 8.0)
    assert fix.attributes == {
        "motion": True,
        "odometer": 1234,
        "event": "motionchange",
        "batteryLevel": 87,
        "charge": True,
        "activity": "in_vehicle",
        "mock": False,
        "route": "R1",
        "stop": 3,
        "ratio": 0.5,
        "late": True,
    }


def test_json_negative_speed_heading_and_battery_mean_unknown() -> None:
    body = client_json(speed=-1, heading=-1)
    body["location"]["battery"] = {"level": -1, "is_charging": False}  # type: ignore[index]
    [fix] = parse_json(orjson.dumps(body), now_ms=NOW)
    assert fix.speed_kmh is None and fix.course is None
    assert "batteryLevel" not in fix.attributes and "charge" not in fix.attributes


def test_json_location_list_is_a_batch() -> None:
    body = client_json()
    loc = body["location"]
    body["location"] = [loc, {**loc, "timestamp": "2026-02-07T12:00:05Z"}]  # type: ignore[dict-item]
    fixes = parse_json(orjson.dumps(body), now_ms=NOW)
    assert [f.fix_time_ms for f in fixes] == [T0, T0 + 5000]


@pytest.mark.parametrize(
    "body",
    [
        b"id=DEV001&lat=40&lon=-74",  # a form body sent as JSON: wrong content type
        b"[]",
        orjson.dumps({"location": client_json()["location"]}),  # no device_id
        orjson.dumps({**client_json(), "device_id": 17}),
        orjson.dumps({**client_json(), "location": {"timestamp": "2026-02-07T12:00:00Z"}}),
        orjson.dumps(client_json(latitude=91)),
        orjson.dumps(client_json(longitude=181)),
        orjson.dumps(client_json(latitude="40.7")),
        orjson.dumps({**client_json(), "location": {"coords": {}}}),
        orjson.dumps({**client_json(), "location": []}),
    ],
)
def test_bad_json_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(InvalidPosition):
        parse_request("", "application/json", body, now_ms=NOW)


def test_typed_value_keeps_control_characters_as_text() -> None:
    """Found by the fuzzer: str.strip() removes \\x1f, float() refuses it."""
    from ingest.osmand import typed_value

    assert typed_value("0\x1f") == "0\x1f"
    assert typed_value(" 12.5 ") == 12.5
