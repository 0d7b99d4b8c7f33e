#!/usr/bin/env python3
"""Reads the instruction counts of the last `cargo bench -p callagent-bench --bench instructions`
`--bench moved` and `--bench awaited` runs (gungraun's summary.json files), prints instructions
per call and the ratios against the baselines measured in the same run, and exits 1 if a ratio passes its bound in bounds.toml.

    cargo bench -p callagent-bench --bench instructions -- --save-summary=json
    cargo bench -p callagent-bench --bench moved -- --save-summary=json
    cargo bench -p callagent-bench --bench awaited -- --save-summary=json
    python3 benches/check_bounds.py [--markdown]
"""
import json
import pathlib
import sys
import tomllib

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE.parent / "target" / "gungraun" / "callagent-bench"


def per_call(bench: str, calls: int) -> float:
    # `binary:group/name`; the binary is `instructions` unless named.
    binary, _, bench = bench.rpartition(":")
    group, name = bench.split("/")
    path = RESULTS / (binary or "instructions") / group / f"{name}.call" / "summary.json"
    if not path.exists():
        sys.exit(f"no result for {bench} at {path}: run the {binary or 'instructions'} bench with --save-summary=json first")
    summary = json.loads(path.read_text())
    ir = summary["profiles"][0]["data"]["parts"][0]["metrics"]["Ir"]["values"]["new"]
    return ir / calls


def main() -> int:
    bounds = tomllib.loads((HERE / "bounds.toml").read_text())
    calls = bounds["calls"]
    markdown = "--markdown" in sys.argv
    names = sorted(
        {b for c in bounds["check"] for b in (c["bench"], c["baseline"], *c.get("minus", []))}
        | set(bounds.get("show", []))
    )
    counts = {b: per_call(b, calls) for b in names}
    if markdown:
        print("| bench | instructions per call |\n|---|---:|")
    for b in names:
        print(f"| `{b}` | {counts[b]:.0f} |" if markdown else f"{b:<50} {counts[b]:>8.0f} instructions/call")
    print()
    failed = 0
    if markdown:
        print("| check | measured | bound |\n|---|---:|---:|")
    for c in bounds["check"]:
        bench, base = counts[c["bench"]], counts[c["baseline"]]
        if "max_ratio" in c:
            value, bound, unit = bench / base, c["max_ratio"], "×"
        else:
            # `minus`: benches measuring a share that is not the layer's (the exporter's own).
            value = bench - base - sum(counts[m] for m in c.get("minus", []))
            bound, unit = c["max_extra"], " instructions"
        ok = value <= bound
        failed += not ok
        if markdown:
            print(f"| {c['name']} | {value:.2f}{unit} | ≤ {bound}{unit} |")
        else:
            print(f"{'ok  ' if ok else 'FAIL'} {c['name']}: {value:.2f}{unit} (bound {bound}{unit})")
    if failed:
        print(f"\n{failed} bound(s) passed: a change made the layer costlier; see docs/performance.md",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
