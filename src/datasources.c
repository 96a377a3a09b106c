/*
 * The databases notebooks query (datasources.h): the config's entries,
 * PostgreSQL's connection pools, and one query's run on either kind. The
 * SQL is untrusted: nothing here reads its words to decide anything; the
 * protocol (one statement), the transaction (read only), the database's
 * own checks (sqlite3_stmt_readonly, an authorizer) and the role decide.
 */
#include "nbcanvas/datasources.h"

#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbcanvas/util.h"

#define NAME_MAX_LEN 64
#define CONNECT_TIMEOUT_S 5
#define POLL_SLICE_MS 100
#define CANCEL_GRACE_MS 5000 /* past the deadline, for the server's cancel */
#define MAX_RESULT_BYTES (64LL << 20) /* a result's values, at most */

enum kind { DS_POSTGRESQL, DS_SQLITE };

struct datasource {
    char name[NAME_MAX_LEN];
    enum kind kind;
    char *conninfo; /* PostgreSQL */
    char *password; /* from password_file, or NULL */
    char *path;     /* SQLite */
    long max_rows, timeout_s, cache_ttl_s, pool_size;
    pthread_mutex_t lock;
    pthread_cond_t freed;
    PGconn **idle; /* pool_size places */
    long n_idle, open;
    long long queries, errors, rows, ms;
};

struct datasources {
    struct datasource *v;
    size_t n;
};

/* The config ------------------------------------------------------------- */

static bool name_ok(const char *s)
{
    size_t n = strlen(s);

    return n > 0 && n < NAME_MAX_LEN &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789_-") == n;
}

static int number(long *out, json_t *entry, const char *key, long def, long lo,
                  long hi, size_t i, struct err *err)
{
    json_t *v = json_object_get(entry, key);

    *out = def;
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo ||
        json_integer_value(v) > hi)
        return err_set(err, ERR_INVALID,
                       "datasources[%zu].%s must be a whole number from %ld "
                       "to %ld",
                       i, key, lo, hi);
    *out = (long)json_integer_value(v);
    return 0;
}

static const char *string_of(json_t *entry, const char *key)
{
    return json_string_value(json_object_get(entry, key));
}

/* The password in path: its first line. */
static int read_password(char **out, const char *path, size_t i,
                         struct err *err)
{
    size_t len;
    char *text = util_read_file(path, &len, 4096);

    if (!text)
        return err_set(err, ERR_INVALID,
                       "datasources[%zu].password_file: cannot read %s", i,
                       path);
    text[strcspn(text, "\r\n")] = '\0';
    *out = text;
    return 0;
}

static int parse_entry(struct datasource *d, json_t *e, size_t i,
                       struct err *err)
{
    static const char *const fields[] = {
        "name",     "kind",      "conninfo",    "password_file", "path",
        "max_rows", "timeout_s", "cache_ttl_s", "pool_size"};
    const char *key, *name = string_of(e, "name"),
                     *kind = string_of(e, "kind");
    json_t *v;
    size_t f;
    int rc;

    if (!json_is_object(e))
        return err_set(err, ERR_INVALID, "datasources[%zu] must be an object",
                       i);
    json_object_foreach(e, key, v) {
        for (f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
            if (strcmp(key, fields[f]) == 0)
                break;
        if (f == sizeof(fields) / sizeof(fields[0]))
            return err_set(err, ERR_INVALID,
                           "datasources[%zu]: unknown field '%.40s'", i, key);
    }
    if (!name || !name_ok(name))
        return err_set(err, ERR_INVALID,
                       "datasources[%zu].name must be letters, digits, _ or "
                       "- (at most %d)",
                       i, NAME_MAX_LEN - 1);
    snprintf(d->name, sizeof(d->name), "%s", name);
    if (kind && strcmp(kind, "postgresql") == 0) {
        d->kind = DS_POSTGRESQL;
        if (!string_of(e, "conninfo"))
            return err_set(err, ERR_INVALID,
                           "datasources[%zu] (postgresql) needs conninfo", i);
        d->conninfo = xstrdup(string_of(e, "conninfo"));
        if (string_of(e, "password_file") &&
            read_password(&d->password, string_of(e, "password_file"), i,
                          err) < 0)
            return ERR_INVALID;
    } else if (kind && strcmp(kind, "sqlite") == 0) {
        d->kind = DS_SQLITE;
        if (!string_of(e, "path"))
            return err_set(err, ERR_INVALID,
                           "datasources[%zu] (sqlite) needs path", i);
        d->path = xstrdup(string_of(e, "path"));
    } else {
        return err_set(err, ERR_INVALID,
                       "datasources[%zu].kind must be postgresql or sqlite",
                       i);
    }
    rc = number(&d->max_rows, e, "max_rows", 10000, 1, 1000000, i, err);
    if (rc == 0)
        rc = number(&d->timeout_s, e, "timeout_s", 30, 1, 3600, i, err);
    if (rc == 0)
        rc = number(&d->cache_ttl_s, e, "cache_ttl_s", 0, 0, 86400, i, err);
    if (rc == 0)
        rc = number(&d->pool_size, e, "pool_size", 4, 1, 64, i, err);
    return rc;
}

int datasources_new(struct datasources **out, const char *config_json,
                    struct err *err)
{
    struct datasources *ds = xcalloc(1, sizeof(*ds));
    json_t *list = NULL, *e;
    size_t i, j;
    int rc = 0;

