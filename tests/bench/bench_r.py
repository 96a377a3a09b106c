#!/usr/bin/env python3
"""R notebooks (issue 25): a warm R chart render against `docker run ...
jupyter nbconvert --execute` of the same notebook in the same image, CPU
per render, and an idle R sandbox's memory. One run, one machine. Not part
of the test suite.

    python3 tests/bench/bench_r.py build/nbcanvas [--runs 10]
        [--out docs/BENCHMARKS.md]

- the route: `docker run --rm --network none nbcanvas/r jupyter nbconvert
  --execute --no-input --to html` of the chart notebook (ggplot2 of
  mtcars), timed from the command to its exit, CPU machine-wide;
- nbcanvas: the same notebook rendered (distinct each time: no cache)
  from a warm R sandbox, timed as a client sees it; CPU machine-wide from
  the request to the pool's refill (what a render costs in all).
"""
import argparse
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
from harness import Service  # noqa: E402
from bench import cpu_busy_seconds, pct, write_report  # noqa: E402

IMAGE = "nbcanvas/r:latest"


def chart_cells(tag):
    return ["library(ggplot2)\n"
            "ggplot(mtcars, aes(wt, mpg, colour = factor(cyl))) +\n"
            "    geom_point(size = 3) + labs(title = '%s')" % tag]


def metric(svc, name):
    for line in svc.get("/metrics").body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def r_idle(svc):
    return metric(svc, 'nbcanvas_kernel_pool_idle{kernel="ir"}')


def wait_r_pool(svc, timeout=120):
    deadline = time.time() + timeout
    while r_idle(svc) < 1 and time.time() < deadline:
        time.sleep(0.05)


def route(tag):
    nb = {"cells": [{"cell_type": "code", "source": c, "metadata": {},
                     "outputs": [], "execution_count": None}
                    for c in chart_cells(tag)],
          "metadata": {"kernelspec": {"name": "ir", "display_name": "R",
                                      "language": "R"}},
          "nbformat": 4, "nbformat_minor": 5}
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "chart.ipynb"), "w") as f:
            json.dump(nb, f)
        os.chmod(d, 0o777)
        cpu0, t0 = cpu_busy_seconds(), time.perf_counter()
        subprocess.run(
            ["docker", "run", "--rm", "--network", "none", "-v", d + ":/work",
             "-w", "/work", "-e", "HOME=/tmp", IMAGE, "jupyter", "nbconvert",
             "--execute", "--no-input", "--to", "html", "chart.ipynb"],
            check=True, capture_output=True)
        took = time.perf_counter() - t0
        cpu = cpu_busy_seconds() - cpu0
        assert os.path.getsize(os.path.join(d, "chart.html")) > 10000
    return took, cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--route-runs", type=int, default=3)
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    routes = [route("route %d" % i) for i in range(args.route_runs)]
    svc = Service(args.binary, {"pool_size": 1, "r_pool_size": 1}).start()
    warm, cpus = [], []
    try:
        wait_r_pool(svc)
        time.sleep(3)  # the refill's CPU weight settles
        for i in range(args.runs):
            wait_r_pool(svc)
            time.sleep(1)
            cpu0, t0 = cpu_busy_seconds(), time.perf_counter()
            r = svc.render({"kernel": "ir", "cells": chart_cells("nbcanvas %d %f" % (i, t0)),
                            "cache": False})
            took = time.perf_counter() - t0
            assert r.status == 200, r
            assert r.header("x-nbcanvas-sandbox") == "warm", r.headers
            wait_r_pool(svc)  # its refill belongs to its cost
            cpus.append(cpu_busy_seconds() - cpu0)
            warm.append(took)
        footprint = metric(
            svc, 'nbcanvas_kernel_pool_sandbox_footprint_bytes{kernel="ir"}')
    finally:
        svc.stop()

    r50 = statistics.median(t for t, _ in routes)
    rcpu = statistics.median(c for _, c in routes)
    w50 = pct(warm, 50)
    lines = [
        "### R notebooks: a warm R chart against the route (%s)" % time.strftime("%Y-%m-%d"),
        "",
        "`python3 tests/bench/bench_r.py build/nbcanvas --runs %d`: the same ggplot2"
        " chart notebook; the route is `docker run --rm --network none nbcanvas/r"
        " jupyter nbconvert --execute --no-input --to html` (%d runs); nbcanvas"
        " renders it from a warm R sandbox, distinct each time (no cache); CPU is"
        " machine-wide, for nbcanvas from the request to the pool's refill."
        % (args.runs, args.route_runs),
        "",
        "| | nbcanvas (warm) | the route | ratio | target |",
        "|---|---|---|---|---|",
        "| R chart render, p50 | %.0f ms | %.0f ms | %.3fx | <= 0.1x: %s |"
        % (w50 * 1000, r50 * 1000, w50 / r50, "met" if w50 / r50 <= 0.1 else "not met"),
        "| R chart render, p90 | %.0f ms | | | |" % (pct(warm, 90) * 1000),
        "| CPU per render (with its refill) | %.2f CPU-s | %.2f CPU-s | %.2fx | |"
        % (statistics.median(cpus), rcpu, statistics.median(cpus) / rcpu),
        "| an idle R pool sandbox's memory | %.0f MB | | | |" % (footprint / 1e6),
    ]
    write_report(lines, args.out)


if __name__ == "__main__":
    main()
