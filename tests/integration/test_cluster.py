"""nbcanvas on a real single-node Docker Swarm (scripts/cluster.sh, deploy/).

`scripts/cluster.sh up` deploys the stack (2 api replicas on 127.0.0.1:8181
and :8182, Redis, HAProxy on :8180) with a keys file made here; the tests
then go through the front, or to one replica directly where the point is
which replica answers; the last one is `cluster.sh down`, which must leave
no service, sandbox or swarm behind. The binary under test goes into the
image, so it must be one built without sanitizers (tests/CMakeLists.txt,
PLAIN_BINARY).
"""
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

CLUSTER = os.path.join(harness.REPO, "scripts", "cluster.sh")
STACK = "nbcanvas"


class Endpoint(harness.Service):
    """A running listener of the stack: the front or one replica."""

    def __init__(self, port, key):
        self.port, self.key, self.tls_ca = port, key, None


def sh(*args, check=True, timeout=600):
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError("%s: %s%s" % (" ".join(args), r.stdout, r.stderr))
    return r.stdout


def unique_cells(sleep_s=0.0):
    """A render no earlier run can have cached (the cache outlives tests)."""
    tag = uuid.uuid4().hex
    code = "import time\ntime.sleep(%s)\nprint('%s')" % (sleep_s, tag)
    return {"cells": [{"source": code}]}, tag


def metric(ep, name):
    for line in ep.get("/metrics").body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no %s in /metrics" % name)


def replicas_running():
    return sh("docker", "service", "ls", "--filter", "name=%s_api" % STACK,
              "--format", "{{.Replicas}}").strip()


def wait_until(what, pred, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.5)
    raise AssertionError("not within %d s: %s" % (timeout, what))


def ready(ep):
    try:
        return ep.get("/readyz", timeout=3).status == 200
    except OSError:
        return False


# How long renders may pause around a replica's death or restart. On 2
# cores two clients rendering back to back already wait 3-4 s now and
# then for a fresh sandbox, killed replica or not; the longest pause after
# a kill measured 4.0 s here (docs/BENCHMARKS.md, "A replica killed under
# load"), and more than 6 s on a slower machine. Thirty times that: the
# bound tells a front that lost a replica for good from a slow machine,
# never a slow machine from a fast one.
RESUME_S = 120

# The cache's password, made by cluster.sh up for this run (main()).
REDIS = {"password": None}


class Load:
    """Clients sending renders through the front until stopped; every
    answer is recorded with the time it came. Renders are cheap ones with
    cache off, so each really runs on a replica."""

    def __init__(self, front, clients=2):
        self.front, self.answers, self.errors = front, [], []
        self.times = []
        self.stop_flag = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(i,))
                        for i in range(clients)]

    def client(self, i):
        n = 0
        while not self.stop_flag.is_set():
            n += 1
            body = {"cells": [{"source": "print(%d * %d)" % (i, n)}],
                    "cache": False}
            try:
                r = self.front.render(body, timeout=300)
                self.answers.append(r.status)
                self.times.append(time.time())
                if r.status != 200:
                    self.errors.append(repr(r))
            except OSError as e:
                self.errors.append("client %d: %r" % (i, e))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        for t in self.threads:
            t.join()

    def wait_for(self, n, what):
        """Waits for n answers more than now, within RESUME_S."""
        want = len(self.answers) + n
        wait_until(what, lambda: len(self.answers) >= want, timeout=RESUME_S)

    def longest_gap(self, since):
        times = [since] + [t for t in self.times if t > since]
        return max(b - a for a, b in zip(times, times[1:])) if len(times) > 1 else None


def claims():
    """The single-flight claims held in the cache now."""
    return sh("redis-cli", "-p", "6390", "--no-auth-warning", "-a", REDIS["password"],
              "--scan", "--pattern", "nbcanvas:v1:claim:*").split()


def replica_logs(pattern):
    """Lines of the replicas' logs that hold pattern: what a failed check
    prints to say why."""
    r = subprocess.run(["docker", "service", "logs", "--raw", "%s_api" % STACK],
                       capture_output=True, text=True, timeout=60)
    # the replicas' stderr comes out on stderr
    lines = (r.stdout + r.stderr).splitlines()
    return [line for line in lines if pattern in line][-20:]


