#!/usr/bin/env python3
"""Sessions benchmark: what a live kernel saves an agent, in one run on one
image so the ratios hold however noisy the machine is. Not part of the
test suite.

    python3 tests/bench/bench_sessions.py build/nbcanvas [--runs N]
        [--out docs/BENCHMARKS.md]

Measures, each N times: (a) the design's `docker run ... nbconvert` route
for a `1 + 1` notebook; a warm render of the same cell; creating a session
from a full pool; one `1 + 1` execute in a live session (the whole round
trip over HTTP); and an agent's third step sent as one execute in its
session, against the same step without a session (a render of all three
cells).
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import write_report, Baseline, fmt_ms, pct, wait_pool  # noqa: E402
from harness import Service  # noqa: E402

STEPS = ["import pandas as pd\nimport numpy as np\n"
         "df = pd.DataFrame({'g': np.arange(100000) % 7, 'v': np.random.rand(100000)})",
         "summary = df.groupby('g').v.mean()",
         "summary.round(3).to_dict()"]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    svc = Service(args.binary, {"pool_size": 2, "max_sessions": 4}).start()
    baseline = Baseline("")
    res = {k: [] for k in ("a", "render", "create", "execute", "replay",
                           "step")}
    try:
        wait_pool(svc, 2)
        for i in range(args.runs):
            res["a"].append(baseline.run("print"))
            wait_pool(svc, 2)
            t, r = timed(lambda: svc.render({"cells": ["# %d\n1 + 1" % i],
                                             "cache": False, "format": "json"}))
            assert r.status == 200, r
            res["render"].append(t)
            wait_pool(svc, 2)
            t, r = timed(lambda: svc.post("/v1/sessions", {}))
            assert r.status == 201, r
            res["create"].append(t)
            sid = r.json()["id"]
            for step in STEPS[:2]:
                assert svc.post("/v1/sessions/%s/execute" % sid,
                                {"code": step}).status == 200
            for _ in range(5):
                t, r = timed(lambda: svc.post("/v1/sessions/%s/execute" % sid,
                                              {"code": "1 + 1"}))
                assert r.status == 200 and r.json()["status"] == "ok", r
                res["execute"].append(t)
            t, r = timed(lambda: svc.post("/v1/sessions/%s/execute" % sid,
                                          {"code": STEPS[2]}))
            assert r.status == 200, r
            res["step"].append(t)
            assert svc.request("DELETE", "/v1/sessions/" + sid).status == 204
            wait_pool(svc, 2)
            t, r = timed(lambda: svc.render({"cells": ["# %d" % i] + STEPS,
                                             "cache": False, "format": "json"}))
            assert r.status == 200, r
            res["replay"].append(t)
    finally:
        baseline.close()
        svc.stop()

    a50 = pct(res["a"], 50)
    row = lambda name, k: "| %s | %s | %s | %.3f |" % (
        name, fmt_ms(pct(res[k], 50)), fmt_ms(pct(res[k], 95)), pct(res[k], 50) / a50)
    lines = ["### Sessions (runc), %d runs (ms)\n" % args.runs,
             "| what | p50 | p95 | p50 / (a) p50 |", "|---|---|---|---|",
             row("(a) docker run nbconvert, `1 + 1`", "a"),
             row("warm render, `1 + 1`", "render"),
             row("create a session (pool full)", "create"),
             row("execute `1 + 1` in a live session", "execute"),
             row("an agent's third step: execute in its session", "step"),
             row("the same step without a session: render all three cells", "replay"),
             "",
             "Command: `python3 tests/bench/bench_sessions.py build/nbcanvas --runs %d "
             "--out docs/BENCHMARKS.md`." % args.runs]
    write_report(lines, args.out)


if __name__ == "__main__":
    main()
