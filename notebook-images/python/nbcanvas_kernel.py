"""The IPython kernel as the sandbox starts it: ipykernel's own launcher,
without the two libraries a sandbox never uses, which ipykernel and IPython
import at start when they are installed: debugpy (the debugger: no client
can attach to a sandbox) and jedi (tab completion: no one types into it).
Together they are about 0.13 CPU-s of every kernel's start, in every
render (docs/BENCHMARKS.md). Both handle their absence themselves.

Started by nbcanvas_driver.py in place of `python3 -m ipykernel_launcher`,
with the same arguments.
"""
import os
import sys

sys.modules["debugpy"] = None
sys.modules["jedi"] = None

if __name__ == "__main__":
    # as `python3 -m` has it: the working directory first, not this
    # file's folder, so the user's imports see what a plain kernel sees
    sys.path[0] = os.getcwd()
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()
