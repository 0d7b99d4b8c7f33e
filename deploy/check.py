#!/usr/bin/env python3
"""Checks the monitor's container recipe and Kubernetes manifests against the binary's config.

What can be checked without a container daemon or a cluster:

* deploy/Containerfile: the final stage is Debian slim of the builders' release, installs
  `chromium` and `ca-certificates`, runs as a numeric non-root USER, copies the binary and the
  page from the stages that build them, and its ENTRYPOINT runs `callagent monitor --config PATH`.
* deploy/kubernetes/*.yaml (every document of every file): each object is a kind this checker
  knows, and workloads' selectors match their pods' labels. For each Deployment that runs the
  monitor (the container that mounts the ENTRYPOINT's config), the monitor.toml its ConfigMap
  holds is extracted and matched to the manifest: probes (/healthz, /readyz) and the Service's
  port and scrape annotations against `listen`; terminationGracePeriodSeconds against
  `shutdown_timeout`; the Secret's mount, key and mode against `token.connection_string_file`;
  `browser.page_dir` against the image's copy of the page; the security context (non-root, the
  image's uid, no privilege escalation, a read-only root with a writable /tmp, a seccomp profile
  Chromium's sandbox can start under); resources sized for Chromium; and, with
  `browser.remote`, every endpoint against the StatefulSet, headless Service and NetworkPolicy
  it names. Every container of every workload must run as non-root.
* The binary itself: each extracted monitor.toml must pass `callagent monitor --config FILE
  --check` (exit 0), and a copy with one bad field must fail it (exit 2, naming the field), so
  a binary that checked nothing would not pass.

    python3 deploy/check.py                          # target/debug/callagent
    python3 deploy/check.py target/release/callagent

Exits 0 when everything holds, 1 naming each failure. Needs PyYAML (`pip install pyyaml`) and
Python 3.11+ (tomllib).
"""
import argparse
import base64
import binascii
import glob
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile

try:
    import tomllib
except ImportError:  # Python < 3.11
    sys.exit("deploy/check.py needs Python 3.11 or later (tomllib)")
try:
    import yaml
except ImportError:
    sys.exit("deploy/check.py needs PyYAML: pip install pyyaml")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTAINERFILE = os.path.join("deploy", "Containerfile")
MANIFESTS = os.path.join("deploy", "kubernetes")

# The config's defaults (cli/src/monitor/config.rs).
DEFAULT_LISTEN = "127.0.0.1:9464"
DEFAULT_SHUTDOWN_TIMEOUT = "30s"
# Kubernetes' default grace period.
DEFAULT_GRACE = 30
# After `shutdown_timeout` has bounded the probes in flight, the monitor still closes its
# browsers and deletes the identities it created (HTTP calls to the identity API): the grace
# period must leave room for that beyond the timeout.
SHUTDOWN_MARGIN = 10
DEBIAN_CHROMIUM = "/usr/lib/chromium/chromium"
# Where the monitor and Chromium write (callagent-websdk's temp_dir: std::env::temp_dir()).
TMP = "/tmp"

KNOWN_KINDS = {
    ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Service"), ("v1", "Namespace"),
    ("v1", "ServiceAccount"), ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"),
    ("networking.k8s.io/v1", "NetworkPolicy"), ("policy/v1", "PodDisruptionBudget"),
}


class Report:
    def __init__(self):
        self.checks = 0
        self.failures = []

    def ok(self, what):
        self.checks += 1
        print(f"ok    {what}")

    def fail(self, what, why):
        self.checks += 1
        self.failures.append(f"{what}: {why}")
        print(f"FAIL  {what}: {why}")

    def expect(self, condition, what, why):
        if condition:
            self.ok(what)
        else:
            self.fail(what, why)
        return condition


# --- small parsers ------------------------------------------------------------------------------

_UNITS = {
    "ns": 1e-9, "nsec": 1e-9, "us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800, "weeks": 604800,
}


def duration_s(text):
    """A humantime duration ("30s", "1m 30s", "500ms") in seconds."""
    parts = re.findall(r"\s*(\d+)\s*([a-zA-Z]+)", text)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != re.sub(r"\s+", "", text):
        raise ValueError(f"not a duration: {text!r}")
    total = 0.0
    for number, unit in parts:
        if unit not in _UNITS:
            raise ValueError(f"unknown unit {unit!r} in {text!r}")
        total += int(number) * _UNITS[unit]
    return total


