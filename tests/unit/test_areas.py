"""geo.areas: GeoJSON polygon validation and Traccar area strings (latitude first)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyproj import Geod

from geo.areas import (
    MAX_VERTICES,
    Circle,
    InvalidArea,
    PolygonArea,
    circle_to_traccar,
    covering_circle,
    parse_bbox,
    parse_traccar_area,
    polygon_to_traccar,
    validate_circle,
    validate_geojson_linestring,
    validate_geojson_polygon,
)

SQUARE = [[-74.01, 40.71], [-74.0, 40.71], [-74.0, 40.72], [-74.01, 40.72], [-74.01, 40.71]]


def poly(*rings: list[list[float]]) -> dict[str, object]:
    return {"type": "Polygon", "coordinates": list(rings)}


def test_a_valid_polygon_passes_with_holes() -> None:
    hole = [[-74.008, 40.712], [-74.002, 40.712], [-74.002, 40.718], [-74.008, 40.712]]
    area = validate_geojson_polygon(poly(SQUARE, hole))
    assert area.rings[0][0] == (-74.01, 40.71) and len(area.rings) == 2
    feature = {"type": "Feature", "geometry": poly(SQUARE), "properties": {}}
    assert validate_geojson_polygon(feature).rings == [[tuple(p) for p in SQUARE]]


@pytest.mark.parametrize(
    ("geometry", "words"),
    [
        (poly([[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]), "self-intersection"),
        (poly(SQUARE[:-1]), "not closed"),
        (poly([[0, 0], [1, 0], [0, 0]]), "at least 4"),
        (poly([[-74.0, 95.0], *SQUARE[1:-1], [-74.0, 95.0]]), "latitude 95"),
        (poly([[-190.0, 40.0], *SQUARE[1:-1], [-190.0, 40.0]]), "longitude -190"),
        (poly([[0, "a"], [1, 0], [1, 1], [0, "a"]]), "numbers"),
        (poly([[0.0, 0.0], [1e-6, 0.0], [1e-6, 1e-6], [0.0, 0.0]]), "below"),
        (poly([[-60, -40], [60, -40], [60, 40], [-60, 40], [-60, -40]]), "above"),
        ({"type": "Point", "coordinates": [0, 0]}, "must be Polygon"),
        (poly(), "at least one ring"),
        ("POLYGON", "GeoJSON object"),
    ],
)
def test_invalid_polygons_say_what_is_wrong(geometry: object, words: str) -> None:
    with pytest.raises(InvalidArea, match=words):
        validate_geojson_polygon(geometry)


def test_vertex_count_is_bounded_before_anything_expensive() -> None:
    ring = [[(i % 100) * 1e-4, (i // 100) * 1e-4] for i in range(100_000)]
    with pytest.raises(InvalidArea, match=f"100000 vertices, at most {MAX_VERTICES}"):
        validate_geojson_polygon(poly(ring))


def test_traccar_circle_is_latitude_first() -> None:
    c = parse_traccar_area("CIRCLE (40.7128 -74.006, 150)")
    assert c == Circle(lon=-74.006, lat=40.7128, radius_m=150.0)
    assert parse_traccar_area("circle(40.7128 -74.006,150.5)") == Circle(-74.006, 40.7128, 150.5)
    assert circle_to_traccar(c) == "CIRCLE (40.7128 -74.006, 150)"


def test_traccar_polygon_is_latitude_first() -> None:
    text = "POLYGON ((40.71 -74.01, 40.71 -74, 40.72 -74, 40.72 -74.01, 40.71 -74.01))"
    area = parse_traccar_area(text)
    assert isinstance(area, PolygonArea)
    assert area.rings[0] == [tuple(p) for p in SQUARE]
    assert polygon_to_traccar(area.rings[0]) == text


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("LINESTRING (40 -74, 41 -75)", "unsupported area 'LINESTRING'"),
        ("CIRCLE (95 -74, 100)", "latitude 95"),
        ("CIRCLE (40 -74, 0)", "radius 0"),
        ("CIRCLE (40 -74, 1e9)", "radius"),
        ("POLYGON ((40 -74, 41 -74, 41 -75))", "at least 4"),
        ("POLYGON ((40 -74, 41 -74, 41 -75, 40 -75))", "not closed"),
        ("POLYGON ((40 -74, 41, 41 -75, 40 -74))", "position 1"),
        ("", "non-empty"),
    ],
)
def test_bad_traccar_areas(text: str, words: str) -> None:
    with pytest.raises(InvalidArea, match=words):
        parse_traccar_area(text)


@given(
    lat=st.floats(-89.9, 89.9),
    lon=st.floats(-179.9, 179.9),
    radius=st.floats(1, 50_000),
)
def test_circle_round_trips_through_traccar(lat: float, lon: float, radius: float) -> None:
    back = parse_traccar_area(circle_to_traccar(validate_circle(lon, lat, radius)))
    assert isinstance(back, Circle)
    assert math.isclose(back.lat, lat, abs_tol=1e-7) and math.isclose(back.lon, lon, abs_tol=1e-7)
    assert math.isclose(back.radius_m, radius, abs_tol=1e-7)


@given(
    lon=st.floats(-170, 170),
    lat=st.floats(-70, 70),
    w=st.floats(0.001, 0.5),
    h=st.floats(0.001, 0.5),
)
def test_polygon_round_trips_through_traccar(lon: float, lat: float, w: float, h: float) -> None:
    ring = [[lon, lat], [lon + w, lat], [lon + w, lat + h], [lon, lat + h], [lon, lat]]
    area = validate_geojson_polygon(poly(ring))
    back = parse_traccar_area(polygon_to_traccar(area.rings[0]))
    assert isinstance(back, PolygonArea)
    for (x1, y1), (x2, y2) in zip(back.rings[0], area.rings[0], strict=True):
        assert abs(x1 - x2) <= 1e-7 and abs(y1 - y2) <= 1e-7


@given(st.lists(st.tuples(st.floats(-74.3, -73.7), st.floats(40.5, 40.9)), min_size=1, max_size=30))
def test_covering_circle_covers_every_position(points: list[tuple[float, float]]) -> None:
    c = covering_circle(points)
    geod = Geod(ellps="WGS84")
    for lon, lat in points:
        _, _, d = geod.inv(c.lon, c.lat, lon, lat)
        assert d <= c.radius_m + 1e-6


def test_bbox_and_linestring_validation() -> None:
    assert parse_bbox("-74.1,40.6,-73.9,40.8") == (-74.1, 40.6, -73.9, 40.8)
    for text, words in (
        ("-74,40,-73", "four numbers"),
        ("-73,40,-74,41", "min < max"),
        ("-74,40,-73,95", "latitude 95"),
        ("a,b,c,d", "four numbers"),
    ):
        with pytest.raises(InvalidArea, match=words):
            parse_bbox(text)
    line = validate_geojson_linestring({"type": "LineString", "coordinates": [[0, 0], [1, 1]]})
    assert line == [(0.0, 0.0), (1.0, 1.0)]
    with pytest.raises(InvalidArea, match="distinct"):
        validate_geojson_linestring({"type": "LineString", "coordinates": [[0, 0], [0, 0]]})
