"""Charts and tables as data (../shared/API.md, "Structured chart and table
data"): for every matplotlib figure a cell shows, a chart+json beside its
image, read from what the figure plainly draws; for every DataFrame, a
table+json in Table Schema form. One test per chart kind, checked against
the values the cell drew."""
import io
import json
import os
import zipfile

from harness import REPO, main

CHART = "application/vnd.nbcanvas.chart+json"
TABLE = "application/vnd.nbcanvas.table+json"
PRELUDE = "import matplotlib.pyplot as plt\nimport numpy as np\nimport pandas as pd\n"


def render_cells(svc, cells, **extra):
    body = {"cells": [PRELUDE] + cells, "format": "json", "cache": False}
    body.update(extra)
    r = svc.render(body)
    assert r.status == 200, r
    return r.json()["cells"][1:]


def charts_of(cell):
    return [o["data"][CHART] for o in cell["outputs"] if CHART in o.get("data", {})]


def one_chart(svc, code):
    cell = render_cells(svc, [code])[0]
    pngs = [o for o in cell["outputs"] if "image/png" in o.get("data", {})]
    charts = charts_of(cell)
    assert len(pngs) == 1 and len(charts) == 1, [sorted(o.get("data", {})) for o in cell["outputs"]]
    assert CHART in pngs[0]["data"], "the chart sits beside its image"
    return charts[0]


def values(chart):
    return {(e["group"], e["label"]): e["value"] for e in chart["elements"]}


def test_line_with_labels_units_and_title(svc):
    c = one_chart(svc, "plt.plot([0, 1, 2], [10, 20, 15], label='load')\n"
                       "plt.title('Server load')\nplt.xlabel('Time (s)')\n"
                       "plt.ylabel('Load [%]')\nplt.legend()\nplt.show()")
    assert c["type"] == "line" and c["title"] == "Server load", c
    assert (c["x_label"], c["x_unit"], c["y_label"], c["y_unit"]) == ("Time (s)", "s", "Load [%]", "%"), c
    assert c["x_scale"] == c["y_scale"] == "linear"
    assert c["elements"] == [{"label": "load", "points": [[0, 10], [1, 20], [2, 15]]}], c
    assert c["x_ticks"] and len(c["x_ticks"]) == len(c["x_tick_labels"])


def test_scatter(svc):
    c = one_chart(svc, "plt.scatter([1, 2, 3], [4, 1, 9], label='obs')\nplt.show()")
    assert c["type"] == "scatter", c
    assert c["elements"] == [{"label": "obs", "points": [[1, 4], [2, 1], [3, 9]]}], c


def test_bar_with_error_bars(svc):
    c = one_chart(svc, "plt.bar(['East', 'West'], [33136, 20514], yerr=[1000, 500])\nplt.show()")
    assert c["type"] == "bar" and c["orientation"] == "vertical", c
    assert c["x_scale"] == "categorical"
    assert values(c) == {("", "East"): 33136, ("", "West"): 20514}, c
    assert [e["error"] for e in c["elements"]] == [[32136, 34136], [20014, 21014]], c


def test_horizontal_bar(svc):
    c = one_chart(svc, "plt.barh(['a', 'b', 'c'], [3, 1, 2])\nplt.show()")
    assert c["type"] == "bar" and c["orientation"] == "horizontal", c
    assert values(c) == {("", "a"): 3, ("", "b"): 1, ("", "c"): 2}, c


def test_grouped_and_stacked_bars_told_apart(svc):
    grouped, stacked = render_cells(svc, [
        "x = np.arange(2)\nplt.bar(x - 0.2, [1, 2], 0.4, label='2023')\n"
        "plt.bar(x + 0.2, [3, 4], 0.4, label='2024')\nplt.xticks(x, ['North', 'South'])\n"
        "plt.legend()\nplt.show()",
        "plt.bar(['North', 'South'], [1, 2], label='cars')\n"
        "plt.bar(['North', 'South'], [3, 4], bottom=[1, 2], label='vans')\nplt.legend()\nplt.show()"])
    g, s = charts_of(grouped)[0], charts_of(stacked)[0]
    assert g["type"] == "bar" and g["layout"] == "grouped", g
    assert values(g) == {("2023", "North"): 1, ("2023", "South"): 2,
                         ("2024", "North"): 3, ("2024", "South"): 4}, g
    assert s["type"] == "bar" and s["layout"] == "stacked", s
    assert values(s) == {("cars", "North"): 1, ("cars", "South"): 2,
                         ("vans", "North"): 3, ("vans", "South"): 4}, s


