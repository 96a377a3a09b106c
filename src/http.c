/*
 * HTTP with libmicrohttpd, one thread per connection: a render holds its
 * thread for seconds, so connections must not share a polling thread. MHD
 * enforces the connection caps (total and per IP) and the inactivity
 * timeout; this file enforces the body cap (413 as soon as a body is known
 * to be too big, before it is buffered), the content type, the route table
 * and the error format. MHD contract: MHD_queue_response takes its own
 * reference, so every response is destroyed right after queueing.
 *
 * How answers are built and a hung-up client noticed is http_answer.c's;
 * the gauges of /metrics are gauges.c's; the route families live in
 * http_sessions.c, http_stream.c, http_sql.c, http_mcp.c and the gateway's
 * http_gateway.c, each using http_internal.h and none another.
 */
#include "nbcanvas/http.h"

#include "http_internal.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "nbcanvas/api_doc.h"
#include "nbcanvas/buf.h"
#include "nbcanvas/cache.h"
#include "nbcanvas/cluster_limits.h"
#include "nbcanvas/conn_guard.h"
#include "nbcanvas/datasources.h"
#include "nbcanvas/exporter.h"
#include "nbcanvas/formats.h"
#include "nbcanvas/gauges.h"
#include "nbcanvas/janitor.h"
#include "nbcanvas/packages.h"
#include "nbcanvas/pool.h"
#include "nbcanvas/languages.h"
#include "nbcanvas/metrics.h"
#include "nbcanvas/notebook.h"
#include "nbcanvas/render.h"
#include "nbcanvas/request.h"
#include "nbcanvas/runner.h"
#include "nbcanvas/sandbox.h"
#include "nbcanvas/sessions.h"
#include "nbcanvas/tarball.h"
#include "nbcanvas/tenants.h"
#include "nbcanvas/util.h"

/* At shutdown, how long cancelled stream jobs get to end. */
#define STREAMS_STOP_MS 60000

static int handle_render(struct http_server *s, struct MHD_Connection *c,
                         struct exchange *x)
{
    struct render_request req;
    struct render_result res;
    struct hangup_watch watch;
    struct err err = ERR_INIT;
    struct answer a = {.status = 200};
    const char *route;
    int rc;

    rc = request_parse_render(&req, x->body.data, x->body.len, &s->svc->cfg,
                              &err);
    if (rc < 0) {
        request_render_release(&req);
        return http_send_error(c, x, rc, err.msg, NULL);
    }
    route = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                        "X-Nbcanvas-Route");
    req.force_cold = route && strcasecmp(route, "cold") == 0;
    req.gzip_ok = x->gzip_ok;
    req.tenant = x->tenant;
    if (http_wants_stream(c))
        return http_stream_render(s, c, x, &req);
    http_watch_start(&watch, c);
    render_run(&res, &s->svc->pipe, &req, x->id, &watch.cancel);
    http_watch_stop(&watch);
    request_render_release(&req);
    if (res.code < 0) {
        if (res.code == ERR_TIMEOUT)
            metrics_count(s->svc->metrics, "timeouts", 1);
        if (res.code == ERR_MEMORY)
            metrics_count(s->svc->metrics, "ooms", 1);
        rc = http_send_error_full(c, x, res.code, res.message, res.details,
                                  res.server_timing, NULL);
        render_result_release(&res);
        return rc;
    }
    a.payload = res.answer; /* taken over */
    res.answer = (struct payload)PAYLOAD_INIT;
    a.timing = res.server_timing;
    a.cache = res.cache_hit ? "hit" : "miss";
    if (!res.cache_hit)
        a.sandbox = res.warm ? "warm" : "cold";
    rc = http_send_document(s, c, x, &a);
    render_result_release(&res);
    return rc;
}

static int handle_run(struct http_server *s, struct MHD_Connection *c,
                      struct exchange *x)
{
    struct run_request req;
    struct hangup_watch watch;
    struct err err = ERR_INIT;
    json_t *result = NULL;
    int rc;

