"""Charts and tables as data, inside the kernel.

The service (src/kernel_job.c) imports this in the kernel (when the job asks for structured
outputs) and calls install(): it registers two IPython display formatters,
so that wherever a matplotlib figure or a pandas DataFrame is displayed,
the same display_data output also carries

  application/vnd.nbcanvas.chart+json   what the figure draws, as data
  application/vnd.nbcanvas.table+json   the frame in pandas' Table Schema

beside its PNG or HTML (../shared/API.md, "Structured chart and table
data"). The figure is read back from matplotlib's own artists, after
whatever drew it (pyplot, pandas .plot, seaborn): bars from BarContainers,
lines and markers from Line2D, points from PathCollections, wedges,
box-and-whisker lines. What cannot be read is type "unknown" with what is
known. An extractor error never reaches the notebook: the formatter then
answers "unknown" (or nothing), and the figure's own outputs stay as they
were.
"""
import datetime
import json
import math
import re

# Caps, so that the data of a figure or a frame stays a small part of the
# answer whatever it holds (a line of two million points draws a small
# PNG): what is cut is said (truncated, total_points, total_columns).
MAX_POINTS = 5000    # points of one line or scatter series
MAX_ELEMENTS = 2000  # bars, wedges, boxes, series of one chart
MAX_COLUMNS = 100    # columns of a table

CHART_MIME = "application/vnd.nbcanvas.chart+json"
TABLE_MIME = "application/vnd.nbcanvas.table+json"
UNIT = re.compile(r"^(.*?)\s*[\(\[]([^\(\)\[\]]+)[\)\]]\s*$")


# --- small readers ---------------------------------------------------------

def number(v):
    """A JSON number, or None for NaN and infinities."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def text(v):
    s = "" if v is None else str(v)
    return "" if s.startswith("_") else s  # matplotlib's "_nolegend_", "_child0"


def label_and_unit(s):
    """The label as the figure shows it, and the unit it ends with (or
    None): "Time (s)" is ("Time (s)", "s"), as a reader of the chart sees
    it and as E2B's extractor has it."""
    m = UNIT.match(s or "")
    return (s or "", m.group(2) if m else None)


def axis_kind(axis):
    """linear, log, datetime or categorical."""
    import matplotlib.category
    import matplotlib.dates

    if isinstance(axis.get_units(), matplotlib.category.UnitData):
        return "categorical"
    conv = axis.get_converter() if hasattr(axis, "get_converter") else axis.converter
    if isinstance(conv, (matplotlib.dates.DateConverter, matplotlib.dates.ConciseDateConverter,
                         getattr(matplotlib.dates, "_SwitchableDateConverter", type(None)))):
        return "datetime"
    scale = axis.get_scale()
    return "log" if scale in ("log", "symlog", "logit") else "linear"


def categories(axis):
    """position -> category name, for a categorical axis."""
    units = axis.get_units()
    mapping = getattr(units, "_mapping", None) or {}
    return {float(v): str(k) for k, v in mapping.items()}


def coordinate(v, kind, names):
    """An x or y value as the chart means it."""
    f = number(v)
    if f is None:
        return None
    if kind == "datetime":
        import matplotlib.dates
        try:
            return matplotlib.dates.num2date(f).isoformat()
        except (ValueError, OverflowError):
            return None
    if kind == "categorical":
        return names.get(round(f, 6), names.get(f, f))
    return f


def tick_labels(ticklabels):
    return [t.get_text() for t in ticklabels]


def tick_at(ax, axis_name, position, within=1e-6):
    """The text of the tick nearest position on an axis, if one is within
    the given distance (bars' categories)."""
    axis = ax.xaxis if axis_name == "x" else ax.yaxis
    best = None
    for loc, t in zip(axis.get_ticklocs(), axis.get_ticklabels()):
        d = abs(loc - position)
        if t.get_text() and d <= within and (best is None or d < best[0]):
            best = (d, t.get_text())
    return best[1] if best else None


def span(a, b):
    """A bin's range as a label: [a, b)."""
    return "[%s, %s)" % ("%.10g" % (a + 0.0), "%.10g" % (b + 0.0))


# --- one axes ------------------------------------------------------------