    *out = ds;
    if (!config_json || !*config_json)
        return 0;
    list = json_loads(config_json, 0, NULL);
    if (!json_is_array(list)) {
        json_decref(list);
        return err_set(err, ERR_INVALID, "datasources must be a list");
    }
    ds->v = xcalloc(json_array_size(list) + 1, sizeof(*ds->v));
    json_array_foreach(list, i, e) {
        struct datasource *d = &ds->v[i];

        pthread_mutex_init(&d->lock, NULL);
        util_cond_init_monotonic(&d->freed);
        ds->n = i + 1;
        rc = parse_entry(d, e, i, err);
        if (rc < 0)
            break;
        d->idle = xcalloc((size_t)d->pool_size, sizeof(*d->idle));
        for (j = 0; j < i; j++)
            if (strcmp(ds->v[j].name, d->name) == 0)
                rc = err_set(err, ERR_INVALID,
                             "datasources[%zu]: the name '%s' is taken", i,
                             d->name);
        if (rc < 0)
            break;
    }
    json_decref(list);
    return rc;
}

void datasources_free(struct datasources *ds)
{
    size_t i;

    if (!ds)
        return;
    for (i = 0; i < ds->n; i++) {
        struct datasource *d = &ds->v[i];

        for (long k = 0; k < d->n_idle; k++)
            PQfinish(d->idle[k]);
        free(d->idle);
        free(d->conninfo);
        if (d->password)
            OPENSSL_cleanse(d->password, strlen(d->password));
        free(d->password);
        free(d->path);
        pthread_mutex_destroy(&d->lock);
        pthread_cond_destroy(&d->freed);
    }
    free(ds->v);
    free(ds);
}

static struct datasource *find(struct datasources *ds, const char *name)
{
    size_t i;

    for (i = 0; ds && name && i < ds->n; i++)
        if (strcmp(ds->v[i].name, name) == 0)
            return &ds->v[i];
    return NULL;
}

static bool allowed_name(const char *allowed, const char *name)
{
    size_t n = strlen(name);
    const char *p;

    for (p = allowed; p && *p;) {
        size_t m = strcspn(p, "\n");

        if ((m == 1 && p[0] == '*') || (m == n && strncmp(p, name, n) == 0))
            return true;
        p += m + (p[m] == '\n');
    }
    return false;
}

int datasources_check(struct datasources *ds, const char *name,
                      const char *allowed, struct err *err)
{
    if (!name || !name_ok(name)) /* a URL with a password, say: not echoed */
        return err_set(err, ERR_INVALID,
                       "a datasource is named by letters, digits, _ and - "
                       "(see GET /v1/datasources)");
    if (!find(ds, name))
        return err_set(err, ERR_INVALID,
                       "unknown datasource '%s' (see GET /v1/datasources)",
                       name);
    if (!allowed_name(allowed, name))
        return err_set(err, ERR_FORBIDDEN,
                       "this key may not use datasource '%s' (its entry's "
                       "datasources)",
                       name);
    return 0;
}

json_t *datasources_list(struct datasources *ds, const char *allowed)
{
    json_t *list = json_array();
    size_t i;

    for (i = 0; ds && i < ds->n; i++) {
        if (!allowed_name(allowed, ds->v[i].name))
            continue;
        json_array_append_new(
            list,
            json_pack("{s:s, s:s, s:I, s:I}", "name", ds->v[i].name, "kind",
                      ds->v[i].kind == DS_POSTGRESQL ? "postgresql" : "sqlite",
                      "max_rows", (json_int_t)ds->v[i].max_rows, "timeout_s",
                      (json_int_t)ds->v[i].timeout_s));
    }
    return list;
}

long datasources_cache_ttl(struct datasources *ds, const char *name)
{
    struct datasource *d = find(ds, name);

    return d ? d->cache_ttl_s : 0;
}

/* Values --------------------------------------------------------------- */

/* A float as JSON: a number, or the name of what JSON cannot hold. */
static json_t *float_value(double v)
{
    if (isnan(v))
        return json_string("NaN");
    if (isinf(v))
        return json_string(v > 0 ? "Infinity" : "-Infinity");
    return json_real(v);
}

/* Text as a JSON string, invalid UTF-8 replaced rather than refused. */
static json_t *text_value(const char *s, size_t n)
{
    json_t *v = json_stringn(s, n);
    char *copy;
    size_t i;

    if (v)
        return v;
    copy = xstrndup(s, n);
    for (i = 0; i < n; i++)
        if ((unsigned char)copy[i] >= 0x80)
            copy[i] = '?';
    v = json_stringn(copy, n);
    free(copy);
    return v ? v : json_string("");
}

/* PostgreSQL's built-in types by OID: name and Table Schema type. */
static const struct {
    unsigned oid;
    const char *name, *type;
} pg_types[] = {
    {16, "boolean", "boolean"},
    {17, "bytea", "string"},
    {20, "bigint", "integer"},
    {21, "smallint", "integer"},
    {23, "integer", "integer"},
    {25, "text", "string"},
    {26, "oid", "integer"},
    {114, "json", "object"},
    {700, "real", "number"},
    {701, "double precision", "number"},
    {1042, "character", "string"},
    {1043, "character varying", "string"},
    {1082, "date", "date"},
    {1083, "time", "time"},
    {1114, "timestamp", "datetime"},
    {1184, "timestamp with time zone", "datetime"},
    {1186, "interval", "duration"},
    {1700, "numeric", "number"},
    {2950, "uuid", "string"},
    {3802, "jsonb", "object"},
};

static int pg_type_index(unsigned oid)
{
    size_t i;

    for (i = 0; i < sizeof(pg_types) / sizeof(pg_types[0]); i++)
        if (pg_types[i].oid == oid)
            return (int)i;
    return -1;
}

/* ISO 8601 from PostgreSQL's ISO output: a T between date and time, and
 * "Z" for the UTC offset the session is set to. */
static json_t *timestamp_value(const char *s, size_t n, bool tz)
{
    char iso[64];

    if (n >= sizeof(iso) - 4 || !strchr(s, ' '))
        return text_value(s, n); /* infinity, a BC date: as written */
    snprintf(iso, sizeof(iso), "%.*s", (int)n, s);
    iso[strcspn(iso, " ")] = 'T';
    if (tz && n > 3 && strcmp(iso + n - 3, "+00") == 0)
        snprintf(iso + n - 3, sizeof(iso) - (n - 3), "Z");
    return json_string(iso);
}

static json_t *pg_value(const PGresult *r, int col)
{
    const char *s = PQgetvalue(r, 0, col);
    size_t n = (size_t)PQgetlength(r, 0, col);
    unsigned oid = (unsigned)PQftype(r, col);
    json_t *j;

    if (PQgetisnull(r, 0, col))
        return json_null();
    switch (oid) {
    case 16:
        return json_boolean(s[0] == 't');
    case 20:
    case 21:
    case 23:
    case 26:
        return json_integer((json_int_t)strtoll(s, NULL, 10));
    case 700:
    case 701:
        return float_value(strtod(s, NULL));
    case 114:
    case 3802:
        j = json_loadb(s, n, JSON_DECODE_ANY, NULL);
        return j ? j : text_value(s, n);
    case 1114:
    case 1184:
        return timestamp_value(s, n, oid == 1184);
    default: /* numeric stays exact text; the rest as written */
        return text_value(s, n);
    }
}

static json_t *pg_fields(const PGresult *r)
{
    json_t *fields = json_array();
    int i, t;

    for (i = 0; i < PQnfields(r); i++) {
        t = pg_type_index((unsigned)PQftype(r, i));
        json_array_append_new(
            fields, json_pack("{s:o, s:s, s:s}", "name",
                              text_value(PQfname(r, i), strlen(PQfname(r, i))),
                              "type", t < 0 ? "string" : pg_types[t].type,
                              "db_type", t < 0 ? "other" : pg_types[t].name));
    }
    return fields;
}

/* PostgreSQL ----------------------------------------------------------- */

/* A connection of d's pool (*reused), or a new one while fewer than
 * pool_size are open; waits for one until deadline_ms. */
static PGconn *pg_acquire(struct datasource *d, long long deadline_ms,
                          const atomic_bool *cancel, bool *reused,
                          struct err *err)
{
    char timeout[24];
    /* keepalives and tcp_user_timeout: a peer that vanished is noticed in
     * seconds, by our own blocking commands (BEGIN, ROLLBACK) too */
    const char *keys[10] = {"dbname",
                            "connect_timeout",
                            "application_name",
                            "keepalives",
                            "keepalives_idle",
                            "keepalives_interval",
                            "keepalives_count",
                            "tcp_user_timeout",
                            NULL,
                            NULL};
    const char *values[10] = {d->conninfo, timeout, "nbcanvas", "1",  "5",
                              "2",         "3",     "10000",    NULL, NULL};
    PGconn *c = NULL;

