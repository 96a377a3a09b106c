"""Shared pieces of the tests that run on the real Docker engine.

A test file defines functions named test_*; `main()` starts one nbcanvas
service from the build under test (on a free loopback port, with a config
file the test may extend), runs every test, stops the service with
SIGTERM, and then checks that the engine holds no container of it. It
prints the plain closing line "N passed, N failed" and exits non-zero on any
failure. Only the standard library is used.
"""
import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKER_SOCK = "/var/run/docker.sock"


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def engine(method, path, body=None):
    """One call to the Docker engine; returns (status, parsed JSON or bytes)."""
    c = UnixHTTPConnection(DOCKER_SOCK)
    c.request(method, path, body=json.dumps(body) if body is not None else None,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    try:
        return r.status, json.loads(data)
    except ValueError:
        return r.status, data


def containers(owner=None, exporters=False):
    """nbcanvas's containers on the engine (all, or those of one owner):
    the sandboxes, and with exporters=True also the warm nbconvert workers
    a running service keeps (job label "exporter": they never run user
    code, and go when the service stops)."""
    label = "org.nbcanvas.owner=%s" % owner if owner else "org.nbcanvas.managed=1"
    q = urllib.parse.quote(json.dumps({"label": [label]}))
    status, data = engine("GET", "/containers/json?all=1&filters=" + q)
    assert status == 200, data
    return [c for c in data if exporters or
            c["Labels"].get("org.nbcanvas.job") != "exporter"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return "<%d %s>" % (self.status, self.body[:300])


class Service:
    """An nbcanvas serve process for one test file."""

    def __init__(self, binary, config=None, env=None, key=None, tls_ca=None):
        self.binary = binary
        self.env = dict(os.environ, **(env or {}))
        self.key = key        # sent as Authorization: Bearer, unless overridden
        self.tls_ca = tls_ca  # speak HTTPS, trusting this CA file
        self.port = free_port()
        self.listen = "127.0.0.1:%d" % self.port
        self.config = dict(config or {})
        self.proc = None
        self.log = tempfile.NamedTemporaryFile(prefix="nbcanvas-serve-", suffix=".log",
                                               delete=False)

    def start(self):
        cfg = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump(self.config, cfg)
        cfg.close()
        self.config_path = cfg.name
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--listen", self.listen, "--config", cfg.name],
            stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                if self.get("/healthz").status == 200:
                    return self
            except OSError:
                time.sleep(0.05)
        self.proc.kill()  # a service that never answered is not left behind
        self.proc.wait()
        self.proc = None
        os.unlink(self.config_path)
        raise RuntimeError("service did not start: " + self.read_log())

    def read_log(self):
        with open(self.log.name) as f:
            return f.read()

    def stop(self):
        """SIGTERM, as an operator would; the service must exit 0."""
        if not self.proc:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        os.unlink(self.config_path)
        self.proc = None
        return rc

    def request(self, method, path, body=None, headers=None, timeout=300):
        if self.tls_ca:
            import ssl
            c = http.client.HTTPSConnection(
                "localhost", self.port, timeout=timeout,
                context=ssl.create_default_context(cafile=self.tls_ca))
        else:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        hdrs = dict(headers or {})
        if self.key:
            hdrs.setdefault("Authorization", "Bearer " + self.key)
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        c.request(method, path, body=body, headers=hdrs)
        r = c.getresponse()
        data = r.read()
        resp = Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        c.close()
        return resp

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body, **kw):
        return self.request("POST", path, body, **kw)

    def render(self, body, **kw):
        return self.post("/v1/render", body, **kw)

    def run(self, body, **kw):
        return self.post("/v1/run", body, **kw)

    def stream(self, path, body, headers=None, timeout=300, on_open=None):
        """POSTs body asking for Server-Sent Events and returns (status,
        headers, events) once the stream ends: events are (name, data,
        seconds since the request) with data parsed from JSON, and ("ping",
        None, t) for each comment line. An answer that is not a stream
        comes back as (status, headers, Response). on_open(conn, response)
        may end the stream early by returning True."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        hdrs = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.key:
            hdrs["Authorization"] = "Bearer " + self.key
        hdrs.update(headers or {})
        t0 = time.time()
        c.request("POST", path, body=json.dumps(body), headers=hdrs)
        r = c.getresponse()
        got = {k.lower(): v for k, v in r.getheaders()}
        if not got.get("content-type", "").startswith("text/event-stream"):
            resp = Response(r.status, got, r.read())
            c.close()
            return r.status, got, resp
        events, name, data = [], None, []
        while True:
            line = r.readline()
            if not line:
                break
            line = line.decode().rstrip("\n")
            if line.startswith(":"):
                events.append(("ping", None, time.time() - t0))
            elif line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data.append(line[len("data: "):])
            elif line == "" and name:
                events.append((name, json.loads("\n".join(data)), time.time() - t0))
                name, data = None, []
                if on_open and on_open(c, events):
                    break
        c.close()
        return r.status, got, events

    def metrics_with(self, *lines, timeout=10, **kw):
        """/metrics once it holds every one of `lines`. A request is counted
        when its answer has been sent, a moment after the client has read
        it, so a test that has just been answered waits for the count."""
        deadline = time.time() + timeout
        while True:
            r = self.get("/metrics", **kw)
            assert r.status == 200, r
            text = r.body.decode()
            if all(line in text for line in lines) or time.time() > deadline:
                return text
            time.sleep(0.1)


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def warm_pool_size(svc, **kw):
    """How many warm sandboxes the service keeps now: every kernel's pool
    (Python's and R's), from /metrics."""
    text = svc.get("/metrics", **kw).body.decode()
    return sum(int(l.split()[1]) for l in text.splitlines()
               if l.startswith("nbcanvas_kernel_pool_size{"))


def check_error(resp, status, code):
    """The API's error format: status, code, and a message for a person."""
    assert resp.status == status, resp
    assert resp.header("content-type").startswith("application/json"), resp.headers
    err = resp.json()["error"]
    assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"], err
    assert resp.header("x-request-id"), resp.headers
    return err


def main(namespace, config=None, key=None):
    """key: the API key the tests' requests carry (with a keys file)."""
    binary = sys.argv[1]
    if not os.path.exists(DOCKER_SOCK):
        print("no Docker engine at %s: run scripts/start-docker.sh" % DOCKER_SOCK)
        print("0 passed, 1 failed")
        sys.exit(1)
    # Two warm sandboxes, as on a 2-core machine before the pool measures
    # one: a default floor would grow to what memory holds, and every
    # file's service would pay for six more starts it does not need.
    config = dict(config or {})
    config.setdefault("pool_size", 2)
    svc = Service(binary, config, key=key).start()
    tests = sorted((n, f) for n, f in namespace.items()
                   if n.startswith("test_") and callable(f))
    only = os.environ.get("NBCANVAS_TEST")
    passed = failed = 0
    for name, fn in tests:
        if only and only not in name:
            continue
        t0 = time.time()
        try:
            fn(svc)
            passed += 1
            print("ok   %s (%.1fs)" % (name, time.time() - t0), flush=True)
        except Exception:
            failed += 1
            print("FAIL %s (%.1fs)" % (name, time.time() - t0), flush=True)
            traceback.print_exc()
    # While the service still runs: once idle, it holds no container but
    # its warm pool's (a used sandbox must not linger).
    size = warm_pool_size(svc)
    deadline = time.time() + 20
    while len(containers(svc.listen)) > size and time.time() < deadline:
        time.sleep(0.25)
    if len(containers(svc.listen)) > size:
        failed += 1
        print("FAIL %d containers alive while idle, pool size %d"
              % (len(containers(svc.listen)), size))
    rc = svc.stop()
    if rc != 0:
        failed += 1
        print("FAIL service exited %d on SIGTERM\n%s" % (rc, svc.read_log()[-3000:]))
    left = containers(svc.listen, exporters=True)
    if left:
        failed += 1
        print("FAIL %d container(s) left on the engine: %s"
              % (len(left), [c["Id"][:12] for c in left]))
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
