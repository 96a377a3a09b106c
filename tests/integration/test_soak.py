"""Soak: a few hundred jobs, good and abusive mixed, several at once; then
no container is left and the service's descriptors and memory are back
near where they started."""
import os
import threading
import time

from harness import containers, main, warm_pool_size

JOBS = int(os.environ.get("NBCANVAS_SOAK_JOBS", "240"))
CLIENTS = 4

MIX = [
    ("run", {"language": "python3", "code": "print(sum(range(100)))"}, 200),
    ("run", {"language": "c", "code": "#include <stdio.h>\nint main(void){puts(\"c\");}"}, 200),
    ("run", {"language": "javascript", "code": "console.log(1)"}, 200),
    ("run", {"language": "python3", "code": "while True: pass", "timeout_s": 1}, 200),
    ("run", {"language": "python3", "code": "import sys\nwhile True: sys.stdout.write('x' * 65536)"}, 200),
    ("run", {"language": "python3", "code": "x = []\nwhile True: x.append(bytearray(50 << 20))"}, 200),
    ("run", {"language": "bash", "code": ":(){ :|:& };:", "timeout_s": 2}, 200),
    ("render", {"cells": ["print('ok')"], "cache": False}, 200),
    ("render", {"cells": ["import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()"]}, 200),
    ("render", {"cells": ["1/0"], "cache": False}, 422),
    ("render", {"cells": "not a list"}, 400),
    ("run", {"language": "nope", "code": "1"}, 400),
]


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def fd_targets(pid):
    """What each descriptor is: a failed check prints the new ones."""
    folder = "/proc/%d/fd" % pid
    out = []
    for name in os.listdir(folder):
        try:
            out.append(os.readlink(os.path.join(folder, name)))
        except OSError:
            pass
    return out


def kinds(names):
    """"socket 4, pipe 2, ...": what the descriptors are."""
    counts = {}
    for name in names:
        kind = name.split(":")[0] if ":" in name else "file"
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join("%s %d" % kv for kv in sorted(counts.items()))


def gauges(svc):
    text = svc.get("/metrics").body.decode()
    return dict(l.rsplit(" ", 1) for l in text.splitlines()
                if l and not l.startswith("#"))


def settled(svc):
    """Nothing under way that holds a descriptor for a while: every warm
    sandbox and exporter started and idle, no job running. (A refill
    holds its engine connections; an exporter holds its attach.)"""
    g = gauges(svc)
    pools = [k for k in g if k.startswith("nbcanvas_kernel_pool_size{")]
    return (all(g[k] == g[k.replace("_size{", "_idle{")] for k in pools) and
            g.get("nbcanvas_pool_starting", "0") == "0" and
            g.get("nbcanvas_exporters") == g.get("nbcanvas_exporters_idle"))


def wait_settled(svc, timeout=120):
    """Then the fewest descriptors seen over a few seconds, with their
    targets: a leak stays, work finishing (a removal by the janitor, a
    health probe of the engine) lets its connection go."""
    pid = svc.proc.pid
    deadline = time.time() + timeout
    while not settled(svc):
        assert time.time() < deadline, gauges(svc)
        time.sleep(0.5)
    time.sleep(2)  # the serve loop trims the heap every reaper tick
    fewest = None
    for _ in range(10):
        names = fd_targets(pid)
        if fewest is None or len(names) < len(fewest):
            fewest = names
        time.sleep(0.5)
    return fewest


def test_soak(svc):
    pid = svc.proc.pid
    for kind, body, _ in MIX:  # warm up every path once
        svc.post("/v1/" + kind, body)
    names0 = wait_settled(svc)
    fd0, rss0 = len(names0), rss_kb(pid)
    counter = iter(range(JOBS))
    lock = threading.Lock()
    bad = []
    done = [0]

    def client():
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            kind, body, want = MIX[i % len(MIX)]
            r = svc.post("/v1/" + kind, body)
            with lock:
                done[0] += 1
                if r.status not in (want, 429):
                    bad.append((kind, body, r))

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert done[0] == JOBS
    assert not bad, bad[:3]
    deadline = time.time() + 60
    # the pool's depth now: the load may have deepened it (pool.c)
    size = warm_pool_size(svc)
    while time.time() < deadline and len(containers(svc.listen)) > size:
        time.sleep(0.5)
    assert len(containers(svc.listen)) <= size
    names1 = wait_settled(svc)
    fd1, rss1 = len(names1), rss_kb(pid)
    print("fds %d -> %d (%s), rss %d kB -> %d kB"
          % (fd0, fd1, kinds(names1), rss0, rss1))
    added = list(names1)
    for name in names0:
        if name in added:
            added.remove(name)
    assert fd1 <= fd0 + 4, (fd0, fd1, added, gauges(svc))
    assert rss1 <= rss0 + 24 * 1024, (rss0, rss1)
    assert svc.get("/healthz").status == 200


if __name__ == "__main__":
    main(globals(), config={"pool_size": 2, "max_queue": 64, "reaper_interval_s": 1})
