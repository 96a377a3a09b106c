"""nbcanvas job driver: runs inside the sandbox container as its main process.

It does what `jupyter nbconvert --execute --no-input --to html` does, with
nbconvert's own ExecutePreprocessor and HTMLExporter, and adds what the
service needs around it:

1. Start the kernel at once and, with NBCANVAS_PRELOAD set, import the common
   libraries silently (no output, no execution count, clean user namespace),
   then print "nbcanvas:ready" on the protocol channel.
2. Read the job from stdin: "nbcanvas:job <n> <nonce>\n" and an n-byte tar
   holding .nbcanvas/input.ipynb, .nbcanvas/job.json and the request's
   files, which are written into the working directory (the job's own
   parts are kept in memory only). The nonce is kept
   in memory only.
3. Execute with a deadline for the whole notebook (each cell may use only
   what is left of it) and export HTML; a failure keeps the executed part.
4. Stop the user's code (the kernel and anything it started), then send the
   results on the protocol channel as "nbcanvas:done <nonce> <n>\n"
   followed by an n-byte tar built in memory (status.json, notebook.ipynb,
   index.html), then wait to be removed. The user's code runs as the same
   user as this driver and the container's init, so it can reach their
   ends of the channel (/proc/1/fd/1) and write lines of its own; it cannot
   know the nonce, and the service takes only the done line that carries
   it.
   When the job asks for artifacts (a zip answer), the files the notebook
   wrote in the working directory are added under artifacts/: regular files
   only (never links), inputs left unchanged skipped, within a size cap.

With "events" in job.json, it also sends each cell's start and end and
each output as it comes: "nbcanvas:event <nonce> <json>\n" on the protocol
channel (the json escapes every newline, so an event is one line).

A job with "session" in job.json makes this sandbox a session's: the
kernel is kept, and the driver answers one job after another (kind
"open", then any number of "execute", "export" and "file"), each with its
own nonce, until the service removes the container. A cell past its
deadline is interrupted, not killed; a kernel that does not answer the
interrupt, or dies, ends the session ("session_over" in status.json).

The protocol channels are the original stdin and stdout. Before the kernel
starts, fd 0 is pointed at /dev/null and fd 1 at stderr, so the user's code
can neither read the job stream nor write into the results stream. The
service's side of this contract is src/driver.c (include/nbcanvas/driver.h);
tests/driver/record.py records this driver's messages for its tests.
"""
import copy
import hashlib
import json
import os
import re
import site
import sys
import time
import traceback

# The debugger is never used in a sandbox, and jupyter_client's lookup of
# the python3 kernel spec imports it through ipykernel (0.1 CPU-s of every
# sandbox); the kernel itself is started without it too (nbcanvas_kernel.py).
sys.modules.setdefault("debugpy", None)

WORKDIR = "/home/sandbox"
KERNEL_LAUNCHER = "/opt/nbcanvas/nbcanvas_kernel.py"
JOBDIR = os.path.join(WORKDIR, ".nbcanvas")

# The root is read-only: everything Jupyter, IPython and matplotlib write
# goes to the sandbox's /tmp. Set here, before any of them is imported, so
# the service passes only the job's own settings (NBCANVAS_*).
os.environ.update({
    "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime",
    "IPYTHONDIR": "/tmp/ipython",
    "MPLCONFIGDIR": "/tmp/matplotlib",
    "XDG_CACHE_HOME": "/tmp/cache",
    # Jupyter's per-user data folder would be ~/.local/share/jupyter, which
    # the user's code can write: nbconvert would take templates from it and
    # run them in this process. A folder on the read-only root instead.
    "JUPYTER_DATA_DIR": "/opt/nbcanvas/no-user-data",
    # Packages installed at run time go here (pip install --user): on the
    # working folder's tmpfs, under .nbcanvas so they are no artifacts.
    "PYTHONUSERBASE": "/home/sandbox/.nbcanvas/pkgs",
})
os.environ.pop("JUPYTER_PATH", None)
# jupyter_core also adds the user's site folder (~/.local/share/jupyter)
# while Python's user site is on: for this process it is not.
site.ENABLE_USER_SITE = False

