#ifndef NBCANVAS_WS_H
#define NBCANVAS_WS_H

/*
 * WebSocket connections (RFC 6455) on sockets libmicrohttpd has handed
 * over after an upgrade, with the frames read and written by libwslay:
 * one thread a connection, polling its socket and an eventfd that other
 * threads use to hand it messages. It answers pings (wslay does), pings a
 * quiet peer and closes one that stays silent through two intervals (a
 * half-open connection), closes with 1009 a message over the cap and
 * with 1008 a peer that reads too slowly (its backlog past the cap is not
 * buffered), and tracks every connection in a set so that the server can
 * close them all before it stops. Nothing here knows Jupyter.
 */

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ws_conn;
struct ws_set;

struct ws_options {
    size_t max_message;    /* the largest message taken from the peer */
    size_t max_queued;     /* the most bytes waiting for a slow peer */
    long ping_interval_ms; /* quiet this long: a ping; twice: closed */
};

struct ws_handlers {
    /* A whole message from the peer, on the connection's thread. */
    void (*on_message)(void *ctx, struct ws_conn *w, const uint8_t *data,
                       size_t len, bool binary);
    /* The connection is over: the last call, on its thread (ctx is the
     * caller's to free; w is freed after it returns). */
    void (*on_close)(void *ctx);
};

/* The Sec-WebSocket-Accept value for a client's Sec-WebSocket-Key into
 * out; -1 when the key is not 16 bytes in base64. */
int ws_accept_value(const char *key, char out[29]);

struct ws_set *ws_set_new(void);
/* Refuses new connections, asks every one to close (1001), gives them up
 * to wait_ms, then shuts the sockets of those left and waits for their
 * threads: when it returns, no connection of the set runs. */
void ws_set_stop(struct ws_set *set, long wait_ms);
/* After ws_set_stop (NULL is fine). */
void ws_set_free(struct ws_set *set);
long ws_set_count(struct ws_set *set);

/* A connection on sock (MHD's, closed through urh; with urh NULL, a
 * socket of the caller's that the connection closes: tests, the fuzzer),
 * not yet running:
 * extra holds bytes MHD read past the handshake (copied). Messages may be
 * queued (ws_send) before ws_start. */
struct ws_conn *ws_new(struct ws_set *set, MHD_socket sock,
                       struct MHD_UpgradeResponseHandle *urh,
                       const char *extra, size_t extra_len,
                       const struct ws_options *opts,
                       const struct ws_handlers *handlers, void *ctx);
/* Starts its thread; -1 when it cannot (then ws_abandon it). */
int ws_start(struct ws_conn *w);
/* Closes and frees a connection that never started (no handler runs). */
void ws_abandon(struct ws_conn *w);

/* Any thread: queues one message (copied). -1 when the connection is
 * closing, or when its backlog would pass max_queued (it then closes
 * with 1008: a peer that does not read is dropped, not buffered). */
int ws_send(struct ws_conn *w, const void *data, size_t len, bool binary);
/* Any thread: asks the connection to close with code and reason. */
void ws_close(struct ws_conn *w, uint16_t code, const char *reason);

#endif
