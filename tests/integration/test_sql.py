"""Text2SQL against real databases: a PostgreSQL started here (pg.py) with
the Chinook sample loaded, reached as a role that may only read, and the
demo's SQLite database. The service runs every query (a sandbox has no
network); the SQL is treated as untrusted: hostile statements of every
kind are refused or harmless, and the data is checked unchanged after
them. Then %%sql cells in renders and sessions: rows handed to the kernel
as a DataFrame with their types, a chart drawn from it, the cell kept as
written; tenants and their datasources; a database that does not answer;
the cache rule; what the sandbox itself can reach."""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

import pg
import harness
from harness import REPO, check_error

BINARY = sys.argv[1]
DB = {}  # the PostgreSQL, the SQLite path, the keys


def sql(svc, datasource, query, fmt="json", key=None):
    headers = {"Authorization": "Bearer " + key} if key else None
    return svc.post("/v1/sql", {"datasource": datasource, "query": query, "format": fmt},
                    headers=headers)


def rows(r):
    assert r.status == 200, r
    return r.json()["data"]


def test_datasources_and_their_schema(svc):
    listed = {d["name"]: d["kind"] for d in svc.get("/v1/datasources").json()}
    assert listed == {"chinook": "postgresql", "chinook_rw": "postgresql", "demo": "sqlite",
                      "down": "postgresql"}, listed
    s = svc.get("/v1/datasources/chinook/schema").json()
    tables = {t["name"]: t for t in s["tables"]}
    assert {"album", "artist", "track", "invoice_line", "kinds"} <= set(tables), sorted(tables)
    assert tables["album"]["primary_key"] == ["album_id"], tables["album"]
    assert {"name": "album_artist_id_fkey", "columns": ["artist_id"],
            "references": {"table": "artist", "columns": ["artist_id"]}} \
        in tables["album"]["foreign_keys"], tables["album"]
    assert tables["kinds"]["comment"] == "one row of each kind of value"
    price = [c for c in tables["kinds"]["columns"] if c["name"] == "price"][0]
    assert price == {"name": "price", "type": "numeric", "nullable": True,
                     "comment": "exact, in EUR"}, price
    demo = {t["name"]: t for t in svc.get("/v1/datasources/demo/schema").json()["tables"]}
    assert demo["Track"]["primary_key"] == ["TrackId"], demo["Track"]
    check_error(svc.get("/v1/datasources/nope/schema"), 404, "not_found")


def test_a_query_as_table_schema_csv_and_page(svc):
    r = sql(svc, "chinook", "SELECT g.name AS genre, count(*) AS tracks FROM track t "
                            "JOIN genre g USING (genre_id) GROUP BY 1 ORDER BY 2 DESC LIMIT 3")
    body = r.json()
    assert body["schema"]["fields"][1] == {"name": "tracks", "type": "integer",
                                           "db_type": "bigint"}, body
    assert body["data"][0] == {"genre": "Rock", "tracks": 1297}, body
    assert body["total_rows"] == 3 and body["truncated"] is False
    r = sql(svc, "chinook", "SELECT id, label FROM kinds ORDER BY id", fmt="csv")
    assert r.header("content-type").startswith("text/csv"), r.headers
    assert r.body.decode() == 'id,label\r\n1,"x<y>&""z"""\r\n2,\r\n3,\r\n', r.body
    r = sql(svc, "chinook", "SELECT label FROM kinds WHERE id = 1", fmt="html")
    page = r.body.decode()
    assert r.header("content-type").startswith("text/html") and "<table" in page
    assert "x&lt;y&gt;&amp;&quot;z&quot;" in page and "<y>" not in page, page
    assert r.header("content-security-policy"), r.headers


def test_values_keep_their_types(svc):
    data = rows(sql(svc, "chinook", "SELECT * FROM kinds ORDER BY id"))
    assert data[0] == {"id": 1, "big": 9007199254740993, "price": "12345678.1234",
                       "ratio": 0.1, "flag": True, "day": "2024-02-29",
                       "at": "2024-03-01T10:30:00Z", "doc": {"a": [1, 2]},
                       "label": 'x<y>&"z"'}, data[0]
    assert data[1]["ratio"] == "NaN" and data[1]["big"] is None, data[1]
    assert data[2]["ratio"] == "Infinity", data[2]


