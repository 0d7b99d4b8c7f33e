#!/usr/bin/env bash
# Installs the pinned Web Calling SDK from the lock file and bundles the page into page/dist/.
# Needs Node.js and npm; never downloads a browser.
set -euo pipefail
cd "$(dirname "$0")"
command -v npm >/dev/null || { echo "websdk/page/build.sh needs Node.js and npm" >&2; exit 1; }
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
echo "built $(pwd)/dist (SDK $(node -p 'require("@azure/communication-calling/package.json").version'))"