    rc = request_parse_run(&req, x->body.data, x->body.len, &s->svc->cfg,
                           &err);
    if (rc < 0) {
        request_run_release(&req);
        return http_send_error(c, x, rc, err.msg, NULL);
    }
    req.tenant = x->tenant;
    http_watch_start(&watch, c);
    rc = runner_run(&result, &s->svc->pipe, &req, x->id, &watch.cancel, &err);
    http_watch_stop(&watch);
    request_run_release(&req);
    if (rc < 0)
        return http_send_error(c, x, rc, err.msg, NULL);
    return http_send_json(c, x, 200, result);
}

static int handle_healthz(struct http_server *s, struct MHD_Connection *c,
                          struct exchange *x)
{
    (void)s;
    return http_send_json(c, x, 200, json_pack("{s:s}", "status", "ok"));
}

/* Checks that the engine answers and that every configured image exists. */
static int check_ready(struct service *svc, struct err *err)
{
    size_t i, n = languages_count(svc->pipe.languages);
    char id[128];
    int rc;

    rc = docker_negotiate(svc->pipe.docker, err);
    if (rc < 0) {
        err->code = ERR_ENGINE;
        return ERR_ENGINE;
    }
    /* the languages' images, then every notebook kernel's */
    for (i = 0; i < n + NOTEBOOK_KERNELS; i++) {
        const char *image = i >= n
                                ? notebook_kernel_image(
                                      notebook_kernel_at((int)(i - n)),
                                      &svc->cfg)
                                : languages_at(svc->pipe.languages, i)->image;

        rc = sandbox_image_id(svc->pipe.docker, image, id, sizeof(id), err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int handle_readyz(struct http_server *s, struct MHD_Connection *c,
                         struct exchange *x)
{
    struct err err = ERR_INIT;

    if (check_ready(s->svc, &err) < 0)
        return http_send_error(c, x, ERR_ENGINE, err.msg, NULL);
    return http_send_json(c, x, 200,
                          json_pack("{s:s, s:s}", "status", "ready",
                                    "api_version",
                                    docker_api_version(s->svc->pipe.docker)));
}

static int handle_kernels(struct http_server *s, struct MHD_Connection *c,
                          struct exchange *x)
{
    (void)s;
    return http_send_json(c, x, 200, notebook_kernels_json());
}

static int handle_languages(struct http_server *s, struct MHD_Connection *c,
                            struct exchange *x)
{
    return http_send_json(c, x, 200, languages_json(s->svc->pipe.languages));
}

static int handle_metrics(struct http_server *s, struct MHD_Connection *c,
                          struct exchange *x)
{
    struct buf out = BUF_INIT(1 << 20);
    struct answer a = {.status = 200,
                       .payload.content_type = "text/plain; version=0.0.4"};

    metrics_write(s->svc->metrics, s->svc->pipe.jobs, &out);
    gauges_write(s->svc, &out);
    datasources_metrics(s->svc->pipe.datasources, &out);
    a.payload.body = buf_detach(&out, &a.payload.len);
    return http_respond(c, x, &a);
}

extern const unsigned char web_index_html[];
extern const size_t web_index_html_len;

/* The canvas page may call this service and show rendered pages in a
 * sandboxed iframe (srcdoc inherits this policy), nothing else. */
#define PAGE_CSP                                                              \
    "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "   \
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "          \
    "font-src 'self' data:; connect-src 'self'; frame-src 'self' blob: "      \
    "data:; object-src 'none'; base-uri 'none'; form-action 'none'"

static int handle_page(struct http_server *s, struct MHD_Connection *c,
                       struct exchange *x)
{
    struct answer a = {.status = 200,
                       .payload.content_type = "text/html; charset=utf-8",
                       .payload.body = (char *)web_index_html,
                       .payload.len = web_index_html_len,
                       .is_static = true,
                       .csp = PAGE_CSP,
                       .no_framing = true};

    (void)s;
    return http_respond(c, x, &a);
}

/* The OpenAPI document, as compiled in (src/openapi.json). */
static int handle_openapi(struct http_server *s, struct MHD_Connection *c,
                          struct exchange *x)
{
    struct answer a = {.status = 200,
                       .payload.content_type = "application/json",
                       .is_static = true};

    (void)s;
    a.payload.body = (char *)api_doc_text(&a.payload.len);
    return http_respond(c, x, &a);
}

static int handle_examples(struct http_server *s, struct MHD_Connection *c,
                           struct exchange *x)
{
    json_t *list = s->svc->examples ? json_incref(s->svc->examples)
                                    : json_array();

    return http_send_json(c, x, 200, list);
}

/* The query parameters of the routes that export a notebook. */
#define EXPORT_QUERY "format,template,include_input"

static const struct route routes[] = {
    {"GET", "/", handle_page, false, OPEN, NULL},
    {"GET", "/v1/examples", handle_examples, false, TENANT, NULL},
    {"GET", "/healthz", handle_healthz, false, OPEN, NULL},
    {"GET", "/readyz", handle_readyz, false, OPEN, NULL},
    {"GET", "/metrics", handle_metrics, false, METRICS, NULL},
    {"GET", "/openapi.json", handle_openapi, false, OPEN, NULL},
    {"GET", "/v1/kernels", handle_kernels, false, TENANT, NULL},
    {"GET", "/v1/languages", handle_languages, false, TENANT, NULL},
    {"POST", "/v1/render", handle_render, true, TENANT, NULL},
    {"POST", "/v1/run", handle_run, true, TENANT, NULL},
    {"POST", "/v1/sessions", http_create_session, true, TENANT, NULL},
    {"GET", "/v1/sessions", http_list_sessions, false, TENANT, NULL},
    {"GET", "/v1/sessions/*", http_get_session, false, TENANT, NULL},
    {"DELETE", "/v1/sessions/*", http_delete_session, false, TENANT, NULL},
    {"POST", "/v1/sessions/*/execute", http_execute, true, TENANT, NULL},
    {"GET", "/v1/sessions/*/notebook", http_session_notebook, false, TENANT,
     EXPORT_QUERY},
    {"GET", "/v1/sessions/*/files/**", http_session_file, false, TENANT, NULL},
    {"GET", "/v1/results/*", http_kept_result, false, TENANT, EXPORT_QUERY},
    {"GET", "/v1/datasources", http_list_datasources, false, TENANT, NULL},
    {"GET", "/v1/datasources/*/schema", http_datasource_schema, false, TENANT,
     NULL},
    {"POST", "/v1/sql", http_sql, true, TENANT, NULL},
    {"POST", "/mcp", http_mcp, true, TENANT, NULL},
    {"DELETE", "/mcp", http_mcp_end, false, TENANT, NULL},
    {"GET", "/api", http_gateway_api, false, GATEWAY, NULL},
    {"GET", "/api/kernelspecs", http_gateway_kernelspecs, false, GATEWAY,
     NULL},
    {"GET", "/api/kernelspecs/*", http_gateway_kernelspec, false, GATEWAY,
     NULL},
    {"GET", "/api/kernels", http_gateway_list, false, GATEWAY, NULL},
    {"POST", "/api/kernels", http_gateway_start, true, GATEWAY, NULL},
    {"GET", "/api/kernels/*", http_gateway_get, false, GATEWAY, NULL},
    {"DELETE", "/api/kernels/*", http_gateway_delete, false, GATEWAY, NULL},
    {"POST", "/api/kernels/*/interrupt", http_gateway_interrupt, true, GATEWAY,
     NULL},
    {"POST", "/api/kernels/*/restart", http_gateway_restart, true, GATEWAY,
     NULL},
    {"GET", "/api/kernels/*/channels", http_gateway_channels, false, GATEWAY,
     NULL},
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

bool http_route_at(size_t i, const char **method, const char **path,
                   const char **query)
{
    if (i >= NROUTES)
        return false;
    *method = routes[i].method;
    *path = routes[i].path;
    *query = routes[i].query;
    return true;
}

/* Whether name is one of list's comma-separated names. */
static bool listed(const char *list, const char *name)
{
    size_t n = strlen(name);

    while (list && *list) {
        size_t m = strcspn(list, ",");

        if (m == n && strncmp(list, name, n) == 0)
            return true;
        list += m + (list[m] == ',');
    }
    return false;
}

struct query_check {
    const char *allowed;
    char unknown[64]; /* the first parameter not allowed */
};

static enum MHD_Result check_query_arg(void *cls, enum MHD_ValueKind kind,
                                       const char *key, const char *value)
{
    struct query_check *q = cls;

    (void)kind;
    (void)value;
    if (listed(q->allowed, key))
        return MHD_YES;
    snprintf(q->unknown, sizeof(q->unknown), "%s", key);
    return MHD_NO;
}

/* A query parameter the route does not take is an error, as an unknown
 * body field is: a typo (?fmt=zip) must not silently answer HTML. */
static int check_query(struct MHD_Connection *c, const struct route *r,
                       struct err *err)
{
    struct query_check q = {r->query, ""};
    char path[128];
    const char *p;
    size_t n = 0;

    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, check_query_arg, &q);
    if (!q.unknown[0])
        return 0;
    /* the route as the docs write it: /v1/results/{id} */
    for (p = r->path; *p && n + 8 < sizeof(path); p++) {
        if (*p != '*')
            path[n++] = *p;
        else if (p[1] == '*')
            n += (size_t)snprintf(path + n, sizeof(path) - n, "{path}"), p++;
        else
            n += (size_t)snprintf(path + n, sizeof(path) - n, "{id}");
    }
    path[n] = '\0';
    return err_set(err, ERR_INVALID,
                   "unknown query parameter '%s' (%s %s takes %s)", q.unknown,
                   r->method, path, r->query ? r->query : "none");
}

/* True when url fits pattern, where "*" stands for one path segment and a
 * final "**" for the rest (one byte at least); those parts go to params
 * (NULL: not kept). */
static bool path_match(const char *pattern, const char *url,
                       char params[2][HTTP_PARAM_MAX])
{
    int np = 0;

    while (*pattern && *url) {
        size_t n;

        if (pattern[0] != '*') {
            if (*pattern++ != *url++)
                return false;
            continue;
        }
        n = pattern[1] == '*' ? strlen(url) : strcspn(url, "/");
        if (n == 0 || n >= HTTP_PARAM_MAX || np == 2)
            return false;
        if (params)
            snprintf(params[np], HTTP_PARAM_MAX, "%.*s", (int)n, url);
        np++;
        url += n;
        pattern += pattern[1] == '*' ? 2 : 1;
    }
    return *pattern == '\0' && *url == '\0';
}

/* The route for method and url; *path_known tells a 405 from a 404. */
static const struct route *find_route(const char *method, const char *url,
                                      bool *path_known, char *allow,
                                      size_t allow_len,
                                      char params[2][HTTP_PARAM_MAX])
{
    const struct route *found = NULL;
    size_t i;

    *path_known = false;
    allow[0] = '\0';
    for (i = 0; i < NROUTES; i++) {
        if (!path_match(routes[i].path, url, NULL))
            continue;
        *path_known = true;
        snprintf(allow + strlen(allow), allow_len - strlen(allow), "%s%s",
                 allow[0] ? ", " : "", routes[i].method);
        if (strcmp(routes[i].method, method) == 0 ||
            (strcmp(method, "HEAD") == 0 &&
             strcmp(routes[i].method, "GET") == 0)) {
            found = &routes[i];
            if (params)
                path_match(routes[i].path, url, params);
        }
    }
    return found;
}

static bool is_json_type(const char *ctype)
{
    size_t n = strlen("application/json");

    return ctype && strncasecmp(ctype, "application/json", n) == 0 &&
           (ctype[n] == '\0' || ctype[n] == ';' || ctype[n] == ' ');
}

static long long body_cap(struct http_server *s, const char *url)
{
    return strcmp(url, "/v1/run") == 0 ? s->svc->cfg.max_run_body_bytes
                                       : s->svc->cfg.max_body_bytes;
}

/* Every connection is under the guard from its accept to its close. */
static void on_connection(void *cls, struct MHD_Connection *c,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct http_server *s = cls;

    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *info = MHD_get_connection_info(
            c, MHD_CONNECTION_INFO_CONNECTION_FD);

        *socket_context = info ? conn_guard_add(s->guard, info->connect_fd)
                               : NULL;
    } else {
        conn_guard_remove(s->guard, *socket_context);
        *socket_context = NULL;
    }
}

static struct conn_guard_entry *guard_entry(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(
        c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    return info ? info->socket_context : NULL;
}

/* True when host (a Host header, perhaps with a port) names this
 * service as a browser must reach it: localhost, a loopback address, the
 * listen address, or a name of allowed_hosts. Anything else is how a web
 * page reaches a local service through DNS rebinding. No Host at all
 * (HTTP/1.0 tools) is not a browser's request, and is served. */
static bool host_allowed(const struct config *cfg, const char *host)
{
    char name[256], listen_host[64];
    const char *p, *colon;
    struct in_addr v4;
    size_t n;

    if (!host)
        return true;
    if (host[0] == '[') { /* [v6] or [v6]:port, nothing else after */
        p = strchr(host, ']');
        if (!p || (p[1] && (p[1] != ':' || !p[2] ||
                            strspn(p + 2, "0123456789") != strlen(p + 2))))
            return false;
        snprintf(name, sizeof(name), "%.*s", (int)(p - host - 1), host + 1);
        return strcmp(name, "::1") == 0;
    }
    colon = strchr(host, ':');
    n = colon ? (size_t)(colon - host) : strlen(host);
    if (n == 0 || n >= sizeof(name))
        return false;
    snprintf(name, sizeof(name), "%.*s", (int)n, host);
    if (strcasecmp(name, "localhost") == 0 || strcmp(name, "::1") == 0)
        return true;
    if (inet_pton(AF_INET, name, &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127)
        return true;
    colon = strrchr(cfg->listen, ':');
    snprintf(listen_host, sizeof(listen_host), "%.*s",
             colon ? (int)(colon - cfg->listen) : 0, cfg->listen);
    if (strcasecmp(name, listen_host) == 0)
        return true;
    for (p = cfg->allowed_hosts; *p; p += n + 1) {
        n = strcspn(p, "\n");
        if (n == strlen(name) && strncasecmp(p, name, n) == 0)
            return true;
    }
    return false;
}

/* Whether origin (absent: not a browser's request) may call: this
 * service's own origin (the Host it was reached by), or one the config
 * lists in allowed_origins. */
bool http_origin_allowed(const struct config *cfg, const char *origin,
                         const char *host)
{
    const char *p, *rest;
    size_t n;

    if (!origin)
        return true;
    rest = strncmp(origin, "http://", 7) == 0    ? origin + 7
           : strncmp(origin, "https://", 8) == 0 ? origin + 8
                                                 : NULL;
    if (rest && host && strcasecmp(rest, host) == 0)
        return true;
    for (p = cfg->allowed_origins; *p; p += n + 1) {
        n = strcspn(p, "\n");
        if (n == strlen(origin) && strncasecmp(p, origin, n) == 0)
            return true;
        if (!p[n])
            break;
    }
    return false;
}

/* The caller's tenant and rate, for a route that needs a key. */
static int admit(struct http_server *s, struct MHD_Connection *c,
                 struct exchange *x, const struct route *r, struct err *err)
{
    const char *authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                            "Authorization");
    const char *token = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
                                                    "token");
    char from_query[600];
    long wait_s = 0;
    int rc;

    if (r->access == OPEN)
        return 0;
    /* Jupyter's clients may put the key in the URL (a WebSocket from a
     * browser can carry no header) */
    if (r->access == GATEWAY && !authorization && token) {
        snprintf(from_query, sizeof(from_query), "token %s", token);
        authorization = from_query;
    }
    rc = tenants_authenticate(s->svc->tenants, authorization, &x->tenant, err);
    OPENSSL_cleanse(from_query, sizeof(from_query));
    if (rc == 0 && r->access == METRICS && tenants_required(s->svc->tenants) &&
        !x->tenant.metrics)
        rc = err_set(err, ERR_UNAUTHENTICATED,
                     "/metrics needs a key whose entry has metrics: true");
    if (rc == 0)
        rc = cluster_limits_admit(s->svc->pipe.limits, s->svc->tenants,
                                  &x->tenant, &wait_s, err);
    if (rc == ERR_RATE_LIMITED)
        snprintf(x->retry_after, sizeof(x->retry_after), "%ld", wait_s);
    return rc;
}

/* First call for a request: pick the id, check host, route, key, type and
 * size. */
static enum MHD_Result begin(struct http_server *s, struct MHD_Connection *c,
                             const char *url, const char *method,
                             void **con_cls)
{
    struct exchange *x = xcalloc(1, sizeof(*x));
    const char *rid = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                  "X-Request-Id");
    const char *clen = MHD_lookup_connection_value(
        c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const struct route *r;
    struct err err = ERR_INIT;
    char allow[64];
    bool known;

    *con_cls = x;
    x->t_start = util_now_ms();
    pthread_mutex_lock(&s->lock);
    s->active++;
    pthread_mutex_unlock(&s->lock);
    x->gzip_ok = http_accepts_gzip(
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Accept-Encoding"));
    if (util_is_uuid(rid))
        snprintf(x->id, sizeof(x->id), "%s", rid);
    else
        util_uuid(x->id);
    buf_init(&x->body, (size_t)body_cap(s, url));
    r = find_route(method, url, &known, allow, sizeof(allow), x->params);
    x->route = r ? r->path : "other";
    if (!host_allowed(&s->svc->cfg,
                      MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host")))
        return http_send_error(c, x, ERR_HOST,
                               "this Host is not served (allowed_hosts)",
                               NULL) == 0
                   ? MHD_YES
                   : MHD_NO;
    if (!r && known)
        return http_send_error_full(c, x, ERR_METHOD, "method not allowed",
                                    NULL, NULL, allow) == 0
                   ? MHD_YES
                   : MHD_NO;
    if (!r)
        return http_send_error(c, x, ERR_NOT_FOUND, "no such path", NULL) == 0
                   ? MHD_YES
                   : MHD_NO;
    x->jupyter = r->access == GATEWAY;
    /* a gateway route takes any query: Jupyter's clients add their own
     * (a cache-buster, session_id, token, user) */
    if (admit(s, c, x, r, &err) < 0 ||
        (r->access != GATEWAY && check_query(c, r, &err) < 0))
        return http_send_error(c, x, err.code, err.msg, NULL) == 0 ? MHD_YES
                                                                   : MHD_NO;
    if (r->has_body && r->access != GATEWAY &&
        !is_json_type(
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type")))
        return http_send_error(c, x, ERR_MEDIA_TYPE,
                               "the body must be application/json", NULL) == 0
                   ? MHD_YES
                   : MHD_NO;
    if (clen && strtoll(clen, NULL, 10) > body_cap(s, url)) {
        char msg[96];

        snprintf(msg, sizeof(msg), "the body is larger than %lld bytes",
                 body_cap(s, url));
        return http_send_error(c, x, ERR_TOO_LARGE, msg, NULL) == 0 ? MHD_YES
                                                                    : MHD_NO;
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *data,
                                  size_t *data_size, void **con_cls)
{
    struct http_server *s = cls;
    struct exchange *x = *con_cls;
    const struct route *r;
    char allow[64];
    bool known;
    int rc;

    (void)version;
    if (!x)
        return begin(s, c, url, method, con_cls);
    if (x->status)
        return MHD_YES; /* answered already (413, 415, 404, 405) */
    if (*data_size) {
        /* MHD only lets a response be queued before or after the body, so
         * a chunked body past the cap is read and dropped, never kept,
         * within the guard's deadline, and answered 413 at its end. */
        if (!x->too_large && buf_append(&x->body, data, *data_size) < 0) {
            x->too_large = true;
            buf_release(&x->body);
        }
        *data_size = 0;
        return MHD_YES;
    }
    if (x->too_large) {
        char msg[96];

        snprintf(msg, sizeof(msg), "the body is larger than %zu bytes",
                 x->body.cap);
        return http_send_error(c, x, ERR_TOO_LARGE, msg, NULL) == 0 ? MHD_YES
                                                                    : MHD_NO;
    }
    r = find_route(method, url, &known, allow, sizeof(allow), NULL);
    /* The job is the server's turn; sending the answer is the client's,
     * except for a stream, which the server writes as the job goes. */
    conn_guard_pause(s->guard, guard_entry(c));
    rc = r->handler(s, c, x);
    if (!x->streaming && !x->upgraded)
        conn_guard_rearm(s->guard, guard_entry(c));
    return rc == 0 ? MHD_YES : MHD_NO;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_server *s = cls;
    struct exchange *x = *con_cls;

    (void)toe;
    /* A kept-alive connection's next request gets a full budget; a
     * WebSocket has none (ws.c notices a silent peer). */
    if (x && x->upgraded)
        conn_guard_pause(s->guard, guard_entry(c));
    else
        conn_guard_rearm(s->guard, guard_entry(c));
    if (!x)
        return;
    if (x->upgrade) /* the upgrade never happened */
        http_gateway_abandon(x->upgrade);
    metrics_request(s->svc->metrics, x->route, x->tenant.name,
                    x->status ? x->status : 499, util_now_ms() - x->t_start);
    buf_release(&x->body);
    free(x);
    *con_cls = NULL;
    pthread_mutex_lock(&s->lock);
    if (--s->active == 0)
        pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->lock);
}

static int parse_listen(struct sockaddr_in *sa, const char *listen,
                        struct err *err)
{
    char host[64];
    const char *colon = strrchr(listen, ':');
    long port;

    if (!colon || (size_t)(colon - listen) >= sizeof(host))
        return err_set(err, ERR_INVALID,
                       "listen address '%s' is not ADDR:PORT", listen);
    snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
    port = strtol(colon + 1, NULL, 10);
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (port <= 0 || port > 65535 ||
        inet_pton(AF_INET, strcmp(host, "localhost") ? host : "127.0.0.1",
                  &sa->sin_addr) != 1)
        return err_set(err, ERR_INVALID,
                       "listen address '%s' needs an IPv4 address and a port",
                       listen);
    return 0;
}

/* With tls_cert_file and tls_key_file, the listener speaks HTTPS (MHD's
 * GnuTLS): fills the options that say so, else leaves just the end. */
static int load_tls(struct http_server *s, const struct config *cfg,
                    struct MHD_OptionItem tls[3], struct err *err)
{
    size_t len;

    tls[0] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    if (!cfg->tls_cert_file[0] && !cfg->tls_key_file[0])
        return 0;
    if (!cfg->tls_cert_file[0] || !cfg->tls_key_file[0])
        return err_set(err, ERR_INVALID,
                       "HTTPS needs both tls_cert_file and tls_key_file");
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
        return err_set(err, ERR_INVALID,
                       "this libmicrohttpd was built without TLS");
    s->tls_cert = util_read_file(cfg->tls_cert_file, &len, 1 << 20);
    s->tls_key = util_read_file(cfg->tls_key_file, &len, 1 << 20);
    if (!s->tls_cert || !s->tls_key) {
        free(s->tls_cert);
        free(s->tls_key);
        s->tls_cert = s->tls_key = NULL;
        return err_set(err, ERR_INVALID, "cannot read %s or %s",
                       cfg->tls_cert_file, cfg->tls_key_file);
    }
    tls[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key};
    tls[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0,
                                     s->tls_cert};
    tls[2] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    return 0;
}

int http_start(struct http_server **out, struct service *svc, struct err *err)
{
    struct http_server *s = xcalloc(1, sizeof(*s));
    const struct config *cfg = &svc->cfg;
    struct MHD_OptionItem tls[3];
    struct sockaddr_in sa;
    int rc;

    s->svc = svc;
    pthread_mutex_init(&s->lock, NULL);
    util_cond_init_monotonic(&s->idle);
    list_init(&s->running);
    rc = parse_listen(&sa, cfg->listen, err);
    if (rc < 0) {
        free(s);
        return rc;
    }
    s->guard = conn_guard_new(cfg->request_deadline_s * 1000, svc->metrics);
    if (!s->guard) {
        free(s);
        return err_set(err, ERR_INTERNAL, "cannot start the connection guard");
    }
    rc = load_tls(s, cfg, tls, err);
    if (rc < 0) {
        conn_guard_free(s->guard);
        free(s);
        return rc;
    }
    http_gateway_init(s);
    s->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
            MHD_USE_ITC | MHD_USE_ERROR_LOG | MHD_ALLOW_UPGRADE |
            MHD_USE_POLL | (s->tls_key ? MHD_USE_TLS : 0),
        0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)cfg->max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)cfg->max_connections_per_ip, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)cfg->connection_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_ARRAY, tls,
        MHD_OPTION_END);
    if (!s->daemon) {
        http_gateway_stop(s);
        http_gateway_free(s);
        conn_guard_free(s->guard);
        free(s->tls_key);
        free(s->tls_cert);
        free(s);
        return err_set(err, ERR_INTERNAL, "cannot listen on %s", cfg->listen);
    }
    *out = s;
    return 0;
}

long http_stop(struct http_server *srv, long drain_s)
{
    struct timespec until;
    long stuck;

    if (!srv)
        return 0;
    /* Stop accepting, let in-flight requests finish (up to drain_s), then
     * stop: MHD_stop_daemon alone would cut the open connections. */
    MHD_quiesce_daemon(srv->daemon);
    until = util_monotonic_in(drain_s * 1000);
    pthread_mutex_lock(&srv->lock);
    while ((srv->active > 0 || srv->streams > 0) &&
           pthread_cond_timedwait(&srv->idle, &srv->lock, &until) == 0)
        ;
    /* Stream jobs use the service, which goes next: past the drain they
     * are cancelled, and waited for (a cancelled job ends in seconds). */
    http_stop_streams(srv);
    until = util_monotonic_in(STREAMS_STOP_MS);
    while (srv->streams > 0 &&
           pthread_cond_timedwait(&srv->idle, &srv->lock, &until) == 0)
        ;
    stuck = srv->streams;
    pthread_mutex_unlock(&srv->lock);
    if (stuck > 0)
        return stuck;       /* never free what a thread still uses */
    http_gateway_stop(srv); /* MHD must not close them under ws.c */
    MHD_stop_daemon(srv->daemon);
    http_gateway_free(srv);
    conn_guard_free(srv->guard);
    if (srv->tls_key)
        OPENSSL_cleanse(srv->tls_key, strlen(srv->tls_key));
    free(srv->tls_key);
    free(srv->tls_cert);
    pthread_mutex_destroy(&srv->lock);
    pthread_cond_destroy(&srv->idle);
    free(srv);
    return 0;
}
