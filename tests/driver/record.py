#!/usr/bin/env python3
"""Records the real driver's messages, for tests/unit/test_driver.c.

For each case of cases.json, the service's own code (driver_make_job) writes
the container command, environment and job stream; this script runs the
notebook image with them in a locked-down container (no network, read-only
root, the sandbox user), sends the job on stdin, and keeps what the driver
wrote: <case>.stdout (the protocol channel: ready line, done line, results
tar), <case>.stderr (progress lines and the kernel's chatter) and
<case>.nonce (the job's nonce, which the done line must carry).

    tests/driver/record.py DRIVER_MAKE_JOB OUT_DIR [--image IMAGE]

Refresh the committed recordings after changing either side of the
protocol:  tests/driver/record.py build/tests/driver_make_job tests/data/driver
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DONE = re.compile(rb"nbcanvas:done [0-9a-f-]{36} (\d+)\n")
CASE_TIMEOUT_S = 180


def run_case(make_job, image, name, out_dir, tmp):
    prefix = os.path.join(tmp, name)
    subprocess.run([make_job, os.path.join(HERE, "cases.json"), name, prefix],
                   check=True)
    with open(prefix + ".json") as f:
        spec = json.load(f)
    with open(prefix + ".job", "rb") as f:
        job = f.read()
    container = "nbcanvas-record-%d-%s" % (os.getpid(), name.replace("_", "-"))
    cmd = ["docker", "run", "-i", "--rm", "--name", container,
           "--network", "none", "--read-only", "--user", "1000:1000",
           "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
           "--init", "--memory", "1g", "--pids-limit", "256",
           "--tmpfs", "/tmp:rw,nosuid,nodev,size=256m",
           "--tmpfs", "/home/sandbox:rw,nosuid,nodev,exec,size=128m,"
                      "uid=1000,gid=1000,mode=0700",
           "--workdir", "/home/sandbox"]
    for e in spec["env"]:
        cmd += ["-e", e]
    cmd += [image] + spec["cmd"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    errout = []
    reader = threading.Thread(target=lambda: errout.append(proc.stderr.read()))
    reader.start()
    out = b""
    try:
        proc.stdin.write(job)
        proc.stdin.flush()
        deadline = time.monotonic() + CASE_TIMEOUT_S
        while time.monotonic() < deadline:
            chunk = os.read(proc.stdout.fileno(), 1 << 16)
            if not chunk:
                break
            out += chunk
            m = DONE.search(out)
            if m and len(out) >= m.end() + int(m.group(1)):
                break
    finally:
        subprocess.run(["docker", "rm", "-f", container],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc.wait(timeout=60)
        reader.join(timeout=60)
    if not DONE.search(out):
        sys.exit("record: case %s: no done line; stderr:\n%s"
                 % (name, b"".join(errout).decode(errors="replace")[-2000:]))
    with open(os.path.join(out_dir, name + ".stdout"), "wb") as f:
        f.write(out)
    with open(os.path.join(out_dir, name + ".stderr"), "wb") as f:
        f.write(b"".join(errout))
    with open(os.path.join(out_dir, name + ".nonce"), "w") as f:
        f.write(spec["nonce"])
    print("record: %s: %d bytes out" % (name, len(out)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("make_job")
    ap.add_argument("out_dir")
    ap.add_argument("--image", default="nbcanvas/python:latest")
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(HERE, "cases.json")) as f:
        names = [c["name"] for c in json.load(f)]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            run_case(args.make_job, args.image, name, args.out_dir, tmp)


if __name__ == "__main__":
    main()
