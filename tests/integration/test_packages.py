"""Packages at run time on the real engine, without the internet: the test
builds small wheels itself (one depends on another), serves them as a PEP
503 index with `python3 -m http.server` on loopback, and checks install,
dependency resolution, the wheel cache answering with the index gone,
errors, %pip lines, sessions, hostile wheels and requirements, and that
the sandbox still cannot reach the index's port."""
import base64
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile

from harness import Service, check_error, free_port, main

BINARY = sys.argv[1]
ROOT = tempfile.mkdtemp(prefix="nbcanvas-index-")
PORT = free_port()
CACHE = tempfile.mkdtemp(prefix="nbcanvas-wheels-")


def record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "%s,sha256=%s,%d" % (path, digest.decode(), len(data))


def make_wheel(name, version, requires=(), code="", extra=(), bomb=0):
    """A pure-Python wheel in ROOT/files, listed in ROOT/simple/<name>/."""
    dist = name.replace("-", "_")
    info = "%s-%s.dist-info" % (dist, version)
    files = {
        "%s.py" % dist: code.encode(),
        info + "/METADATA": ("Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (name, version)
                             + "".join("Requires-Dist: %s\n" % r for r in requires)).encode(),
        info + "/WHEEL": b"Wheel-Version: 1.0\nGenerator: nbcanvas-test\n"
                         b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files.update(extra)
    fname = "%s-%s-py3-none-any.whl" % (dist, version)
    os.makedirs(os.path.join(ROOT, "files"), exist_ok=True)
    path = os.path.join(ROOT, "files", fname)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for member, data in files.items():
            z.writestr(member, data)
        if bomb:  # zeros that unpack far past any sane wheel
            with z.open("%s_data.bin" % dist, "w", force_zip64=True) as f:
                block = b"\0" * (1 << 20)
                for _ in range(bomb):
                    f.write(block)
        record = "\n".join(record_line(m, d) for m, d in files.items())
        z.writestr(info + "/RECORD", record + "\n%s/RECORD,,\n" % info)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    project = os.path.join(ROOT, "simple", name)
    os.makedirs(project, exist_ok=True)
    links = ""
    index = os.path.join(project, "index.html")
    if os.path.exists(index):
        links = open(index).read().split("<body>")[1].split("</body>")[0]
    links += '<a href="../../files/%s#sha256=%s">%s</a>\n' % (fname, digest, fname)
    with open(index, "w") as f:
        f.write("<!DOCTYPE html><html><body>%s</body></html>" % links)


make_wheel("nbtest-base", "1.0", code="NAME = 'base one'\ndef hello():\n    return 'hello from base'\n")
make_wheel("nbtest-greet", "1.0", requires=["nbtest-base>=1.0"],
           code="import nbtest_base\ndef hello():\n    return nbtest_base.hello() + ' via greet'\n")
make_wheel("nbtest-greet", "2.0", requires=["nbtest-base>=1.0"],
           code="import nbtest_base\ndef hello():\n    return 'greet two'\n")
make_wheel("nbtest-late", "1.0", code="X = 3\n")
# the image has tabulate: a dependency on it is met there, and this
# index's own (fake) tabulate stays home
make_wheel("tabulate", "99.0", code="__version__ = 'fake'\n")
make_wheel("nbtest-table", "1.0", requires=["tabulate"],
           code="import tabulate\ndef table():\n    return tabulate.tabulate([[1, 2]])\n")
make_wheel("nbtest-escape", "1.0", code="X = 1\n",
           extra={"../../evil.py": b"print('escaped')\n"})
make_wheel("nbtest-bomb", "1.0", code="X = 1\n", bomb=520)


class Index:
    def __init__(self):
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(PORT), "--bind", "127.0.0.1",
             "--directory", ROOT], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the index did not start")

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait()
            self.proc = None


INDEX = Index()
INDEX.start()


