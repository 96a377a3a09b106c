"""Infrastructure faults: the engine down at start, gone mid-job, hung; the
service SIGKILLed mid-job; the reaper; SIGTERM with a job in flight; client
hang-ups; back-pressure. The service talks to the engine through a proxy
the test can cut."""
import json
import os
import signal
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time

from harness import Service, check_error, containers, engine, free_port, main
from engine_proxy import EngineProxy

PROXY = os.path.join(tempfile.gettempdir(), "nbcanvas-proxy-%d.sock" % os.getpid())
BINARY = sys.argv[1]


def wait_until(cond, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


def jobs_of(svc):
    return [c for c in containers(svc.listen) if c["Labels"].get("org.nbcanvas.job") != "pool"]


def test_engine_down_then_back(svc):
    proxy = EngineProxy(PROXY)
    s = Service(BINARY, {"docker_host": "unix://" + PROXY, "pool_size": 0,
                         "docker_timeout_ms": 2000}).start()
    try:
        err = check_error(s.get("/readyz"), 503, "engine_unavailable")
        assert PROXY in err["message"], err
        r = s.render({"cells": ["1"]})
        check_error(r, 503, "engine_unavailable")
        assert r.header("retry-after")
        check_error(s.run({"language": "python3", "code": "1"}), 503, "engine_unavailable")
        proxy.start()
        wait_until(lambda: s.get("/readyz").status == 200, 30, "readyz after the engine returned")
        assert s.render({"cells": ["print(2)"]}).status == 200
    finally:
        assert s.stop() == 0
        proxy.stop()


def test_engine_gone_mid_job(svc):
    proxy = EngineProxy(PROXY)
    proxy.start()
    s = Service(BINARY, {"docker_host": "unix://" + PROXY, "pool_size": 0,
                         "docker_timeout_ms": 3000}).start()
    try:
        result = {}
        t = threading.Thread(target=lambda: result.update(
            r=s.render({"cells": ["import time\ntime.sleep(120)"], "timeout_s": 150})))
        t0 = time.time()
        t.start()
        wait_until(lambda: jobs_of(s), 30, "the job's container")
        proxy.stop()
        t.join(100)
        assert not t.is_alive(), "the request hung"
        r = result["r"]
        assert r.status in (500, 503), r
        # answered long before the cell's own 120 s: not left waiting
        assert time.time() - t0 < 60, time.time() - t0
        assert s.get("/healthz").status == 200
        proxy.start()
        # the service's own clean-up (or the reaper) removes the container
        wait_until(lambda: s.get("/readyz").status == 200, 30, "readyz")
    finally:
        assert s.stop() == 0
        proxy.stop()
    wait_until(lambda: not containers(s.listen), 30, "no container left")


def test_engine_hangs(svc):
    proxy = EngineProxy(PROXY)
    proxy.frozen = True
    proxy.start()
    s = Service(BINARY, {"docker_host": "unix://" + PROXY, "pool_size": 0,
                         "docker_timeout_ms": 1500}).start()
    try:
        t0 = time.time()
        check_error(s.run({"language": "python3", "code": "1"}), 503, "engine_unavailable")
        # the engine never answers: without docker_timeout_ms the request
        # would hang as long as the client waits
        assert time.time() - t0 < 60, time.time() - t0
        check_error(s.get("/readyz"), 503, "engine_unavailable")
    finally:
        proxy.stop()
        assert s.stop() == 0


def test_sigkill_mid_job_then_restart_cleans_up(svc):
    port = free_port()
    s = Service(BINARY, {"pool_size": 1})
    s.port, s.listen = port, "127.0.0.1:%d" % port
    s.start()
    def doomed_render():
        try:
            s.render({"cells": ["import time\ntime.sleep(60)"]})
        except OSError:
            pass  # expected: the service is killed under it
    threading.Thread(target=doomed_render, daemon=True).start()
    wait_until(lambda: len(containers(s.listen)) >= 2, 60, "job and pool containers")
    s.proc.send_signal(signal.SIGKILL)
    s.proc.wait()
    s.proc = None
    assert containers(s.listen), "nothing to clean up"
    again = Service(BINARY, {"pool_size": 0})
    again.port, again.listen = port, s.listen
    again.start()
    try:
        # removed before the service answered its first request
        assert not containers(s.listen), containers(s.listen)
    finally:
        assert again.stop() == 0


def test_reaper_removes_expired_containers(svc):
    s = Service(BINARY, {"pool_size": 0, "reaper_interval_s": 1}).start()
    try:
        status, made = engine("POST", "/containers/create", {
            "Image": "nbcanvas/python:latest", "Cmd": ["sleep", "600"],
            "Labels": {"org.nbcanvas.managed": "1", "org.nbcanvas.owner": "someone-else",
                       "org.nbcanvas.deadline": str(int(time.time()) - 5)},
            "HostConfig": {"NetworkMode": "none"}})
        assert status == 201, made
        engine("POST", "/containers/%s/start" % made["Id"])
        wait_until(lambda: engine("GET", "/containers/%s/json" % made["Id"])[0] == 404,
                   20, "the reaper")
        # counted once the reaper's pass is over (it may have more to
        # remove); the suite's own service reaps expired containers too
        wait_until(lambda: any("nbcanvas_reaped_total" in x.get("/metrics").body.decode()
                               for x in (s, svc)), 10, "the reaped count")
    finally:
        assert s.stop() == 0


def test_container_removed_by_someone_else_mid_job(svc):
    # An operator (or another tool) force-removes a job's container while
    # it runs: the request is answered at once with a retryable 503 that
    # says so, not blamed on the user's code, and the service goes on.
    cases = (("render", lambda: svc.render({"cells": ["import time\ntime.sleep(120)"],
                                            "timeout_s": 150, "cache": False})),
             ("run", lambda: svc.run({"language": "python3",
                                      "code": "import time\ntime.sleep(120)", "timeout_s": 150})))
    for name, call in cases:
        result = {}
        t = threading.Thread(target=lambda: result.update(r=call()))
        t.start()
        wait_until(lambda: any(c["State"] == "running" for c in jobs_of(svc)), 30,
                   "the %s's container" % name)
        time.sleep(1)
        t0 = time.time()
        for c in jobs_of(svc):
            engine("DELETE", "/containers/%s?force=1&v=1" % c["Id"])
        t.join(120)
        # "at once": long before the code's own 120 s would have ended it
        assert time.time() - t0 < 60, (name, time.time() - t0)
        err = check_error(result["r"], 503, "engine_unavailable")
        assert "removed" in err["message"], err
        assert result["r"].header("retry-after"), result["r"].headers
    assert svc.render({"cells": ["print(1)"], "cache": False}).status == 200


FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


def test_wall_clock_jump_reaps_nothing_live(svc):
    # The wall clock jumps two days forward (NTP, a VM resumed): every
    # deadline label now reads as past, but the reaper must not remove a
    # container this service is using or keeping warm. libfaketime moves
    # only the service's wall clock (its monotonic clock is left alone,
    # as on a real jump); the engine's clock does not move.
    offset = tempfile.NamedTemporaryFile("w", suffix=".faketime", delete=False)
    offset.write("+0")
    offset.close()
    s = Service(BINARY, {"pool_size": 1, "r_pool_size": 0, "reaper_interval_s": 1}, env={
        "LD_PRELOAD": FAKETIME_LIB, "FAKETIME_TIMESTAMP_FILE": offset.name,
        "FAKETIME_NO_CACHE": "1", "DONT_FAKE_MONOTONIC": "1",
        "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"})
    s.start()
    try:
        def pool():
            return [c["Id"] for c in containers(s.listen) if c["Labels"].get("org.nbcanvas.job") == "pool"
                    and c["State"] == "running"]
        wait_until(lambda: s.get("/metrics").body.decode().count("nbcanvas_pool_idle 1"), 60,
                   "the pool to fill")
        warm = pool()
        assert len(warm) == 1, warm
        result = {}
        t = threading.Thread(target=lambda: result.update(r=s.render(
            {"format": "json", "cache": False,
             "cells": ["import time\ntime.sleep(6)\nprint('survived')"]},
            headers={"X-Nbcanvas-Route": "cold"})))
        t.start()
        wait_until(lambda: jobs_of(s), 30, "the job's container")
        with open(offset.name, "w") as f:
            f.write("+2d")
        time.sleep(3)  # three reaper ticks on the jumped clock
        t.join(60)
        r = result["r"]
        assert r.status == 200, r
        assert r.json()["cells"][0]["outputs"][0]["text"] == "survived\n", r.json()
        assert pool() == warm, (pool(), warm)
    finally:
        os.unlink(offset.name)
        rc = s.stop()
        assert rc == 0, (rc, s.read_log()[-3000:])


def test_sigterm_finishes_in_flight_jobs(svc):
    s = Service(BINARY, {"pool_size": 0}).start()
    result = {}
    t = threading.Thread(target=lambda: result.update(
        r=s.render({"format": "json", "cells": ["import time\ntime.sleep(3)\nprint('finished')"]})))
    t.start()
    wait_until(lambda: jobs_of(s), 30, "the job's container")
    time.sleep(0.5)
    assert s.stop() == 0
    t.join(30)
    r = result["r"]
    assert r.status == 200, r
    assert r.json()["cells"][0]["outputs"][0]["text"] == "finished\n"
    assert not containers(s.listen)


def test_client_hangup_cancels_the_job(svc):
    body = json.dumps({"cells": ["import time\ntime.sleep(60)"], "cache": False}).encode()
    sock = socket.create_connection(("127.0.0.1", svc.port))
    sock.sendall(b"POST /v1/render HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    wait_until(lambda: any(c["State"] == "running" and c["Labels"].get("org.nbcanvas.job") != "pool"
                           for c in containers(svc.listen)), 30, "the job to start")
    sock.close()
    # long before the cell's own 60 s
    wait_until(lambda: not jobs_of(svc), 40, "the container to go")


