"""R notebooks (the ir kernel, nbcanvas/r) on the real engine: charts,
tables, errors and streams as IRkernel makes them; sessions, the gateway
and the runner in R; and real R notebooks by other people (tests/data/r,
see its SOURCES.md) executed by the service and by `jupyter nbconvert
--execute` in the same image, their outputs compared kind by kind.

Runs on Debian's interpreter (/usr/bin/python3): the gateway's check uses
Debian's websocket-client."""
import base64
import json
import os
import re
import struct
import subprocess
import uuid

import websocket

from harness import REPO, check_error, main

IMAGE = "nbcanvas/r:latest"
R_NOTEBOOKS = os.path.join(REPO, "tests", "data", "r")


def render(svc, cells, **extra):
    body = {"kernel": "ir", "format": "json", "cells": cells, "cache": False}
    body.update(extra)
    return svc.render(body)


def outputs(doc):
    return [o for c in doc["cells"] for o in c["outputs"]]


def png_size(b64):
    png = base64.b64decode(b64)
    assert png[1:4] == b"PNG", png[:8]
    return struct.unpack(">II", png[16:24])


def image_size(b64):
    """An image's size in pixels (PNG, or a GIF sent as image/png)."""
    data = base64.b64decode(b64)
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return struct.unpack("<HH", data[6:10])
    return png_size(b64)


def test_the_r_kernel_is_listed(svc):
    kernels = {k["name"]: k for k in svc.get("/v1/kernels").json()}
    assert kernels["ir"]["language"] == "R", kernels
    specs = svc.get("/api/kernelspecs").json()["kernelspecs"]
    assert specs["ir"]["spec"]["language"] == "R", specs
    assert any(l["name"] == "r" for l in svc.get("/v1/languages").json())


def test_a_ggplot2_chart_and_a_data_frame(svc):
    r = render(svc, ["library(ggplot2)\nggplot(mtcars, aes(wt, mpg)) + geom_point()",
                     "head(mtcars, 3)"])
    assert r.status == 200, r
    chart, table = [c["outputs"] for c in r.json()["cells"]]
    assert chart[0]["output_type"] == "display_data"
    w, h = png_size(chart[0]["data"]["image/png"])
    assert w > 100 and h > 100, (w, h)
    html = table[0]["data"]["text/html"]
    html = "".join(html) if isinstance(html, list) else html
    assert "<table" in html and "Mazda RX4" in html, html[:300]
    page = svc.render({"kernel": "ir", "cells": ["plot(1:10)"], "cache": False})
    assert page.status == 200 and b"data:image/png;base64," in page.body


def test_svg_when_the_notebook_asks_through_repr(svc):
    r = render(svc, ["options(jupyter.plot_mimetypes = c('image/svg+xml'))\nplot(1:3)"])
    assert r.status == 200, r
    data = outputs(r.json())[0]["data"]
    svg = data["image/svg+xml"]
    assert "<svg" in ("".join(svg) if isinstance(svg, list) else svg)


def test_streams_and_an_error_with_r_traceback(svc):
    r = render(svc, ["print(6 * 7)\nmessage('a message')\nwarning('a warning')",
                     "f <- function() stop('boom')\nf()"])
    err = check_error(r, 422, "cell_error")
    assert err["cell"] == 1 and "boom" in err["evalue"], err
    assert any("f()" in line for line in err["traceback"]), err["traceback"]
    first = err["cells"][0]["outputs"]
    assert first[0] == {"output_type": "stream", "name": "stdout", "text": "[1] 42\n"}, first
    stderr = "".join(o["text"] for o in first if o.get("name") == "stderr")
    assert "a message" in stderr and "a warning" in stderr, first


def test_packages_are_python_only(svc):
    r = render(svc, ["1"], packages=["tabulate"])
    check_error(r, 400, "invalid_request")


def test_an_r_session_keeps_its_state(svc):
    r = svc.post("/v1/sessions", {"kernel": "ir"})
    assert r.status == 201, r
    sid = r.json()["id"]
    assert svc.post("/v1/sessions/%s/execute" % sid, {"code": "x <- 41"}).status == 200
    out = svc.post("/v1/sessions/%s/execute" % sid, {"code": "x + 1"}).json()
    assert out["outputs"][0]["data"]["text/plain"] == "[1] 42", out
    nb = svc.get("/v1/sessions/%s/notebook?format=ipynb" % sid).json()
    assert nb["metadata"]["kernelspec"]["name"] == "ir"
    assert nb["metadata"]["language_info"]["name"] == "R"
    assert svc.request("DELETE", "/v1/sessions/" + sid).status == 204


