"""Distances on the Earth in metres, and the local metric scale of a degree (pure, scalar)."""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG)
WGS84_A = 6_378_137.0  # semi-major axis
WGS84_E2 = 6.694_379_990_14e-3  # first eccentricity squared


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def metres_per_degree(lat: float) -> tuple[float, float]:
    """Metres in a degree of longitude and of latitude at ``lat`` on the WGS84 ellipsoid.

    Scaling lon/lat by these gives a plane in metres that is exact at ``lat`` and within
    centimetres of the geodesic for a few hundred metres around it.
    """
    phi = math.radians(lat)
    w = math.sqrt(1.0 - WGS84_E2 * math.sin(phi) ** 2)
    per_radian_lon = WGS84_A * math.cos(phi) / w
    per_radian_lat = WGS84_A * (1.0 - WGS84_E2) / w**3
    return math.radians(per_radian_lon), math.radians(per_radian_lat)
