#!/usr/bin/env python3
"""nbcanvas benchmark: the design's own `docker run ... nbconvert` route
against nbcanvas cold, warm and cached, in one run on one image, so the
ratios hold however noisy the machine is. Not part of the test suite.

    python3 tests/bench/bench.py build/nbcanvas [--runs N] [--seconds S]
        [--runtime runsc] [--out docs/BENCHMARKS.md]

Writes a Markdown report (tables, targets, the command) to --out.
"""
import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
from harness import Service  # noqa: E402

IMAGE = "nbcanvas/python:latest"
SQLITE = os.path.join(REPO, "examples", "data", "shop.sqlite")

WORKLOADS = {
    "print": ["print(1 + 1)"],
    "chart": ["import matplotlib.pyplot as plt\nplt.plot([1, 3, 2, 4])\n"
              "plt.title('chart')\nplt.show()"],
    "sqlite-table": ["import sqlite3\nimport pandas as pd\n"
                     "con = sqlite3.connect('shop.sqlite')\n"
                     "pd.read_sql_query('SELECT c.country, COUNT(*) AS n, SUM(o.amount) AS total "
                     "FROM orders o JOIN customers c ON c.id = o.customer_id "
                     "GROUP BY c.country ORDER BY total DESC', con)"],
}


def notebook(cells):
    return {"nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                        "language": "python"}},
            "cells": [{"id": "c%d" % i, "cell_type": "code", "metadata": {},
                       "execution_count": None, "outputs": [], "source": src}
                      for i, src in enumerate(cells)]}


def request_body(name, nonce=None):
    cells = list(WORKLOADS[name])
    if nonce is not None:  # a different request each time: no cache hits
        cells[0] = "# run %s\n" % nonce + cells[0]
    body = {"cells": cells, "cache": nonce is None}
    if name == "sqlite-table":
        with open(SQLITE, "rb") as f:
            body["files"] = [{"name": "shop.sqlite",
                              "content_base64": base64.b64encode(f.read()).decode()}]
    return body


