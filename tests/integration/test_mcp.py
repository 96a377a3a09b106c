"""POST /mcp at the wire, and GET /openapi.json against real answers.

The official SDK's use of the endpoint is tests/mcp/mcp.test.mjs; this
file checks what a client library never sends: JSON-RPC's errors
(malformed JSON, a batch, no method, an unknown method), the session rules
(no Mcp-Session-Id, an unknown or another tenant's one, DELETE), the
Origin check, answers as JSON or as Server-Sent Events by Accept, and
hostile arguments going through the same checks as the HTTP API. Then the
document: every answer these tests receive from the HTTP routes is
validated against the schema /openapi.json gives for it (Debian's
python3-jsonschema), and the document names exactly the routes and query
parameters the service answers.
"""
import json
import os
import re
import socket
import sys
import threading
import time

import jsonschema

from harness import REPO, Service, b64, check_error, main

BINARY = sys.argv[1]
ACCEPT = "application/json, text/event-stream"


def rpc(svc, msg, session=None, headers=None, raw=None):
    hdrs = {"Accept": ACCEPT, "Content-Type": "application/json"}
    if session:
        hdrs["Mcp-Session-Id"] = session
    hdrs.update(headers or {})
    return svc.request("POST", "/mcp", raw if raw is not None else json.dumps(msg),
                       headers=hdrs)


def initialize(svc, **kw):
    r = rpc(svc, {"jsonrpc": "2.0", "id": 0, "method": "initialize",
                  "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                             "clientInfo": {"name": "t", "version": "1"}}}, **kw)
    assert r.status == 200, r
    assert r.json()["result"]["protocolVersion"] == "2025-06-18", r.json()
    sid = r.header("mcp-session-id")
    assert sid, r.headers
    assert rpc(svc, {"jsonrpc": "2.0", "method": "notifications/initialized"},
               session=sid).status == 202
    return sid


def rpc_error(r, status, code):
    assert r.status == status, r
    body = r.json()
    assert body["jsonrpc"] == "2.0" and body["error"]["code"] == code, body
    assert body["error"]["message"], body
    return body


def call(svc, sid, name, arguments, id=1):
    r = rpc(svc, {"jsonrpc": "2.0", "id": id, "method": "tools/call",
                  "params": {"name": name, "arguments": arguments}}, session=sid)
    assert r.status == 200, r
    return r.json()


def test_jsonrpc_errors(svc):
    sid = initialize(svc)
    rpc_error(rpc(svc, None, session=sid, raw="{not json"), 400, -32700)
    rpc_error(rpc(svc, [{"jsonrpc": "2.0", "id": 1, "method": "ping"}], session=sid),
              400, -32600)
    rpc_error(rpc(svc, {"jsonrpc": "1.0", "id": 1, "method": "ping"}, session=sid), 400, -32600)
    rpc_error(rpc(svc, {"jsonrpc": "2.0", "id": 1.5, "method": "ping"}, session=sid), 400, -32600)
    rpc_error(rpc(svc, {"jsonrpc": "2.0", "id": 1}, session=sid), 400, -32600)
    rpc_error(rpc(svc, {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]},
                  session=sid), 400, -32600)
    body = rpc_error(rpc(svc, {"jsonrpc": "2.0", "id": "x", "method": "resources/list"},
                         session=sid), 200, -32601)
    assert body["id"] == "x", body
    r = rpc(svc, {"jsonrpc": "2.0", "id": 7, "method": "ping"}, session=sid)
    assert r.status == 200 and r.json() == {"jsonrpc": "2.0", "id": 7, "result": {}}, r
    # a response from the client is taken, not answered
    assert rpc(svc, {"jsonrpc": "2.0", "id": 3, "result": {}}, session=sid).status == 202
    check_error(rpc(svc, {"jsonrpc": "2.0", "id": 1, "method": "ping"}, session=sid,
                    headers={"Content-Type": "text/plain"}), 415, "unsupported_media_type")
    rpc_error(rpc(svc, {"jsonrpc": "2.0", "id": 1, "method": "ping"}, session=sid,
                  headers={"MCP-Protocol-Version": "1999-01-01"}), 400, -32600)
    rpc_error(rpc(svc, {"jsonrpc": "2.0", "id": 1, "method": "ping"}, session=sid,
                  headers={"Accept": "text/html"}), 406, -32600)


def test_sessions_are_required_owned_and_ended(svc):
    rpc_error(rpc(svc, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}), 400, -32600)
    rpc_error(rpc(svc, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                  session="00000000-0000-4000-8000-000000000000"), 404, -32001)
    sid = initialize(svc)
    tools = rpc(svc, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, session=sid).json()
    assert len(tools["result"]["tools"]) == 8, tools
    r = svc.request("DELETE", "/mcp", headers={"Mcp-Session-Id": sid})
    assert r.status == 204, r
    rpc_error(rpc(svc, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, session=sid),
              404, -32001)
    assert svc.request("DELETE", "/mcp", headers={"Mcp-Session-Id": sid}).status == 404
    r = svc.get("/mcp")  # no stream the server would start on its own
    check_error(r, 405, "method_not_allowed")
    assert "POST" in r.header("allow"), r.headers