def quantity(text, cpu=False):
    """A Kubernetes quantity: CPUs in cores, memory in bytes."""
    text = str(text)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([a-zA-Z]*)", text)
    if not m:
        raise ValueError(f"not a quantity: {text!r}")
    number, suffix = float(m.group(1)), m.group(2)
    if cpu:
        return number / 1000 if suffix == "m" else number
    scale = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    if suffix not in scale:
        raise ValueError(f"unknown suffix {suffix!r} in {text!r}")
    return number * scale[suffix]


def host_port(listen):
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:]+):(\d+)", listen)
    if not m:
        raise ValueError(f"not HOST:PORT: {listen!r}")
    return (m.group(1), int(m.group(2))) if m.group(1) else (m.group(3), int(m.group(4)))


# --- the Containerfile ---------------------------------------------------------------------------

def parse_containerfile(path):
    """Its stages: [{"from": image, "name": alias, "lines": [(INSTRUCTION, rest)]}]."""
    text = open(path).read()
    logical, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):  # a comment inside a continued RUN
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    stages = []
    for line in logical:
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = rest.split()
            image = next(w for w in words if not w.startswith("--"))
            alias = words[words.index("AS") + 1] if "AS" in words else (
                words[words.index("as") + 1] if "as" in words else None)
            stages.append({"from": image, "name": alias, "lines": []})
        elif stages:
            stages[-1]["lines"].append((instruction, rest.strip()))
    return stages


def check_containerfile(report):
    path = os.path.join(ROOT, CONTAINERFILE)
    where = CONTAINERFILE
    facts = {"uid": None, "config": None, "page_dir": None, "ports": set(), "binary": None}
    if not os.path.isfile(path):
        report.fail(where, "missing")
        return facts
    stages = parse_containerfile(path)
    if not report.expect(len(stages) >= 3, f"{where}: multi-stage (binary, page, image)",
                         f"{len(stages)} stage(s); the binary and the page are built in stages of their own"):
        if not stages:
            return facts
    final = stages[-1]
    by_name = {s["name"]: s for s in stages if s["name"]}

    def runs(stage):
        return " ;; ".join(rest for ins, rest in stage["lines"] if ins == "RUN")

    # One Debian release: the binary's glibc, and the archive Chromium comes from.
    m = re.fullmatch(r"(?:docker\.io/)?(?:library/)?debian:(\w+)-slim(?:@.*)?", final["from"])
    if report.expect(m is not None, f"{where}: the final stage is Debian slim",
                     f"FROM {final['from']}: Debian's Chromium package is what the monitor is tested with"):
        release = m.group(1)
        for stage in stages[:-1]:
            report.expect(release in stage["from"],
                          f"{where}: stage {stage['name'] or stage['from']} is on {release}, as the image",
                          f"FROM {stage['from']}: a builder newer than the image links against a glibc the "
                          f"image lacks; build on {release}")

    final_runs = runs(final)
    installs = " ".join(re.findall(r"apt-get install([^;&|]*)", final_runs))
    packages = {w for w in installs.split() if not w.startswith("-")}
    report.expect("chromium" in packages, f"{where}: the image installs chromium (Debian's)",
                  f"no `apt-get install … chromium` in the final stage (installs: {sorted(packages) or 'nothing'})")
    report.expect("ca-certificates" in packages, f"{where}: the image installs ca-certificates",
                  "no ca-certificates: the identity API's TLS is verified against the system's roots")

    users = [rest for ins, rest in final["lines"] if ins == "USER"]
    if report.expect(bool(users), f"{where}: the final stage sets USER", "no USER: the image would run as root, "
                     "and callagent-websdk then turns Chromium's sandbox off"):
        user = users[-1].split(":")[0]
        if report.expect(user.isdigit() and int(user) != 0, f"{where}: USER {users[-1]} is a numeric non-root uid",
                         "root, or a name: Kubernetes' runAsNonRoot can only verify a numeric uid, and as root "
                         "Chromium's sandbox is off"):
            facts["uid"] = int(user)

    entry = [rest for ins, rest in final["lines"] if ins == "ENTRYPOINT"]
    argv = None
    if report.expect(bool(entry), f"{where}: the final stage has an ENTRYPOINT", "none"):
        try:
            argv = json.loads(entry[-1])
        except json.JSONDecodeError:
            argv = None
        report.expect(isinstance(argv, list), f"{where}: ENTRYPOINT is in exec (JSON) form",
                      "shell form: /bin/sh would be PID 1 and SIGTERM would not reach the monitor")
    if isinstance(argv, list):
        names = [os.path.basename(a) for a in argv]
        if report.expect("callagent" in names and names[names.index("callagent") + 1:][:1] == ["monitor"]
                         and "--config" in argv[:-1],
                         f"{where}: ENTRYPOINT runs `callagent monitor --config PATH`", f"{argv}"):
            facts["config"] = argv[argv.index("--config") + 1]
            facts["binary"] = argv[names.index("callagent")]

    copies = []
    for ins, rest in final["lines"]:
        if ins == "COPY":
            words = shlex.split(rest)
            source_stage = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
            paths = [w for w in words if not w.startswith("--")]
            copies.append((source_stage, paths[:-1], paths[-1]))
    page = [(s, src, dst) for s, src, dst in copies if any(p.rstrip("/").endswith("websdk/page/dist") for p in src)]
    if report.expect(len(page) == 1, f"{where}: the image copies the built page (websdk/page/dist)",
                     f"{len(page)} COPY of websdk/page/dist in the final stage"):
        stage, _, dst = page[0]
        facts["page_dir"] = dst.rstrip("/") or "/"
        report.expect(stage in by_name and "websdk/page/build.sh" in runs(by_name[stage]),
                      f"{where}: the page comes from a stage that runs websdk/page/build.sh",
                      f"COPY --from={stage}: that stage does not run websdk/page/build.sh")
    binary = [(s, src, dst) for s, src, dst in copies if dst == "/usr/local/bin/callagent"]
    if report.expect(len(binary) == 1, f"{where}: the image copies the binary to /usr/local/bin/callagent",
                     f"{len(binary)} COPY to /usr/local/bin/callagent"):
        stage = binary[0][0]
        built = runs(by_name[stage]) if stage in by_name else ""
        report.expect(re.search(r"cargo build\b[^;&]*--release", built) and "-p callagent-cli" in built,
                      f"{where}: the binary comes from a stage that runs `cargo build --release -p callagent-cli`",
                      f"COPY --from={stage}: that stage does not build callagent-cli in release")
        if facts["binary"]:
            report.expect(facts["binary"] in ("callagent", "/usr/local/bin/callagent"),
                          f"{where}: the ENTRYPOINT runs the binary copied in",
                          f"it runs {facts['binary']}, the binary is /usr/local/bin/callagent")

    for ins, rest in final["lines"]:
        if ins == "EXPOSE":
            facts["ports"] |= {int(p.split("/")[0]) for p in rest.split()}
    return facts