    pthread_mutex_lock(&d->lock);
    while (d->n_idle == 0 && d->open >= d->pool_size) {
        struct timespec until = util_monotonic_in(POLL_SLICE_MS);

        if (util_now_ms() >= deadline_ms || (cancel && *cancel)) {
            pthread_mutex_unlock(&d->lock);
            err_set(err, ERR_TIMEOUT,
                    "every connection to datasource '%s' stayed busy past "
                    "its timeout",
                    d->name);
            return NULL;
        }
        pthread_cond_timedwait(&d->freed, &d->lock, &until);
    }
    if (d->n_idle > 0)
        c = d->idle[--d->n_idle];
    else
        d->open++;
    pthread_mutex_unlock(&d->lock);
    *reused = c != NULL;
    if (c && PQstatus(c) == CONNECTION_OK)
        return c;
    *reused = false;
    if (c) { /* broken while idle: a new one in its place */
        PQfinish(c);
        c = NULL;
    }
    snprintf(timeout, sizeof(timeout), "%ld",
             d->timeout_s < CONNECT_TIMEOUT_S ? d->timeout_s
                                              : CONNECT_TIMEOUT_S);
    if (d->password) {
        keys[8] = "password";
        values[8] = d->password;
    }
    c = PQconnectdbParams(keys, values, 1);
    if (PQstatus(c) != CONNECTION_OK) {
        char why[200];

        snprintf(why, sizeof(why), "%s", PQerrorMessage(c));
        why[strcspn(why, "\n")] = '\0';
        PQfinish(c);
        pthread_mutex_lock(&d->lock);
        d->open--;
        pthread_cond_signal(&d->freed);
        pthread_mutex_unlock(&d->lock);
        /* libpq's words name hosts and users: the operator's log has them */
        fprintf(stderr, "nbcanvas: datasource '%s': %s\n", d->name, why);
        err_set(err, ERR_DATASOURCE,
                "datasource '%s' does not answer; try again later", d->name);
        return NULL;
    }
    return c;
}

/* Back to the pool when it is clean, else closed. */
static void pg_release(struct datasource *d, PGconn *c, bool clean)
{
    pthread_mutex_lock(&d->lock);
    if (clean && PQstatus(c) == CONNECTION_OK && d->n_idle < d->pool_size) {
        d->idle[d->n_idle++] = c;
        c = NULL;
    } else {
        d->open--;
    }
    pthread_cond_signal(&d->freed);
    pthread_mutex_unlock(&d->lock);
    PQfinish(c);
}

/* Runs one of our own commands; false when it failed. */
static bool pg_command(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;

    PQclear(r);
    return ok;
}

static void pg_cancel(PGconn *c)
{
    char why[64];
    PGcancel *k = PQgetCancel(c);

    if (k) {
        PQcancel(k, why, sizeof(why));
        PQfreeCancel(k);
    }
}

/* The state of one query on a connection. */
struct pg_run {
    struct datasource *d;
    PGconn *c;
    long long deadline_ms;
    const atomic_bool *cancel;
    json_t *fields, *rows;
    long long bytes; /* the values' bytes so far */
    bool truncated, cancelled_by_us, gone, abandoned, copying;
    int code; /* the first error */
    json_t *details;
    struct err *err;
};

static void pg_error(struct pg_run *run, const PGresult *r)
{
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    const char *pos = PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION);

