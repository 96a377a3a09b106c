/*
 * The datasource routes: GET /v1/datasources (the caller's), GET
 * /v1/datasources/{name}/schema (what a Text2SQL prompt needs) and POST
 * /v1/sql (one query's rows as a table page, Table Schema JSON or CSV,
 * with no notebook around them). The queries themselves are
 * datasources.c's; a tenant sees and uses only the datasources its key's
 * entry lists.
 */
#include <stdlib.h>
#include <string.h>

#include "http_internal.h"
#include "nbcanvas/buf.h"
#include "nbcanvas/datasources.h"
#include "nbcanvas/service.h"
#include "nbcanvas/util.h"

int http_list_datasources(struct http_server *s, struct MHD_Connection *c,
                          struct exchange *x)
{
    return http_send_json(
        c, x, 200,
        datasources_list(s->svc->pipe.datasources, x->tenant.datasources));
}

int http_datasource_schema(struct http_server *s, struct MHD_Connection *c,
                           struct exchange *x)
{
    struct err err = ERR_INIT;
    json_t *out = NULL;
    int rc = datasources_check(s->svc->pipe.datasources, x->params[0],
                               x->tenant.datasources, &err);

    if (rc == ERR_INVALID) /* a path that names nothing */
        rc = err_set(&err, ERR_NOT_FOUND, "no datasource '%.64s'",
                     x->params[0]);
    if (rc == 0)
        rc = datasources_schema(s->svc->pipe.datasources, x->params[0], &out,
                                &err);
    if (rc < 0)
        return http_send_error(c, x, rc, err.msg, NULL);
    return http_send_json(c, x, 200, out);
}

/* The rows as records, the way pandas' Table Schema JSON has them. */
static json_t *table_schema(json_t *result)
{
    json_t *fields = json_object_get(json_object_get(result, "schema"),
                                     "fields");
    json_t *data = json_array(), *row, *f;
    size_t i, j;

    json_array_foreach(json_object_get(result, "rows"), i, row) {
        json_t *record = json_object();

        json_array_foreach(fields, j, f) {
            json_object_set(record,
                            json_string_value(json_object_get(f, "name")),
                            json_array_get(row, j));
        }
        json_array_append_new(data, record);
    }
    return json_pack("{s:{s:O, s:[]}, s:o, s:O, s:O}", "schema", "fields",
                     fields, "primaryKey", "data", data, "total_rows",
                     json_object_get(result, "total_rows"), "truncated",
                     json_object_get(result, "truncated"));
}

/* One value as text: strings as they are, the rest as JSON. */
static char *cell_text(json_t *v)
{
    if (json_is_null(v))
        return xstrdup("");
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    return json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
}

/* RFC 4180: a field with a comma, a quote or a line break is quoted. */
static void csv_field(struct buf *b, const char *s)
{
    if (!s[strcspn(s, ",\"\r\n")]) {
        buf_puts(b, s);
        return;
    }
    buf_puts(b, "\"");
    for (; *s; s++)
        buf_puts(b, *s == '"' ? "\"\"" : (char[]){*s, '\0'});
    buf_puts(b, "\"");
}

static char *csv(json_t *result, size_t *len)
{
    json_t *fields = json_object_get(json_object_get(result, "schema"),
                                     "fields");
    struct buf b = BUF_INIT((size_t)-1);
    json_t *row, *f;
    size_t i, j;

    json_array_foreach(fields, j, f) {
        if (j)
            buf_puts(&b, ",");
        csv_field(&b, json_string_value(json_object_get(f, "name")));
    }
    buf_puts(&b, "\r\n");
    json_array_foreach(json_object_get(result, "rows"), i, row) {
        json_array_foreach(fields, j, f) {
            char *text = cell_text(json_array_get(row, j));

            if (j)
                buf_puts(&b, ",");
            csv_field(&b, text);
            free(text);
        }
        buf_puts(&b, "\r\n");
    }
    return buf_detach(&b, len);
}

