"""Exports of a driver's track: GeoJSON, GPX 1.1 and CSV (text; no I/O)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

from analytics.queries import TrackArrays, segment_to_json
from geo.movement import Segment

FORMATS = ("geojson", "gpx", "csv")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def track_to_geojson(
    track: TrackArrays, segments: list[Segment], properties: dict[str, Any]
) -> dict[str, Any]:
    """Return a FeatureCollection: the track as a LineString (times in ``coordTimes``) and
    one Point per stop."""
    features: list[dict[str, Any]] = []
    if len(track):
        features.append(
            {
                "type": "Feature",
                "geometry": {
                    "type": "LineString" if len(track) > 1 else "Point",
                    "coordinates": (
                        [
                            [round(float(x), 7), round(float(y), 7)]
                            for x, y in zip(track.lon, track.lat, strict=True)
                        ]
                        if len(track) > 1
                        else [float(track.lon[0]), float(track.lat[0])]
                    ),
                },
                "properties": {
                    **properties,
                    "kind": "track",
                    "coordTimes": [_iso(t) for t in track.t],
                    "speedsKmh": [None if v != v else round(float(v), 1) for v in track.speed],
                },
            }
        )
    for s in segments:
        if s.kind != "stop":
            continue
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [round(s.lon, 7), round(s.lat, 7)]},
                "properties": {"kind": "stop", **segment_to_json(s)},
            }
        )
    return {"type": "FeatureCollection", "features": features}


def track_to_gpx(track: TrackArrays, name: str) -> str:
    """Return a GPX 1.1 document with one track segment (speed in m/s, as GPX 1.0 had)."""
    out = io.StringIO()
    out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    out.write(
        '<gpx version="1.1" creator="FleetPulse" xmlns="http://www.topografix.com/GPX/1/1">\n'
    )
    out.write(f"  <trk><name>{escape(name)}</name><trkseg>\n")
    for i in range(len(track)):
        out.write(
            f'    <trkpt lat="{track.lat[i]:.7f}" lon="{track.lon[i]:.7f}">'
            f"<time>{_iso(float(track.t[i]))}</time>"
        )
        if track.speed[i] == track.speed[i]:
            out.write(f"<extensions><speed>{track.speed[i] / 3.6:.2f}</speed></extensions>")
        out.write("</trkpt>\n")
    out.write("  </trkseg></trk>\n</gpx>\n")
    return out.getvalue()


def track_to_csv(track: TrackArrays) -> str:
    """Return CSV with a header: time (ISO UTC), lon, lat, speed_kmh, heading."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["time", "lon", "lat", "speed_kmh", "heading"])
    for i in range(len(track)):
        sp, hd = track.speed[i], track.heading[i]
        w.writerow(
            [
                _iso(float(track.t[i])),
                f"{track.lon[i]:.7f}",
                f"{track.lat[i]:.7f}",
                "" if sp != sp else f"{sp:.1f}",
                "" if hd != hd else f"{hd:.0f}",
            ]
        )
    return out.getvalue()
