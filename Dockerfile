# syntax=docker/dockerfile:1
# FleetPulse service image: one image for every process (api, worker, cdc, migrate, simulate).
#   docker build -t fleetpulse .
#   docker run --rm fleetpulse fleetpulse --help
# Everything FleetPulse imports has binary wheels for CPython 3.11 on linux (asyncpg, h3,
# shapely, pyproj, numpy, argon2-cffi, orjson, uvloop), so no compiler is needed; the build
# stage only keeps pip's caches and the source tree out of the runtime image.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/fleetpulse
ENV PATH=/opt/fleetpulse/bin:$PATH
WORKDIR /src
# Dependencies first, from pyproject alone, so a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c 'import tomllib; deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]; open("/tmp/requirements.txt", "w").write("\n".join(deps))' \
    && pip install -r /tmp/requirements.txt
# Then the project itself (.dockerignore keeps tests, caches, .git and .stack out).
COPY . .
RUN pip install --no-deps . \
    && cd / && python -c "import api.cli"

FROM python:3.11-slim AS runtime
LABEL org.opencontainers.image.title="fleetpulse" \
      org.opencontainers.image.description="Live tracking and movement analytics for delivery fleets" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/fleetpulse/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 fleetpulse \
    && useradd --system --uid 10001 --gid fleetpulse --home-dir /app --create-home \
       --shell /usr/sbin/nologin fleetpulse
COPY --from=build /opt/fleetpulse /opt/fleetpulse
WORKDIR /app
USER fleetpulse:fleetpulse
# 8000: HTTP API, socket.io, Traccar webhook; 5055: OsmAnd protocol (Traccar Client phones).
EXPOSE 8000 5055
CMD ["fleetpulse", "api"]
