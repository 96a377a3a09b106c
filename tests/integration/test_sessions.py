"""Sessions on the real engine: a kernel kept between calls (state, files,
the notebook so far), its faults (a cell past its time is interrupted and
the kernel lives on; a dead kernel ends the session), its limits (one
call at a time, max_sessions, idleness, lifetime), and its end (delete,
restart, SIGTERM) leaving no container. Hardening inside a session is in
test_abuse.py, which also runs under gVisor."""
import io
import sys
import threading
import time
import zipfile

from harness import Service, b64, check_error, containers, main

BINARY = sys.argv[1]

CSV = "region,amount\nEast,10\nWest,32\nEast,5\n"


def create(svc, **body):
    r = svc.post("/v1/sessions", body)
    assert r.status == 201, r
    assert r.header("location") == "/v1/sessions/" + r.json()["id"], r.headers
    return r.json()


def execute(svc, sid, code, **extra):
    body = {"code": code}
    body.update(extra)
    return svc.post("/v1/sessions/%s/execute" % sid, body)


def ok(svc, sid, code, **extra):
    r = execute(svc, sid, code, **extra)
    assert r.status == 200, r
    out = r.json()
    assert out["status"] == "ok", out
    return out


def text_of(out):
    """Everything a call showed as text: streams and text/plain."""
    parts = []
    for o in out["outputs"]:
        parts.append(o.get("text", ""))
        parts.append(o.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def delete(svc, sid):
    r = svc.request("DELETE", "/v1/sessions/" + sid)
    assert r.status == 204, r


def test_state_files_and_export(svc):
    s = create(svc, files=[{"name": "sales.csv", "content_base64": b64(CSV)}])
    assert s["kernel"] == "python3" and s["id"]
    assert s["created_at"].endswith("Z") and s["expires_at"] > s["created_at"]
    sid = s["id"]
    first = ok(svc, sid, "import pandas as pd\ndf = pd.read_csv('sales.csv')\n"
                         "total = int(df.amount.sum())")
    assert first["execution_count"] == 1 and first["index"] == 0
    second = ok(svc, sid, "total + 1")
    assert text_of(second) == "48", second
    assert second["execution_count"] == 2 and second["index"] == 1
    assert isinstance(second["duration_ms"], int)
    # a raised exception is a result, and the state lives on
    r = execute(svc, sid, "1/0")
    assert r.status == 200, r
    failed = r.json()
    assert failed["status"] == "error", failed
    assert failed["error"]["ename"] == "ZeroDivisionError", failed
    assert not any("\x1b" in line for line in failed["error"]["traceback"])
    # files: one uploaded with a call, one written by the code
    ok(svc, sid, "open('report.txt', 'w').write(open('extra.txt').read().upper())",
       files=[{"name": "extra.txt", "content_base64": b64("made here")}])
    f = svc.get("/v1/sessions/%s/files/report.txt" % sid)
    assert f.status == 200 and f.body == b"MADE HERE", f
    assert f.header("content-security-policy").startswith("sandbox"), f.headers
    assert f.header("content-type").startswith("text/plain"), f.headers
    check_error(svc.get("/v1/sessions/%s/files/nothing.txt" % sid), 404, "not_found")
    # a folder is no file, and asking for one leaves the session whole
    ok(svc, sid, "import os\nos.makedirs('out/deeper')")
    check_error(svc.get("/v1/sessions/%s/files/out" % sid), 404, "not_found")
    check_error(svc.get("/v1/sessions/%s/files/out/deeper" % sid), 404, "not_found")
    assert text_of(ok(svc, sid, "total - 1")) == "46"
    # the notebook so far, in every format, not run again
    page = svc.get("/v1/sessions/%s/notebook" % sid)
    assert page.status == 200 and b"48" in page.body, page
    assert page.header("content-type").startswith("text/html")
    assert "sandbox" in page.header("content-security-policy")
    assert b"read_csv" not in page.body  # --no-input by default
    with_code = svc.get("/v1/sessions/%s/notebook?include_input=true&template=classic"
                        % sid)
    assert with_code.status == 200 and b"read_csv" in with_code.body
    nb = svc.get("/v1/sessions/%s/notebook?format=ipynb" % sid).json()
    assert [c["execution_count"] for c in nb["cells"]] == [1, 2, 3, 4, 5, 6], nb["cells"]
    as_json = svc.get("/v1/sessions/%s/notebook?format=json" % sid).json()
    assert as_json["status"] == "ok" and len(as_json["cells"]) == 6
    z = svc.get("/v1/sessions/%s/notebook?format=zip" % sid)
    names = zipfile.ZipFile(io.BytesIO(z.body)).namelist()
    assert "index.html" in names and "notebook.ipynb" in names, names
    assert "artifacts/report.txt" in names, names
    assert "artifacts/sales.csv" not in names  # inputs left as they came
    # nothing ran again: the count goes on from where it was
    assert ok(svc, sid, "total")["execution_count"] == 7
    listed = svc.get("/v1/sessions").json()
    assert [x["id"] for x in listed] == [sid], listed
    assert listed[0]["cells"] == 7 and listed[0]["busy"] is False
    assert svc.get("/v1/sessions/" + sid).json() == listed[0]
    delete(svc, sid)
    check_error(execute(svc, sid, "total"), 404, "not_found")
    check_error(svc.get("/v1/sessions/%s/notebook" % sid), 404, "not_found")
    check_error(svc.request("DELETE", "/v1/sessions/" + sid), 404, "not_found")
    assert svc.get("/v1/sessions").json() == []


def test_bad_requests(svc):
    check_error(svc.post("/v1/sessions", {"colour": "blue"}), 400, "invalid_request")
    check_error(svc.post("/v1/sessions", {"kernel": "cobol"}), 400, "invalid_request")
    check_error(svc.post("/v1/sessions", {"idle_timeout_s": 0}), 400, "invalid_request")
    check_error(svc.post("/v1/sessions", {"files": [{"name": "../x", "content_base64": ""}]}),
                400, "invalid_request")
    check_error(svc.post("/v1/sessions", {"packages": ["tabulate"]}), 400,
                "invalid_request")
    check_error(execute(svc, "no-such-session", "1"), 404, "not_found")
    sid = create(svc)["id"]
    try:
        check_error(svc.post("/v1/sessions/%s/execute" % sid, {}), 400, "invalid_request")
        check_error(execute(svc, sid, 42), 400, "invalid_request")
        check_error(execute(svc, sid, "1", timeout_s=0), 400, "invalid_request")
        check_error(svc.get("/v1/sessions/%s/notebook?format=pdf" % sid), 400,
                    "invalid_request")
        check_error(svc.get("/v1/sessions/%s/files/a/../b" % sid), 400, "invalid_request")
        check_error(svc.get("/v1/sessions/%s/files/.nbcanvas/job.json" % sid), 400,
                    "invalid_request")
        # a link the code made to a file outside its folder is not served
        ok(svc, sid, "import os\nos.symlink('/etc/passwd', 'pw')\n"
                     "os.makedirs('d')\nos.symlink('/etc', 'd/etc')")
        check_error(svc.get("/v1/sessions/%s/files/pw" % sid), 404, "not_found")
        check_error(svc.get("/v1/sessions/%s/files/d/etc/passwd" % sid), 404, "not_found")
        check_error(svc.request("PUT", "/v1/sessions/" + sid), 405, "method_not_allowed")
        ok(svc, sid, "1")  # still usable
    finally:
        delete(svc, sid)


def test_timeout_interrupts_and_the_kernel_lives_on(svc):
    sid = create(svc)["id"]
    try:
        ok(svc, sid, "x = 7")
        t0 = time.time()
        r = execute(svc, sid, "import time\nprint('started', flush=True)\ntime.sleep(60)",
                    timeout_s=2)
        took = time.time() - t0
        err = check_error(r, 422, "timeout")
        assert took < 30, took  # the cell's own 60 s were cut short
        assert err["cell"] == 1, err
        assert "started" in "".join(o.get("text", "") for o in err["outputs"]), err
        assert "lives on" in err["message"], err
        # state kept, and the kernel answers at once
        assert text_of(ok(svc, sid, "x * 6")) == "42"
        # a cell that will not be interrupted ends the session
        r = execute(svc, sid, "import signal, time\n"
                              "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                              "time.sleep(60)", timeout_s=2)
        err = check_error(r, 422, "timeout")
        assert "ended" in err["message"], err
        check_error(execute(svc, sid, "x"), 404, "not_found")
    finally:
        svc.request("DELETE", "/v1/sessions/" + sid)


def test_output_limit_applies_per_call(svc):
    sid = create(svc)["id"]
    try:
        ok(svc, sid, "y = 3")
        # paced: a flood faster than the kernel can send its messages
        # exhausts its memory first (422 memory_limit, as for a render)
        r = execute(svc, sid, "import time\nwhile True:\n    print('x' * 10000)\n"
                              "    time.sleep(0.001)", timeout_s=30)
        err = check_error(r, 422, "output_limit")
        assert err["cell"] == 1 and "lives on" in err["message"], err
        assert text_of(ok(svc, sid, "y")) == "3"  # interrupted, not killed
    finally:
        delete(svc, sid)


def faulted(svc):
    text = svc.get("/metrics").body.decode()
    return int([l for l in text.splitlines()
                if l.startswith("nbcanvas_sessions_faulted_total")][0].split()[1])


def test_a_dead_kernel_ends_the_session(svc):
    before = faulted(svc)
    sid = create(svc)["id"]
    ok(svc, sid, "z = 1")
    err = check_error(execute(svc, sid, "import os\nos._exit(3)"), 422, "cell_error")
    assert err["ename"] == "DeadKernelError", err
    assert "ended" in err["message"], err
    check_error(execute(svc, sid, "z"), 404, "not_found")
    assert faulted(svc) == before + 1


def test_memory_exhaustion_ends_the_session(svc):
    sid = create(svc)["id"]
    err = check_error(execute(svc, sid, "x = bytearray(4 << 30)"), 422, "memory_limit")
    assert "ended" in err["message"], err
    check_error(execute(svc, sid, "1"), 404, "not_found")


def test_one_call_at_a_time(svc):
    sid = create(svc)["id"]
    try:
        first = {}

        def slow():
            first["r"] = execute(svc, sid, "import time\ntime.sleep(3)\n'done'")

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(1)
        check_error(execute(svc, sid, "1"), 409, "session_busy")
        status, _, resp = svc.stream("/v1/sessions/%s/execute" % sid, {"code": "1"})
        check_error(resp, 409, "session_busy")  # plain, before any stream
        check_error(svc.get("/v1/sessions/%s/notebook" % sid), 409, "session_busy")
        assert svc.get("/v1/sessions").json()[0]["busy"] is True
        t.join()
        assert first["r"].status == 200 and text_of(first["r"].json()) == "'done'"
        ok(svc, sid, "2")
    finally:
        delete(svc, sid)


def test_delete_during_a_call(svc):
    sid = create(svc)["id"]
    got = {}

    def slow():
        t0 = time.time()
        got["r"] = execute(svc, sid, "import time\ntime.sleep(60)\n'finished'")
        got["took"] = time.time() - t0

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(1)
    delete(svc, sid)
    assert svc.get("/v1/sessions").json() == []
    t.join()
    # the call under way stops with the session, and says why
    err = check_error(got["r"], 404, "not_found")
    assert "during this call" in err["message"], err
    assert got["took"] < 40, got  # not the cell's own 60 s
    check_error(execute(svc, sid, "1"), 404, "not_found")


def test_max_sessions(svc):
    ids = [create(svc)["id"] for _ in range(3)]
    try:
        err = check_error(svc.post("/v1/sessions", {}), 429, "busy")
        assert "max_sessions" in err["message"] or "most sessions" in err["message"]
    finally:
        for sid in ids:
            delete(svc, sid)
    delete(svc, create(svc)["id"])  # room again


def test_idle_sessions_end(svc):
    sid = create(svc, idle_timeout_s=5)["id"]
    ok(svc, sid, "1")
    time.sleep(2)
    ok(svc, sid, "2")  # use keeps it alive (3 s to spare for a slow call)
    deadline = time.time() + 30  # the idle check runs every second
    while svc.get("/v1/sessions/" + sid).status == 200:
        assert time.time() < deadline, "the idle session did not end"
        time.sleep(0.5)
    check_error(execute(svc, sid, "3"), 404, "not_found")
    text = svc.get("/metrics").body.decode()
    assert "nbcanvas_sessions_expired_total 0" not in text, text


def test_a_session_is_warm_when_the_pool_has_one(svc):
    deadline = time.time() + 60
    while "nbcanvas_pool_idle 1" not in svc.get("/metrics").body.decode():
        assert time.time() < deadline, "the pool did not fill"
        time.sleep(0.2)
    def counter(name):
        return [float(line.split()[1]) for line in svc.get("/metrics").body.decode().splitlines()
                if line.startswith(name + " ")][0]
    taken, cold = counter("nbcanvas_pool_taken_total"), counter("nbcanvas_pool_empty_total")
    sid = create(svc)["id"]
    try:
        # taken from the pool, not started cold (the pool's own counters)
        assert counter("nbcanvas_pool_taken_total") == taken + 1
        assert counter("nbcanvas_pool_empty_total") == cold
        assert "pandas" in text_of(ok(svc, sid, "import sys\n"
                                                "'pandas' in sys.modules and 'pandas'"))
    finally:
        delete(svc, sid)


def test_lifetime_restart_and_sigterm_leave_nothing(svc):
    s = Service(BINARY, {"pool_size": 0, "session_max_lifetime_s": 4}).start()
    try:
        sid = create(s)["id"]
        ok(s, sid, "a = 1")
        time.sleep(2)
        ok(s, sid, "a")  # busy with use, yet its life is counted
        time.sleep(3.5)
        check_error(execute(s, sid, "a"), 404, "not_found")
        create(s)  # ends with the service, below
        assert len(containers(s.listen)) == 1
    finally:
        assert s.stop() == 0
    assert containers(s.listen) == []
    # a service killed outright: its next start removes what it left
    s2 = Service(BINARY, {"pool_size": 0})
    s2.listen = s.listen
    s2.port = s.port
    s2.start()
    create(s2)
    s2.proc.kill()
    s2.proc.wait()
    assert len(containers(s.listen)) == 1
    s2.proc = None
    s3 = Service(BINARY, {"pool_size": 0})
    s3.listen, s3.port = s.listen, s.port
    s3.start()
    try:
        deadline = time.time() + 20
        while containers(s.listen) and time.time() < deadline:
            time.sleep(0.2)
        assert containers(s.listen) == []
    finally:
        assert s3.stop() == 0


def test_an_idle_session_is_frozen_until_its_next_call(svc):
    # this service freezes a session unused for 2 s
    sid = create(svc)["id"]
    try:
        ok(svc, sid, "import threading, time\nticks = [0]\ndef spin():\n"
                     "    while True:\n        ticks[0] += 1\n        time.sleep(0.01)\n"
                     "threading.Thread(target=spin, daemon=True).start()")
        before = int(text_of(ok(svc, sid, "ticks[0]")))
        time.sleep(5)
        info = svc.get("/v1/sessions/" + sid).json()
        assert info["paused"] is True and info["busy"] is False, info
        frozen = [c for c in containers(svc.listen) if c["State"] == "paused"]
        assert len(frozen) == 1, containers(svc.listen)
        after = int(text_of(ok(svc, sid, "ticks[0]")))  # thawed by the call
        # about 2 s of ticks (100 a second), not 5 s: it was frozen
        assert 100 < after - before < 400, (before, after)
        assert svc.get("/v1/sessions/" + sid).json()["paused"] is False
    finally:
        delete(svc, sid)  # a frozen sandbox is removed as any other


def test_metrics(svc):
    sid = create(svc)["id"]
    try:
        text = svc.get("/metrics").body.decode()
        assert "nbcanvas_sessions_active 1" in text, text
        assert "nbcanvas_sessions_created_total" in text
    finally:
        delete(svc, sid)
    assert "nbcanvas_sessions_active 0" in svc.get("/metrics").body.decode()


if __name__ == "__main__":
    main(globals(), {"pool_size": 1, "max_sessions": 3, "max_html_bytes": 2 << 20,
                     "session_pause_after_s": 2,
                     "render_memory_bytes": 512 << 20})
