#ifndef NBCANVAS_DATASOURCES_H
#define NBCANVAS_DATASOURCES_H

/*
 * The databases a notebook may query (the config's "datasources"):
 * PostgreSQL through libpq, SQLite through libsqlite3. The service runs
 * every query itself (a sandbox never reaches a database) and treats the
 * SQL as untrusted code: read-only by construction, never by looking at
 * its words. PostgreSQL: the extended query protocol takes one statement
 * only, inside BEGIN READ ONLY with statement_timeout, lock_timeout and
 * TimeZone UTC set locally, rows read one at a time (single-row mode) up
 * to max_rows, then ROLLBACK and DISCARD ALL, so nothing a statement set
 * outlives it on a pooled connection; the datasource's own role is the
 * last wall (the docs ask for one that cannot write). SQLite: the file
 * opened read-only with query_only on, one prepared statement (a second
 * one in its tail is refused), sqlite3_stmt_readonly() checked, ATTACH
 * and every pragma denied by an authorizer, and a progress handler that
 * ends it at the deadline or on cancel.
 *
 * PostgreSQL connections are pooled per datasource, at most pool_size
 * open; a caller waits for one within the query's timeout. A database
 * that does not answer is ERR_DATASOURCE (503, Retry-After), never a hung
 * request. Passwords come from password_file, read at start, and are
 * never logged or answered.
 *
 * Thread-safe.
 */

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "nbcanvas/buf.h"
#include "nbcanvas/err.h"

struct datasources;

/* The datasources of the config's JSON list (NULL or "": none). A wrong
 * entry is ERR_INVALID naming it and the field. */
int datasources_new(struct datasources **out, const char *config_json,
                    struct err *err);
void datasources_free(struct datasources *ds);

/* Whether tenant may use datasource name: allowed is the tenant's list,
 * one name a line ("*\n": every one). ERR_INVALID for a name not
 * configured, ERR_FORBIDDEN for one the tenant may not use. */
int datasources_check(struct datasources *ds, const char *name,
                      const char *allowed, struct err *err);

/* [{"name", "kind"}] of the datasources allowed names (new reference). */
json_t *datasources_list(struct datasources *ds, const char *allowed);

/* The datasource's cache_ttl_s (0: renders using it are not cached). */
long datasources_cache_ttl(struct datasources *ds, const char *name);

/*
 * Runs query (len bytes) on datasource name. On 0, *out is
 *   {"schema": {"fields": [{"name", "type", "db_type"}]},
 *    "rows": [[...], ...], "total_rows": n, "truncated": bool}
 * with Table Schema types (integer, number, string, boolean, date,
 * datetime, object) and values typed as JSON can: integers and floats as
 * numbers (NaN and infinities as the strings "NaN", "Infinity",
 * "-Infinity"), numeric as its exact text, timestamps as ISO 8601 in UTC,
 * JSON as JSON, bytes as hex text, NULL as null. Errors: ERR_SQL (the
 * database's message, with "position" in *details when it gives one),
 * ERR_TIMEOUT, ERR_DATASOURCE, ERR_CANCELLED.
 */
int datasources_query(struct datasources *ds, const char *name,
                      const char *query, size_t len, const atomic_bool *cancel,
                      json_t **out, json_t **details, struct err *err);

/* Tables, columns (name, type, nullable, comment), primary and foreign
 * keys of datasource name (new reference in *out). */
int datasources_schema(struct datasources *ds, const char *name, json_t **out,
                       struct err *err);

/* Per datasource: queries, errors, rows, seconds (Prometheus text). */
void datasources_metrics(struct datasources *ds, struct buf *out);

#endif
