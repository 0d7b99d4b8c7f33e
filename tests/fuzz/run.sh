#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 30) from its seed corpus, on a stable toolchain.
#   tests/fuzz/run.sh          # 30 s a target
#   tests/fuzz/run.sh 600      # the long run
# Fails on any crash, panic, leak or allocation over the limits. The grown corpus is thrown away;
# seeds live in tests/fuzz/seeds/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-30}
export RUSTC_BOOTSTRAP=1 # cargo fuzz passes -Z flags (sanitizers); stable rustc accepts them this way
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo fuzz build --fuzz-dir tests/fuzz -O
for target in sdk_error_json config_toml token_payload; do
  corpus=$(mktemp -d)
  log=$(mktemp)
  if ! cargo fuzz run --fuzz-dir tests/fuzz -O "$target" "$corpus" "tests/fuzz/seeds/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=1024 -malloc_limit_mb=256 -max_len=65536 \
      -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz $target: FAILED" >&2
    exit 1
  fi
  execs=$(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*' || echo "?")
  echo "fuzz $target: ${seconds}s, ${execs} runs, coverage ${cov} edges, 0 crashes"
  rm -rf "$corpus" "$log"
done
