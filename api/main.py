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
from api.http_metrics import HttpMetrics
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
    exports,
    geofences,
    health,
    live,
    map,
    osmand,
    playback,
    routes,
    tiles,
    traccar,
    visits,
)
from api.routers import sync as sync_routes
from api.security_headers import SecurityHeaders
from api.state import AppState
from infrastructure.postgres import create_pool
from infrastructure.redis import RedisKeys, create_redis
from infrastructure.secrets import MIN_SECRET_CHARS, is_public, public_passwords
from infrastructure.settings import LOCAL_SECRETS_FILE, Settings
from ingest.devices import DeviceRegistry
from ingest.producer import Publisher
from ingest.receive import Receiver

log = logging.getLogger(__name__)


class InsecureConfiguration(RuntimeError):
    pass


def check_secrets(settings: Settings) -> None:
    """Refuse to run, outside the test suite, with a secret anyone can read in the repository.

    Anyone could mint admin tokens with the example JWT secret, post positions for every
    tenant with the example Traccar key, or log in to PostgreSQL, MariaDB or Redis with the
    default password. ``fleetpulse stack up`` writes random ones.
    """
    if settings.environment == "test":
        return
    hint = f"run `fleetpulse stack up` (writes {LOCAL_SECRETS_FILE.name}) or set"
    secret = settings.auth.jwt_secret.get_secret_value()
    if is_public(secret) or len(secret) < MIN_SECRET_CHARS:
        raise InsecureConfiguration(
            f"the JWT secret is public or short: {hint} FLEETPULSE_AUTH__JWT_SECRET to a random"
            f" value of {MIN_SECRET_CHARS}+ characters"
        )
    key = settings.auth.traccar_api_key
    if key is not None and (is_public(key.get_secret_value()) or not key.get_secret_value()):
        raise InsecureConfiguration(
            f"the shared Traccar key is public: {hint} FLEETPULSE_AUTH__TRACCAR_API_KEY to a"
            " random value (or to nothing, to accept per-tenant keys only)"
        )
    if names := public_passwords(settings):
        raise InsecureConfiguration(
            f"{', '.join(names)}: the repository's default password (or, for Redis, none):"
            f" anyone who reads the repository could log in. {hint} them to the servers' own"
            " passwords (`stack up` applies its random ones to the local services)"
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    check_secrets(settings)
    gateway = LiveGateway(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings.pg)
        redis = create_redis(settings.redis)
        publisher = Publisher(settings.kafka)
        await publisher.start()
        keys = RedisKeys(settings.redis.key_prefix)
        devices = DeviceRegistry(pool, max_entries=settings.ingest.device_cache_max)
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
    for router in (playback.router, analytics.router, exports.router):
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
    # outermost: counts every answer, the other middlewares' refusals (413) included
    app.add_middleware(HttpMetrics)
    for router in (osmand.router, batch.router):
        app.include_router(router)
    app.include_router(sync_routes.router)
    app.include_router(dead_letters.router)
    app.include_router(live.router)
    app.state.live_gateway = gateway
    # links the api hands out are built under this, never from the Host header
    app.state.public_base_url = settings.api.public_base_url
    app.include_router(map.router)
    app.include_router(tiles.router)
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