def test_hostile_sql_is_refused_or_harmless_and_nothing_changes(svc):
    before = DB["pg"].checksum()
    cases = [
        "DELETE FROM track",
        "UPDATE album SET title = 'x'",
        "INSERT INTO genre VALUES (999, 'x')",
        "DROP TABLE invoice_line",
        "TRUNCATE track",
        "CREATE TABLE x (a int)",
        "ALTER TABLE album ADD COLUMN x int",
        "COMMIT; DELETE FROM track",
        "SELECT 1; DELETE FROM track",
        "/* a comment first */ DELETE FROM track",
        "-- select\nDELETE FROM track",
        "WITH gone AS (DELETE FROM track RETURNING *) SELECT count(*) FROM gone",
        "DO $$ BEGIN DELETE FROM track; END $$",
        "SET ROLE postgres",
        "SET SESSION AUTHORIZATION postgres",
        "COPY (SELECT 1) TO PROGRAM 'touch /tmp/nbcanvas-pwned'",
        "COPY track TO '/tmp/nbcanvas-pwned'",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT * FROM track FOR UPDATE",
        "LOCK TABLE track IN ACCESS EXCLUSIVE MODE",
        "SELECT setval('nope', 1)",
        "CREATE TEMP TABLE t AS SELECT 1",
        "GRANT ALL ON track TO PUBLIC",
        "NOTIFY x",
        "PREPARE TRANSACTION 'x'",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
        "SELECT lo_import('/etc/passwd')",
        "VACUUM track",
        "CREATE DATABASE x",
        "SET TRANSACTION READ WRITE",
        # libpq hands a COPY out again and again: refused, never a busy loop
        "COPY track TO STDOUT",
        "COPY (SELECT 1) TO STDOUT",
    ]
    # statements that may run, harmlessly: pg_terminate_backend ends the
    # role's own backends (this query's too; the pool makes new ones);
    # NOTIFY is sent at a commit, which never comes; SET TRANSACTION READ
    # WRITE is the whole statement, nothing runs after it; a LOCK (for a
    # role that may take it) ends with the ROLLBACK that follows at once,
    # and lock_timeout bounds the wait for it
    harmless = {"SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
                "SET TRANSACTION READ WRITE", "NOTIFY x",
                "LOCK TABLE track IN ACCESS EXCLUSIVE MODE"}
    # as the reader (grants stop writes too), and as a role that may write
    # anything: the read-only transaction and the one-statement protocol
    # stop them by themselves
    for datasource in ("chinook", "chinook_rw"):
        for query in cases:
            r = sql(svc, datasource, query)
            # pg_terminate_backend may end the query's own connection: a 503
            # for it, and the pool makes new ones (checked below)
            assert r.status in (200, 400, 403, 422, 503), (datasource, query, r)
            # refused, not run and rolled back: nothing that writes is
            # answered as if it had worked
            assert r.status != 200 or query in harmless, (datasource, query, r)
            if r.status != 200:
                check_error(r, r.status, r.json()["error"]["code"])
    assert rows(sql(svc, "chinook_rw", "SELECT current_user AS u"))[0]["u"] == "writer"
    # what a statement set does not outlive it on the pooled connection
    assert rows(sql(svc, "chinook", "SELECT current_user AS u"))[0]["u"] == "reader"
    assert not os.path.exists("/tmp/nbcanvas-pwned")
    assert DB["pg"].checksum() == before
    # SQLite: the same by construction
    demo_before = hashlib.sha256(open(DB["sqlite"], "rb").read()).hexdigest()
    for query in ["DELETE FROM Track", "SELECT 1; DELETE FROM Track",
                  "ATTACH DATABASE '/tmp/x.db' AS x", "PRAGMA query_only = OFF",
                  "VACUUM", "CREATE TABLE x (a)", "REPLACE INTO Genre VALUES (1, 'x')"]:
        r = sql(svc, "demo", query)
        check_error(r, 422, "sql_error")
    assert hashlib.sha256(open(DB["sqlite"], "rb").read()).hexdigest() == demo_before
    assert svc.get("/healthz").status == 200


def test_the_databases_own_errors_name_where(svc):
    err = check_error(sql(svc, "chinook", "SELECT nope FROM track"), 422, "sql_error")
    assert "nope" in err["message"] and err["position"] == 8, err
    err = check_error(sql(svc, "demo", "SELECT nope FROM Track"), 422, "sql_error")
    assert "nope" in err["message"], err
    check_error(sql(svc, "nope", "SELECT 1"), 400, "invalid_request")
    check_error(svc.post("/v1/sql", {"datasource": "chinook", "sql": "SELECT 1"}), 400,
                "invalid_request")