# Buffered: a raw write to a pipe may be short (gVisor's are), and
# BufferedWriter loops until every byte is out; say() flushes.
_protocol = os.fdopen(os.dup(1), "wb")
_jobs = os.fdopen(os.dup(0), "rb", buffering=0)
os.dup2(2, 1)
_devnull = os.open(os.devnull, os.O_RDONLY)
os.dup2(_devnull, 0)
sys.stdout = sys.stderr


def cache_nbformat_validators():
    """nbformat 5.5 compiles its JSON-schema validator anew for every
    validate() call (about 25 ms each, and nbconvert validates after every
    preprocessor: a quarter of a second per export). The validator for a
    given schema version never changes, so keep the compiled one."""
    import functools
    import nbformat.validator

    nbformat.validator.get_validator = functools.lru_cache(maxsize=None)(
        nbformat.validator.get_validator)


def say(word, payload=b""):
    _protocol.write(b"nbcanvas:%s\n" % word.encode())
    _protocol.write(payload)
    _protocol.flush()


def now_ms():
    return int(time.monotonic() * 1000)


# Run silently in the kernel before the job: imports and one drawn figure,
# so the first user cell does not pay for them. Nothing is bound in the
# user's namespace, nothing is displayed, the execution count stays 0.
PRELOAD = """
def __nbcanvas_preload():
    import io
    import numpy, pandas, matplotlib
    import matplotlib.pyplot as plt
    fig = plt.figure()
    plt.plot([0, 1])
    fig.savefig(io.BytesIO(), format="png")
    plt.close(fig)
    pandas.DataFrame({"a": [1.5]})._repr_html_()
__nbcanvas_preload()
del __nbcanvas_preload
"""


def start_kernel(kernel_name, preload):
    """Starts the kernel and a ready client; returns (km, kc).

    The asynchronous manager and client are what nbclient uses by default:
    with blocking ones its concurrent polling of the shell and iopub
    channels turns into back-to-back waits, costing hundreds of ms a cell.
    """
    from jupyter_client.manager import AsyncKernelManager
    from nbclient.util import run_sync

    km = AsyncKernelManager(kernel_name=kernel_name)
    argv = km.kernel_spec.argv  # the spec is loaded once and kept
    for i in range(len(argv) - 1):
        if argv[i:i + 2] == ["-m", "ipykernel_launcher"]:
            argv[i:i + 2] = [KERNEL_LAUNCHER]  # without debugpy and jedi
            break
    # nbclient's own default: history in memory, not in a sqlite file that
    # every cell would write to.
    run_sync(km.start_kernel)(
        cwd=WORKDIR, extra_arguments=["--HistoryManager.hist_file=:memory:"])
    kc = km.client()
    kc.start_channels()
    run_sync(kc.wait_for_ready)(timeout=60)
    if preload:
        run_sync(kc.execute_interactive)(
            PRELOAD, silent=True, store_history=False, timeout=60,
            output_hook=lambda msg: None)
    return km, kc


INPUTS = {}  # path -> sha256 of each file the job brought


def read_exactly(n):
    chunks, left = [], n
    while left > 0:
        data = _jobs.read(min(left, 1 << 20))
        if not data:
            raise EOFError("the job stream ended early")
        chunks.append(data)
        left -= len(data)
    return b"".join(chunks)


def safe_path(name):
    """The path of a tar member inside the working directory, or None."""
    parts = name.split("/")
    if name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        return None
    return os.path.join(WORKDIR, *parts)


def wait_for_job():
    import io
    import tarfile

    header = b""
    while not header.endswith(b"\n") and len(header) < 64:
        byte = _jobs.read(1)
        if not byte:
            raise EOFError("no job arrived")
        header += byte
    word, size, nonce = header.decode().split()
    if word != "nbcanvas:job":
        raise ValueError("bad job header")
    data = read_exactly(int(size))
    job = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar:
            # The job's own parts stay in memory: in a session, the code
            # of an earlier call could have put anything at their paths.
            if member.name in (".nbcanvas/job.json", ".nbcanvas/input.ipynb"):
                job[member.name] = tar.extractfile(member).read()
                continue
            path = safe_path(member.name.rstrip("/"))
            if path is None:
                continue
            if member.isdir():
                os.makedirs(path, exist_ok=True)
            elif member.isfile():
                os.makedirs(os.path.dirname(path), exist_ok=True)
                data = tar.extractfile(member).read()
                write_new(path, data)
                INPUTS[path] = hashlib.sha256(data).digest()
    JOB_NOTEBOOK[0] = job.get(".nbcanvas/input.ipynb", b"")
    return json.loads(job[".nbcanvas/job.json"]), nonce


