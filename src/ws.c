/*
 * WebSocket connections on upgraded sockets (ws.h), with libwslay's
 * event API doing the framing, masking checks, fragment assembly, UTF-8
 * checks of text, automatic pongs and the closing handshake.
 *
 * Threads: a connection's thread alone touches its wslay context and
 * socket. Others hand it messages through `pending` (under the lock) and
 * an eventfd. The thread calls on_close last; after that no other thread
 * may still hold the connection (the caller's on_close detaches it from
 * whatever sends to it), and the thread frees it.
 */
#include "nbcanvas/ws.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wslay/wslay.h>

#include "nbcanvas/list.h"
#include "nbcanvas/util.h"

/* After a close is queued, how long the peer gets to answer it. */
#define CLOSE_WAIT_MS 5000
/* Frames waiting to be written, counted apart from their bytes: wslay
 * counts an empty pong as 0 bytes, yet each costs an allocation. Past the
 * first number the peer's input is not read (it must read what it was
 * sent first); past the second it is closed. */
#define QUEUED_FRAMES_PAUSE 256
#define QUEUED_FRAMES_MAX 4096

struct pending {
    struct list_node link;
    bool binary;
    size_t len;
    uint8_t data[];
};

struct ws_set {
    pthread_mutex_t lock;
    pthread_cond_t gone;
    struct list_node all;
    long count;
    bool stopping;
};

struct ws_conn {
    struct list_node link; /* in the set */
    struct ws_set *set;
    MHD_socket sock;
    struct MHD_UpgradeResponseHandle *urh;
    uint8_t *extra; /* bytes read past the handshake, fed first */
    size_t extra_len, extra_at;
    struct ws_options opts;
    struct ws_handlers handlers;
    void *ctx;
    int wake; /* eventfd */

    pthread_mutex_t lock;     /* guards what follows */
    struct list_node pending; /* newest first */
    size_t pending_bytes;
    size_t wire_bytes; /* wslay's queue, as last seen by the thread */
    bool closing;
    uint16_t close_code;
    char close_reason[64];

    /* the thread's own */
    long long last_rx_ms, last_ping_ms;
};

int ws_accept_value(const char *key, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char decoded[24], digest[SHA_DIGEST_LENGTH];
    char joined[64];
    int n;

    if (!key || strlen(key) != 24)
        return -1;
    n = EVP_DecodeBlock(decoded, (const unsigned char *)key, 24);
    /* 24 base64 characters end in "==" for 16 bytes */
    if (n != 18 || key[22] != '=' || key[23] != '=')
        return -1;
    snprintf(joined, sizeof(joined), "%s%s", key, guid);
    SHA1((const unsigned char *)joined, strlen(joined), digest);
    EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH);
    return 0;
}

/* --- the set ------------------------------------------------------ */

struct ws_set *ws_set_new(void)
{
    struct ws_set *set = xcalloc(1, sizeof(*set));

    pthread_mutex_init(&set->lock, NULL);
    util_cond_init_monotonic(&set->gone);
    list_init(&set->all);
    return set;
}

void ws_set_stop(struct ws_set *set, long wait_ms)
{
    struct timespec until = util_monotonic_in(wait_ms);
    struct list_node *n;

    pthread_mutex_lock(&set->lock);
    set->stopping = true; /* ws_start refuses from now on */
    list_for_each(n, &set->all)
        ws_close(list_entry(n, struct ws_conn, link), 1001,
                 "the service is stopping");
    while (set->count > 0 &&
           pthread_cond_timedwait(&set->gone, &set->lock, &until) == 0)
        ;
    /* A peer that never answers the close: its socket is shut, which
     * ends its thread's loop at once (every call there is non-blocking),
     * and its thread is waited for. */
    list_for_each(n, &set->all)
        shutdown(list_entry(n, struct ws_conn, link)->sock, SHUT_RDWR);
    while (set->count > 0)
        pthread_cond_wait(&set->gone, &set->lock);
    pthread_mutex_unlock(&set->lock);
}

