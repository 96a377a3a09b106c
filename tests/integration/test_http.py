"""The HTTP layer: error format, limits, discovery and operations routes."""
import http.client
import json
import socket

from harness import REPO, check_error, main


def test_health_and_ready(svc):
    r = svc.get("/healthz")
    assert r.status == 200 and r.json()["status"] == "ok"
    r = svc.get("/readyz")
    assert r.status == 200, r
    assert r.json()["status"] == "ready"


def test_every_answer_has_request_id_and_timing(svc):
    answers = [svc.get("/healthz"), svc.get("/"), svc.get("/nope"),
               svc.request("DELETE", "/v1/render"),
               svc.post("/v1/render", "x", headers={"Content-Type": "text/plain"}),
               svc.post("/v1/render", {"cells": 3}),
               svc.run({"language": "python3", "code": "print(1)"})]
    for r in answers:
        assert len(r.header("x-request-id") or "") == 36, (r, r.headers)
        assert "total;dur=" in (r.header("server-timing") or ""), (r, r.headers)
        # one response builder: errors carry the same safety headers
        assert r.header("x-content-type-options") == "nosniff", (r, r.headers)
        assert r.header("cache-control") == "no-store", (r, r.headers)
    # a failed render says where its time went, like a successful one
    r = svc.render({"cells": ["1/0"], "cache": False})
    assert r.status == 422, r
    assert "execute;dur=" in r.header("server-timing"), r.headers


def test_kernels(svc):
    r = svc.get("/v1/kernels")
    assert r.status == 200
    assert {"name": "python3", "language": "python",
            "display_name": "Python 3 (ipykernel)"} in r.json()


def test_languages_match_config_file(svc):
    with open(REPO + "/languages.json") as f:
        config = json.load(f)
    listed = svc.get("/v1/languages").json()
    assert sorted(l["name"] for l in listed) == sorted(config)
    for entry in listed:
        assert entry["image"] == config[entry["name"]]["image"]
        assert entry["extension"] == config[entry["name"]]["extension"]
        assert entry["version"] == config[entry["name"]].get("version", "")


def test_unknown_path_404(svc):
    check_error(svc.get("/v2/nothing"), 404, "not_found")


def test_wrong_method_405_with_allow(svc):
    r = svc.get("/v1/render")
    check_error(r, 405, "method_not_allowed")
    assert r.header("allow") == "POST"
    r = svc.post("/healthz", {})
    check_error(r, 405, "method_not_allowed")
    assert r.header("allow") == "GET"


def test_wrong_content_type_415(svc):
    r = svc.request("POST", "/v1/render", body=b'{"cells": ["1"]}',
                    headers={"Content-Type": "text/plain"})
    check_error(r, 415, "unsupported_media_type")
    r = svc.request("POST", "/v1/run", body=b"{}", headers={})
    check_error(r, 415, "unsupported_media_type")


def test_malformed_bodies_400(svc):
    bodies = [b"", b"{", b"[]", b"null", b'{"cells": "print(1)"}',
              b'{"cells": ["1"], "unknown": 1}', b'{"cells": ["\\u0000"]}',
              b'{"cells": ["\xff\xfe"]}', b"[" * 100000,
              b'{"cells": ["1"], "files": [{"name": "../etc/passwd", "content_base64": ""}]}',
              b'{"cells": ["1"], "files": [{"name": "/abs", "content_base64": ""}]}',
              b'{"cells": ["1"], "timeout_s": -5}', b'{"cells": ["1"], "timeout_s": 1e400}']
    for body in bodies:
        r = svc.request("POST", "/v1/render", body=body,
                        headers={"Content-Type": "application/json"})
        check_error(r, 400, "invalid_request")


def test_run_unknown_language_400(svc):
    err = check_error(svc.run({"language": "cobol", "code": "x"}), 400, "invalid_request")
    assert "cobol" in err["message"]


def read_reply(s):
    s.settimeout(10)
    reply = b""
    try:
        while True:
            data = s.recv(65536)
            if not data:
                break
            reply += data
    except OSError:
        pass
    finally:
        s.close()
    return reply


def test_body_too_large_413_by_length(svc):
    # The answer comes from the headers alone: the body is never sent.
    s = socket.create_connection(("127.0.0.1", svc.port))
    s.sendall(b"POST /v1/render HTTP/1.1\r\nHost: localhost\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
              % (9 << 20))
    reply = read_reply(s)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b'"payload_too_large"' in reply


