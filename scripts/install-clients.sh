#!/usr/bin/env bash
# The clients written elsewhere that the tests drive nbcanvas with, from the
# npm registry at the versions the package-lock.json files pin: the
# official MCP SDK, the MCP Inspector and Redocly's OpenAPI linter
# (tests/mcp); JupyterLab's client library (tests/jupyter). Node.js and npm
# come from Debian (install-browser.sh installs them).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v npm >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nodejs npm
fi
cd "$top/tests/mcp"
if [ ! -d node_modules/@modelcontextprotocol/sdk ] ||
    [ ! -x node_modules/.bin/mcp-inspector ] || [ ! -x node_modules/.bin/redocly ]; then
    npm ci --no-audit --no-fund --silent
fi
cd "$top/tests/jupyter"
if [ ! -d node_modules/@jupyterlab/services ] || [ ! -d node_modules/ws ]; then
    npm ci --no-audit --no-fund --silent
fi
