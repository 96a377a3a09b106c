/*
 * The connection guard: a list of watched sockets under a mutex and one
 * thread that wakes twice a second and shuts down those past their
 * deadline. shutdown() rather than close(): the server's thread sees the
 * end of the stream and closes the connection on its own path.
 */
#include "nbcanvas/conn_guard.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "nbcanvas/list.h"
#include "nbcanvas/metrics.h"
#include "nbcanvas/util.h"

#define TICK_MS 500

struct conn_guard_entry {
    int fd;              /* our own dup of the socket */
    int64_t deadline_ms; /* 0 while paused */
    struct list_node link;
};

struct conn_guard {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    long budget_ms;
    struct metrics *metrics;
    bool stopping;
    struct list_node entries;
};

static void drop_expired(struct conn_guard *g, int64_t now)
{
    struct list_node *n;

    list_for_each(n, &g->entries) {
        struct conn_guard_entry *e = list_entry(n, struct conn_guard_entry,
                                                link);

        if (e->deadline_ms && now >= e->deadline_ms) {
            shutdown(e->fd, SHUT_RDWR);
            e->deadline_ms = 0; /* once is enough */
            metrics_count(g->metrics, "slow_clients_dropped", 1);
        }
    }
}

static void *watch(void *arg)
{
    struct conn_guard *g = arg;

    pthread_mutex_lock(&g->lock);
    while (!g->stopping) {
        struct timespec until = util_monotonic_in(TICK_MS);

        pthread_cond_timedwait(&g->wake, &g->lock, &until);
        drop_expired(g, util_now_ms());
    }
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

struct conn_guard *conn_guard_new(long budget_ms, struct metrics *metrics)
{
    struct conn_guard *g = xcalloc(1, sizeof(*g));

    g->budget_ms = budget_ms;
    list_init(&g->entries);
    g->metrics = metrics;
    pthread_mutex_init(&g->lock, NULL);
    util_cond_init_monotonic(&g->wake);
    if (pthread_create(&g->thread, NULL, watch, g) != 0) {
        pthread_mutex_destroy(&g->lock);
        pthread_cond_destroy(&g->wake);
        free(g);
        return NULL;
    }
    return g;
}

void conn_guard_free(struct conn_guard *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&g->lock);
    g->stopping = true;
    pthread_cond_signal(&g->wake);
    pthread_mutex_unlock(&g->lock);
    pthread_join(g->thread, NULL);
    while (!list_is_empty(&g->entries))
        conn_guard_remove(
            g, list_entry(g->entries.next, struct conn_guard_entry, link));
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->wake);
    free(g);
}

struct conn_guard_entry *conn_guard_add(struct conn_guard *g, int fd)
{
    struct conn_guard_entry *e;
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);

    if (own < 0)
        return NULL;
    e = xcalloc(1, sizeof(*e));
    e->fd = own;
    pthread_mutex_lock(&g->lock);
    e->deadline_ms = util_now_ms() + g->budget_ms;
    list_push_front(&g->entries, &e->link);
    pthread_mutex_unlock(&g->lock);
    return e;
}

void conn_guard_pause(struct conn_guard *g, struct conn_guard_entry *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&g->lock);
    e->deadline_ms = 0;
    pthread_mutex_unlock(&g->lock);
}

void conn_guard_rearm(struct conn_guard *g, struct conn_guard_entry *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&g->lock);
    e->deadline_ms = util_now_ms() + g->budget_ms;
    pthread_mutex_unlock(&g->lock);
}

void conn_guard_remove(struct conn_guard *g, struct conn_guard_entry *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&g->lock);
    list_remove(&e->link);
    pthread_mutex_unlock(&g->lock);
    close(e->fd);
    free(e);
}
