"""The FastAPI application: wiring only (lifespan, middleware, routers, error handlers)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import socketio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api.bad_input import install_bad_input_handlers
from api.errors import install_error_handlers
from api.limits import BodySizeLimit
from api.live.gateway import LiveGateway
from api.responses import OrjsonResponse
from api.routers import (
    analytics,
    auth,
    batch,
    customers,
    dead_letters,
    drivers,
    geofences,
    health,
    live,
    map,
    osmand,
    playback,
    routes,
    traccar,
    visits,
)
from api.routers import sync as sync_routes
from api.security_headers import SecurityHeaders
from api.state import AppState
from infrastructure.postgres import create_pool
from infrastructure.redis import RedisKeys, create_redis
from infrastructure.settings import EXAMPLE_JWT_SECRET, Settings
from ingest.devices import DeviceRegistry
from ingest.producer import Publisher
from ingest.receive import Receiver

log = logging.getLogger(__name__)


class InsecureConfiguration(RuntimeError):
    pass


def check_production_settings(settings: Settings) -> None:
    """Refuse to run in production with the example secret."""
    if settings.environment != "production":
        return
    secret = settings.auth.jwt_secret.get_secret_value()
    if secret == EXAMPLE_JWT_SECRET or len(secret) < 32:
        raise InsecureConfiguration(
            "FLEETPULSE_AUTH__JWT_SECRET must be set to a random value of 32+ characters"
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    check_production_settings(settings)
    gateway = LiveGateway(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings.pg)
        redis = create_redis(settings.redis)
        publisher = Publisher(settings.kafka)
        await publisher.start()
        keys = RedisKeys(settings.redis.key_prefix)
        devices = DeviceRegistry(pool)
        app.state.fleetpulse = AppState(
            settings=settings,
            pool=pool,
            redis=redis,
            keys=keys,
            publisher=publisher,
            devices=devices,
            receiver=Receiver(settings.ingest, devices, publisher, redis, keys),
            live=gateway,
        )
        await gateway.start(pool, redis, keys)
        try:
            yield
        finally:
            await gateway.stop()
            await publisher.stop()
            await redis.aclose()
            await pool.close()

    app = FastAPI(
        title="FleetPulse",
        version="0.1.0",
        default_response_class=OrjsonResponse,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    install_bad_input_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.ingest.max_body_bytes)
    app.add_middleware(SecurityHeaders, hsts=settings.environment == "production")
    for router in (health.router, auth.router, traccar.router, drivers.router):
        app.include_router(router)
    for router in (playback.router, analytics.router):
        app.include_router(router)
    for router in (routes.router, visits.router, customers.router, geofences.router):
        app.include_router(router)
    if settings.api.cors_origin_list():
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api.cors_origin_list(),
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["X-Next-Cursor", "Link", "Retry-After"],
        )
    for router in (osmand.router, batch.router):
        app.include_router(router)
    app.include_router(sync_routes.router)
    app.include_router(dead_letters.router)
    app.include_router(live.router)
    app.state.live_gateway = gateway
    app.include_router(map.router)
    # The built dashboard at / (SPA fallback); a catch-all mount, so it stays the last route.
    if (dashboard := map.dashboard_files()) is not None:
        app.mount("/", dashboard, name="dashboard")
    return app


def with_live_feed(app: FastAPI) -> socketio.ASGIApp:
    """Wrap an app from create_app so that it also serves socket.io (/socket.io, /tracking)."""
    gateway: LiveGateway = app.state.live_gateway
    return gateway.asgi(app)


def create_asgi(settings: Settings | None = None) -> socketio.ASGIApp:
    """The ASGI app to serve: FastAPI plus the socket.io live feed (uvicorn --factory)."""
    return with_live_feed(create_app(settings))
