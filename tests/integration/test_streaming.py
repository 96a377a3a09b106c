"""Streamed answers on the real engine (Accept: text/event-stream): cell and
output events as the kernel makes them, then exactly one result or error
event; a ping in long silences; a client that leaves cancels the work; a
streamed render's result served afterwards from /v1/results/{id}, to its
tenant only and for result_ttl_s."""
import io
import sys
import time
import zipfile

from harness import Service, check_error, containers, main, warm_pool_size

BINARY = sys.argv[1]

TICKS = "import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(1)"


def terminal(events):
    """The one result or error event, which must come last."""
    ends = [e for e in events if e[0] in ("result", "error")]
    assert len(ends) == 1, events
    assert events[-1] is ends[0], events
    return ends[0]


def test_render_streams_outputs_as_they_come(svc):
    status, headers, events = svc.stream("/v1/render", {"cells": ["x = 1", TICKS, "x + 1"]})
    assert status == 200, events
    assert headers["content-type"].startswith("text/event-stream"), headers
    assert headers.get("x-request-id")
    ticks = [e for e in events if e[0] == "output" and e[1]["index"] == 1]
    assert [e[1]["output"]["text"] for e in ticks] == ["tick 0\n", "tick 1\n", "tick 2\n"]
    # a print every second arrives every second, not at the end
    gaps = [b[2] - a[2] for a, b in zip(ticks, ticks[1:])]
    assert all(0.6 < g < 1.6 for g in gaps), gaps
    end = terminal(events)
    assert end[0] == "result" and end[2] - ticks[-1][2] > 0.6, (end, ticks)
    cells = [e[1] for e in events if e[0] == "cell"]
    assert {"index": 1, "state": "running"} in cells, cells
    assert {"index": 2, "state": "done", "execution_count": 3} in cells, cells
    result = end[1]
    assert result["status"] == "ok" and len(result["cells"]) == 3, result
    assert result["result_url"] == "/v1/results/" + result["id"]
    last = [e for e in events if e[0] == "output" and e[1]["index"] == 2][0][1]
    assert last["output"]["data"]["text/plain"] == "2", last
    # the page, the zip, the notebook and the JSON afterwards
    page = svc.get(result["result_url"] + "?format=html")
    assert page.status == 200 and b"tick 2" in page.body, page
    assert "sandbox" in page.header("content-security-policy")
    z = zipfile.ZipFile(io.BytesIO(svc.get(result["result_url"] + "?format=zip").body))
    assert {"index.html", "notebook.ipynb", "result.json"} <= set(z.namelist())
    nb = svc.get(result["result_url"] + "?format=ipynb").json()
    assert "".join(nb["cells"][2]["outputs"][0]["data"]["text/plain"]) == "2"
    assert svc.get(result["result_url"] + "?format=json").json()["id"] == result["id"]
    check_error(svc.get("/v1/results/" + result["id"] + "?format=pdf"), 400,
                "invalid_request")
    check_error(svc.get("/v1/results/not-a-result"), 404, "not_found")


def test_a_failed_render_ends_with_its_error(svc):
    status, _, events = svc.stream("/v1/render", {"cells": ["print('before')", "1/0", "2"]})
    assert status == 200
    end = terminal(events)
    assert end[0] == "error", end
    err = end[1]["error"]
    assert err["code"] == "cell_error" and err["cell"] == 1 and err["ename"] == "ZeroDivisionError"
    outs = [e[1]["output"] for e in events if e[0] == "output"]
    assert outs[0]["text"] == "before\n" and outs[1]["output_type"] == "error", outs
    assert not any(e[0] == "cell" and e[1]["index"] == 2 for e in events)
    # a timeout reports the cell that was running
    _, _, events = svc.stream("/v1/render", {"cells": ["import time\ntime.sleep(30)"],
                                            "timeout_s": 2})
    err = terminal(events)[1]["error"]
    assert err["code"] == "timeout" and err["cell"] == 0, err


def test_errors_before_the_job_are_plain_answers(svc):
    status, _, resp = svc.stream("/v1/render", {"cells": ["1"], "colour": "red"})
    assert status == 400
    check_error(resp, 400, "invalid_request")
    status, _, resp = svc.stream("/v1/sessions/nope/execute", {"code": "1"})
    check_error(resp, 404, "not_found")


