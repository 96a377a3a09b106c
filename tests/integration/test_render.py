"""POST /v1/render on the real engine: formats, errors, files, headers."""
import io
import json
import os
import re
import zipfile

from harness import REPO, b64, check_error, main


def test_html_page_without_input(svc):
    r = svc.render({"cells": ["print('hello ' * 2)", "secret_source_marker = 1"]})
    assert r.status == 200, r
    assert r.header("content-type") == "text/html; charset=utf-8"
    page = r.body.decode()
    assert "hello hello" in page
    assert "secret_source_marker" not in page  # --no-input is the default
    assert r.header("x-nbcanvas-cache") == "miss"
    assert r.header("x-content-type-options") == "nosniff"
    assert "sandbox" in r.header("content-security-policy")
    timing = r.header("server-timing")
    for phase in ("queue", "sandbox", "execute", "export", "total"):
        assert phase + ";dur=" in timing, timing


def test_include_input_shows_source(svc):
    r = svc.render({"cells": ["visible_source_marker = 41 + 1"], "include_input": True})
    assert r.status == 200, r
    assert "visible_source_marker" in r.body.decode()


def test_json_outputs(svc):
    r = svc.render({"format": "json", "cells": [
        {"cell_type": "markdown", "source": "# title"},
        "import sys\nprint('\\x1b[31mred\\x1b[0m out')\nprint('to err', file=sys.stderr)\n6 * 7",
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()",
    ]})
    assert r.status == 200, r
    assert r.header("content-type").startswith("application/json")
    doc = r.json()
    assert doc["status"] == "ok" and doc["id"] == r.header("x-request-id")
    cells = doc["cells"]
    assert [c["index"] for c in cells] == [1, 2]
    outs = cells[0]["outputs"]
    stdout = [o for o in outs if o.get("name") == "stdout"][0]
    assert stdout["text"] == "red out\n", stdout  # ANSI removed
    assert any(o.get("name") == "stderr" for o in outs)
    result = [o for o in outs if o["output_type"] == "execute_result"][0]
    assert result["data"]["text/plain"] == "42"
    assert cells[0]["execution_count"] == 1
    images = [o for o in cells[1]["outputs"] if "image/png" in o.get("data", {})]
    assert len(images) == 1
    assert "total" in doc["timing_ms"] and "execute" in doc["timing_ms"]


def test_ipynb_is_valid_nbformat(svc):
    r = svc.render({"format": "ipynb", "cells": [
        "x = 1", {"cell_type": "markdown", "source": ["# a\n", "b"]},
        {"cell_type": "raw", "source": "raw text"}, "x + 1"]})
    assert r.status == 200, r
    assert r.header("content-type") == "application/x-ipynb+json"
    nb = json.loads(r.body)
    assert nb["nbformat"] == 4
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    plain = nb["cells"][3]["outputs"][0]["data"]["text/plain"]
    assert "".join(plain) == "2", plain  # nbformat may store lists of lines
    # nbformat's own validator, inside the notebook image
    check = svc.run({"language": "python3",
                     "code": "import nbformat\nnb = nbformat.read('nb.ipynb', as_version=4)\n"
                             "nbformat.validate(nb)\nprint('valid', len(nb.cells))",
                     "files": [{"name": "nb.ipynb", "content_base64": b64(r.body)}]})
    assert check.status == 200, check
    assert check.json()["stdout"] == "valid 4\n", check.json()


def test_zip_bundle(svc):
    r = svc.render({"format": "zip", "files": [
        {"name": "data/in.csv", "content_base64": b64("a,b\n1,2\n3,4\n")}],
        "cells": [
        "import pandas as pd\ndf = pd.read_csv('data/in.csv')\ndf.to_csv('out.csv', index=False)\ndf",
        "import matplotlib.pyplot as plt\nplt.plot(df.a, df.b)\nplt.show()",
    ]})
    assert r.status == 200, r
    assert r.header("content-type") == "application/zip"
    z = zipfile.ZipFile(io.BytesIO(r.body))
    names = set(z.namelist())
    assert {"index.html", "notebook.ipynb", "result.json"} <= names, names
    assert "resources/cell1_output0.png" in names, names
    assert z.read("resources/cell1_output0.png")[:4] == b"\x89PNG"
    assert z.read("artifacts/out.csv") == b"a,b\n1,2\n3,4\n"
    assert "artifacts/data/in.csv" not in names  # inputs are not artifacts
    assert not any(n.startswith("artifacts/.") for n in names), names
    assert json.loads(z.read("result.json"))["status"] == "ok"


def test_files_land_in_working_directory(svc):
    r = svc.render({"format": "json", "files": [
        {"name": "notes.txt", "content_base64": b64("from the request")}],
        "cells": ["import os\nprint(os.getcwd())\nprint(open('notes.txt').read())"]})
    assert r.status == 200, r
    text = r.json()["cells"][0]["outputs"][0]["text"]
    assert text == "/home/sandbox\nfrom the request\n", text


