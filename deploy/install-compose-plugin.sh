#!/usr/bin/env bash
# Make `docker compose` (the v2 CLI plugin) available, for tests/integration/test_compose.py.
#
# Machines here have the docker client but no compose plugin and no Docker engine; the test
# only needs `docker compose config`, which works without an engine. Docker's own package
# repository is out of reach, so the plugin is built from its Go module (docker/compose v2,
# via the Go module proxy) with the machine's Go toolchain. Idempotent: does nothing when
# `docker compose version` already works. Takes a few minutes the first time (2 cores).
#
#   bash deploy/install-compose-plugin.sh            # -> ~/.docker/cli-plugins/docker-compose
set -euo pipefail

version="${COMPOSE_VERSION:-v2.40.3}"
plugin_dir="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"

if docker compose version > /dev/null 2>&1; then
    docker compose version
    exit 0
fi
command -v docker > /dev/null || { echo "install-compose-plugin: no docker CLI" >&2; exit 1; }
command -v go > /dev/null || { echo "install-compose-plugin: no Go toolchain" >&2; exit 1; }

# `go install module@version` refuses modules whose go.mod has exclude directives (compose's
# has), so download the module and build it as the main module instead.
src_dir="$(go mod download -json "github.com/docker/compose/v2@${version}" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -n "$src_dir" ] || { echo "install-compose-plugin: download failed" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r "$src_dir/." "$work"
chmod -R u+w "$work"
mkdir -p "$plugin_dir"
(cd "$work" && go build -trimpath \
    -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=${version}" \
    -o "$plugin_dir/docker-compose" ./cmd)
docker compose version