def why_replicas_failed():
    """What a failed check prints beside its traceback: every replica task
    with its exit and error (a crash shows as its signal), and the last
    lines of the replicas' logs, where a crash or a fatal error says why."""
    tasks = sh("docker", "service", "ps", "--no-trunc", "--format",
               "{{.Name}} {{.CurrentState}} {{.Error}}", "%s_api" % STACK,
               check=False)
    r = subprocess.run(["docker", "service", "logs", "--raw", "--tail", "40",
                        "%s_api" % STACK], capture_output=True, text=True,
                       timeout=60)
    return "replica tasks:\n%s\nreplica logs (last lines):\n%s" % (
        tasks, r.stdout[-6000:] + r.stderr[-6000:])


def test_no_replica_crashed():
    """Every replica that ended in the run was stopped or killed by a
    check (SIGKILL, 137): none crashed or gave up on its own."""
    tasks = sh("docker", "service", "ps", "--no-trunc", "--format",
               "{{.Name}} {{.Error}}", "%s_api" % STACK)
    codes = [int(c) for c in re.findall(r"non-zero exit \((\d+)\)", tasks)]
    assert all(c == 137 for c in codes), tasks


def test_a_render_through_the_front(front, api):
    r = front.render({"cells": [{"source": "print(6 * 7)"}]})
    assert r.status == 200, r
    assert b"42" in r.body, r
    assert r.header("content-type").startswith("text/html"), r.headers
    harness.check_error(front.render({"cells": "nope"}), 400, "invalid_request")
    r = front.request("POST", "/v1/render", {"cells": []},
                      headers={"Authorization": "Bearer wrong"})
    harness.check_error(r, 401, "unauthenticated")


def test_replica_two_answers_from_the_cache_what_replica_one_rendered(front, api):
    body, tag = unique_cells()
    shared = [metric(a, "nbcanvas_cache_shared") for a in api]
    assert shared == [1, 1], shared
    first = api[0].render(body)
    assert first.status == 200 and tag.encode() in first.body, first
    assert first.header("x-nbcanvas-cache") == "miss", first.headers
    hits = metric(api[1], "nbcanvas_cache_hits_total")
    second = api[1].render(body)
    assert second.status == 200, second
    assert second.header("x-nbcanvas-cache") == "hit", second.headers
    assert second.body == first.body
    assert metric(api[1], "nbcanvas_cache_hits_total") == hits + 1


def test_the_same_request_sent_to_both_at_once_runs_once(front, api):
    body, tag = unique_cells(sleep_s=5)
    misses = sum(metric(a, "nbcanvas_cache_misses_total") for a in api)
    errors = [metric(a, "nbcanvas_cache_errors_total") for a in api]
    results = [None, None]

    def send(i):
        results[i] = api[i].render(body)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
    held = set(claims())
    threads[0].start()
    # replica 1 has claimed the render (seen in Redis, not guessed from a
    # pause), and the same request goes to replica 2 while it runs
    wait_until("replica 1's claim", lambda: set(claims()) - held, timeout=60)
    threads[1].start()
    for t in threads:
        t.join()
    assert all(r.status == 200 and tag.encode() in r.body for r in results), results
    kinds = [r.header("x-nbcanvas-cache") for r in results]
    why = ([metric(a, "nbcanvas_cache_errors_total") for a in api], errors,
           replica_logs("redis cache"))
    assert kinds == ["miss", "hit"], (kinds, why)
    assert sum(metric(a, "nbcanvas_cache_misses_total") for a in api) == misses + 1, why


def test_a_session_stays_with_its_replica_through_the_front(front, api):
    r = front.post("/v1/sessions", {})
    assert r.status == 201, r
    sid = r.json()["id"]
    try:
        assert front.post("/v1/sessions/%s/execute" % sid,
                          {"code": "n = 0"}).status == 200
        for i in range(1, 7):  # round robin would send half elsewhere
            r = front.post("/v1/sessions/%s/execute" % sid,
                           {"code": "n += 1\nprint(n)"})
            assert r.status == 200, r
            assert str(i) in json.dumps(r.json()), r
    finally:
        assert front.request("DELETE", "/v1/sessions/" + sid).status == 204


