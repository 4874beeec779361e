#!/usr/bin/env python3
"""How long Envoy's main thread stops answering while nothing changes (BENCHMARKS.md, section 2).

Starts `canary-xds serve` on N generated routes (2 Mappings each, so 2N static clusters on
127.0.0.x), an Envoy (on PATH) bootstrapped by `canary-xds bootstrap`, waits until Envoy holds
every cluster, then asks Envoy's admin for /ready (answered by its main thread, the one that
applies xDS updates) every millisecond for 40 s and prints every answer slower than 10 ms.

    cargo build --release && python3 benches/envoy_stalls.py [ROUTES] [BOOTSTRAP LINE...]
    python3 benches/envoy_stalls.py 5000 'stats_flush_interval: 60s'

Extra arguments are appended to the bootstrap as top-level YAML lines.
"""
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    routes = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    extra = sys.argv[2:]
    here = os.path.dirname(os.path.abspath(__file__))
    binary = os.path.join(here, "..", "target", "release", "canary-xds")
    work = tempfile.mkdtemp(prefix="envoy-stalls-")
    maps = os.path.join(work, "maps")
    os.makedirs(maps)
    docs, n = [], 0
    for i in range(routes):
        docs.append(f"apiVersion: ambassador/v1\nkind: Mapping\nname: p{i}\nprefix: /r{i}/\n"
                    f"service: 127.0.0.1:{20000 + i % 500}\n")
        docs.append(f"apiVersion: ambassador/v1\nkind: Mapping\nname: c{i}\nprefix: /r{i}/\n"
                    f"service: 127.0.0.2:{20000 + i % 500}\nweight: 10\n")
        if len(docs) >= 20 or i + 1 == routes:
            with open(os.path.join(maps, f"f{n:05}.yaml"), "w") as f:
                f.write("---\n".join(docs))
            docs, n = [], n + 1
    xds, listen, admin, envoy_admin = (free_port() for _ in range(4))
    cp = subprocess.Popen([binary, "serve", "--dir", maps, "--xds", f"127.0.0.1:{xds}",
                           "--listen", f"127.0.0.1:{listen}", "--admin", f"127.0.0.1:{admin}"],
                          stderr=open(os.path.join(work, "canary-xds.log"), "w"))
    boot = subprocess.check_output([binary, "bootstrap", "--xds", f"127.0.0.1:{xds}",
                                    "--admin", f"127.0.0.1:{envoy_admin}"]).decode()
    boot += "".join(line + "\n" for line in extra)
    with open(os.path.join(work, "bootstrap.yaml"), "w") as f:
        f.write(boot)
    envoy = subprocess.Popen(["envoy", "-c", os.path.join(work, "bootstrap.yaml"),
                              "--disable-hot-restart", "-l", "warning"],
                             stderr=open(os.path.join(work, "envoy.log"), "w"))
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", envoy_admin, timeout=5)
                c.request("GET", "/stats?filter=cluster_manager.active_clusters")
                body = c.getresponse().read().decode()
                if int(body.split("active_clusters: ")[1].split()[0]) >= 2 * routes:
                    break
            except (OSError, IndexError, ValueError):
                pass
            time.sleep(0.5)
        else:
            sys.exit("Envoy did not get every cluster within 180 s")
        time.sleep(3)
        c = http.client.HTTPConnection("127.0.0.1", envoy_admin, timeout=5)
        start, took = time.time(), []
        while time.time() - start < 40:
            t = time.time()
            c.request("GET", "/ready")
            c.getresponse().read()
            took.append((t - start, (time.time() - t) * 1000))
            time.sleep(0.001)
        ms = sorted(d for _, d in took)
        print(f"{routes} routes, {2 * routes} clusters; bootstrap extras: {extra or 'none'}")
        print(f"{len(ms)} /ready polls in 40 s: p50 {ms[len(ms) // 2]:.2f} ms, "
              f"p99 {ms[int(len(ms) * 0.99)]:.2f} ms, max {ms[-1]:.1f} ms")
        print("answers slower than 10 ms (s since start, ms):",
              [(round(t, 2), round(d, 1)) for t, d in took if d > 10])
    finally:
        envoy.terminate()
        cp.terminate()
        envoy.wait()
        cp.wait()


if __name__ == "__main__":
    main()
