#!/usr/bin/env bash
# What the browser test needs: Debian's Chromium, Node.js and npm, and
# playwright-core (from the npm registry, into tests/browser/node_modules;
# it never downloads a browser of its own).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" fonts-dejavu-core
fi
cd "$top/tests/browser"
if [ ! -d node_modules/playwright-core ]; then
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --silent
fi
