"""Response classes rendered with orjson (FastAPI deprecated its own ORJSONResponse)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class OrjsonResponse(JSONResponse):
    """JSON rendered by orjson: fast, and datetimes/UUIDs need no conversion."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


class GeoJSONResponse(OrjsonResponse):
    media_type = "application/geo+json"