    if (run->code < 0 || run->truncated)
        return; /* the rows past max_rows were cut by us */
    if (run->gone) {
        run->code = err_set(run->err, ERR_CANCELLED, "the client went away");
    } else if (state && strcmp(state, "57014") == 0) {
        run->code = err_set(run->err, ERR_TIMEOUT,
                            "the query ran past datasource '%s''s timeout of "
                            "%ld s",
                            run->d->name, run->d->timeout_s);
    } else {
        run->code = err_set(run->err, ERR_SQL, "%s",
                            msg ? msg : "the query failed");
        if (pos)
            run->details = json_pack("{s:I}", "position",
                                     (json_int_t)strtol(pos, NULL, 10));
    }
}

/* Waits until a result can be read without blocking, cancelling the
 * statement at the deadline or when the client goes. */
static bool pg_wait(struct pg_run *run)
{
    while (PQisBusy(run->c)) {
        struct pollfd p = {PQsocket(run->c), POLLIN, 0};
        long long now = util_now_ms();

        if (!run->cancelled_by_us &&
            ((run->cancel && *run->cancel) || now >= run->deadline_ms)) {
            run->gone = run->cancel && *run->cancel;
            run->cancelled_by_us = true;
            pg_cancel(run->c);
        }
        if (now >= run->deadline_ms + CANCEL_GRACE_MS) {
            run->abandoned = true; /* a server that does not answer even a
                                      cancel: the connection goes */
            return false;
        }
        if (poll(&p, 1, POLL_SLICE_MS) < 0 && errno != EINTR)
            return false;
        if (!PQconsumeInput(run->c))
            return false;
    }
    return true;
}

static void pg_take(struct pg_run *run, PGresult *r)
{
    json_t *row;
    int i;

    switch (PQresultStatus(r)) {
    case PGRES_SINGLE_TUPLE:
        if (!run->fields)
            run->fields = pg_fields(r);
        for (i = 0; i < PQnfields(r); i++)
            run->bytes += PQgetlength(r, 0, i) + 8;
        if ((long)json_array_size(run->rows) >= run->d->max_rows ||
            run->bytes > MAX_RESULT_BYTES) {
            if (!run->truncated)
                pg_cancel(run->c); /* the rest is not wanted */
            run->truncated = true;
            break;
        }
        row = json_array();
        for (i = 0; i < PQnfields(r); i++)
            json_array_append_new(row, pg_value(r, i));
        json_array_append_new(run->rows, row);
        break;
    case PGRES_TUPLES_OK:
    case PGRES_COMMAND_OK:
        if (!run->fields)
            run->fields = pg_fields(r);
        break;
    case PGRES_FATAL_ERROR:
        pg_error(run, r);
        break;
    default: /* COPY: libpq would hand it out again and again */
        run->copying = true;
        if (run->code == 0)
            run->code = err_set(run->err, ERR_SQL,
                                "COPY is not served here (a query that "
                                "returns rows is)");
        break;
    }
}

static int query_pg(struct datasource *d, const char *query,
                    const atomic_bool *cancel, json_t **out, json_t **details,
                    struct err *err)
{
    long long deadline = util_now_ms() + d->timeout_s * 1000;
    struct pg_run run = {.d = d,
                         .deadline_ms = deadline,
                         .cancel = cancel,
                         .rows = json_array(),
                         .err = err};
    char settings[320];
    bool clean, reused = true;
    PGresult *r;

