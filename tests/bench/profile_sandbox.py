#!/usr/bin/env python3
"""Where a fresh sandbox's CPU goes, phase by phase, machine-wide. Not part
of the test suite.

    python3 tests/bench/profile_sandbox.py [--runs N] [--runtimes runc,crun,runsc]
        [--out docs/BENCHMARKS.md]

Each stage is a fresh container of the notebook image (`docker run --rm
--network none`, as a sandbox) doing a little more than the stage before:

  engine      the container runs `true`: dockerd, containerd, the shim and
              the runtime creating, starting and removing it
  python      + one Python interpreter
  imports     + the driver's libraries (nbformat, nbclient, nbconvert,
              jupyter_client)
  kernel      + an IPython kernel started (a second interpreter, ZMQ) and
              shut down
  preload     + the pool's preload in the kernel (numpy, pandas,
              matplotlib, one figure drawn)
  execute     + the chart example's cell executed
  export      + the HTML export with nbconvert's lab template

(The stages are those of the sandbox before issue 21, whose Python driver
imported nbclient and nbconvert in every sandbox; bench_core.py measures
today's sandbox against the floor instead.)

A stage's cost is its busy CPU time (all processes, from /proc/stat) less
the stage before, median of N runs, on an otherwise idle machine.
"""
import argparse
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import write_report, cpu_busy_seconds  # noqa: E402

IMAGE = "nbcanvas/python:latest"
STAGES = ["engine", "python", "imports", "kernel", "preload", "execute", "export"]

# Run inside the container as `python3 -c SCRIPT STAGE`.
SCRIPT = r'''
import sys
stage = sys.argv[1]
order = %r
want = order.index(stage)
if want >= 2:
    import nbformat, nbclient, nbconvert, jupyter_client
if want >= 3:
    sys.path.insert(0, "/opt/nbcanvas")
    import nbcanvas_driver as d
    from nbclient.util import run_sync
    km, kc = d.start_kernel("python3", want >= 4)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    if want >= 5:
        from nbclient import NotebookClient
        nb.cells.append(nbformat.v4.new_code_cell(
            "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2, 4])\n"
            "plt.title('chart')\nplt.show()"))
        client = NotebookClient(nb, km=km, kc=kc)
        client.km, client.kc = km, kc
        run_sync(client.async_execute_cell)(nb.cells[0], 0)
    if want >= 6:
        from nbconvert import HTMLExporter
        ex = HTMLExporter(template_name="lab", exclude_input=True)
        html, _ = ex.from_notebook_node(nb)
        assert len(html) > 1000
    kc.stop_channels()
    run_sync(km.shutdown_kernel)(now=True)
''' % STAGES


def one(stage, runtime):
    cmd = ["docker", "run", "--rm", "--network", "none", "-w", "/tmp",
           "-e", "HOME=/tmp", "-e", "MPLCONFIGDIR=/tmp/mpl"]
    if runtime != "runc":
        cmd += ["--runtime", runtime]
    cmd += [IMAGE]
    cmd += ["true"] if stage == "engine" else ["python3", "-c", SCRIPT, stage]
    c0 = cpu_busy_seconds()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return cpu_busy_seconds() - c0


def profile(runtime, runs):
    medians = {}
    for stage in STAGES:
        one(stage, runtime)  # warm the page cache
        medians[stage] = statistics.median(one(stage, runtime) for _ in range(runs))
    return medians


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--runtimes", default="runc")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    runtimes = args.runtimes.split(",")
    results = {rt: profile(rt, args.runs) for rt in runtimes}

    head = "| phase | " + " | ".join("%s CPU-s" % rt for rt in runtimes) + " |"
    lines = ["#### A fresh sandbox's CPU, phase by phase (median of %d runs)\n" % args.runs,
             head, "|---|" + "---|" * len(runtimes)]
    for i, stage in enumerate(STAGES):
        cells = []
        for rt in runtimes:
            m = results[rt]
            cells.append("%.2f" % (m[stage] - (m[STAGES[i - 1]] if i else 0)))
        lines.append("| %s | %s |" % (stage, " | ".join(cells)))
    lines.append("| **all** (the export stage) | %s |"
                 % " | ".join("**%.2f**" % results[rt]["export"] for rt in runtimes))
    lines += ["", "Command: `python3 tests/bench/profile_sandbox.py --runs %d --runtimes %s"
              " --out docs/BENCHMARKS.md`." % (args.runs, args.runtimes)]
    write_report(lines, args.out)


if __name__ == "__main__":
    main()
