#!/usr/bin/env python3
"""Cluster benchmark: what the front (HAProxy) and the shared cache (Redis)
cost, against one plain nbcanvas on the same machine in the same run. Not
part of the test suite; it deploys the stack itself (scripts/cluster.sh up,
with a keys file of its own) and takes it down again.

    python3 tests/bench/bench_cluster.py build/nbcanvas [--seconds S]
        [--clients N] [--hits N] [--out docs/BENCHMARKS.md]

Measures: throughput of distinct chart renders (cache off) with N clients
for S seconds, (1) straight to one plain `nbcanvas serve`, (2) through the
front with 1 api replica, (3) through the front with 2; and a cache hit's
round trip, straight to the plain service (its cache in memory) and
through the front (the answer from Redis). All on the same cores: the
point is the overhead, not scaling.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import write_report, cpu_busy_seconds, fmt_ms, pct, request_body, throughput, wait_pool  # noqa: E402
from harness import REPO, Service  # noqa: E402

CLUSTER = os.path.join(REPO, "scripts", "cluster.sh")


class Endpoint(Service):
    def __init__(self, port, key):
        self.port, self.key, self.tls_ca = port, key, None


def sh(*args, env=None):
    subprocess.run(args, check=True, env=env, stdout=subprocess.DEVNULL)


def run_load(ep, clients, seconds):
    def one(i, k):
        r = ep.render(request_body("chart", "%d-%d-%f" % (i, k, time.time())))
        assert r.status == 200, r
        return r.header("x-nbcanvas-sandbox")
    cpu0 = cpu_busy_seconds()
    done, took = throughput(one, clients, seconds)
    return len(done) / took, (cpu_busy_seconds() - cpu0) / max(len(done), 1)


def hit_times(ep, n):
    body = request_body("chart")
    assert ep.render(body).status == 200  # now cached
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = ep.render(body)
        out.append(time.perf_counter() - t0)
        assert r.header("x-nbcanvas-cache") == "hit", r.headers
    return out


def wait_replicas(n, front):
    deadline = time.time() + 120
    while time.time() < deadline:
        got = subprocess.run(["docker", "service", "ls", "--filter", "name=nbcanvas_api",
                              "--format", "{{.Replicas}}"], capture_output=True,
                             text=True).stdout.strip()
        if got == "%d/%d" % (n, n) and front.get("/readyz").status == 200:
            time.sleep(5)  # the health checks see the change; the pools fill
            return
        time.sleep(0.5)
    raise RuntimeError("api did not reach %d replicas" % n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--hits", type=int, default=200)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)

    # (1) one plain service, its cache in memory
    plain = Service(binary, {}).start()
    try:
        wait_pool(plain, 2)
        plain_hits = hit_times(plain, args.hits)
        wait_pool(plain, 2)
        plain_rate, plain_cpu = run_load(plain, args.clients, args.seconds)
    finally:
        plain.stop()

    folder = tempfile.mkdtemp(prefix="nbcanvas-bench-cluster-")
    made = subprocess.run([binary, "key", "new", "bench"], capture_output=True,
                          text=True, check=True).stdout
    key = made.split("key: ")[1].split()[0]
    keys = os.path.join(folder, "keys.json")
    with open(keys, "w") as f:
        json.dump([json.loads(made.split("entry: ")[1])], f)
    env = dict(os.environ, NBCANVAS_BINARY=binary, CLUSTER_KEYS_FILE=keys,
               CLUSTER_SECRETS_DIR=os.path.join(folder, "secrets"))
    sh("bash", CLUSTER, "up", env=env)
    front = Endpoint(8180, key)
    try:
        front_hits = hit_times(front, args.hits)
        rates = {}
        for n in (1, 2):
            sh("docker", "service", "scale", "--detach=false", "nbcanvas_api=%d" % n)
            wait_replicas(n, front)
            rates[n] = run_load(front, args.clients, args.seconds)
    finally:
        sh("bash", CLUSTER, "down", env=env)
        shutil.rmtree(folder)

    lines = [
        "### Through the front: HAProxy and Redis against one plain service (runc)\n",
        "Distinct chart renders (cache off), %d clients for %d s each; cache hits "
        "%d times in a row. All on the same 2 cores, so the replicas share them: "
        "the point is the front's and Redis's overhead, not scaling.\n"
        % (args.clients, args.seconds, args.hits),
        "| route | renders/s | / plain | CPU-s per render |", "|---|---|---|---|",
        "| plain `nbcanvas serve` (baseline) | %.2f | 1.00 | %.2f |" % (plain_rate, plain_cpu),
        "| front, 1 api replica, Redis cache | %.2f | %.2f | %.2f |"
        % (rates[1][0], rates[1][0] / plain_rate, rates[1][1]),
        "| front, 2 api replicas, Redis cache | %.2f | %.2f | %.2f |"
        % (rates[2][0], rates[2][0] / plain_rate, rates[2][1]),
        "",
        "| cache hit | p50 ms | p95 ms | p50 / plain p50 |", "|---|---|---|---|",
        "| plain service, cache in memory | %s | %s | 1.00 |"
        % (fmt_ms(pct(plain_hits, 50)), fmt_ms(pct(plain_hits, 95))),
        "| through the front, answer from Redis | %s | %s | %.2f |"
        % (fmt_ms(pct(front_hits, 50)), fmt_ms(pct(front_hits, 95)),
           pct(front_hits, 50) / pct(plain_hits, 50)),
        "",
        "Command: `python3 tests/bench/bench_cluster.py build/nbcanvas --seconds %d "
        "--clients %d --hits %d --out docs/BENCHMARKS.md`."
        % (args.seconds, args.clients, args.hits),
    ]
    write_report(lines, args.out)


if __name__ == "__main__":
    main()