    /* a pooled connection the server ended (a restart, an idle timeout, a
     * terminated backend) fails its BEGIN: once, a new one in its place */
    while (reused) {
        run.c = pg_acquire(d, deadline, cancel, &reused, err);
        if (!run.c) {
            json_decref(run.rows);
            return err->code;
        }
        if (pg_command(run.c, "BEGIN TRANSACTION READ ONLY"))
            break;
        if (!reused)
            break; /* a new one that fails: said below */
        pg_release(d, run.c, false);
    }
    /* our own fixed commands; the user's statement goes alone, next */
    snprintf(settings, sizeof(settings),
             "SET LOCAL statement_timeout = %ld; SET LOCAL lock_timeout = "
             "%ld; SET LOCAL idle_in_transaction_session_timeout = %ld; SET "
             "LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; SET "
             "LOCAL extra_float_digits = 3",
             d->timeout_s * 1000, d->timeout_s * 1000,
             (d->timeout_s + 5) * 1000);
    if (PQtransactionStatus(run.c) != PQTRANS_INTRANS ||
        !pg_command(run.c, settings) ||
        !PQsendQueryParams(run.c, query, 0, NULL, NULL, NULL, NULL, 0) ||
        !PQsetSingleRowMode(run.c)) {
        char why[200];

        snprintf(why, sizeof(why), "%s", PQerrorMessage(run.c));
        why[strcspn(why, "\n")] = '\0';
        fprintf(stderr, "nbcanvas: datasource '%s': %s\n", d->name, why);
        err_set(err, ERR_DATASOURCE,
                "datasource '%s' does not answer; try again later", d->name);
        pg_release(d, run.c, false);
        json_decref(run.rows);
        return ERR_DATASOURCE;
    }
    while (!run.copying && pg_wait(&run) && (r = PQgetResult(run.c)) != NULL) {
        pg_take(&run, r);
        PQclear(r);
    }
    if (run.abandoned && run.code == 0)
        run.code = err_set(err, ERR_TIMEOUT,
                           "datasource '%s' did not answer within its timeout "
                           "of %ld s",
                           d->name, d->timeout_s);
    if (PQstatus(run.c) != CONNECTION_OK && run.code == 0)
        run.code = err_set(err, ERR_DATASOURCE,
                           "datasource '%s' closed the connection", d->name);
    if (run.code == 0 && run.cancelled_by_us && !run.truncated)
        run.code = run.gone
                       ? err_set(err, ERR_CANCELLED, "the client went away")
                       : err_set(err, ERR_TIMEOUT,
                                 "the query ran past datasource '%s''s "
                                 "timeout of %ld s",
                                 d->name, d->timeout_s);
    /* whatever the statement was (a COMMIT too), nothing it set stays */
    clean = !run.copying && !run.abandoned &&
            PQstatus(run.c) == CONNECTION_OK &&
            PQtransactionStatus(run.c) != PQTRANS_ACTIVE;
    if (clean) {
        PQclear(PQexec(run.c, "ROLLBACK"));
        clean = pg_command(run.c, "DISCARD ALL");
    }
    pg_release(d, run.c, clean);
    if (run.code < 0) {
        json_decref(run.fields);
        json_decref(run.rows);
        *details = run.details;
        return run.code;
    }
    *out = json_pack("{s:{s:o}, s:o, s:I, s:b}", "schema", "fields",
                     run.fields ? run.fields : json_array(), "rows", run.rows,
                     "total_rows", (json_int_t)json_array_size(run.rows),
                     "truncated", run.truncated);
    return 0;
}

/* SQLite --------------------------------------------------------------- */

/* No ATTACH (another file of the host), no pragma (query_only off). */
static int deny_outside(void *ctx, int action, const char *a, const char *b,
                        const char *c, const char *d)
{
    (void)ctx;
    (void)a;
    (void)b;
    (void)c;
    (void)d;
    return action == SQLITE_ATTACH || action == SQLITE_DETACH ||
                   action == SQLITE_PRAGMA
               ? SQLITE_DENY
               : SQLITE_OK;
}

struct sqlite_watch {
    long long deadline_ms;
    const atomic_bool *cancel;
};

static int sqlite_progress(void *ctx)
{
    struct sqlite_watch *w = ctx;

    return (w->cancel && *w->cancel) || util_now_ms() >= w->deadline_ms;
}

static const char *sqlite_type(const char *decl, int storage)
{
    if (decl) {
        if (strcasestr(decl, "INT"))
            return "integer";
        if (strcasestr(decl, "BOOL"))
            return "boolean";
        if (strcasestr(decl, "DATETIME") || strcasestr(decl, "TIMESTAMP"))
            return "datetime";
        if (strcasestr(decl, "DATE"))
            return "date";
        if (strcasestr(decl, "REAL") || strcasestr(decl, "FLOA") ||
            strcasestr(decl, "DOUB") || strcasestr(decl, "NUMERIC") ||
            strcasestr(decl, "DECIMAL"))
            return "number";
        if (strcasestr(decl, "CHAR") || strcasestr(decl, "TEXT") ||
            strcasestr(decl, "CLOB"))
            return "string";
    }
    return storage == SQLITE_INTEGER ? "integer"
           : storage == SQLITE_FLOAT ? "number"
                                     : "string";
}

static json_t *sqlite_value(sqlite3_stmt *st, int col)
{
    const unsigned char *blob;
    char *hex;
    int n, i;
    json_t *v;

    switch (sqlite3_column_type(st, col)) {
    case SQLITE_INTEGER:
        return json_integer((json_int_t)sqlite3_column_int64(st, col));
    case SQLITE_FLOAT:
        return float_value(sqlite3_column_double(st, col));
    case SQLITE_TEXT:
        return text_value((const char *)sqlite3_column_text(st, col),
                          (size_t)sqlite3_column_bytes(st, col));
    case SQLITE_BLOB:
        blob = sqlite3_column_blob(st, col);
        n = sqlite3_column_bytes(st, col);
        hex = xmalloc((size_t)n * 2 + 3);
        snprintf(hex, 3, "\\x");
        for (i = 0; i < n; i++)
            snprintf(hex + 2 + i * 2, 3, "%02x", blob[i]);
        v = json_string(hex);
        free(hex);
        return v;
    default:
        return json_null();
    }
}

static int sqlite_error(sqlite3 *db, struct err *err, json_t **details)
{
    int off = sqlite3_error_offset(db);

    if (off >= 0)
        *details = json_pack("{s:i}", "position", off + 1);
    return err_set(err, ERR_SQL, "%s", sqlite3_errmsg(db));
}

