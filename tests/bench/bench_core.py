#!/usr/bin/env python3
"""The core's costs against the floor and the route (issue 21), in one run
on one image, so the ratios hold however noisy the machine is. Not part of
the test suite.

    python3 tests/bench/bench_core.py build/nbcanvas [--seconds 40]
        [--runs 10] [--runtime runsc] [--out docs/BENCHMARKS.md]

- the floor: a container of the notebook image whose one Python imports
  the kernel (ipykernel's kernel app) and the libraries a pool's kernel
  preloads, and draws the chart: what any fresh sandbox must pay;
- the route: `docker run ... jupyter nbconvert --execute --no-input --to
  html` of the chart notebook;
- nbcanvas with its default settings: distinct chart renders.

Each of the three runs in 4 loops (clients) for --seconds: CPU per render
(machine-wide, /proc/stat; nbcanvas's counted net of its pool's stock, as
bench.py counts it) and throughput. Then, on nbcanvas: the warm chart p50
against the route's, ten renders back to back on a quiet service, a
notebook of 1000 one-line cells against the route's time for it, a
session's `1 + 1` execute, and an idle pool sandbox's memory.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
sys.path.insert(0, HERE)
from harness import Service  # noqa: E402
from bench import (cpu_busy_seconds, notebook, pct, pool_idle,  # noqa: E402
                   pool_metric, wait_pool, write_report)

IMAGE = "nbcanvas/python:latest"
CHART = ("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2, 4])\n"
         "plt.title('chart')\nplt.show()")
FLOOR = ("import ipykernel.kernelapp, io, numpy, pandas, matplotlib\n"
         "matplotlib.use('agg')\nimport matplotlib.pyplot as plt\n"
         "plt.plot([1, 3, 2, 4]); plt.title('chart')\n"
         "plt.gcf().savefig(io.BytesIO(), format='png')\n")


class Containers:
    """The floor and the route, as docker run commands."""

    def __init__(self, runtime):
        self.dir = tempfile.mkdtemp(prefix="nbcanvas-core-")
        os.chmod(self.dir, 0o755)
        for name, cells in (("chart", [CHART]),
                            ("cells1000", ["x = %d" % i for i in range(1000)])):
            with open(os.path.join(self.dir, name + ".ipynb"), "w") as f:
                json.dump(notebook(cells), f)
        self.base = ["docker", "run", "--rm", "--network", "none", "-v",
                     self.dir + ":/nb:ro", "-w", "/tmp", "-e", "HOME=/tmp",
                     "-e", "MPLCONFIGDIR=/tmp/mpl"]
        if runtime:
            self.base += ["--runtime", runtime]

    def floor(self):
        subprocess.run(self.base + [IMAGE, "python3", "-c", FLOOR], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def route(self, name="chart"):
        t0 = time.perf_counter()
        subprocess.run(self.base + [IMAGE, "sh", "-c",
                                    "cp /nb/%s.ipynb . && jupyter nbconvert --execute "
                                    "--no-input --to html %s.ipynb" % (name, name)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0


def settle(svc, timeout=180):
    """Waits until the pool is as deep as it wants to be now (its floor may
    have grown once a sandbox was measured), full and starting nothing, and
    a moment more: a measure made while it refills measures the refill."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (pool_idle(svc) >= pool_metric(svc, "nbcanvas_pool_size") and
                pool_metric(svc, "nbcanvas_pool_starting") == 0):
            break
        time.sleep(0.1)
    time.sleep(2)


def loops(fn, clients, seconds):
    """fn() in `clients` threads for `seconds`: (results, seconds, CPU-s)."""
    done, lock = [], threading.Lock()
    stop = time.time() + seconds

    def worker():
        while time.time() < stop:
            r = fn()
            with lock:
                done.append(r)

    cpu0, t0 = cpu_busy_seconds(), time.time()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done, time.time() - t0, cpu_busy_seconds() - cpu0


