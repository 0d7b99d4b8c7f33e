#!/usr/bin/env bash
# Installs a pinned Web Calling SDK from its lock file and bundles the page with it.
#   websdk/page/build.sh                # npm's `latest` (package.json here) into page/dist/
#   websdk/page/build.sh --sdk 1.46.1   # the version pinned in page/sdk-1.46.1/ into page/sdk-1.46.1/dist/
# The page reports the SDK version it was built with (`window.callagent.sdkVersion`).
# Needs Node.js and npm; never downloads a browser.
set -euo pipefail
cd "$(dirname "$0")"
command -v npm >/dev/null || { echo "websdk/page/build.sh needs Node.js and npm" >&2; exit 1; }
dir=.
if [ "${1:-}" = "--sdk" ]; then
  [ -n "${2:-}" ] || { echo "usage: websdk/page/build.sh [--sdk VERSION]" >&2; exit 2; }
  dir="sdk-$2"
  [ -f "$dir/package-lock.json" ] || {
    echo "no lock file for SDK $2: pinned versions are $(ls -d sdk-* 2>/dev/null | sed 's/^sdk-//' | tr '\n' ' ')" >&2
    exit 1
  }
  cp entry.js reach.js "$dir/"
fi
cd "$dir"
# No install scripts: of the whole tree only esbuild has one (a postinstall that swaps its JS
# launcher for the native binary, a speed-up); the launcher finds the binary in the optional
# platform package (@esbuild/linux-x64) itself. The bundle is byte-identical either way.
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
version=$(node -p 'require("@azure/communication-calling/package.json").version')
npx --no-install esbuild entry.js --bundle --format=iife --target=chrome120 --log-level=warning \
  "--define:SDK_VERSION=\"$version\"" --outfile=dist/bundle.js
echo "built $(pwd)/dist (SDK $version)"