def test_origin_is_checked(svc):
    origin = {"Origin": "http://evil.example"}
    check_error(rpc(svc, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}},
                    headers=origin), 403, "origin_not_allowed")
    initialize(svc, headers={"Origin": "https://agent.example"})  # allowed_origins
    initialize(svc, headers={"Origin": "http://127.0.0.1:%d" % svc.port})  # its own


def test_hostile_arguments_get_the_http_apis_checks(svc):
    sid = initialize(svc)
    cases = [
        ("render_notebook", {"cells": ["1"], "files": [{"name": "../../etc/x", "content_base64": ""}]},
         "files[0].name"),
        ("render_notebook", {"cells": ["1"], "timeout_s": 10 ** 9}, "timeout_s"),
        ("render_notebook", {"cells": "print(1)"}, "cells"),
        ("render_notebook", {"cells": ["1"], "format": "zip"}, "format"),
        ("run_code", {"language": "python3", "code": 5}, "code"),
        ("execute", {"session_id": "x" * 500, "code": "1"}, "session_id"),
        ("get_notebook", {"session_id": "a", "format": "zip"}, "format"),
        ("list_languages", {"x": 1}, "'x'"),
        ("execute", {"code": "1"}, "session_id"),
    ]
    for name, args, named in cases:
        body = call(svc, sid, name, args)
        assert body["error"]["code"] == -32602, (name, body)
        assert named in body["error"]["message"], (name, named, body)
    deep = "[" * 5000 + "]" * 5000
    r = rpc(svc, None, session=sid, raw='{"jsonrpc":"2.0","id":1,"method":"tools/call",'
            '"params":{"name":"render_notebook","arguments":{"cells":%s}}}' % deep)
    assert r.status in (200, 400), r
    assert "error" in r.json(), r.json()
    assert svc.get("/healthz").status == 200


def test_progress_comes_as_a_stream_only_when_asked_and_accepted(svc):
    sid = initialize(svc)
    msg = {"jsonrpc": "2.0", "id": 9, "method": "tools/call",
           "params": {"name": "render_notebook", "arguments": {"cells": ["1 + 1", "2 + 2"]},
                      "_meta": {"progressToken": "p-1"}}}
    r = rpc(svc, msg, session=sid)
    assert r.status == 200 and r.header("content-type") == "text/event-stream", r
    events = [json.loads(line[6:]) for line in r.body.decode().splitlines()
              if line.startswith("data: ")]
    progress = [e["params"] for e in events if e.get("method") == "notifications/progress"]
    assert [p["progress"] for p in progress] == [1, 2], events
    assert all(p["progressToken"] == "p-1" and p["total"] == 2 for p in progress), progress
    assert events[-1]["id"] == 9 and events[-1]["result"]["isError"] is False, events[-1]
    # without text/event-stream in Accept the answer is JSON, with no progress
    r = rpc(svc, msg, session=sid, headers={"Accept": "application/json"})
    assert r.header("content-type") == "application/json", r.headers
    assert r.json()["result"]["structuredContent"]["status"] == "ok", r.json()


def metric(svc, name):
    for line in svc.get("/metrics").body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no %s" % name)