JOB_NOTEBOOK = [b""]  # the current job's .nbcanvas/input.ipynb


def job_notebook():
    import nbformat

    return nbformat.reads(JOB_NOTEBOOK[0].decode(), as_version=4)


def write_new(path, data):
    """Writes a file afresh: whatever was at path (a link, a pipe a
    session's code left there) is replaced, never followed."""
    try:
        os.unlink(path)
    except OSError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


WHEELS = os.path.join(JOBDIR, "wheels")

# Run silently in the kernel once packages are installed: it started
# before their folder existed, so the folder joins its path now, ahead of
# the image's (a version the request named wins over the image's).
ADD_USER_SITE = """
def __nbcanvas_site():
    import importlib, site, sys
    before = list(sys.path)
    site.addsitedir(site.getusersitepackages())
    sys.path[:] = [p for p in sys.path if p not in before] + before
    importlib.invalidate_caches()
__nbcanvas_site()
del __nbcanvas_site
"""


def install_packages(job, kc, status):
    """Installs the job's packages from the wheels that came with it, with
    pip and no index (the sandbox has no network), into the user's site
    folder; False, with the status saying why, when pip fails."""
    import subprocess

    from nbclient.util import run_sync

    reqs = job.get("packages") or []
    if not reqs:
        return True
    t0 = now_ms()
    cmd = [sys.executable, "-m", "pip", "install", "--user",
           "--break-system-packages", "--no-index", "--find-links", WHEELS,
           "--disable-pip-version-check", "--no-input", "--progress-bar",
           "off", "--no-warn-script-location", "--no-cache-dir", "--"] + reqs
    try:
        p = subprocess.run(cmd, cwd=WORKDIR, stdin=subprocess.DEVNULL,
                           capture_output=True,
                           timeout=max(10, float(job.get("timeout_s", 60))),
                           env=dict(os.environ, PIP_CONFIG_FILE=os.devnull))
        failed, out = p.returncode != 0, p.stderr + p.stdout
    except subprocess.TimeoutExpired:
        failed, out = True, b"pip did not finish in time"
    status.setdefault("timing_ms", {})["install"] = now_ms() - t0
    if failed:
        lines = [l for l in out.decode(errors="replace").splitlines()
                 if l.strip()]
        errors = [l for l in lines if l.startswith("ERROR")]
        status.update(status="package_failed",
                      message=((errors or lines or ["pip failed"])[-1])[:500])
        return False
    run_sync(kc.execute_interactive)(
        ADD_USER_SITE, silent=True, store_history=False, timeout=30,
        output_hook=lambda msg: None)
    return True


def error_of(cell):
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return out
    return None


# Run silently in the kernel: loads one of nbcanvas's kernel-side modules
# from /opt/nbcanvas and calls its install(), without binding a name in the
# user's namespace or changing sys.path. nbcanvas_structured registers the
# chart and table formatters (when the job asks for structured outputs);
# nbcanvas_sql the %%sql magic (when the job's files hold a %%sql cell's
# rows: the service ran the query, the sandbox never reaches a database).
INSTALL = """
def __nbcanvas_install(name, *args):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        name, "/opt/nbcanvas/%%s.py" %% name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.install(*args)
__nbcanvas_install(%r, %r)
del __nbcanvas_install
"""


def install_module(kc, name, arg):
    from nbclient.util import run_sync

    run_sync(kc.execute_interactive)(
        INSTALL % (name, arg), silent=True, store_history=False, timeout=30,
        output_hook=lambda msg: None)


def install_structured(kc, job):
    install_module(kc, "nbcanvas_structured", int(job.get("table_rows", 1000)))


def install_sql(kc):
    folder = os.path.join(JOBDIR, "sql")
    if os.path.isdir(folder):
        install_module(kc, "nbcanvas_sql", folder)


