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

import orjson
import pandas as pd

from analytics import queries
from analytics.errors import InvalidQuery
from geo.cells import cell_to_boundary, cell_to_string, point_to_cell
from geo.eta import PROFILE_CELL_RESOLUTION, SpeedProfile, SpeedSample
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

    # ---- learned road speeds (what the ETA knows, docs/eta.md) ----

    def _since(self, weeks: int | None) -> datetime:
        """The start of the learning window: ``weeks`` (default FLEETPULSE_ETA__LEARN_WEEKS)
        before now, as the API and the worker take it."""
        n = self.settings.eta.learn_weeks if weeks is None else weeks
        if not 1 <= n <= 52:
            raise InvalidQuery("weeks must be 1..52")
        return datetime.now(UTC) - timedelta(weeks=n)

    def road_speeds(
        self,
        tenant: str,
        *,
        hour_of_week: int | None = None,
        network: str | None = None,
        bbox: queries.BBox | None = None,
        min_traversals: int = 1,
        weeks: int | None = None,
    ) -> gpd.GeoDataFrame:
        """Return the road segments the tenant's vehicles drove whole in the last ``weeks``
        (default ``FLEETPULSE_ETA__LEARN_WEEKS``), with what was learned about them, as
        lines (EPSG:4326): the same rows as ``GET /api/analytics/road-speeds``.

        One row per directed segment, indexed by ``"network:source:target"``; columns
        ``network``, ``source``, ``target``, ``highway``, ``name``, ``traversals``,
        ``speed_kmh`` (space-mean: total length over total time), ``mean_travel_s``,
        ``free_flow_kmh`` (the road's signed or class speed). ``hour_of_week`` (UTC, Monday
        00:00 = 0, see ``geo.eta.hour_of_week``) keeps that hour's traversals only, else all
        hours count; ``bbox`` is (min lon, min lat, max lon, max lat); segments with fewer
        than ``min_traversals`` are left out. Bad input raises
        ``analytics.errors.InvalidQuery``.

        Examples
        --------
        >>> h = History()                                                # doctest: +SKIP
        >>> rush = h.road_speeds("tenant-1", hour_of_week=7, network="liechtenstein")
        ... # doctest: +SKIP
        >>> rush.plot(column="speed_kmh", cmap="RdYlGn", legend=True)    # doctest: +SKIP
        >>> noon = h.road_speeds("tenant-1", hour_of_week=11, network="liechtenstein")
        ... # doctest: +SKIP
        >>> (rush.speed_kmh / noon.speed_kmh).describe()  # aligned by segment  # doctest: +SKIP
        """
        import geopandas as gpd
        from shapely.geometry import shape

        if min_traversals < 1:
            raise InvalidQuery("min_traversals must be at least 1")
        since = self._since(weeks)
        features = self._run(
            lambda c: queries.road_speeds(
                c,
                tenant=tenant,
                since=since,
                network=network,
                hour_of_week=hour_of_week,
                bbox=bbox,
                min_traversals=min_traversals,
            )
        )
        columns = {
            "network": "network",
            "source": "source",
            "target": "target",
            "highway": "highway",
            "name": "name",
            "traversals": "traversals",
            "speedKmh": "speed_kmh",
            "meanTravelS": "mean_travel_s",
            "freeFlowKmh": "free_flow_kmh",
        }
        df = pd.DataFrame(
            [{col: f["properties"][key] for key, col in columns.items()} for f in features],
            columns=list(columns.values()),
            index=pd.Index([f["id"] for f in features], name="segment", dtype=object),
        )
        geoms = [shape(f["geometry"]) for f in features]
        return gpd.GeoDataFrame(df, geometry=gpd.GeoSeries(geoms, index=df.index), crs="EPSG:4326")

    def speed_profile(
        self,
        tenant: str,
        *,
        network: str | None = None,
        highway: str | None = None,
        weeks: int | None = None,
    ) -> pd.DataFrame:
        """Return the learned speed by hour of the week and road class: one row per
        (``highway``, ``hour_of_week``) with traversals in the last ``weeks`` (default
        ``FLEETPULSE_ETA__LEARN_WEEKS``).

        Columns ``highway``, ``hour_of_week`` (0..167, UTC, Monday 00:00 = 0), ``day``
        (Mon..Sun), ``hour`` (0..23 UTC), ``traversals``, ``segments`` (distinct segments
        behind the figure) and ``speed_kmh``, the space-mean speed (total length over total
        time) of the class's traversals in that hour: the ``class_hour`` level of the ETA's
        fallback chain. Hours without traversals have no row.

        Examples
        --------
        >>> p = History().speed_profile("tenant-1", network="liechtenstein")  # doctest: +SKIP
        >>> p.pivot(index="hour_of_week", columns="highway", values="speed_kmh").plot()
        ... # doctest: +SKIP
        """
        since = self._since(weeks)
        rows = self._run(
            lambda c: queries.speed_profile(
                c, tenant=tenant, since=since, network=network, highway=highway
            )
        )
        df = pd.DataFrame(
            rows, columns=["highway", "hour_of_week", "traversals", "segments", "speed_kmh"]
        )
        df.insert(2, "day", [_WEEKDAYS[h // 24] for h in df["hour_of_week"]])
        df.insert(3, "hour", df["hour_of_week"] % 24)
        return df

    def learned_profile(
        self,
        tenant: str,
        *,
        network: str,
        weeks: int | None = None,
        min_samples: int | None = None,
    ) -> SpeedProfile:
        """Return the :class:`geo.eta.SpeedProfile` the tenant's traversals of one network in
        the last ``weeks`` teach, with ``min_samples`` (default
        ``FLEETPULSE_ETA__MIN_SAMPLES``) traversals before a figure counts: the enrichment
        worker's fallback chain (segment → segment × class profile → H3 cell → class →
        planning speed), to ask what it would answer. (The worker learns one profile from all
        the tenant's networks; for a tenant on one network the two are the same.)

        Examples
        --------
        >>> from geo.eta import hour_of_week
        >>> p = History().learned_profile("tenant-1", network="liechtenstein")
        ... # doctest: +SKIP
        >>> p.speed((101, 102), "secondary", None, hour_of_week(1764748800))  # doctest: +SKIP
        """
        profile, _ = self._learn(tenant, network, weeks, min_samples)
        return profile

    def fallback_levels(
        self,
        tenant: str,
        hour_of_week: int,
        *,
        network: str,
        weeks: int | None = None,
        min_samples: int | None = None,
    ) -> gpd.GeoDataFrame:
        """Return every segment of a road network with the speed the learned ETA would drive
        it at in an hour of the week and the level of the fallback chain that gave it.

        One row per directed segment of ``road_edges`` (lines, EPSG:4326), indexed by
        ``"network:source:target"``; columns ``network``, ``source``, ``target``,
        ``highway``, ``name``, ``length_m``, ``free_flow_kmh``, ``speed_kmh`` and ``level``,
        one of ``geo.eta.SOURCES``: ``segment_hour`` (the segment has ``min_samples``
        traversals in that hour), ``segment_scaled`` (it has them over all hours: scaled by
        its class's profile), ``cell_hour`` (its H3 cell at that hour), ``class_hour`` (its
        road class at that hour), ``planning`` (nothing learned applies). The levels come
        from :meth:`learned_profile`'s ``SpeedProfile.speed``, the worker's own chain.

        Examples
        --------
        >>> levels = History().fallback_levels("tenant-1", 7, network="liechtenstein")
        ... # doctest: +SKIP
        >>> levels.groupby("level").length_m.sum() / levels.length_m.sum()  # doctest: +SKIP
        """
        import geopandas as gpd
        from shapely.geometry import shape

        queries.check_hour_of_week(hour_of_week)
        profile, segments = self._learn(tenant, network, weeks, min_samples)
        rows = []
        for s in segments:
            speed_ms, level = profile.speed(
                (int(s["source"]), int(s["target"])), s["highway"], s["cell"], hour_of_week
            )
            rows.append(
                {
                    "network": network,
                    "source": int(s["source"]),
                    "target": int(s["target"]),
                    "highway": s["highway"],
                    "name": s["name"],
                    "length_m": float(s["length_m"]),
                    "free_flow_kmh": float(s["free_flow_kmh"]),
                    "speed_kmh": speed_ms * 3.6,
                    "level": level,
                }
            )
        df = pd.DataFrame(
            rows,
            columns=[
                "network",
                "source",
                "target",
                "highway",
                "name",
                "length_m",
                "free_flow_kmh",
                "speed_kmh",
                "level",
            ],
            index=pd.Index(
                [f"{network}:{s['source']}:{s['target']}" for s in segments],
                name="segment",
                dtype=object,
            ),
        )
        geoms = [shape(orjson.loads(s["geom"])) for s in segments]
        return gpd.GeoDataFrame(df, geometry=gpd.GeoSeries(geoms, index=df.index), crs="EPSG:4326")

    def _learn(
        self, tenant: str, network: str, weeks: int | None, min_samples: int | None
    ) -> tuple[SpeedProfile, list[dict[str, Any]]]:
        """The network's learned profile and its segments (with their profile cells)."""
        need = self.settings.eta.min_samples if min_samples is None else min_samples
        if need < 1:
            raise InvalidQuery("min_samples must be at least 1")
        since = self._since(weeks)

        async def load(c: Conn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            sums = await queries.segment_hour_sums(c, tenant=tenant, since=since, network=network)
            return sums, await queries.network_segments(c, network=network)

        sums, segments = self._run(load)
        attrs: dict[tuple[int, int], tuple[str | None, int | None]] = {}
        for s in segments:
            # the cell the worker files a segment under: its halfway point's
            s["cell"] = point_to_cell(s["mid_lon"], s["mid_lat"], PROFILE_CELL_RESOLUTION)
            attrs[(int(s["source"]), int(s["target"]))] = (s["highway"], s["cell"])
        samples = []
        for r in sums:
            key = (int(r["source"]), int(r["target"]))
            highway, cell = attrs.get(key, (None, None))
            samples.append(
                SpeedSample(
                    key,
                    highway,
                    cell,
                    int(r["hour_of_week"]),
                    float(r["length_m"]),
                    float(r["travel_s"]),
                    int(r["traversals"]),
                )
            )
        planning_ms = self.settings.enrichment.planning_speed_kmh / 3.6
        return SpeedProfile.learn(samples, planning_ms, need), segments


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def day_window(day: DayLike) -> tuple[datetime, datetime]:
    """Return the UTC bounds of a day, for the window arguments.

    Examples
    --------
    >>> day_window("2026-03-02")[1].isoformat()
    '2026-03-03T00:00:00+00:00'
    """
    d0 = datetime.combine(_day(day), datetime.min.time(), tzinfo=UTC)
    return d0, d0 + timedelta(days=1)