# --- the manifests -------------------------------------------------------------------------------

def load_manifests(report):
    objects = []
    files = sorted(glob.glob(os.path.join(ROOT, MANIFESTS, "*.yaml")) + glob.glob(os.path.join(ROOT, MANIFESTS, "*.yml")))
    report.expect(bool(files), f"{MANIFESTS}: manifests found", "no *.yaml there")
    for path in files:
        name = os.path.relpath(path, ROOT)
        try:
            docs = [d for d in yaml.safe_load_all(open(path)) if d is not None]
        except yaml.YAMLError as e:
            report.fail(name, f"not YAML: {e}")
            continue
        bad = []
        for i, doc in enumerate(docs):
            if not isinstance(doc, dict) or (doc.get("apiVersion"), doc.get("kind")) not in KNOWN_KINDS:
                bad.append(f"document {i + 1}: {doc.get('apiVersion') if isinstance(doc, dict) else doc!r} "
                           f"{doc.get('kind') if isinstance(doc, dict) else ''} is not a kind this check knows")
            elif not (doc.get("metadata") or {}).get("name"):
                bad.append(f"document {i + 1} ({doc['kind']}) has no metadata.name")
            else:
                doc["_file"] = name
                objects.append(doc)
        report.expect(not bad, f"{name}: {len(docs)} documents parsed, each a known kind with a name", "; ".join(bad))
    return objects


def ns(obj):
    return (obj.get("metadata") or {}).get("namespace")


def label(obj):
    return f"{obj['_file']}: {obj['kind']} {obj['metadata']['name']}"


def find(objects, kind, name, namespace, near=None):
    """The object of that kind, name and namespace: the one in the file `near` (an object) first,
    since monitor.yaml and monitor-remote-browsers.yaml are alternatives with the same names; else
    one in another file (the Secret's template)."""
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name and ns(o) == namespace]
    same = [o for o in found if near is not None and o["_file"] == near["_file"]]
    return (same or found or [None])[0]


def security(pod_spec, container):
    merged = dict(pod_spec.get("securityContext") or {})
    merged.update(container.get("securityContext") or {})
    return merged


