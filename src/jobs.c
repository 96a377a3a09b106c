/*
 * Job slots on a mutex and a condition variable. Waiters are kept in a
 * list in arrival order; a waiter may take a free slot only when it is the
 * one chosen: of the tenants waiting, the one with the fewest jobs running
 * (here, plus on the other replicas with cluster limits: a tenant busy on
 * one replica is not a newcomer on the next) and, among those, the one
 * served longest ago (round robin), and its
 * oldest waiter. When the queue is full, a newcomer whose tenant has less
 * work in hand than the busiest tenant takes the place of that tenant's
 * newest waiter, which is answered 429: a flood fills the queue only
 * against itself. Every change wakes all waiters to look again (a
 * queue of at most max_waiting), and each wakes every 100 ms anyway to
 * notice a cancelled request (the client hung up), so a dead request never
 * holds a place in the queue. Tenants' counts are kept by name, one row
 * each, for as long as the service runs (tenants are few and bounded by
 * the keys file).
 */
#include "nbcanvas/jobs.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "nbcanvas/util.h"

struct load {
    char tenant[TENANT_NAME_MAX];
    long running, waiting;
    long long last_served; /* the grant number of its last slot; -1: none */
};

struct waiter {
    struct load *load;
    long long seq;
    bool bumped; /* its place was given to a lighter tenant: 429 */
    struct waiter *next;
};

struct jobs {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    long running, waiting;
    long max_running, max_waiting;
    struct load **loads; /* stable pointers: waiters hold them */
    size_t nloads;
    struct waiter *waiters; /* oldest first */
    long long next_seq;
    long long grants;              /* slots handed out so far */
    struct cluster_limits *limits; /* NULL: max_jobs per replica */
};

struct jobs *jobs_new(long max_running, long max_waiting)
{
    struct jobs *j = xcalloc(1, sizeof(*j));

    pthread_mutex_init(&j->lock, NULL);
    util_cond_init_monotonic(&j->changed);
    j->max_running = max_running;
    j->max_waiting = max_waiting;
    return j;
}

void jobs_share_limits(struct jobs *j, struct cluster_limits *cl)
{
    j->limits = cl;
}

void jobs_free(struct jobs *j)
{
    size_t i;

    if (!j)
        return;
    for (i = 0; i < j->nloads; i++)
        free(j->loads[i]);
    free(j->loads);
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->changed);
    free(j);
}

/* Under the lock: the row of tenant, added if new. */
static struct load *load_of(struct jobs *j, const char *tenant)
{
    size_t i;

    for (i = 0; i < j->nloads; i++)
        if (strcmp(j->loads[i]->tenant, tenant) == 0)
            return j->loads[i];
    j->loads = xrealloc(j->loads, (j->nloads + 1) * sizeof(*j->loads));
    j->loads[i] = xcalloc(1, sizeof(**j->loads));
    snprintf(j->loads[i]->tenant, sizeof(j->loads[i]->tenant), "%s", tenant);
    j->loads[i]->last_served = -1;
    j->nloads++;
    return j->loads[i];
}

/* Under the lock: a tenant's jobs running here and, with cluster
 * limits, its jobs on the other replicas (as of their last renewal): the
 * weight the fair share goes by, so it holds across replicas. */
static long running_everywhere(struct jobs *j, const struct load *load)
{
    return load->running +
           cluster_limits_jobs_elsewhere(j->limits, load->tenant);
}

/* Under the lock: the waiter that gets the next free slot. */
static struct waiter *chosen(struct jobs *j)
{
    struct waiter *w, *best = NULL;
    long best_running = 0;

    for (w = j->waiters; w; w = w->next) {
        long running = running_everywhere(j, w->load);

        if (!best || running < best_running ||
            (running == best_running &&
             w->load->last_served < best->load->last_served)) {
            best = w; /* full ties keep the older: oldest first */
            best_running = running;
        }
    }
    return best;
}

/* Under the lock, with the queue full: the newest waiter of the tenant
 * with the most jobs, if that tenant has at least two more than `than` (a
 * newcomer's load: one more would only swap the two), else NULL. Giving its place away keeps one tenant's flood from
 * filling the queue against everyone else. */
static struct waiter *heaviest_newest(struct jobs *j, long than)
{
    struct waiter *w, *pick = NULL;