def test_a_repeated_stream_is_a_cache_hit(svc):
    body = {"cells": ["import random\nopen('out.txt', 'w').write('kept')\n"
                      "print(random.random())"]}
    fetched = []

    def fetch_at_once(conn, events):
        # asked for the moment the result is heard of, it is there
        if events[-1][0] == "result":
            fetched.append(svc.get(events[-1][1]["result_url"] + "?format=zip").status)
        return False

    first = svc.stream("/v1/render", body, on_open=fetch_at_once)[2]
    second = svc.stream("/v1/render", body, on_open=fetch_at_once)[2]
    a, b = terminal(first)[1], terminal(second)[1]
    assert fetched == [200, 200], fetched
    text = lambda r: r["cells"][0]["outputs"][0]["text"]
    assert a["cache"] == "miss" and b["cache"] == "hit", (a, b)
    assert text(a) == text(b)  # the same run, not another
    assert len(second) == 1, second  # no progress to show: the result
    assert b["id"] != a["id"] and b["result_url"].endswith(b["id"])
    for fmt in ("html", "ipynb", "json"):
        assert svc.get(b["result_url"] + "?format=" + fmt).status == 200
    z = zipfile.ZipFile(io.BytesIO(svc.get(b["result_url"] + "?format=zip").body))
    assert z.read("artifacts/out.txt") == b"kept", z.namelist()
    # "cache": false runs it again
    c = terminal(svc.stream("/v1/render", dict(body, cache=False))[2])[1]
    assert c["cache"] == "miss" and text(c) != text(a)


def test_a_silent_job_gets_pings(svc):
    # The connection's inactivity timeout (10 s here) would close a silent
    # stream: that the result comes through the cell's 12 s of silence is
    # the property, and pings are what made it so.
    _, _, events = svc.stream("/v1/render", {"cells": ["import time\ntime.sleep(12)\n1"]})
    pings = [e for e in events if e[0] == "ping"]
    assert pings, events
    assert terminal(events)[0] == "result", events


def test_a_client_that_leaves_cancels_the_work(svc):
    def leave_after_start(conn, events):
        if any(e[0] == "output" for e in events):
            conn.sock.close()
            return True
        return False

    svc.stream("/v1/render", {"cells": ["print('go', flush=True)\nimport time\ntime.sleep(120)"]},
               on_open=leave_after_start)
    # the job's sandbox goes and its slot is freed long before 120 s
    deadline = time.time() + 15
    while True:
        text = svc.get("/metrics").body.decode()
        if ("nbcanvas_jobs_running 0" in text and
                len(containers(svc.listen)) <= warm_pool_size(svc)):
            break
        assert time.time() < deadline, text
        time.sleep(0.2)


def test_session_execute_streams(svc):
    r = svc.post("/v1/sessions", {})
    assert r.status == 201, r
    sid = r.json()["id"]
    try:
        status, _, events = svc.stream("/v1/sessions/%s/execute" % sid, {"code": TICKS})
        assert status == 200
        ticks = [e for e in events if e[0] == "output"]
        assert len(ticks) == 3 and ticks[2][2] - ticks[0][2] > 1.5, events
        end = terminal(events)
        assert end[0] == "result" and end[1]["status"] == "ok", end
        assert len(end[1]["outputs"]) == 3
        assert events[0] == ("cell", {"index": 0, "state": "running"}, events[0][2])
        # a timeout is the error event, and the session lives on
        _, _, events = svc.stream("/v1/sessions/%s/execute" % sid,
                                  {"code": "import time\ntime.sleep(30)", "timeout_s": 2})
        assert terminal(events)[1]["error"]["code"] == "timeout"
        r = svc.post("/v1/sessions/%s/execute" % sid, {"code": "i"})
        assert r.status == 200 and r.json()["outputs"][0]["data"]["text/plain"] == "2", r
    finally:
        assert svc.request("DELETE", "/v1/sessions/" + sid).status == 204


def test_results_are_per_tenant_and_expire(svc):
    import hashlib
    import json
    import os
    import subprocess
    import tempfile

    keys = []
    for tenant in ("acme", "beta"):
        out = subprocess.run([BINARY, "key", "new", tenant], capture_output=True,
                             text=True, check=True).stdout
        key = [w for w in out.split() if w.startswith("nbk_")][0]
        keys.append((key, {"tenant": tenant,
                           "key_sha256": hashlib.sha256(key.encode()).hexdigest()}))
    f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump([k[1] for k in keys], f)
    f.close()
    s = Service(BINARY, {"pool_size": 0, "api_keys_file": f.name, "result_ttl_s": 3},
                key=keys[0][0]).start()
    try:
        result = terminal(s.stream("/v1/render", {"cells": ["6 * 7"]})[2])[1]
        url = result["result_url"]
        assert s.get(url).status == 200
        check_error(s.get(url, headers={"Authorization": "Bearer " + keys[1][0]}),
                    404, "not_found")
        sid = s.post("/v1/sessions", {}).json()["id"]
        other = {"Authorization": "Bearer " + keys[1][0]}
        check_error(s.post("/v1/sessions/%s/execute" % sid, {"code": "1"}, headers=other),
                    404, "not_found")
        assert s.get("/v1/sessions", headers=other).json() == []
        check_error(s.request("DELETE", "/v1/sessions/" + sid, headers=other),
                    404, "not_found")
        assert s.request("DELETE", "/v1/sessions/" + sid).status == 204
        time.sleep(3.5)
        check_error(s.get(url), 404, "not_found")
    finally:
        assert s.stop() == 0
        os.unlink(f.name)


if __name__ == "__main__":
    main(globals(), {"pool_size": 1})
