/*
 * A counting semaphore with a bounded queue, on a mutex and a condition
 * variable. Waiters wake every 100 ms to notice a cancelled request (the
 * client hung up), so a dead request never holds a place in the queue.
 */
#include "nbcanvas/jobs.h"

#include <pthread.h>
#include <time.h>

#include <stdlib.h>

#include "nbcanvas/util.h"

struct jobs {
    pthread_mutex_t lock;
    pthread_cond_t freed;
    long running, waiting;
    long max_running, max_waiting;
};

struct jobs *jobs_new(long max_running, long max_waiting)
{
    struct jobs *j = xcalloc(1, sizeof(*j));

    pthread_mutex_init(&j->lock, NULL);
    util_cond_init_monotonic(&j->freed);
    j->max_running = max_running;
    j->max_waiting = max_waiting;
    return j;
}

void jobs_free(struct jobs *j)
{
    if (!j)
        return;
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->freed);
    free(j);
}

int jobs_acquire(struct jobs *j, const atomic_bool *cancel, struct err *err)
{
    int rc = 0;

    pthread_mutex_lock(&j->lock);
    if (j->running >= j->max_running && j->waiting >= j->max_waiting) {
        pthread_mutex_unlock(&j->lock);
        return err_set(err, ERR_BUSY,
                       "all %ld sandboxes are busy and %ld requests wait; "
                       "retry later",
                       j->max_running, j->waiting);
    }
    j->waiting++;
    while (j->running >= j->max_running) {
        struct timespec ts;

        if (cancel && *cancel) {
            rc = err_set(err, ERR_CANCELLED, "cancelled while queued");
            break;
        }
        ts = util_monotonic_in(100);
        pthread_cond_timedwait(&j->freed, &j->lock, &ts);
    }
    j->waiting--;
    if (rc == 0)
        j->running++;
    pthread_mutex_unlock(&j->lock);
    return rc;
}

void jobs_release(struct jobs *j)
{
    pthread_mutex_lock(&j->lock);
    if (j->running > 0)
        j->running--;
    pthread_cond_signal(&j->freed);
    pthread_mutex_unlock(&j->lock);
}

void jobs_counts(struct jobs *j, long *running, long *waiting)
{
    pthread_mutex_lock(&j->lock);
    *running = j->running;
    *waiting = j->waiting;
    pthread_mutex_unlock(&j->lock);
}
