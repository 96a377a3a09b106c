/*
 * %%sql cells and datasources without a server: a cell's header read the
 * way the kernel's magic reads it, the config's datasources checked, and
 * SQLite queries run on a database made here: rows and types, the row
 * cap, one statement only, nothing that writes or reaches another file,
 * the deadline; and the rows of a notebook's %%sql cells landing among
 * its files under the key the magic computes.
 */
#include "../check.h"
#include "nbcanvas/datasources.h"
#include "nbcanvas/sql_cells.h"
#include "nbcanvas/util.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int parse(const char *src, struct sql_cell *c)
{
    struct err err = ERR_INIT;

    return sql_cell_parse(src, strlen(src), c, &err);
}

TEST(sql_cells__headers)
{
    struct sql_cell c;

    CHECK(parse("print(1)", &c) == 0);
    CHECK(parse("%%sqlx demo\nSELECT 1", &c) == 0);
    CHECK(parse("%%sql demo\n  SELECT 1 \n\n", &c) == 1);
    CHECK_STREQ(c.datasource, "demo");
    CHECK_STREQ(c.name, "_sql");
    CHECK(c.query_len == 8 && strncmp(c.query, "SELECT 1", 8) == 0);
    CHECK(parse("%%sql  sales  ->  by_region \nSELECT 2", &c) == 1);
    CHECK_STREQ(c.datasource, "sales");
    CHECK_STREQ(c.name, "by_region");
    CHECK(parse("%%sql\nSELECT 1", &c) == ERR_INVALID);
    CHECK(parse("%%sql demo -> 2bad\nSELECT 1", &c) == ERR_INVALID);
    CHECK(parse("%%sql demo -> a b\nSELECT 1", &c) == ERR_INVALID);
    CHECK(parse("%%sql demo => a\nSELECT 1", &c) == ERR_INVALID);
    CHECK(parse("%%sql demo\n   \n", &c) == ERR_INVALID);
    /* as IPython reads a cell magic: blank lines before it are dropped,
     * and its name ends at a space */
    CHECK(parse("\n  \n%%sql demo -> x\nSELECT 3", &c) == 1);
    CHECK_STREQ(c.name, "x");
    CHECK(parse("%%sql\tdemo\nSELECT 1", &c) == 0);
    CHECK(parse("  %%sql demo\nSELECT 1", &c) == 0);
}

TEST(sql_cells__the_config_is_checked)
{
    struct datasources *ds = NULL;
    struct err err = ERR_INIT;

    CHECK(datasources_new(&ds, "[{\"name\": \"a\", \"kind\": \"mysql\"}]",
                          &err) == ERR_INVALID);
    CHECK(strstr(err.msg, "kind") != NULL);
    datasources_free(ds);
    CHECK(datasources_new(&ds,
                          "[{\"name\": \"a\", \"kind\": \"sqlite\", \"path\": "
                          "\"/x\", \"max_rows\": 0}]",
                          &err) == ERR_INVALID);
    datasources_free(ds);
    CHECK(datasources_new(&ds,
                          "[{\"name\": \"a\", \"kind\": \"sqlite\", \"path\": "
                          "\"/x\"}, {\"name\": \"a\", \"kind\": \"sqlite\", "
                          "\"path\": \"/y\"}]",
                          &err) == ERR_INVALID);
    CHECK(strstr(err.msg, "taken") != NULL);
    datasources_free(ds);
    CHECK(datasources_new(&ds,
                          "[{\"name\": \"a\", \"kind\": \"postgresql\", "
                          "\"conninfo\": \"x\", \"passwd\": \"y\"}]",
                          &err) == ERR_INVALID);
    CHECK(strstr(err.msg, "passwd") != NULL);
    datasources_free(ds);
}

/* A database of its own in /tmp; *ds reads it with max_rows 3. */
static void make_db(char path[64], struct datasources **ds)
{
    char config[256];
    sqlite3 *db;
    int fd;

    snprintf(path, 64, "/tmp/nbcanvas-test-XXXXXX");
    fd = mkstemp(path);
    close(fd);
    sqlite3_open(path, &db);
    sqlite3_exec(
        db,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, price "
        "NUMERIC(10,2), at DATETIME, blob BLOB);"
        "INSERT INTO t VALUES (1, 'a', 1.5, '2024-01-01 10:00', x'00ff'),"
        "(2, NULL, 2, NULL, NULL), (3, 'c', 3, NULL, NULL),"
        "(4, 'd', 4, NULL, NULL);",
        NULL, NULL, NULL);
    sqlite3_close(db);
    snprintf(config, sizeof(config),
             "[{\"name\": \"demo\", \"kind\": \"sqlite\", \"path\": \"%s\", "
             "\"max_rows\": 3, \"timeout_s\": 1}]",
             path);
    if (datasources_new(ds, config, NULL) < 0)
        abort();
}