void ws_set_free(struct ws_set *set)
{
    if (!set)
        return;
    pthread_mutex_destroy(&set->lock);
    pthread_cond_destroy(&set->gone);
    free(set);
}

long ws_set_count(struct ws_set *set)
{
    long n;

    pthread_mutex_lock(&set->lock);
    n = set->count;
    pthread_mutex_unlock(&set->lock);
    return n;
}

/* --- a connection ------------------------------------------------- */

struct ws_conn *ws_new(struct ws_set *set, MHD_socket sock,
                       struct MHD_UpgradeResponseHandle *urh,
                       const char *extra, size_t extra_len,
                       const struct ws_options *opts,
                       const struct ws_handlers *handlers, void *ctx)
{
    struct ws_conn *w = xcalloc(1, sizeof(*w));
    int flags = fcntl(sock, F_GETFL);

    int one = 1;

    if (flags >= 0)
        fcntl(sock, F_SETFL, flags | O_NONBLOCK);
    /* a reply is several small frames: none may wait for the peer's
     * delayed ACK (with TLS, sock is a socketpair and this fails, fine) */
    setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    w->set = set;
    w->sock = sock;
    w->urh = urh;
    if (extra_len) {
        w->extra = xmalloc(extra_len);
        memcpy(w->extra, extra, extra_len);
        w->extra_len = extra_len;
    }
    w->opts = *opts;
    w->handlers = *handlers;
    w->ctx = ctx;
    w->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pthread_mutex_init(&w->lock, NULL);
    list_init(&w->pending);
    list_init(&w->link);
    return w;
}

static void free_conn(struct ws_conn *w)
{
    while (!list_is_empty(&w->pending)) {
        struct pending *p = list_entry(w->pending.next, struct pending, link);

        list_remove(&p->link);
        free(p);
    }
    if (w->wake >= 0)
        close(w->wake);
    if (w->urh) /* MHD's socket: never close() it */
        MHD_upgrade_action(w->urh, MHD_UPGRADE_ACTION_CLOSE);
    else
        close(w->sock);
    pthread_mutex_destroy(&w->lock);
    free(w->extra);
    free(w);
}

void ws_abandon(struct ws_conn *w)
{
    free_conn(w);
}

static void poke(struct ws_conn *w)
{
    uint64_t one = 1;

    if (write(w->wake, &one, sizeof(one)) < 0)
        perror("nbcanvas: ws eventfd");
}

void ws_close(struct ws_conn *w, uint16_t code, const char *reason)
{
    pthread_mutex_lock(&w->lock);
    if (!w->closing) {
        w->closing = true;
        w->close_code = code;
        snprintf(w->close_reason, sizeof(w->close_reason), "%s", reason);
    }
    pthread_mutex_unlock(&w->lock);
    poke(w);
}

int ws_send(struct ws_conn *w, const void *data, size_t len, bool binary)
{
    struct pending *p;

    pthread_mutex_lock(&w->lock);
    if (w->closing) {
        pthread_mutex_unlock(&w->lock);
        return -1;
    }
    if (w->pending_bytes + w->wire_bytes + len > w->opts.max_queued) {
        w->closing = true; /* it does not read: dropped, not buffered */
        w->close_code = 1008;
        snprintf(w->close_reason, sizeof(w->close_reason),
                 "too slow: the backlog passed its cap");
        pthread_mutex_unlock(&w->lock);
        poke(w);
        return -1;
    }
    p = xmalloc(sizeof(*p) + len);
    p->binary = binary;
    p->len = len;
    memcpy(p->data, data, len);
    list_push_front(&w->pending, &p->link);
    w->pending_bytes += len;
    pthread_mutex_unlock(&w->lock);
    poke(w);
    return 0;
}

/* --- wslay's callbacks -------------------------------------------- */

