#!/usr/bin/env python3
"""An agent's loop against a running nbcanvas, with the standard library only.

What it shows: a session is one live kernel kept between calls. The data is
uploaded once, when the session is made; each step is one call that runs in
the same kernel, so the `df` that step 1 makes is still there in steps 2 and
3; each answer's text is what an agent would read back as context (images are
only noted); at the end the whole session is downloaded as one executed
notebook, and the session is deleted however the script ends.

    nbcanvas serve &
    python3 examples/agent_session.py --out sales.ipynb

With a keys file, pass the key in NBCANVAS_KEY or --key. Any API error ends
the script with its message and a non-zero exit status. See docs/API.md,
"Sessions".
"""
import argparse
import base64
import json
import os
import sys
import urllib.error
import urllib.request

# The data the agent was given: sales by region.
SALES_CSV = """\
date,region,product,units,revenue
2026-01-05,North,Widget,12,150.00
2026-01-05,South,Gadget,4,120.00
2026-01-06,East,Gizmo,30,217.50
2026-01-06,West,Widget,8,100.00
2026-01-07,North,Gadget,6,180.00
2026-01-07,South,Widget,15,187.50
2026-01-08,East,Gadget,3,90.00
2026-01-08,West,Gizmo,22,159.50
2026-01-09,North,Gizmo,18,130.50
2026-01-09,East,Widget,10,125.00
"""

# What the agent decided to run, one call each.
STEPS = [
    ("load the data",
     "import pandas as pd\n"
     "df = pd.read_csv('sales.csv', parse_dates=['date'])\n"
     "print(len(df), 'rows,', df['region'].nunique(), 'regions')\n"
     "df.head(3)"),
    ("summarise by region",
     "by_region = df.groupby('region')[['units', 'revenue']].sum()\n"
     "by_region = by_region.sort_values('revenue', ascending=False)\n"
     "by_region"),
    ("chart it",
     "import matplotlib.pyplot as plt\n"
     "ax = by_region['revenue'].plot.bar(title='Revenue by region', rot=0)\n"
     "ax.set_xlabel('Region')\n"
     "ax.set_ylabel('Revenue (EUR)')\n"
     "plt.show()"),
]


class ApiError(Exception):
    """An answer that was not a success, as the service explained it."""


class Nbcanvas:
    def __init__(self, url, key):
        self.url = url.rstrip("/")
        self.key = key

    def call(self, method, path, body=None, timeout=300):
        """The answer's bytes; ApiError for an error answer."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.key:
            headers["Authorization"] = "Bearer " + self.key
        req = urllib.request.Request(self.url + path, data=data,
                                     headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as answer:
                return answer.read()
        except urllib.error.HTTPError as e:
            text = e.read().decode("utf-8", "replace")
            try:
                err = json.loads(text)["error"]
                text = "%s: %s" % (err["code"], err["message"])
            except (ValueError, KeyError, TypeError):
                pass
            raise ApiError("%s %s -> %d %s" % (method, path, e.code, text))
        except urllib.error.URLError as e:
            raise ApiError("cannot reach %s: %s" % (self.url, e.reason))

    def json(self, method, path, body=None):
        return json.loads(self.call(method, path, body))


def show(outputs):
    """Prints what an agent would read from one call's outputs."""
    for out in outputs:
        kind = out["output_type"]
        if kind == "stream":
            print(out["text"], end="")
        elif kind in ("execute_result", "display_data"):
            data = out["data"]
            for mime in sorted(data):
                if mime.startswith("image/"):
                    size = len(base64.b64decode(data[mime])) \
                        if mime != "image/svg+xml" else len(data[mime])
                    print("[image: %s, %d bytes]" % (mime, size))
            chart = data.get("application/vnd.nbcanvas.chart+json")
            if chart:
                print("[%s chart %r, %d elements]" % (
                    chart["type"], chart.get("title", ""),
                    len(chart.get("elements", []))))
            if "text/plain" in data and not any(
                    m.startswith("image/") for m in data):
                print(data["text/plain"])
        elif kind == "error":
            print("%s: %s" % (out["ename"], out["evalue"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080",
                    help="the service (default %(default)s)")
    ap.add_argument("--key", default=os.environ.get("NBCANVAS_KEY"),
                    help="API key (default: $NBCANVAS_KEY)")
    ap.add_argument("--out", default="notebook.ipynb",
                    help="where to save the notebook (default %(default)s)")
    args = ap.parse_args()
    api = Nbcanvas(args.url, args.key)

    session = api.json("POST", "/v1/sessions", {
        "kernel": "python3",
        "files": [{"name": "sales.csv",
                   "content_base64":
                       base64.b64encode(SALES_CSV.encode()).decode()}],
    })
    sid = session["id"]
    print("session %s (idle timeout %d s, ends by %s)"
          % (sid, session["idle_timeout_s"], session["expires_at"]))
    try:
        for n, (title, code) in enumerate(STEPS, 1):
            print("\n--- step %d: %s" % (n, title))
            answer = api.json("POST", "/v1/sessions/%s/execute" % sid,
                              {"code": code, "timeout_s": 60})
            show(answer["outputs"])
            print("(cell %d, [%d], %d ms)" % (answer["index"],
                                             answer["execution_count"],
                                             answer["duration_ms"]))
            if answer["status"] == "error":
                # An agent would read the error and try again; here it stops.
                raise ApiError("step %d raised %s: %s" % (
                    n, answer["error"]["ename"], answer["error"]["evalue"]))

        notebook = api.call("GET", "/v1/sessions/%s/notebook?format=ipynb"
                            % sid)
        with open(args.out, "wb") as f:
            f.write(notebook)
        print("\nsaved the executed notebook to %s (%d bytes)"
              % (args.out, len(notebook)))
    finally:
        try:
            api.call("DELETE", "/v1/sessions/%s" % sid)
            print("session deleted")
        except ApiError as e:  # already gone (it may have ended on a fault)
            print("could not delete the session: %s" % e, file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except ApiError as e:
        sys.exit("agent_session: %s" % e)
