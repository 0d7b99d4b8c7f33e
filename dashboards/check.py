#!/usr/bin/env python3
"""Checks the dashboard against a real Prometheus.

Starts the `serve_metrics` example on loopback, lints its output with `promtool check metrics`,
starts Prometheus scraping it every second, then evaluates every PromQL expression of
`callagent-retry.json` through Prometheus's HTTP API. Fails if the lint fails, or if any expression
is invalid or returns no series within the time limit.

Then the range check: `simulate` runs `dashboards/outage-check.toml` in real time (an outage from
5 s to 15 s) while Prometheus scrapes it; every panel's value, sampled through the run, must lie
in its possible range (no negative rate, no share outside [0, 1], no amplification below 1 or
above max_attempts, no duration past the deadline), and at the end the amplification panel's
counters must give exactly the run's own figure. Everything it starts is stopped.

    python3 dashboards/check.py            # builds the example first
    python3 dashboards/check.py --timeout 90

The callagent-websdk panels are checked against the metrics the soak of the real browser
path recorded (`websdk/conformance.sh` writes `target/conformance/websdk-metrics.prom`; run it
first), served to Prometheus as a third scrape target.

The synthetic monitor's panels (those that read `callagent_monitor_*`) are checked the same way
against a real `/metrics` scrape of `callagent monitor`, which the monitor's end-to-end test writes
to `target/monitor-metrics.prom`, served as a fourth target. Without that file the check fails,
unless `--skip-monitor` leaves the monitor's panels out (and says how many).

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
import threading
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DASHBOARD = os.path.join(HERE, "callagent-retry.json")
SUBSTITUTIONS = {"$__rate_interval": "30s", "$layer": ".*"}
CHECK_SCENARIO = os.path.join(HERE, "outage-check.toml")
CHECK_LAYER = "outage-check"
# The possible range of each panel's values in the range check (`outage-check.toml`: at most 4
# attempts, a 5 s deadline, delays capped at 2 s, the budget below). NaN (no data in the window)
# is allowed.
RANGES = {
    "Call outcomes": (0, None),
    "Errors by subcode and category": (0, None),
    "Retries by subcode": (0, None),
    "Retry success ratio": (0, 1),
    "Calls finished within N attempts (share)": (0, 1),
    "Call duration (p50 / p99)": (0, 5.5),
    "Backend load amplification": (1, 4),
    "Budget exhaustion": (0, None),
    "Rejected per minute by subcode (ExpectedError)": (0, None),
    "Retry delay (p50 / p99)": (0, 2),
    # The reserve (1/s × 5 s) plus 10% of at most 80 calls/s over the window (ten 0.5 s slots and
    # the current one, 5.5 s): 5 + 44.
    "Retry budget available": (0, 49),
    # callagent-websdk's panels come from the soak's snapshot (below), which the range check
    # scrapes as it is: counts, a load time under launch_timeout, restarts.
    "websdk: pages and warm pages": (0, None),
    "websdk: agents alive and creations in flight": (0, None),
    "websdk: page load time (p50 / p99)": (0, 30),
    "websdk: browser restarts per hour": (0, None),
    "websdk: browsers lost": (0, 1),
    # The synthetic monitor's panels come from its scrape (below), served as it is. Its
    # histograms' top finite bucket is 60 s, the most histogram_quantile can answer.
    "monitor: probes by result": (0, None),
    "monitor: success share (15 min)": (0, 1),
    "monitor: time to agent (p50 / p99)": (0, 60),
    "monitor: time to Connected (p50 / p99)": (0, 60),
    "monitor: seconds since last success": (0, None),
    "monitor: tokens minted and refresh failures per hour": (0, None),
    "monitor: agents held and identities": (0, None),
}
# The web SDK service's metrics come from the real browser, which runs only in an isolated
# network namespace: `websdk/conformance.sh`'s soak writes what its Prometheus recorder saw to
# this file, which the check serves to Prometheus as a scrape target of its own.
WEBSDK_METRICS = os.path.join(ROOT, "target", "conformance", "websdk-metrics.prom")
# `callagent monitor`'s metrics come from a real monitor run (the real SDK in Chromium, isolated):
# its end-to-end test writes one scrape of its /metrics here.
MONITOR_METRICS = os.path.join(ROOT, "target", "monitor-metrics.prom")
MONITOR_SERIES = "callagent_monitor_"


def is_monitor(expr):
    """Whether a query reads the synthetic monitor's own series."""
    return MONITOR_SERIES in expr


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


