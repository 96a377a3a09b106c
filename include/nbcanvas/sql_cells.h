#ifndef NBCANVAS_SQL_CELLS_H
#define NBCANVAS_SQL_CELLS_H

/*
 * %%sql cells: a code cell whose first line is
 *
 *     %%sql <datasource> [-> <name>]
 *
 * holds one SQL query. The service runs it before the notebook runs
 * (datasources.h: read only, under the datasource's timeout and row cap;
 * the sandbox has no network and never sees a database) and puts its rows
 * among the job's files as .nbcanvas/sql/<key>.json, key being the
 * SHA-256 (hex) of the datasource's name, a newline, and the query with
 * the blanks around it removed. In the sandbox the %%sql magic
 * (notebook-images/python/nbcanvas_sql.py) computes the same key, reads
 * the rows back as a pandas DataFrame with their types, binds it to
 * <name> (default _sql) and shows it. The notebook keeps the cell as it
 * was written, and the rows are part of the render's cache key.
 */

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "nbcanvas/err.h"
#include "nbcanvas/tarball.h"
#include "nbcanvas/tenants.h"

struct datasources;

#define SQL_NAME_MAX 64

/* A %%sql cell's parts. */
struct sql_cell {
    char datasource[SQL_NAME_MAX];
    char name[SQL_NAME_MAX]; /* the DataFrame's name */
    const char *query;       /* into the source, blanks around removed */
    size_t query_len;
};

/* Whether source (len bytes) is a %%sql cell: 1 and *out filled; 0 when
 * it is not one; ERR_INVALID (err says why) when its header is wrong. */
int sql_cell_parse(const char *source, size_t len, struct sql_cell *out,
                   struct err *err);

/* What running a notebook's %%sql cells found. */
struct sql_cells_info {
    long cells;   /* %%sql cells */
    long min_ttl; /* the smallest cache_ttl_s of their datasources */
};

/* Runs the query of every %%sql cell of notebook (borrowed) for tenant,
 * adding each result to files. An error names the cell in *details
 * ("cell": its index, and the database's "position" if any). */
int sql_cells_run(struct datasources *ds, const struct tenant *tenant,
                  json_t *notebook, struct tar_files *files,
                  const atomic_bool *cancel, struct sql_cells_info *info,
                  json_t **details, struct err *err);

/* The same for a session's execute: its cell's rows join req's files. */
struct execute_request;
int sql_cells_for_execute(struct datasources *ds, const struct tenant *tenant,
                          struct execute_request *req,
                          const atomic_bool *cancel, json_t **details,
                          struct err *err);

#endif