def port_number(container, port):
    """A probe's or Service's port (a number or a container port's name) as a number."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p.get("containerPort")
    return None


def check_workloads_common(report, objects):
    for obj in objects:
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        spec = obj.get("spec") or {}
        template = spec.get("template") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        match = (spec.get("selector") or {}).get("matchLabels") or {}
        report.expect(match and all(labels.get(k) == v for k, v in match.items()),
                      f"{label(obj)}: its selector matches its pods' labels",
                      f"selector {match} against labels {labels}: the API server refuses it")
        pod = template.get("spec") or {}
        for c in pod.get("containers") or []:
            sc = security(pod, c)
            what = f"{label(obj)}: container {c.get('name')} runs as non-root"
            if sc.get("runAsNonRoot") is not True:
                report.fail(what, "runAsNonRoot is not true (pod or container securityContext)")
            elif sc.get("runAsUser") == 0 or sc.get("privileged") is True:
                report.fail(what, f"runAsUser {sc.get('runAsUser')}, privileged {sc.get('privileged')}")
            elif sc.get("allowPrivilegeEscalation") is not False:
                report.fail(what, "allowPrivilegeEscalation is not false")
            else:
                report.ok(what)
            args = (c.get("command") or []) + (c.get("args") or [])
            if "--no-sandbox" in args or "--disable-setuid-sandbox" in args:
                report.fail(f"{label(obj)}: container {c.get('name')} keeps Chromium's sandbox",
                            "--no-sandbox on its command line")


def monitor_container(pod, config_path):
    """The container that mounts the image's config file, and that mount."""
    config_dir, config_name = os.path.split(config_path)
    for c in pod.get("containers") or []:
        for m in c.get("volumeMounts") or []:
            if m.get("mountPath") == config_dir and not m.get("subPath"):
                return c, m, config_name
            if m.get("mountPath") == config_path and m.get("subPath"):
                return c, m, m["subPath"]
    return None, None, None


def volume_file(pod, mount, file_name):
    """The volume behind `mount` and the key that file `file_name` in it comes from."""
    volume = next((v for v in pod.get("volumes") or [] if v.get("name") == mount.get("name")), None)
    if volume is None:
        return None, None, None
    source = volume.get("configMap") or volume.get("secret") or {}
    items = source.get("items")
    if items is None:
        key, mode = file_name, None
    else:
        item = next((i for i in items if i.get("path") == file_name), None)
        key, mode = (item.get("key"), item.get("mode")) if item else (None, None)
    return volume, key, mode


def secret_value(secret, key):
    if key in (secret.get("stringData") or {}):
        return str(secret["stringData"][key])
    if key in (secret.get("data") or {}):
        try:
            return base64.b64decode(secret["data"][key]).decode()
        except (binascii.Error, UnicodeDecodeError):
            return ""
    return None


def looks_like_a_key(connection_string):
    m = re.search(r"accesskey=([^;\s]+)", connection_string, re.I)
    if not m:
        return False
    try:
        return len(base64.b64decode(m.group(1), validate=True)) >= 32
    except binascii.Error:
        return False


CHECKED_SECRETS = set()