class Baseline:
    """(a) docker run --rm IMAGE jupyter nbconvert --execute --no-input --to html."""

    def __init__(self, runtime):
        self.dir = tempfile.mkdtemp(prefix="nbcanvas-bench-")
        os.chmod(self.dir, 0o755)
        shutil.copy(SQLITE, os.path.join(self.dir, "shop.sqlite"))
        for name, cells in WORKLOADS.items():
            with open(os.path.join(self.dir, name + ".ipynb"), "w") as f:
                json.dump(notebook(cells), f)
        self.runtime = runtime

    def run(self, name):
        cmd = ["docker", "run", "--rm", "--network", "none", "-v", self.dir + ":/nb:ro",
               "-w", "/tmp"]
        if self.runtime:
            cmd += ["--runtime", self.runtime]
        cmd += [IMAGE, "sh", "-c",
                "cp /nb/%s.ipynb /nb/shop.sqlite . && jupyter nbconvert --execute "
                "--no-input --to html %s.ipynb >/dev/null 2>&1" % (name, name)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        return time.perf_counter() - t0

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def pool_idle(svc):
    for line in svc.get("/metrics").body.decode().splitlines():
        if line.startswith("nbcanvas_pool_idle "):
            return int(line.split()[1])
    return 0


def wait_pool(svc, n=1, timeout=120):
    deadline = time.time() + timeout
    while pool_idle(svc) < n and time.time() < deadline:
        time.sleep(0.05)


def timed_render(svc, body, headers=None, expect=None):
    t0 = time.perf_counter()
    r = svc.render(body, headers=headers or {})
    took = time.perf_counter() - t0
    assert r.status == 200, r
    if expect:
        got = r.header("x-nbcanvas-sandbox") or "cache:" + r.header("x-nbcanvas-cache")
        assert got == expect, (got, expect)
    return took


def pct(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def sequential(svc, baseline, name, runs):
    res = {"a": [], "b": [], "c": [], "d": []}
    counter = [0]

    def nonce():
        counter[0] += 1
        return "%s-%d-%f" % (name, counter[0], time.time())

    timed_render(svc, request_body(name))  # fills the cache entry for (d)
    for _ in range(runs):
        res["a"].append(baseline.run(name))
        res["b"].append(timed_render(svc, request_body(name, nonce()),
                                     {"X-Nbcanvas-Route": "cold"}, "cold"))
        wait_pool(svc)
        res["c"].append(timed_render(svc, request_body(name, nonce()), None, "warm"))
        res["d"].append(timed_render(svc, request_body(name), None, "cache:hit"))
    return res


def pool_metric(svc, name):
    for line in svc.get("/metrics").body.decode().splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    return 0


def back_to_back(svc, n):
    """n distinct chart renders in a row with no pause, as a person re-running
    a cell would: (seconds, warm or cold) of each. Starts once the pool is
    as deep as it is now (its target) and full."""
    wait_pool(svc, pool_metric(svc, "nbcanvas_pool_size"))
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        r = svc.render(request_body("chart", "b2b-%d-%f" % (i, time.time())))
        assert r.status == 200, r
        out.append((time.perf_counter() - t0, r.header("x-nbcanvas-sandbox")))
    return out


def throughput(fn, clients, seconds):
    done = []
    stop = time.time() + seconds
    lock = threading.Lock()

    def worker(i):
        k = 0
        while time.time() < stop:
            kind = fn(i, k)
            k += 1
            with lock:
                done.append(kind)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done, time.time() - t0


def cpu_busy_seconds():
    """Machine-wide busy CPU time (all cores) from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def write_report(lines, out):
    """Prints the report and appends it to the file out (if given)."""
    report = "\n".join(lines) + "\n"
    print(report)
    if out:
        with open(out, "a") as f:
            f.write("\n" + report)


def fmt_ms(v):
    return "%.0f" % (v * 1000) if v >= 0.01 else "%.1f" % (v * 1000)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--runtime", default="")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--back-to-back", type=int, default=10)
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    config = {"pool_size": 2, "max_queue": 64}
    if args.runtime:
        config["runtime"] = args.runtime
    svc = Service(args.binary, config).start()
    baseline = Baseline(args.runtime)
    lines = []
    try:
        wait_pool(svc, 2)
        time.sleep(2)
        idle_rss = rss_kb(svc.proc.pid)
        results = {}
        for name in args.workloads.split(","):
            print("sequential:", name, flush=True)
            results[name] = sequential(svc, baseline, name, args.runs)

        # the first burst finds the pool at its floor; the demand deepens
        # it, and the second finds it as deep as that made it
        print("back to back", flush=True)
        b2b = back_to_back(svc, args.back_to_back)
        depth_after_first = pool_metric(svc, "nbcanvas_pool_size")
        b2b_again = back_to_back(svc, args.back_to_back)

        print("throughput: baseline", flush=True)
        cpu0 = cpu_busy_seconds()
        a_done, a_secs = throughput(lambda i, k: baseline.run("chart") and "a",
                                    args.clients, args.seconds)
        a_cpu = (cpu_busy_seconds() - cpu0) / max(1, len(a_done))
        wait_pool(svc, 2)
        print("throughput: nbcanvas", flush=True)

        def nb_call(i, k):
            r = svc.render(request_body("chart", "tp-%d-%d-%f" % (i, k, time.time())))
            assert r.status == 200, r
            return r.header("x-nbcanvas-sandbox")
        stock0 = pool_idle(svc)
        cpu0 = cpu_busy_seconds()
        c_done, c_secs = throughput(nb_call, args.clients, args.seconds)
        c_cpu_all = cpu_busy_seconds() - cpu0
        stock1 = pool_idle(svc)
        # sandboxes made before the window and used in it were not paid
        # for in it: they do not count (a stock that grew is not credited)
        c_net = len(c_done) - max(0, stock0 - stock1)
        c_cpu = c_cpu_all / max(1, c_net)
        peak_rss = rss_kb(svc.proc.pid)
    finally:
        baseline.close()
        svc.stop()

    mode = "gVisor (runsc, ptrace)" if args.runtime else "runc"
    lines.append("### %s — sequential latency, %d runs per cell (ms)\n" % (mode, args.runs))
    lines.append("| workload | (a) docker run nbconvert p50 / p95 | (b) nbcanvas cold p50 / p95 "
                 "| (c) nbcanvas warm p50 / p95 | (d) cache hit p50 / p95 | warm/(a) p50 | warm/(a) p95 |")
    lines.append("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        a50, a95 = pct(r["a"], 50), pct(r["a"], 95)
        row = [name] + ["%s / %s" % (fmt_ms(pct(r[k], 50)), fmt_ms(pct(r[k], 95)))
                        for k in "abcd"]
        row += ["%.3f" % (pct(r["c"], 50) / a50), "%.3f" % (pct(r["c"], 95) / a50)]
        lines.append("| " + " | ".join(row) + " |")
    b2b_p90 = None
    if "chart" in results and b2b:
        a50 = pct(results["chart"]["a"], 50)
        for label, series in (("first burst, the pool at its floor (%d)" % 2, b2b),
                              ("second burst, the pool as deep as the first made it "
                               "(%d)" % depth_after_first, b2b_again)):
            times = [t for t, _ in series]
            lines.append("")
            lines.append("Back to back, chart, %d distinct renders in a row with no pause, %s: "
                         "p50 %s ms, p90 %s ms (%.3f / %.3f of (a) p50); %d of them cold; "
                         "in order: %s."
                         % (len(series), label, fmt_ms(pct(times, 50)), fmt_ms(pct(times, 90)),
                            pct(times, 50) / a50, pct(times, 90) / a50,
                            sum(1 for _, k in series if k == "cold"),
                            ", ".join("%s %s" % (fmt_ms(t), k) for t, k in series)))
            b2b_p90 = pct(times, 90) / a50
    a_tp = len(a_done) / a_secs
    c_tp = c_net / c_secs
    warm_share = sum(1 for k in c_done if k == "warm") / max(1, len(c_done))
    lines.append("")
    lines.append("Throughput, chart workload, %d concurrent clients for %d s: "
                 "(a) %.2f renders/s; nbcanvas (no cache) %.2f renders/s = **%.2fx** "
                 "(%.0f%% of them warm, the rest cold when the pool was empty), counted "
                 "net of the pool's stock: %d renders, idle sandboxes %d before and %d after."
                 % (args.clients, args.seconds, a_tp, c_tp, c_tp / a_tp, warm_share * 100,
                    len(c_done), stock0, stock1))
    lines.append("")
    lines.append("CPU per render during those runs (all processes, from /proc/stat): "
                 "(a) %.2f CPU-s, nbcanvas %.2f CPU-s. With %d cores busy in both runs, "
                 "throughput is bounded by cores / CPU-s per render."
                 % (a_cpu, c_cpu, os.cpu_count()))
    lines.append("")
    lines.append("Service RSS: idle %.1f MB (pool full), after the load %.1f MB."
                 % (idle_rss / 1024, peak_rss / 1024))
    chart = results.get("chart")
    if chart:
        a50 = pct(chart["a"], 50)
        lines.append("")
        lines.append("Targets (chart): warm p50 <= 0.08 x (a) p50: %.3f %s; back-to-back p90 "
                     "(second burst) <= 0.15 x (a) p50: %s %s; cache hit p50 < 10 ms: %.1f ms %s; "
                     "throughput >= 3x: %.2fx %s; about 1 CPU-s or less per render: %.2f %s; "
                     "idle RSS < 30 MB: %.1f MB %s."
                     % (pct(chart["c"], 50) / a50, "met" if pct(chart["c"], 50) / a50 <= 0.08 else "NOT met",
                        "%.3f" % b2b_p90 if b2b_p90 is not None else "-",
                        "met" if b2b_p90 is not None and b2b_p90 <= 0.15 else "NOT met",
                        pct(chart["d"], 50) * 1000, "met" if pct(chart["d"], 50) < 0.01 else "NOT met",
                        c_tp / a_tp, "met" if c_tp / a_tp >= 3 else "NOT met",
                        c_cpu, "met" if c_cpu <= 1.1 else "NOT met",
                        idle_rss / 1024, "met" if idle_rss < 30 * 1024 else "NOT met"))
    write_report(lines, args.out)


if __name__ == "__main__":
    main()
