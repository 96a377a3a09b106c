"""A shared service: API keys per tenant, the Host guard, the refusal to be
open by accident, fair limits, the per-tenant cache, metrics by tenant,
keys reloaded on SIGHUP, and TLS. Each test starts its own service with a
keys file made here (the keys come from `nbcanvas key new`)."""
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from harness import Service, check_error, free_port, main

BINARY = sys.argv[1]


def new_key(tenant):
    """A key and its entry, from the CLI as an operator would make them."""
    out = subprocess.run([BINARY, "key", "new", tenant], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    key = out[0].split("key: ", 1)[1]
    entry = json.loads(out[1].split("entry: ", 1)[1])
    assert entry == {"tenant": tenant,
                     "key_sha256": hashlib.sha256(key.encode()).hexdigest()}, entry
    return key, entry


def keys_file(entries):
    f = tempfile.NamedTemporaryFile("w", suffix=".keys.json", delete=False)
    json.dump(entries, f)
    f.close()
    return f.name


def keyed_service(entries, **config):
    path = keys_file(entries)
    cfg = {"pool_size": 0, "api_keys_file": path}
    cfg.update(config)
    return Service(BINARY, cfg).start(), path


def test_keys_are_required_on_v1_and_metrics(svc):
    a_key, a = new_key("acme")
    b_key, b = new_key("beta")
    a["metrics"] = True
    s, path = keyed_service([a, b])
    try:
        for headers in ({}, {"Authorization": "Bearer nbk_wrong"},
                        {"Authorization": "Basic " + a_key}, {"Authorization": "Bearer "}):
            r = s.render({"cells": ["1"]}, headers=headers)
            err = check_error(r, 401, "unauthenticated")
            assert r.header("www-authenticate") == 'Bearer realm="nbcanvas"', r.headers
            assert a_key not in json.dumps(err)
        check_error(s.get("/v1/kernels"), 401, "unauthenticated")
        assert s.get("/healthz").status == 200
        assert s.get("/readyz").status == 200
        assert s.get("/").status == 200  # the page asks for a key itself
        check_error(s.get("/metrics"), 401, "unauthenticated")
        check_error(s.get("/metrics", headers={"Authorization": "Bearer " + b_key}),
                    401, "unauthenticated")
        r = s.render({"format": "json", "cells": ["print(6 * 7)"]},
                     headers={"Authorization": "Bearer " + a_key})
        assert r.status == 200, r
        assert r.json()["cells"][0]["outputs"][0]["text"] == "42\n"
        mine = 'route="/v1/render",tenant="acme",status="200"'
        text = s.metrics_with(mine, headers={"Authorization": "Bearer " + a_key})
        assert 'route="/v1/render",tenant="acme",status="200"' in text, text
        assert 'tenant=""' in text  # the refused ones: no tenant
        assert a_key not in s.read_log() and b_key not in s.read_log()
    finally:
        assert s.stop() == 0
        os.unlink(path)


def test_host_guard(svc):
    # DNS rebinding: a web page's request carries its own site's Host.
    s = Service(BINARY, {"pool_size": 0, "allowed_hosts": ["canvas.internal"]}).start()
    try:
        for path in ("/healthz", "/", "/v1/kernels"):
            check_error(s.get(path, headers={"Host": "evil.example.com"}), 403,
                        "host_not_allowed")
            check_error(s.get(path, headers={"Host": "evil.example.com:%d" % s.port}), 403,
                        "host_not_allowed")
        for host in ("localhost", "localhost:%d" % s.port, "127.0.0.1:%d" % s.port,
                     "127.0.0.2", "[::1]:%d" % s.port, "canvas.internal",
                     "CANVAS.internal:8080"):
            r = s.get("/healthz", headers={"Host": host})
            assert r.status == 200, (host, r)
        check_error(s.render({"cells": ["1"]}, headers={"Host": "127.0.0.1.evil.com"}),
                    403, "host_not_allowed")
        for host in ("[::1]evil.com", "[::1]:80x", "[::1]:", "[::2]"):
            check_error(s.get("/healthz", headers={"Host": host}), 403, "host_not_allowed")
    finally:
        assert s.stop() == 0


def test_refuses_to_be_open_by_accident(svc):
    port = free_port()
    p = subprocess.run([BINARY, "serve", "--listen", "0.0.0.0:%d" % port],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert "api_keys_file" in p.stderr and "allow_unauthenticated" in p.stderr, p.stderr
    # said in as many words, it serves (reached here over loopback only)
    s = Service(BINARY, {"pool_size": 0, "allow_unauthenticated": True})
    s.port, s.listen = port, "0.0.0.0:%d" % port
    s.start()
    try:
        assert s.get("/healthz").status == 200
    finally:
        assert s.stop() == 0


def test_rate_limit_per_tenant(svc):
    a_key, a = new_key("slowpoke")
    b_key, b = new_key("other")
    a["requests_per_minute"] = 3
    s, path = keyed_service([a, b])
    try:
        for _ in range(3):
            assert s.get("/v1/kernels", headers={"Authorization": "Bearer " + a_key}).status == 200
        r = s.get("/v1/kernels", headers={"Authorization": "Bearer " + a_key})
        check_error(r, 429, "rate_limited")
        assert 1 <= int(r.header("retry-after")) <= 21, r.headers
        # another tenant's rate is its own
        assert s.get("/v1/kernels", headers={"Authorization": "Bearer " + b_key}).status == 200
    finally:
        assert s.stop() == 0
        os.unlink(path)


def test_tenant_max_jobs(svc):
    a_key, a = new_key("solo")
    a["max_jobs"] = 1
    s, path = keyed_service([a], max_jobs=4)
    s.key = a_key
    try:
        slow = {"cells": ["import time\ntime.sleep(4)"], "cache": False}
        first = {}
        t = threading.Thread(target=lambda: first.update(r=s.render(slow)))
        t.start()
        time.sleep(1)
        r = s.render(slow)
        err = check_error(r, 429, "busy")
        assert "solo" in err["message"], err
        assert r.header("retry-after")
        t.join(60)
        assert first["r"].status == 200, first["r"]
    finally:
        assert s.stop() == 0
        os.unlink(path)


def test_one_tenants_flood_does_not_hold_up_another(svc):
    # Two slots. Tenant a sends six slow renders; tenant b then sends one.
    # A freed slot goes to the tenant with the fewest jobs running: b's is
    # served in the second round, not after all of a's.
    a_key, a = new_key("flood")
    b_key, b = new_key("quick")
    s, path = keyed_service([a, b], max_jobs=2, max_queue=16)
    done, lock = [], threading.Lock()

    def render(key, name, seconds):
        r = s.render({"cells": ["import time\ntime.sleep(%d)" % seconds], "cache": False},
                     headers={"Authorization": "Bearer " + key})
        with lock:
            done.append((name, r.status))

    try:
        threads = [threading.Thread(target=render, args=(a_key, "a%d" % i, 3)) for i in range(6)]
        for t in threads:
            t.start()
            time.sleep(0.05)
        time.sleep(1)  # a's six are running or queued
        tb = threading.Thread(target=render, args=(b_key, "b", 1))
        tb.start()
        for t in threads + [tb]:
            t.join(120)
        assert all(status == 200 for _, status in done), done
        order = [name for name, _ in done]
        assert order.index("b") <= 3, order  # FIFO would make it last
    finally:
        assert s.stop() == 0
        os.unlink(path)


def test_cache_is_per_tenant(svc):
    a_key, a = new_key("alpha")
    b_key, b = new_key("bravo")
    s, path = keyed_service([a, b])
    body = {"format": "json", "cells": ["import random\nprint(random.random())"]}
    try:
        first = s.render(body, headers={"Authorization": "Bearer " + a_key})
        again = s.render(body, headers={"Authorization": "Bearer " + a_key})
        other = s.render(body, headers={"Authorization": "Bearer " + b_key})
        assert first.header("x-nbcanvas-cache") == "miss"
        assert again.header("x-nbcanvas-cache") == "hit" and again.body == first.body
        # nothing of a's work reaches b: no hit, no shared answer
        assert other.header("x-nbcanvas-cache") == "miss", other.headers
        assert other.json()["cells"] != first.json()["cells"]
        assert "cache;desc=hit" not in other.header("server-timing")
    finally:
        assert s.stop() == 0
        os.unlink(path)


def test_keys_reload_on_sighup(svc):
    a_key, a = new_key("old")
    b_key, b = new_key("new")
    s, path = keyed_service([a])
    auth_a = {"Authorization": "Bearer " + a_key}
    auth_b = {"Authorization": "Bearer " + b_key}

    def status(headers):
        return s.get("/v1/kernels", headers=headers).status

    def reloaded(entries_or_text):
        with open(path, "w") as f:
            f.write(entries_or_text if isinstance(entries_or_text, str)
                    else json.dumps(entries_or_text))
        before = s.read_log().count("nbcanvas: keys")
        s.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while s.read_log().count("nbcanvas: keys") == before and time.time() < deadline:
            time.sleep(0.1)

    try:
        assert status(auth_a) == 200 and status(auth_b) == 401
        reloaded([a, b])  # a key added
        assert status(auth_a) == 200 and status(auth_b) == 200
        reloaded([b])  # a key revoked
        assert status(auth_a) == 401 and status(auth_b) == 200
        reloaded('[{"tenant": "broken"')  # malformed: the old keys stay
        assert status(auth_a) == 401 and status(auth_b) == 200
        assert "keys not reloaded" in s.read_log(), s.read_log()[-2000:]
    finally:
        assert s.stop() == 0
        os.unlink(path)


def test_https(svc):
    tmp = tempfile.mkdtemp()
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    s = Service(BINARY, {"pool_size": 0, "tls_cert_file": cert, "tls_key_file": key},
                tls_ca=cert).start()
    try:
        r = s.get("/healthz")
        assert r.status == 200, r
        out = subprocess.run(["curl", "-sS", "--cacert", cert,
                              "https://localhost:%d/v1/kernels" % s.port],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and "python3" in out.stdout, out
        # plain HTTP on the same port gets no answer of ours
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        try:
            reply = sock.recv(100)
        except OSError:
            reply = b""
        sock.close()
        assert not reply.startswith(b"HTTP/1.1 200"), reply
    finally:
        assert s.stop() == 0
        for p in (cert, key):
            os.unlink(p)
        os.rmdir(tmp)


if __name__ == "__main__":
    main(globals())
