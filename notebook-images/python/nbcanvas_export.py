"""nbcanvas exporter: nbconvert's HTMLExporter kept warm in a long-lived
container that never runs user code (src/exporter.c starts and feeds it).

The service sends it notebooks that the kernel has already executed, and
options; it answers with the page `jupyter nbconvert --to html` makes of
them, or with nbformat's verdict on a notebook before it is executed.
A notebook is hostile data here: it is parsed by nbformat and rendered by
nbconvert's templates (from the image only, never from the notebook's
folder); nothing in it is run. The container is hardened like a sandbox
(no network, read-only root, no capabilities, limits), and the service
replaces it after a number of conversions or at its first failure.

The channel is the container's stdin and stdout:

  service -> exporter  "nbcanvas:export <n>\\n" + n bytes of JSON:
                       {"op": "html"|"validate", "notebook": {...},
                        "template", "include_input", "sanitize_html"}
  exporter -> service  "nbcanvas:ready\\n" once, when warm;
                       "nbcanvas:page <n>\\n" + n bytes (the page, or ""
                       for a valid notebook), or
                       "nbcanvas:failed <n>\\n" + n bytes (why, one line)
"""
import functools
import json
import os
import re
import site
import sys
import traceback

# The root is read-only: what Jupyter writes goes to /tmp; templates come
# only from the image.
os.environ.update({
    "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime",
    "IPYTHONDIR": "/tmp/ipython",
    "XDG_CACHE_HOME": "/tmp/cache",
    "JUPYTER_DATA_DIR": "/opt/nbcanvas/no-user-data",
})
os.environ.pop("JUPYTER_PATH", None)
site.ENABLE_USER_SITE = False

_out = os.fdopen(os.dup(1), "wb")
_in = os.fdopen(os.dup(0), "rb", buffering=0)
os.dup2(2, 1)
sys.stdout = sys.stderr

import nbformat  # noqa: E402
import nbformat.validator  # noqa: E402
from nbconvert import HTMLExporter  # noqa: E402
from nbformat.v4.rwbase import rejoin_lines  # noqa: E402
from traitlets.config import Config  # noqa: E402

# nbformat 5.5 compiles its JSON-schema validator anew for every
# validate() call (about 25 ms each, and nbconvert validates after every
# preprocessor); the validator for a schema version never changes.
nbformat.validator.get_validator = functools.lru_cache(maxsize=None)(
    nbformat.validator.get_validator)


def say(word, payload=b""):
    _out.write(b"nbcanvas:%s %d\n" % (word.encode(), len(payload)))
    _out.write(payload)
    _out.flush()


_exporters = {}


def exporter_for(template, include_input, sanitize):
    """One HTMLExporter per set of options, kept so its compiled templates
    are reused (the first export of a template costs a few hundred ms)."""
    key = (template, include_input, sanitize)
    if key in _exporters:
        return _exporters[key]
    c = Config()
    c.TemplateExporter.extra_template_basedirs = []
    if not include_input:
        # What --no-input sets.
        c.TemplateExporter.exclude_input = True
        c.TemplateExporter.exclude_input_prompt = True
        c.TemplateExporter.exclude_output_prompt = True
    c.HTMLExporter.sanitize_html = sanitize
    _exporters[key] = HTMLExporter(config=c, template_name=template)
    return _exporters[key]


XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>\s*")


def without_xml_declarations(nb):
    """nb with no <?xml ...?> line in its SVG outputs.

    Debian's nbconvert 6.5.3 passes SVG through clean_html (lxml), which
    refuses a str that carries an encoding declaration, so plain
    `jupyter nbconvert --to html` fails on every matplotlib SVG figure there.
    The declaration means nothing inside an HTML page; dropping it gives the
    page upstream nbconvert makes."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            svg = out.get("data", {}).get("image/svg+xml")
            if isinstance(svg, list):
                svg = "".join(svg)
            if isinstance(svg, str):
                out["data"]["image/svg+xml"] = XML_DECLARATION.sub("", svg)
    return nb


REQUIRE_JS = "/usr/share/javascript/requirejs/require.min.js"
REQUIRE_JS_LINK = re.compile(
    r'<script[^>]*src="file://' + re.escape(REQUIRE_JS) + r'"[^>]*>\s*</script>')


def with_inline_requirejs(html):
    """The page with require.js inlined when its outputs call require().

    Debian's templates link require.js by a file:// URL that no browser
    loads from a served page, and plotly's notebook outputs define and load
    their library through it (require(["plotly"], ...)): a blank chart.
    Pages that make no such call lose only the dead link."""
    html = REQUIRE_JS_LINK.sub("", html, count=1)
    if "require([" not in html:
        return html
    try:
        with open(REQUIRE_JS) as f:
            script = f.read()
    except OSError:
        return html
    return html.replace("</head>", "<script>" + script + "</script>\n</head>", 1)


def answer(job):
    # As nbformat.reads has it: multi-line strings stored as lists of
    # lines (as notebook files keep them) joined into one string.
    nb = rejoin_lines(nbformat.from_dict(job["notebook"]))
    if job.get("op") == "validate":
        nbformat.validate(nb)
        return b""
    exporter = exporter_for(str(job.get("template", "lab")),
                            bool(job.get("include_input", False)),
                            bool(job.get("sanitize_html", False)))
    body, _ = exporter.from_notebook_node(without_xml_declarations(nb))
    return with_inline_requirejs(body).encode()


def read_exactly(n):
    chunks, left = [], n
    while left > 0:
        data = _in.read(min(left, 1 << 20))
        if not data:
            raise EOFError
        chunks.append(data)
        left -= len(data)
    return b"".join(chunks)


def next_job():
    line = b""
    while not line.endswith(b"\n"):
        byte = _in.read(1)
        if not byte or len(line) > 64:
            raise EOFError
        line += byte
    word, size = line.decode().split()
    if word != "nbcanvas:export":
        raise EOFError
    return json.loads(read_exactly(int(size)))


def warm_up():
    """Exports a small notebook with the default options, so imports and
    template compilation are done before the first job."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# nbcanvas"),
        nbformat.v4.new_code_cell("1 + 1", execution_count=1, outputs=[
            nbformat.v4.new_output("execute_result", {"text/plain": "2"},
                                   execution_count=1)])])
    for template in ("lab", "canvas"):
        try:
            answer({"notebook": nb, "template": template})
        except Exception:
            pass


def main():
    os.chdir("/")
    warm_up()
    _out.write(b"nbcanvas:ready\n")
    _out.flush()
    while True:
        try:
            job = next_job()
        except (EOFError, ValueError):
            return
        try:
            say("page", answer(job))
        except Exception as e:
            lines = str(e).strip().splitlines() or [type(e).__name__]
            say("failed", lines[0][:500].encode())
            traceback.print_exc()


if __name__ == "__main__":
    main()