def describe_axes(ax):
    """Title, labels, units, scales and ticks of one axes."""
    x_label, x_unit = label_and_unit(ax.get_xlabel())
    y_label, y_unit = label_and_unit(ax.get_ylabel())
    out = {"type": "unknown", "title": ax.get_title() or "",
           "x_label": x_label, "y_label": y_label,
           "x_scale": axis_kind(ax.xaxis), "y_scale": axis_kind(ax.yaxis),
           "x_ticks": [number(t) for t in ax.get_xticks()],
           "x_tick_labels": tick_labels(ax.get_xticklabels()),
           "y_ticks": [number(t) for t in ax.get_yticks()],
           "y_tick_labels": tick_labels(ax.get_yticklabels()),
           "elements": []}
    if x_unit:
        out["x_unit"] = x_unit
    if y_unit:
        out["y_unit"] = y_unit
    return out


def error_ranges(container):
    """{bar index: [low, high]} from a bar's errorbar, if any."""
    err = getattr(container, "errorbar", None)
    if err is None:
        return {}
    ranges = {}
    for coll in err.lines[2] if len(err.lines) > 2 else []:
        for i, seg in enumerate(coll.get_segments()):
            if len(seg) == 2:
                ranges[i] = seg
    return ranges


def bar_geometry(p, horizontal):
    """(centre, length, start, end) of one bar."""
    if horizontal:
        return (p.get_y() + p.get_height() / 2, p.get_width(), p.get_y(),
                p.get_y() + p.get_height())
    return (p.get_x() + p.get_width() / 2, p.get_height(), p.get_x(),
            p.get_x() + p.get_width())


def bars(ax, chart):
    from matplotlib.container import BarContainer

    containers = [c for c in ax.containers if isinstance(c, BarContainer) and
                  any(number(bar_geometry(p, False)[1]) is not None and
                      number(bar_geometry(p, True)[1]) is not None for p in c.patches)]
    if not containers:
        return False
    horizontal = getattr(containers[0], "orientation", "vertical") == "horizontal"
    along = "y" if horizontal else "x"
    names = categories(ax.yaxis if horizontal else ax.xaxis)
    geometry = [[bar_geometry(p, horizontal) for p in c.patches] for c in containers]
    # several series on the same positions are stacked; side by side, grouped
    layout = None
    if len(containers) > 1:
        first = set(round(g[0], 6) for g in geometry[0])
        others = set(round(g[0], 6) for gs in geometry[1:] for g in gs)
        layout = "stacked" if first & others else "grouped"
    # a histogram's bins touch: they are ranges, not categories
    ends = sorted((g[2], g[3]) for g in geometry[0])
    binned = (len(ends) > 1 and axis_kind(ax.yaxis if horizontal else ax.xaxis) != "categorical"
              and all(abs(ends[k][1] - ends[k + 1][0]) < 1e-9 for k in range(len(ends) - 1)))
    ticks = sorted((ax.yaxis if horizontal else ax.xaxis).get_ticklocs())
    spacing = min((b - a for a, b in zip(ticks, ticks[1:])), default=1.0)
    chart.update(type="bar", orientation="horizontal" if horizontal else "vertical")
    if layout:
        chart["layout"] = layout
    for k, c in enumerate(containers):
        group = text(c.get_label()) or ("series %d" % k if len(containers) > 1 else "")
        errors = error_ranges(c)
        for i, (centre, value, start, end) in enumerate(geometry[k]):
            if binned:
                label = span(start, end)
            else:
                near = spacing / 2 if layout == "grouped" else 1e-6
                label = (tick_at(ax, along, centre, near) or names.get(round(centre, 6)) or
                         span(start, end))
            el = {"label": label, "group": group, "value": number(value)}
            if i in errors:
                seg = errors[i]
                ends_ = [seg[0][0], seg[1][0]] if horizontal else [seg[0][1], seg[1][1]]
                el["error"] = sorted(number(v) for v in ends_)
            chart["elements"].append(el)
    return True


