#!/usr/bin/env bash
# Installs every Debian package nbcanvas needs to build, test and run.
# Idempotent: packages already present are left alone.
set -euo pipefail

packages=(
    build-essential cmake pkg-config clang libclang-rt-14-dev clang-format
    libcurl4-openssl-dev libjansson-dev libzip-dev libmicrohttpd-dev
    uuid-dev libarchive-dev libssl-dev
    # the relay inside the notebook sandboxes speaks ZeroMQ to the kernel
    libzmq3-dev
    docker.io runsc mmdebstrap uidmap
    curl python3 ca-certificates faketime
    # packages at run time: pip resolves requirements on the host
    python3-pip
    # the cluster (scripts/cluster.sh): the shared cache and the front
    libhiredis-dev redis-server haproxy
    # plotly.js minified when the notebook image is built
    terser
    # test_mcp.py validates answers against /openapi.json
    python3-jsonschema
    # datasources for Text2SQL: the clients, and a PostgreSQL for the tests
    libpq-dev libsqlite3-dev postgresql
    # the kernel gateway: WebSocket frames; Jupyter's own servers and a
    # WebSocket client as its test clients
    libwslay-dev python3-jupyter-server jupyter-notebook python3-websocket
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
        missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
    # Debian starts the Redis and HAProxy it installs; the cluster runs its
    # own (scripts/cluster.sh), so these would only be open ports
    if [ -d /run/systemd/system ]; then
        for s in redis-server haproxy; do
            if [[ " ${missing[*]} " == *" $s "* ]]; then
                systemctl disable --now "$s" >/dev/null 2>&1 || true
            fi
        done
    fi
fi