def emit(nonce, kind, data):
    """One progress event on the protocol channel (one line)."""
    if nonce is None:
        return
    line = json.dumps(dict(data, event=kind), separators=(",", ":"))
    say("event %s %s" % (nonce, line))


class JobState:
    """What one job's execution keeps track of: its deadline, the running
    cell, what is left of the output budget, and where events go (a nonce,
    or None when the job asked for none)."""

    def __init__(self, job, nonce, timeout_s):
        self.deadline = time.monotonic() + float(timeout_s)
        self.timeout_s = timeout_s
        self.running = None
        self.cap = int(job.get("max_html_bytes", 16 << 20))
        self.left = self.cap
        self.over = False
        self.events = nonce if job.get("events") else None
        self.on_over = stop_user_code


def _executor_class():
    from nbclient.exceptions import CellTimeoutError
    from nbconvert.preprocessors import ExecutePreprocessor

    class Executor(ExecutePreprocessor):
        """nbconvert's executor with a whole-notebook deadline, an output
        budget and progress events; state is the job's JobState."""

        state = None
        ready_kc = None

        def process_message(self, msg, cell, cell_index):
            # nbclient keeps every output in memory and has no cap, so a
            # loop of prints would grow this process until the sandbox's
            # memory limit killed it. Past the page's own cap the outputs
            # cannot be shown anyway: stop the user's code (a render kills
            # it, a session interrupts it) and drop what is still queued.
            st = self.state
            if st.over:
                return None
            if msg["msg_type"] in OUTPUT_MESSAGES:
                st.left -= output_size(msg["content"])
                if st.left < 0:
                    st.over = True
                    st.on_over()
                    return None
            out = super().process_message(msg, cell, cell_index)
            if out is not None and st.events:
                emit(st.events, "output", {"index": cell_index, "output": out})
            return out

        def preprocess_cell(self, cell, resources, index):
            st = self.state
            st.running = index
            # The deadline is for the whole notebook: however short each
            # cell, none starts once it has passed.
            if cell.cell_type == "code" and time.monotonic() >= st.deadline:
                raise CellTimeoutError.error_from_timeout_and_cell(
                    "the notebook's deadline passed", st.timeout_s, cell)
            # Progress for the service: if this cell kills the driver, the
            # service can still say which cell it was.
            os.write(2, b"nbcanvas:cell %d\n" % index)
            code = cell.cell_type == "code"
            if code and st.events:
                emit(st.events, "cell", {"index": index, "state": "running"})
            cell, resources = super().preprocess_cell(cell, resources, index)
            if code and st.events:
                emit(st.events, "cell", {
                    "index": index, "state": "done",
                    "execution_count": cell.get("execution_count")})
            return cell, resources

        def start_new_kernel_client(self):
            # The client made while waiting for the job is already connected
            # and ready; a new one would wait ~200 ms for the kernel again.
            # (nbclient binds the sync name to its own coroutine, so it is
            # this name that must be overridden.)
            self.kc = self.ready_kc
            self.kc.allow_stdin = False
            return self.kc

    return Executor


def make_executor(job, kc, state, allow_errors):
    def remaining(cell):
        # What is left of the deadline. Never 0, which nbclient reads as
        # "no timeout"; a cell that starts after the deadline is refused
        # in preprocess_cell.
        return max(0.01, state.deadline - time.monotonic())

    ep = _executor_class()(kernel_name=job["kernel"], timeout_func=remaining,
                           allow_errors=allow_errors, startup_timeout=60)
    ep.state = state
    ep.ready_kc = kc
    return ep


