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


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def test_soak(svc):
    pid = svc.proc.pid
    for kind, body, _ in MIX:  # warm up every path once
        svc.post("/v1/" + kind, body)
    time.sleep(3)
    fd0, rss0 = fds(pid), rss_kb(pid)
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
    time.sleep(2)  # the serve loop trims the heap every reaper tick
    fd1, rss1 = fds(pid), rss_kb(pid)
    print("fds %d -> %d, rss %d kB -> %d kB" % (fd0, fd1, rss0, rss1))
    assert fd1 <= fd0 + 4, (fd0, fd1)
    assert rss1 <= rss0 + 24 * 1024, (rss0, rss1)
    assert svc.get("/healthz").status == 200


if __name__ == "__main__":
    main(globals(), config={"pool_size": 2, "max_queue": 64, "reaper_interval_s": 1})
