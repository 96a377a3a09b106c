/*
 * How every answer leaves: http_respond() builds each response with the
 * same common headers (its type, the request id, Server-Timing, no caching,
 * no sniffing) and compresses text for a client that takes gzip; the
 * error format (http_error_json, shared with the CLI and MCP); and the
 * hang-up watch, a thread that polls a connection's socket while a job
 * runs and sets the job's cancel flag when the client goes. The route
 * files use these; this file uses none of them.
 */
#include "http_internal.h"

#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "nbcanvas/formats.h"
#include "nbcanvas/service.h"
#include "nbcanvas/tarball.h"
#include "nbcanvas/util.h"

json_t *http_error_json(int code, const char *message, json_t *details)
{
    json_t *e = json_pack("{s:s, s:s}", "code", err_name(code), "message",
                          message);

    if (json_is_object(details))
        json_object_update_missing(e, details);
    return json_pack("{s:o}", "error", e);
}

static void add_header(struct MHD_Response *r, const char *name,
                       const char *value)
{
    if (value)
        MHD_add_response_header(r, name, value);
}

/* True when the client's Accept-Encoding names gzip (or *) with a
 * weight above zero. */
bool http_accepts_gzip(const char *accept)
{
    char item[64];
    const char *p = accept;

    while (p && *p) {
        size_t n = strcspn(p, ",");
        const char *q;
        char *name = item;

        snprintf(item, sizeof(item), "%.*s", (int)(n < 63 ? n : 63), p);
        p += n + (p[n] == ',');
        while (*name == ' ')
            name++;
        q = strstr(name, "q=");
        name[strcspn(name, " ;")] = '\0';
        if (strcasecmp(name, "gzip") != 0 && strcmp(name, "*") != 0)
            continue;
        return !q || strtod(q + 2, NULL) > 0;
    }
    return false;
}

int http_respond(struct MHD_Connection *c, struct exchange *x,
                 const struct answer *a)
{
    struct MHD_Response *r;
    struct buf packed = BUF_INIT((size_t)-1);
    bool gzipped =
        a->payload.gzipped; /* compressed already (the cache keeps it so) */
    int rc;

    if (!gzipped && x->gzip_ok &&
        formats_compressible(a->payload.content_type, a->payload.len) &&
        tarball_gzip(&packed, a->payload.body, a->payload.len, NULL) == 0 &&
        packed.len < a->payload.len) {
        size_t len;
        char *body = buf_detach(&packed, &len);

        if (!a->is_static)
            free(a->payload.body);
        r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
        gzipped = true;
    } else {
        r = MHD_create_response_from_buffer(
            a->payload.len, a->payload.body,
            a->is_static ? MHD_RESPMEM_PERSISTENT : MHD_RESPMEM_MUST_FREE);
    }
    buf_release(&packed);
    if (formats_compressible(a->payload.content_type,
                             (size_t)-1)) /* by type */
        add_header(r, "Vary", "Accept-Encoding");
    add_header(r, "Content-Encoding", gzipped ? "gzip" : NULL);
    http_common_headers(r, x, a);
    x->status = a->status;
    rc = MHD_queue_response(c, a->status, r) == MHD_YES ? 0 : -1;
    MHD_destroy_response(r);
    return rc;
}

void http_common_headers(struct MHD_Response *r, struct exchange *x,
                         const struct answer *a)
{
    char total[48];

    if (!a->timing)
        snprintf(total, sizeof(total), "total;dur=%lld",
                 (long long)(util_now_ms() - x->t_start));
    add_header(r, "Content-Type", a->payload.content_type);
    add_header(r, "X-Request-Id", x->id);
    add_header(r, "Server-Timing", a->timing ? a->timing : total);
    add_header(r, "Cache-Control", "no-store");
    add_header(r, "X-Content-Type-Options", "nosniff");
    add_header(r, "Content-Security-Policy", a->csp);
    add_header(r, "X-Frame-Options", a->no_framing ? "DENY" : NULL);
    add_header(r, "Content-Disposition", a->disposition);
    add_header(r, "Retry-After", a->retry_after);
    add_header(r, "Allow", a->allow);
    add_header(r, "X-Nbcanvas-Cache", a->cache);
    add_header(r, "X-Nbcanvas-Sandbox", a->sandbox);
    add_header(r, "Location", a->location);
    add_header(r, "Mcp-Session-Id", a->mcp_session);
    add_header(r, "WWW-Authenticate",
               a->challenge ? "Bearer realm=\"nbcanvas\"" : NULL);
}