def test_cell_error_is_422_with_traceback(svc):
    r = svc.render({"cells": ["x = 1", "print('before')\n{}['missing']"]})
    err = check_error(r, 422, "cell_error")
    assert err["cell"] == 1
    assert err["ename"] == "KeyError"
    assert err["evalue"] == "'missing'"
    assert any("KeyError" in line for line in err["traceback"])
    assert not any("\x1b" in line for line in err["traceback"])
    # what ran before the failure comes back too
    assert err["cells"][0]["execution_count"] == 1, err["cells"]
    assert err["cells"][1]["outputs"][0]["text"] == "before\n", err["cells"]


def test_a_cell_that_kills_its_kernel_is_a_cell_error(svc):
    # the user's own doing, so a 422 for that cell, not a 500
    r = svc.render({"cells": ["print('first')", "import os\nos._exit(3)", "print('never')"],
                    "cache": False})
    err = check_error(r, 422, "cell_error")
    assert err["cell"] == 1 and err["ename"] == "DeadKernelError", err
    assert err["cells"][0]["outputs"][0]["text"] == "first\n", err["cells"]


def test_allow_errors_renders_the_error(svc):
    r = svc.render({"format": "json", "allow_errors": True,
                    "cells": ["1/0", "print('after')"]})
    assert r.status == 200, r
    cells = r.json()["cells"]
    assert cells[0]["outputs"][0]["output_type"] == "error"
    assert cells[1]["outputs"][0]["text"] == "after\n"


def test_output_a_slow_kernel_sends_late_is_still_its_cells(svc):
    # The kernel's IOPub thread held up 12 s, past ipykernel's own flush
    # timeout (10 s): as on a slow runtime encoding a large output. The
    # output must reach its cell, and the next cell keep its own.
    code = ("import sys, time\n"
            "sys.stdout.pub_thread.schedule(lambda: time.sleep(12))\n"
            "print('late output')")
    r = svc.render({"cells": [code, "print('next cell')"], "format": "json",
                    "cache": False})
    assert r.status == 200, r
    texts = [[o.get("text", "") for o in c["outputs"]] for c in r.json()["cells"]]
    assert texts == [["late output\n"], ["next cell\n"]], texts


def test_whole_notebook_deadline(svc):
    # each cell alone is under the deadline; together they are not
    r = svc.render({"timeout_s": 4, "cells": ["import time\nprint('first')\ntime.sleep(2.5)",
                                              "time.sleep(2.5)", "print('never')"]})
    err = check_error(r, 422, "timeout")
    assert err["cell"] == 1, err
    # partial results: the completed cell's output, nothing from the third
    assert err["cells"][0]["outputs"][0]["text"] == "first\n", err["cells"]
    assert err["cells"][2]["outputs"] == [], err["cells"]


def test_uploaded_notebook_kernel_is_forced(svc):
    nb = {"nbformat": 4, "nbformat_minor": 4,
          "metadata": {"kernelspec": {"name": "julia-1.9", "display_name": "Julia"}},
          "cells": [{"cell_type": "code", "metadata": {}, "execution_count": None,
                     "outputs": [], "source": ["import sys\n", "print(sys.version_info[0])"]}]}
    r = svc.render({"notebook": nb, "format": "json"})
    assert r.status == 200, r
    assert r.json()["cells"][0]["outputs"][0]["text"] == "3\n"


def test_invalid_notebook_is_400(svc):
    nb = {"nbformat": 4, "nbformat_minor": 4, "metadata": {},
          "cells": [{"cell_type": "code", "source": "1", "bogus": True}]}
    err = check_error(svc.render({"notebook": nb}), 400, "invalid_request")
    assert "notebook" in err["message"]


def test_templates(svc):
    for template in ("classic", "canvas"):
        r = svc.render({"template": template, "cells": ["print('tmpl-%s')" % template]})
        assert r.status == 200, (template, r)
        assert ("tmpl-%s" % template) in r.body.decode()
    body = {"cells": ["import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()"]}
    canvas = svc.render(dict(body, template="canvas")).body
    lab = svc.render(dict(body, template="lab")).body
    assert b'id="nbcanvas-root"' in canvas
    assert b"data:image/png;base64," in canvas
    assert len(canvas) * 5 <= len(lab), (len(canvas), len(lab))


def test_request_id_echoed(svc):
    rid = "0b9ad1a2-6c1e-4c61-9d2f-1b7e2f3a4c5d"
    r = svc.render({"cells": ["1"]}, headers={"X-Request-Id": rid})
    assert r.header("x-request-id") == rid
    r = svc.render({"cells": ["1"]}, headers={"X-Request-Id": "not a uuid\x01"})
    assert re.fullmatch(r"[0-9a-f-]{36}", r.header("x-request-id"))


if __name__ == "__main__":
    main(globals())