def execute(nb, job, km, kc, status, nonce=None):
    from nbclient.exceptions import (CellExecutionError, CellTimeoutError,
                                     DeadKernelError)

    state = JobState(job, nonce, job["timeout_s"])
    ep = make_executor(job, kc, state, bool(job["allow_errors"]))
    if job.get("structured"):
        install_structured(kc, job)
    install_sql(kc)
    try:
        ep.preprocess(nb, {"metadata": {"path": WORKDIR}}, km=km)
        status["status"] = "ok"
    except CellTimeoutError:
        status.update(status="timeout", cell=state.running)
    except DeadKernelError as e:
        lines = str(e).strip().splitlines()
        status.update(status="kernel_died", cell=state.running,
                      message=lines[-1] if lines else "")
    except CellExecutionError as e:
        cell = nb.cells[state.running]
        err = error_of(cell) or {}
        status.update(status="cell_error", cell=state.running,
                      ename=err.get("ename", e.ename),
                      evalue=err.get("evalue", e.evalue),
                      traceback=err.get("traceback", []))
    except Exception:
        if not state.over:
            raise
    if state.over:  # whatever nbclient made of the kernel's end
        status.update(status="output_limit", cell=state.running,
                      message="cell %s wrote more than %d bytes of output"
                      % (state.running, state.cap))


OUTPUT_MESSAGES = {"stream", "display_data", "execute_result", "error",
                   "update_display_data"}


def output_size(content):
    """Roughly the bytes an output message adds to the notebook."""
    if "text" in content:
        return len(content["text"])
    size = sum(len(line) for line in content.get("traceback", []))
    for value in content.get("data", {}).values():
        size += len(value) if isinstance(value, str) else len(json.dumps(value))
    return size


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


_exporters = {}


def exporter_for(job):
    """One HTMLExporter per set of options, kept so its compiled templates
    are reused (the first export of a template costs a few hundred ms)."""
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    key = (job["template"], bool(job["include_input"]),
           bool(job.get("sanitize_html", False)))
    if key in _exporters:
        return _exporters[key]
    c = Config()
    # Templates only from the image: by default nbconvert also looks in the
    # current folder, where the request's files and the notebook's writes
    # are (a template is code, run in this process).
    c.TemplateExporter.extra_template_basedirs = []
    if not job["include_input"]:
        # What --no-input sets.
        c.TemplateExporter.exclude_input = True
        c.TemplateExporter.exclude_input_prompt = True
        c.TemplateExporter.exclude_output_prompt = True
    c.HTMLExporter.sanitize_html = bool(job.get("sanitize_html", False))
    _exporters[key] = HTMLExporter(config=c, template_name=job["template"])
    return _exporters[key]


def warm_executor(km, kc):
    """Runs nbconvert's executor once over a notebook with no cells: the
    first use pays for imports and event-loop set-up, and no cell means
    no execution count is used and nothing reaches the user's namespace."""
    import nbformat

    execute(nbformat.v4.new_notebook(),
            {"timeout_s": 60, "kernel": "python3", "allow_errors": False},
            km, kc, {})


REQUIRE_JS = "/usr/share/javascript/requirejs/require.min.js"
REQUIRE_JS_LINK = re.compile(
    r'<script[^>]*src="file://' + re.escape(REQUIRE_JS) + r'"[^>]*>\s*</script>')


def with_inline_requirejs(html):
    """The page with require.js inlined when its outputs call require().

    Debian's templates link require.js by a file:// URL that no browser
    loads from a served page, and plotly's notebook outputs define and load
    their library through it (require(["plotly"], ...)): a blank chart.
    Pages that make no such call lose only the dead link."""
    html = REQUIRE_JS_LINK.sub("", html, count=1)
    if "require([" not in html:
        return html
    try:
        with open(REQUIRE_JS) as f:
            script = f.read()
    except OSError:
        return html
    return html.replace("</head>", "<script>" + script + "</script>\n</head>", 1)


def export_html(nb, job):
    body, _ = exporter_for(job).from_notebook_node(without_xml_declarations(nb))
    return with_inline_requirejs(body)


def warm_exporter():
    """Exports a small notebook with the default options, so imports and
    template compilation are done before the job arrives."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell("# warm-up"))
    code = nbformat.v4.new_code_cell("1")
    code.outputs.append(nbformat.v4.new_output(
        "execute_result", data={"text/plain": "1", "text/html": "<b>1</b>"},
        execution_count=1))
    nb.cells.append(code)
    export_html(nb, {"template": "lab", "include_input": False})


def stop_user_code():
    """Ends the kernel and every process the notebook started, so nothing
    can change the working directory while the results are collected. They
    all run as the driver's uid, and kill(-1) spares only init and the
    driver itself; it is immediate, unlike a polite kernel shutdown (about
    a tenth of a second on every render)."""
    import signal

    try:
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass


def pause_user_code(pause):
    """Stops (or lets go on) every process but init and this driver: the
    kernel and whatever the code started. SIGSTOP cannot be caught."""
    import signal

    try:
        os.kill(-1, signal.SIGSTOP if pause else signal.SIGCONT)
    except OSError:
        pass


def read_regular(path, limit):
    """The bytes of a regular file, opened without following links; None
    for anything else or past limit."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
        os.close(fd)  # a folder, a device, a pipe: not a file to send
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read(limit + 1)[:limit]


