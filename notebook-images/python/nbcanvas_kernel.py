"""The IPython kernel as the sandbox starts it: ipykernel's own launcher,
without the two libraries a sandbox never uses, which ipykernel and IPython
import at start when they are installed: debugpy (the debugger: no client
can attach to a sandbox) and jedi (tab completion: no one types into it).
Together they are about 0.13 CPU-s of every kernel's start, in every
render (docs/BENCHMARKS.md). Both handle their absence themselves.

Started by nbcanvas_driver.py in place of `python3 -m ipykernel_launcher`,
with the same arguments. Once the kernel is up, both are importable again:
the user's code sees what a plain kernel's sees.
"""
import importlib.util
import os
import sys

KEPT_OUT = ("debugpy", "jedi")

for name in KEPT_OUT:
    sys.modules[name] = None  # an import of it fails: it is "not installed"

if __name__ == "__main__":
    # as `python3 -m ipykernel_launcher` has them: the working directory
    # first on the path, the launcher's own file as argv[0]
    sys.path[0] = os.getcwd()
    sys.argv[0] = importlib.util.find_spec("ipykernel_launcher").origin
    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize()
    for name in KEPT_OUT:
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]
    app.start()