def outputs_text(r):
    assert r.status == 200, r
    return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                   for c in r.json()["cells"] for o in c["outputs"])


def test_install_with_a_dependency(svc):
    r = svc.render({"format": "json", "packages": ["nbtest-greet==1.0"],
                    "cells": ["import nbtest_greet\nprint(nbtest_greet.hello())"]})
    assert outputs_text(r) == "hello from base via greet\n", r
    timing = r.header("server-timing")
    assert "packages;dur=" in timing and "install;dur=" in timing, timing
    # the newest when no version is named; extras and markers accepted
    r = svc.render({"format": "json", "packages": ["nbtest-greet", "nbtest-base ; python_version >= '3'"],
                    "cells": ["import nbtest_greet\nprint(nbtest_greet.hello())"]})
    assert outputs_text(r) == "greet two\n", r
    # the next sandbox never sees them
    r = svc.render({"format": "json", "cells": ["import nbtest_greet"]})
    err = check_error(r, 422, "cell_error")
    assert err["ename"] == "ModuleNotFoundError", err


def test_what_the_image_has_stays_home(svc):
    r = svc.render({"format": "json", "packages": ["nbtest-table"],
                    "cells": ["import tabulate, nbtest_table\n"
                              "print(tabulate.__version__ != 'fake', '-' in nbtest_table.table())"]})
    assert outputs_text(r) == "True True\n", r
    # named in the request, it is sent and installed over the image's
    r = svc.render({"format": "json", "packages": ["tabulate==99.0"],
                    "cells": ["import tabulate\nprint(tabulate.__version__)"]})
    assert outputs_text(r) == "fake\n", r


def test_packages_are_part_of_the_cache_key(svc):
    cell = ["import importlib.util\nprint(importlib.util.find_spec('nbtest_base') is not None)"]
    with_pkg = svc.render({"format": "json", "cells": cell, "packages": ["nbtest-base"]})
    without = svc.render({"format": "json", "cells": cell})
    assert outputs_text(with_pkg) == "True\n" and outputs_text(without) == "False\n"


def test_pip_lines_are_read_into_packages(svc):
    r = svc.render({"format": "json", "cells": [
        "%pip install -q nbtest-base==1.0\nimport nbtest_base\nprint(nbtest_base.NAME)",
        "!pip install nbtest-late\nimport nbtest_late\nprint(nbtest_late.X)"]})
    text = outputs_text(r)
    assert "base one\n" in text and "3\n" in text, text
    assert "nbcanvas: installed before the notebook ran: nbtest-base==1.0" in text, text
    # an option other than a quiet flag leaves the line as it is: pip runs
    # in the sandbox and finds nothing (no index, no network)
    r = svc.render({"format": "json", "cells": [
        "!pip install --no-index --no-cache-dir nbtest-late\nprint('after')"]})
    text = outputs_text(r)
    assert "installed before" not in text and "after" in text, text
    assert "error" in text.lower(), text  # pip's own, as it would today


def test_a_session_installs_at_start_and_from_pip_lines(svc):
    r = svc.post("/v1/sessions", {"packages": ["nbtest-base"]})
    assert r.status == 201, r
    sid = r.json()["id"]
    try:
        r = svc.post("/v1/sessions/%s/execute" % sid,
                     {"code": "import nbtest_base\nnbtest_base.NAME"})
        assert r.status == 200 and r.json()["outputs"][0]["data"]["text/plain"] == "'base one'", r
        r = svc.post("/v1/sessions/%s/execute" % sid,
                     {"code": "%pip install nbtest-late\nimport nbtest_late\nnbtest_late.X * 2"})
        assert r.status == 200, r
        assert r.json()["outputs"][-1]["data"]["text/plain"] == "6", r.json()
    finally:
        assert svc.request("DELETE", "/v1/sessions/" + sid).status == 204


