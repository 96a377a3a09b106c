/*
 * Background removal of used sandboxes: a queue under a mutex and a few
 * threads that call sandbox_destroy for each. Several, not one: a forced
 * removal of a container that is still running takes a few hundred ms,
 * and a burst of timed-out jobs must not leave a line of them burning CPU.
 * A job's slot (jobs.c) travels with its container and is released only
 * once the container is gone, so at most max_jobs containers ever run
 * jobs, however fast they end.
 */
#include "nbcanvas/janitor.h"

#include <pthread.h>

#include "nbcanvas/util.h"

#define JANITOR_THREADS 4

struct disposal {
    struct sandbox sb;
    struct job_slot slot; /* released once sb is gone */
};

struct janitor {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t threads[JANITOR_THREADS];
    int nthreads;
    struct disposal *queue;
    long n, alloc;
    long busy; /* taken off the queue, being removed */
    bool stopping;
};

static void dispose_now(struct disposal *d)
{
    sandbox_destroy(&d->sb);
    jobs_release(&d->slot);
}

static void *work(void *arg)
{
    struct janitor *j = arg;

    pthread_mutex_lock(&j->lock);
    for (;;) {
        struct disposal d;

        while (j->n == 0 && !j->stopping)
            pthread_cond_wait(&j->wake, &j->lock);
        if (j->n == 0)
            break;
        d = j->queue[0];
        j->n--;
        memmove(j->queue, j->queue + 1, (size_t)j->n * sizeof(d));
        j->busy++;
        pthread_mutex_unlock(&j->lock);
        dispose_now(&d);
        pthread_mutex_lock(&j->lock);
        j->busy--;
    }
    pthread_mutex_unlock(&j->lock);
    return NULL;
}

struct janitor *janitor_new(void)
{
    struct janitor *j = xcalloc(1, sizeof(*j));

    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->wake, NULL);
    while (j->nthreads < JANITOR_THREADS &&
           pthread_create(&j->threads[j->nthreads], NULL, work, j) == 0)
        j->nthreads++;
    if (j->nthreads == 0) {
        pthread_mutex_destroy(&j->lock);
        pthread_cond_destroy(&j->wake);
        free(j);
        return NULL;
    }
    return j;
}

void janitor_free(struct janitor *j)
{
    int i;

    if (!j)
        return;
    pthread_mutex_lock(&j->lock);
    j->stopping = true;
    pthread_cond_broadcast(&j->wake);
    pthread_mutex_unlock(&j->lock);
    for (i = 0; i < j->nthreads; i++)
        pthread_join(j->threads[i], NULL);
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->wake);
    free(j->queue);
    free(j);
}

void janitor_dispose(struct janitor *j, struct sandbox *sb,
                     struct job_slot *slot)
{
    struct disposal d = {*sb, JOB_SLOT_INIT};

    if (slot) {
        d.slot = *slot;
        slot->jobs = NULL; /* the janitor gives it back */
        slot->lease = (struct lease)LEASE_INIT;
    }

    sb->id[0] = '\0';
    if (!d.sb.id[0] || !j) {
        dispose_now(&d); /* nothing to remove, or no janitor: here */
        return;
    }
    pthread_mutex_lock(&j->lock);
    if (j->n + 1 > j->alloc) {
        j->alloc = j->alloc ? j->alloc * 2 : 16;
        j->queue = xrealloc(j->queue, (size_t)j->alloc * sizeof(*j->queue));
    }
    j->queue[j->n++] = d;
    pthread_cond_signal(&j->wake);
    pthread_mutex_unlock(&j->lock);
}

long janitor_pending(struct janitor *j)
{
    long n;

    if (!j)
        return 0;
    pthread_mutex_lock(&j->lock);
    n = j->n + j->busy;
    pthread_mutex_unlock(&j->lock);
    return n;
}