def artifacts(cap):
    """[(name, bytes)] of the regular files the notebook wrote or changed in
    the working directory, at most cap bytes in all; links are never
    followed and unchanged inputs are left out."""
    found, total = [], 0
    for root, dirs, names in os.walk(WORKDIR, followlinks=False):
        if root == WORKDIR:
            dirs[:] = [d for d in dirs if d != ".nbcanvas"]
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            data = read_regular(path, cap - total)
            if data is None:
                continue
            if INPUTS.get(path) == hashlib.sha256(data).digest():
                continue
            total += len(data)
            found.append(("artifacts/" + os.path.relpath(path, WORKDIR), data))
    return found


def results_tar(job, nb, html, status, extra=()):
    """The answer as an uncompressed tar built in memory: status.json,
    notebook.ipynb, index.html, extra [(name, bytes)] and, when asked,
    artifacts/. Nothing goes through the disk, so the notebook's code
    cannot swap a result file."""
    import io
    import tarfile

    import nbformat

    members = list(extra)
    if nb is not None:
        members.append(("notebook.ipynb", nbformat.writes(nb).encode()))
    if html is not None:
        members.append(("index.html", html.encode()))
    if job and job.get("artifacts") and status.get("status") == "ok":
        members += artifacts(int(job.get("max_artifact_bytes", 0)))
    size = sum(len(data) for _, data in members)
    if job and size > int(job.get("max_result_bytes", size)):
        status = {"status": "output_limit",
                  "message": "the results are %d bytes" % size}
        members = []
    members.insert(0, ("status.json", json.dumps(status).encode()))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def run_job(job, nonce, km, kc, t_ready):
    import nbformat

    status = {"status": "internal", "timing_ms": {"kernel": t_ready}}
    nb = html = None
    try:
        nb = job_notebook()
        nbformat.validate(nb)
    except Exception as e:  # the uploaded notebook is not valid nbformat
        status.update(status="invalid_notebook",
                      message=str(e).strip().splitlines()[0][:500])
        return None, None, status
    if not install_packages(job, kc, status):
        return nb, None, status
    t0 = now_ms()
    execute(nb, job, km, kc, status, nonce)
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


# ---------------------------------------------------------------- sessions

INTERRUPT_GRACE_S = 5


def interrupt_kernel(km):
    """SIGINT to the kernel, as Jupyter's interrupt button sends it."""
    import signal

    try:
        os.kill(km.provisioner.process.pid, signal.SIGINT)
    except (AttributeError, OSError):
        pass


def kernel_answers(kc):
    """True when the kernel answers a request again within the grace:
    after an interrupt, the interrupted cell's reply comes first, then
    ours (as "aborted" when it was queued behind the failed cell: an
    answer all the same)."""
    from nbclient.util import run_sync

    try:
        run_sync(kc.execute_interactive)(
            "", silent=True, store_history=False, timeout=INTERRUPT_GRACE_S,
            output_hook=lambda msg: None)
        return True
    except Exception:
        return False