def check_monitor(report, objects, deployment, facts):
    """Checks one Deployment that runs the monitor; returns its monitor.toml text, or None."""
    name = label(deployment)
    namespace = ns(deployment)
    spec = deployment.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    pod_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    container, mount, file_name = monitor_container(pod, facts["config"])
    if container is None:
        return None
    report.ok(f"{name}: container {container.get('name')} mounts the config where the image's ENTRYPOINT "
              f"reads it ({facts['config']})")
    report.expect(spec.get("replicas", 1) == 1, f"{name}: one replica",
                  f"replicas {spec.get('replicas')}: each monitor creates identities and probes them; two "
                  "double every series")
    report.expect(not container.get("command"), f"{name}: the monitor keeps the image's ENTRYPOINT",
                  f"command {container.get('command')} replaces it (and its --config {facts['config']})")
    report.expect(mount.get("readOnly") is True, f"{name}: the config is mounted read-only", "readOnly is not true")

    volume, key, _ = volume_file(pod, mount, file_name)
    cm_name = ((volume or {}).get("configMap") or {}).get("name")
    configmap = find(objects, "ConfigMap", cm_name, namespace, deployment) if cm_name else None
    text = ((configmap or {}).get("data") or {}).get(key) if key else None
    if not report.expect(text is not None, f"{name}: the mounted ConfigMap holds {file_name}",
                         f"volume {mount.get('name')}: ConfigMap {cm_name} (namespace {namespace}) with key "
                         f"{key} not found in {MANIFESTS}"):
        return None
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        report.fail(f"{label(configmap)}: {key} is TOML", str(e))
        return text

    # listen: the pod's address, the probes' and the Service's port.
    listen = config.get("listen", DEFAULT_LISTEN)
    try:
        host, port = host_port(listen)
    except ValueError as e:
        report.fail(f"{label(configmap)}: listen", str(e))
        return text
    report.expect(host in ("0.0.0.0", "::"), f"{label(configmap)}: listen {listen} is the pod's address",
                  "loopback (or one address): the kubelet's probes and Prometheus reach the pod from outside "
                  "the container; use 0.0.0.0:" + str(port))
    ports = {p.get("containerPort") for p in container.get("ports") or []}
    report.expect(port in ports, f"{name}: containerPort {port} (the config's listen)",
                  f"the container declares {sorted(p for p in ports if p)}, the monitor listens on {port}")
    if facts["ports"]:
        report.expect(port in facts["ports"], f"{CONTAINERFILE}: EXPOSE {port} (the config's listen)",
                      f"EXPOSE {sorted(facts['ports'])}")
    for probe_name, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        probe = container.get(probe_name) or {}
        get = probe.get("httpGet") or {}
        got = (get.get("path"), port_number(container, get.get("port")))
        report.expect(got == (path, port), f"{name}: {probe_name} asks {path} on port {port}",
                      f"it asks {got[0]} on port {got[1]}" if probe else "no such probe")
    startup = container.get("startupProbe")
    if startup:
        get = startup.get("httpGet") or {}
        got = (get.get("path"), port_number(container, get.get("port")))
        report.expect(got[0] in ("/healthz", "/readyz") and got[1] == port,
                      f"{name}: startupProbe asks /healthz on port {port}", f"it asks {got[0]} on port {got[1]}")

    # SIGTERM: the grace period outlasts the monitor's own shutdown.
    try:
        shutdown = duration_s(config.get("shutdown_timeout", DEFAULT_SHUTDOWN_TIMEOUT))
    except ValueError as e:
        report.fail(f"{label(configmap)}: shutdown_timeout", str(e))
        shutdown = None
    if shutdown is not None:
        grace = pod.get("terminationGracePeriodSeconds", DEFAULT_GRACE)
        report.expect(grace >= shutdown + SHUTDOWN_MARGIN,
                      f"{name}: terminationGracePeriodSeconds {grace} > shutdown_timeout {shutdown:g} s "
                      f"(+{SHUTDOWN_MARGIN} s to close the browser and delete identities)",
                      f"the kubelet would SIGKILL the monitor before it deletes its identities and closes its "
                      f"browser; give at least {shutdown + SHUTDOWN_MARGIN:g}")

    # Security: non-root as the image's user, read-only root with a writable /tmp, seccomp.
    sc = security(pod, container)
    if facts["uid"] is not None and "runAsUser" in sc:
        report.expect(sc["runAsUser"] == facts["uid"], f"{name}: the monitor runs as the image's uid {facts['uid']}",
                      f"runAsUser {sc['runAsUser']}")
    report.expect("ALL" in ((sc.get("capabilities") or {}).get("drop") or []),
                  f"{name}: the monitor drops every capability", "capabilities.drop has no ALL")
    mounts = {m.get("mountPath"): m for m in container.get("volumeMounts") or []}
    if sc.get("readOnlyRootFilesystem"):
        tmp = mounts.get(TMP)
        tmp_volume = next((v for v in pod.get("volumes") or [] if tmp and v.get("name") == tmp.get("name")), {})
        report.expect(tmp is not None and not tmp.get("readOnly") and "emptyDir" in tmp_volume,
                      f"{name}: the root filesystem is read-only and {TMP} is a writable emptyDir",
                      f"nothing writable at {TMP}: the monitor's private directory and Chromium's profile go there")
    else:
        report.fail(f"{name}: the root filesystem is read-only", "readOnlyRootFilesystem is not true")
    browser = config.get("browser") or {}
    remote = browser.get("remote") or []
    seccomp = (sc.get("seccompProfile") or {}).get("type")
    if not remote:
        report.expect(seccomp in ("Unconfined", "Localhost"),
                      f"{name}: a seccomp profile Chromium's sandbox can start under ({seccomp})",
                      f"{seccomp or 'none (the kubelet decides)'}: RuntimeDefault refuses the user namespace "
                      "Chromium's sandbox makes (clone/unshare with CLONE_NEWUSER); set Localhost (a profile "
                      "allowing it) or Unconfined explicitly")

    # The connection string: a Secret mounted as a file, never a literal in the manifest.
    token = config.get("token") or {}
    for c in pod.get("containers") or []:
        for env in c.get("env") or []:
            if env.get("name") == "ACS_CONNECTION_STRING" and "value" in env:
                report.fail(f"{name}: container {c.get('name')}", "ACS_CONNECTION_STRING as a literal value in the "
                            "manifest: mount the Secret as a file (token.connection_string_file)")
    if token.get("source") == "connection_string":
        path = token.get("connection_string_file")
        if report.expect(bool(path), f"{label(configmap)}: token.connection_string_file is set",
                         "the connection string would come from ACS_CONNECTION_STRING: mount it from a Secret "
                         "as a file"):
            directory, file_name = os.path.split(path)
            secret_mount = mounts.get(directory)
            volume, key, item_mode = volume_file(pod, secret_mount, file_name) if secret_mount else (None, None, None)
            source = (volume or {}).get("secret")
            if report.expect(source is not None and key is not None,
                             f"{name}: a Secret is mounted at {directory} with the file {file_name}",
                             f"nothing mounts a Secret's {file_name} at {directory} (the config's "
                             f"connection_string_file {path})"):
                report.expect(secret_mount.get("readOnly") is True, f"{name}: the Secret is mounted read-only",
                              "readOnly is not true")
                mode = item_mode if item_mode is not None else source.get("defaultMode", 0o644)
                report.expect(mode & 0o137 == 0, f"{name}: the connection string's file mode is {mode:04o}",
                              f"mode {mode:04o}: give defaultMode 0400 (the kubelet adds the fsGroup's read bit)")
                secret = find(objects, "Secret", source.get("secretName"), namespace, deployment)
                if secret is not None and id(secret) in CHECKED_SECRETS:
                    pass
                elif report.expect(secret is not None, f"{name}: the Secret {source.get('secretName')} has a template "
                                 f"in {MANIFESTS}", f"no Secret {source.get('secretName')} in namespace {namespace}"):
                    CHECKED_SECRETS.add(id(secret))
                    value = secret_value(secret, key)
                    if report.expect(value is not None, f"{label(secret)}: holds the key {key}",
                                     f"keys: {sorted({**(secret.get('data') or {}), **(secret.get('stringData') or {})})}"):
                        report.expect(not looks_like_a_key(value), f"{label(secret)}: a placeholder, no real key",
                                      "its accesskey decodes to a key: never commit one; make the Secret with "
                                      "kubectl create secret generic --from-file")

    # The page, and the browser.
    page_dir = browser.get("page_dir")
    if facts["page_dir"]:
        report.expect(page_dir is not None and page_dir.rstrip("/") == facts["page_dir"],
                      f"{label(configmap)}: browser.page_dir is where the image puts the page ({facts['page_dir']})",
                      f"page_dir {page_dir!r}" + ("" if page_dir else ": the default is the build machine's path"))
    if browser.get("chromium") is not None:
        report.expect(browser["chromium"] == DEBIAN_CHROMIUM, f"{label(configmap)}: browser.chromium is Debian's",
                      f"{browser['chromium']}: the image has {DEBIAN_CHROMIUM}")

    resources = container.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    if not remote:
        try:
            ok = (quantity(requests.get("cpu", 0), cpu=True) >= 0.5
                  and quantity(requests.get("memory", 0)) >= 768 * 2**20
                  and quantity(limits.get("memory", 0)) >= 2**30)
        except ValueError as e:
            ok = False
            requests = f"{requests} ({e})"
        report.expect(ok, f"{name}: resources sized for Chromium (requests {requests}, limits {limits})",
                      "Chromium in the pod needs about 1 CPU and 1 GiB: requests of at least 500m and 768Mi, a "
                      "memory limit of at least 1Gi")
    else:
        report.expect("memory" in limits, f"{name}: a memory limit", "none")
        check_remote(report, objects, name, configmap, remote, container, pod_labels, namespace)

    # The Service: its port, and Prometheus' annotations.
    services = [s for s in objects if s["kind"] == "Service" and ns(s) == namespace and s["_file"] == deployment["_file"]
                and (s.get("spec") or {}).get("selector")
                and all(pod_labels.get(k) == v for k, v in s["spec"]["selector"].items())]
    if report.expect(bool(services), f"{name}: a Service selects the monitor", "none: Prometheus finds it by one"):
        for service in services:
            targets = [port_number(container, p.get("targetPort", p.get("port"))) for p in service["spec"].get("ports") or []]
            report.expect(port in targets, f"{label(service)}: a port reaches the monitor's {port}",
                          f"its ports reach {targets}")
            notes = (service.get("metadata") or {}).get("annotations") or {}
            report.expect(notes.get("prometheus.io/scrape") == "true"
                          and notes.get("prometheus.io/port") == str(port)
                          and notes.get("prometheus.io/path", "/metrics") == "/metrics",
                          f"{label(service)}: prometheus.io annotations scrape /metrics on {port}",
                          f"annotations {notes}")
    return text


