#!/usr/bin/env bash
# Runs the conformance suite against the real Web Calling SDK, with no way for a request to leave
# the machine:
#   1. installs what is missing: Debian's chromium (never a downloaded browser build), the pinned
#      SDK from page/package-lock.json (npm ci), and bundles the page (esbuild);
#   2. builds the tests while the network is still there (crates come from crates.io);
#   3. runs them inside a new network namespace whose only interface is loopback (unshare -n, as
#      root), with Chromium's --host-resolver-rules mapping every name but localhost to nothing;
#      each test also refuses to run if it sees any interface but lo.
# Then renders the results into README.md (the table between the conformance markers).
# The lifecycle tests (tests/lifecycle.rs: dropped creations, the retry layer cancelling
# attempts, undisposed agents, a killed browser, max_agents) and a soak of the real path
# (examples/soak.rs; SOAK_CREATIONS creations, 1000 by default) run the same way.
#   websdk/conformance.sh              # everything
#   websdk/conformance.sh --no-table   # leave README.md alone
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null || ! command -v ip >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium iproute2 >/dev/null
fi
websdk/page/build.sh
cargo test -p callagent-websdk --no-run --quiet
cargo build -p callagent-websdk --release --example soak --quiet
[ "$(id -u)" = 0 ] || { echo "conformance.sh needs root for unshare -n (a network namespace with loopback alone)" >&2; exit 1; }
unshare -n sh -c 'ip link set lo up && exec cargo test --offline -p callagent-websdk --test conformance --test lifecycle -- --ignored --test-threads 2'
unshare -n sh -c "ip link set lo up && exec target/release/examples/soak --creations ${SOAK_CREATIONS:-1000}"
if [ "${1:-}" != "--no-table" ]; then
  cargo run --quiet -p callagent-websdk --example conformance_table
fi
