/*
 * Background removal of used sandboxes: a queue under a mutex and one
 * thread that calls sandbox_destroy for each. One thread is enough: a
 * removal takes a fraction of a second and renders take longer.
 */
#include "nbcanvas/janitor.h"

#include <pthread.h>

#include "nbcanvas/util.h"

struct janitor {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    struct sandbox *queue;
    long n, alloc;
    long busy; /* taken off the queue, being removed */
    bool stopping;
};

static void *work(void *arg)
{
    struct janitor *j = arg;

    pthread_mutex_lock(&j->lock);
    for (;;) {
        struct sandbox sb;

        while (j->n == 0 && !j->stopping)
            pthread_cond_wait(&j->wake, &j->lock);
        if (j->n == 0)
            break;
        sb = j->queue[0];
        j->n--;
        memmove(j->queue, j->queue + 1, (size_t)j->n * sizeof(sb));
        j->busy++;
        pthread_mutex_unlock(&j->lock);
        sandbox_destroy(&sb);
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
    if (pthread_create(&j->thread, NULL, work, j) != 0) {
        pthread_mutex_destroy(&j->lock);
        pthread_cond_destroy(&j->wake);
        free(j);
        return NULL;
    }
    return j;
}

void janitor_free(struct janitor *j)
{
    if (!j)
        return;
    pthread_mutex_lock(&j->lock);
    j->stopping = true;
    pthread_cond_signal(&j->wake);
    pthread_mutex_unlock(&j->lock);
    pthread_join(j->thread, NULL);
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->wake);
    free(j->queue);
    free(j);
}

void janitor_dispose(struct janitor *j, struct sandbox *sb)
{
    if (!sb->id[0])
        return;
    if (!j) {
        sandbox_destroy(sb);
        return;
    }
    pthread_mutex_lock(&j->lock);
    if (j->n + 1 > j->alloc) {
        j->alloc = j->alloc ? j->alloc * 2 : 16;
        j->queue = xrealloc(j->queue, (size_t)j->alloc * sizeof(*j->queue));
    }
    j->queue[j->n++] = *sb;
    pthread_cond_signal(&j->wake);
    pthread_mutex_unlock(&j->lock);
    sb->id[0] = '\0';
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
