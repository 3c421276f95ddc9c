"""The notebook API: the analytics read path as pandas / GeoPandas frames.

Connection settings come from the environment like everywhere else
(``FLEETPULSE_PG__HOST``, ``FLEETPULSE_PG__DATABASE``, ...; see ``.env.example``). Calls are
synchronous and work inside Jupyter (whose own event loop is running) by running the
asyncpg query on a helper thread.

Examples
--------
>>> from analytics.frames import History
>>> h = History()                                   # doctest: +SKIP
>>> h.daily_stats("tenant-1", "2026-03-02").head()  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd

from analytics import queries
from geo.cells import cell_to_boundary, cell_to_string
from infrastructure.postgres import Conn, connect
from infrastructure.settings import Settings

if TYPE_CHECKING:
    import geopandas as gpd

T = TypeVar("T")
DayLike = date | str


def _day(value: DayLike) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


class History:
    """Read the fleet's history into DataFrames.

    Parameters
    ----------
    settings : Settings, optional
        Defaults to ``Settings()``, i.e. the environment and ``.env``.

    Examples
    --------
    >>> h = History()                                      # doctest: +SKIP
    >>> fixes = h.driver_day("a1b2c3d4-0001-4000-8000-000000000001", "2026-03-02")
    ... # doctest: +SKIP
    >>> fixes.plot(markersize=2)                           # doctest: +SKIP
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()

    def _run(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        async def go() -> T:
            conn = await connect(self.settings.pg)
            try:
                return await fn(conn)
            finally:
                await conn.close()

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, go()).result()

    def sql(self, query: str, *args: Any) -> pd.DataFrame:
        """Return the rows of any read-only query as a DataFrame.

        Examples
        --------
        >>> History().sql("SELECT count(*) AS n FROM positions")  # doctest: +SKIP
        """

        async def fetch(conn: Conn) -> pd.DataFrame:
            rows = await conn.fetch(query, *args)
            return pd.DataFrame([dict(r) for r in rows])

        return self._run(fetch)

    def drivers(self, tenant: str) -> pd.DataFrame:
        """Return a tenant's drivers (id, name, device, vehicle).

        Examples
        --------
        >>> History().drivers("tenant-1")  # doctest: +SKIP
        """
        return self.sql(
            """SELECT id::text AS driver_id, name, device_unique_id, vehicle_type
               FROM drivers WHERE tenant_id = $1 ORDER BY name""",
            tenant,
        )

    def daily_stats(self, tenant: str, day: DayLike) -> pd.DataFrame:
        """Return one row per driver of the tenant for a UTC day (``driver_daily_stats``).

        Distances in km and times in hours are added as ``distance_km``, ``moving_h``,
        ``idle_h``, ``stopped_h``.

        Examples
        --------
        >>> df = History().daily_stats("tenant-1", "2026-03-02")  # doctest: +SKIP
        >>> df[["driver_name", "distance_km", "stops"]]           # doctest: +SKIP
        """
        d = _day(day)
        rows = self._run(lambda c: queries.daily_stats(c, tenant=tenant, day=d))
        df = pd.DataFrame(rows)
        if df.empty:
            return df
        df["driver_id"] = df["driver_id"].astype(str)
        df["distance_km"] = df["distance_m"] / 1000
        for col in ("moving", "idle", "stopped"):
            df[f"{col}_h"] = df[f"{col}_s"] / 3600
        return df

    def driver_day(self, driver_id: str, day: DayLike) -> gpd.GeoDataFrame:
        """Return a driver's raw fixes of a UTC day as points (EPSG:4326).

        Examples
        --------
        >>> History().driver_day("a1b2c3d4-0001-4000-8000-000000000001", "2026-03-02")
        ... # doctest: +SKIP
        """
        import geopandas as gpd

        d0, d1 = queries.day_bounds(_day(day))
        did = uuid.UUID(driver_id)
        track = self._run(lambda c: queries.raw_track(c, driver_id=did, start=d0, end=d1))
        df = pd.DataFrame(
            {
                "time": pd.to_datetime(track.t, unit="s", utc=True),
                "speed_kmh": track.speed,
                "heading": track.heading,
            }
        )
        return gpd.GeoDataFrame(
            df, geometry=gpd.points_from_xy(track.lon, track.lat), crs="EPSG:4326"
        )

    def trips(self, driver_id: str, day: DayLike) -> pd.DataFrame:
        """Return a driver's trips and stops of a UTC day (``geo.movement.segment_trips``).

        Examples
        --------
        >>> History().trips("a1b2c3d4-0002-4000-8000-000000000002", "2026-03-02")
        ... # doctest: +SKIP
        """
        did = uuid.UUID(driver_id)
        d = _day(day)
        _, segments = self._run(lambda c: queries.trips(c, driver_id=did, day=d))
        return pd.DataFrame([queries.segment_to_json(s) for s in segments])

    def visits(self, driver_id: str, day: DayLike) -> pd.DataFrame:
        """Return a driver's planned visits of a day with their arrival/departure times.

        Examples
        --------
        >>> History().visits("a1b2c3d4-0001-4000-8000-000000000001", "2026-03-02")
        ... # doctest: +SKIP
        """
        return self.sql(
            """SELECT pv.sequence_number, c.name AS customer, pv.status,
                      pv.time_window_start, pv.time_window_end, pv.arrived_at,
                      pv.departed_at, pv.completed_at, vc.on_time
               FROM planned_visits pv
               LEFT JOIN customers c ON c.id = pv.customer_id
               LEFT JOIN visit_completions vc ON vc.visit_id = pv.id
               WHERE pv.driver_id = $1 AND pv.scheduled_date = $2
               ORDER BY pv.sequence_number""",
            uuid.UUID(driver_id),
            _day(day),
        )

    def heatmap(
        self,
        tenant: str,
        start: datetime | str,
        end: datetime | str,
        *,
        resolution: int = 8,
        metric: str = "positions",
    ) -> gpd.GeoDataFrame:
        """Return H3 cells with the metric as hexagon polygons (EPSG:4326).

        Parameters
        ----------
        tenant : str
        start, end : datetime or ISO string
            Whole hours covering [start, end) are read from ``cells_1h``.
        resolution : int
            H3 resolution 0..9.
        metric : {"positions", "dwell", "speed", "drivers"}

        Examples
        --------
        >>> cells = History().heatmap("tenant-1", "2026-03-02", "2026-03-03")
        ... # doctest: +SKIP
        >>> cells.plot(column="value", cmap="viridis")  # doctest: +SKIP
        """
        import geopandas as gpd
        from shapely.geometry import Polygon

        s, e = queries.as_utc(start), queries.as_utc(end)
        cells = self._run(
            lambda c: queries.heatmap(
                c, tenant=tenant, start=s, end=e, resolution=resolution, metric=metric
            )
        )
        geoms = [Polygon(cell_to_boundary(cell)) for cell, _ in cells]
        return gpd.GeoDataFrame(
            {"cell": [cell_to_string(c) for c, _ in cells], "value": [v for _, v in cells]},
            geometry=geoms,
            crs="EPSG:4326",
        )

    def export_geoparquet(
        self,
        tenant: str,
        start: datetime | str,
        end: datetime | str,
        path: str | Path,
        *,
        bbox: tuple[float, float, float, float] | None = None,
        max_rows: int | None = None,
    ) -> Path:
        """Write the tenant's raw fixes in [start, end) (optionally inside ``bbox``) to a
        GeoParquet file, the same file ``GET /api/exports/fleet`` answers; return its path.

        Read it with ``geopandas.read_parquet(path)`` (points, EPSG:4326) or DuckDB.

        Examples
        --------
        >>> path = History().export_geoparquet("tenant-1", "2026-03-02", "2026-03-09",
        ...                                    "week.parquet")   # doctest: +SKIP
        >>> geopandas.read_parquet(path).groupby("driver_id").size()  # doctest: +SKIP
        """
        from analytics.geoparquet import export_fixes

        limit = max_rows or self.settings.analytics.export_max_rows
        s, e = queries.as_utc(start), queries.as_utc(end)
        body, _ = self._run(
            lambda c: export_fixes(c, tenant=tenant, start=s, end=e, bbox=bbox, max_rows=limit)
        )
        out = Path(path)
        out.write_bytes(body)
        return out

    def eta_accuracy(self, tenant: str, start: datetime | str, end: datetime | str) -> pd.DataFrame:
        """Return, per fix that carried an ETA to a visit that was reached, the predicted
        and the actual time to go and the error.

        Columns: ``fix_time``, ``driver_id``, ``visit_id``, ``eta_s`` (predicted time to go),
        ``actual_s`` (arrival minus fix time), ``error_s`` (eta - actual),
        ``abs_pct_error`` (abs(error) / actual).

        Examples
        --------
        >>> df = History().eta_accuracy("tenant-1", "2026-03-02", "2026-03-04")
        ... # doctest: +SKIP
        >>> df.groupby(pd.cut(df.actual_s, [0, 300, 600, 1200]))["abs_pct_error"].mean()
        ... # doctest: +SKIP
        """
        df = self.sql(
            """SELECT p.fix_time, p.driver_id::text AS driver_id, p.next_visit_id::text AS
                      visit_id, p.eta_s::double precision AS eta_s,
                      extract(epoch FROM pv.arrived_at - p.fix_time)::double precision
                          AS actual_s
               FROM positions p
               JOIN planned_visits pv ON pv.id = p.next_visit_id
               WHERE p.tenant_id = $1 AND p.fix_time >= $2 AND p.fix_time < $3
                 AND p.eta_s IS NOT NULL AND pv.arrived_at > p.fix_time
               ORDER BY p.fix_time""",
            tenant,
            queries.as_utc(start),
            queries.as_utc(end),
        )
        if df.empty:
            return df
        df["error_s"] = df["eta_s"] - df["actual_s"]
        df["abs_pct_error"] = (df["error_s"].abs() / df["actual_s"]).where(df["actual_s"] > 0)
        return df


def day_window(day: DayLike) -> tuple[datetime, datetime]:
    """Return the UTC bounds of a day, for the window arguments.

    Examples
    --------
    >>> day_window("2026-03-02")[1].isoformat()
    '2026-03-03T00:00:00+00:00'
    """
    d0 = datetime.combine(_day(day), datetime.min.time(), tzinfo=UTC)
    return d0, d0 + timedelta(days=1)