def test_timeouts_and_the_row_cap(svc):
    t0 = time.time()
    err = check_error(sql(svc, "chinook", "SELECT pg_sleep(60)"), 422, "timeout")
    assert time.time() - t0 < 50, time.time() - t0  # the datasource's 3 s, not the 60
    assert "timeout" in err["message"], err
    check_error(sql(svc, "demo", "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
                                 "FROM n) SELECT count(*) FROM n"), 422, "timeout")
    # a billion rows: read a piece at a time, cut at max_rows (1000 here)
    # (in the select list the series streams; in FROM it would be built whole)
    r = sql(svc, "chinook", "SELECT generate_series(1, 1000000000) AS i")
    body = r.json()
    assert body["total_rows"] == 1000 and body["truncated"] is True, body["total_rows"]
    assert body["data"][-1] == {"i": 1000}
    # big values: the result's bytes are capped too (64 MiB), not only rows
    r = sql(svc, "chinook", "SELECT repeat('x', 10000000) AS v FROM generate_series(1, 20)")
    body = r.json()
    assert body["truncated"] is True and 0 < body["total_rows"] < 20, body["total_rows"]
    # the pool still answers: nothing was left running on it
    assert rows(sql(svc, "chinook", "SELECT 1 AS one")) == [{"one": 1}]


def test_a_database_that_does_not_answer_is_503(svc):
    r = sql(svc, "down", "SELECT 1")
    err = check_error(r, 503, "datasource_unavailable")
    assert r.header("retry-after"), r.headers
    assert "down" in err["message"] and DB["password"] not in err["message"], err
    assert "127.0.0.1" not in err["message"] and "reader" not in err["message"], err
    assert DB["password"] not in svc.read_log()


def test_sql_cells_in_a_render_become_a_dataframe_and_a_chart(svc):
    body = {"cells": [
        "%%sql chinook -> top\nSELECT g.name AS genre, sum(l.unit_price * l.quantity) AS revenue\n"
        "FROM invoice_line l JOIN track t USING (track_id) JOIN genre g USING (genre_id)\n"
        "GROUP BY 1 ORDER BY 2 DESC LIMIT 5",
        "print(type(top).__name__, len(top), top.genre.iloc[0])",
        "import matplotlib.pyplot as plt\nax = top.plot.bar(x='genre', y='revenue')\n"
        "ax.set_ylabel('Revenue (USD)')\nplt.show()"],
        "format": "json"}
    r = svc.render(body)
    assert r.status == 200, r
    cells = r.json()["cells"]
    table = cells[0]["outputs"][0]["data"]
    assert "<table" in table["text/html"] and "Rock" in table["text/html"], table.keys()
    fields = table["application/vnd.nbcanvas.table+json"]["schema"]["fields"]
    assert [f["name"] for f in fields][-2:] == ["genre", "revenue"], fields
    assert cells[1]["outputs"][0]["text"] == "DataFrame 5 Rock\n", cells[1]
    chart = cells[2]["outputs"][0]["data"]["application/vnd.nbcanvas.chart+json"]
    assert chart["type"] == "bar" and len(chart["elements"]) == 5, chart
    # the notebook keeps the cell as written
    nb = svc.render(dict(body, format="ipynb")).json()
    source = "".join(nb["cells"][0]["source"])  # nbformat keeps lines
    assert source.startswith("%%sql chinook -> top\nSELECT"), nb["cells"][0]