def wedges(ax, chart):
    from matplotlib.patches import Wedge

    ws = [p for p in ax.patches if isinstance(p, Wedge)]
    if not ws:
        return False
    labels = [t.get_text() for t in ax.texts]
    chart["type"] = "pie"
    for i, w in enumerate(ws[:MAX_ELEMENTS]):
        label = text(w.get_label()) or (labels[2 * i] if 2 * i < len(labels) and
                                        len(labels) >= len(ws) else "")
        chart["elements"].append({"label": label, "angle": number(w.theta2 - w.theta1),
                                  "radius": number(w.r)})
    return True


def is_box(line):
    """A box drawn as a closed five-point outline (matplotlib's boxplot)."""
    x, y = line.get_xdata(), line.get_ydata()
    return (len(x) == 5 and x[0] == x[3] == x[4] and x[1] == x[2] and
            y[0] == y[1] and y[2] == y[3] and y[0] == y[4])


def boxes(ax, chart):
    """Box and whisker plots: the boxes (outlines or patches), their medians,
    whiskers and fliers, matched by position."""
    from matplotlib.patches import PathPatch

    outlines = []
    for line in ax.lines:
        if is_box(line):
            x, y = line.get_xdata(), line.get_ydata()
            outlines.append((min(x), max(x), min(y), max(y)))
    for p in ax.patches:  # patch_artist=True, seaborn
        if isinstance(p, PathPatch):
            v = p.get_path().vertices
            if len(v) >= 4:
                outlines.append((v[:, 0].min(), v[:, 0].max(), v[:, 1].min(), v[:, 1].max()))
    if not outlines:
        return False
    names = categories(ax.xaxis)
    two_point = [l for l in ax.lines if len(l.get_xdata()) == 2]
    fliers = [l for l in ax.lines if l.get_linestyle() in ("None", "", " ") and len(l.get_xdata())]
    chart["type"] = "box"
    for x0, x1, q1, q3 in sorted(outlines):
        centre = (x0 + x1) / 2
        median = lo = hi = None
        for l in two_point:
            xs, ys = l.get_xdata(), l.get_ydata()
            if ys[0] == ys[1] and x0 - 1e-9 <= min(xs) and max(xs) <= x1 + 1e-9 and q1 <= ys[0] <= q3:
                median = ys[0]  # a horizontal line inside the box
            elif xs[0] == xs[1] and abs(xs[0] - centre) < 1e-6:
                if max(ys) <= q1 + 1e-9:
                    lo = min(ys)  # the lower whisker
                elif min(ys) >= q3 - 1e-9:
                    hi = max(ys)
        outliers = []
        for f in fliers:
            for fx, fy in zip(f.get_xdata(), f.get_ydata()):
                if abs(number(fx) - centre) < (x1 - x0):
                    outliers.append(number(fy))
        chart["elements"].append({
            "label": tick_at(ax, "x", centre) or names.get(round(centre, 6)) or "%g" % centre,
            "min": number(lo if lo is not None else q1), "first_quartile": number(q1),
            "median": number(median), "third_quartile": number(q3),
            "max": number(hi if hi is not None else q3), "outliers": sorted(outliers)})
    return True


def lines_and_points(ax, chart):
    from matplotlib.collections import PathCollection

    xk, yk = chart["x_scale"], chart["y_scale"]
    xn, yn = categories(ax.xaxis), categories(ax.yaxis)

    def series(label, xs, ys):
        total = min(len(xs), len(ys))
        xs, ys = xs[:MAX_POINTS], ys[:MAX_POINTS]
        # dates and categories are drawn as numbers: convert as the axis did
        xs, ys = ax.xaxis.convert_units(xs), ax.yaxis.convert_units(ys)
        el = {"label": label,
              "points": [[coordinate(x, xk, xn), coordinate(y, yk, yn)] for x, y in zip(xs, ys)]}
        if total > MAX_POINTS:
            el.update(truncated=True, total_points=int(total))
        return el

    drawn = [l for l in ax.lines if len(l.get_xdata()) >= 1 and l.get_visible()]
    lines = [l for l in drawn if l.get_linestyle() not in ("None", "", " ")]
    markers = [l for l in drawn if l.get_linestyle() in ("None", "", " ") and l.get_marker() not in (None, "None", "")]
    colls = [c for c in ax.collections if isinstance(c, PathCollection) and len(c.get_offsets())]
    if lines:
        chart["type"] = "line"
        for l in lines[:MAX_ELEMENTS]:
            chart["elements"].append(series(text(l.get_label()), l.get_xdata(), l.get_ydata()))
        return True
    if markers or colls:
        chart["type"] = "scatter"
        for l in markers[:MAX_ELEMENTS]:
            chart["elements"].append(series(text(l.get_label()), l.get_xdata(), l.get_ydata()))
        for c in colls[:MAX_ELEMENTS]:
            off = c.get_offsets()
            chart["elements"].append(series(text(c.get_label()), off[:, 0], off[:, 1]))
        return True
    return False


