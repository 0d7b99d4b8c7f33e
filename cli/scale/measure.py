#!/usr/bin/env python3
"""How many identities one host's monitor sustains: runs `callagent monitor` with N identities
at an interval for a while, and measures it as it runs.

Each identity's token comes from a command that prints a crafted token (the real SDK accepts it
locally; with no network it resolves each creation after ~14 s with an agent that never connects,
so the runs use `connect_timeout = "off"`: a created agent is a probe's success). While the monitor
runs, /proc is sampled every few seconds for the monitor process and every process under it
(Chromium): CPU time and PSS. At the end /status and /metrics give the probes made, their results,
and each probe's duration, against the interval.

Run it as root inside a network namespace with loopback alone, so Chromium reaches nothing:

    unshare -n sh -c 'ip link set lo up && exec python3 cli/scale/measure.py \\
        --identities 10 20 --interval 60s --duration 180'

With `--hosts K`, the browsers are K hosts instead of a local one: each a network namespace
joined to this one by a veth pair (10.77.I.1 here, 10.77.I.2 there), running a Chromium whose
DevTools listen on its end of the link; the monitor lists them as remote browsers. They are
removed at the end. Their CPU and PSS are the "Chromium" columns.

Prints a Markdown table (and --json writes the raw figures).
"""
import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TICK = os.sysconf("SC_CLK_TCK")


def b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def token(identity):
    claims = {"skypeid": identity[2:], "scp": 1792, "acsScope": "voip", "resourceId": "r",
              "exp": int(time.time()) + 6 * 3600}
    return f"{b64({'alg': 'RS256', 'typ': 'JWT'})}.{b64(claims)}.c2ln"


