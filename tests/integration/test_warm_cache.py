"""The warm pool and the result cache: same answers as the cold route,
a clean namespace in a pooled kernel, cache hits and misses, metrics."""
import json
import os
import re
import threading
import time

from harness import REPO, b64, check_error, main

NOTEBOOKS = os.path.join(REPO, "tests", "data", "notebooks")
EXAMPLES = os.path.join(REPO, "examples")


def wait_for_pool(svc, idle=1, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = svc.get("/metrics").body.decode()
        line = [l for l in text.splitlines() if l.startswith("nbcanvas_pool_idle ")]
        if line and int(line[0].split()[1]) >= idle:
            return
        time.sleep(0.2)
    raise AssertionError("the pool did not fill")


def render(svc, body, route):
    body = dict(body, cache=False)
    wait_for_pool(svc) if route == "warm" else None
    headers = {"X-Nbcanvas-Route": "cold"} if route == "cold" else {}
    r = svc.render(body, headers=headers)
    assert r.status == 200, r
    assert r.header("x-nbcanvas-sandbox") == route, r.headers
    return r


def comparable(doc):
    """Outputs with what may differ between two runs blanked out."""
    cells = []
    for c in doc["cells"]:
        outs = []
        for o in c["outputs"]:
            o = dict(o)
            data = dict(o.get("data", {}))
            for mime in ("image/png", "image/jpeg"):
                if mime in data:
                    data[mime] = "<image>"
            if "image/svg+xml" in data:
                data["image/svg+xml"] = "<svg>"
            if "text/html" in data:  # pandas Styler makes random table ids
                data["text/html"] = re.sub(r"T_[0-9a-f]{5}", "T_id", data["text/html"])
            if "text/plain" in data:  # reprs show memory addresses
                data["text/plain"] = re.sub(r"0x[0-9a-f]+", "0x", data["text/plain"])
            o["data"] = data
            o.pop("metadata", None)
            outs.append(o)
        cells.append((c["index"], c["execution_count"], outs))
    return cells


def load(path):
    with open(path) as f:
        return json.load(f)


EQUIVALENCE = [
    {"cells": ["print(1 + 1)"]},
    load(os.path.join(EXAMPLES, "chart.json")),
    load(os.path.join(EXAMPLES, "analysis.json")),
    load(os.path.join(EXAMPLES, "text2sql.json")),
    {"notebook": load(os.path.join(NOTEBOOKS, "mystnb-merge-streams.ipynb"))},
    {"notebook": load(os.path.join(NOTEBOOKS, "ipython-trapezoid-rule.ipynb"))},
    {"notebook": load(os.path.join(NOTEBOOKS, "nbconvert-svg-figure.ipynb"))},
    {"notebook": load(os.path.join(NOTEBOOKS, "nbclient-clear-output.ipynb"))},
]


def test_warm_and_cold_give_the_same_outputs(svc):
    for body in EQUIVALENCE:
        body = dict(body, format="json")
        warm = render(svc, body, "warm").json()
        cold = render(svc, body, "cold").json()
        assert comparable(warm) == comparable(cold), json.dumps(body)[:200]


def test_warm_and_cold_give_the_same_page(svc):
    body = {"cells": ["import pandas as pd\npd.DataFrame({'x': [1, 2], 'y': [3.5, 4.5]})",
                      {"cell_type": "markdown", "source": "**bold** text"}]}
    warm = render(svc, body, "warm").body
    cold = render(svc, body, "cold").body
    assert warm == cold


def test_pooled_kernel_namespace_is_clean(svc):
    body = {"format": "json", "cells": [
        "sorted(k for k in globals() if not k.startswith('_') and k not in "
        "('In', 'Out', 'get_ipython', 'exit', 'quit', 'open'))",
        "'np' in dir(), 'pd' in dir(), 'plt' in dir(), 'numpy' in dir()"]}
    warm = render(svc, body, "warm").json()
    cold = render(svc, body, "cold").json()
    assert comparable(warm) == comparable(cold)
    first = warm["cells"][0]
    assert first["execution_count"] == 1
    assert first["outputs"][0]["data"]["text/plain"] == "[]", first
    assert warm["cells"][1]["outputs"][0]["data"]["text/plain"] == \
        "(False, False, False, False)"


def test_each_pooled_sandbox_serves_once(svc):
    # a file written by one request is never seen by the next
    wait_for_pool(svc, idle=1)
    a = svc.render({"format": "json", "cache": False,
                    "cells": ["open('left_behind.txt', 'w').write('x')\n"
                              "import os\nos.getpid()"]})
    assert a.status == 200, a
    b = svc.render({"format": "json", "cache": False,
                    "cells": ["import os\nos.path.exists('left_behind.txt')"]})
    assert b.status == 200, b
    assert b.json()["cells"][0]["outputs"][0]["data"]["text/plain"] == "False"


def test_cache_hit_and_miss(svc):
    body = {"cells": ["import random\nrandom.random()"], "format": "json"}
    first = svc.render(body)
    assert first.status == 200 and first.header("x-nbcanvas-cache") == "miss"
    second = svc.render(body)
    assert second.header("x-nbcanvas-cache") == "hit"
    assert second.body == first.body  # the same random number: not executed
    assert "cache" in second.header("server-timing")
    fresh = svc.render(dict(body, cache=False))
    assert fresh.header("x-nbcanvas-cache") == "miss"
    assert fresh.json()["cells"] != first.json()["cells"]
    # any option is part of the key
    other = svc.render(dict(body, include_input=True))
    assert other.header("x-nbcanvas-cache") == "miss"
    # so are the files' contents
    f1 = dict(body, files=[{"name": "a.txt", "content_base64": b64("1")}])
    f2 = dict(body, files=[{"name": "a.txt", "content_base64": b64("2")}])
    assert svc.render(f1).header("x-nbcanvas-cache") == "miss"
    assert svc.render(f2).header("x-nbcanvas-cache") == "miss"
    assert svc.render(f1).header("x-nbcanvas-cache") == "hit"


def test_identical_requests_in_flight_run_once(svc):
    # A canvas that sends the same cells twice at once: the second waits
    # for the first and gets its answer. The random number proves that the
    # two bodies come from one execution.
    body = {"format": "json", "cells": ["import time, uuid\ntime.sleep(2)\nprint(uuid.uuid4())"]}
    results = []
    threads = [threading.Thread(target=lambda: results.append(svc.render(body)))
               for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.3)
    for t in threads:
        t.join(120)
    assert [r.status for r in results] == [200, 200], results
    assert results[0].body == results[1].body
    assert sorted(r.header("x-nbcanvas-cache") for r in results) == ["hit", "miss"]


def test_failures_are_not_cached(svc):
    body = {"cells": ["import random\nraise ValueError(random.random())"]}
    a = svc.render(body)
    b = svc.render(body)
    check_error(a, 422, "cell_error")
    check_error(b, 422, "cell_error")
    assert a.json()["error"]["evalue"] != b.json()["error"]["evalue"]


def test_pool_and_cache_metrics(svc):
    text = svc.get("/metrics").body.decode()
    for name in ("nbcanvas_pool_size", "nbcanvas_pool_idle", "nbcanvas_pool_taken_total",
                 "nbcanvas_pool_refill_seconds", "nbcanvas_cache_hits_total",
                 "nbcanvas_cache_entries"):
        assert name in text, name
    taken = [l for l in text.splitlines() if l.startswith("nbcanvas_pool_taken_total")]
    assert int(taken[0].split()[1]) > 0


def test_dead_pooled_container_is_replaced(svc):
    from harness import containers, engine
    wait_for_pool(svc, idle=2)
    idle = [c for c in containers(svc.listen)
            if c["Labels"].get("org.nbcanvas.job") == "pool"]
    assert idle, "no pooled container found"
    engine("POST", "/containers/%s/kill" % idle[0]["Id"])
    # a request right away still succeeds (another warm one, or cold)
    r = svc.render({"cells": ["print('still fine')"], "cache": False})
    assert r.status == 200, r
    wait_for_pool(svc, idle=2, timeout=60)


if __name__ == "__main__":
    main(globals(), config={"pool_size": 2})
