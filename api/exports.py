"""GeoParquet responses shared by the driver-day export and the fleet export routes."""

from __future__ import annotations

import uuid
from datetime import date

from starlette.responses import Response

from analytics import geoparquet, queries
from api.security import Principal
from infrastructure.postgres import Conn
from infrastructure.settings import Settings


def parquet_response(body: bytes, name: str, rows: int) -> Response:
    """Return a GeoParquet file as an attachment, with its row count in ``X-Rows``."""
    return Response(
        body,
        media_type=geoparquet.MEDIA_TYPE,
        headers={
            "Content-Disposition": f'attachment; filename="{name}.parquet"',
            "X-Rows": str(rows),
        },
    )


async def driver_day_geoparquet(
    conn: Conn, user: Principal, driver_id: uuid.UUID, day: date, settings: Settings
) -> Response:
    """Return one driver's fixes of a UTC day as GeoParquet (the caller checked the scope)."""
    start, end = queries.day_bounds(day)
    body, rows = await geoparquet.export_fixes(
        conn,
        tenant=user.tenant_id,
        start=start,
        end=end,
        driver_id=driver_id,
        max_rows=settings.analytics.export_max_rows,
    )
    return parquet_response(body, f"driver-{driver_id}-{day}", rows)