def test_sql_cells_hand_the_kernel_faithful_types(svc):
    # ("at" is a DataFrame accessor too: the column by its key)
    code = ("import datetime\n"
            "print(kinds.dtypes.to_dict())\n"
            "print(repr(kinds.price[0]), kinds.price.isna().tolist())\n"
            "print(kinds.big[0] == 9007199254740993, kinds.big.isna().tolist())\n"
            "print(kinds['at'][0].isoformat(), kinds.day[0] == datetime.date(2024, 2, 29))\n"
            "print(kinds.doc[0]['a'], kinds.ratio.isna().tolist(), kinds.flag.tolist())")
    r = svc.render({"cells": ["%%sql chinook -> kinds\nSELECT * FROM kinds ORDER BY id", code],
                    "format": "json"})
    assert r.status == 200, r
    out = r.json()["cells"][1]["outputs"][0]["text"].splitlines()
    dtypes = out[0]
    assert "'id': dtype('int64')" in dtypes and "'big': Int64Dtype()" in dtypes, dtypes
    assert "'ratio': dtype('float64')" in dtypes and "'price': dtype('float64')" in dtypes, dtypes
    assert "'at': datetime64[ns, UTC]" in dtypes, dtypes
    assert out[1] == "12345678.1234 [False, True, False]", out
    assert out[2] == "True [False, True, False]", out
    assert out[3] == "2024-03-01T10:30:00+00:00 True", out
    assert out[4] == "[1, 2] [False, True, False] [True, <NA>, False]", out


def test_sql_cells_in_an_r_notebook_become_a_data_frame(svc):
    # R has no cell magics: the service sends the cell as a call of the
    # image's nbcanvas_sql_rows(), and the notebook keeps it as written
    body = {"kernel": "ir", "format": "json", "cells": [
        "%%sql chinook -> kinds\nSELECT * FROM kinds ORDER BY id",
        "cat(class(kinds), nrow(kinds), '\\n')\n"
        "cat(sapply(kinds[c('id', 'big', 'ratio', 'price', 'flag', 'day', 'at')], "
        "function(c) class(c)[1]), '\\n')\n"
        "cat(format(kinds$price[1], nsmall = 4), is.na(kinds$price), kinds$flag, '\\n')\n"
        "cat(format(kinds$day[1]), format(kinds$at[1], '%Y-%m-%dT%H:%M:%S', tz = 'UTC'), '\\n')",
        "%%sql demo\nSELECT Name FROM Genre ORDER BY GenreId LIMIT 3",
        "`_sql`$Name"]}
    r = svc.render(body)
    assert r.status == 200, r
    cells = r.json()["cells"]
    table = cells[0]["outputs"][0]["data"]["text/html"]
    table = "".join(table) if isinstance(table, list) else table
    assert "<table" in table, table[:200]
    out = "".join(o.get("text", "") for o in cells[1]["outputs"]).splitlines()
    assert len(out) == 4 and out[0] == "data.frame 3 ", cells[1]
    assert out[1] == "integer numeric numeric numeric logical Date POSIXct ", out
    assert out[2] == "12345678.1234 FALSE TRUE FALSE TRUE NA FALSE ", out
    assert out[3] == "2024-02-29 2024-03-01T10:30:00 ", out
    assert "Rock" in cells[3]["outputs"][0]["data"]["text/plain"], cells[3]
    nb = svc.render(dict(body, format="ipynb")).json()
    assert "".join(nb["cells"][0]["source"]).startswith("%%sql chinook -> kinds\n")


def test_sql_cells_in_a_session_and_the_cache_rule(svc):
    r = svc.post("/v1/sessions", {})
    sid = r.json()["id"]
    try:
        r = svc.post("/v1/sessions/%s/execute" % sid,
                     {"code": "%%sql demo -> genres\nSELECT Name FROM Genre ORDER BY GenreId LIMIT 3"})
        assert r.status == 200 and r.json()["status"] == "ok", r
        r = svc.post("/v1/sessions/%s/execute" % sid, {"code": "genres.Name.tolist()"})
        assert r.json()["outputs"][0]["data"]["text/plain"] == "['Rock', 'Jazz', 'Metal']", r.json()
        err = check_error(svc.post("/v1/sessions/%s/execute" % sid,
                                   {"code": "%%sql demo\nDELETE FROM Genre"}), 422, "sql_error")
        assert err["cell"] == 0, err
    finally:
        svc.request("DELETE", "/v1/sessions/" + sid)
    # renders with %%sql cells are not cached (cache_ttl_s 0): the rows may change
    body = {"cells": ["%%sql demo\nSELECT count(*) AS n FROM Track"], "format": "json"}
    assert svc.render(body).header("x-nbcanvas-cache") == "miss"
    assert svc.render(body).header("x-nbcanvas-cache") == "miss"


