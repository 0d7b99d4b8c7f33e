#!/usr/bin/env bash
# Runs the conformance suite against the real Web Calling SDK, with no way for a request to leave
# the machine:
#   1. installs what is missing: Debian's chromium (never a downloaded browser build), and the
#      pinned SDKs from their lock files (npm ci): npm's `latest` (page/package-lock.json) and the
#      last release of the previous major (page/sdk-1.46.1/package-lock.json); bundles a page for
#      each (esbuild);
#   2. builds the tests while the network is still there (crates come from crates.io);
#   3. runs them inside a new network namespace whose only interface is loopback (unshare -n, as
#      root), with Chromium's --host-resolver-rules mapping every name but localhost to nothing;
#      each test also refuses to run if it sees any interface but lo.
# Against each SDK version: the hand-picked cases (tests/conformance.rs) and the generated token
# grid (tests/grid.rs: a seeded sample of GRID_SAMPLE cases, 300 by default; the whole grid with
# --full). Against `latest` also the security tests (tests/security.rs: Chromium's command line,
# DevTools private, certificates verified, no token in the driver's trace, private files, the
# sandbox as an unprivileged user), the lifecycle tests (tests/lifecycle.rs: dropped creations, the
# retry layer cancelling attempts, undisposed agents, a killed browser, max_agents), a browser on
# another host (tests/remote.rs: Chromium in a network namespace of its own joined by a veth
# pair; killed, and its link taken down, mid-creation) and a soak of the real path
# (examples/soak.rs; SOAK_CREATIONS creations, 1000 by default).
# Then renders the results into docs/real-sdk.md (the tables between the conformance markers).
#   websdk/conformance.sh              # everything
#   websdk/conformance.sh --full       # the whole grid (~1,560 cases, ~6 min per SDK version)
#   websdk/conformance.sh --no-table   # leave docs/real-sdk.md alone
set -euo pipefail
cd "$(dirname "$0")/.."
table=1
grid=sample
for arg in "$@"; do
  case "$arg" in
    --no-table) table=0 ;;
    --full) grid=full ;;
    *) echo "usage: websdk/conformance.sh [--full] [--no-table]" >&2; exit 2 ;;
  esac
done
if ! command -v chromium >/dev/null || ! command -v ip >/dev/null || ! command -v setpriv >/dev/null \
  || ! command -v socat >/dev/null || ! command -v pkill >/dev/null || [ ! -d /etc/ssl/certs ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # util-linux: setpriv (Chromium's parent-death signal; the sandbox test's unprivileged user);
  # socat: DevTools of the remote-browser tests' hosts onto their veth links (and TLS before one);
  # procps: pkill; ca-certificates: the system's roots, which the TLS test shows do not know its CA.
  apt-get install -y -qq --no-install-recommends chromium iproute2 util-linux socat procps ca-certificates >/dev/null
fi
command -v python3 >/dev/null || { echo "conformance.sh needs python3 (the security tests' https stand-in)" >&2; exit 1; }
PREVIOUS_MAJOR=1.46.1
websdk/page/build.sh
websdk/page/build.sh --sdk "$PREVIOUS_MAJOR"
cargo test -p callagent-websdk --no-run --quiet
cargo build -p callagent-websdk --release --example soak --example density --quiet
[ "$(id -u)" = 0 ] || { echo "conformance.sh needs root for unshare -n (a network namespace with loopback alone)" >&2; exit 1; }
isolated() { unshare -n sh -c 'ip link set lo up && exec "$@"' isolated "$@"; }
rm -rf target/conformance
export GRID="$grid"
echo "== SDK latest (websdk/page/dist)"
isolated cargo test --offline --no-fail-fast -p callagent-websdk --test conformance --test grid --test lifecycle --test security \
  --test remote -- --ignored --test-threads 2
echo "== SDK $PREVIOUS_MAJOR (websdk/page/sdk-$PREVIOUS_MAJOR/dist)"
CALLAGENT_WEBSDK_PAGE="$PWD/websdk/page/sdk-$PREVIOUS_MAJOR/dist" \
  isolated cargo test --offline --no-fail-fast -p callagent-websdk --test conformance --test grid -- --ignored --test-threads 2
echo "== soak"
# Its metrics are what dashboards/check.py checks the callagent-websdk panels against.
isolated target/release/examples/soak --creations "${SOAK_CREATIONS:-1000}" \
  --metrics-out target/conformance/websdk-metrics.prom
echo "== density (a short run: 8 agents, 32 per page; websdk/docs/capacity.md's table is the full run)"
isolated target/release/examples/density --agents 8 --per-page 32 --overhead-samples 3 --cpu-window 5s \
  --json target/conformance/density.json
if [ "$table" = 1 ]; then
  cargo run --quiet -p callagent-websdk --example conformance_table
fi
