#ifndef NBCANVAS_HTTP_INTERNAL_H
#define NBCANVAS_HTTP_INTERNAL_H

/*
 * What the HTTP front's files share (private to src/): the server, the
 * per-request state, the one answer builder and the error helpers, and
 * the hang-up watcher. http.c has the server, the route table and
 * admission; http_sessions.c the session and result routes; http_stream.c
 * the Server-Sent Events answers.
 */

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "nbcanvas/buf.h"
#include "nbcanvas/http.h"
#include "nbcanvas/list.h"
#include "nbcanvas/payload.h"
#include "nbcanvas/request.h"
#include "nbcanvas/tenants.h"

#define HTTP_PARAM_MAX 512 /* a path parameter's bytes at most */

struct http_server {
    struct MHD_Daemon *daemon;
    struct service *svc;
    struct conn_guard *guard; /* the absolute deadline of a client's turn */
    pthread_mutex_t lock;
    pthread_cond_t idle;
    long active;  /* requests between their first call and completion */
    long streams; /* stream jobs still running (http_stream.c) */
    struct list_node running;    /* those jobs */
    char *tls_key, *tls_cert;    /* PEM, kept while the daemon runs */
    struct ws_set *websockets;   /* the gateway's open WebSockets */
    json_t *gateway_connections; /* tenant -> open WebSockets (lock) */
    bool gateway_stopping;       /* no more upgrades (lock) */
};

/* Per-request state, from the first call of the access handler to the
 * completion notice. */
struct exchange {
    char id[37];
    struct buf body;
    bool too_large;
    long long t_start;
    const char *route;
    unsigned status;
    struct tenant tenant; /* who asked (name "" without keys) */
    bool gzip_ok;         /* Accept-Encoding allows gzip */
    char retry_after[24]; /* for a 429 rate_limited */
    /* The "*" parts of the route's path, in order (http.c's routes). */
    char params[2][HTTP_PARAM_MAX];
    bool streaming; /* the answer is a stream: the server's turn goes on */
    bool upgraded;  /* a WebSocket: the connection is no longer HTTP */
    struct gateway_client *upgrade; /* its client, until MHD hands over
                                       the socket (http_gateway.c) */
    bool jupyter; /* a gateway route: errors as Jupyter's servers write
                       them too */
};

/* Who may call a route once the Host is allowed. */
enum access {
    OPEN,    /* anyone: the page, health and readiness */
    TENANT,  /* a key, when there are keys */
    METRICS, /* a key whose entry says metrics: true */
    GATEWAY  /* a key as Jupyter's clients send it (also ?token=); any
                query and content type; errors also in Jupyter's shape */
};

struct gateway_client;

struct route {
    const char *method;
    const char *path;
    int (*handler)(struct http_server *, struct MHD_Connection *,
                   struct exchange *);
    bool has_body;
    enum access access;
    const char *query; /* the query parameters it takes, comma-separated;
                          NULL: none (any other is a 400 naming it) */
};

/*
 * Every answer is built by http_respond(), so every answer carries the same
 * common headers: its type, the request id, Server-Timing, no caching by
 * anyone on the way, and no content sniffing. What differs by kind of
 * answer is in struct answer, NULL when it does not apply.
 */
struct answer {
    unsigned status;
    struct payload payload; /* its body taken over (freed) unless is_static;
                               gzipped: Content-Encoding */
    bool is_static;
    const char *timing;      /* Server-Timing; NULL: the total only */
    const char *csp;         /* Content-Security-Policy */
    bool no_framing;         /* X-Frame-Options: DENY */
    const char *disposition; /* Content-Disposition */
    const char *retry_after;
    const char *allow;       /* for 405 */
    const char *cache;       /* X-Nbcanvas-Cache */
    const char *sandbox;     /* X-Nbcanvas-Sandbox */
    const char *location;    /* Location, for a 201 */
    const char *mcp_session; /* Mcp-Session-Id, for MCP's initialize */
    bool challenge;          /* WWW-Authenticate, for a 401 */
};

/* Whether a request's Origin (absent: not a browser's request) may call
 * a route a page could abuse (/mcp, the gateway's WebSocket): this
 * service's own origin (the Host it was reached by), or one the config
 * lists in allowed_origins. */
bool http_origin_allowed(const struct config *cfg, const char *origin,
                         const char *host);
/* True when an Accept-Encoding value names gzip (or *) with a weight
 * above zero. */
bool http_accepts_gzip(const char *accept_encoding);
int http_respond(struct MHD_Connection *c, struct exchange *x,
                 const struct answer *a);
/* The headers every answer carries, for a response built elsewhere. */
void http_common_headers(struct MHD_Response *r, struct exchange *x,
                         const struct answer *a);
/* A notebook document (one of the four formats) as a 200 answer: a page
 * gets the configured Content-Security-Policy, a zip is an attachment.
 * a->payload is taken over. */