static int query(struct datasources *ds, const char *sql, json_t **out,
                 struct err *err)
{
    json_t *details = NULL;
    int rc = datasources_query(ds, "demo", sql, strlen(sql), NULL, out,
                               &details, err);

    json_decref(details);
    return rc;
}

TEST(sql_cells__sqlite_rows_types_and_the_cap)
{
    struct datasources *ds;
    struct err err = ERR_INIT;
    json_t *out = NULL, *rows, *fields;
    char path[64];

    make_db(path, &ds);
    CHECK(query(ds, "SELECT * FROM t ORDER BY id", &out, &err) == 0);
    rows = json_object_get(out, "rows");
    fields = json_object_get(json_object_get(out, "schema"), "fields");
    CHECK(json_array_size(rows) == 3);
    CHECK(json_is_true(json_object_get(out, "truncated")));
    CHECK_STREQ(
        json_string_value(json_object_get(json_array_get(fields, 0), "type")),
        "integer");
    CHECK_STREQ(
        json_string_value(json_object_get(json_array_get(fields, 2), "type")),
        "number");
    CHECK_STREQ(
        json_string_value(json_object_get(json_array_get(fields, 3), "type")),
        "datetime");
    CHECK(json_integer_value(json_array_get(json_array_get(rows, 0), 0)) == 1);
    CHECK(json_is_null(json_array_get(json_array_get(rows, 1), 1)));
    CHECK_STREQ(json_string_value(json_array_get(json_array_get(rows, 0), 4)),
                "\\x00ff");
    json_decref(out);
    unlink(path);
    datasources_free(ds);
}

TEST(sql_cells__sqlite_refuses_what_writes_or_reaches_out)
{
    static const char *const refused[] = {
        "DELETE FROM t",
        "SELECT 1; DELETE FROM t",
        "UPDATE t SET name = 'x'",
        "ATTACH DATABASE '/etc/passwd' AS x",
        "PRAGMA query_only = OFF",
        "VACUUM",
        "CREATE TABLE x (a)",
        "SELECT load_extension('/tmp/x')",
        "",
        "-- only a comment",
    };
    struct datasources *ds;
    struct err err = ERR_INIT;
    json_t *out = NULL;
    char path[64];
    size_t i;

    make_db(path, &ds);
    for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        err.code = 0;
        CHECK(query(ds, refused[i], &out, &err) == ERR_SQL);
        CHECK(out == NULL);
    }
    /* comments and blanks after the statement are no second one */
    CHECK(query(ds, "SELECT count(*) FROM t; -- counted\n", &out, &err) == 0);
    CHECK(json_integer_value(json_array_get(
              json_array_get(json_object_get(out, "rows"), 0), 0)) == 4);
    json_decref(out);
    out = NULL;
    /* the deadline (1 s here) ends a query that would never */
    CHECK(query(ds,
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
                "FROM n) SELECT count(*) FROM n",
                &out, &err) == ERR_TIMEOUT);
    unlink(path);
    datasources_free(ds);
}

TEST(sql_cells__a_notebooks_rows_land_under_the_magics_key)
{
    struct datasources *ds;
    struct tenant t = {.datasources = "demo\n"}, nobody = {.name = "x"};
    struct tar_files files = {0};
    struct sql_cells_info info;
    struct err err = ERR_INIT;
    json_t *details = NULL;
    json_t *nb = json_pack(
        "{s:[{s:s, s:s}, {s:s, s:[s, s]}, {s:s, s:s}]}", "cells", "cell_type",
        "code", "source",
        "%%sql demo -> df\n SELECT name FROM t WHERE id = 1\n", "cell_type",
        "code", "source", "%%sql demo\n", "SELECT name FROM t WHERE id = 1",
        "cell_type", "markdown", "source", "%%sql demo\nnot run");
    char path[64], hex[65], name[96];
    const char *key = "demo\nSELECT name FROM t WHERE id = 1";

    make_db(path, &ds);
    CHECK(sql_cells_run(ds, &t, nb, &files, NULL, &info, &details, &err) == 0);
    CHECK(info.cells == 2 && info.min_ttl == 0);
    CHECK(files.n == 1); /* the same query twice: one file */
    util_sha256_hex(hex, key, strlen(key));
    snprintf(name, sizeof(name), ".nbcanvas/sql/%s.json", hex);
    CHECK(tarball_find(&files, name) != NULL);
    tarball_files_release(&files);
    /* a tenant without the datasource: refused, naming the cell */
    CHECK(sql_cells_run(ds, &nobody, nb, &files, NULL, &info, &details,
                        &err) == ERR_FORBIDDEN);
    CHECK(json_integer_value(json_object_get(details, "cell")) == 0);
    json_decref(details);
    tarball_files_release(&files);
    json_decref(nb);
    unlink(path);
    datasources_free(ds);
}
