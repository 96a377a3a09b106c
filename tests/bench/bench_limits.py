#!/usr/bin/python3
"""What sharing a tenant's limits and listings through Redis costs (issue
24), one run, one machine. Not part of the test suite.

    python3 tests/bench/bench_limits.py build/nbcanvas [--requests 2000]
        [--out docs/BENCHMARKS.md]

Two services from the same binary and the same keys file, a tenant whose
requests_per_minute is so high it never refuses: the baseline keeps the
rate in its own memory (no Redis), the other in a redis-server started
here on loopback TCP (the cluster's own path: one EVAL a request). The
same client sends GET /v1/sessions (authenticated, the rate taken, a
list read: nothing else; with Redis the list also reads the stack's
directory, a second EVAL) one after the other on one keep-alive
connection, in alternating rounds so drift hits both alike. Reported:
the median and 99th percentile of a request, and their ratios."""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
sys.path.insert(0, HERE)
from harness import Service, free_port  # noqa: E402
from bench import write_report  # noqa: E402


def timed_requests(svc, n):
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=30)
    headers = {"Authorization": "Bearer " + svc.key}
    took = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("GET", "/v1/sessions", headers=headers)
        r = conn.getresponse()
        r.read()
        took.append(time.perf_counter() - t0)
        assert r.status == 200, r.status
    conn.close()
    return took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    folder = tempfile.mkdtemp(prefix="nbcanvas-bench-limits-")
    made = subprocess.run([args.binary, "key", "new", "bench"], capture_output=True,
                          text=True, check=True).stdout
    key = made.split("key: ")[1].split()[0]
    entry = dict(json.loads(made.split("entry: ")[1].strip()),
                 requests_per_minute=1000000, max_sessions=8, metrics=True)
    keys = os.path.join(folder, "keys.json")
    with open(keys, "w") as f:
        json.dump([entry], f)
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", folder],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    common = {"api_keys_file": keys, "pool_size": 0, "max_sessions": 8}
    alone = Service(args.binary, common, key=key)
    shared = Service(args.binary, dict(common, cache_redis_url="redis://127.0.0.1:%d" % redis_port,
                                       replica_route="r1"), key=key)
    try:
        alone.start()
        shared.start()
        timed_requests(alone, 200)  # warm both
        timed_requests(shared, 200)
        times = {"alone": [], "shared": []}
        for _ in range(args.rounds):
            times["alone"] += timed_requests(alone, args.requests // args.rounds)
            times["shared"] += timed_requests(shared, args.requests // args.rounds)
        metrics = shared.get("/metrics").body.decode()
        assert "nbcanvas_limits_shared 1" in metrics, "the shared service did not use Redis"
    finally:
        alone.stop()
        shared.stop()
        redis.terminate()
        redis.wait()
        subprocess.run(["rm", "-rf", folder])

    def p99(v):
        return sorted(v)[int(len(v) * 0.99)]
    med = {k: statistics.median(v) for k, v in times.items()}
    tail = {k: p99(v) for k, v in times.items()}
    lines = [
        "### Issue 24: a tenant's rate and listing through Redis, per request",
        "",
        "`python3 tests/bench/bench_limits.py build/nbcanvas --requests %d`, %s, "
        "%d cores; GET /v1/sessions with a key whose rate (1,000,000 a minute) is "
        "taken, one keep-alive "
        "connection, %d requests each in %d alternating rounds."
        % (args.requests, time.strftime("%Y-%m-%d"), os.cpu_count(), args.requests,
           args.rounds),
        "",
        "| | median (ms) | p99 (ms) |",
        "|---|---|---|",
        "| rate in the replica's memory (baseline) | %.3f | %.3f |" % (med["alone"] * 1e3,
                                                                    tail["alone"] * 1e3),
        "| rate and listing in Redis (two EVALs on loopback) | %.3f | %.3f |" % (med["shared"] * 1e3,
                                                                 tail["shared"] * 1e3),
        "| ratio | %.2fx | %.2fx |" % (med["shared"] / med["alone"],
                                       tail["shared"] / tail["alone"]),
    ]
    write_report(lines, args.out)


if __name__ == "__main__":
    main()