def axes_chart(ax):
    chart = describe_axes(ax)
    for reader in (wedges, boxes, bars, lines_and_points):
        try:
            if reader(ax, chart):
                break
        except Exception:  # this reader could not: the next may
            chart["elements"] = []
            chart["type"] = "unknown"
    if len(chart["elements"]) > MAX_ELEMENTS:
        chart["total_elements"] = len(chart["elements"])
        chart["elements"] = chart["elements"][:MAX_ELEMENTS]
        chart["truncated"] = True
    return chart


def figure_chart(fig):
    """The chart+json of a matplotlib figure."""
    axes = [ax for ax in fig.get_axes() if ax.get_visible() and
            ax.get_label() != "<colorbar>" and ax.has_data()]
    title = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) else ""
    if not axes:
        return {"type": "unknown", "title": title, "elements": []}
    if len(axes) == 1:
        chart = axes_chart(axes[0])
        if title and not chart["title"]:
            chart["title"] = title
        return chart
    return {"type": "superchart", "title": title,
            "elements": [axes_chart(ax) for ax in axes]}


def safe_chart(fig):
    try:
        chart = figure_chart(fig)
        json.dumps(chart, allow_nan=False)  # everything must be plain JSON
        return chart
    except Exception:
        try:
            return {"type": "unknown", "title": "", "elements": []}
        except Exception:
            return None


# --- tables ----------------------------------------------------------------

def table(df, max_rows):
    """pandas' Table Schema form of df, its first max_rows rows."""
    shown = df.iloc[:max_rows, :MAX_COLUMNS]
    doc = json.loads(shown.to_json(orient="table", date_format="iso", default_handler=str))
    doc["schema"].pop("pandas_version", None)
    doc["total_rows"] = int(len(df))
    doc["truncated"] = len(df) > max_rows or df.shape[1] > MAX_COLUMNS
    if df.shape[1] > MAX_COLUMNS:
        doc["total_columns"] = int(df.shape[1])
    return doc


def safe_table(df, max_rows):
    try:
        return table(df, max_rows)
    except Exception:
        return None


# --- installing the formatters --------------------------------------------

def install(max_rows=1000):
    """Registers the two formatters in the running IPython.

    They recognise their objects themselves rather than through IPython's
    type registry: enabling matplotlib's inline backend (the first import
    of pyplot in a cold kernel) removes Figure from every registered
    formatter."""
    import sys

    from IPython import get_ipython
    from IPython.core.formatters import BaseFormatter

    def instance_of(obj, module, name):
        cls = getattr(sys.modules.get(module), name, None)
        return cls is not None and isinstance(obj, cls)

    class ChartFormatter(BaseFormatter):
        format_type = CHART_MIME
        _return_type = dict

        def __call__(self, obj):
            if not self.enabled or not instance_of(obj, "matplotlib.figure", "Figure"):
                return None
            return safe_chart(obj)

    class TableFormatter(BaseFormatter):
        format_type = TABLE_MIME
        _return_type = dict

        def __call__(self, obj):
            if not self.enabled or not instance_of(obj, "pandas", "DataFrame"):
                return None
            return safe_table(obj, max_rows)

    ip = get_ipython()
    display = ip.display_formatter
    display.formatters[CHART_MIME] = ChartFormatter(parent=display)
    display.formatters[TABLE_MIME] = TableFormatter(parent=display)
    for mime in (CHART_MIME, TABLE_MIME):
        if mime not in display.active_types:
            display.active_types.append(mime)
