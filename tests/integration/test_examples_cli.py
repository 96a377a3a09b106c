"""The shipped examples over HTTP, and the one-shot CLI commands, which must
give the same answers through the same pipeline."""
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile

from harness import REPO, main

EXAMPLES = os.path.join(REPO, "examples")
BINARY = sys.argv[1]


def example(name, **extra):
    with open(os.path.join(EXAMPLES, name + ".json")) as f:
        body = json.load(f)
    body.update(extra)
    return body


def test_chart_example_shows_a_chart(svc):
    r = svc.render(example("chart"))
    assert r.status == 200, r
    assert "data:image/png;base64," in r.body.decode()
    assert "Monthly revenue" in r.body.decode()


def test_text2sql_example_table_and_xlsx(svc):
    r = svc.render(example("text2sql", format="zip"))
    assert r.status == 200, r
    z = zipfile.ZipFile(io.BytesIO(r.body))
    page = z.read("index.html").decode()
    assert "<table" in page and "Customer" in page
    xlsx = z.read("artifacts/top_customers.xlsx")
    assert xlsx[:2] == b"PK"  # an Office Open XML file is a zip
    sheet = zipfile.ZipFile(io.BytesIO(xlsx)).read("xl/worksheets/sheet1.xml")
    assert b"<row" in sheet


def test_analysis_example_tables_and_charts(svc):
    r = svc.render(example("analysis", format="json"))
    assert r.status == 200, r
    outs = [o for c in r.json()["cells"] for o in c["outputs"]]
    tables = [o for o in outs if "<table" in o.get("data", {}).get("text/html", "")]
    images = [o for o in outs if "image/png" in o.get("data", {})]
    assert len(tables) == 2 and len(images) == 1, (len(tables), len(images))
    assert "North" in tables[1]["data"]["text/html"]


def test_plotly_example_is_self_contained(svc):
    r = svc.render(example("plotly"))
    assert r.status == 200, r
    page = r.body.decode()
    assert "plotly-graph-div" in page and "Plotly.newPlot" in page
    # require.js and plotly.js are inlined: the page loads nothing
    assert "file:///usr/share/javascript/requirejs" not in page
    assert page.count("<script>") >= 1 and "requirejs" in page
    r = svc.render(example("plotly", format="json"))
    outputs = r.json()["cells"][0]["outputs"]  # the code cell (markdown is not listed)
    spec = [o["data"]["application/vnd.plotly.v1+json"] for o in outputs
            if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert spec and len(spec[0]["data"]) == 4, outputs  # one trace per region


def test_the_image_has_the_analysis_libraries(svc):
    r = svc.render({"format": "json", "cells": [
        "import sklearn, statsmodels.api, sympy, plotly, scipy, seaborn, openpyxl\n"
        "from sklearn.linear_model import LinearRegression\n"
        "print(round(LinearRegression().fit([[1], [2], [3]], [2, 4, 6]).coef_[0], 3))"]})
    assert r.status == 200, r.body
    assert r.json()["cells"][0]["outputs"][0]["text"] == "2.0\n"


def test_seaborn_example(svc):
    r = svc.render(example("seaborn", format="json"))
    assert r.status == 200, r
    assert any("image/png" in o.get("data", {})
               for c in r.json()["cells"] for o in c["outputs"])


def test_error_example(svc):
    r = svc.render(example("error"))
    assert r.status == 422 and r.json()["error"]["ename"] == "IndexError", r


def test_cli_render_matches_http(svc):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.json")
        p = subprocess.run([BINARY, "render", os.path.join(EXAMPLES, "analysis.json"),
                            "-o", out], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        with open(out) as f:
            page = f.read()
        assert "<table" in page and "North" in page
        req = os.path.join(tmp, "req.json")
        with open(req, "w") as f:
            json.dump(example("analysis", format="json"), f)
        p = subprocess.run([BINARY, "render", req], capture_output=True, text=True,
                           timeout=300)
        cli = json.loads(p.stdout)
    http = svc.render(example("analysis", format="json")).json()
    strip = lambda doc: [[{k: v for k, v in o.items() if k != "data" or "image/png" not in v}
                          for o in c["outputs"]] for c in doc["cells"]]
    assert strip(cli) == strip(http)


def test_cli_render_error_exit_status(svc):
    p = subprocess.run([BINARY, "render", os.path.join(EXAMPLES, "error.json")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode != 0
    err = json.loads(p.stderr)["error"]
    assert err["code"] == "cell_error" and err["cell"] == 1


def test_cli_run(svc):
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "hello.cpp")
        with open(src, "w") as f:
            f.write('#include <iostream>\nint main(){std::cout<<"Hello World."<<std::endl;'
                    'std::cerr<<"\\x1b[31mwarn\\x1b[0m"<<std::endl;return 4;}')
        p = subprocess.run([BINARY, "run", "--language", "cpp", src],
                           capture_output=True, text=True, timeout=300)
    assert p.stdout == "Hello World.\n", p
    assert p.stderr == "warn\n", p
    assert p.returncode == 4


def test_cli_help(svc):
    for args in (["--help"], ["serve", "--help"], ["render", "--help"], ["run", "--help"]):
        p = subprocess.run([BINARY] + args, capture_output=True, text=True)
        assert p.returncode == 0 and "usage:" in p.stdout, (args, p)


if __name__ == "__main__":
    main(globals())