int http_send_document(struct http_server *s, struct MHD_Connection *c,
                       struct exchange *x, struct answer *a)
{
    const char *type = a->payload.content_type;

    if (strncmp(type, "text/html", 9) == 0)
        a->csp = s->svc->cfg.html_csp;
    if (strcmp(type, "application/zip") == 0)
        a->disposition = "attachment; filename=\"notebook.zip\"";
    return http_respond(c, x, a);
}

int http_send_json(struct MHD_Connection *c, struct exchange *x,
                   unsigned status, json_t *j)
{
    struct answer a = {.status = status,
                       .payload.content_type = "application/json"};

    if (!j) /* a bug upstream: never a crash, never an empty body */
        return http_send_error(c, x, ERR_INTERNAL, "no answer was made", NULL);

    a.payload.body = json_dumps(j, JSON_COMPACT);
    a.payload.len = strlen(a.payload.body);
    json_decref(j);
    return http_respond(c, x, &a);
}

/* An error in the API's format; allow is the Allow header of a 405. */
int http_send_error_full(struct MHD_Connection *c, struct exchange *x,
                         int code, const char *message, json_t *details,
                         const char *timing, const char *allow)
{
    json_t *j = http_error_json(code, message, details);
    struct answer a = {.status = err_http_status(code),
                       .payload.content_type = "application/json",
                       .timing = timing,
                       .allow = allow};

    if (code == ERR_BUSY)
        a.retry_after = "2";
    else if (code == ERR_ENGINE || code == ERR_INDEX || code == ERR_DATASOURCE)
        a.retry_after = "5";
    else if (code == ERR_RATE_LIMITED)
        a.retry_after = x->retry_after;
    a.challenge = code == ERR_UNAUTHENTICATED;
    if (x->jupyter) { /* as Jupyter's servers write one, beside ours */
        json_object_set_new(j, "message", json_string(message));
        json_object_set_new(j, "reason", json_string(err_name(code)));
    }
    a.payload.body = json_dumps(j, JSON_COMPACT);
    a.payload.len = strlen(a.payload.body);
    json_decref(j);
    return http_respond(c, x, &a);
}

int http_send_error(struct MHD_Connection *c, struct exchange *x, int code,
                    const char *message, json_t *details)
{
    return http_send_error_full(c, x, code, message, details, NULL, NULL);
}

static void *watch_hangup(void *arg)
{
    struct hangup_watch *w = arg;
    struct pollfd p[2] = {{w->fd, POLLRDHUP, 0}, {w->wake, POLLIN, 0}};

    for (;;) {
        if (poll(p, 2, -1) < 0)
            continue;
        if (p[1].revents)
            break;
        if (p[0].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
            w->cancel = true;
            break;
        }
    }
    return NULL;
}

void http_watch_start(struct hangup_watch *w, struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(
        c, MHD_CONNECTION_INFO_CONNECTION_FD);

    w->cancel = false;
    w->fd = info ? info->connect_fd : -1;
    w->wake = eventfd(0, EFD_CLOEXEC);
    if (w->fd < 0 || w->wake < 0 ||
        pthread_create(&w->thread, NULL, watch_hangup, w) != 0) {
        if (w->wake >= 0)
            close(w->wake);
        w->fd = w->wake = -1;
    }
}

void http_watch_stop(struct hangup_watch *w)
{
    uint64_t one = 1;

    if (w->fd < 0)
        return;
    if (write(w->wake, &one, sizeof(one)) < 0)
        perror("nbcanvas: eventfd");
    pthread_join(w->thread, NULL);
    close(w->wake);
}
