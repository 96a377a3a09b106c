"""Conformance with nbclient, on nbclient's own test notebooks.

tests/data/nbclient holds nbclient's tests/files at v0.7.2, the version
Debian ships in the notebook image (unmodified; see SOURCES.md there).
Each notebook is executed twice in the same image: by the service (POST
/v1/render, format ipynb), whose executor is its own C client, and by
nbclient itself in a container of the notebook image. The executed
notebooks are compared cell by cell as nbclient's own test suite compares
them (tests/test_client.py: normalize_output, assert_notebooks_equal):
execution counts and outputs, with each output's metadata dropped, memory
addresses and IPython's cell names in tracebacks made uniform, and ANSI
escapes removed from tracebacks.

Of nbclient's notebooks, these are not compared, for the reason given:
  Interrupt         needs interrupt_on_timeout, which a render does not
                    offer (its deadline ends the notebook; a session's
                    interrupts: test_sessions.py)
  JupyterWidgets    needs ipywidgets, which the image leaves out (its
                    packages.txt says why)
  Output            no nbclient test uses it (widget output)
  Parallel Execute  tests nbclient's own concurrency, with a shared folder
  A and B
and these have their own checks below, as nbclient's tests check them:
Autokill and Error (the run fails, naming the cell), Disable Stdin (the
input() call is refused), Sleep1s (the timing metadata brackets what the
kernel measured).
"""
import base64
import datetime
import json
import os
import re
import subprocess

from harness import REPO, check_error, main

FILES = os.path.join(REPO, "tests", "data", "nbclient")
IMAGE = os.environ.get("NBCANVAS_NOTEBOOK_IMAGE", "nbcanvas/python:latest")

COMPARED = {
    # name: allow_errors, as nbclient's test_run_all_notebooks runs them
    "Other Comms": False,
    "Clear Output": False,
    "Empty Cell": False,
    "Factorials": False,
    "HelloWorld": False,
    "Inline Image": False,
    "Skip Exceptions with Cell Tags": False,
    "Skip Exceptions": True,
    "Skip Execution with Cell Tag": False,
    "SVG": False,
    "Unicode": False,
    "UnicodePy3": False,
    "update-display-id": False,
    "Check History in Memory": False,
}

# nbclient's reference run: the same image, nbclient's NotebookClient as
# `jupyter nbconvert --execute` drives it, the files beside the notebook.
REFERENCE = r"""
import base64, json, os, sys
import nbformat
from nbclient import NotebookClient
job = json.load(sys.stdin)
os.makedirs("/tmp/w", exist_ok=True)
os.chdir("/tmp/w")
for name, data in job["files"].items():
    with open(name, "wb") as f:
        f.write(base64.b64decode(data))
nb = nbformat.reads(json.dumps(job["notebook"]), as_version=4)
NotebookClient(nb, kernel_name="python3", allow_errors=job["allow_errors"],
               resources={"metadata": {"path": "/tmp/w"}}).execute()
sys.stdout.write(nbformat.writes(nb))
"""


def load(name):
    with open(os.path.join(FILES, name + ".ipynb")) as f:
        return json.load(f)


def files_for(name):
    if name == "Inline Image":
        with open(os.path.join(FILES, "python.png"), "rb") as f:
            return {"python.png": base64.b64encode(f.read()).decode()}
    return {}