class Session:
    """The state a session's driver keeps between jobs: the kernel, its
    client, and the notebook of everything executed so far (exported
    without running it again)."""

    def __init__(self, job, km, kc):
        import nbformat

        self.km, self.kc = km, kc
        self.nb = job_notebook()
        self.nb.cells = []
        self.kernel = job["kernel"]
        self.structured = False

    def open(self, job):
        status = {"status": "ok"}
        if job.get("structured"):
            install_structured(self.kc, job)
            self.structured = True
        install_packages(job, self.kc, status)
        return status, [], False

    def execute(self, job, nonce):
        """Runs the job's cells after the session's; one reply for all."""
        import nbformat

        new = job_notebook().cells
        state = JobState(job, nonce, job["timeout_s"])
        status, done = {"status": "ok"}, []
        if not install_packages(job, self.kc, status):
            return status, None, False
        install_sql(self.kc)
        for cell in new:
            index = len(self.nb.cells)
            self.nb.cells.append(cell)
            done.append(cell)
            state.running = index
            if cell.cell_type != "code":
                continue
            os.write(2, b"nbcanvas:cell %d\n" % index)
            if state.events:
                emit(nonce, "cell", {"index": index, "state": "running"})
            outcome = self.run_cell(cell, index, state)
            if outcome != "ok":
                status.update(status=outcome, cell=index)
                if outcome == "kernel_died":
                    status.update(message="the kernel died",
                                  session_over=True)
                elif outcome == "output_limit":
                    status["message"] = ("cell %d wrote more than %d bytes "
                                         "of output" % (index, state.cap))
                # Interrupted: the kernel lives on if it answers again.
                if outcome != "kernel_died" and not kernel_answers(self.kc):
                    status["session_over"] = True
                break
            if state.events:
                emit(nonce, "cell", {
                    "index": index, "state": "done",
                    "execution_count": cell.get("execution_count")})
            err = error_of(cell)
            if err is not None:
                status.update(status="cell_error", cell=index,
                              ename=err.get("ename", ""),
                              evalue=err.get("evalue", ""),
                              traceback=err.get("traceback", []))
                break
        part = nbformat.v4.new_notebook(metadata=self.nb.metadata)
        part.cells = done
        return status, part, status.get("session_over", False)

    def run_cell(self, cell, index, state):
        """Executes one cell with the kept kernel, filling cell.outputs as
        the messages come. Returns "ok" (a raised exception is an error
        output, still "ok" here), "timeout" or "output_limit" (the cell
        was interrupted) or "kernel_died"."""
        from queue import Empty

        import nbformat
        from nbclient.util import run_sync

        kc, km = self.kc, self.km
        cell.outputs = []
        by_display = {}
        clear = {"pending": False}

        def on_output(msg):
            kind, content = msg["msg_type"], msg["content"]
            if kind == "execute_input":
                cell.execution_count = content.get("execution_count")
                return
            if kind == "clear_output":
                if content.get("wait"):
                    clear["pending"] = True
                else:
                    cell.outputs = []
                return
            if kind not in OUTPUT_MESSAGES or state.over:
                return
            state.left -= output_size(content)
            if state.left < 0:
                state.over = True
                interrupt_kernel(km)
                return
            display = content.get("transient", {}).get("display_id")
            if kind == "update_display_data":
                for out in by_display.get(display, []):
                    out["data"] = content.get("data", {})
                    out["metadata"] = content.get("metadata", {})
                return
            if clear["pending"]:
                cell.outputs, clear["pending"] = [], False
            out = nbformat.v4.output_from_msg(msg)
            cell.outputs.append(out)
            if display:
                by_display.setdefault(display, []).append(out)
            if state.events:
                emit(state.events, "output", {"index": index, "output": out})

        msg_id = kc.execute(cell.source, store_history=True,
                            allow_stdin=False, stop_on_error=True)
        interrupted = None
        idle = False
        while not idle:
            left = state.deadline - time.monotonic()
            if left <= 0 and interrupted is None:
                interrupted = "timeout"
                interrupt_kernel(km)
                break
            try:
                msg = run_sync(kc.get_iopub_msg)(timeout=min(1.0, left))
            except Empty:
                if not run_sync(km.is_alive)():
                    return "kernel_died"
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status":
                idle = msg["content"].get("execution_state") == "idle"
                continue
            on_output(msg)
        if interrupted:
            return "output_limit" if state.over else interrupted
        if state.over:
            return "output_limit"
        return "ok"

    def export(self, job):
        html = export_html(self.nb, job)
        if len(html.encode()) > int(job["max_html_bytes"]):
            return {"status": "output_limit",
                    "message": "rendered page is %d bytes" % len(html)}, \
                None, None
        return {"status": "ok"}, self.nb, html

    def file(self, job):
        path = safe_path(str(job.get("path", "")))
        real = os.path.realpath(path) if path else ""
        data = None
        if real.startswith(WORKDIR + "/") and \
                not real.startswith(JOBDIR + "/"):
            data = read_regular(real, int(job.get("max_artifact_bytes", 0)))
        if data is None:
            return {"status": "not_found",
                    "message": "no such file in the session"}, []
        return {"status": "ok"}, [("file", data)]