def cell_profile(nb):
    """Per cell of an executed notebook, medians in ms: the kernel's own
    time (iopub busy to idle) and the turnaround from one cell's idle to
    the next one's busy."""
    import datetime

    def when(s):
        return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ")

    spans = [c["metadata"]["execution"] for c in nb["cells"]
             if c.get("metadata", {}).get("execution")]
    kernel = [(when(t["iopub.status.idle"]) - when(t["iopub.status.busy"]))
              .total_seconds() for t in spans]
    turn = [(when(b["iopub.status.busy"]) - when(a["iopub.status.idle"]))
            .total_seconds() for a, b in zip(spans, spans[1:])]
    return statistics.median(kernel) * 1000, statistics.median(turn) * 1000


def chart_body(tag):
    return {"cells": ["# %s\n" % tag + CHART], "cache": False}


def render(svc, body):
    t0 = time.perf_counter()
    r = svc.render(body)
    assert r.status == 200, r
    return time.perf_counter() - t0, r.header("x-nbcanvas-sandbox")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=40)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--runtime", default="")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    c = Containers(args.runtime)
    config = {"runtime": args.runtime} if args.runtime else {}
    n = [0]

    def tag():
        n[0] += 1
        return "r%d-%f" % (n[0], time.time())

    print("the floor", flush=True)
    floor_done, floor_s, floor_cpu = loops(c.floor, args.clients, args.seconds)
    print("the route", flush=True)
    route_done, route_s, route_cpu = loops(c.route, args.clients, args.seconds)
    route_seq = [c.route() for _ in range(max(3, args.runs // 2))]
    route_1000 = [c.route("cells1000") for _ in range(2)]

    svc = Service(args.binary, config).start()
    try:
        settle(svc)
        size = pool_metric(svc, "nbcanvas_pool_size")
        footprint = pool_metric(svc, "nbcanvas_pool_sandbox_footprint_bytes")
        print("quiet back to back", flush=True)
        b2b = [render(svc, chart_body(tag())) for _ in range(10)]
        print("warm, sequential", flush=True)
        warm = []
        for _ in range(args.runs):
            settle(svc)
            t, kind = render(svc, chart_body(tag()))
            if kind == "warm":
                warm.append(t)
        print("1000 cells", flush=True)
        wait_pool(svc, 1)
        big = []
        for _ in range(2):
            wait_pool(svc, 1)
            big.append(render(svc, {"cells": ["# %s\nx = 0" % tag()] +
                                    ["x = %d" % i for i in range(1, 1000)],
                                    "cache": False, "timeout_s": 300})[0])
        # where a cell's time goes: the kernel's own (busy to idle, its
        # clock) and the turnaround between one cell's idle and the next's
        # busy (the client's work and the transport both ways)
        wait_pool(svc, 1)
        r = svc.render({"cells": ["# %s\nx = 0" % tag()] +
                        ["x = %d" % i for i in range(1, 1000)],
                        "cache": False, "timeout_s": 300, "format": "ipynb"})
        assert r.status == 200, r
        kernel_ms, turn_ms = cell_profile(r.json())
        print("session execute", flush=True)
        sid = svc.post("/v1/sessions", {}).json()["id"]
        settle(svc)
        execs, files, gets = [], [], []
        for _ in range(max(20, args.runs * 2)):
            t0 = time.perf_counter()
            r = svc.post("/v1/sessions/%s/execute" % sid, {"code": "1 + 1"})
            execs.append(time.perf_counter() - t0)
            assert r.status == 200, r
            t0 = time.perf_counter()
            r = svc.get("/v1/sessions/%s/files/none" % sid)
            files.append(time.perf_counter() - t0)
            assert r.status == 404, r
            t0 = time.perf_counter()
            r = svc.get("/v1/sessions/%s" % sid)
            gets.append(time.perf_counter() - t0)
        svc.request("DELETE", "/v1/sessions/" + sid)
        print("throughput", flush=True)
        settle(svc)
        stock0 = pool_idle(svc)
        nb_done, nb_s, nb_cpu_all = loops(lambda: render(svc, chart_body(tag()))[1],
                                          args.clients, args.seconds)
        stock1 = pool_idle(svc)
    finally:
        svc.stop()
    nb_net = len(nb_done) - max(0, stock0 - stock1)

    floor_cpu_r = floor_cpu / max(1, len(floor_done))
    route_cpu_r = route_cpu / max(1, len(route_done))
    nb_cpu_r = nb_cpu_all / max(1, nb_net)
    floor_tp, route_tp, nb_tp = (len(floor_done) / floor_s, len(route_done) / route_s,
                                 nb_net / nb_s)
    r50 = statistics.median(route_seq)
    b2b_t = [t for t, _ in b2b]
    mode = "gVisor (runsc, ptrace)" if args.runtime else "runc"

    def verdict(ok):
        return "met" if ok else "**NOT met**"

    lines = ["### The core (issue 21), %s: against the floor and the route" % mode, "",
             "| what | floor | route (`docker run … nbconvert`) | nbcanvas | nbcanvas / floor "
             "| target |",
             "|---|---|---|---|---|---|",
             "| CPU-s per chart render, %d loops for %d s | %.2f | %.2f | %.2f | %.2fx | "
             "<= 1.15x: %s |" % (args.clients, args.seconds, floor_cpu_r, route_cpu_r, nb_cpu_r,
                                  nb_cpu_r / floor_cpu_r, verdict(nb_cpu_r <= 1.15 * floor_cpu_r)),
             "| renders/s, same loops | %.2f | %.2f | %.2f | %.2fx | >= 0.85x: %s |"
             % (floor_tp, route_tp, nb_tp, nb_tp / floor_tp, verdict(nb_tp >= 0.85 * floor_tp)),
             "", "| what | nbcanvas | / route p50 | target |", "|---|---|---|---|",
             "| warm chart p50 (route p50 %.0f ms) | %.0f ms | %.3f | <= 0.06: %s |"
             % (r50 * 1000, pct(warm, 50) * 1000, pct(warm, 50) / r50,
                verdict(pct(warm, 50) / r50 <= 0.06)),
             "| ten back to back on a quiet service, default settings: p90 | %.0f ms "
             "(%d cold) | %.3f | <= 0.15: %s |"
             % (pct(b2b_t, 90) * 1000, sum(1 for _, k in b2b if k == "cold"),
                pct(b2b_t, 90) / r50, verdict(pct(b2b_t, 90) / r50 <= 0.15)),
             "| 1000 one-line cells (route %.1f s for the same notebook) | %.2f s | %.3f "
             "(of its route) | <= 0.2: %s |"
             % (statistics.median(route_1000), statistics.median(big),
                statistics.median(big) / statistics.median(route_1000),
                verdict(statistics.median(big) / statistics.median(route_1000) <= 0.2)),
             "| a session's `1 + 1` execute p50 (p95) | %.1f ms (%.1f) | | <= half of 8.2 ms: "
             "%s |" % (pct(execs, 50) * 1000, pct(execs, 95) * 1000,
                       verdict(pct(execs, 50) * 1000 <= 4.1)),
             "| an idle pool sandbox's memory | %.0f MB | | < 175 MB: %s |"
             % (footprint / 1e6, verdict(0 < footprint < 175e6)),
             "",
             "Where a cell's time goes (the 1000-cell notebook, medians, the "
             "kernel's own clock): the kernel from busy to idle %.2f ms; from "
             "one cell's idle to the next one's busy (the service's work and "
             "the engine's attach both ways) %.2f ms. A session's call, "
             "medians: `1 + 1` executed %.1f ms; a file that is not there "
             "(one frame to the relay and its answer, no kernel) %.1f ms; the "
             "session's description (HTTP only) %.1f ms."
             % (kernel_ms, turn_ms, pct(execs, 50) * 1000, pct(files, 50) * 1000,
                pct(gets, 50) * 1000),
             "",
             "Back to back, in order: %s." % ", ".join("%.0f %s" % (t * 1000, k)
                                                        for t, k in b2b),
             "",
             "Command: `python3 tests/bench/bench_core.py build/nbcanvas --seconds %d "
             "--runs %d%s --out docs/BENCHMARKS.md`."
             % (args.seconds, args.runs, " --runtime " + args.runtime if args.runtime else "")]
    write_report(lines, args.out)


if __name__ == "__main__":
    main()