int http_send_document(struct http_server *s, struct MHD_Connection *c,
                       struct exchange *x, struct answer *a);
int http_send_json(struct MHD_Connection *c, struct exchange *x,
                   unsigned status, json_t *j);
/* An error in the API's format; allow is the Allow header of a 405. */
int http_send_error_full(struct MHD_Connection *c, struct exchange *x,
                         int code, const char *message, json_t *details,
                         const char *timing, const char *allow);
int http_send_error(struct MHD_Connection *c, struct exchange *x, int code,
                    const char *message, json_t *details);

/* Watches a client's socket while its job runs. The watcher sleeps in
 * poll() on the socket and on an eventfd, which watch_stop signals so the
 * request never waits for a poll timeout. */
struct hangup_watch {
    int fd;
    int wake; /* eventfd */
    atomic_bool cancel;
    pthread_t thread;
};

void http_watch_start(struct hangup_watch *w, struct MHD_Connection *c);
void http_watch_stop(struct hangup_watch *w);

/* Route handlers outside http.c. */
int http_create_session(struct http_server *s, struct MHD_Connection *c,
                        struct exchange *x);
int http_list_sessions(struct http_server *s, struct MHD_Connection *c,
                       struct exchange *x);
int http_get_session(struct http_server *s, struct MHD_Connection *c,
                     struct exchange *x);
int http_delete_session(struct http_server *s, struct MHD_Connection *c,
                        struct exchange *x);
int http_execute(struct http_server *s, struct MHD_Connection *c,
                 struct exchange *x);
int http_session_notebook(struct http_server *s, struct MHD_Connection *c,
                          struct exchange *x);
int http_session_file(struct http_server *s, struct MHD_Connection *c,
                      struct exchange *x);
int http_kept_result(struct http_server *s, struct MHD_Connection *c,
                     struct exchange *x);

/* True when the client asks for Server-Sent Events. */
bool http_wants_stream(struct MHD_Connection *c);
/* Stops every stream job (lock held by the caller). */
void http_stop_streams(struct http_server *s);

/* Answers with a stream of a render's progress (req taken over). */
int http_stream_render(struct http_server *s, struct MHD_Connection *c,
                       struct exchange *x, struct render_request *req);
/* Answers with a stream of a session execute's progress in session id
 * (req taken over). */
int http_stream_execute(struct http_server *s, struct MHD_Connection *c,
                        struct exchange *x, struct execute_request *req);
/* Answers with a stream that fn fills on a thread of its own; fn owns
 * ctx from its call on, and drop frees ctx if fn never runs. */
struct sse;
int http_stream_call(struct http_server *s, struct MHD_Connection *c,
                     struct exchange *x,
                     void (*fn)(void *ctx, struct sse *sse),
                     void (*drop)(void *ctx), void *ctx);

/* The datasource routes (http_sql.c). */
int http_list_datasources(struct http_server *s, struct MHD_Connection *c,
                          struct exchange *x);
int http_datasource_schema(struct http_server *s, struct MHD_Connection *c,
                           struct exchange *x);
int http_sql(struct http_server *s, struct MHD_Connection *c,
             struct exchange *x);

/* The MCP routes (http_mcp.c). */
int http_mcp(struct http_server *s, struct MHD_Connection *c,
             struct exchange *x);
int http_mcp_end(struct http_server *s, struct MHD_Connection *c,
                 struct exchange *x);

/* The kernel gateway's routes (http_gateway.c). */
int http_gateway_api(struct http_server *s, struct MHD_Connection *c,
                     struct exchange *x);
int http_gateway_kernelspecs(struct http_server *s, struct MHD_Connection *c,
                             struct exchange *x);
int http_gateway_kernelspec(struct http_server *s, struct MHD_Connection *c,
                            struct exchange *x);
int http_gateway_list(struct http_server *s, struct MHD_Connection *c,
                      struct exchange *x);
int http_gateway_start(struct http_server *s, struct MHD_Connection *c,
                       struct exchange *x);
int http_gateway_get(struct http_server *s, struct MHD_Connection *c,
                     struct exchange *x);
int http_gateway_delete(struct http_server *s, struct MHD_Connection *c,
                        struct exchange *x);
int http_gateway_interrupt(struct http_server *s, struct MHD_Connection *c,
                           struct exchange *x);
int http_gateway_restart(struct http_server *s, struct MHD_Connection *c,
                         struct exchange *x);
int http_gateway_channels(struct http_server *s, struct MHD_Connection *c,
                          struct exchange *x);
void http_gateway_init(struct http_server *s);
/* A WebSocket whose socket MHD never handed over (the client went
 * first): its kernel connection ends. */
void http_gateway_abandon(struct gateway_client *g);
/* Refuses upgrades and closes every WebSocket: before the daemon
 * stops (MHD must not close them under ws.c). */
void http_gateway_stop(struct http_server *s);
/* After the daemon stopped. */
void http_gateway_free(struct http_server *s);

#endif