    for (w = j->waiters; w; w = w->next) {
        long load = w->load->running + w->load->waiting;

        if (w->bumped || load <= than + 1)
            continue;
        if (!pick || load > pick->load->running + pick->load->waiting ||
            (load == pick->load->running + pick->load->waiting &&
             w->seq > pick->seq))
            pick = w;
    }
    return pick;
}

static void unlink_waiter(struct jobs *j, struct waiter *gone)
{
    struct waiter **w;

    for (w = &j->waiters; *w; w = &(*w)->next) {
        if (*w == gone) {
            *w = gone->next;
            return;
        }
    }
}

static void append_waiter(struct jobs *j, struct waiter *w)
{
    struct waiter **end = &j->waiters;

    while (*end)
        end = &(*end)->next;
    w->next = NULL;
    *end = w;
}

int jobs_acquire(struct jobs *j, const struct tenant *who,
                 const atomic_bool *cancel, struct job_slot *slot,
                 struct err *err)
{
    const char *tenant = who ? who->name : "";
    long tenant_max = who ? who->max_jobs : 0;
    struct waiter me;
    int rc = 0;

    slot->jobs = NULL;
    slot->lease = (struct lease)LEASE_INIT;
    snprintf(slot->tenant, sizeof(slot->tenant), "%s", tenant);
    /* the stack's count first (without the lock: it may ask Redis); what
     * this replica checks below is then the tenant's own limit, or its
     * share while Redis is away */
    if (who && j->limits &&
        cluster_limits_take(j->limits, LEASE_JOBS, who, &slot->lease,
                            &tenant_max, err) < 0)
        return ERR_BUSY;
    pthread_mutex_lock(&j->lock);
    me.load = load_of(j, tenant);
    if (tenant_max > 0 && me.load->running + me.load->waiting >= tenant_max) {
        pthread_mutex_unlock(&j->lock);
        cluster_limits_drop(&slot->lease);
        return err_set(err, ERR_BUSY,
                       "tenant %s already has its %ld jobs; retry later",
                       tenant, tenant_max);
    }
    if (j->running >= j->max_running && j->waiting >= j->max_waiting) {
        struct waiter *give = heaviest_newest(j, me.load->running +
                                                     me.load->waiting);

        if (!give) {
            pthread_mutex_unlock(&j->lock);
            cluster_limits_drop(&slot->lease);
            return err_set(err, ERR_BUSY,
                           "all %ld sandboxes are busy and %ld requests "
                           "wait; retry later",
                           j->max_running, j->waiting);
        }
        give->bumped = true; /* it leaves with 429; this one waits */
        pthread_cond_broadcast(&j->changed);
    }
    me.seq = j->next_seq++;
    me.bumped = false;
    append_waiter(j, &me);
    me.load->waiting++;
    j->waiting++;
    while (j->running >= j->max_running || chosen(j) != &me) {
        struct timespec ts;

        if (cancel && *cancel) {
            rc = err_set(err, ERR_CANCELLED, "cancelled while queued");
            break;
        }
        if (me.bumped) {
            rc = err_set(err, ERR_BUSY,
                         "tenant %s has the most jobs queued and its place "
                         "went to another tenant; retry later",
                         tenant);
            break;
        }
        ts = util_monotonic_in(100);
        pthread_cond_timedwait(&j->changed, &j->lock, &ts);
    }
    unlink_waiter(j, &me);
    me.load->waiting--;
    j->waiting--;
    if (rc == 0) {
        j->running++;
        me.load->running++;
        me.load->last_served = j->grants++;
        slot->jobs = j;
    }
    pthread_cond_broadcast(&j->changed); /* the next waiter may go */
    pthread_mutex_unlock(&j->lock);
    if (rc < 0)
        cluster_limits_drop(&slot->lease);
    return rc;
}

void jobs_release(const struct job_slot *slot)
{
    struct jobs *j = slot->jobs;
    struct lease lease = slot->lease;
    struct load *load;

    if (!j)
        return;
    cluster_limits_drop(&lease);
    pthread_mutex_lock(&j->lock);
    load = load_of(j, slot->tenant);
    if (j->running > 0)
        j->running--;
    if (load->running > 0)
        load->running--;
    pthread_cond_broadcast(&j->changed);
    pthread_mutex_unlock(&j->lock);
}

void jobs_counts(struct jobs *j, long *running, long *waiting)
{
    pthread_mutex_lock(&j->lock);
    *running = j->running;
    *waiting = j->waiting;
    pthread_mutex_unlock(&j->lock);
}
