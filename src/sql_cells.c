/*
 * %%sql cells (sql_cells.h): find them in a notebook, run their queries
 * through datasources.c, and hand the rows to the sandbox as files named
 * by a key both sides compute the same way.
 */
#include "nbcanvas/sql_cells.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbcanvas/buf.h"
#include "nbcanvas/datasources.h"
#include "nbcanvas/request.h"
#include "nbcanvas/util.h"

#define MAGIC "%%sql"
#define BLANKS " \t\r\n\f\v"

static bool is_blank(char c)
{
    return c && strchr(BLANKS, c) != NULL;
}

/* The next word of the header line [p, end), or 0 when there is none. */
static size_t word(const char **p, const char *end)
{
    const char *start;

    while (*p < end && is_blank(**p))
        (*p)++;
    start = *p;
    while (*p < end && !is_blank(**p))
        (*p)++;
    return (size_t)(*p - start);
}

static bool identifier(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || n >= SQL_NAME_MAX || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

int sql_cell_parse(const char *source, size_t len, struct sql_cell *out,
                   struct err *err)
{
    const char *nl, *end, *p, *w, *line = source, *stop = source + len;
    size_t n;

    /* IPython drops blank lines before a cell magic: so do we */
    for (p = source; p < stop && is_blank(*p); p++)
        if (*p == '\n')
            line = p + 1;
    len -= (size_t)(line - source);
    source = line;
    /* and takes its name up to a space: "%%sql\tdemo" is no %%sql cell */
    if (len < strlen(MAGIC) || strncmp(source, MAGIC, strlen(MAGIC)) != 0 ||
        (len > strlen(MAGIC) && !strchr(" \r\n", source[strlen(MAGIC)])))
        return 0;
    nl = memchr(source, '\n', len);
    end = nl ? nl : source + len;
    p = source + strlen(MAGIC);
    memset(out, 0, sizeof(*out));
    w = p;
    n = word(&p, end);
    w = p - n;
    if (n == 0 || n >= SQL_NAME_MAX)
        return err_set(err, ERR_INVALID,
                       "a %%%%sql cell starts with %%%%sql <datasource> [-> "
                       "<name>]");
    snprintf(out->datasource, sizeof(out->datasource), "%.*s", (int)n, w);
    snprintf(out->name, sizeof(out->name), "_sql");
    n = word(&p, end);
    if (n) {
        const char *name;
        size_t m = 0;

        if (n == 2 && strncmp(p - 2, "->", 2) == 0)
            m = word(&p, end);
        name = p - m;
        if (m == 0 || !identifier(name, m) || word(&p, end))
            return err_set(err, ERR_INVALID,
                           "a %%%%sql cell starts with %%%%sql <datasource> "
                           "[-> <name>], the name a Python identifier");
        snprintf(out->name, sizeof(out->name), "%.*s", (int)m, name);
    }
    p = nl ? nl + 1 : source + len;
    end = source + len;
    while (p < end && is_blank(*p))
        p++;
    while (end > p && is_blank(end[-1]))
        end--;
    if (p == end)
        return err_set(err, ERR_INVALID, "the %%%%sql cell holds no query");
    out->query = p;
    out->query_len = (size_t)(end - p);
    return 1;
}

/* A cell's source as one string (nbformat allows a list of lines). */
static char *source_text(json_t *cell, size_t *len)
{
    json_t *src = json_object_get(cell, "source"), *line;
    struct buf b = BUF_INIT((size_t)-1);
    size_t i;

    if (json_is_string(src)) {
        *len = json_string_length(src);
        return xstrndup(json_string_value(src), *len);
    }
    json_array_foreach(src, i, line) {
        if (json_is_string(line))
            buf_append(&b, json_string_value(line), json_string_length(line));
    }
    return buf_detach(&b, len);
}

/* The name of the rows' file for cell. */
static char *file_name(const struct sql_cell *cell)
{
    struct buf b = BUF_INIT((size_t)-1);
    char hex[65];
    size_t len;
    char *text;

    buf_printf(&b, "%s\n", cell->datasource);
    buf_append(&b, cell->query, cell->query_len);
    text = buf_detach(&b, &len);
    util_sha256_hex(hex, text, len);
    free(text);
    return xasprintf(".nbcanvas/sql/%s.json", hex);
}

int sql_cells_run(struct datasources *ds, const struct tenant *tenant,
                  json_t *notebook, struct tar_files *files,
                  const atomic_bool *cancel, struct sql_cells_info *info,
                  json_t **details, struct err *err)
{
    json_t *cell;
    size_t i;

    memset(info, 0, sizeof(*info));
    *details = NULL;
    json_array_foreach(json_object_get(notebook, "cells"), i, cell) {
        const char *type = json_string_value(
            json_object_get(cell, "cell_type"));
        struct sql_cell sql = {0};
        json_t *rows = NULL;
        size_t len;
        char *src, *name, *text;
        int rc;

        if (!type || strcmp(type, "code") != 0)
            continue;
        src = source_text(cell, &len);
        rc = sql_cell_parse(src, len, &sql, err);
        if (rc == 1)
            rc = datasources_check(ds, sql.datasource, tenant->datasources,
                                   err);
        name = rc == 0 && sql.query ? file_name(&sql) : NULL;
        if (name && !tarball_find(files, name)) {
            rc = datasources_query(ds, sql.datasource, sql.query,
                                   sql.query_len, cancel, &rows, details, err);
            if (rc == 0) {
                text = json_dumps(rows, JSON_COMPACT);
                tarball_files_add(files, name, text, strlen(text));
                name = NULL; /* the files have it */
            }
            json_decref(rows);
        }
        free(name); /* NULL, or the same query twice: its rows are there */
        if (rc == 0 && sql.query) {
            long ttl = datasources_cache_ttl(ds, sql.datasource);

            if (info->cells++ == 0 || ttl < info->min_ttl)
                info->min_ttl = ttl;
        }
        free(src);
        if (rc < 0) {
            if (!*details)
                *details = json_object();
            json_object_set_new(*details, "cell", json_integer((json_int_t)i));
            return rc;
        }
    }
    return 0;
}

int sql_cells_for_execute(struct datasources *ds, const struct tenant *tenant,
                          struct execute_request *req,
                          const atomic_bool *cancel, json_t **details,
                          struct err *err)
{
    struct sql_cells_info info;

    return sql_cells_run(ds, tenant, req->notebook, &req->files, cancel, &info,
                         details, err);
}
