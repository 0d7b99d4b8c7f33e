#!/usr/bin/env python3
"""Checks the dashboard against a real Prometheus.

Starts the `serve_metrics` example on loopback, lints its output with `promtool check metrics`,
starts Prometheus scraping it every second, then evaluates every PromQL expression of
`callagent-retry.json` through Prometheus's HTTP API. Fails if the lint fails, or if any expression
is invalid or returns no series within the time limit. Everything it starts is stopped.

    python3 dashboards/check.py            # builds the example first
    python3 dashboards/check.py --timeout 90

Needs `prometheus` and `promtool` on PATH (Debian: `apt-get install prometheus`).
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DASHBOARD = os.path.join(HERE, "callagent-retry.json")
SUBSTITUTIONS = {"$__rate_interval": "30s", "$layer": ".*"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def wait_for(url, deadline, what):
    while time.time() < deadline:
        try:
            return get(url)
        except Exception:
            time.sleep(0.5)
    raise SystemExit(f"FAIL: {what} did not answer at {url}")


def expressions(path):
    with open(path) as f:
        dash = json.load(f)
    names = [v["name"] for v in dash.get("templating", {}).get("list", [])]
    if "datasource" not in names:
        raise SystemExit("FAIL: the dashboard has no data source variable")
    out = []
    for panel in dash["panels"]:
        targets = panel.get("targets") or []
        if not targets:
            raise SystemExit(f"FAIL: panel {panel['title']!r} has no query")
        for t in targets:
            expr = t["expr"]
            for k, v in SUBSTITUTIONS.items():
                expr = expr.replace(k, v)
            if "$" in expr:
                raise SystemExit(f"FAIL: unsubstituted variable in {expr}")
            out.append((panel["title"], t.get("legendFormat", ""), expr))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timeout", type=float, default=120, help="seconds for the whole check")
    ap.add_argument("--no-build", action="store_true", help="use the already built example")
    args = ap.parse_args()
    for tool in ("prometheus", "promtool"):
        if not shutil.which(tool):
            raise SystemExit(f"FAIL: {tool} not on PATH (apt-get install prometheus)")
    deadline = time.time() + args.timeout
    exprs = expressions(DASHBOARD)

    if not args.no_build:
        subprocess.run(["cargo", "build", "--quiet", "--example", "serve_metrics"], cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    binary = os.path.join(target, "debug", "examples", "serve_metrics")

    procs = []
    tmp = tempfile.mkdtemp(prefix="callagent-dashboard-")
    try:
        app_port, prom_port = free_port(), free_port()
        app = f"127.0.0.1:{app_port}"
        procs.append(subprocess.Popen([binary, app, "--seconds", str(int(args.timeout) + 30)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for(f"http://{app}/metrics", deadline, "the example")
        time.sleep(2)  # let every kind of series appear
        scraped = get(f"http://{app}/metrics")
        lint = subprocess.run(["promtool", "check", "metrics"], input=scraped, text=True, capture_output=True)
        print(f"promtool check metrics: exit {lint.returncode} {lint.stdout.strip()} {lint.stderr.strip()}".rstrip())
        if lint.returncode != 0:
            raise SystemExit("FAIL: promtool check metrics found problems")

        config = os.path.join(tmp, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    f"scrape_configs:\n  - job_name: callagent\n    static_configs:\n      - targets: ['{app}']\n")
        prom = f"127.0.0.1:{prom_port}"
        procs.append(subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={os.path.join(tmp, 'data')}",
             f"--web.listen-address={prom}"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "prometheus.log"), "w")))
        wait_for(f"http://{prom}/-/ready", deadline, "Prometheus")

        pending = list(exprs)
        results = {}
        while pending and time.time() < deadline:
            still = []
            for title, legend, expr in pending:
                url = f"http://{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
                try:
                    body = json.loads(get(url))
                except urllib.error.HTTPError as e:
                    body = json.loads(e.read().decode())
                if body.get("status") != "success":
                    raise SystemExit(f"FAIL: invalid PromQL in {title!r}: {body.get('error')}\n  {expr}")
                series = body["data"]["result"]
                if series:
                    results[(title, legend)] = len(series)
                else:
                    still.append((title, legend, expr))
            pending = still
            if pending:
                time.sleep(2)
        for (title, legend), n in results.items():
            print(f"ok   {n:3} series  {title} [{legend}]")
        for title, legend, expr in pending:
            print(f"FAIL   no series  {title} [{legend}]\n  {expr}")
        if pending:
            raise SystemExit(f"FAIL: {len(pending)} of {len(exprs)} dashboard queries returned no series")
        print(f"dashboard check: {len(exprs)} passed, 0 failed")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
