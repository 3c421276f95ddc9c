"""Traccar's URL forwarder (PositionForwarderUrl) query -> fixes, and its agreement with JSON."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote

import orjson
import pytest

from ingest.errors import InvalidPosition
from ingest.traccar import parse_gprmc, parse_positions_body, parse_url_params
from tests.helpers import traccar_forward

T0 = 1_770_465_600_123  # 2026-02-07T12:00:00.123Z

# The template documented in docs/receivers.md, filled in the way Traccar's formatRequest does.
TEMPLATE = (
    "uniqueId={uniqueId}&deviceId={deviceId}&name={name}&status={status}&protocol={protocol}"
    "&fixTime={fixTime}&deviceTime={deviceTime}&valid={valid}&latitude={latitude}"
    "&longitude={longitude}&altitude={altitude}&speed={speed}&course={course}"
    "&accuracy={accuracy}&address={address}&attributes={attributes}"
)


def filled(**overrides: str) -> dict[str, str]:
    values = {
        "{uniqueId}": "DEV001",
        "{deviceId}": "17",
        "{name}": quote("van DEV001"),
        "{status}": "online",
        "{protocol}": "osmand",
        "{fixTime}": str(T0),
        "{deviceTime}": str(T0),
        "{valid}": "true",
        "{latitude}": "40.713",
        "{longitude}": "-74.0055",
        "{altitude}": "12.0",
        "{speed}": "10.0",
        "{course}": "90.0",
        "{accuracy}": "8.0",
        "{attributes}": quote(orjson.dumps({"batteryLevel": 87, "motion": True}).decode()),
    }
    values.update({"{" + k + "}": v for k, v in overrides.items()})
    query = TEMPLATE
    for placeholder, value in values.items():
        query = query.replace(placeholder, value)
    return dict(parse_qsl(query, keep_blank_values=True))


def test_url_type_gives_the_same_fix_as_the_json_type() -> None:
    from_url = parse_url_params(filled())
    [from_json] = parse_positions_body(traccar_forward("DEV001", T0, 40.713, -74.0055, 10.0))
    assert from_url == from_json
    assert from_url.speed_kmh == pytest.approx(18.52)
    assert from_url.attributes == {"batteryLevel": 87, "motion": True, "traccarDeviceId": 17}


def test_unset_placeholders_and_null_mean_absent() -> None:
    # No address: Traccar leaves "{address}" in the URL; Java writes null for missing values.
    fix = parse_url_params(filled(accuracy="0.0", altitude="null"))
    assert fix.accuracy is None and fix.altitude is None


def test_device_time_is_used_without_fix_time_and_java_number_forms_parse() -> None:
    params = filled(latitude="1.0E-4", longitude="-74.0")
    del params["fixTime"]
    fix = parse_url_params(params)
    assert fix.fix_time_ms == T0 and fix.lat == pytest.approx(0.0001)


def test_gprmc_alone_is_enough() -> None:
    sentence = "$GPRMC,120000.123,A,4042.7800,N,07400.3300,W,10.00,90.00,070226,,*2B"
    rmc = parse_gprmc(sentence)
    assert rmc.fix_ms == T0
    assert rmc.lat == pytest.approx(40.713) and rmc.lon == pytest.approx(-74.0055)
    fix = parse_url_params({"uniqueId": "DEV001", "gprmc": sentence})
    assert fix.speed_kmh == pytest.approx(18.52) and fix.course == 90.0


@pytest.mark.parametrize(
    "overrides",
    [
        {"uniqueId": ""},
        {"latitude": "91"},
        {"longitude": "181"},
        {"latitude": "NaN"},
        {"fixTime": "2026-02-07T12:00:00Z", "deviceTime": "x"},
        {"fixTime": "-5", "deviceTime": "-5"},
        {"speed": "-1.0"},
        {"attributes": "%5B1%5D"},  # a JSON array, not an object
        {"attributes": "not-json"},
    ],
)
def test_bad_url_parameters_are_refused(overrides: dict[str, str]) -> None:
    with pytest.raises(InvalidPosition):
        parse_url_params(filled(**overrides))


def test_missing_coordinates_without_gprmc_are_refused() -> None:
    params = filled()
    del params["latitude"]
    with pytest.raises(InvalidPosition):
        parse_url_params(params)
    with pytest.raises(InvalidPosition):
        parse_gprmc("$GPRMC,garbage")
