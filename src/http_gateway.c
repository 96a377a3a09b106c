/*
 * The kernel gateway (docs/API.md, "Jupyter clients: the kernel gateway
 * API"): the part of Jupyter Server's REST API and kernel WebSocket that
 * a client of a gateway uses (jupyter_server's GatewayClient, the classic
 * Notebook's, @jupyterlab/services), so that those clients run their
 * kernels in nbcanvas sandboxes.
 *
 * A gateway kernel is a session (sessions.h) made with `gateway` set: the
 * same sandbox, tenant, limits and culling. Its WebSocket is a ws.h
 * connection joined to the kernel's channels (kernel_channels.h) as one
 * client: what the client sends goes to kernel_channels_send, what the
 * channels deliver goes to ws_send. Nothing here signs or parses the
 * kernel's messages.
 */
#include "http_internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "nbcanvas/ids.h"
#include "nbcanvas/kernel_channels.h"
#include "nbcanvas/notebook.h"
#include "nbcanvas/request.h"
#include "nbcanvas/service.h"
#include "nbcanvas/sessions.h"
#include "nbcanvas/util.h"
#include "nbcanvas/ws.h"

/* At shutdown, how long open WebSockets get to close. */
#define WS_STOP_MS 5000

static const char *header(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

static bool gateway_on(struct http_server *s, struct MHD_Connection *c,
                       struct exchange *x, int *rc)
{
    if (s->svc->sessions && s->svc->cfg.max_sessions > 0)
        return true;
    *rc = http_send_error(c, x, ERR_NOT_FOUND,
                          "kernels are off here (max_sessions is 0)", NULL);
    return false;
}

/* --- kernel specs --------------------------------------------------- */

/* A kernel spec as Jupyter's clients validate it: the argv is the one
 * the sandbox's relay starts. */
static json_t *kernelspec(const struct kernel_info *k)
{
    json_t *argv = json_array();

    for (const char *const *a = k->argv; *a; a++)
        json_array_append_new(argv, json_string(*a));
    return json_pack("{s:s, s:{s:s, s:s, s:o, s:{}, s:{}, s:s}, s:{}}", "name",
                     k->name, "spec", "display_name", k->display_name,
                     "language", k->language, "argv", argv, "env", "metadata",
                     "interrupt_mode", "signal", "resources");
}

int http_gateway_api(struct http_server *s, struct MHD_Connection *c,
                     struct exchange *x)
{
    (void)s;
    return http_send_json(c, x, 200,
                          json_pack("{s:s}", "version", NBCANVAS_VERSION));
}

int http_gateway_kernelspecs(struct http_server *s, struct MHD_Connection *c,
                             struct exchange *x)
{
    json_t *specs = json_object();

    (void)s;
    for (int i = 0; i < NOTEBOOK_KERNELS; i++)
        json_object_set_new(specs, notebook_kernel_at(i)->name,
                            kernelspec(notebook_kernel_at(i)));
    return http_send_json(c, x, 200,
                          json_pack("{s:s, s:o}", "default",
                                    notebook_kernel_at(0)->name, "kernelspecs",
                                    specs));
}

int http_gateway_kernelspec(struct http_server *s, struct MHD_Connection *c,
                            struct exchange *x)
{
    const struct kernel_info *k = notebook_kernel_find(x->params[0]);

    (void)s;
    if (!k)
        return http_send_error(c, x, ERR_NOT_FOUND, "no such kernel spec",
                               NULL);
    return http_send_json(c, x, 200, kernelspec(k));
}

/* --- kernels -------------------------------------------------------- */

int http_gateway_list(struct http_server *s, struct MHD_Connection *c,
                      struct exchange *x)
{
    int rc;

    if (!gateway_on(s, c, x, &rc))
        return rc;
    return http_send_json(
        c, x, 200, sessions_list_kernels(s->svc->sessions, x->tenant.name));
}

int http_gateway_get(struct http_server *s, struct MHD_Connection *c,
                     struct exchange *x)
{
    json_t *model;
    int rc;

    if (!gateway_on(s, c, x, &rc))
        return rc;
    model = sessions_kernel_model(s->svc->sessions, x->tenant.name,
                                  x->params[0]);
    if (!model) {
        struct err err = ERR_INIT;

        ids_not_found(&err, "kernel", x->params[0],
                      "it ended, or was never made");
        return http_send_error(c, x, err.code, err.msg, NULL);
    }
    return http_send_json(c, x, 200, model);
}

/* The kernel spec a start names (none: the default), as the body a
 * /v1/sessions request would carry: one parser checks both. `env` is
 * accepted and never reaches the sandbox (docs/API.md). */
static int start_request(struct session_request *req, struct exchange *x,
                         const struct config *cfg, struct err *err)
{
    json_t *body = x->body.len ? json_loadb(x->body.data, x->body.len, 0, NULL)
                               : json_object();
    json_t *name = json_object_get(body, "name");
    json_t *v1;
    char *text;
    int rc;

    if (!json_is_object(body) || (name && !json_is_string(name))) {
        json_decref(body);
        memset(req, 0, sizeof(*req));
        return err_set(err, ERR_INVALID,
                       "the body must be a JSON object whose name is a "
                       "kernel spec's");
    }
    v1 = json_pack("{s:s}", "kernel",
                   name ? json_string_value(name) : "python3");
    text = json_dumps(v1, JSON_COMPACT);
    rc = request_parse_session(req, text, strlen(text), cfg, err);
    if (rc == ERR_INVALID && name &&
        !notebook_kernel_find(json_string_value(name)))
        rc = err_set(err, ERR_NOT_FOUND, "no such kernel spec: %s",
                     json_string_value(name));
    free(text);
    json_decref(v1);
    json_decref(body);
    return rc;
}

int http_gateway_start(struct http_server *s, struct MHD_Connection *c,
                       struct exchange *x)
{
    struct session_request req;
    struct hangup_watch watch;
    struct err err = ERR_INIT;
    json_t *model = NULL;
    char location[16 + ID_MAX];
    int rc;

    if (!gateway_on(s, c, x, &rc))
        return rc;
    rc = start_request(&req, x, &s->svc->cfg, &err);
    if (rc < 0) {
        request_session_release(&req);
        return http_send_error(c, x, rc, err.msg, NULL);
    }
    req.tenant = x->tenant;
    req.gateway = true;
    http_watch_start(&watch, c);
    rc = sessions_create(s->svc->sessions, &req, x->id, &watch.cancel, &model,
                         &err);
    http_watch_stop(&watch);
    request_session_release(&req);
    if (rc < 0)
        return http_send_error(c, x, rc, err.msg, NULL);
    snprintf(location, sizeof(location), "/api/kernels/%s",
             json_string_value(json_object_get(model, "id")));
    {
        struct answer a = {.status = 201,
                           .payload.content_type = "application/json",
                           .location = location};

        a.payload.body = json_dumps(model, JSON_COMPACT);
        a.payload.len = strlen(a.payload.body);
        json_decref(model);
        return http_respond(c, x, &a);
    }
}

static int no_content(struct MHD_Connection *c, struct exchange *x)
{
    struct answer a = {.status = 204,
                       .payload.content_type = "application/json",
                       .payload.body = "",
                       .is_static = true};

    return http_respond(c, x, &a);
}

int http_gateway_delete(struct http_server *s, struct MHD_Connection *c,
                        struct exchange *x)
{
    struct err err = ERR_INIT;
    int rc;

    if (!gateway_on(s, c, x, &rc))
        return rc;
    /* only a kernel: a /v1 session is not deleted through this route */
    rc = sessions_kernel_delete(s->svc->sessions, x->tenant.name, x->params[0],
                                &err);
    if (rc < 0)
        return http_send_error(c, x, rc, err.msg, NULL);
    return no_content(c, x);
}

int http_gateway_interrupt(struct http_server *s, struct MHD_Connection *c,
                           struct exchange *x)
{
    struct err err = ERR_INIT;
    int rc;

    if (!gateway_on(s, c, x, &rc))
        return rc;
    rc = sessions_kernel_interrupt(s->svc->sessions, x->tenant.name,
                                   x->params[0], &err);
    if (rc < 0)
        return http_send_error(c, x, rc, err.msg, NULL);
    return no_content(c, x);
}

int http_gateway_restart(struct http_server *s, struct MHD_Connection *c,
                         struct exchange *x)
{
    struct hangup_watch watch;
    struct err err = ERR_INIT;
    json_t *model = NULL;
    int rc;

    if (!gateway_on(s, c, x, &rc))
        return rc;
    http_watch_start(&watch, c);
    rc = sessions_kernel_restart(s->svc->sessions, x->tenant.name,
                                 x->params[0], x->id, &watch.cancel, &model,
                                 &err);
    http_watch_stop(&watch);
    if (rc < 0)
        return http_send_error(c, x, rc, err.msg, NULL);
    return http_send_json(c, x, 200, model);
}

/* --- the WebSocket -------------------------------------------------- */

/* One WebSocket joined to one kernel's channels: attached (and counted)
 * before the 101 is sent, so the caps hold exactly; until MHD hands the
 * socket over there is no connection, and what the kernel says meanwhile
 * is not for this client yet. Owned by the exchange until on_upgrade,
 * then by the connection's thread. */
struct gateway_client {
    struct http_server *s;
    struct kernel_channels *ch; /* referenced */
    struct channels_client *client;
    struct ws_conn *_Atomic w;
    char tenant[TENANT_NAME_MAX];
    long dropped; /* its messages that failed the checks */
};

/* From the kernel (the pump's thread): on to the WebSocket. */
static void deliver(void *ctx, const void *data, size_t len, bool binary)
{
    struct gateway_client *g = ctx;
    struct ws_conn *w = atomic_load(&g->w);

    if (!w)
        return;
    if (!data)
        ws_close(w, 1001, "the kernel has ended");
    else
        ws_send(w, data, len, binary);
}

/* From the client (the connection's thread): on to the kernel. A bad
 * message is dropped with a line in the log: Jupyter's servers do the
 * same, and the client's other messages still count. */
static void on_message(void *ctx, struct ws_conn *w, const uint8_t *data,
                       size_t len, bool binary)
{
    struct gateway_client *g = ctx;
    struct err err = ERR_INIT;

    (void)w;
    if (kernel_channels_send(g->ch, g->client, data, len, binary, &err) < 0 &&
        ++g->dropped <= 3) /* a few lines a connection, not a flood */
        fprintf(stderr, "nbcanvas: gateway: a message dropped: %s\n", err.msg);
}

/* The tenant's open WebSockets (s->lock held). */
static long connections_of(struct http_server *s, const char *tenant)
{
    return (long)json_integer_value(
        json_object_get(s->gateway_connections, tenant));
}

static void count_connection(struct http_server *s, const char *tenant,
                             long delta)
{
    pthread_mutex_lock(&s->lock);
    json_object_set_new(s->gateway_connections, tenant,
                        json_integer(connections_of(s, tenant) + delta));
    pthread_mutex_unlock(&s->lock);
}

/* One more connection for tenant, if its cap and the server allow: the
 * check and the count in one step. */
static int take_connection(struct http_server *s, const char *tenant,
                           struct err *err)
{
    int rc = 0;

    pthread_mutex_lock(&s->lock);
    if (s->gateway_stopping)
        rc = err_set(err, ERR_BUSY, "the service is stopping");
    else if (connections_of(s, tenant) >=
             s->svc->cfg.gateway_max_tenant_connections)
        rc = err_set(err, ERR_BUSY,
                     "your key holds its most kernel connections "
                     "(gateway_max_tenant_connections)");
    else
        json_object_set_new(s->gateway_connections, tenant,
                            json_integer(connections_of(s, tenant) + 1));
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static void client_free(struct gateway_client *g)
{
    if (g->client)
        kernel_channels_detach(g->ch, g->client); /* no deliver after */
    count_connection(g->s, g->tenant, -1);
    kernel_channels_unref(g->ch);
    free(g);
}

static void on_close(void *ctx)
{
    client_free(ctx);
}

static void on_upgrade(void *cls, struct MHD_Connection *c, void *con_cls,
                       const char *extra_in, size_t extra_in_size,
                       MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
    struct gateway_client *g = cls;
    struct exchange *x = con_cls;
    const struct config *cfg = &g->s->svc->cfg;
    struct ws_options opts = {(size_t)cfg->gateway_max_message_bytes,
                              (size_t)cfg->gateway_max_queued_bytes,
                              cfg->gateway_ping_interval_s * 1000};
    struct ws_handlers h = {on_message, on_close};
    struct ws_conn *w;

    (void)c;
    x->upgrade = NULL; /* the connection's thread owns g from here */
    w = ws_new(g->s->websockets, sock, urh, extra_in, extra_in_size, &opts, &h,
               g);
    atomic_store(&g->w, w);
    /* a kernel that ended before g->w was set: its word to close found no
     * connection then (one that ends from now on finds w). Asked before
     * the thread starts: once it runs, a client that hangs up at once
     * frees g and w under our feet. */
    if (kernel_channels_gone(g->ch))
        ws_close(w, 1001, "the kernel has ended");
    if (ws_start(w) == 0)
        return;    /* g and w are the connection's thread's now */
    if (g->client) /* detached first: the pump must not reach w */
        kernel_channels_detach(g->ch, g->client);
    g->client = NULL;
    ws_abandon(w);
    client_free(g);
}

void http_gateway_abandon(struct gateway_client *g)
{
    client_free(g);
}

/* True when the comma-separated header value holds token. */
static bool has_token(const char *value, const char *token)
{
    size_t n = strlen(token);

    while (value && *value) {
        value += strspn(value, " \t,");
        if (strncasecmp(value, token, n) == 0 &&
            (value[n] == '\0' || value[n] == ',' || value[n] == ' '))
            return true;
        value += strcspn(value, ",");
    }
    return false;
}

int http_gateway_channels(struct http_server *s, struct MHD_Connection *c,
                          struct exchange *x)
{
    const struct config *cfg = &s->svc->cfg;
    struct gateway_client *g;
    struct MHD_Response *r;
    struct err err = ERR_INIT;
    struct kernel_channels *ch;
    char accept[29];
    int rc;

    if (!gateway_on(s, c, x, &rc))
        return rc;
    if (!has_token(header(c, "Upgrade"), "websocket") ||
        !has_token(header(c, "Connection"), "upgrade") ||
        !header(c, "Sec-WebSocket-Version") ||
        strcmp(header(c, "Sec-WebSocket-Version"), "13") != 0 ||
        ws_accept_value(header(c, "Sec-WebSocket-Key"), accept) < 0)
        return http_send_error(c, x, ERR_INVALID,
                               "this route takes a WebSocket upgrade "
                               "(version 13)",
                               NULL);
    if (!http_origin_allowed(cfg, header(c, "Origin"), header(c, "Host")))
        return http_send_error(c, x, ERR_ORIGIN,
                               "this Origin may not open a kernel's "
                               "WebSocket (allowed_origins)",
                               NULL);
    rc = sessions_kernel_channels(s->svc->sessions, x->tenant.name,
                                  x->params[0], &ch, &err);
    if (rc < 0)
        return http_send_error(c, x, rc, err.msg, NULL);
    rc = take_connection(s, x->tenant.name, &err);
    if (rc < 0) {
        kernel_channels_unref(ch);
        return http_send_error(c, x, rc, err.msg, NULL);
    }
    g = xcalloc(1, sizeof(*g));
    g->s = s;
    g->ch = ch;
    snprintf(g->tenant, sizeof(g->tenant), "%s", x->tenant.name);
    rc = kernel_channels_attach(ch, deliver, g, &g->client, &err);
    r = rc == 0 ? MHD_create_response_for_upgrade(on_upgrade, g) : NULL;
    if (!r) {
        client_free(g);
        return http_send_error(c, x, rc < 0 ? rc : ERR_INTERNAL,
                               rc < 0 ? err.msg : "cannot upgrade", NULL);
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_UPGRADE, "websocket");
    MHD_add_response_header(r, "Sec-WebSocket-Accept", accept);
    MHD_add_response_header(r, "X-Request-Id", x->id);
    x->status = MHD_HTTP_SWITCHING_PROTOCOLS;
    x->upgraded = true;
    x->upgrade = g; /* on_completed frees it if on_upgrade never runs */
    rc = MHD_queue_response(c, MHD_HTTP_SWITCHING_PROTOCOLS, r) == MHD_YES
             ? 0
             : -1;
    MHD_destroy_response(r);
    return rc;
}

void http_gateway_init(struct http_server *s)
{
    s->websockets = ws_set_new();
    s->gateway_connections = json_object();
}

void http_gateway_stop(struct http_server *s)
{
    pthread_mutex_lock(&s->lock);
    s->gateway_stopping = true; /* no upgrade is answered from now on */
    pthread_mutex_unlock(&s->lock);
    ws_set_stop(s->websockets, WS_STOP_MS);
}

void http_gateway_free(struct http_server *s)
{
    ws_set_free(s->websockets);
    s->websockets = NULL;
    json_decref(s->gateway_connections);
    s->gateway_connections = NULL;
}
