/*
 * Server-Sent Events streams (include/nbcanvas/sse.h). The reader waits on
 * a condition variable in short slices so that it can look at the client's
 * socket between them: libmicrohttpd notices a closed connection only when
 * it writes, and a job may be silent for minutes.
 */
#include "nbcanvas/sse.h"

#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "nbcanvas/buf.h"
#include "nbcanvas/util.h"

#define SLICE_MS 200

struct sse {
    pthread_mutex_t lock;
    pthread_cond_t more;
    struct buf pending; /* written, not yet read */
    size_t sent;        /* of pending, already read */
    bool closed;
    atomic_bool gone;
    int fd;
    long ping_ms;
    int refs;
};

struct sse *sse_new(int fd, size_t cap, long ping_ms)
{
    struct sse *s = xcalloc(1, sizeof(*s));

    pthread_mutex_init(&s->lock, NULL);
    util_cond_init_monotonic(&s->more);
    buf_init(&s->pending, cap);
    s->fd = fd;
    s->ping_ms = ping_ms < SSE_PING_MS ? ping_ms : SSE_PING_MS;
    s->refs = 2;
    return s;
}

void sse_unref(struct sse *s)
{
    bool last;

    pthread_mutex_lock(&s->lock);
    last = --s->refs == 0;
    pthread_mutex_unlock(&s->lock);
    if (!last)
        return;
    buf_release(&s->pending);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->more);
    free(s);
}

void sse_send(struct sse *s, const char *name, json_t *data)
{
    char *line = json_dumps(data, JSON_COMPACT); /* escapes every newline */

    size_t before;

    pthread_mutex_lock(&s->lock);
    before = s->pending.len;
    if (!s->closed && line &&
        buf_printf(&s->pending, "event: %s\ndata: %s\n\n", name, line) < 0) {
        /* The client reads slower than the job writes: no half event,
         * and the stream ends (the job is cancelled). */
        s->pending.len = before;
        s->pending.data[before] = '\0';
        s->pending.overflow = false;
        s->closed = true;
        s->gone = true;
    }
    pthread_cond_broadcast(&s->more);
    pthread_mutex_unlock(&s->lock);
    free(line);
}

void sse_close(struct sse *s)
{
    pthread_mutex_lock(&s->lock);
    s->closed = true;
    pthread_cond_broadcast(&s->more);
    pthread_mutex_unlock(&s->lock);
}

void sse_stop(struct sse *s)
{
    pthread_mutex_lock(&s->lock);
    s->closed = true;
    s->gone = true;
    pthread_cond_broadcast(&s->more);
    pthread_mutex_unlock(&s->lock);
}

const atomic_bool *sse_cancel(struct sse *s)
{
    return &s->gone;
}

static bool hung_up(int fd)
{
    struct pollfd p = {fd, POLLRDHUP, 0};

    return fd >= 0 && poll(&p, 1, 0) > 0 &&
           (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

ssize_t sse_read(struct sse *s, char *out, size_t max)
{
    long long silent_until = util_now_ms() + s->ping_ms;
    ssize_t n = -1;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        size_t left = s->pending.len - s->sent;

        if (left > 0) {
            n = (ssize_t)(left < max ? left : max);
            memcpy(out, s->pending.data + s->sent, (size_t)n);
            s->sent += (size_t)n;
            if (s->sent == s->pending.len) {
                buf_reset(&s->pending);
                s->sent = 0;
            }
            break;
        }
        if (s->closed || s->gone)
            break;
        if (hung_up(s->fd)) {
            s->gone = true;
            break;
        }
        if (util_now_ms() >= silent_until) {
            static const char ping[] = ": ping\n\n";

            n = (ssize_t)(sizeof(ping) - 1 < max ? sizeof(ping) - 1 : max);
            memcpy(out, ping, (size_t)n);
            break;
        }
        {
            struct timespec slice = util_monotonic_in(SLICE_MS);

            pthread_cond_timedwait(&s->more, &s->lock, &slice);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}
