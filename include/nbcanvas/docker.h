#ifndef NBCANVAS_DOCKER_H
#define NBCANVAS_DOCKER_H

/*
 * A client for the Docker Engine API over its unix socket (or a tcp
 * address), built on libcurl. Every call has a timeout; nothing here runs
 * the docker CLI. Replies bigger than the caller's buffer cap fail with
 * ERR_OUTPUT instead of growing memory.
 */

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "nbcanvas/buf.h"
#include "nbcanvas/err.h"

struct docker;

struct docker_opts {
    const char *host;        /* "unix:///var/run/docker.sock" or "tcp://h:p" */
    long connect_timeout_ms; /* per connection */
    long call_timeout_ms;    /* default for control calls */
};

#define DOCKER_OPTS_INIT                                                      \
    {                                                                         \
        "unix:///var/run/docker.sock", 2000, 15000                            \
    }

/* Returns a new client in *out (caller frees with docker_free). Does not
 * contact the engine; see docker_negotiate. */
int docker_new(struct docker **out, const struct docker_opts *opts,
               struct err *err);
void docker_free(struct docker *d);

/* Asks GET /version and settles on the API version both sides speak. */
int docker_negotiate(struct docker *d, struct err *err);
/* The API version in use, e.g. "1.41" (borrowed). */
const char *docker_api_version(const struct docker *d);

/*
 * One request. body may be NULL; content_type defaults to JSON. The reply
 * body lands in resp (which caps it) and the HTTP status in *status.
 * timeout_ms 0 means the client's default. Fails with ERR_ENGINE when the
 * engine cannot be reached or does not answer in time; an HTTP error status
 * is not a failure here (callers decide; docker_call_json turns one into
 * an error).
 */
int docker_request(struct docker *d, const char *method, const char *path,
                   const void *body, size_t body_len, const char *content_type,
                   struct buf *resp, long *status, long timeout_ms,
                   struct err *err);

/* Sends json (borrowed) and parses a JSON reply into *out (new reference,
 * may be NULL for empty replies). Any status >= 400 becomes an error:
 * 404 is ERR_NOT_FOUND, anything else ERR_INTERNAL, with the engine's
 * message. */
int docker_call_json(struct docker *d, const char *method, const char *path,
                     json_t *body, json_t **out, long timeout_ms,
                     struct err *err);

/* Streaming calls (attach, exec start): bytes are handed to on_data as they
 * arrive. on_open, if set, is called once the engine has answered with
 * headers (the stream is live; e.g. start the container now). Returning
 * non-zero from either callback ends the stream early with that value.
 * The stream ends by EOF, deadline_ms (absolute, util_now_ms clock: then
 * ERR_TIMEOUT) or *cancel or *cancel_too becoming true (then
 * ERR_CANCELLED). */
struct docker_stream_cb {
    int (*on_open)(void *ctx);
    int (*on_data)(void *ctx, const char *data, size_t len);
    void *ctx;
    const atomic_bool *cancel;
    const atomic_bool *cancel_too; /* a second reason to stop, may be NULL */
};

int docker_stream(struct docker *d, const char *method, const char *path,
                  const char *json_body, const struct docker_stream_cb *cb,
                  long long deadline_ms, struct err *err);

/* Like docker_stream, but on a hijacked connection (Upgrade: tcp) so bytes
 * can also be sent: after on_open, input (input_len bytes, borrowed) is
 * written to the container's stdin while its output is read. For attach
 * with stdin=1. */
int docker_stream_duplex(struct docker *d, const char *path, const char *input,
                         size_t input_len, const struct docker_stream_cb *cb,
                         long long deadline_ms, struct err *err);

/* A hijacked attach kept open for a conversation (the relay's): bytes go
 * to the container's stdin and come from its stdout and stderr
 * (multiplexed, demux.h) whenever either side has some. on_open (may be
 * NULL) is called once the attach is live, before anything is read. */
struct docker_conn;
#define DOCKER_CONN_INBOX_MAX (80u << 20)

int docker_conn_open(struct docker *d, const char *path,
                     struct docker_conn **out, int (*on_open)(void *ctx),
                     void *ctx, long long deadline_ms, struct err *err);
/* Sends len bytes (borrowed); what arrives meanwhile is kept for recv. */
int docker_conn_send(struct docker_conn *c, const void *data, size_t len,
                     long long deadline_ms, const atomic_bool *cancel);
/* Reads what is there, waiting for some until deadline_ms or *cancel:
 * 0 with *got > 0 bytes in out, 1 at the end of the stream,
 * DOCKER_WOKEN when the wake fd became readable first, or ERR_TIMEOUT,
 * ERR_CANCELLED, ERR_ENGINE. */
#define DOCKER_WOKEN 2
int docker_conn_recv(struct docker_conn *c, char *out, size_t cap, size_t *got,
                     long long deadline_ms, const atomic_bool *cancel);
/* fd (an eventfd, or -1 for none): while recv waits for input, fd
 * becoming readable ends the wait (the caller has something to send; the
 * connection is one thread's, so a sender must wake its reader). */
void docker_conn_set_wake(struct docker_conn *c, int fd);
/* Describes later failures in err (borrowed) instead. */
void docker_conn_bind(struct docker_conn *c, struct err *err);
/* Ends the conversation (NULL is fine). */
void docker_conn_close(struct docker_conn *c);

#endif