def by_nbclient(nb, files, allow_errors):
    job = json.dumps({"notebook": nb, "files": files,
                      "allow_errors": allow_errors})
    p = subprocess.run(
        ["docker", "run", "--rm", "-i", "--network", "none",
         "-e", "HOME=/tmp", "-e", "IPYTHONDIR=/tmp/ipython",
         "-e", "JUPYTER_RUNTIME_DIR=/tmp/rt", "-e", "MPLCONFIGDIR=/tmp/mpl",
         IMAGE, "python3", "-c", REFERENCE],
        input=job.encode(), capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    return json.loads(p.stdout)


def by_nbcanvas(svc, nb, files, allow_errors):
    r = svc.render({"notebook": nb, "format": "ipynb",
                    "allow_errors": allow_errors, "cache": False,
                    "files": [{"name": n, "content_base64": b}
                              for n, b in files.items()]})
    assert r.status == 200, r
    return r.json()


ANSI = re.compile(r"\x1b\[(.*?)([@-~])")
HEXADDR = re.compile(r"0x[0-9a-f]{7,9}")
IPY_INPUT = [
    re.compile(r"(<ipython-input-\d+-[0-9a-f]+>|<IPY-INPUT>) in "
               r"(<module>|<cell line: \d>\(\))"),
    re.compile(r"((Cell|Input) In\s?\[\d+\]|<IPY-INPUT>), "
               r"(in )?(line \d|<module>|<cell line: \d>\(\))"),
]


def joined(value):
    return "".join(value) if isinstance(value, list) else value


def normalize_output(out):
    """nbclient's normalize_output, for the fields these notebooks have."""
    out = json.loads(json.dumps(out))
    out.pop("metadata", None)
    if "text" in out:
        out["text"] = HEXADDR.sub("<HEXADDR>", joined(out["text"]))
    for mime, value in out.get("data", {}).items():
        value = joined(value)
        if mime == "text/plain":
            value = HEXADDR.sub("<HEXADDR>", value)
        out["data"][mime] = value
    if "traceback" in out:
        lines = []
        for line in out["traceback"]:
            line = ANSI.sub("", line)
            for pattern in IPY_INPUT:
                line = pattern.sub("<IPY-INPUT>", line)
            lines.append(line)
        out["traceback"] = lines
    return out


def cells_of(nb):
    return [(c.get("execution_count"),
             [normalize_output(o) for o in c.get("outputs", [])])
            for c in nb["cells"] if c["cell_type"] == "code"]


def test_nbclient_notebooks_execute_as_nbclient_executes_them(svc):
    mismatched = []
    for name, allow_errors in sorted(COMPARED.items()):
        nb, files = load(name), files_for(name)
        ours = cells_of(by_nbcanvas(svc, nb, files, allow_errors))
        theirs = cells_of(by_nbclient(nb, files, allow_errors))
        if ours != theirs:
            mismatched.append((name, ours, theirs))
    for name, ours, theirs in mismatched:
        print("%s\n  nbcanvas: %s\n  nbclient: %s"
              % (name, json.dumps(ours)[:1500], json.dumps(theirs)[:1500]))
    assert not mismatched, [m[0] for m in mismatched]


def test_a_kernel_that_kills_itself_fails_the_run_at_its_cell(svc):
    # nbclient: DeadKernelError
    r = svc.render({"notebook": load("Autokill")})
    check_error(r, 422, "cell_error")
    assert r.json()["error"]["ename"] == "DeadKernelError"
    assert r.json()["error"]["cell"] == 0


def test_an_error_fails_the_run_at_its_cell(svc):
    # nbclient: CellExecutionError
    r = svc.render({"notebook": load("Error")})
    check_error(r, 422, "cell_error")
    assert r.json()["error"]["ename"] == "ZeroDivisionError"


def test_input_is_refused(svc):
    # nbclient: allow_stdin is off; the kernel says so as an error output
    r = svc.render({"notebook": load("Disable Stdin"), "format": "json",
                    "allow_errors": True})
    assert r.status == 200, r
    errors = [o for c in r.json()["cells"] for o in c["outputs"]
              if o["output_type"] == "error"]
    assert len(errors) == 1, errors
    assert errors[0]["ename"] == "StdinNotImplementedError"
    assert "frontend does not support input requests" in errors[0]["evalue"]


def test_timing_metadata_brackets_what_the_kernel_measured(svc):
    # nbclient's test_sleep: the cell's timestamps (the kernel's clock)
    # within 100 ms of the times the code itself took
    r = svc.render({"notebook": load("Sleep1s"), "format": "ipynb"})
    assert r.status == 200, r
    cells = r.json()["cells"]
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"

    def when(s):
        return datetime.datetime.strptime(s, fmt)

    t0 = when(joined(cells[2]["outputs"][0]["text"]))
    t1 = when(joined(cells[3]["outputs"][0]["text"]))
    timing = cells[1]["metadata"]["execution"]
    assert set(timing) == {"iopub.status.busy", "iopub.execute_input",
                           "shell.execute_reply", "iopub.status.idle"}
    start, end = when(timing["iopub.execute_input"]), \
        when(timing["shell.execute_reply"])
    assert abs((start - t0).total_seconds()) < 0.1, (start, t0)
    assert abs((end - t1).total_seconds()) < 0.1, (end, t1)


if __name__ == "__main__":
    main(globals())
