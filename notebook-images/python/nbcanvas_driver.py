"""nbcanvas job driver: runs inside the sandbox container as its main process.

It does what `jupyter nbconvert --execute --no-input --to html` does, with
nbconvert's own ExecutePreprocessor and HTMLExporter, and adds what the
service needs around it:

1. Start the kernel at once and, with NBCANVAS_PRELOAD set, import the common
   libraries silently (no output, no execution count, clean user namespace),
   then print "nbcanvas:ready" on the protocol channel.
2. Wait for the service to upload the job with the Engine's archive API:
   .nbcanvas/input.ipynb, .nbcanvas/job.json, the request's files, and last the
   empty sentinel .nbcanvas/ready.
3. Execute with a deadline for the whole notebook (each cell may use only
   what is left of it), export HTML, and write the results into .nbcanvas/out/:
   notebook.ipynb (executed, partial on failure), index.html, status.json.
4. Print "nbcanvas:done" and wait to be removed (the results live on a tmpfs
   that disappears with the container, so the service fetches them first).

The protocol channel is the original stdout. Before the kernel starts, fd 1
is pointed at stderr so nothing the user's code writes can forge a message.
"""
import copy
import json
import os
import re
import sys
import time
import traceback

WORKDIR = "/home/sandbox"
JOBDIR = os.path.join(WORKDIR, ".nbcanvas")
OUTDIR = os.path.join(JOBDIR, "out")

_protocol = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
sys.stdout = sys.stderr


def say(word):
    _protocol.write("nbcanvas:%s\n" % word)
    _protocol.flush()


def now_ms():
    return int(time.monotonic() * 1000)


PRELOAD = """
def __nbcanvas_preload():
    import numpy, pandas, matplotlib
    import matplotlib.pyplot
__nbcanvas_preload()
del __nbcanvas_preload
"""


def start_kernel(kernel_name, preload):
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name=kernel_name)
    km.start_kernel(cwd=WORKDIR)
    if preload:
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        kc.execute_interactive(PRELOAD, silent=True, store_history=False,
                               timeout=60, output_hook=lambda msg: None)
        kc.stop_channels()
    return km


def wait_for_job():
    sentinel = os.path.join(JOBDIR, "ready")
    while not os.path.exists(sentinel):
        time.sleep(0.005)
    with open(os.path.join(JOBDIR, "job.json")) as f:
        return json.load(f)


def error_of(cell):
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return out
    return None


def execute(nb, job, km, status):
    from nbclient.exceptions import (CellExecutionError, CellTimeoutError,
                                     DeadKernelError)
    from nbconvert.preprocessors import ExecutePreprocessor

    deadline = time.monotonic() + float(job["timeout_s"])
    running = {"cell": None}

    class Executor(ExecutePreprocessor):
        def preprocess_cell(self, cell, resources, index):
            running["cell"] = index
            return super().preprocess_cell(cell, resources, index)

    def remaining(cell):
        return max(1, int(deadline - time.monotonic() + 0.999))

    ep = Executor(kernel_name=job["kernel"], timeout_func=remaining,
                  allow_errors=bool(job["allow_errors"]),
                  startup_timeout=60)
    try:
        ep.preprocess(nb, {"metadata": {"path": WORKDIR}}, km=km)
        status["status"] = "ok"
    except CellTimeoutError:
        status.update(status="timeout", cell=running["cell"])
    except DeadKernelError as e:
        status.update(status="kernel_died", cell=running["cell"],
                      message=str(e).strip().splitlines()[-1:] or "")
    except CellExecutionError as e:
        cell = nb.cells[running["cell"]]
        err = error_of(cell) or {}
        status.update(status="cell_error", cell=running["cell"],
                      ename=err.get("ename", e.ename),
                      evalue=err.get("evalue", e.evalue),
                      traceback=err.get("traceback", []))


XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>\s*")


def without_xml_declarations(nb):
    """A copy of nb whose SVG outputs have no <?xml ...?> line.

    Debian's nbconvert 6.5.3 passes SVG through clean_html (lxml), which
    refuses a str that carries an encoding declaration, so plain
    `jupyter nbconvert --to html` fails on every matplotlib SVG figure there.
    The declaration means nothing inside an HTML page; dropping it gives the
    page upstream nbconvert makes.
    """
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            svg = out.get("data", {}).get("image/svg+xml")
            if isinstance(svg, list):
                svg = "".join(svg)
            if isinstance(svg, str):
                out["data"]["image/svg+xml"] = XML_DECLARATION.sub("", svg)
    return nb


def export_html(nb, job):
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    c = Config()
    if not job["include_input"]:
        # What --no-input sets.
        c.TemplateExporter.exclude_input = True
        c.TemplateExporter.exclude_input_prompt = True
        c.TemplateExporter.exclude_output_prompt = True
    c.HTMLExporter.sanitize_html = bool(job.get("sanitize_html", False))
    exporter = HTMLExporter(config=c, template_name=job["template"])
    body, _ = exporter.from_notebook_node(without_xml_declarations(nb))
    return body


def write_results(nb, html, status):
    import nbformat

    os.makedirs(OUTDIR, exist_ok=True)
    if nb is not None:
        nbformat.write(nb, os.path.join(OUTDIR, "notebook.ipynb"))
    if html is not None:
        with open(os.path.join(OUTDIR, "index.html"), "w") as f:
            f.write(html)
    with open(os.path.join(OUTDIR, "status.json"), "w") as f:
        json.dump(status, f)


def run_job(job, km, t_ready):
    import nbformat

    status = {"status": "internal", "timing_ms": {"kernel": t_ready}}
    nb = html = None
    try:
        nb = nbformat.read(os.path.join(JOBDIR, "input.ipynb"), as_version=4)
        nbformat.validate(nb)
    except Exception as e:  # the uploaded notebook is not valid nbformat
        status.update(status="invalid_notebook",
                      message=str(e).strip().splitlines()[0][:500])
        return None, None, status
    t0 = now_ms()
    execute(nb, job, km, status)
    t1 = now_ms()
    status["timing_ms"]["execute"] = t1 - t0
    if status["status"] == "ok":
        html = export_html(nb, job)
        if len(html.encode()) > int(job["max_html_bytes"]):
            status.update(status="output_limit",
                          message="rendered page is %d bytes" % len(html))
            html = None
        status["timing_ms"]["export"] = now_ms() - t1
    return nb, html, status


def main():
    t0 = now_ms()
    kernel = os.environ.get("NBCANVAS_KERNEL", "python3")
    km = start_kernel(kernel, os.environ.get("NBCANVAS_PRELOAD") == "1")
    t_ready = now_ms() - t0
    say("ready")
    job = wait_for_job()
    try:
        nb, html, status = run_job(job, km, t_ready)
    except Exception:
        nb, html = None, None
        status = {"status": "internal",
                  "message": traceback.format_exc().splitlines()[-1]}
    write_results(nb, html, status)
    say("done")
    try:
        km.shutdown_kernel(now=True)
    except Exception:
        pass
    while True:  # the service removes the container once it has the results
        time.sleep(3600)


if __name__ == "__main__":
    main()
