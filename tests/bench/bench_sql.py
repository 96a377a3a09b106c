"""What a %%sql cell costs beyond its query (issue 23), on a real
PostgreSQL (tests/integration/pg.py, the Chinook sample) and nbcanvas on
the same machine:

- the query's own time in psql (\\timing, one session, the median);
- POST /v1/sql of the same query (Table Schema JSON), client-side;
- in a render, the service's sql phase (Server-Timing) and the kernel's
  time to read the rows into a DataFrame (the magic run again in a cell
  and timed there): their sum less psql's time is what a %%sql cell costs
  beyond the query (renders themselves vary by the pool's refills, which
  have nothing to do with SQL);
- rows per second from the database to the kernel, from a 100 000-row
  query.

    python3 tests/bench/bench_sql.py build/nbcanvas [--runs 15] [--out docs/BENCHMARKS.md]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import pg  # noqa: E402
from bench import write_report  # noqa: E402
from harness import Service  # noqa: E402

QUERY = ("SELECT t.track_id, t.name, t.milliseconds, t.unit_price, g.name AS genre "
         "FROM track t JOIN genre g USING (genre_id) ORDER BY t.track_id LIMIT 1000")
BIG = "SELECT generate_series(1, 100000) AS i, 'row ' || generate_series(1, 100000) AS label"


def psql_ms(postgres, query, runs):
    script = "\\timing on\n" + "\n".join([query + ";"] * runs) + "\n"
    out = subprocess.run(["runuser", "-u", "nobody", "--",
                          os.path.join(postgres.bin, "psql"), "-X", "-q", "-h", postgres.dir,
                          "-p", str(postgres.port), "-U", "postgres", "-d", "chinook",
                          "-o", "/dev/null"],
                         input=script, capture_output=True, text=True, check=True).stdout
    times = [float(line.split()[1]) for line in out.splitlines() if line.startswith("Time:")]
    return statistics.median(times)


def timed(fn, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = fn()
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status == 200, r
    return statistics.median(times)


def sql_render(svc, query, runs):
    """The render's sql phase (the service's query, Server-Timing) and the
    kernel's time to read the same rows into a DataFrame (the magic run
    again in a second cell, timed there), medians in ms."""
    timer = ("import time\nt0 = time.perf_counter()\n"
             "get_ipython().run_cell_magic('sql', 'chinook -> again', %r)\n"
             "print((time.perf_counter() - t0) * 1000)" % query)
    body = {"cells": ["%%sql chinook -> df\n" + query, timer], "cache": False,
            "format": "json"}
    phase, kernel = [], []
    for _ in range(runs):
        r = svc.render(body)
        assert r.status == 200, r
        timing = dict(p.split(";")[0:2] for p in r.header("server-timing").split(", "))
        phase.append(float(timing["sql"].split("=")[1]))
        kernel.append(float(r.json()["cells"][1]["outputs"][0]["text"]))
    return statistics.median(phase), statistics.median(kernel)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    postgres = pg.Postgres().start()
    folder = tempfile.mkdtemp(prefix="nbcanvas-bench-sql-")
    password = os.path.join(folder, "password")
    with open(password, "w") as f:
        f.write(pg.READER_PASSWORD)
    svc = Service(args.binary, {"pool_size": 2, "datasources": [
        {"name": "chinook", "kind": "postgresql", "conninfo": postgres.conninfo(),
         "password_file": password, "max_rows": 100000}]}).start()
    try:
        base_ms = psql_ms(postgres, QUERY, args.runs)
        sql_ms = timed(lambda: svc.post("/v1/sql", {"datasource": "chinook", "query": QUERY,
                                                     "format": "json"}), args.runs)
        phase, kernel = sql_render(svc, QUERY, args.runs)
        big_base = psql_ms(postgres, BIG, 3)
        big_phase, big_kernel = sql_render(svc, BIG, 3)
        added = phase - base_ms + kernel
        lines = [
            "### Text2SQL (issue 23): what a %%sql cell costs beyond its query",
            "",
            "`python3 tests/bench/bench_sql.py build/nbcanvas --runs %d`: PostgreSQL 15 on "
            "loopback with the Chinook sample, a 1000-row query of 5 columns, medians (ms)."
            % args.runs,
            "",
            "| what | ms |",
            "|---|---|",
            "| the query in psql (`\\timing`, one session) | %.1f |" % base_ms,
            "| the render's `sql` phase (Server-Timing: the service runs the query, rows to "
            "JSON) | %.1f |" % phase,
            "| the kernel reads the rows into a DataFrame (the magic, timed in a cell) | %.1f |"
            % kernel,
            "| **a %%%%sql cell's cost over the query's own time** (the two above less psql's) "
            "| **%.1f** |" % added,
            "| POST /v1/sql of the same query, Table Schema JSON, from the client | %.1f |"
            % sql_ms,
            "",
            "Rows handed to the kernel: a 100 000-row query of two columns takes %.0f ms in "
            "psql, %.0f ms in the service's sql phase and %.0f ms into a DataFrame: %.0f rows "
            "a second from the database to the kernel's DataFrame, end to end."
            % (big_base, big_phase, big_kernel, 100000 / ((big_phase + big_kernel) / 1000)),
        ]
        write_report(lines, args.out)
    finally:
        svc.stop()
        postgres.stop()


if __name__ == "__main__":
    main()
