#!/usr/bin/env python3
"""Runs every command the README shows, so none can silently break.

Takes the commands from the fenced `sh` blocks of README.md, dashboards/README.md,
websdk/README.md, docs/*.md and websdk/docs/*.md (joining
`\\` continuations, dropping comments) and from inline code spans and comments that start with
`cargo run`, `cargo bench`, `cargo test`, `cargo deny`, `python3` or `tests/`. Each runs from the
repository root with a time bound and must exit 0. Commands that run for minutes by design get
their short-run flag here (RULES); servers must still be serving at their bound (SERVERS); a
command CI already runs in another step is listed in COVERED and not run twice.

    python3 .ci/readme_commands.py            # run them all
    python3 .ci/readme_commands.py --list     # only show what would run
"""
import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = ["README.md", "dashboards/README.md", "websdk/README.md"] + [
    os.path.join(d, f) for d in ("docs", os.path.join("websdk", "docs"))
    for f in sorted(os.listdir(os.path.join(ROOT, d))) if f.endswith(".md")]
STARTS = ("cargo run", "cargo bench", "cargo test", "cargo deny", "python3 ", "tests/")

# Short runs of long commands: (pattern, replacement) applied to the command text.
RULES = [
    (r"^(tests/fuzz/run\.sh) \d+", r"\1 5"),
    (r"(--real-time.*)$", r"\1 --stop-after 10s"),
    (r"(--example serve_metrics -- \S+)$", r"\1 --seconds 5"),
    (r"(--example soak)\s*$", r"\1 -- 20000"),
    (r"(--example soak -- )\d+", r"\g<1>20000"),
    (r"(--example storm)$", r"\1 -- --seeds 2"),
    (r"(--example storm -- .*)$", r"\1 --seeds 2"),
    # The browser's soak and density: conformance.sh runs the soak at 1,000 creations and density
    # short already; here they only prove the README's command lines work.
    (r"(--example soak -- --creations )\d+", r"\g<1>60"),
    (r"(--example density -- )", r"\1--agents 4 --per-page 32 --overhead-samples 2 --cpu-window 2s "),
    (r"^(cargo bench -p callagent-bench --bench overhead)$", r"\1 -- --warm-up-time 0.05 --measurement-time 0.1"),
    # The mutation run takes about 75 minutes: here it only lists the mutants it would test.
    (r"^(cargo mutants) (-f .*) -- --tests$", r"\1 --list \2"),
]
# Long-running by design: pass if still alive (and answering, when it serves HTTP) at the bound.
SERVERS = [r"^prometheus "]
# Run by another step of .ci/run.
COVERED = {
    "cargo test": "the tests step",
    "cargo test --no-default-features": "the retry-only step",
    "cargo deny check licenses bans sources": "the dependencies step",
    "cargo deny check": "the dependencies step (licences, bans, sources)",
    "python3 dashboards/check.py": "the dashboard step",
    "cargo bench -p callagent-bench --no-run": "the benches step",
    "cargo bench -p callagent-bench --bench instructions -- --save-summary=json": "the instruction-count step",
    "cargo bench -p callagent-bench --bench moved -- --save-summary=json": "the instruction-count step",
    "cargo bench -p callagent-bench --bench awaited -- --save-summary=json": "the instruction-count step",
    "python3 benches/check_bounds.py": "the instruction-count step",
    "python3 benches/check_bounds.py --markdown": "the instruction-count step",
    "python3 .ci/readme_commands.py": "this step",
    "websdk/conformance.sh": "the conformance step",
    "websdk/conformance.sh --no-table": "the conformance step",
    "unshare -n sh -c 'ip link set lo up && cargo test -p callagent-websdk --test remote -- --ignored "
    "--nocapture figures'": "the conformance step (tests/remote.rs)",
}
BOUND = 900      # seconds for an ordinary command (the first release build takes minutes)
SERVE_FOR = 8    # seconds a server must stay up


def commands():
    found = []
    for name in FILES:
        text = open(os.path.join(ROOT, name)).read()
        for block in re.findall(r"```sh\n(.*?)```", text, re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.strip()
                comment = line.split("#", 1)[1] if "#" in line else ""
                line = line.split("#", 1)[0].strip() if not line.startswith("#") else ""
                if line:
                    found.append(re.sub(r"\s+", " ", line))
                m = re.search(r"((?:cargo run|cargo bench)[^)]*)", comment)
                if m:
                    found.append(m.group(1).strip())
        for span in re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S)):
            span = re.sub(r"\s+", " ", span).strip()
            if span.startswith(STARTS) and not span.endswith((".rs", "/")):
                found.append(span)
    seen, out = set(), []
    for c in found:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


def shortened(cmd):
    """The first rule that matches shortens the command."""
    for pattern, repl in RULES:
        short = re.sub(pattern, repl, cmd)
        if short != cmd:
            return short
    return cmd


def url_of(cmd):
    m = re.search(r"(?:--metrics-addr|serve_metrics --|--web\.listen-address=)\s*(\S+:\d+)", cmd)
    if not m:
        return None
    path = "/-/ready" if "prometheus" in cmd.split()[0] else "/metrics"
    return f"http://{m.group(1)}{path}"


def run(cmd):
    server = any(re.search(p, cmd) for p in SERVERS)
    start = time.time()
    proc = subprocess.Popen(cmd, shell=True, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if not server:
        try:
            _, err = proc.communicate(timeout=BOUND)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return False, f"still running after {BOUND} s"
        return proc.returncode == 0, f"exit {proc.returncode} in {time.time() - start:.0f} s" + (
            f"\n{err[-2000:]}" if proc.returncode else "")
    # A server: it must answer at its address and still be up SERVE_FOR seconds later.
    url, answered, deadline = url_of(cmd), False, time.time() + 120
    while url and time.time() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            answered = True
            break
        except Exception:
            time.sleep(1)
    time.sleep(SERVE_FOR if answered else 0)
    alive = proc.poll() is None
    if alive:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode not in (0, None, -signal.SIGTERM) and not alive:
        return False, f"exited {proc.returncode}\n{err[-2000:]}"
    if url and not answered:
        return False, f"never answered at {url}\n{err[-2000:]}"
    return True, ("served at " + url if url else "ran") + f" for {SERVE_FOR} s"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="show the commands and how each is run")
    args = ap.parse_args()
    failed = 0
    for cmd in commands():
        if cmd in COVERED:
            print(f"skip  {cmd}  (covered by {COVERED[cmd]})")
            continue
        actual = shortened(cmd)
        shown = cmd if actual == cmd else f"{cmd}  ->  {actual}"
        if args.list:
            print(f"run   {shown}")
            continue
        print(f"run   {shown}", flush=True)
        ok, what = run(actual)
        print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)
        failed += not ok
    if failed:
        sys.exit(f"{failed} README command(s) failed")


if __name__ == "__main__":
    main()