static ssize_t on_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                       int flags, void *user)
{
    struct ws_conn *w = user;
    ssize_t n;

    (void)flags;
    if (w->extra_at < w->extra_len) {
        n = (ssize_t)(w->extra_len - w->extra_at < len
                          ? w->extra_len - w->extra_at
                          : len);
        memcpy(buf, w->extra + w->extra_at, (size_t)n);
        w->extra_at += (size_t)n;
        w->last_rx_ms = util_now_ms();
        return n;
    }
    do
        n = recv(w->sock, buf, len, 0);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        w->last_rx_ms = util_now_ms();
        return n;
    }
    wslay_event_set_error(ctx,
                          n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
                              ? WSLAY_ERR_WOULDBLOCK
                              : WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

static ssize_t on_send(wslay_event_context_ptr ctx, const uint8_t *data,
                       size_t len, int flags, void *user)
{
    struct ws_conn *w = user;
    int how = MSG_NOSIGNAL | (flags & WSLAY_MSG_MORE ? MSG_MORE : 0);
    ssize_t n;

    do
        n = send(w->sock, data, len, how);
    while (n < 0 && errno == EINTR);
    if (n >= 0)
        return n;
    wslay_event_set_error(ctx, errno == EAGAIN || errno == EWOULDBLOCK
                                   ? WSLAY_ERR_WOULDBLOCK
                                   : WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

static void on_msg(wslay_event_context_ptr ctx,
                   const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
    struct ws_conn *w = user;

    (void)ctx;
    if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME)
        w->handlers.on_message(w->ctx, w, arg->msg, arg->msg_length,
                               arg->opcode == WSLAY_BINARY_FRAME);
}

/* --- the thread --------------------------------------------------- */

/* Moves what others queued into wslay (it copies), oldest first; returns
 * the close asked for, if any (code 0: none). */
static uint16_t take_pending(struct ws_conn *w, wslay_event_context_ptr ctx,
                             char reason[64])
{
    struct list_node batch;
    uint16_t code = 0;

    list_init(&batch);
    pthread_mutex_lock(&w->lock);
    while (!list_is_empty(&w->pending)) {
        struct list_node *oldest = w->pending.prev;

        list_remove(oldest);
        list_push_front(&batch, oldest);
    }
    w->pending_bytes = 0;
    if (w->closing) {
        code = w->close_code;
        memcpy(reason, w->close_reason, 64);
    }
    pthread_mutex_unlock(&w->lock);
    while (!list_is_empty(&batch)) {
        struct pending *p = list_entry(batch.prev, struct pending, link);
        struct wslay_event_msg m = {p->binary ? WSLAY_BINARY_FRAME
                                              : WSLAY_TEXT_FRAME,
                                    p->data, p->len};

        list_remove(&p->link);
        if (!code)
            wslay_event_queue_msg(ctx, &m);
        free(p);
    }
    return code;
}

/* After our close frame: no more writes, and what the peer still sends
 * is read and dropped for a moment, so that closing a socket with unread
 * bytes does not reset the connection before the peer reads the close. */
static void linger(struct ws_conn *w)
{
    long long until = util_now_ms() + 200;
    size_t dropped = 0;
    char sink[16384];

    shutdown(w->sock, SHUT_WR);
    while (dropped < (4u << 20) && util_now_ms() < until) {
        struct pollfd p = {w->sock, POLLIN, 0};
        ssize_t n;

        if (poll(&p, 1, 50) <= 0)
            continue;
        n = recv(w->sock, sink, sizeof(sink), 0);
        if (n <= 0)
            break;
        dropped += (size_t)n;
    }
}

static void *run(void *arg)
{
    struct ws_conn *w = arg;
    struct wslay_event_callbacks cb = {on_recv, on_send, NULL,  NULL,
                                       NULL,    NULL,    on_msg};
    wslay_event_context_ptr ctx = NULL;
    struct ws_set *set;
    long long close_by = 0, interval = w->opts.ping_interval_ms;
    char reason[64];
    uint64_t drained;

    if (wslay_event_context_server_init(&ctx, &cb, w) != 0)
        goto out;
    wslay_event_config_set_max_recv_msg_length(ctx, w->opts.max_message);
    w->last_rx_ms = w->last_ping_ms = util_now_ms();
    while (wslay_event_want_read(ctx) || wslay_event_want_write(ctx)) {
        struct pollfd p[2] = {{w->sock, 0, 0}, {w->wake, POLLIN, 0}};
        long long now = util_now_ms();
        uint16_t code = take_pending(w, ctx, reason);
        size_t wire, frames;
        bool reading;

        if (code && !close_by) {
            wslay_event_queue_close(ctx, code, (const uint8_t *)reason,
                                    strlen(reason));
            close_by = now + CLOSE_WAIT_MS;
        }
        if (close_by && now > close_by)
            break; /* the peer never answered the close */
        if (now - w->last_rx_ms > 2 * interval)
            break; /* half-open: two pings unanswered */
        if (!close_by && now - w->last_ping_ms >= interval) {
            struct wslay_event_msg ping = {WSLAY_PING, (const uint8_t *)"nb",
                                           2};

            wslay_event_queue_msg(ctx, &ping);
            w->last_ping_ms = now;
        }
        wire = wslay_event_get_queued_msg_length(ctx);
        frames = wslay_event_get_queued_msg_count(ctx);
        pthread_mutex_lock(&w->lock);
        w->wire_bytes = wire;
        pthread_mutex_unlock(&w->lock);
        if (wire > w->opts.max_queued || frames > QUEUED_FRAMES_MAX)
            break; /* e.g. pongs to a ping flood it never reads */
        reading = wslay_event_want_read(ctx) && frames < QUEUED_FRAMES_PAUSE;
        if (reading)
            p[0].events |= POLLIN;
        if (wslay_event_want_write(ctx))
            p[0].events |= POLLOUT;
        if (!wslay_event_want_read(ctx))
            w->extra_at = w->extra_len; /* what is left is never read */
        if (reading && w->extra_at < w->extra_len)
            p[0].revents = POLLIN;
        else if (poll(p, 2, 1000) < 0 && errno != EINTR)
            break;
        if (p[1].revents & POLLIN)
            if (read(w->wake, &drained, sizeof(drained)) < 0)
                drained = 0;
        if (reading && (p[0].revents & (POLLIN | POLLHUP | POLLERR)) &&
            wslay_event_recv(ctx) != 0)
            break;
        if (!reading && (p[0].revents & (POLLHUP | POLLERR)))
            break;
        if (wslay_event_want_write(ctx) && wslay_event_send(ctx) != 0)
            break;
    }
out:
    pthread_mutex_lock(&w->lock);
    w->closing = true; /* from now on, ws_send refuses */
    pthread_mutex_unlock(&w->lock);
    if (ctx && wslay_event_get_close_sent(ctx))
        linger(w);
    if (ctx)
        wslay_event_context_free(ctx);
    w->handlers.on_close(w->ctx);
    set = w->set;
    pthread_mutex_lock(&set->lock);
    list_remove(&w->link);
    pthread_mutex_unlock(&set->lock);
    free_conn(w); /* MHD's socket closed before the set may be let go */
    pthread_mutex_lock(&set->lock);
    if (--set->count == 0)
        pthread_cond_broadcast(&set->gone);
    pthread_mutex_unlock(&set->lock);
    return NULL;
}

int ws_start(struct ws_conn *w)
{
    pthread_attr_t attr;
    pthread_t thread; /* not w's: the thread may free w before it is set */
    int rc;

    if (w->wake < 0)
        return -1;
    pthread_mutex_lock(&w->set->lock);
    if (w->set->stopping) {
        pthread_mutex_unlock(&w->set->lock);
        return -1;
    }
    list_push_front(&w->set->all, &w->link);
    w->set->count++;
    pthread_mutex_unlock(&w->set->lock);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&thread, &attr, run, w);
    pthread_attr_destroy(&attr);
    if (rc == 0)
        return 0;
    pthread_mutex_lock(&w->set->lock);
    list_remove(&w->link);
    list_init(&w->link);
    if (--w->set->count == 0) /* ws_set_stop may wait for it */
        pthread_cond_broadcast(&w->set->gone);
    pthread_mutex_unlock(&w->set->lock);
    return -1;
}