static void html_text(struct buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            buf_puts(b, "&lt;");
            break;
        case '>':
            buf_puts(b, "&gt;");
            break;
        case '&':
            buf_puts(b, "&amp;");
            break;
        case '"':
            buf_puts(b, "&quot;");
            break;
        default:
            buf_append(b, s, 1);
        }
    }
}

/* A page of the table alone, every value escaped: no script, no link. */
static char *page(json_t *result, const char *datasource, size_t *len)
{
    json_t *fields = json_object_get(json_object_get(result, "schema"),
                                     "fields");
    struct buf b = BUF_INIT((size_t)-1);
    json_t *row, *f;
    size_t i, j;

    buf_puts(&b, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
                 "<title>");
    html_text(&b, datasource);
    buf_puts(&b, "</title><style>body{font:14px system-ui,sans-serif;"
                 "margin:1em}table{border-collapse:collapse}"
                 "th,td{border-bottom:1px solid #ddd;padding:4px 10px;"
                 "text-align:right}th{background:#f5f5f5}"
                 "td.s{text-align:left}p{color:#666}</style></head><body>"
                 "<table class=\"dataframe\"><thead><tr>");
    json_array_foreach(fields, j, f) {
        buf_puts(&b, "<th>");
        html_text(&b, json_string_value(json_object_get(f, "name")));
        buf_puts(&b, "</th>");
    }
    buf_puts(&b, "</tr></thead><tbody>");
    json_array_foreach(json_object_get(result, "rows"), i, row) {
        buf_puts(&b, "<tr>");
        json_array_foreach(fields, j, f) {
            char *text = cell_text(json_array_get(row, j));

            buf_puts(&b, json_is_string(json_array_get(row, j))
                             ? "<td class=\"s\">"
                             : "<td>");
            html_text(&b, text);
            buf_puts(&b, "</td>");
            free(text);
        }
        buf_puts(&b, "</tr>");
    }
    buf_printf(&b, "</tbody></table><p>%zu rows%s</p></body></html>\n",
               json_array_size(json_object_get(result, "rows")),
               json_is_true(json_object_get(result, "truncated"))
                   ? ", cut at the datasource's max_rows"
                   : "");
    return buf_detach(&b, len);
}

int http_sql(struct http_server *s, struct MHD_Connection *c,
             struct exchange *x)
{
    struct hangup_watch watch;
    struct sql_request req;
    struct err err = ERR_INIT;
    json_t *result = NULL, *details = NULL;
    struct answer a = {.status = 200};
    int rc;

    rc = request_parse_sql(&req, x->body.data, x->body.len, &err);
    if (rc == 0)
        rc = datasources_check(s->svc->pipe.datasources, req.datasource,
                               x->tenant.datasources, &err);
    if (rc == 0) {
        http_watch_start(&watch, c);
        rc = datasources_query(s->svc->pipe.datasources, req.datasource,
                               req.query, req.query_len, &watch.cancel,
                               &result, &details, &err);
        http_watch_stop(&watch);
    }
    if (rc < 0) {
        request_sql_release(&req);
        rc = http_send_error(c, x, rc, err.msg, details);
        json_decref(details);
        return rc;
    }
    if (req.format == SQL_JSON) {
        request_sql_release(&req);
        rc = http_send_json(c, x, 200, table_schema(result));
        json_decref(result);
        return rc;
    }
    if (req.format == SQL_CSV) {
        a.payload.content_type = "text/csv; charset=utf-8";
        a.payload.body = csv(result, &a.payload.len);
    } else {
        a.payload.content_type = "text/html; charset=utf-8";
        a.csp = s->svc->cfg.html_csp;
        a.payload.body = page(result, req.datasource, &a.payload.len);
    }
    request_sql_release(&req);
    json_decref(result);
    return http_respond(c, x, &a);
}
