"""H3 indexing: one representation inside (the 64-bit integer), strings only at the edges."""

from __future__ import annotations

import h3

HISTORY_RESOLUTION = 10  # ~66 m edge: fine enough for heatmap parents and place-speed lookups


def point_to_cell(lon: float, lat: float, resolution: int = HISTORY_RESOLUTION) -> int:
    """Return the H3 cell (as an integer) containing the WGS84 point."""
    return int(h3.str_to_int(h3.latlng_to_cell(lat, lon, resolution)))


def cell_to_string(cell: int) -> str:
    """Return the hexadecimal string form used in JSON."""
    return str(h3.int_to_str(cell))


def cell_to_parent(cell: int, resolution: int) -> int:
    """Return the coarser ancestor of a cell."""
    return int(h3.str_to_int(h3.cell_to_parent(h3.int_to_str(cell), resolution)))