static int sqlite_open(sqlite3 **db, struct datasource *d, struct err *err)
{
    if (sqlite3_open_v2(d->path, db,
                        SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        err_set(err, ERR_DATASOURCE, "datasource '%s' cannot be opened: %s",
                d->name, *db ? sqlite3_errmsg(*db) : "out of memory");
        sqlite3_close(*db);
        *db = NULL;
        return ERR_DATASOURCE;
    }
    sqlite3_limit(*db, SQLITE_LIMIT_ATTACHED, 0);
    sqlite3_limit(*db, SQLITE_LIMIT_LENGTH, 16 << 20); /* a value, at most */
    sqlite3_db_config(*db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
    sqlite3_exec(*db, "PRAGMA query_only = ON", NULL, NULL, NULL);
    sqlite3_busy_timeout(*db, (int)(d->timeout_s * 1000));
    return 0;
}

static int query_sqlite(struct datasource *d, const char *query, size_t len,
                        const atomic_bool *cancel, json_t **out,
                        json_t **details, struct err *err)
{
    struct sqlite_watch watch = {util_now_ms() + d->timeout_s * 1000, cancel};
    sqlite3_stmt *st = NULL, *more = NULL;
    json_t *fields, *rows, *row;
    const char *tail;
    long long bytes = 0;
    bool truncated = false;
    sqlite3 *db;
    int rc, i, n;

    if (sqlite_open(&db, d, err) < 0)
        return ERR_DATASOURCE;
    sqlite3_set_authorizer(db, deny_outside, NULL);
    sqlite3_progress_handler(db, 1000, sqlite_progress, &watch);
    if (sqlite3_prepare_v2(db, query, (int)len, &st, &tail) != SQLITE_OK) {
        rc = sqlite_error(db, err, details);
        sqlite3_close(db);
        return rc;
    }
    /* a second statement in the tail (comments and blanks are none) */
    if (st && tail &&
        sqlite3_prepare_v2(db, tail, (int)(len - (size_t)(tail - query)),
                           &more, NULL) == SQLITE_OK &&
        more) {
        sqlite3_finalize(more);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return err_set(err, ERR_SQL, "one statement only, please");
    }
    if (!st || !sqlite3_stmt_readonly(st)) {
        sqlite3_finalize(st);
        sqlite3_close(db);
        return err_set(err, ERR_SQL,
                       st ? "the statement would write; datasources are read "
                            "only"
                          : "no statement");
    }
    n = sqlite3_column_count(st);
    rows = json_array();
    fields = NULL;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (!fields) {
            fields = json_array();
            for (i = 0; i < n; i++) {
                const char *name = sqlite3_column_name(st, i);
                const char *decl = sqlite3_column_decltype(st, i);

                json_array_append_new(
                    fields,
                    json_pack("{s:o, s:s, s:s}", "name",
                              text_value(name, strlen(name)), "type",
                              sqlite_type(decl, sqlite3_column_type(st, i)),
                              "db_type", decl ? decl : ""));
            }
        }
        for (i = 0; i < n; i++)
            bytes += sqlite3_column_bytes(st, i) + 8;
        if ((long)json_array_size(rows) >= d->max_rows ||
            bytes > MAX_RESULT_BYTES) {
            truncated = true;
            break;
        }
        row = json_array();
        for (i = 0; i < n; i++)
            json_array_append_new(row, sqlite_value(st, i));
        json_array_append_new(rows, row);
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        if (rc == SQLITE_INTERRUPT)
            rc = cancel && *cancel
                     ? err_set(err, ERR_CANCELLED, "the client went away")
                     : err_set(err, ERR_TIMEOUT,
                               "the query ran past datasource '%s''s timeout "
                               "of %ld s",
                               d->name, d->timeout_s);
        else
            rc = sqlite_error(db, err, details);
        json_decref(fields);
        json_decref(rows);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return rc;
    }
    if (!fields) { /* no row: the names and declared types still */
        fields = json_array();
        for (i = 0; i < n; i++) {
            const char *name = sqlite3_column_name(st, i);

            json_array_append_new(
                fields, json_pack("{s:o, s:s, s:s}", "name",
                                  text_value(name, strlen(name)), "type",
                                  sqlite_type(sqlite3_column_decltype(st, i),
                                              SQLITE_NULL),
                                  "db_type",
                                  sqlite3_column_decltype(st, i)
                                      ? sqlite3_column_decltype(st, i)
                                      : ""));
        }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    *out = json_pack("{s:{s:o}, s:o, s:I, s:b}", "schema", "fields", fields,
                     "rows", rows, "total_rows",
                     (json_int_t)json_array_size(rows), "truncated",
                     truncated);
    return 0;
}

int datasources_query(struct datasources *ds, const char *name,
                      const char *query, size_t len, const atomic_bool *cancel,
                      json_t **out, json_t **details, struct err *err)
{
    struct datasource *d = find(ds, name);
    long long t0 = util_now_ms();
    char *text;
    int rc;

    *out = *details = NULL;
    if (!d)
        return err_set(err, ERR_INVALID, "unknown datasource '%.64s'",
                       name ? name : "");
    if (memchr(query, '\0', len))
        return err_set(err, ERR_SQL, "the query holds a NUL byte");
    text = xstrndup(query, len);
    rc = d->kind == DS_POSTGRESQL
             ? query_pg(d, text, cancel, out, details, err)
             : query_sqlite(d, text, len, cancel, out, details, err);
    free(text);
    pthread_mutex_lock(&d->lock);
    d->queries++;
    d->errors += rc < 0;
    d->rows += rc == 0
                   ? json_integer_value(json_object_get(*out, "total_rows"))
                   : 0;
    d->ms += util_now_ms() - t0;
    pthread_mutex_unlock(&d->lock);
    return rc;
}

/* The schema ----------------------------------------------------------- */

/* The rows of one of our own catalogue queries, or NULL with err set. */
static json_t *catalogue(struct datasources *ds, const char *name,
                         const char *sql, struct err *err)
{
    json_t *out = NULL, *details = NULL, *rows;

    if (datasources_query(ds, name, sql, strlen(sql), NULL, &out, &details,
                          err) < 0) {
        json_decref(details);
        return NULL;
    }
    rows = json_incref(json_object_get(out, "rows"));
    json_decref(out);
    return rows;
}

/* One more column of foreign key fk and the column it refers to (both
 * taken). */
static void fk_add(json_t *fk, json_t *column, json_t *referred)
{
    json_array_append_new(json_object_get(fk, "columns"), column);
    json_array_append_new(
        json_object_get(json_object_get(fk, "references"), "columns"),
        referred);
}

/* The table of rows[i] = [schema, table, ...], made on first sight. */
static json_t *table_of(json_t *tables, json_t *by_name, json_t *row)
{
    const char *schema = json_string_value(json_array_get(row, 0));
    const char *name = json_string_value(json_array_get(row, 1));
    char *key = xasprintf("%s.%s", schema ? schema : "", name ? name : "");
    json_t *t = json_object_get(by_name, key);

    if (!t) {
        t = json_pack("{s:s?, s:s?, s:[], s:[], s:[]}", "schema", schema,
                      "name", name, "columns", "primary_key", "foreign_keys");
        json_array_append_new(tables, t);
        json_object_set(by_name, key, t);
    }
    free(key);
    return t;
}

static const char PG_COLUMNS[] =
    "SELECT c.table_schema, c.table_name, c.column_name, c.data_type, "
    "c.is_nullable = 'YES', col_description(format('%I.%I', c.table_schema, "
    "c.table_name)::regclass, c.ordinal_position::int), "
    "obj_description(format('%I.%I', c.table_schema, "
    "c.table_name)::regclass, 'pg_class') "
    "FROM information_schema.columns c "
    "WHERE c.table_schema NOT IN ('pg_catalog', 'information_schema') "
    "ORDER BY 1, 2, c.ordinal_position";
static const char PG_PRIMARY[] =
    "SELECT n.nspname, t.relname, a.attname FROM pg_constraint k "
    "JOIN pg_class t ON t.oid = k.conrelid "
    "JOIN pg_namespace n ON n.oid = t.relnamespace "
    "CROSS JOIN LATERAL unnest(k.conkey) WITH ORDINALITY AS u(col, i) "
    "JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.col "
    "WHERE k.contype = 'p' AND n.nspname NOT IN ('pg_catalog', "
    "'information_schema') ORDER BY 1, 2, u.i";
static const char PG_FOREIGN[] =
    "SELECT n.nspname, t.relname, k.conname, a.attname, ft.relname, "
    "fa.attname FROM pg_constraint k "
    "JOIN pg_class t ON t.oid = k.conrelid "
    "JOIN pg_namespace n ON n.oid = t.relnamespace "
    "JOIN pg_class ft ON ft.oid = k.confrelid "
    "CROSS JOIN LATERAL unnest(k.conkey, k.confkey) WITH ORDINALITY AS "
    "u(col, fcol, i) "
    "JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.col "
    "JOIN pg_attribute fa ON fa.attrelid = k.confrelid AND fa.attnum = "
    "u.fcol "
    "WHERE k.contype = 'f' AND n.nspname NOT IN ('pg_catalog', "
    "'information_schema') ORDER BY 1, 2, 3, u.i";

static int schema_pg(struct datasources *ds, const char *name, json_t *tables,
                     struct err *err)
{
    json_t *by_name = json_object(), *cols, *pks, *fks, *row, *t;
    size_t i;

    cols = catalogue(ds, name, PG_COLUMNS, err);
    pks = cols ? catalogue(ds, name, PG_PRIMARY, err) : NULL;
    fks = pks ? catalogue(ds, name, PG_FOREIGN, err) : NULL;
    if (!fks) {
        json_decref(cols);
        json_decref(pks);
        json_decref(by_name);
        return err->code;
    }
    json_array_foreach(cols, i, row) {
        t = table_of(tables, by_name, row);
        if (!json_object_get(t, "comment"))
            json_object_set(t, "comment", json_array_get(row, 6));
        json_array_append_new(json_object_get(t, "columns"),
                              json_pack("{s:O, s:O, s:O, s:O}", "name",
                                        json_array_get(row, 2), "type",
                                        json_array_get(row, 3), "nullable",
                                        json_array_get(row, 4), "comment",
                                        json_array_get(row, 5)));
    }
    json_array_foreach(pks, i, row) {
        t = table_of(tables, by_name, row);
        json_array_append(json_object_get(t, "primary_key"),
                          json_array_get(row, 2));
    }
    json_array_foreach(fks, i, row) {
        json_t *list, *last;
        const char *con = json_string_value(json_array_get(row, 2));

        t = table_of(tables, by_name, row);
        list = json_object_get(t, "foreign_keys");
        last = json_array_get(list, json_array_size(list) - 1);
        if (!last || !con ||
            strcmp(json_string_value(json_object_get(last, "name")), con)) {
            last = json_pack("{s:O, s:[], s:{s:O, s:[]}}", "name",
                             json_array_get(row, 2), "columns", "references",
                             "table", json_array_get(row, 4), "columns");
            json_array_append_new(list, last);
        }
        fk_add(last, json_incref(json_array_get(row, 3)),
               json_incref(json_array_get(row, 5)));
    }
    json_decref(cols);
    json_decref(pks);
    json_decref(fks);
    json_decref(by_name);
    return 0;
}

/* SQLite's catalogue through its table-valued pragma functions, on a
 * connection of our own (the user's queries may not use pragmas). */
static int schema_sqlite(struct datasource *d, json_t *tables, struct err *err)
{
    static const char TABLES[] =
        "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') AND "
        "name NOT LIKE 'sqlite_%' ORDER BY name";
    sqlite3_stmt *st = NULL, *cols = NULL, *fks = NULL;
    sqlite3 *db;

    if (sqlite_open(&db, d, err) < 0)
        return ERR_DATASOURCE;
    if (sqlite3_prepare_v2(db, TABLES, -1, &st, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "SELECT name, type, \"notnull\", pk FROM "
                           "pragma_table_info(?1) ORDER BY cid",
                           -1, &cols, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "SELECT id, \"from\", \"table\", \"to\" FROM "
                           "pragma_foreign_key_list(?1) ORDER BY id, seq",
                           -1, &fks, NULL) != SQLITE_OK) {
        json_t *ignored = NULL;
        int rc = sqlite_error(db, err, &ignored);

        json_decref(ignored);
        sqlite3_finalize(st);
        sqlite3_finalize(cols);
        sqlite3_finalize(fks);
        sqlite3_close(db);
        return rc;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        json_t *t = json_pack("{s:n, s:s, s:n, s:[], s:[], s:[]}", "schema",
                              "name", name, "comment", "columns",
                              "primary_key", "foreign_keys");
        long last_id = -1;
        json_t *fk = NULL;

        sqlite3_bind_text(cols, 1, name, -1, SQLITE_TRANSIENT);
        while (sqlite3_step(cols) == SQLITE_ROW) {
            json_t *col = sqlite_value(cols, 0);

            json_array_append_new(
                json_object_get(t, "columns"),
                json_pack("{s:o, s:o, s:b, s:n}", "name", json_incref(col),
                          "type", sqlite_value(cols, 1), "nullable",
                          !sqlite3_column_int(cols, 2), "comment"));
            if (sqlite3_column_int(cols, 3) > 0)
                json_array_append(json_object_get(t, "primary_key"), col);
            json_decref(col);
        }
        sqlite3_reset(cols);
        sqlite3_bind_text(fks, 1, name, -1, SQLITE_TRANSIENT);
        while (sqlite3_step(fks) == SQLITE_ROW) {
            if (sqlite3_column_int(fks, 0) != last_id) {
                last_id = sqlite3_column_int(fks, 0);
                fk = json_pack("{s:n, s:[], s:{s:o, s:[]}}", "name", "columns",
                               "references", "table", sqlite_value(fks, 2),
                               "columns");
                json_array_append_new(json_object_get(t, "foreign_keys"), fk);
            }
            fk_add(fk, sqlite_value(fks, 1), sqlite_value(fks, 3));
        }
        sqlite3_reset(fks);
        json_array_append_new(tables, t);
    }
    sqlite3_finalize(st);
    sqlite3_finalize(cols);
    sqlite3_finalize(fks);
    sqlite3_close(db);
    return 0;
}

int datasources_schema(struct datasources *ds, const char *name, json_t **out,
                       struct err *err)
{
    struct datasource *d = find(ds, name);
    json_t *tables = json_array();
    int rc;

    if (!d) {
        json_decref(tables);
        return err_set(err, ERR_INVALID, "unknown datasource '%.64s'", name);
    }
    rc = d->kind == DS_POSTGRESQL ? schema_pg(ds, name, tables, err)
                                  : schema_sqlite(d, tables, err);
    if (rc < 0) {
        json_decref(tables);
        return rc;
    }
    *out = json_pack("{s:s, s:s, s:o}", "name", d->name, "kind",
                     d->kind == DS_POSTGRESQL ? "postgresql" : "sqlite",
                     "tables", tables);
    return 0;
}

void datasources_metrics(struct datasources *ds, struct buf *out)
{
    size_t i;

    if (!ds || ds->n == 0)
        return;
    buf_puts(out, "# TYPE nbcanvas_datasource_queries_total counter\n"
                  "# TYPE nbcanvas_datasource_errors_total counter\n"
                  "# TYPE nbcanvas_datasource_rows_total counter\n"
                  "# TYPE nbcanvas_datasource_seconds_total counter\n");
    for (i = 0; i < ds->n; i++) {
        struct datasource *d = &ds->v[i];

        pthread_mutex_lock(&d->lock);
        buf_printf(out,
                   "nbcanvas_datasource_queries_total{datasource=\"%s\"} "
                   "%lld\n"
                   "nbcanvas_datasource_errors_total{datasource=\"%s\"} %lld\n"
                   "nbcanvas_datasource_rows_total{datasource=\"%s\"} %lld\n"
                   "nbcanvas_datasource_seconds_total{datasource=\"%s\"} "
                   "%.3f\n",
                   d->name, d->queries, d->name, d->errors, d->name, d->rows,
                   d->name, (double)d->ms / 1000.0);
        pthread_mutex_unlock(&d->lock);
    }
}