def session_reply(session, job, nonce):
    """Runs one session job; returns (tar bytes, session over)."""
    kind = job.get("kind")
    nb = html = None
    extra, over = [], False
    if kind == "open":
        status, extra, over = session.open(job)
    elif kind == "execute":
        status, nb, over = session.execute(job, nonce)
    elif kind == "export":
        status, nb, html = session.export(job)
    elif kind == "file":
        status, extra = session.file(job)
    else:
        status = {"status": "internal", "message": "unknown job kind"}
    return results_tar(job, nb, html, status, extra), over


def run_session(job, nonce, km, kc):
    """Answers the session's jobs until the service removes the sandbox."""
    session = Session(job, km, kc)
    while True:
        try:
            payload, over = session_reply(session, job, nonce)
        except Exception:
            payload, over = results_tar(job, None, None, {
                "status": "internal", "session_over": True,
                "message": traceback.format_exc().splitlines()[-1]}), True
        # The code's processes live on between calls, and may write into
        # the channel too: paused while the answer goes out, so that no
        # byte of theirs lands inside it.
        pause_user_code(True)
        try:
            say("done %s %d" % (nonce, len(payload)), payload)
        finally:
            pause_user_code(False)
        if over:
            stop_user_code()
            while True:
                time.sleep(3600)
        job, nonce = wait_for_job()


MATPLOTLIB_SEED = "/opt/nbcanvas/matplotlib"


def seed_matplotlib_cache():
    """Copies the font list the image built into the sandbox's fresh
    MPLCONFIGDIR, so matplotlib's first import does not scan the fonts again
    (about 0.16 CPU-s in every sandbox). If anything is missing, matplotlib
    simply builds it itself."""
    target = os.environ.get("MPLCONFIGDIR")
    if not target or not os.path.isdir(MATPLOTLIB_SEED):
        return
    try:
        os.makedirs(target, exist_ok=True)
        for name in os.listdir(MATPLOTLIB_SEED):
            if name.startswith("fontlist-") and name.endswith(".json"):
                with open(os.path.join(MATPLOTLIB_SEED, name), "rb") as src, \
                        open(os.path.join(target, name), "wb") as dst:
                    dst.write(src.read())
    except OSError:
        pass


def hide_from_user_code():
    """Makes this process non-dumpable: the user's code runs as the same
    uid, and could otherwise ptrace the driver or open its file descriptors
    (the job and results channels) through /proc/<pid>/fd."""
    import ctypes

    PR_SET_DUMPABLE = 4
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE)")


def main():
    t0 = now_ms()
    hide_from_user_code()
    os.chdir("/")  # nothing of the working folder is ever read as ours
    kernel = os.environ.get("NBCANVAS_KERNEL", "python3")
    seed_matplotlib_cache()
    cache_nbformat_validators()
    preload = os.environ.get("NBCANVAS_PRELOAD") == "1"
    km, kc = start_kernel(kernel, preload)
    if preload:
        warm_exporter()
        warm_executor(km, kc)
    t_ready = now_ms() - t0
    say("ready")
    job, nonce = wait_for_job()
    if job.get("session"):
        run_session(job, nonce, km, kc)
    try:
        nb, html, status = run_job(job, nonce, km, kc, t_ready)
    except Exception:
        nb, html = None, None
        status = {"status": "internal",
                  "message": traceback.format_exc().splitlines()[-1]}
    stop_user_code()
    try:
        payload = results_tar(job, nb, html, status)
    except Exception:
        payload = results_tar(job, None, None, {
            "status": "internal",
            "message": traceback.format_exc().splitlines()[-1]})
    say("done %s %d" % (nonce, len(payload)), payload)
    while True:  # the service removes the container once it has the results
        time.sleep(3600)


if __name__ == "__main__":
    main()