def tree(pid):
    """`pid` and every live process under it."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat.rsplit(") ", 1)[1].split()
        if rest[0] != "Z":
            parents.setdefault(int(rest[1]), []).append(int(entry))
    found, frontier = [pid], [pid]
    while frontier:
        for child in parents.get(frontier.pop(), []):
            found.append(child)
            frontier.append(child)
    return found


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(") ", 1)[1].split()
        # utime, stime, cutime, cstime: fields 14-17 of stat, 12-15 after the command name.
        return sum(int(x) for x in rest[11:15]) / TICK
    except (OSError, IndexError):
        return 0.0


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.read().decode()


def quantile(buckets, q):
    """From Prometheus histogram buckets [(le, cumulative count)], as histogram_quantile does."""
    total = buckets[-1][1]
    if total == 0:
        return None
    rank = q * total
    prev_le, prev_count = 0.0, 0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_count) / max(count - prev_count, 1)
        prev_le, prev_count = le, count
    return prev_le


CHROMIUM = "/usr/lib/chromium/chromium"
NO_EXTERNAL_HOSTS = "MAP * ~NOTFOUND , EXCLUDE localhost"


def sh(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_hosts(k, tmp):
    """K browser hosts in network namespaces of their own; their Chromium processes."""
    procs = []
    for i in range(1, k + 1):
        ns, here, there = f"cams{i}", f"camv{i}", f"camp{i}"
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", here, "type", "veth", "peer", "name", there)
        sh("ip", "link", "set", there, "netns", ns)
        sh("ip", "addr", "add", f"10.77.{i}.1/24", "dev", here)
        sh("ip", "link", "set", here, "up")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"10.77.{i}.2/24", "dev", there)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", there, "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        home = os.path.join(tmp, f"host{i}")
        os.mkdir(home)
        # Chromium's DevTools listen on loopback only (headless ignores --remote-debugging-address):
        # socat carries the link's end to them, as a browser host's relay does.
        args = ["ip", "netns", "exec", ns, CHROMIUM, "--headless=new", "--remote-debugging-port=9222",
                f"--user-data-dir={home}/profile",
                f"--host-resolver-rules={NO_EXTERNAL_HOSTS}", "--no-first-run",
                "--disable-background-networking"]
        if os.geteuid() == 0:
            args.append("--no-sandbox")
        procs.append(subprocess.Popen(args + ["about:blank"], env={"HOME": home, "TMPDIR": home,
                                      "PATH": "/usr/bin:/bin"}, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(["ip", "netns", "exec", ns, "socat",
                                       f"TCP-LISTEN:9222,bind=10.77.{i}.2,fork,reuseaddr",
                                       "TCP:127.0.0.1:9222"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
    for i in range(1, k + 1):
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://10.77.{i}.2:9222/json/version", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    stop_hosts(procs, k)
                    raise SystemExit(f"host {i}'s Chromium did not answer")
                time.sleep(0.3)
    return procs


def stop_hosts(procs, k):
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
    for i in range(1, k + 1):
        subprocess.run(["ip", "netns", "del", f"cams{i}"], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "link", "del", f"camv{i}"], stderr=subprocess.DEVNULL)


def run(binary, n, interval, duration, sample_every, hosts=0):
    port = 9500 + n
    with tempfile.TemporaryDirectory(prefix="cms") as tmp:
        host_procs = start_hosts(hosts, tmp) if hosts else []
        tokens = os.path.join(tmp, "tokens")
        os.mkdir(tokens)
        ids = [f"8:acs:r_scale{i:04d}" for i in range(n)]
        for identity in ids:
            with open(os.path.join(tokens, identity.replace(":", "_")), "w") as f:
                f.write(token(identity))
        script = os.path.join(tmp, "token.sh")
        with open(script, "w") as f:
            f.write(f"#!/bin/sh\nexec cat {tokens}/$(echo \"$1\" | tr : _)\n")
        os.chmod(script, 0o700)
        config = os.path.join(tmp, "monitor.toml")
        with open(config, "w") as f:
            f.write(f'listen = "127.0.0.1:{port}"\ninterval = "{interval}"\nconnect_timeout = "off"\n'
                    f'attempts = 1\n[identities]\nlist = {json.dumps(ids)}\n'
                    f'[token]\nsource = "command"\ncommand = ["{script}", "{{identity}}"]\n'
                    f'[browser]\nno_external_hosts = true\n')
            if hosts:
                remote = [f"http://10.77.{i}.2:9222" for i in range(1, hosts + 1)]
                f.write(f"remote = {json.dumps(remote)}\n")
        proc = subprocess.Popen([binary, "monitor", "--config", config], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            samples = []
            probes = {}
            failures = {}
            start = time.monotonic()
            while time.monotonic() - start < duration:
                time.sleep(sample_every)
                # Every probe's duration: each identity's last probe, collected as it changes
                # (probes of one identity are an interval apart, samples a few seconds).
                try:
                    for i in json.loads(get(port, "/status"))["identities"]:
                        if i["last"]:
                            probes[(i["identity"], i["last"]["started_at"])] = i["last"]["took_ms"]
                            if i["last"]["result"] != "success":
                                why = i["last"].get("message", "")
                                failures[why] = failures.get(why, 0) + 1
                except OSError:
                    pass
                pids = tree(proc.pid) + [p for h in host_procs for p in tree(h.pid)]
                own = cpu_seconds(proc.pid)
                browser = sum(cpu_seconds(p) for p in pids if p != proc.pid)
                samples.append({
                    "t": time.monotonic() - start,
                    "monitor_cpu_s": own,
                    "browser_cpu_s": browser,
                    "monitor_pss_kib": pss_kib(proc.pid),
                    "browser_pss_kib": sum(pss_kib(p) for p in pids if p != proc.pid),
                    "processes": len(pids),
                })
            status = json.loads(get(port, "/status"))
            metrics = get(port, "/metrics")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            stop_hosts(host_procs, hosts)
    buckets = []
    for line in metrics.splitlines():
        if line.startswith("callagent_monitor_time_to_agent_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    results = {}
    for line in metrics.splitlines():
        if line.startswith("callagent_monitor_probes_total{"):
            result = line.split('result="')[1].split('"')[0]
            results[result] = results.get(result, 0) + float(line.rsplit(" ", 1)[1])
    took = sorted(probes.values())
    pick = lambda q: took[min(len(took) - 1, int(q * len(took)))] / 1000 if took else None
    # CPU over the sampled window (from the first sample: the browser's start excluded).
    first, last = samples[0], samples[-1]
    window = last["t"] - first["t"] or 1
    return {
        "hosts": hosts or "local",
        "identities": n,
        "interval": interval,
        "duration_s": duration,
        "probes": results,
        "probed_identities": sum(1 for i in status["identities"] if i["probes"] > 0),
        "time_to_agent_p50_s": quantile(buckets, 0.5),
        "time_to_agent_p99_s": quantile(buckets, 0.99),
        "probe_p50_s": pick(0.5),
        "probe_p99_s": pick(0.99),
        "probe_max_s": took[-1] / 1000 if took else None,
        "probes_timed": len(took),
        "monitor_cpu_pct": 100 * (last["monitor_cpu_s"] - first["monitor_cpu_s"]) / window,
        "browser_cpu_pct": 100 * (last["browser_cpu_s"] - first["browser_cpu_s"]) / window,
        "monitor_pss_mib": max(s["monitor_pss_kib"] for s in samples) / 1024,
        "browser_pss_mib": max(s["browser_pss_kib"] for s in samples) / 1024,
        "processes_max": max(s["processes"] for s in samples),
        "failures": failures,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "callagent"))
    ap.add_argument("--identities", type=int, nargs="+", default=[10])
    ap.add_argument("--interval", default="60s")
    ap.add_argument("--duration", type=int, default=180, help="seconds per run")
    ap.add_argument("--sample-every", type=float, default=5.0)
    ap.add_argument("--hosts", type=int, default=0, help="browser hosts in network namespaces (0: a local browser)")
    ap.add_argument("--json", help="write the raw figures here")
    args = ap.parse_args()
    if not os.path.exists(args.binary):
        sys.exit(f"no {args.binary}: cargo build --release -p callagent-cli")
    rows = [run(args.binary, n, args.interval, args.duration, args.sample_every, args.hosts)
            for n in args.identities]
    print(f"| identities | probes (success / other) | probe time p50 / p99 / max (interval {args.interval}) | monitor CPU | Chromium CPU | monitor PSS | Chromium PSS |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ok = r["probes"].get("success", 0)
        other = sum(v for k, v in r["probes"].items() if k != "success")
        p50, p99, top = r["probe_p50_s"], r["probe_p99_s"], r["probe_max_s"]
        print(f"| {r['identities']} | {ok:.0f} / {other:.0f} | {p50:.1f} s / {p99:.1f} s / {top:.1f} s | "
              f"{r['monitor_cpu_pct']:.1f}% | {r['browser_cpu_pct']:.1f}% | "
              f"{r['monitor_pss_mib']:.0f} MiB | {r['browser_pss_mib']:.0f} MiB |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