def test_back_pressure_429(svc):
    s = Service(BINARY, {"pool_size": 0, "max_jobs": 1, "max_queue": 1}).start()
    try:
        codes = []
        lock = threading.Lock()

        def one(i):
            r = s.run({"language": "python3", "code": "import time\ntime.sleep(3)", "timeout_s": 10})
            with lock:
                codes.append((r.status, r.header("retry-after")))
        threads = [threading.Thread(target=one, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        statuses = sorted(c for c, _ in codes)
        assert statuses.count(200) >= 2 and 429 in statuses, codes
        assert all(ra for c, ra in codes if c == 429), codes
        busy = s.run({"language": "python3", "code": "1"})
        assert busy.status == 200
    finally:
        assert s.stop() == 0


def _held_connections(port, n):
    """Open n idle connections that the server has accepted and kept.

    A connection the server has just closed (the start-up probe, say) still
    counts against the per-IP cap until MHD's listen thread cleans it up, so
    one of ours may be refused at first: then close them all and try again.
    """
    for _ in range(20):
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
        time.sleep(1)
        readable, _, _ = select.select(socks, [], [], 0)
        if not readable:  # none closed by the server
            return socks
        for c in socks:
            c.close()
        time.sleep(0.5)
    raise AssertionError("the server kept refusing connections under the cap")


def test_burst_of_timeouts_stays_within_max_jobs(svc):
    # A job's slot is free only once its container is gone: a burst of
    # infinite loops that all time out never has more containers running
    # jobs at once than max_jobs, however long their removal takes.
    s = Service(BINARY, {"pool_size": 0, "max_jobs": 2, "max_queue": 16}).start()
    try:
        results, threads, peak = [], [], 0
        for _ in range(8):
            t = threading.Thread(target=lambda: results.append(s.run(
                {"language": "python3", "code": "while True: pass", "timeout_s": 1})))
            t.start()
            threads.append(t)
        while any(t.is_alive() for t in threads):
            alive = [c for c in containers(s.listen) if c["State"] in ("running", "removing")]
            peak = max(peak, len(alive))
            time.sleep(0.02)
        for t in threads:
            t.join()
        assert [r.status for r in results] == [200] * 8, results
        assert all(r.json()["status"] == "timeout" for r in results), results
        assert peak <= 2, peak
    finally:
        assert s.stop() == 0


def test_per_ip_connection_cap(svc):
    s = Service(BINARY, {"pool_size": 0, "max_connections_per_ip": 4}).start()
    socks = []
    try:
        socks = _held_connections(s.port, 4)
        extra = socket.create_connection(("127.0.0.1", s.port))
        extra.settimeout(5)
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        try:
            data = extra.recv(100)
        except (ConnectionResetError, socket.timeout):
            data = b""
        extra.close()
        assert data == b"", data  # refused by the cap
        # The held connections are still served: the cap refused only the extra.
        socks[0].settimeout(5)
        socks[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert socks[0].recv(100).startswith(b"HTTP/1.1 200"), "held connection not served"
        for c in socks:
            c.close()
        socks = []
        time.sleep(0.5)
        assert s.get("/healthz").status == 200
    finally:
        for c in socks:
            c.close()
        assert s.stop() == 0


def test_slow_client_is_dropped(svc):
    s = Service(BINARY, {"pool_size": 0, "connection_timeout_s": 2}).start()
    try:
        c = socket.create_connection(("127.0.0.1", s.port))
        c.sendall(b"POST /v1/run HTTP/1.1\r\nHost: localhost\r\n")
        time.sleep(4)
        c.settimeout(5)
        try:
            c.sendall(b"Content-Type: application/json\r\n")
            data = c.recv(100)
        except OSError:
            data = b""
        assert data == b"", data
        assert s.get("/healthz").status == 200
    finally:
        assert s.stop() == 0


def _trickle_until_closed(sock, chunks, gap_s, limit_s):
    """Send chunks one per gap_s; return the seconds until the server closed
    the connection, or None if it was still open after limit_s."""
    t0 = time.time()
    sock.settimeout(gap_s)
    for chunk in chunks:
        if time.time() - t0 > limit_s:
            return None
        try:
            sock.sendall(chunk)
            if sock.recv(100) == b"":
                return time.time() - t0
        except socket.timeout:
            continue
        except OSError:
            return time.time() - t0
    return None


def test_slowloris_headers_hit_the_absolute_deadline(svc):
    # A byte a second never trips the 3 s inactivity timeout; the 3 s
    # deadline on the client's turn must still drop it.
    s = Service(BINARY, {"pool_size": 0, "connection_timeout_s": 3,
                         "request_deadline_s": 3}).start()
    try:
        c = socket.create_connection(("127.0.0.1", s.port))
        header = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + b"X-Slow: " + b"a" * 100
        took = _trickle_until_closed(c, [header[i:i + 1] for i in range(len(header))],
                                     1.0, 20)
        c.close()
        assert took is not None, "a trickling client was never dropped"
        assert 2 <= took < 3 + 4, took
        assert s.get("/healthz").status == 200
        metrics = s.get("/metrics").body.decode()
        assert "nbcanvas_slow_clients_dropped_total 1" in metrics, metrics
    finally:
        assert s.stop() == 0


def test_slow_body_hits_the_absolute_deadline(svc):
    s = Service(BINARY, {"pool_size": 0, "connection_timeout_s": 3,
                         "request_deadline_s": 3}).start()
    try:
        c = socket.create_connection(("127.0.0.1", s.port))
        c.sendall(b"POST /v1/run HTTP/1.1\r\nHost: localhost\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n")
        took = _trickle_until_closed(c, [b" "] * 200, 1.0, 20)
        c.close()
        assert took is not None, "a trickling body was never dropped"
        assert took < 3 + 4, took
        assert s.get("/healthz").status == 200
    finally:
        assert s.stop() == 0


def test_a_long_job_is_not_cut_by_the_request_deadline(svc):
    # The deadline covers the client's turn only: a job that runs longer
    # than it still gets its answer.
    s = Service(BINARY, {"pool_size": 0, "request_deadline_s": 2}).start()
    try:
        r = s.run({"language": "python3", "code": "import time\ntime.sleep(5)\nprint('done')",
                   "timeout_s": 20})
        assert r.status == 200, r.body
        assert r.json()["status"] == "ok" and "done" in r.json()["stdout"], r.json()
    finally:
        assert s.stop() == 0


if __name__ == "__main__":
    main(globals(), config={"pool_size": 0, "run_max_timeout_s": 300})