def test_a_flood_of_progress_calls_is_answered_and_leaves_nothing(svc):
    # more streamed calls at once than the service has job slots and queue
    # places: each is answered (a result, or a busy error result), none
    # hangs, and the service serves on
    sid = initialize(svc)
    answers = []

    def one(i):
        msg = {"jsonrpc": "2.0", "id": i, "method": "tools/call",
               "params": {"name": "render_notebook",
                          "arguments": {"cells": ["import time\ntime.sleep(1)\n%d" % i]},
                          "_meta": {"progressToken": i}}}
        r = rpc(svc, msg, session=sid)
        events = [json.loads(line[6:]) for line in r.body.decode().splitlines()
                  if line.startswith("data: ")]
        answers.append(events[-1])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert len(answers) == 16, len(answers)
    busy = [a for a in answers if a["result"]["isError"]]
    assert all("busy" in a["result"]["content"][0]["text"] for a in busy), busy[:2]
    assert len(busy) < 16, "some ran"
    assert svc.get("/healthz").status == 200


def test_a_client_that_never_reads_its_stream_holds_nothing(svc):
    sid = initialize(svc)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "render_notebook",
                                  "arguments": {"cells": ["print('x' * (4 << 20))"]},
                                  "_meta": {"progressToken": "t"}}}).encode()
    sock = socket.create_connection(("127.0.0.1", svc.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                 b"Accept: text/event-stream, application/json\r\nMcp-Session-Id: %s\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (sid.encode(), len(body), body))
    try:
        # the job ends and its slot is free while the answer waits unread
        time.sleep(1)
        deadline = time.time() + 120
        while metric(svc, "nbcanvas_jobs_running") > 0:
            assert time.time() < deadline, "the job's slot is still held"
            time.sleep(0.5)
        r = svc.render({"cells": ["print(6 * 7)"], "cache": False})
        assert r.status == 200 and b"42" in r.body, r
    finally:
        sock.close()


# The document ---------------------------------------------------------------

def document(svc):
    r = svc.get("/openapi.json")
    assert r.status == 200 and r.header("content-type") == "application/json", r
    return r.json()


def schema_of(doc, path, method, status, ctype="application/json"):
    op = doc["paths"][path][method]
    resp = op["responses"][str(status)]
    if "$ref" in resp:
        resp = doc["components"]["responses"][resp["$ref"].split("/")[-1]]
    # its "#/components/..." references resolve inside the copy
    return dict(resp["content"][ctype]["schema"], components=doc["components"])


def validate(doc, path, method, resp):
    schema = schema_of(doc, path, method, resp.status,
                       resp.header("content-type").split(";")[0])
    jsonschema.Draft202012Validator(schema).validate(resp.json())


def test_the_document_names_the_routes_the_service_answers(svc):
    doc = document(svc)
    methods = {"get", "post", "delete", "put", "patch"}
    for path, item in doc["paths"].items():
        url = path.replace("{path}", "a/b.txt").replace("{id}", "00000000-0000-4000-8000-000000000000")
        for method in item:
            if method not in methods:
                continue
            # a route the document names is never "no such path"
            r = svc.request(method.upper(), url, body={} if method == "post" else None)
            assert not (r.status == 404 and b"no such path" in r.body), (method, path, r)
            assert r.status != 405, (method, path, r)
            # its query parameters are the ones the service takes
            params = [p for p in item[method].get("parameters", []) + item.get("parameters", [])]
            params = [doc["components"]["parameters"][p["$ref"].split("/")[-1]] if "$ref" in p else p
                      for p in params]
            for p in params:
                if p["in"] == "query":
                    r = svc.request(method.upper(), url + "?%s=x" % p["name"])
                    assert b"unknown query parameter" not in r.body, (path, p["name"], r)
            r = svc.request(method.upper(), url + "?bogus=1")
            if path.startswith("/api"):
                # the gateway's routes take any query (Jupyter's clients
                # add their own: docs/API.md)
                assert b"unknown query parameter" not in r.body, (path, r)
                continue
            check_error(r, 400, "invalid_request")
            assert "bogus" in r.json()["error"]["message"], r.json()
    # the MCP tools' schemas are the document's
    assert {t["name"] for t in doc["x-mcp-tools"]} == {
        "render_notebook", "run_code", "create_session", "execute", "get_notebook",
        "end_session", "list_languages", "list_datasources"}


def test_real_answers_match_the_document(svc):
    doc = document(svc)
    validate(doc, "/v1/kernels", "get", svc.get("/v1/kernels"))
    validate(doc, "/v1/languages", "get", svc.get("/v1/languages"))
    validate(doc, "/healthz", "get", svc.get("/healthz"))
    validate(doc, "/readyz", "get", svc.get("/readyz"))
    validate(doc, "/v1/run", "post", svc.run({"language": "python3", "code": "print(1)"}))
    validate(doc, "/v1/run", "post", svc.run({"language": "nope", "code": ""}))
    body = {"cells": ["import pandas as pd\npd.DataFrame({'a': [1, 2]})", "print('x')"],
            "format": "json"}
    validate(doc, "/v1/render", "post", svc.render(body))
    validate(doc, "/v1/render", "post", svc.render({"cells": ["1/0"], "format": "json"}))
    validate(doc, "/v1/render", "post", svc.render({"cells": [], "fromat": "x"}))
    r = svc.post("/v1/sessions", {"files": [{"name": "a.csv", "content_base64": b64(b"a\n1\n")}]})
    validate(doc, "/v1/sessions", "post", r)
    sid = r.json()["id"]
    try:
        path = "/v1/sessions/{id}"
        validate(doc, "/v1/sessions", "get", svc.get("/v1/sessions"))
        validate(doc, path, "get", svc.get("/v1/sessions/" + sid))
        validate(doc, path + "/execute", "post",
                 svc.post("/v1/sessions/%s/execute" % sid, {"code": "x = 1\nx"}))
        validate(doc, path + "/execute", "post",
                 svc.post("/v1/sessions/%s/execute" % sid, {"code": "raise KeyError(1)"}))
        validate(doc, path + "/notebook", "get",
                 svc.get("/v1/sessions/%s/notebook?format=json" % sid))
        validate(doc, path + "/notebook", "get",
                 svc.get("/v1/sessions/%s/notebook?fmt=json" % sid))
    finally:
        assert svc.request("DELETE", "/v1/sessions/" + sid).status == 204
    validate(doc, "/v1/sessions/{id}", "get", svc.get("/v1/sessions/" + sid))


# The examples in docs/API.md ------------------------------------------------

def shape(v):
    """What a reader of an example relies on: the keys of every object (a
    list's by its first item) and the type of every leaf."""
    if isinstance(v, dict):
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [shape(v[0])] if v else []
    return type(v).__name__ if v is not None else "null"


def doc_examples():
    """The JSON answers docs/API.md shows, by the name of their marker
    (<!-- answer: NAME --> before the block)."""
    with open(os.path.join(REPO, "docs", "API.md")) as f:
        text = f.read()
    return {m.group(1): json.loads(m.group(2))
            for m in re.finditer(r"<!-- answer: (\w+) -->\n```json\n(.*?)\n```", text, re.S)}


def test_the_examples_in_the_docs_have_the_real_answers_shape(svc):
    examples = doc_examples()
    csv = b"region,revenue\nNorth,150\nSouth,120\nNorth,180\nEast,90\n"
    r = svc.post("/v1/sessions", {"files": [{"name": "sales.csv", "content_base64": b64(csv)}]})
    sid = r.json()["id"]
    real = {"session": r.json()}
    try:
        real["execute"] = svc.post("/v1/sessions/%s/execute" % sid, {
            "code": "import pandas as pd\ndf = pd.read_csv('sales.csv')\n"
                    "print(len(df), 'rows, total', df.revenue.sum())"}).json()
        real["execute_error"] = svc.post("/v1/sessions/%s/execute" % sid,
                                         {"code": "revenue / units"}).json()
        real["sessions"] = svc.get("/v1/sessions").json()
    finally:
        svc.request("DELETE", "/v1/sessions/" + sid)
    _, _, events = svc.stream("/v1/render", {"cells": ["print(3)", "'liftoff'"], "cache": False})
    url = [d for name, d, _ in events if name == "result"][0]["result_url"]
    real["result_json"] = svc.get(url + "?format=json").json()
    assert set(examples) == set(real), (sorted(examples), sorted(real))
    for name, example in examples.items():
        assert shape(example) == shape(real[name]), (name, shape(example), shape(real[name]))


if __name__ == "__main__":
    main(globals(), {"max_sessions": 4, "pool_size": 1,
                     "allowed_origins": ["https://agent.example"]})