ENDPOINT = re.compile(r"(?P<scheme>wss?|https?)://(?P<host>[^/:?#]+)(?::(?P<port>\d+))?(?P<path>/[^?#]*)?")
POD_NAME = re.compile(r"(?P<set>[a-z0-9-]+)-(?P<ordinal>\d+)\.(?P<service>[a-z0-9-]+)\.(?P<ns>[a-z0-9-]+)\.svc(?:\.cluster\.local)?")


def check_remote(report, objects, name, configmap, remote, container, pod_labels, namespace):
    """Each `browser.remote` endpoint against the StatefulSet, Service and NetworkPolicy it names."""
    seen = {}
    for endpoint in remote:
        what = f"{label(configmap)}: browser.remote {endpoint}"
        m = ENDPOINT.fullmatch(endpoint)
        if not report.expect(m is not None, f"{what} parses", "not SCHEME://HOST:PORT"):
            continue
        scheme, host = m.group("scheme"), m.group("host")
        port = int(m.group("port") or (443 if scheme in ("https", "wss") else 80))
        if scheme.startswith("ws"):
            report.expect(bool(m.group("path")) and m.group("path") != "/",
                          f"{what}: a ws(s):// endpoint names the browser's WebSocket path",
                          "a bare ws(s)://HOST:PORT is taken as the WebSocket URL itself (path /), which Chromium's "
                          "DevTools does not serve; use https:// (or http://) to ask /json/version")
        report.expect(scheme in ("https", "wss"), f"{what}: over TLS",
                      "plain text to another pod: use https:// behind a TLS front")
        p = POD_NAME.fullmatch(host)
        if not report.expect(p is not None, f"{what}: a StatefulSet pod's stable name",
                             "not SET-N.SERVICE.NAMESPACE.svc.cluster.local"):
            continue
        sts = find(objects, "StatefulSet", p.group("set"), p.group("ns"), configmap)
        if not report.expect(sts is not None, f"{what}: StatefulSet {p.group('ns')}/{p.group('set')} is in {MANIFESTS}",
                             "not found"):
            continue
        spec = sts.get("spec") or {}
        seen.setdefault((p.group("ns"), p.group("set")), []).append(int(p.group("ordinal")))
        report.expect(spec.get("serviceName") == p.group("service"),
                      f"{what}: {p.group('service')} is the StatefulSet's serviceName",
                      f"its serviceName is {spec.get('serviceName')}")
        report.expect(int(p.group("ordinal")) < spec.get("replicas", 1),
                      f"{what}: pod {p.group('ordinal')} exists ({spec.get('replicas', 1)} replicas)",
                      "past the StatefulSet's replicas: no such pod")
        service = find(objects, "Service", p.group("service"), p.group("ns"), configmap)
        pod = (spec.get("template") or {}).get("spec") or {}
        if report.expect(service is not None and (service.get("spec") or {}).get("clusterIP") == "None",
                         f"{what}: a headless Service {p.group('service')} gives the pod its name",
                         "no headless Service (clusterIP: None) of that name in that namespace"):
            sports = {sp.get("port"): sp for sp in service["spec"].get("ports") or []}
            sp = sports.get(port)
            container_ports = {cp.get("containerPort"): c for c in pod.get("containers") or [] for cp in c.get("ports") or []}
            target = None
            if sp is not None:
                target = sp.get("targetPort", port)
                if not isinstance(target, int):
                    target = next((port_number(c, target) for c in pod.get("containers") or []
                                   if port_number(c, target)), None)
            report.expect(sp is not None and target in container_ports,
                          f"{what}: the Service's port {port} reaches a container port of the browsers' pods",
                          f"Service ports {sorted(sports)}, container ports {sorted(container_ports)}")
        # Only the monitor may drive the browsers.
        sts_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        admits = False
        for policy in objects:
            if policy["kind"] != "NetworkPolicy" or ns(policy) != p.group("ns") or policy["_file"] != sts["_file"]:
                continue
            pspec = policy.get("spec") or {}
            selector = (pspec.get("podSelector") or {}).get("matchLabels") or {}
            if not all(sts_labels.get(k) == v for k, v in selector.items()):
                continue
            for rule in pspec.get("ingress") or []:
                ports_ok = any(rp.get("port") == port for rp in rule.get("ports") or [])
                from_monitor = any(
                    all(pod_labels.get(k) == v for k, v in ((peer.get("podSelector") or {}).get("matchLabels") or {}).items())
                    and (peer.get("podSelector") or {}).get("matchLabels")
                    for peer in rule.get("from") or [])
                admits = admits or (ports_ok and from_monitor)
        report.expect(admits, f"{what}: a NetworkPolicy admits the monitor's pods to port {port}",
                      "none selects the browsers' pods with a rule from the monitor's labels on that port: DevTools "
                      "drives the browser, only the monitor may reach it")
    for (set_ns, set_name), ordinals in seen.items():
        sts = find(objects, "StatefulSet", set_name, set_ns, configmap)
        replicas = (sts.get("spec") or {}).get("replicas", 1)
        report.expect(sorted(ordinals) == list(range(replicas)),
                      f"{label(configmap)}: browser.remote lists every pod of {set_ns}/{set_name} once ({replicas})",
                      f"it lists pods {sorted(ordinals)}: the monitor has no DNS discovery yet, so a pod not "
                      "listed is never used")
    env = {e.get("name"): e.get("value") for e in container.get("env") or []}
    mounts = {m.get("mountPath") for m in container.get("volumeMounts") or []}
    for var in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        for path in (env.get(var) or "").split(":"):
            if path:
                report.expect(path.startswith("/etc/ssl/certs") or path in mounts or os.path.dirname(path) in mounts,
                              f"{name}: {var} {path} is in the image or mounted", "neither")


