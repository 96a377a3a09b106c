"""Real notebooks written by other people (tests/data/notebooks, unmodified
copies; see its SOURCES.md) rendered through POST /v1/render: each must
produce what `jupyter nbconvert --execute` produces for it."""
import base64
import hashlib
import json
import os

from harness import REPO, check_error, main

NOTEBOOKS = os.path.join(REPO, "tests", "data", "notebooks")


def load(name):
    with open(os.path.join(NOTEBOOKS, name)) as f:
        return json.load(f)


def outputs(doc):
    return [(c["index"], o) for c in doc["cells"] for o in c["outputs"]]


def count_mime(doc, mime):
    return sum(1 for _, o in outputs(doc) if mime in o.get("data", {}))


def streams(doc, name):
    return [o for _, o in outputs(doc) if o.get("output_type") == "stream"
            and o.get("name") == name]


def render_json(svc, name, **extra):
    body = {"notebook": load(name), "format": "json"}
    body.update(extra)
    r = svc.render(body)
    assert r.status == 200, (name, r)
    return r.json()


def test_capturing_output(svc):
    doc = render_json(svc, "ipython-capturing-output.ipynb")
    assert count_mime(doc, "image/png") == 1
    assert len(streams(doc, "stdout")) == 2
    assert len(streams(doc, "stderr")) == 2


def test_custom_display_logic(svc):
    doc = render_json(svc, "ipython-custom-display-logic.ipynb")
    assert count_mime(doc, "image/png") == 7
    assert count_mime(doc, "text/latex") == 10
    assert count_mime(doc, "application/javascript") == 1
    assert count_mime(doc, "application/mathml+xml") >= 1


def test_trapezoid_rule(svc):
    doc = render_json(svc, "ipython-trapezoid-rule.ipynb")
    assert count_mime(doc, "image/png") == 1
    assert len(streams(doc, "stdout")) == 1


def test_updating_displays(svc):
    doc = render_json(svc, "ipython-updating-displays.ipynb")
    html_only = [o for _, o in outputs(doc) if "text/html" in o.get("data", {})]
    assert len(html_only) == 3, len(html_only)


def test_merge_streams(svc):
    doc = render_json(svc, "mystnb-merge-streams.ipynb")
    out = streams(doc, "stdout")
    err = streams(doc, "stderr")
    assert len(out) == 1 and len(err) == 1, outputs(doc)
    assert out[0]["text"] == "stdout1\nstdout2\nstdout3\n", out
    assert err[0]["text"] == "stderr1\nstderr2\nstderr3\n", err
    results = [o for _, o in outputs(doc) if o["output_type"] == "execute_result"]
    assert results[0]["data"]["text/plain"] == "1"


def test_clear_output(svc):
    doc = render_json(svc, "nbclient-clear-output.ipynb")
    by_cell = {c["index"]: c["outputs"] for c in doc["cells"]}
    for empty in (2, 7, 8, 11):
        assert by_cell[empty] == [], (empty, by_cell[empty])
    texts1 = [o.get("text", o.get("data", {}).get("text/plain")) for o in by_cell[1]]
    assert texts1 == ["9\n"] or texts1 == ["9"], texts1
    assert "world" in json.dumps(by_cell[6])


def test_raises_exception_tag(svc):
    doc = render_json(svc, "nbclient-raises-exception-tag.ipynb")
    errors = [o for _, o in outputs(doc) if o["output_type"] == "error"]
    assert len(errors) == 1 and errors[0]["ename"] == "Exception"
    assert len(streams(doc, "stdout")) == 2


def test_markdown_attachment_page(svc):
    r = svc.render({"notebook": load("nbconvert-markdown-attachment.ipynb")})
    assert r.status == 200, r
    assert "data:image/png;base64," in r.body.decode()


def test_notebook_with_errors_raises(svc):
    r = svc.render({"notebook": load("nbconvert-notebook3-with-errors-RAISES.ipynb")})
    err = check_error(r, 422, "cell_error")
    assert err["cell"] == 3 and err["ename"] == "RuntimeError", err
    assert err["evalue"] == "This is a deliberate exception"
    doc = render_json(svc, "nbconvert-notebook3-with-errors-RAISES.ipynb",
                      allow_errors=True)
    assert len(streams(doc, "stdout")) == 3


def test_svg_figure(svc):
    doc = render_json(svc, "nbconvert-svg-figure.ipynb")
    assert count_mime(doc, "image/svg+xml") == 1
    assert count_mime(doc, "image/png") == 0


def test_robust_regression(svc):
    doc = render_json(svc, "scipy-cookbook-robust-regression.ipynb")
    assert count_mime(doc, "image/png") == 2


def _join(value):
    return "".join(value) if isinstance(value, list) else value


def _essence(output):
    """What an output shows, without counters and metadata."""
    kind = output["output_type"]
    if kind == "stream":
        return (kind, output["name"], _join(output["text"]))
    if kind == "error":
        return (kind, output["ename"])
    data = output.get("data", {})
    png = _join(data.get("image/png"))
    if png:  # the same bytes, however the base64 is wrapped
        png = hashlib.sha256(base64.b64decode("".join(png.split()))).hexdigest()
    return (kind, _join(data.get("text/plain")), png)


def same_outputs(name, doc):
    """nbclient's own check: a run's outputs equal those stored in the file."""
    stored = [c for c in load(name)["cells"] if c["cell_type"] == "code"]
    got = {c["index"]: c["outputs"] for c in doc["cells"]}
    for index, cell in enumerate(load(name)["cells"]):
        if cell["cell_type"] != "code":
            continue
        want = [_essence(o) for o in cell["outputs"]]
        have = [_essence(o) for o in got[index]]
        assert have == want, (name, index, have, want)
    assert stored, name


def test_update_display_id(svc):
    same_outputs("nbclient-update-display-id.ipynb",
                 render_json(svc, "nbclient-update-display-id.ipynb"))


def test_history_in_memory(svc):
    # nbclient starts kernels with --HistoryManager.hist_file=:memory:
    same_outputs("nbclient-check-history-in-memory.ipynb",
                 render_json(svc, "nbclient-check-history-in-memory.ipynb"))


def test_skip_execution_tag(svc):
    same_outputs("nbclient-skip-execution-tag.ipynb",
                 render_json(svc, "nbclient-skip-execution-tag.ipynb"))


def test_unicode(svc):
    same_outputs("nbclient-unicode.ipynb", render_json(svc, "nbclient-unicode.ipynb"))


def test_inline_image_from_a_file(svc):
    with open(os.path.join(NOTEBOOKS, "nbclient-python.png"), "rb") as f:
        png = {"name": "python.png", "content_base64": base64.b64encode(f.read()).decode()}
    doc = render_json(svc, "nbclient-inline-image.ipynb", files=[png])
    assert count_mime(doc, "image/png") == 1
    same_outputs("nbclient-inline-image.ipynb", doc)


def test_kernel_that_kills_itself_raises(svc):
    r = svc.render({"notebook": load("nbclient-autokill-RAISES.ipynb")})
    err = check_error(r, 422, "cell_error")
    assert err["cell"] == 0 and err["ename"] == "DeadKernelError", err


if __name__ == "__main__":
    main(globals())
