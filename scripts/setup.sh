#!/usr/bin/env bash
# Everything nbcanvas needs on a fresh Debian machine, as root:
# packages, a Docker engine that answers, the sandbox images, and a build.
#   scripts/setup.sh [BUILD_DIR]      (default: build)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}

bash "$top/scripts/install-deps.sh"
bash "$top/scripts/start-docker.sh"
# the build first: the notebook image takes its relay from it
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)"
NBCANVAS_RELAY="$build/nbcanvas-relay" NBCANVAS_BINARY="$build/nbcanvas" \
    bash "$top/scripts/build-images.sh"
bash "$top/scripts/install-browser.sh"
bash "$top/scripts/install-clients.sh"