def test_tenants_see_only_their_datasources(svc):
    keys = DB["keys"]
    other = svc.request("GET", "/v1/datasources",
                        headers={"Authorization": "Bearer " + keys["viewer"]}).json()
    assert [d["name"] for d in other] == ["demo"], other
    check_error(sql(svc, "chinook", "SELECT 1", key=keys["viewer"]), 403, "datasource_forbidden")
    r = svc.request("POST", "/v1/render", {"cells": ["%%sql chinook\nSELECT 1"]},
                    headers={"Authorization": "Bearer " + keys["viewer"]})
    check_error(r, 403, "datasource_forbidden")
    r = svc.request("GET", "/v1/datasources/chinook/schema",
                    headers={"Authorization": "Bearer " + keys["viewer"]})
    check_error(r, 403, "datasource_forbidden")
    assert rows(sql(svc, "demo", "SELECT 1 AS one", key=keys["viewer"])) == [{"one": 1}]


def test_the_sandbox_cannot_reach_the_database(svc):
    code = ("import socket\ntry:\n    socket.create_connection(('127.0.0.1', %d), timeout=3)\n"
            "    print('reached')\nexcept OSError as e:\n    print('refused', type(e).__name__)"
            % DB["pg"].port)
    r = svc.render({"cells": [code], "format": "json", "cache": False})
    text = r.json()["cells"][0]["outputs"][0]["text"]
    assert text.startswith("refused"), text
    # nor its socket: the host's folders are not in the sandbox
    r = svc.render({"cells": ["import os\nprint(os.path.exists(%r))" % DB["pg"].dir],
                    "format": "json", "cache": False})
    assert r.json()["cells"][0]["outputs"][0]["text"] == "False\n", r.json()


def test_the_live_sql_example_renders_a_table_and_a_chart(svc):
    with open(os.path.join(REPO, "examples", "sql-chart.json")) as f:
        body = json.load(f)
    r = svc.render(body)
    assert r.status == 200, r
    page = r.body.decode()
    assert "<table" in page and "Rock" in page, page[:300]
    assert "data:image/png;base64," in page
    assert "%%sql" not in page  # --no-input: the query is not on the page


def test_metrics_per_datasource(svc):
    text = svc.get("/metrics").body.decode()
    for name in ("queries", "errors", "rows", "seconds"):
        assert 'nbcanvas_datasource_%s_total{datasource="chinook"}' % name in text, name


def main():
    postgres = pg.Postgres().start()
    folder = tempfile.mkdtemp(prefix="nbcanvas-sql-")
    try:
        DB["pg"] = postgres
        DB["sqlite"] = os.path.join(folder, "demo.db")
        subprocess.run(["bash", os.path.join(REPO, "scripts", "demo-db.sh"), DB["sqlite"]],
                       check=True)
        DB["password"] = pg.READER_PASSWORD
        password_file = os.path.join(folder, "reader.password")
        with open(password_file, "w") as f:
            f.write(pg.READER_PASSWORD + "\n")
        keys, entries = {}, []
        for tenant, allowed in (("analyst", ["chinook", "chinook_rw", "demo", "down"]),
                                ("viewer", ["demo"])):
            made = subprocess.run([BINARY, "key", "new", tenant], capture_output=True, text=True,
                                  check=True).stdout
            keys[tenant] = made.split("key: ")[1].split()[0]
            entry = json.loads(made.split("entry: ")[1].strip())
            entry.update(datasources=allowed, metrics=True)
            entries.append(entry)
        DB["keys"] = keys
        keys_file = os.path.join(folder, "keys.json")
        with open(keys_file, "w") as f:
            json.dump(entries, f)
        config = {
            "api_keys_file": keys_file, "pool_size": 1, "max_sessions": 2,
            "datasources": [
                {"name": "chinook", "kind": "postgresql", "conninfo": postgres.conninfo(),
                 "password_file": password_file, "max_rows": 1000, "timeout_s": 3,
                 "pool_size": 2},
                {"name": "chinook_rw", "kind": "postgresql", "password_file": password_file,
                 "conninfo": postgres.conninfo(user="writer"), "timeout_s": 3},
                {"name": "demo", "kind": "sqlite", "path": DB["sqlite"], "timeout_s": 3},
                {"name": "down", "kind": "postgresql", "password_file": password_file,
                 "conninfo": "host=127.0.0.1 port=%d dbname=x user=reader" % harness.free_port(),
                 "timeout_s": 3}]}
        harness.main(globals(), config, key=keys["analyst"])
    finally:
        postgres.stop()


if __name__ == "__main__":
    main()