def test_a_gateway_kernel_stays_with_its_replica_through_the_front(front, api):
    r = front.post("/api/kernels", {"name": "python3"})
    assert r.status == 201, r
    kid = r.json()["id"]
    try:
        # it lives in exactly one replica, and the front finds it there
        assert sum(a.get("/api/kernels/" + kid).status == 200 for a in api) == 1
        for _ in range(8):  # round robin would send half elsewhere
            r = front.get("/api/kernels/" + kid)
            assert r.status == 200, r
            assert r.json()["id"] == kid, r
    finally:
        assert front.request("DELETE", "/api/kernels/" + kid).status == 204


def test_a_streamed_renders_result_is_found_through_the_front(front, api):
    body, tag = unique_cells()
    status, headers, events = front.stream("/v1/render", body)
    assert status == 200, (status, events)
    result = [data for name, data, _ in events if name == "result"]
    assert result and result[0]["result_url"], events
    for _ in range(6):  # kept by the replica that rendered it
        r = front.get(result[0]["result_url"] + "?format=html")
        assert r.status == 200 and tag.encode() in r.body, r


def test_an_mcp_session_stays_with_its_replica_through_the_front(front, api):
    def rpc(msg, session=None):
        headers = {"Accept": "application/json, text/event-stream"}
        if session:
            headers["Mcp-Session-Id"] = session
        return front.request("POST", "/mcp", msg, headers=headers)

    r = rpc({"jsonrpc": "2.0", "id": 0, "method": "initialize",
             "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                        "clientInfo": {"name": "t", "version": "1"}}})
    assert r.status == 200, r
    sid = r.header("mcp-session-id")
    for i in range(1, 7):  # leastconn alone would send some elsewhere: 404
        r = rpc({"jsonrpc": "2.0", "id": i, "method": "ping"}, sid)
        assert r.status == 200 and r.json()["result"] == {}, r
    tag = uuid.uuid4().hex
    r = rpc({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
             "params": {"name": "render_notebook", "arguments": {"cells": ["print('%s')" % tag]}}},
            sid)
    links = [c["uri"] for c in r.json()["result"]["content"] if c["type"] == "resource_link"]
    for _ in range(4):  # the page is kept by the replica that rendered it
        page = front.get("/v1/results/" + links[-1].split("/v1/results/")[1])
        assert page.status == 200 and tag.encode() in page.body, page
    assert front.request("DELETE", "/mcp", headers={"Mcp-Session-Id": sid}).status == 204


# Tenants with limits of their own (main() makes their keys): their
# limits are the stack's, whichever replica a request reaches.
TENANTS = {"jobs1": {"max_jobs": 1},
           "rate10": {"requests_per_minute": 10},
           "sessions2": {"max_sessions": 2}}
KEYS = {}


def as_tenant(ep, name):
    return Endpoint(ep.port, KEYS[name])


def spans_of(body):
    """The (start, end) a render's cell printed: when it really ran."""
    return [(float(a), float(b)) for a, b in
            re.findall(rb"SPAN ([0-9.]+) ([0-9.]+)", body)]


def listed(ep, path, key=None):
    r = ep.get(path) if key is None else Endpoint(ep.port, key).get(path)
    assert r.status == 200, r
    return [m["id"] for m in r.json()]


def test_a_listing_on_either_replica_names_what_both_hold(front, api):
    """GET /api/kernels and /v1/sessions are the tenant's on every replica,
    whichever the front asks; what ends leaves them at once."""
    kernels = [a.post("/api/kernels", {"name": "python3"}) for a in api]
    assert all(r.status == 201 for r in kernels), kernels
    kernels = [r.json()["id"] for r in kernels]
    r = api[1].post("/v1/sessions", {})
    assert r.status == 201, r
    sid = r.json()["id"]
    try:
        for ep in api + [front] * 4:
            listing = listed(ep, "/api/kernels")
            assert set(kernels) <= set(listing), (ep.port, kernels, listing)
            assert len(listing) == len(set(listing)), listing
            # a gateway kernel is a session too
            assert set(kernels + [sid]) <= set(listed(ep, "/v1/sessions"))
            # another tenant's listing holds none of them
            mine = set(listed(ep, "/v1/sessions", KEYS["sessions2"]))
            assert not mine & set(kernels + [sid]), mine
        # their models are the holder's: the id, the kernel's name, state
        model = [m for m in api[0].get("/api/kernels").json()
                 if m["id"] == kernels[1]][0]
        assert model["name"] == "python3" and model["execution_state"], model
        assert api[1].request("DELETE", "/api/kernels/" + kernels[1]).status == 204
        assert api[1].request("DELETE", "/v1/sessions/" + sid).status == 204
        for ep in api:
            assert kernels[1] not in listed(ep, "/api/kernels")
            assert sid not in listed(ep, "/v1/sessions")
    finally:
        for kid in kernels:
            front.request("DELETE", "/api/kernels/" + kid)
        front.request("DELETE", "/v1/sessions/" + sid)


def test_jupyter_server_keeps_kernels_on_both_replicas(front, api):
    """Debian's jupyter_server with --gateway-url at the front: it forgets
    any kernel a gateway's listing leaves out ("culled"), and the front
    sends each listing to either replica. Kernels started on both stay
    its kernels, listing after listing."""
    home = tempfile.mkdtemp(prefix="nbcanvas-js-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "js-" + uuid.uuid4().hex
    env = dict(os.environ, HOME=home, JUPYTER_RUNTIME_DIR=home,
               JUPYTER_GATEWAY_AUTH_TOKEN=front.key)
    proc = subprocess.Popen(
        ["/usr/bin/python3", "-m", "jupyter_server", "--no-browser",
         "--allow-root", "--ip=127.0.0.1", "--port=%d" % port,
         "--ServerApp.token=" + token, "--ServerApp.root_dir=" + home,
         "--gateway-url=http://127.0.0.1:%d" % front.port],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    js = Endpoint(port, None)
    headers = {"Authorization": "token " + token}
    started = []
    try:
        def up():
            try:
                return js.get("/api/kernelspecs", headers=headers).status == 200
            except OSError:
                return False
        wait_until("jupyter_server answers", up, timeout=60)
        # leastconn spreads them; started until both replicas hold some
        while len(started) < 8 and len({k[:2] for k in started}) < 2:
            r = js.request("POST", "/api/kernels", {"name": "python3"},
                           headers=headers)
            assert r.status == 201, r
            started.append(r.json()["id"])
        assert {k[:2] for k in started} == {"r1", "r2"}, started
        for _ in range(6):
            r = js.get("/api/kernels", headers=headers)
            assert r.status == 200, r
            assert set(started) <= {m["id"] for m in r.json()}, r.json()
        for kid in started:
            assert js.get("/api/kernels/" + kid, headers=headers).status == 200
    finally:
        for kid in started:
            front.request("DELETE", "/api/kernels/" + kid)
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(home, ignore_errors=True)


def test_max_jobs_1_never_runs_two_renders_at_once_across_replicas(front, api):
    # three to each replica at once: per replica, one would run on each
    eps = [as_tenant(a, "jobs1") for a in api]
    code = ("import time\ns = time.time()\ntime.sleep(3)\n"
            "print('SPAN %r %r' % (s, time.time()))")
    answers = []

    def send(ep, i):
        answers.append(ep.render({"cells": [{"source": code + "  # %d %s" % (
            i, uuid.uuid4().hex)}], "cache": False}))

    threads = [threading.Thread(target=send, args=(eps[i % 2], i)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ran = [r for r in answers if r.status == 200]
    for r in answers:
        if r.status != 200:
            err = harness.check_error(r, 429, "busy")
            assert "every replica together" in err["message"] or "its 1 jobs" in err["message"], err
            assert r.header("retry-after"), r.headers
    spans = sorted(sp for r in ran for sp in spans_of(r.body))
    assert len(spans) == len(ran) >= 1, (len(spans), [r.status for r in answers])
    overlaps = [(a, b) for a, b in zip(spans, spans[1:]) if b[0] < a[1]]
    assert not overlaps, overlaps
    assert len(ran) < 6, "every render ran: nothing was limited"


def test_requests_per_minute_10_holds_across_both_replicas(front, api):
    eps = [as_tenant(a, "rate10") for a in api]
    t0 = time.time()
    answers = [eps[i % 2].get("/v1/sessions") for i in range(16)]
    elapsed = time.time() - t0
    ok = [r for r in answers if r.status == 200]
    limited = [r for r in answers if r.status != 200]
    # a full bucket of 10, plus one each 6 s that passed; alone each
    # replica would have let 10 through, 16 in all
    most = 10 + int(elapsed / 6) + 1
    assert 10 <= len(ok) <= most, (len(ok), elapsed)
    assert limited, "no request was refused"
    for r in limited:
        harness.check_error(r, 429, "rate_limited")
        assert 1 <= int(r.header("retry-after")) <= 7, r.headers


def test_max_sessions_holds_across_both_replicas(front, api):
    eps = [as_tenant(a, "sessions2") for a in api]
    made = []
    try:
        for ep in eps:
            r = ep.post("/v1/sessions", {})
            assert r.status == 201, r
            made.append((ep, r.json()["id"]))
        for ep in eps:  # each replica holds one: per replica, both would say yes
            err = harness.check_error(ep.post("/v1/sessions", {}), 429, "busy")
            assert "every replica together" in err["message"], err
        ep, sid = made.pop(0)
        assert ep.request("DELETE", "/v1/sessions/" + sid).status == 204
        r = eps[1].post("/v1/sessions", {})  # the place is free again
        assert r.status == 201, r
        made.append((eps[1], r.json()["id"]))
    finally:
        for ep, sid in made:
            ep.request("DELETE", "/v1/sessions/" + sid)


def mcp_rpc(front, msg, session=None):
    headers = {"Accept": "application/json, text/event-stream"}
    if session:
        headers["Mcp-Session-Id"] = session
    return front.request("POST", "/mcp", msg, headers=headers)


def mcp_open(front):
    r = mcp_rpc(front, {"jsonrpc": "2.0", "id": 0, "method": "initialize",
                        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                                   "clientInfo": {"name": "t", "version": "1"}}})
    assert r.status == 200, r
    return r.header("mcp-session-id")


def websocket_status(ep, path):
    """The status line's code of a WebSocket upgrade of path at ep (the
    connection is closed after it): 101 when the kernel's replica took it."""
    with socket.create_connection(("127.0.0.1", ep.port), timeout=30) as sock:
        sock.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                      "Authorization: token %s\r\n\r\n"
                      % (path, ep.port, base64.b64encode(os.urandom(16)).decode(),
                         ep.key)).encode())
        line = sock.makefile("rb").readline().decode()
    return int(line.split()[1])


def front_ready():
    try:
        return Endpoint(8180, None).get("/healthz", timeout=3).status == 200
    except OSError:
        return False


SECOND_FRONT = 8190


def second_front():
    """Debian's HAProxy on the host with the stack's own haproxy.cfg, bound
    to SECOND_FRONT: a front that shares nothing with the first."""
    with open(os.path.join(harness.REPO, "deploy", "haproxy.cfg")) as f:
        cfg = f.read().replace("bind 127.0.0.1:8180", "bind 127.0.0.1:%d" % SECOND_FRONT)
    assert "127.0.0.1:%d" % SECOND_FRONT in cfg
    folder = tempfile.mkdtemp(prefix="nbcanvas-front-")
    path = os.path.join(folder, "haproxy.cfg")
    with open(path, "w") as f:
        f.write(cfg)
    proc = subprocess.Popen(["haproxy", "-db", "-f", path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc.folder = folder

    def up():
        try:
            return Endpoint(SECOND_FRONT, None).get("/healthz", timeout=3).status == 200
        except OSError:
            return False
    wait_until("the second front answers", up, timeout=60)
    return proc


def test_a_replaced_front_still_finds_every_replica_bound_thing(front, api):
    """Nothing the front knew survives its replacement: the ids carry it."""
    sessions, kernels = [], []
    for _ in range(2):  # leastconn spreads them: both replicas, likely
        r = front.post("/v1/sessions", {})
        assert r.status == 201, r
        sessions.append(r.json()["id"])
        assert front.post("/v1/sessions/%s/execute" % sessions[-1],
                          {"code": "n = 41"}).status == 200
        r = front.post("/api/kernels", {"name": "python3"})
        assert r.status == 201, r
        kernels.append(r.json()["id"])
    body, tag = unique_cells()
    status, _, events = front.stream("/v1/render", body)
    result = [data for name, data, _ in events if name == "result"]
    assert status == 200 and result, events
    mcp = mcp_open(front)
    held = sessions + kernels + [result[0]["result_url"].split("/")[-1], mcp]
    assert all(re.match(r"^r[12]_[0-9a-f]{6}_", i) for i in held), held
    second = second_front()
    try:
        sh("docker", "service", "update", "--force", "--detach=false", "-q",
           "%s_front" % STACK)
        wait_until("the new front answers", front_ready, timeout=RESUME_S)
        # the replaced front, and a second one that never saw them made
        for fr in [front] * 3 + [Endpoint(SECOND_FRONT, front.key)] * 3:
            for sid in sessions:
                r = fr.post("/v1/sessions/%s/execute" % sid,
                            {"code": "print(n + 1)"})
                assert r.status == 200 and "42" in json.dumps(r.json()), r
            for kid in kernels:
                r = fr.get("/api/kernels/" + kid)
                assert r.status == 200 and r.json()["id"] == kid, r
                # its WebSocket too (the other replica would answer 404)
                status = websocket_status(fr, "/api/kernels/%s/channels" % kid)
                assert status == 101, status
            r = fr.get(result[0]["result_url"] + "?format=html")
            assert r.status == 200 and tag.encode() in r.body, r
            r = mcp_rpc(fr, {"jsonrpc": "2.0", "id": 1, "method": "ping"}, mcp)
            assert r.status == 200 and r.json()["result"] == {}, r
    finally:
        for sid in sessions:
            front.request("DELETE", "/v1/sessions/" + sid)
        for kid in kernels:
            front.request("DELETE", "/api/kernels/" + kid)
        front.request("DELETE", "/mcp", headers={"Mcp-Session-Id": mcp})
        second.terminate()
        second.wait(timeout=30)
        shutil.rmtree(second.folder)


def test_an_id_whose_replica_went_away_is_a_clean_404(front, api):
    r = front.post("/v1/sessions", {})
    assert r.status == 201, r
    sid = r.json()["id"]
    slot = int(sid[1])
    tasks = sh("docker", "ps", "--filter",
               "label=com.docker.swarm.service.name=%s_api" % STACK,
               "--format", "{{.ID}} {{.Label \"com.docker.swarm.task.name\"}}").split("\n")
    holder = [t.split()[0] for t in tasks
              if t.split() and t.split()[1].startswith("%s_api.%d." % (STACK, slot))]
    assert len(holder) == 1, tasks
    sh("docker", "kill", holder[0])
    # while it is down the front sends the id elsewhere; once Swarm has
    # restarted it, it is a new run of that replica: 404 either way, and
    # the message says the holder went away
    for phase in ("down", "restarted"):
        if phase == "restarted":
            wait_until("Swarm restores 2/2", lambda: replicas_running() == "2/2"
                       and all(ready(a) for a in api), timeout=RESUME_S)
        r = front.post("/v1/sessions/%s/execute" % sid, {"code": "1"})
        err = harness.check_error(r, 404, "not_found")
        assert ("replica r%d made it" % slot in err["message"] or
                "restarted" in err["message"]), err
    err = harness.check_error(api[slot - 1].get("/v1/sessions/%s/notebook" % sid),
                              404, "not_found")
    assert "restarted" in err["message"], err


def test_killing_a_replica_under_load_loses_no_request(front, api):
    victim = sh("docker", "ps", "-q", "--filter",
                "label=com.docker.swarm.service.name=%s_api" % STACK).split()[0]
    with Load(front) as load:
        load.wait_for(2, "renders under way before the kill")
        sh("docker", "kill", victim)
        killed = time.time()
        # no request is lost (below), and renders go on through the one
        # replica left: within RESUME_S, however slow the machine
        load.wait_for(2, "renders after the kill")
        wait_until("Swarm restores 2/2", lambda: replicas_running() == "2/2"
                   and all(ready(a) for a in api), timeout=RESUME_S)
        load.wait_for(2, "renders with both replicas again")
    print("     longest pause after the kill: %.1f s, %d answers"
          % (load.longest_gap(killed), len(load.answers)))
    assert not load.errors, load.errors[:5]


def test_a_rolling_restart_under_load_loses_no_request(front, api):
    with Load(front) as load:
        load.wait_for(2, "renders under way before the update")
        started = time.time()
        sh("docker", "service", "update", "--force", "--detach=false", "-q",
           "%s_api" % STACK)
        wait_until("both replicas ready", lambda: all(ready(a) for a in api),
                   timeout=RESUME_S)
        load.wait_for(2, "renders from the new replicas")
    print("     longest pause during the update: %.1f s, %d answers"
          % (load.longest_gap(started), len(load.answers)))
    assert not load.errors, load.errors[:5]


def test_renders_answer_while_redis_is_down_and_hits_resume(front, api):
    errors = sum(metric(a, "nbcanvas_cache_errors_total") for a in api)
    fallbacks = sum(metric(a, "nbcanvas_limits_fallbacks_total") for a in api)
    assert [metric(a, "nbcanvas_limits_shared") for a in api] == [1, 1]
    assert [metric(a, "nbcanvas_cluster_replicas") for a in api] == [2, 2]
    sh("docker", "service", "scale", "--detach=false", "%s_cache=0" % STACK)
    try:
        # limits fall back: each replica takes its half of the tenant's
        # rate (5 of 10 a minute), counts it, and says so in its log
        eps = [as_tenant(a, "rate10") for a in api]
        t0 = time.time()
        answers = [eps[i % 2].get("/v1/sessions") for i in range(16)]
        ok = sum(r.status == 200 for r in answers)
        assert 2 <= ok <= 10 + int((time.time() - t0) / 6) + 2, ok
        assert any(r.status == 429 for r in answers)
        wait_until("both replicas say the limits are their own",
                   lambda: [metric(a, "nbcanvas_limits_shared") for a in api] == [0, 0],
                   timeout=60)
        assert sum(metric(a, "nbcanvas_limits_fallbacks_total") for a in api) > fallbacks
        assert replica_logs("tenant limits: Redis does not answer")
        for _ in range(3):
            body, tag = unique_cells()
            t0 = time.time()
            r = front.render(body)
            assert r.status == 200 and tag.encode() in r.body, r
            # a command to a Redis that is gone fails in
            # cache_redis_timeout_ms; waiting on it would take minutes
            assert time.time() - t0 < 60, time.time() - t0
        # the same request twice: no cache to answer the second
        r = front.render(body)
        assert r.header("x-nbcanvas-cache") == "miss", r.headers
        assert sum(metric(a, "nbcanvas_cache_errors_total") for a in api) > errors
    finally:
        sh("docker", "service", "scale", "--detach=false", "%s_cache=1" % STACK)
    body, tag = unique_cells()

    def hit_again():
        return (front.render(body).status == 200 and
                front.render(body).header("x-nbcanvas-cache") == "hit")
    wait_until("cache hits resume", hit_again, timeout=30)
    # and the limits are the stack's again
    wait_until("limits shared again",
               lambda: [metric(a, "nbcanvas_limits_shared") for a in api] == [1, 1],
               timeout=60)
    test_max_sessions_holds_across_both_replicas(front, api)


def test_down_leaves_no_service_sandbox_or_swarm(front, api, made_swarm):
    sh("bash", CLUSTER, "down")
    state = sh("docker", "info", "--format", "{{.Swarm.LocalNodeState}}").strip()
    if state == "active":  # a swarm of someone else's: only the stack goes
        stacks = sh("docker", "stack", "ls", "--format", "{{.Name}}").split()
        assert STACK not in stacks, stacks
    left = sh("docker", "ps", "-aq", "--filter",
              "label=com.docker.stack.namespace=%s" % STACK).split()
    assert not left, left
    sandboxes = [c for c in harness.containers()
                 if c["Labels"].get("org.nbcanvas.owner", "").startswith(STACK + "_api.")]
    assert not sandboxes, [c["Id"][:12] for c in sandboxes]
    if made_swarm:
        assert state == "inactive", state
        nets = sh("docker", "network", "ls", "--format", "{{.Name}}").split()
        assert "docker_gwbridge" not in nets, nets


TESTS = [
    test_a_render_through_the_front,
    test_replica_two_answers_from_the_cache_what_replica_one_rendered,
    test_the_same_request_sent_to_both_at_once_runs_once,
    test_a_session_stays_with_its_replica_through_the_front,
    test_a_gateway_kernel_stays_with_its_replica_through_the_front,
    test_a_streamed_renders_result_is_found_through_the_front,
    test_an_mcp_session_stays_with_its_replica_through_the_front,
    test_a_listing_on_either_replica_names_what_both_hold,
    test_jupyter_server_keeps_kernels_on_both_replicas,
    test_max_jobs_1_never_runs_two_renders_at_once_across_replicas,
    test_requests_per_minute_10_holds_across_both_replicas,
    test_max_sessions_holds_across_both_replicas,
    test_a_replaced_front_still_finds_every_replica_bound_thing,
    test_an_id_whose_replica_went_away_is_a_clean_404,
    test_killing_a_replica_under_load_loses_no_request,
    test_a_rolling_restart_under_load_loses_no_request,
    test_renders_answer_while_redis_is_down_and_hits_resume,
]


def main():
    binary = os.path.abspath(sys.argv[1])
    made_swarm = sh("docker", "info", "--format",
                    "{{.Swarm.LocalNodeState}}").strip() != "active"
    folder = tempfile.mkdtemp(prefix="nbcanvas-cluster-")
    made = sh(binary, "key", "new", "cluster-test")
    key = made.split("key: ")[1].split()[0]
    entry = json.loads(made.split("entry: ")[1].strip())
    entry["metrics"] = True
    entries = [entry]
    for name, limits in TENANTS.items():
        made = sh(binary, "key", "new", name)
        KEYS[name] = made.split("key: ")[1].split()[0]
        entries.append(dict(json.loads(made.split("entry: ")[1].strip()), **limits))
    keys = os.path.join(folder, "keys.json")
    with open(keys, "w") as f:
        json.dump(entries, f)
    env = dict(os.environ, NBCANVAS_BINARY=binary, CLUSTER_KEYS_FILE=keys,
               CLUSTER_SECRETS_DIR=os.path.join(folder, "secrets"))
    passed = failed = 0
    t0 = time.time()
    up = subprocess.run(["bash", CLUSTER, "up"], env=env, capture_output=True,
                        text=True, timeout=1800)
    print("cluster.sh up: exit %d in %.0f s" % (up.returncode, time.time() - t0))
    auth = os.path.join(folder, "secrets", "redis_auth.conf")
    if os.path.exists(auth):
        with open(auth) as f:
            REDIS["password"] = f.read().split()[1]
    front = Endpoint(8180, key)
    api = [Endpoint(8181, key), Endpoint(8182, key)]
    tests = TESTS if up.returncode == 0 else []
    if up.returncode != 0:
        failed += 1
        print("FAIL cluster.sh up\n%s%s" % (up.stdout[-3000:], up.stderr[-3000:]))
    only = os.environ.get("NBCANVAS_TEST")
    for fn in tests:
        if only and only not in fn.__name__:
            continue
        t0 = time.time()
        try:
            fn(front, api)
            passed += 1
            print("ok   %s (%.1fs)" % (fn.__name__, time.time() - t0), flush=True)
        except Exception:
            failed += 1
            print("FAIL %s (%.1fs)" % (fn.__name__, time.time() - t0), flush=True)
            traceback.print_exc()
            print(why_replicas_failed(), flush=True)
    if tests and not only:
        try:
            test_no_replica_crashed()
            passed += 1
            print("ok   test_no_replica_crashed", flush=True)
        except Exception:
            failed += 1
            print("FAIL test_no_replica_crashed", flush=True)
            traceback.print_exc()
            print(why_replicas_failed(), flush=True)
    t0 = time.time()
    try:  # always, so a failed run leaves nothing either
        test_down_leaves_no_service_sandbox_or_swarm(front, api, made_swarm)
        passed += 1
        print("ok   cluster.sh down (%.1fs)" % (time.time() - t0))
    except Exception:
        failed += 1
        print("FAIL cluster.sh down")
        traceback.print_exc()
    shutil.rmtree(folder)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