def test_an_r_kernel_through_the_gateway(svc):
    r = svc.post("/api/kernels", {"name": "ir"})
    assert r.status == 201, r
    kid = r.json()["id"]
    ws = websocket.create_connection(
        "ws://%s/api/kernels/%s/channels" % (svc.listen, kid), timeout=60)
    mid = uuid.uuid4().hex
    ws.send(json.dumps({"channel": "shell", "header": {
        "msg_id": mid, "msg_type": "execute_request", "username": "t",
        "session": "s", "date": "", "version": "5.3"}, "parent_header": {},
        "metadata": {}, "content": {"code": "1 + 1", "silent": False}}))
    result = None
    while True:
        m = json.loads(ws.recv())
        if m["parent_header"].get("msg_id") != mid:
            continue
        # (IRkernel shows a value as display_data, not execute_result)
        if m["msg_type"] in ("execute_result", "display_data"):
            result = m["content"]["data"]["text/plain"]
        if m["msg_type"] == "execute_reply":
            break
    ws.close()
    assert result == "[1] 2", result
    assert svc.request("DELETE", "/api/kernels/" + kid).status == 204


def test_r_in_the_runner(svc):
    r = svc.run({"language": "r", "code": "cat(sum(1:10), '\\n')\nmessage('to stderr')"})
    assert r.status == 200, r
    res = r.json()
    assert res["stdout"] == "55 \n" and res["stderr"] == "to stderr\n", res


# --- real R notebooks against nbconvert ------------------------------

def by_nbconvert(nb):
    p = subprocess.run(
        ["docker", "run", "--rm", "-i", "--network", "none", "-e", "HOME=/tmp",
         "-e", "JUPYTER_RUNTIME_DIR=/tmp/rt", IMAGE, "sh", "-c",
         "cat > /tmp/in.ipynb && jupyter nbconvert --execute --allow-errors "
         "--to notebook --stdout --ExecutePreprocessor.kernel_name=ir "
         "/tmp/in.ipynb 2>/dev/null"],
        input=json.dumps(nb).encode(), capture_output=True, timeout=600)
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    return json.loads(p.stdout)


def by_nbcanvas(svc, nb):
    r = svc.render({"kernel": "ir", "notebook": nb, "format": "ipynb",
                    "allow_errors": True, "cache": False, "timeout_s": 300})
    assert r.status == 200, r
    return r.json()


def joined(v):
    return "".join(v) if isinstance(v, list) else v


def kinds(nb):
    """Each code cell's outputs, kind by kind: the output type, a stream's
    name and text, an error's name, the MIME types, plain text with
    addresses and times left out, and a figure's size in pixels."""
    def plain(text):
        text = re.sub(r"0x[0-9a-f]+", "0x…", text)
        text = re.sub(r"<environment: [^>]+>", "<environment>", text)
        return re.sub(r"\d+(\.\d+)? ?(secs|sec|mins|ms|s)\b", "T", text)
    cells = []
    for c in nb["cells"]:
        if c["cell_type"] != "code":
            continue
        out = []
        for o in c.get("outputs", []):
            t = o["output_type"]
            if t == "stream":
                out.append((t, o["name"], plain(joined(o["text"]))))
            elif t == "error":
                out.append((t, o["ename"], plain(o["evalue"])))
            else:
                data = o.get("data", {})
                item = [t, sorted(data), plain(joined(data.get("text/plain", "")))]
                if "image/png" in data:
                    item.append(image_size(joined(data["image/png"])))
                out.append(tuple(item))
        cells.append(out)
    return cells


def test_real_r_notebooks_match_nbconvert(svc):
    names = sorted(n for n in os.listdir(R_NOTEBOOKS) if n.endswith(".ipynb"))
    assert len(names) >= 5, names
    for name in names:
        with open(os.path.join(R_NOTEBOOKS, name)) as f:
            nb = json.load(f)
        ours, theirs = kinds(by_nbcanvas(svc, nb)), kinds(by_nbconvert(nb))
        assert any(ours), (name, "no outputs at all")
        assert ours == theirs, (name, ours, theirs)


if __name__ == "__main__":
    main(globals(), config={"r_pool_size": 1})
