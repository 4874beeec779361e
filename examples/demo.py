#!/usr/bin/env python3
"""The canary-xds demo: real upstreams, canary-xds and Envoy on this machine.

Run it through examples/demo.sh, which installs Envoy and builds canary-xds first.

It starts one small HTTP server per service named in examples/mappings (each answers with its
service name), serves the Mappings with `canary-xds serve`, starts Envoy with the bootstrap
`canary-xds bootstrap` prints, sends requests to every route and prints the split Envoy
observed (from its own stats) beside the configured one. Edit examples/mappings and press
Enter to watch the split move; Ctrl-C stops every process it started.

The services in examples/mappings are Kubernetes-style names (`qotm`), which do not resolve
here; the demo serves a copy of the directory in which each service points at its local
server, and copies again on every Enter.
"""

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
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAPPINGS = os.path.join(ROOT, "examples", "mappings")
BINARY = os.path.join(ROOT, "target", "debug", "canary-xds")
REQUESTS = 1000

UPSTREAM = r'''
import http.server, sys
name, port = sys.argv[1], int(sys.argv[2])
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1  # one write per response: no Nagle stalls on keep-alive
    def do_GET(self):
        body = (name + "\n").encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
'''

children = []


def free_port(preferred=None):
    for port in ([preferred] if preferred else []) + [0]:
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return s.getsockname()[1]
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port")


def start(args, **kw):
    p = subprocess.Popen(args, **kw)
    children.append(p)
    return p


def stop_all(*_):
    for p in reversed(children):
        if p.poll() is None:
            p.terminate()
    for p in children:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
    sys.exit(0)


def check_json(directory=MAPPINGS):
    out = subprocess.run([BINARY, "check", directory, "--format", "json"],
                         capture_output=True, text=True)
    return json.loads(out.stdout)


def wait(what, f, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            v = f()
            if v:
                return v
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for " + what)


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read().decode()


def copy_mappings(work, ports):
    """Copies examples/mappings into `work`, each service pointing at its local server."""
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(MAPPINGS, work)
    for dirpath, _, files in os.walk(work):
        for f in files:
            if not f.endswith((".yaml", ".yml")):
                continue
            path = os.path.join(dirpath, f)
            with open(path) as fh:
                text = fh.read()
            def local(m):
                name = m.group(2)
                port = ports.get(name)
                return m.group(1) + (f"127.0.0.1:{port}" if port else name)
            text = re.sub(r"(^\s*service:\s*)([^\s#]+)", local, text, flags=re.M)
            tmp = path + ".tmp"
            with open(tmp, "w") as fh:
                fh.write(text)
            os.replace(tmp, path)


def stats(admin):
    text = get(f"http://127.0.0.1:{admin}/stats?filter=upstream_rq_total")
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(": ")
        out[k] = int(v)
    return out


def route_version(admin):
    text = get(f"http://127.0.0.1:{admin}/stats?filter=rds.canary-xds.version_text")
    return text.strip()


def measure(listen, admin, table):
    routes = table.get("routes", [])
    print()
    print(f"{'ROUTE':<28} {'MAPPING':<20} {'CONFIGURED':>10} {'OBSERVED':>9}  (Envoy's cluster.<name>.upstream_rq_total)")
    for r in routes:
        if r["prefix_regex"] or r["host_regex"] or r["query_parameters"] or r["regex_headers"]:
            continue
        headers = {k: ("yes" if v is True else v) for k, v in r["headers"].items()}
        if r["host"] != "*" and not r["host"].startswith("*"):
            headers["host"] = r["host"]
        before = stats(admin)
        for _ in range(REQUESTS):
            get(f"http://127.0.0.1:{listen}{r['prefix']}", headers)
        after = stats(admin)
        delta = {b["cluster"]: after.get(f"cluster.{b['cluster']}.upstream_rq_total", 0)
                 - before.get(f"cluster.{b['cluster']}.upstream_rq_total", 0) for b in r["backends"]}
        total = sum(delta.values()) or 1
        label = r["prefix"] + (" " + ",".join(f"{k}={v}" for k, v in headers.items()) if headers else "")
        for i, b in enumerate(r["backends"]):
            observed = 100.0 * delta[b["cluster"]] / total
            print(f"{label if i == 0 else '':<28} {b['mapping']:<20} {b['weight']:>9.2f}% {observed:>8.1f}%")


def main():
    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)
    table = check_json()
    for d in table.get("diagnostics", []):
        print(f"{d['severity']}: {d['file']}:{d['line']}: {d['message']}")
    services = sorted({b["service"] for r in table["routes"] for b in r["backends"]})
    ports = {}
    for name in services:
        port = free_port()
        start([sys.executable, "-c", UPSTREAM, name, str(port)])
        ports[name] = port
        print(f"upstream {name:<10} on 127.0.0.1:{port}")
    work = tempfile.mkdtemp(prefix="canary-xds-demo-")
    mappings = os.path.join(work, "mappings")
    copy_mappings(mappings, ports)

    listen, admin, xds = free_port(8080), free_port(9901), free_port(18000)
    log = open(os.path.join(work, "canary-xds.log"), "w")
    start([BINARY, "serve", "--dir", mappings, "--xds", f"127.0.0.1:{xds}",
           "--listen", f"127.0.0.1:{listen}"], stdout=log, stderr=log)
    wait("canary-xds", lambda: socket.create_connection(("127.0.0.1", xds), timeout=1))
    boot = subprocess.run([BINARY, "bootstrap", "--xds", f"127.0.0.1:{xds}",
                           "--admin", f"127.0.0.1:{admin}", "--node-id", "demo"],
                          capture_output=True, text=True, check=True).stdout
    boot_path = os.path.join(work, "envoy.yaml")
    with open(boot_path, "w") as f:
        f.write(boot)
    envoy_log = open(os.path.join(work, "envoy.log"), "w")
    start(["envoy", "-c", boot_path, "--disable-hot-restart", "-l", "warn"],
          stdout=envoy_log, stderr=envoy_log)
    wait("Envoy's listener", lambda: socket.create_connection(("127.0.0.1", listen), timeout=1))
    print(f"canary-xds serves xDS on 127.0.0.1:{xds}; Envoy listens on 127.0.0.1:{listen}, "
          f"admin on 127.0.0.1:{admin}")
    print(f"logs in {work}")

    while True:
        # Cluster names come from the served copy (its services are local addresses).
        measure(listen, admin, check_json(mappings))
        print()
        print("Edit the YAML in examples/mappings (say, weight: 50 in qotmv2.yaml), then press")
        print("Enter here to apply it and measure again, or run examples/demo.sh again.")
        print("Ctrl-C stops every process this demo started.")
        if not sys.stdin.isatty():
            stop_all()
        try:
            input()
        except EOFError:
            stop_all()
        before = route_version(admin)
        copy_mappings(mappings, ports)
        try:
            wait("Envoy to apply the change", lambda: route_version(admin) != before, timeout=5)
            print("applied by Envoy:", route_version(admin))
        except RuntimeError:
            print("(Envoy's routes did not change: same effective config, or an error above)")


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in children:
            if p.poll() is None:
                p.kill()