def expressions(path, substitutions=None):
    substitutions = substitutions or SUBSTITUTIONS
    with open(path) as f:
        dash = json.load(f)
    names = [v["name"] for v in dash.get("templating", {}).get("list", [])]
    if "datasource" not in names:
        raise SystemExit("FAIL: the dashboard has no data source variable")
    out = []
    for panel in dash["panels"]:
        if panel.get("type") == "row":
            # A row only groups the panels after it; a collapsed one would hide them from this check.
            if panel.get("collapsed") or panel.get("panels"):
                raise SystemExit(f"FAIL: row {panel['title']!r} is collapsed: expand it so its panels are checked")
            continue
        targets = panel.get("targets") or []
        if not targets:
            raise SystemExit(f"FAIL: panel {panel['title']!r} has no query")
        for t in targets:
            expr = t["expr"]
            for k, v in substitutions.items():
                expr = expr.replace(k, v)
            if "$" in expr:
                raise SystemExit(f"FAIL: unsubstituted variable in {expr}")
            out.append((panel["title"], t.get("legendFormat", ""), expr))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timeout", type=float, default=180, help="seconds for the whole check")
    ap.add_argument("--no-build", action="store_true", help="use the already built example")
    ap.add_argument("--websdk-metrics", default=WEBSDK_METRICS,
                    help="the web SDK soak's metrics snapshot (written by websdk/conformance.sh)")
    ap.add_argument("--monitor-metrics", default=MONITOR_METRICS,
                    help="a scrape of callagent monitor's /metrics (written by the monitor's end-to-end test)")
    ap.add_argument("--skip-monitor", action="store_true",
                    help="leave the synthetic monitor's panels unchecked (when no monitor run wrote its metrics)")
    args = ap.parse_args()
    for tool in ("prometheus", "promtool"):
        if not shutil.which(tool):
            raise SystemExit(f"FAIL: {tool} not on PATH (apt-get install prometheus)")
    deadline = time.time() + args.timeout
    exprs = expressions(DASHBOARD)

    ranged = expressions(DASHBOARD, {"$__rate_interval": "5s", "$layer": CHECK_LAYER})
    missing = {title for title, _, _ in ranged} - set(RANGES)
    if missing:
        raise SystemExit(f"FAIL: no range known for panels {sorted(missing)}")

    # The monitor's panels, by the series they read: every query of a panel that reads one.
    monitor_panels = {title for title, _, expr in exprs if is_monitor(expr)}
    if not monitor_panels:
        raise SystemExit(f"FAIL: no panel reads {MONITOR_SERIES}* (the synthetic monitor's row is gone)")
    monitor_text = None
    if args.skip_monitor:
        exprs = [e for e in exprs if e[0] not in monitor_panels]
        ranged = [e for e in ranged if e[0] not in monitor_panels]
        print(f"SKIPPED {len(monitor_panels)} monitor panels (--skip-monitor): {', '.join(sorted(monitor_panels))}")
    else:
        if not os.path.isfile(args.monitor_metrics):
            raise SystemExit(f"FAIL: no monitor metrics at {args.monitor_metrics}: run the monitor's end-to-end test "
                             f"first (it writes a scrape of its /metrics there), or pass --skip-monitor to leave the "
                             f"{len(monitor_panels)} monitor panels unchecked")
        with open(args.monitor_metrics) as f:
            monitor_text = f.read()
        lint = subprocess.run(["promtool", "check", "metrics"], input=monitor_text, text=True, capture_output=True)
        print(f"promtool check metrics (monitor): exit {lint.returncode} {lint.stdout.strip()} {lint.stderr.strip()}".rstrip())
        if lint.returncode != 0:
            raise SystemExit("FAIL: promtool check metrics found problems in the monitor's metrics")

    if not args.no_build:
        subprocess.run(["cargo", "build", "--quiet", "--example", "serve_metrics"], cwd=ROOT, check=True)
        subprocess.run(["cargo", "build", "--quiet", "--release", "--example", "simulate"], cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    binary = os.path.join(target, "debug", "examples", "serve_metrics")
    simulate = os.path.join(target, "release", "examples", "simulate")

    if not os.path.isfile(args.websdk_metrics):
        raise SystemExit(f"FAIL: no web SDK metrics at {args.websdk_metrics}: run websdk/conformance.sh first "
                         "(its soak of the real browser path writes them)")
    with open(args.websdk_metrics) as f:
        websdk_text = f.read()
    lint = subprocess.run(["promtool", "check", "metrics"], input=websdk_text, text=True, capture_output=True)
    print(f"promtool check metrics (websdk): exit {lint.returncode} {lint.stdout.strip()} {lint.stderr.strip()}".rstrip())
    if lint.returncode != 0:
        raise SystemExit("FAIL: promtool check metrics found problems in the web SDK's metrics")

    procs = []
    tmp = tempfile.mkdtemp(prefix="callagent-dashboard-")
    websdk_server = monitor_server = None
    try:
        app_port, prom_port, sim_port = free_port(), free_port(), free_port()
        app, sim = f"127.0.0.1:{app_port}", f"127.0.0.1:{sim_port}"
        websdk_server = serve_text(websdk_text)
        websdk = f"127.0.0.1:{websdk_server.server_address[1]}"
        targets = [app, sim, websdk]
        if monitor_text is not None:
            monitor_server = serve_text(monitor_text)
            targets.append(f"127.0.0.1:{monitor_server.server_address[1]}")
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
                    "scrape_configs:\n  - job_name: callagent\n    static_configs:\n"
                    f"      - targets: [{', '.join(repr(t) for t in targets)}]\n")
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
        range_check(prom, simulate, sim, ranged, deadline, procs)
    finally:
        for server in (websdk_server, monitor_server):
            if server is not None:
                server.shutdown()
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def serve_text(text):
    """Serves `text` as /metrics on a free loopback port, in a thread; returns the server."""
    import http.server

    body = text.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def query(prom, expr):
    url = f"http://{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    body = json.loads(get(url))
    if body.get("status") != "success":
        raise SystemExit(f"FAIL: query failed: {body.get('error')}\n  {expr}")
    return [float(r["value"][1]) for r in body["data"]["result"]]


