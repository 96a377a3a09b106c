"""What a %%sql cell costs beyond its query (issue 23), on a real
PostgreSQL (tests/integration/pg.py, the Chinook sample) and nbcanvas on
the same machine:

- the query's own time in psql (\\timing, one session, the median);
- POST /v1/sql of the same query (Table Schema JSON), client-side;
- a warm render whose first cell is that query as a %%sql cell against
  the same render with a cell that builds a DataFrame of the same shape
  in Python: the difference is what the %%sql cell adds (the query, the
  rows into the job, the DataFrame built in the kernel);
- rows per second handed to the kernel, from a 100 000-row query.

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
PLAIN = ("import pandas as pd\n"
         "df = pd.DataFrame({'track_id': range(1000), 'name': ['x'] * 1000,\n"
         "                   'milliseconds': range(1000), 'unit_price': [0.99] * 1000,\n"
         "                   'genre': ['Rock'] * 1000})\ndf")
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
        sql_cell = {"cells": ["%%sql chinook -> df\n" + QUERY, "len(df)"], "cache": False}
        plain = {"cells": [PLAIN, "len(df)"], "cache": False}
        for body in (sql_cell, plain):  # the pool warm, the kernel's imports loaded
            svc.render(body)
        with_sql, without, phases = [], [], []
        for _ in range(args.runs):
            for body, into in ((sql_cell, with_sql), (plain, without)):
                t0 = time.perf_counter()
                r = svc.render(body)
                into.append((time.perf_counter() - t0) * 1000)
                assert r.status == 200, r
                if body is sql_cell:
                    timing = dict(p.split(";dur=")[:2] for p in
                                  r.header("server-timing").replace(";desc=warm", "")
                                  .replace(";desc=cold", "").split(", "))
                    phases.append(float(timing["sql"]))
        big_base = psql_ms(postgres, BIG, 3)
        big = {"cells": ["%%sql chinook -> df\n" + BIG, "len(df)"], "cache": False}
        big_ms = statistics.median([timed(lambda: svc.render(big), 1) for _ in range(3)])
        small_ms = statistics.median(without)
        added = statistics.median(with_sql) - statistics.median(without)
        rows_per_s = 100000 / max((big_ms - small_ms - big_base) / 1000, 1e-6)
        lines = [
            "### Text2SQL (issue 23): what a %%sql cell costs beyond its query",
            "",
            "`python3 tests/bench/bench_sql.py build/nbcanvas --runs %d`: PostgreSQL 15 on "
            "loopback with the Chinook sample, a 1000-row query of 5 columns, medians (ms)." % args.runs,
            "",
            "| what | ms |",
            "|---|---|",
            "| the query in psql (`\\timing`) | %.1f |" % base_ms,
            "| POST /v1/sql, Table Schema JSON, from the client | %.1f |" % sql_ms,
            "| the render's `sql` phase (Server-Timing: the query run by the service) | %.1f |"
            % statistics.median(phases),
            "| a warm render with the %%%%sql cell | %.0f |" % statistics.median(with_sql),
            "| the same render with a cell that builds the same DataFrame in Python | %.0f |"
            % small_ms,
            "| **what the %%%%sql cell adds** (the two renders' difference) | **%.0f** |" % added,
            "| the same over the query's own time | %.0f |" % (added - base_ms),
            "",
            "Rows handed to the kernel: a 100 000-row query (two columns) renders in %.0f ms "
            "(the query alone %.0f ms in psql): about %.0f rows a second into a DataFrame, "
            "beyond a plain render." % (big_ms, big_base, rows_per_s),
        ]
        write_report(lines, args.out)
    finally:
        svc.stop()
        postgres.stop()


if __name__ == "__main__":
    main()