def test_pie(svc):
    c = one_chart(svc, "plt.pie([1, 1, 2], labels=['cats', 'dogs', 'fish'])\nplt.show()")
    assert c["type"] == "pie", c
    assert [e["label"] for e in c["elements"]] == ["cats", "dogs", "fish"], c
    assert [round(e["angle"]) for e in c["elements"]] == [90, 90, 180], c


def test_box_and_whisker(svc):
    c = one_chart(svc, "plt.boxplot([[1, 2, 3, 4, 5, 40], [2, 3, 4]], labels=['a', 'b'])\nplt.show()")
    assert c["type"] == "box", c
    a, b = c["elements"]
    assert a["label"] == "a" and a["median"] == 3.5 and a["min"] == 1 and a["max"] == 5, a
    assert a["first_quartile"] == 2.25 and a["third_quartile"] == 4.75 and a["outliers"] == [40], a
    assert b["label"] == "b" and b["median"] == 3 and b["outliers"] == [], b


def test_several_axes_are_a_superchart(svc):
    c = one_chart(svc, "fig, (l, r) = plt.subplots(1, 2)\nfig.suptitle('Both')\n"
                       "l.plot([1, 2], [3, 4])\nr.bar(['x'], [7])\nplt.show()")
    assert c["type"] == "superchart" and c["title"] == "Both", c
    assert [e["type"] for e in c["elements"]] == ["line", "bar"], c


def test_dates_and_log_scales(svc):
    dates, log = render_cells(svc, [
        "plt.plot(pd.date_range('2024-03-01', periods=3), [5, 6, 7])\nplt.show()",
        "plt.plot([1, 10, 100], [1, 2, 3])\nplt.xscale('log')\nplt.show()"])
    d, l = charts_of(dates)[0], charts_of(log)[0]
    assert d["x_scale"] == "datetime", d
    assert [p[0][:10] for p in d["elements"][0]["points"]] == ["2024-03-01", "2024-03-02",
                                                                "2024-03-03"], d
    assert l["x_scale"] == "log" and l["elements"][0]["points"][2] == [100, 3], l


def test_pandas_plots(svc):
    bar, hist, line = render_cells(svc, [
        "df = pd.DataFrame({'region': ['East', 'West'], 'sales': [5, 3]})\n"
        "df.plot.bar(x='region', y='sales')\nplt.show()",
        "pd.DataFrame({'v': [1, 2, 2, 3, 3, 3]}).hist(bins=3)\nplt.show()",
        "pd.DataFrame({'a': [1, 4, 9]}).plot()\nplt.show()"])
    b, h, l = charts_of(bar)[0], charts_of(hist)[0], charts_of(line)[0]
    assert b["type"] == "bar" and values(b) == {("sales", "East"): 5, ("sales", "West"): 3}, b
    assert h["type"] == "bar" and [e["value"] for e in h["elements"]] == [1, 2, 3], h
    assert h["elements"][0]["label"].startswith("[1, "), h  # bins are ranges
    assert l["type"] == "line" and l["elements"][0]["points"] == [[0, 1], [1, 4], [2, 9]], l


def test_seaborn_plots(svc):
    cells = render_cells(svc, [
        "import seaborn as sns\nsns.barplot(x=['a', 'b', 'a'], y=[1, 5, 3])\nplt.show()",
        "import seaborn as sns\nsns.lineplot(x=[1, 2, 3], y=[1, 4, 9])\nplt.show()",
        "import seaborn as sns\nsns.scatterplot(x=[1, 2], y=[3, 4])\nplt.show()",
        "import seaborn as sns\nsns.boxplot(x=['a'] * 5, y=[1, 2, 3, 4, 5])\nplt.show()",
        "import seaborn as sns\nsns.histplot([1, 2, 2, 3, 3, 3], bins=3)\nplt.show()"])
    bar, line, scatter, box, hist = (charts_of(c)[0] for c in cells)
    assert bar["type"] == "bar" and values(bar) == {("", "a"): 2, ("", "b"): 5}, bar
    assert line["type"] == "line" and line["elements"][0]["points"] == [[1, 1], [2, 4], [3, 9]], line
    assert scatter["type"] == "scatter" and scatter["elements"][0]["points"] == [[1, 3], [2, 4]]
    assert box["type"] == "box" and box["elements"][0]["median"] == 3, box
    assert hist["type"] == "bar" and [e["value"] for e in hist["elements"]] == [1, 2, 3], hist