def test_unknown_packages_and_hostile_wheels(svc):
    err = check_error(svc.render({"cells": ["1"], "packages": ["nbtest-missing"]}),
                      422, "package_unavailable")
    assert "nbtest-missing" in err["message"], err
    err = check_error(svc.render({"cells": ["1"], "packages": ["nbtest-greet==9.9"]}),
                      422, "package_unavailable")
    assert "nbtest-greet" in err["message"], err
    err = check_error(svc.render({"cells": ["1"], "packages": ["nbtest-escape"]}),
                      422, "package_unavailable")
    assert "refused" in err["message"], err
    err = check_error(svc.render({"cells": ["1"], "packages": ["nbtest-bomb"]}),
                      422, "package_unavailable")
    assert "refused" in err["message"] and "unpacked" in err["message"], err
    assert not os.path.exists(os.path.join(ROOT, "..", "evil.py"))


def test_requirements_are_checked_strictly(svc):
    for bad in ["-r/etc/passwd", "--index-url=http://127.0.0.1:1/", "x @ http://127.0.0.1/x.whl",
                "../x", "/etc/passwd", "x==1.0 --pre", "a" * 300, "", "x[", "x>=",
                "numpy; import os", "x\nimport os"]:
        err = check_error(svc.render({"cells": ["1"], "packages": [bad]}), 400, "invalid_request")
        assert "packages[0]" in err["message"], (bad, err)
    check_error(svc.render({"cells": ["1"], "packages": ["x"] * 100}), 400, "invalid_request")
    check_error(svc.render({"cells": ["1"], "packages": "nbtest-base"}), 400, "invalid_request")
    check_error(svc.render({"cells": ["1"], "packages": [42]}), 400, "invalid_request")


def test_the_sandbox_still_cannot_reach_the_index(svc):
    code = ("import socket\ns = socket.socket()\ns.settimeout(3)\n"
            "try:\n    s.connect(('127.0.0.1', %d))\n    print('reached')\n"
            "except OSError as e:\n    print('refused')" % PORT)
    r = svc.render({"format": "json", "packages": ["nbtest-base"], "cells": [code]})
    assert outputs_text(r) == "refused\n", r


def test_zz_the_cache_answers_when_the_index_is_gone(svc):
    # resolved before: answered from the wheel cache without the index
    INDEX.stop()
    try:
        r = svc.render({"format": "json", "packages": ["nbtest-greet==1.0"],
                        "cells": ["import nbtest_greet\nprint(nbtest_greet.hello(), 'again')"]})
        assert outputs_text(r) == "hello from base via greet again\n", r
        r = svc.render({"cells": ["1"], "packages": ["nbtest-never-seen"]})
        check_error(r, 503, "index_unavailable")
        assert r.header("retry-after"), r.headers
    finally:
        INDEX.start()
    # a fresh service shares the cache folder: no index needed either
    m = svc.get("/metrics").body.decode()
    assert "nbcanvas_package_cache_hits_total" in m, m


def test_without_a_package_source(svc):
    s = Service(BINARY, {"pool_size": 0}).start()
    try:
        err = check_error(s.render({"cells": ["1"], "packages": ["nbtest-base"]}),
                          400, "invalid_request")
        assert "package_index_url" in err["message"], err
        err = check_error(s.render({"cells": ["%pip install nbtest-base\nimport nbtest_base"]}),
                          422, "cell_error")
        assert "package_index_url" in err["evalue"], err
        check_error(s.post("/v1/sessions", {"packages": ["x"]}), 400, "invalid_request")
    finally:
        assert s.stop() == 0


if __name__ == "__main__":
    try:
        main(globals(), {"pool_size": 1, "package_index_url": "http://127.0.0.1:%d/simple/" % PORT,
                         "wheel_cache_dir": CACHE, "package_timeout_s": 60})
    finally:
        INDEX.stop()
        shutil.rmtree(ROOT, ignore_errors=True)
        shutil.rmtree(CACHE, ignore_errors=True)