def range_check(prom, simulate, addr, ranged, deadline, procs):
    """Samples every panel through a real-time simulated outage; each value must be possible."""
    run = subprocess.Popen([simulate, CHECK_SCENARIO, "--real-time", "--json", "--metrics-addr", addr,
                            "--linger", "15s"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True)
    procs.append(run)
    samples, bad, seen = 0, [], {}
    output = []
    reader = threading.Thread(target=lambda: output.extend(run.stdout), daemon=True)
    reader.start()
    # The report is printed when the run ends; the process then lingers, still serving.
    while reader.is_alive() and not "".join(output).rstrip().endswith("}") and time.time() < deadline:
        for title, legend, expr in ranged:
            lo, hi = RANGES[title]
            for v in query(prom, expr):
                samples += 1
                if v != v:  # NaN: no data in the window
                    continue
                lo_seen, hi_seen = seen.get(title, (v, v))
                seen[title] = (min(lo_seen, v), max(hi_seen, v))
                if v < lo - 1e-9 or (hi is not None and v > hi + 1e-9):
                    bad.append(f"{title} [{legend}] = {v} outside [{lo}, {hi}]")
        time.sleep(1)
    text = "".join(output)
    if not text.rstrip().endswith("}"):
        raise SystemExit("FAIL: the outage-check run did not finish in time")
    report = json.loads(text)
    time.sleep(3)  # one more scrape of the final counters
    sel = f'{{layer="{CHECK_LAYER}"}}'
    # As the panel computes it: finished calls' attempts (the histogram leaves out first-attempt
    # successes, which are one attempt each), both counted when a call ends.
    success_sel = f'{{layer="{CHECK_LAYER}",outcome="success"}}'
    (successes,) = query(prom, f"sum(callagent_create_calls_total{success_sel})") or [0.0]
    (attempts,) = query(prom, f"sum(callagent_create_attempts_sum{sel})") or [float("nan")]
    (calls,) = query(prom, f"sum(callagent_create_attempts_count{sel})") or [float("nan")]
    attempts, calls = attempts + successes, calls + successes
    amplification = attempts / calls if calls else float("nan")
    print(f"range check: {samples} samples of {len(ranged)} queries through the outage; "
          f"amplification from the panel's counters {amplification:.4f}, the run's own {report['amplification']:.4f}")
    for title, (lo_seen, hi_seen) in seen.items():
        lo, hi = RANGES[title]
        print(f"seen {lo_seen:9.3f} to {hi_seen:9.3f}  (possible {lo} to {'∞' if hi is None else hi})  {title}")
    for b in bad[:20]:
        print(f"FAIL {b}")
    if bad:
        raise SystemExit(f"FAIL: {len(bad)} panel values outside their possible range")
    if samples == 0:
        raise SystemExit("FAIL: the range check sampled nothing")
    if not abs(amplification - report["amplification"]) < 1e-6:
        raise SystemExit("FAIL: the amplification panel's counters disagree with the run")
    print("range check: every value possible, amplification exact")


if __name__ == "__main__":
    main()
