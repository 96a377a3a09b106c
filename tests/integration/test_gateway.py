"""The kernel gateway (/api/kernels and its WebSocket) on the real engine:
Debian's jupyter_server started with --gateway-url pointing at nbcanvas;
the real notebooks of tests/data/notebooks executed cell by cell through
the WebSocket by a small client, matching what the render route (itself
checked against nbconvert) gives; and the abuse a WebSocket invites.

Runs on Debian's interpreter (/usr/bin/python3): it uses Debian's
jupyter_server and websocket-client (python3-websocket)."""
import base64
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

import websocket

from harness import REPO, check_error, containers, free_port, main

KEY = "gateway-test-key"
OTHER = "gateway-other-key"
NOTEBOOKS = os.path.join(REPO, "tests", "data", "notebooks")


def auth(key=KEY):
    return {"Authorization": "token " + key}


def start_kernel(svc, key=KEY):
    r = svc.post("/api/kernels", {"name": "python3"}, headers=auth(key))
    assert r.status == 201, r
    assert r.header("Location") == "/api/kernels/" + r.json()["id"]
    return r.json()["id"]


def ws_url(svc, kid, key=KEY):
    return "ws://%s/api/kernels/%s/channels?token=%s" % (svc.listen, kid, key)


def message(msg_type, content, channel="shell", session="test-session"):
    return {"channel": channel, "header": {
        "msg_id": uuid.uuid4().hex, "msg_type": msg_type, "username": "test",
        "session": session, "date": "", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "content": content}


class Client:
    """A small Jupyter client over the WebSocket: what a notebook front
    end does for one cell, with nbclient's rules for the outputs."""

    def __init__(self, url, **kw):
        self.ws = websocket.create_connection(url, timeout=120, **kw)

    def close(self):
        self.ws.close()

    def send(self, msg):
        self.ws.send(json.dumps(msg))
        return msg["header"]["msg_id"]

    def recv(self):
        return json.loads(self.ws.recv())

    def kernel_info(self, tries=10):
        """kernel_info_request, sent again while nothing answers (a proxy
        such as jupyter_server drops what comes before its own upstream
        connection is up)."""
        for _ in range(tries):
            mid = self.send(message("kernel_info_request", {}))
            self.ws.settimeout(3)
            try:
                while True:
                    m = self.recv()
                    if (m["msg_type"] == "kernel_info_reply"
                            and m["parent_header"].get("msg_id") == mid):
                        self.ws.settimeout(120)
                        return m["content"]
            except websocket.WebSocketTimeoutException:
                continue
        raise AssertionError("no kernel_info_reply")

    def execute(self, code, earlier=()):
        """(reply content, outputs as nbformat has them); an update of a
        display rewrites it in the earlier cells' outputs too, as nbclient
        does."""
        mid = self.send(message("execute_request", {
            "code": code, "silent": False, "store_history": True,
            "user_expressions": {}, "allow_stdin": False,
            "stop_on_error": True}))
        outputs, reply, idle, clear_wait = [], None, False, False
        while reply is None or not idle:
            m = self.recv()
            if m["parent_header"].get("msg_id") != mid:
                continue
            t, c = m["msg_type"], m["content"]
            if t == "execute_reply":
                reply = c
            elif t == "status" and c["execution_state"] == "idle":
                idle = True
            elif t == "clear_output":
                if c.get("wait"):
                    clear_wait = True
                else:
                    outputs = []
            elif t in ("stream", "display_data", "execute_result", "error"):
                if clear_wait:
                    outputs, clear_wait = [], False
                out = dict(c, output_type=t)
                outputs.append(out)
            elif t == "update_display_data":
                did = c.get("transient", {}).get("display_id")
                for o in [o for cell in earlier for o in cell] + outputs:
                    if o.get("transient", {}).get("display_id") == did:
                        o["data"] = c["data"]
        return reply, outputs


def shape(outputs):
    """What must match between two runs of a cell: each output's kind,
    stream name and text, MIME types, and plain text with memory
    addresses and timings left out."""
    def plain(text):
        text = re.sub(r"0x[0-9a-f]+", "0x…", text)
        text = re.sub(r"display_id=[0-9a-f]{32}", "display_id=…", text)
        return re.sub(r"\d+(\.\d+)? ?(ms|µs|us|ns|s)\b", "T", text)
    out = []
    for o in outputs:
        t = o["output_type"]
        if t == "stream":
            out.append((t, o["name"], plain(o["text"])))
        elif t == "error":
            out.append((t, o["ename"]))
        else:
            data = o.get("data", {})
            # (the render adds its own structured types: not nbconvert's)
            mimes = sorted(m for m in data if not m.startswith("application/vnd.nbcanvas"))
            out.append((t, mimes, plain("".join(data.get("text/plain", "")))))
    return out


def merged(outputs):
    """Consecutive streams of one name joined, as nbformat stores them."""
    out = []
    for o in outputs:
        if (out and o["output_type"] == "stream"
                and out[-1]["output_type"] == "stream"
                and out[-1]["name"] == o["name"]):
            out[-1] = dict(out[-1], text=out[-1]["text"] + o["text"])
        else:
            out.append(dict(o))
    return out


def test_kernelspecs_and_models(svc):
    r = svc.get("/api/kernelspecs", headers=auth())
    assert r.status == 200, r
    spec = r.json()["kernelspecs"]["python3"]
    assert spec["resources"] == {} and spec["spec"]["language"] == "python"
    assert svc.get("/api/kernelspecs/python3", headers=auth()).status == 200
    assert svc.get("/api/kernelspecs/nope", headers=auth()).status == 404
    r = svc.post("/api/kernels", {"name": "nope"}, headers=auth())
    assert r.status == 404 and r.json()["reason"] == "not_found", r
    kid = start_kernel(svc)
    model = svc.get("/api/kernels/" + kid, headers=auth()).json()
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$",
                    model["last_activity"]), model
    assert model["execution_state"] == "idle" and model["connections"] == 0
    # a gateway kernel is a session: listed there, not driven from there
    sessions = svc.get("/v1/sessions", headers={"Authorization": "Bearer " + KEY})
    assert any(s["id"] == kid for s in sessions.json())
    r = svc.post("/v1/sessions/%s/execute" % kid, {"code": "1"},
                 headers={"Authorization": "Bearer " + KEY})
    check_error(r, 409, "session_busy")
    # and a /v1 session is not a gateway kernel
    r = svc.post("/v1/sessions", {}, headers={"Authorization": "Bearer " + KEY})
    sid = r.json()["id"]
    assert svc.get("/api/kernels/" + sid, headers=auth()).status == 404
    assert svc.request("DELETE", "/api/kernels/" + sid, headers=auth()).status == 404
    assert svc.request("DELETE", "/v1/sessions/" + sid,
                       headers={"Authorization": "Bearer " + KEY}).status == 204
    assert svc.request("DELETE", "/api/kernels/" + kid, headers=auth()).status == 204


