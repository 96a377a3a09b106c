#!/usr/bin/python3
"""The kernel gateway against a local Jupyter server (issue 22), one run,
one machine, the same client for both. Not part of the test suite.

    /usr/bin/python3 tests/bench/bench_gateway.py build/nbcanvas [--runs 20]
        [--out docs/BENCHMARKS.md]

- kernel start: POST /api/kernels until the kernel answers kernel_info
  over its WebSocket (a kernel a client can use), on nbcanvas (from its
  warm pool, as it is after a quiet moment) and on Debian's jupyter_server
  starting a local ipykernel (no sandbox at all);
- an execute round trip of `1 + 1` over the WebSocket (execute_request to
  both the reply and the idle status), on one kernel of each.

Runs on Debian's interpreter: jupyter_server, ipykernel and
websocket-client come from Debian's packages."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

import websocket

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
sys.path.insert(0, HERE)
from harness import Service, free_port  # noqa: E402
from bench import pool_idle, write_report  # noqa: E402


def message(msg_type, content):
    return {"channel": "shell", "header": {
        "msg_id": uuid.uuid4().hex, "msg_type": msg_type, "username": "bench",
        "session": "bench", "date": "", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "content": content}


def wait_reply(ws, mid, reply_type):
    reply = idle = False
    while not (reply and idle):
        m = json.loads(ws.recv())
        if m["parent_header"].get("msg_id") != mid:
            continue
        reply = reply or m["msg_type"] == reply_type
        idle = idle or (m["msg_type"] == "status"
                        and m["content"]["execution_state"] == "idle")


class Server:
    def __init__(self, base, ws_base, token):
        self.base, self.ws_base, self.token = base, ws_base, token

    def call(self, method, path, body=None):
        req = urllib.request.Request(
            self.base + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": "token " + self.token,
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            data = r.read()
            return json.loads(data) if data else None

    def connect(self, kid):
        return websocket.create_connection(
            "%s/api/kernels/%s/channels?token=%s" % (self.ws_base, kid, self.token),
            timeout=120)

    def start_ready(self):
        """Seconds from POST /api/kernels to a kernel_info_reply; the id."""
        t0 = time.perf_counter()
        kid = self.call("POST", "/api/kernels", {"name": "python3"})["id"]
        ws = self.connect(kid)
        while True:  # a proxy may drop what comes before it is connected
            msg = message("kernel_info_request", {})
            ws.send(json.dumps(msg))
            ws.settimeout(2)
            try:
                wait_reply(ws, msg["header"]["msg_id"], "kernel_info_reply")
                break
            except websocket.WebSocketTimeoutException:
                continue
        took = time.perf_counter() - t0
        ws.close()
        return took, kid

    def round_trips(self, kid, n):
        ws = self.connect(kid)
        ws.settimeout(120)
        times = []
        for i in range(n + 5):
            msg = message("execute_request", {"code": "1 + 1", "silent": False})
            t0 = time.perf_counter()
            ws.send(json.dumps(msg))
            wait_reply(ws, msg["header"]["msg_id"], "execute_reply")
            if i >= 5:  # warm-up
                times.append(time.perf_counter() - t0)
        ws.close()
        return times


def zmq_round_trips(n):
    """The same round trip to a local ipykernel over ZeroMQ with
    jupyter_client, no server in between: the kernel's own floor."""
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name="python3")
    times = []
    try:
        for i in range(n + 5):
            t0 = time.perf_counter()
            mid = kc.execute("1 + 1")
            reply = idle = False
            while not (reply and idle):
                if not reply:
                    reply = kc.get_shell_msg(timeout=30)["parent_header"].get("msg_id") == mid
                if not idle:
                    m = kc.get_iopub_msg(timeout=30)
                    idle = (m["parent_header"].get("msg_id") == mid and m["msg_type"] == "status"
                            and m["content"]["execution_state"] == "idle")
            if i >= 5:
                times.append(time.perf_counter() - t0)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    svc = Service(args.binary, {"max_sessions": 64}).start()
    port = free_port()
    home = tempfile.mkdtemp(prefix="bench-js-")
    js = subprocess.Popen(
        ["/usr/bin/python3", "-m", "jupyter_server", "--no-browser",
         "--allow-root", "--ip=127.0.0.1", "--port=%d" % port,
         "--ServerApp.token=bench", "--ServerApp.root_dir=" + home],
        env=dict(os.environ, HOME=home, JUPYTER_RUNTIME_DIR=home),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    local = Server("http://127.0.0.1:%d" % port, "ws://127.0.0.1:%d" % port, "bench")
    ours = Server("http://" + svc.listen, "ws://" + svc.listen, "")
    try:
        deadline = time.time() + 60
        while True:
            try:
                local.call("GET", "/api")
                break
            except OSError:
                assert time.time() < deadline
                time.sleep(0.5)
        starts = {"nbcanvas": [], "local": []}
        kernels = {"nbcanvas": [], "local": []}
        for _ in range(args.runs):
            # nbcanvas as after a quiet moment: its pool refilled
            deadline = time.time() + 120
            while pool_idle(svc) < 1 and time.time() < deadline:
                time.sleep(0.1)
            for name, server in (("nbcanvas", ours), ("local", local)):
                took, kid = server.start_ready()
                starts[name].append(took)
                kernels[name].append(kid)
        rtt = {name: server.round_trips(kernels[name][0], 200)
               for name, server in (("nbcanvas", ours), ("local", local))}
        rtt["zmq"] = zmq_round_trips(200)
        for name, server in (("nbcanvas", ours), ("local", local)):
            for kid in kernels[name]:
                server.call("DELETE", "/api/kernels/" + kid)
    finally:
        js.terminate()
        js.wait()
        svc.stop()

    p50 = {k: statistics.median(v) for k, v in starts.items()}
    r50 = {k: statistics.median(v) for k, v in rtt.items()}
    r90 = {k: sorted(v)[int(len(v) * 0.9)] for k, v in rtt.items()}
    lines = [
        "### Kernel gateway against a local Jupyter server (%s)"
        % time.strftime("%Y-%m-%d"),
        "",
        "`/usr/bin/python3 tests/bench/bench_gateway.py build/nbcanvas --runs %d`;"
        " one client (websocket-client) for both; a local ipykernel has no"
        " sandbox at all." % args.runs,
        "",
        "| | nbcanvas | local jupyter_server | ratio |",
        "|---|---|---|---|",
        "| kernel start to kernel_info_reply, p50 of %d | %.0f ms | %.0f ms | %.3fx |"
        % (args.runs, p50["nbcanvas"] * 1000, p50["local"] * 1000,
           p50["nbcanvas"] / p50["local"]),
        "| `1 + 1` execute round trip, p50 of 200 | %.1f ms | %.1f ms | %.2fx |"
        % (r50["nbcanvas"] * 1000, r50["local"] * 1000, r50["nbcanvas"] / r50["local"]),
        "| `1 + 1` execute round trip, p90 | %.1f ms | %.1f ms | %.2fx |"
        % (r90["nbcanvas"] * 1000, r90["local"] * 1000, r90["nbcanvas"] / r90["local"]),
        "",
        "The same `1 + 1` to a local ipykernel over ZeroMQ with jupyter_client,"
        " no server in between (the kernel's own floor): p50 %.1f ms, p90 %.1f"
        " ms; nbcanvas over its WebSocket is %.2fx that p50."
        % (r50["zmq"] * 1000, r90["zmq"] * 1000, r50["nbcanvas"] / r50["zmq"]),
    ]
    write_report(lines, args.out)


if __name__ == "__main__":
    main()