def test_body_too_large_413_chunked(svc):
    s = socket.create_connection(("127.0.0.1", svc.port))
    s.sendall(b"POST /v1/run HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"y" * 65536
    try:
        for _ in range(8):  # 512 KiB, over the 256 KiB /v1/run cap
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    except OSError:
        pass  # the server may close once it has answered
    s.sendall(b"0\r\n\r\n")
    reply = read_reply(s)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b'"payload_too_large"' in reply


def raw_exchange(port, request):
    """Sends raw bytes, returns the status line's code (0 if none came)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(request)
        reply = sock.recv(4096)
    except OSError:
        reply = b""
    finally:
        sock.close()
    parts = reply.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def test_oversized_headers_are_refused(svc):
    # A connection's memory is capped (MHD's pool, 64 KiB): one huge
    # header or thousands of small ones are refused with 431, and the
    # service goes on serving.
    huge = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * (100 << 10) + b"\r\n\r\n"
    assert raw_exchange(svc.port, huge) == 431
    many = (b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" +
            b"".join(b"X-H%d: v\r\n" % i for i in range(10000)) + b"\r\n")
    assert raw_exchange(svc.port, many) == 431
    assert svc.get("/healthz").status == 200


def test_idempotency_key_is_not_interpreted(svc):
    # nbcanvas has no Idempotency-Key (docs/API.md): the header is
    # ignored, and what gives a retry the same answer without running
    # again is the result cache (and single flight for one in progress).
    body = {"cells": ["import random\nprint(random.random())"], "format": "json"}
    first = svc.render(body, headers={"Idempotency-Key": "k1"})
    again = svc.render(body, headers={"Idempotency-Key": "k1"})
    other = svc.render(dict(body, cells=["print(2)"]), headers={"Idempotency-Key": "k1"})
    assert first.status == again.status == other.status == 200
    assert first.header("x-nbcanvas-cache") == "miss"
    assert again.header("x-nbcanvas-cache") == "hit" and again.body == first.body
    assert other.json()["cells"][0]["outputs"][0]["text"] == "2\n"


def test_text_answers_are_gzipped_when_the_client_takes_it(svc):
    import gzip
    def cache_bytes():
        for line in svc.get("/metrics").body.decode().splitlines():
            if line.startswith("nbcanvas_cache_bytes "):
                return int(line.split()[1])
    body = {"cells": ["import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()"]}
    before = cache_bytes()
    plain = svc.render(body)
    # the cache keeps the page compressed
    assert 0 < cache_bytes() - before < len(plain.body) / 3, (cache_bytes(), before)
    assert plain.status == 200 and plain.header("content-encoding") is None, plain.headers
    assert plain.header("vary") == "Accept-Encoding"
    packed = svc.render(body, headers={"Accept-Encoding": "br, gzip;q=0.8"})
    assert packed.status == 200 and packed.header("content-encoding") == "gzip", packed.headers
    assert packed.header("x-nbcanvas-cache") == "hit"
    assert gzip.decompress(packed.body) == plain.body
    assert len(packed.body) * 3 < len(plain.body), (len(packed.body), len(plain.body))
    refused = svc.render(body, headers={"Accept-Encoding": "gzip;q=0, deflate"})
    assert refused.header("content-encoding") is None and refused.body == plain.body
    errors = svc.render({"cells": 3}, headers={"Accept-Encoding": "gzip"})
    assert errors.status == 400 and errors.header("content-encoding") is None  # small
    r = svc.get("/", headers={"Accept-Encoding": "gzip"})
    assert r.header("content-encoding") == "gzip" and b"nbcanvas" in gzip.decompress(r.body)
    # a fresh render asked with gzip: the same page, compressed; then plain
    body = {"cells": ["print('%s')" % ("x" * 3000)]}
    packed = svc.render(body, headers={"Accept-Encoding": "gzip"})
    assert packed.header("content-encoding") == "gzip", packed.headers
    assert packed.header("x-nbcanvas-cache") == "miss"
    plain = svc.render(body)
    assert plain.header("x-nbcanvas-cache") == "hit"
    assert plain.header("content-encoding") is None
    assert gzip.decompress(packed.body) == plain.body and b"xxxxxxxx" in plain.body


def test_metrics(svc):
    svc.get("/healthz")
    # a job's slot is held until its container is gone: earlier tests'
    # last removals may still be under way
    text = svc.metrics_with(
        "nbcanvas_jobs_running 0",
        'nbcanvas_requests_total{route="/healthz",tenant="",status="200"}',
        timeout=20)
    assert 'nbcanvas_requests_total{route="/healthz",tenant="",status="200"}' in text
    assert "nbcanvas_request_duration_seconds_bucket" in text
    assert "nbcanvas_jobs_running 0" in text
    assert "nbcanvas_containers_alive " in text


if __name__ == "__main__":
    main(globals())