def test_jupyter_server_with_gateway_url(svc):
    """Debian's jupyter_server, pointed at nbcanvas, runs its kernels in
    nbcanvas sandboxes and relays their WebSocket."""
    port = free_port()
    token = "js-token"
    home = tempfile.mkdtemp(prefix="nbcanvas-js-")
    env = dict(os.environ, HOME=home, JUPYTER_RUNTIME_DIR=home,
               JUPYTER_GATEWAY_AUTH_TOKEN=KEY)
    proc = subprocess.Popen(
        ["/usr/bin/python3", "-m", "jupyter_server", "--no-browser",
         "--allow-root", "--ip=127.0.0.1", "--port=%d" % port,
         "--ServerApp.token=" + token, "--ServerApp.root_dir=" + home,
         "--gateway-url=http://" + svc.listen],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = "http://127.0.0.1:%d" % port
    try:
        def call(method, path, body=None):
            req = urllib.request.Request(
                base + path, method=method,
                data=json.dumps(body).encode() if body is not None else None,
                headers={"Authorization": "token " + token,
                         "Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as r:
                data = r.read()
                return r.status, json.loads(data) if data else None
        deadline = time.time() + 60
        while True:
            try:
                status, specs = call("GET", "/api/kernelspecs")
                break
            except OSError:
                assert time.time() < deadline, "jupyter_server did not start"
                time.sleep(0.5)
        assert specs["default"] == "python3"
        status, model = call("POST", "/api/kernels", {"name": "python3"})
        assert status == 201, model
        kid = model["id"]
        # the same kernel, in nbcanvas
        assert svc.get("/api/kernels/" + kid, headers=auth()).status == 200
        c = Client("ws://127.0.0.1:%d/api/kernels/%s/channels?token=%s"
                   % (port, kid, token))
        assert c.kernel_info()["language_info"]["name"] == "python"
        reply, outs = c.execute("import os\nprint(os.getpid())\n6 * 7")
        assert reply["status"] == "ok", reply
        assert outs[-1]["data"]["text/plain"] == "42", outs
        c.close()
        status, _ = call("DELETE", "/api/kernels/" + kid)
        assert status == 204
        assert svc.get("/api/kernels/" + kid, headers=auth()).status == 404
    finally:
        proc.terminate()
        try:
            out = proc.communicate(timeout=20)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0]
        if sys.exc_info()[0]:
            print(out.decode(errors="replace")[-3000:])


def code_cells(nb):
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        src = cell["source"]
        src = "".join(src) if isinstance(src, list) else src
        tags = cell.get("metadata", {}).get("tags", [])
        if not src.strip() or "skip-execution" in tags:
            continue
        yield src, tags


def test_real_notebooks_cell_by_cell(svc):
    """Each real notebook run through the WebSocket one cell at a time
    gives the outputs its render gives (the render route matches
    nbconvert: test_notebooks.py)."""
    names = sorted(n for n in os.listdir(NOTEBOOKS)
                   if n.endswith(".ipynb") and "autokill" not in n)
    with open(os.path.join(NOTEBOOKS, "nbclient-python.png"), "rb") as f:
        png = base64.b64encode(f.read()).decode()
    for name in names:
        with open(os.path.join(NOTEBOOKS, name)) as f:
            nb = json.load(f)
        # the one file a notebook here reads (nbclient-inline-image's)
        files = [{"name": "python.png", "content_base64": png}]
        r = svc.render({"notebook": nb, "format": "json", "allow_errors": True,
                        "structured": False, "files": files},
                       headers={"Authorization": "Bearer " + KEY})
        assert r.status in (200, 422), (name, r)
        rendered = r.json() if r.status == 200 else r.json()["error"]
        # streams joined on both sides: where a kernel splits a print's
        # output (its flush timing) is no property of either path
        expected = [shape(merged(c["outputs"])) for c in rendered["cells"]
                    if c.get("cell_type", "code") == "code" and c.get("outputs") is not None]
        kid = start_kernel(svc)
        c = Client(ws_url(svc, kid))
        c.kernel_info()
        # the same file in the kernel's working directory
        c.execute("import base64 as _b\nopen('python.png', 'wb').write("
                  "_b.b64decode(%r)); del _b" % png)
        cells = []  # every cell runs, as the render's allow_errors has it
        for src, tags in code_cells(nb):
            reply, outs = c.execute(src, cells)
            cells.append(outs)
        got = [shape(merged(outs)) for outs in cells]
        c.close()
        svc.request("DELETE", "/api/kernels/" + kid, headers=auth())
        assert [g for g in got if g] == [e for e in expected if e], \
            (name, got, expected)


# --- abuse ------------------------------------------------------------

def raw_upgrade(svc, kid, key=KEY, extra_headers=""):
    """A hand-made upgrade on a plain socket: (socket, status line)."""
    s = socket.create_connection(("127.0.0.1", int(svc.listen.split(":")[1])),
                                 timeout=10)
    key64 = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /api/kernels/%s/channels?token=%s HTTP/1.1\r\n"
               "Host: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
               % (kid, key, svc.listen, key64, extra_headers)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    return s, head.split(b"\r\n")[0].decode()


def frame(opcode, payload, fin=True):
    """A client frame (masked)."""
    mask = os.urandom(4)
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def closed(s, seconds=20):
    """True when the server ends the connection; returns the close code
    of a close frame when it sent one."""
    s.settimeout(seconds)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        return None
    i = data.find(b"\x88")
    if i >= 0 and len(data) >= i + 4:
        return struct.unpack("!H", data[i + 2:i + 4])[0]
    return 0


def alive(svc):
    return svc.get("/healthz").status == 200


def test_abuse_frames(svc):
    kid = start_kernel(svc)
    # garbage after the upgrade: closed, the service answers on
    s, status = raw_upgrade(svc, kid)
    assert " 101 " in status, status
    s.sendall(os.urandom(4096))
    assert closed(s) is not None
    # an unmasked frame is a protocol error (1002)
    s, _ = raw_upgrade(svc, kid)
    s.sendall(struct.pack("!BB", 0x81, 5) + b"hello")
    assert closed(s) in (1002, 0)
    # a fragmented control frame (a ping without FIN)
    s, _ = raw_upgrade(svc, kid)
    s.sendall(frame(0x9, b"x", fin=False))
    assert closed(s) is not None
    # a message over gateway_max_message_bytes: 1009
    s, _ = raw_upgrade(svc, kid)
    s.sendall(frame(0x1, b"x" * (70 * 1024)))
    assert closed(s) == 1009
    # not JSON, not a channel of ours, a header without msg_id: dropped,
    # the connection and the kernel go on
    c = Client(ws_url(svc, kid))
    for bad in ["not json", json.dumps({"channel": "iopub", "header": {}}),
                json.dumps({"channel": "shell", "header": {"msg_type": "x"}}),
                json.dumps([1, 2])]:
        c.ws.send(bad)
    c.ws.send_binary(b"\xff\xff\xff\xff")
    reply, outs = c.execute("1 + 1")
    assert outs[-1]["data"]["text/plain"] == "2"
    # a ping flood is answered, and the kernel still runs code
    for _ in range(2000):
        c.ws.ping(b"p")
    reply, outs = c.execute("2 + 2")
    assert outs[-1]["data"]["text/plain"] == "4"
    c.close()
    # empty pings from a client that never reads: each pong costs the
    # service memory, so it stops reading (the client's sends back up)
    # instead of queueing pongs without end
    s, _ = raw_upgrade(svc, kid)
    s.setblocking(False)
    ping, sent, blocked = frame(0x9, b""), 0, False
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            sent += s.send(ping * 64)
        except BlockingIOError:
            blocked = True
            break
    assert blocked, "the service kept reading %d bytes of pings" % sent
    assert sent < 64 << 20, sent
    s.close()
    assert alive(svc)
    svc.request("DELETE", "/api/kernels/" + kid, headers=auth())



def test_abuse_clients_that_hang_up_at_once(svc):
    """Clients that send their close with the upgrade and hang up: the
    connection's thread may end before the upgrade's own thread is done
    with it (a front such as HAProxy forwards such a hang-up at once).
    The service answers on, and every connection is let go."""
    kid = start_kernel(svc)
    port = int(svc.listen.split(":")[1])
    for i in range(300):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(("GET /api/kernels/%s/channels?token=%s HTTP/1.1\r\n"
                   "Host: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                   % (kid, KEY, svc.listen, base64.b64encode(os.urandom(16)).decode())
                   ).encode() + frame(0x8, struct.pack("!H", 1000)))
        if i % 2:
            s.shutdown(socket.SHUT_WR)
        s.close()
    # until the last ones are let go, this client's connections may still
    # pass max_connections_per_ip (refused with a reset)
    deadline = time.time() + 30
    while True:
        assert time.time() < deadline, "hung-up connections still count"
        try:
            if not svc.get("/api/kernels/" + kid, headers=auth()).json()["connections"]:
                break
        except ConnectionResetError:
            pass
        time.sleep(0.2)
    assert alive(svc)
    assert "AddressSanitizer" not in svc.read_log()
    c = Client(ws_url(svc, kid))
    reply, outs = c.execute("3 + 3")
    assert outs[-1]["data"]["text/plain"] == "6"
    c.close()
    svc.request("DELETE", "/api/kernels/" + kid, headers=auth())


def test_abuse_connection_caps(svc):
    kid = start_kernel(svc)
    conns, refused = [], 0
    for _ in range(100):
        try:
            conns.append(websocket.create_connection(ws_url(svc, kid), timeout=10))
        except (websocket.WebSocketBadStatusException, OSError):
            refused += 1
    # gateway_max_connections is 4 in this file's config
    assert len(conns) == 4 and refused == 96, (len(conns), refused)
    model = svc.get("/api/kernels/" + kid, headers=auth()).json()
    assert model["connections"] == 4, model
    for ws in conns:
        ws.close()
    deadline = time.time() + 20
    while svc.get("/api/kernels/" + kid, headers=auth()).json()["connections"]:
        assert time.time() < deadline, "the closed connections still count"
        time.sleep(0.2)
    svc.request("DELETE", "/api/kernels/" + kid, headers=auth())


def test_abuse_slow_reader_is_closed(svc):
    """A client that asks for a flood of output and never reads is closed
    once its backlog passes gateway_max_queued_bytes; the kernel and the
    service go on: the flood interrupted, a new client is answered. (A
    second client connected during the flood would be a slow reader too
    unless it read as fast as the kernel prints.)"""
    kid = start_kernel(svc)
    s, status = raw_upgrade(svc, kid)
    assert " 101 " in status
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    flood = message("execute_request", {
        "code": "for i in range(200000): print('x' * 200)", "silent": False})
    s.sendall(frame(0x1, json.dumps(flood).encode()))
    deadline = time.time() + 120
    while True:  # it never reads: the backlog grows past the cap
        model = svc.get("/api/kernels/" + kid, headers=auth()).json()
        if model["connections"] == 0:  # the slow one is gone
            break
        assert time.time() < deadline, model
        time.sleep(0.5)
    s.close()
    r = svc.request("POST", "/api/kernels/%s/interrupt" % kid, body={}, headers=auth())
    assert r.status == 204, r
    # the flood's tail (what the kernel had printed before the interrupt)
    # still goes to every client until the kernel is idle: a client that
    # reads slower than that is a slow reader too, so the watcher comes
    # after it
    deadline = time.time() + 120
    while svc.get("/api/kernels/" + kid, headers=auth()).json()["execution_state"] != "idle":
        assert time.time() < deadline, "the interrupted flood never ended"
        time.sleep(0.5)
    watcher = Client(ws_url(svc, kid))
    watcher.kernel_info(tries=40)
    watcher.close()
    assert alive(svc)
    svc.request("DELETE", "/api/kernels/" + kid, headers=auth())


def test_abuse_other_kernels_and_tenants(svc):
    mine = start_kernel(svc)
    theirs = start_kernel(svc, OTHER)
    # another tenant's kernel: 404 on every route, the WebSocket included
    for method, path in [("GET", ""), ("DELETE", ""), ("POST", "/interrupt"),
                         ("POST", "/restart")]:
        r = svc.request(method, "/api/kernels/" + theirs + path,
                        body={} if method == "POST" else None, headers=auth())
        assert r.status == 404, (method, path, r)
    s, status = raw_upgrade(svc, theirs)
    assert " 404 " in status, status
    # a message that names the other kernel reaches only this one
    c = Client(ws_url(svc, mine))
    msg = message("execute_request", {"code": "x = 1", "silent": False},
                  session=theirs)
    msg["parent_header"] = {"msg_id": theirs, "session": theirs}
    msg["metadata"] = {"kernel_id": theirs}
    c.send(msg)
    reply, outs = c.execute("x")
    assert outs[-1]["data"]["text/plain"] == "1"
    c.close()
    o = Client(ws_url(svc, theirs, OTHER))
    reply, outs = o.execute("'x' in globals()")
    assert outs[-1]["data"]["text/plain"] == "False"
    o.close()
    # a cross-site upgrade
    s, status = raw_upgrade(svc, mine, extra_headers="Origin: https://evil.example\r\n")
    assert " 403 " in status, status
    for kid, key in [(mine, KEY), (theirs, OTHER)]:
        svc.request("DELETE", "/api/kernels/" + kid, headers=auth(key))


def test_idle_kernel_is_culled(svc):
    """An open connection keeps a kernel; with none and no message for
    its idle time (session_idle_timeout_s, 20 s here) it ends."""
    kid = start_kernel(svc)
    c = Client(ws_url(svc, kid))
    time.sleep(25)
    assert svc.get("/api/kernels/" + kid, headers=auth()).status == 200
    c.close()
    deadline = time.time() + 90
    while svc.get("/api/kernels/" + kid, headers=auth()).status == 200:
        assert time.time() < deadline, "an idle kernel was never culled"
        time.sleep(1)


if __name__ == "__main__":
    keys = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    import hashlib
    json.dump([{"tenant": "gw", "key_sha256": hashlib.sha256(KEY.encode()).hexdigest(),
                "metrics": True},
               {"tenant": "other", "key_sha256": hashlib.sha256(OTHER.encode()).hexdigest()}],
              keys)
    keys.close()
    main(globals(), config={
        "api_keys_file": keys.name, "max_sessions": 8,
        "gateway_max_connections": 4, "gateway_max_message_bytes": 65536,
        "gateway_max_queued_bytes": 1 << 20, "session_idle_timeout_s": 20,
    }, key=KEY)
