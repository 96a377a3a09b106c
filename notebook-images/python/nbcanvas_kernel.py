"""The IPython kernel as the sandbox starts it: ipykernel's own launcher,
without the two libraries a sandbox never uses, which ipykernel and IPython
import at start when they are installed: debugpy (the debugger: no client
can attach to a sandbox) and jedi (tab completion: no one types into it).
Together they are about 0.13 CPU-s of every kernel's start, in every
render (docs/BENCHMARKS.md). Both handle their absence themselves.

Started by nbcanvas-relay (src/relay/relay.c) in place of `python3 -m
ipykernel_launcher`, with the same arguments. Once the kernel is up, both
are importable again: the user's code sees what a plain kernel's sees.

With NBCANVAS_PRELOAD=1 (a pool's sandbox, started before any job) the
kernel also imports the common libraries and draws one figure while it
starts, before it answers anyone: the first user cell does not pay for
them. It runs as IPython's own startup lines (exec_lines): nothing is
bound in the user's namespace, nothing is displayed, the execution count
stays 0.

A cell's output is flushed before its reply for as long as that takes.
ipykernel gives up waiting after 10 s (OutStream.flush_timeout) and sends
the reply and the idle status anyway; its IOPub thread sends the output
when it is done, after the idle, where a client counts the cell as over
and drops it. On a slow runtime (gVisor) encoding a large output took
longer than that, and the page was served without it. The cell's own
deadline (the service kills the kernel past it) bounds the wait instead.
"""
import importlib.util
import os
import sys

KEPT_OUT = ("debugpy", "jedi")

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

MATPLOTLIB_SEED = "/opt/nbcanvas/matplotlib"

# longer than any cell may run (render_max_timeout_s is at most an hour)
FLUSH_TIMEOUT_S = 7200


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

for name in KEPT_OUT:
    sys.modules[name] = None  # an import of it fails: it is "not installed"

if __name__ == "__main__":
    # as `python3 -m ipykernel_launcher` has them: the working directory
    # first on the path, the launcher's own file as argv[0]
    sys.path[0] = os.getcwd()
    sys.argv[0] = importlib.util.find_spec("ipykernel_launcher").origin
    from ipykernel.kernelapp import IPKernelApp

    from ipykernel.iostream import OutStream

    OutStream.flush_timeout = FLUSH_TIMEOUT_S
    seed_matplotlib_cache()
    app = IPKernelApp.instance()
    if os.environ.get("NBCANVAS_PRELOAD") == "1":
        app.exec_lines = [PRELOAD]
    app.initialize()
    for name in KEPT_OUT:
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]
    app.start()