def test_unreadable_figure_is_unknown_and_keeps_its_image(svc):
    # An image plot is no chart kind; an axes whose title cannot be read
    # breaks the extractor itself: both keep their PNG and their outputs.
    image, broken = render_cells(svc, [
        "plt.imshow([[1, 2], [3, 4]])\nplt.title('heat')\nplt.show()",
        "fig, ax = plt.subplots()\nax.plot([1, 2])\n"
        "ax.get_title = lambda *a, **k: 1 / 0\nprint('drawn')\nplt.show()"])
    c = charts_of(image)[0]
    assert c["type"] == "unknown" and c["title"] == "heat", c
    assert any("image/png" in o.get("data", {}) for o in image["outputs"])
    assert [o["output_type"] for o in broken["outputs"]] == ["stream", "display_data"], broken
    assert broken["outputs"][0]["text"] == "drawn\n"
    assert "image/png" in broken["outputs"][1]["data"]
    assert broken["outputs"][1]["data"][CHART]["type"] == "unknown"


def test_tables(svc):
    cell = render_cells(svc, [
        "pd.DataFrame({'n': range(80), 'x': [0.5, None] * 40, 'ok': [True, False] * 40,\n"
        "              'when': pd.date_range('2024-01-01', periods=80), 's': ['a'] * 80})"])[0]
    t = [o["data"][TABLE] for o in cell["outputs"] if TABLE in o.get("data", {})][0]
    types = {f["name"]: f["type"] for f in t["schema"]["fields"]}
    assert types == {"index": "integer", "n": "integer", "x": "number", "ok": "boolean",
                     "when": "datetime", "s": "string"}, types
    assert t["total_rows"] == 80 and t["truncated"] is True, t  # max_table_rows 50
    assert len(t["data"]) == 50 and t["data"][1]["x"] is None, t["data"][:2]
    assert t["data"][0]["when"].startswith("2024-01-01")


def test_structured_is_opt_in_elsewhere_and_the_page_is_unchanged(svc):
    code = ["plt.plot([1, 2])\nplt.show()", "pd.DataFrame({'a': [1]})"]
    off = render_cells(svc, code, structured=False)
    assert not charts_of(off[0]) and all(TABLE not in o.get("data", {}) for o in off[1]["outputs"])
    page = svc.render({"cells": [PRELUDE] + code, "cache": False, "structured": True})
    assert page.status == 200, page
    assert b"vnd.nbcanvas" not in page.body
    r = svc.render({"cells": [PRELUDE] + code, "format": "zip", "cache": False})
    z = zipfile.ZipFile(io.BytesIO(r.body))
    result = json.loads(z.read("result.json"))
    assert CHART in result["cells"][1]["outputs"][0]["data"], result
    nb = json.loads(z.read("notebook.ipynb"))
    assert CHART in nb["cells"][1]["outputs"][0]["data"]
    # the executed notebook still passes nbformat's validator: sent back
    # as a notebook, nbformat validates it before it runs
    again = svc.render({"notebook": nb, "format": "json", "cache": False})
    assert again.status == 200, again


def test_big_data_is_capped_and_says_so(svc):
    # Two million points draw a small PNG; their data must not swell the
    # answer or fail the cell: series and columns are capped, and say so.
    line, wide = render_cells(svc, [
        "plt.plot(np.arange(2_000_000), np.zeros(2_000_000))\nplt.show()",
        "pd.DataFrame(np.zeros((3, 500)))"])
    c = charts_of(line)[0]
    el = c["elements"][0]
    assert c["type"] == "line" and len(el["points"]) == 5000, len(el["points"])
    assert el["truncated"] is True and el["total_points"] == 2_000_000, {k: el[k] for k in el if k != "points"}
    t = [o["data"][TABLE] for o in wide["outputs"] if TABLE in o.get("data", {})][0]
    assert len(t["schema"]["fields"]) == 101 and t["total_columns"] == 500, len(t["schema"]["fields"])
    assert t["truncated"] is True


def test_real_notebooks_figures(svc):
    # Other people's notebooks: every figure they show gets its data.
    for name in ("ipython-trapezoid-rule.ipynb", "scipy-cookbook-robust-regression.ipynb"):
        with open(os.path.join(REPO, "tests", "data", "notebooks", name)) as f:
            nb = json.load(f)
        r = svc.render({"notebook": nb, "format": "json"})
        assert r.status == 200, (name, r)
        figures = [o for c in r.json()["cells"] for o in c["outputs"]
                   if "image/png" in o.get("data", {})]
        assert figures, name
        for o in figures:
            chart = o["data"][CHART]
            assert chart["type"] in ("line", "scatter", "bar", "superchart"), (name, chart["type"])
            assert chart["elements"], (name, chart)


if __name__ == "__main__":
    main(globals(), config={"max_table_rows": 50})