def run_binary(report, binary, texts):
    """Each monitor.toml through `callagent monitor --check`, and one broken copy that must fail."""
    if not report.expect(os.access(binary, os.X_OK), f"{binary}: the monitor binary is there",
                         "missing: cargo build -p callagent-cli"):
        return
    with tempfile.TemporaryDirectory(prefix="deploy-check-") as tmp:
        for i, (where, text) in enumerate(texts):
            path = os.path.join(tmp, f"monitor-{i}.toml")
            with open(path, "w") as f:
                f.write(text)
            cmd = [binary, "monitor", "--config", path, "--check"]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            said = (r.stdout + r.stderr).strip().replace(path, "FILE")
            if r.returncode == 0:
                report.ok(f"{where}: `callagent monitor --config FILE --check` exits 0 ({said})")
            else:
                report.fail(f"{where}: `callagent monitor --config FILE --check` exits 0", f"exit {r.returncode}: {said}")
        # A control: the same file with one bad field must be refused, naming it.
        where, text = texts[0]
        broken = re.sub(r"(?m)^attempts\s*=.*$", "attempts = 0", text) if re.search(r"(?m)^attempts\s*=", text) \
            else "attempts = 0\n" + text
        path = os.path.join(tmp, "broken.toml")
        with open(path, "w") as f:
            f.write(broken)
        r = subprocess.run([binary, "monitor", "--config", path, "--check"], capture_output=True, text=True, timeout=60)
        report.expect(r.returncode == 2 and "attempts" in r.stderr,
                      f"{where} with attempts = 0: the binary refuses it (exit 2, naming `attempts`)",
                      f"exit {r.returncode}, {r.stderr.strip()!r}: the check above would prove nothing")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary", nargs="?", default="target/debug/callagent",
                        help="the callagent binary (default: target/debug/callagent)")
    args = parser.parse_args()
    binary = args.binary if os.path.isabs(args.binary) else os.path.join(ROOT, args.binary)

    report = Report()
    print(f"== {CONTAINERFILE}")
    facts = check_containerfile(report)
    print(f"== {MANIFESTS}")
    objects = load_manifests(report)
    check_workloads_common(report, objects)
    texts = []
    if facts["config"]:
        monitors = 0
        for obj in objects:
            if obj["kind"] == "Deployment":
                text = check_monitor(report, objects, obj, facts)
                if text is not None:
                    monitors += 1
                    texts.append((label(obj), text))
        report.expect(monitors > 0, f"{MANIFESTS}: a Deployment runs the monitor",
                      f"no Deployment's container mounts {facts['config']} (the image's ENTRYPOINT --config)")
    print("== the binary")
    if texts:
        run_binary(report, binary, texts)
    else:
        report.fail("the binary", "no monitor.toml found to check")
    print(f"\n{report.checks} checks, {len(report.failures)} failed")
    if report.failures:
        print("\nfailed:\n" + "\n".join(f"  - {f}" for f in report.failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
