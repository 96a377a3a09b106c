/*
 * Tenants' limits across replicas (cluster_limits.c) against a real
 * redis-server: two cluster_limits objects stand for two replicas. A
 * tenant's rate and places are the stack's; a dead replica's leases lapse;
 * with Redis gone each replica takes its share, and the count is right
 * again when Redis is back.
 */
#include "../check.h"
#include "nbcanvas/cluster_limits.h"
#include "nbcanvas/jobs.h"
#include "nbcanvas/util.h"
#include "redis_server.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The service ignores SIGPIPE (a write to a Redis that died is an error,
 * not the end); so does this test. */
__attribute__((constructor)) static void ignore_sigpipe(void)
{
    signal(SIGPIPE, SIG_IGN);
}

static struct cluster_limits *replica(const char *name, long assumed)
{
    struct cluster_limits *cl = NULL;
    struct err err = ERR_INIT;

    CHECK(cluster_limits_new(&cl, redis_server_url(), 250, name, assumed,
                             &err) == 0);
    return cl;
}

static struct tenant tenant(long max_jobs, long max_sessions, long rpm)
{
    struct tenant t = {.max_jobs = max_jobs,
                       .max_sessions = max_sessions,
                       .requests_per_minute = rpm};

    snprintf(t.name, sizeof(t.name), "acme");
    return t;
}

/* Waits (at most 30 s, polling) until cl's stats say shared == want and,
 * with want, at least `replicas` replicas. */
static bool wait_shared(struct cluster_limits *cl, bool want, long replicas)
{
    for (int i = 0; i < 300; i++) {
        struct cluster_limits_stats st;

        cluster_limits_stats(cl, &st);
        if (st.shared == want && (!want || st.replicas >= replicas))
            return true;
        usleep(100000);
    }
    return false;
}

TEST(cluster_limits__without_redis_they_are_the_replicas_own)
{
    struct cluster_limits *cl = NULL;
    struct tenant t = tenant(3, 2, 0);
    struct lease l;
    struct err err = ERR_INIT;
    struct cluster_limits_stats st;
    long mine = 0;

    CHECK(cluster_limits_new(&cl, "", 250, "solo", 4, &err) == 0);
    CHECK(cluster_limits_take(cl, LEASE_JOBS, &t, &l, &mine, &err) == 0);
    CHECK(mine == 3 && l.token[0] == '\0');
    cluster_limits_stats(cl, &st);
    CHECK(!st.redis && !st.shared && st.fallbacks == 0);
    cluster_limits_free(cl);
}

TEST(cluster_limits__the_rate_is_the_stacks)
{
    pid_t redis = redis_server_start();
    struct cluster_limits *a = replica("a", 2), *b = replica("b", 2);
    struct tenants *keys = NULL;
    struct tenant t = tenant(0, 0, 10);
    struct err err = ERR_INIT;
    long long start = util_now_ms();
    long admitted = 0, refused = 0, wait_s = 0, most;

    CHECK(tenants_new(&keys, NULL, &err) == 0);
    for (int i = 0; i < 16; i++) {
        long w = 0;
        int rc = cluster_limits_admit(i % 2 ? a : b, keys, &t, &w, &err);

        if (rc == 0) {
            admitted++;
        } else {
            CHECK(rc == ERR_RATE_LIMITED && w >= 1);
            refused++;
            wait_s = w;
        }
    }
    /* a full bucket of 10, plus what refilled meanwhile (1 each 6 s);
     * each replica alone would have let 10 through: 16 */
    most = 10 + (long)((util_now_ms() - start) / 6000) + 1;
    CHECK(admitted >= 10 && admitted <= most);
    CHECK(refused >= 16 - most && wait_s <= 7);
    tenants_free(keys);
    cluster_limits_free(a);
    cluster_limits_free(b);
    redis_server_stop(redis);
}

TEST(cluster_limits__places_are_the_stacks_and_come_back_when_dropped)
{
    pid_t redis = redis_server_start();
    struct cluster_limits *a = replica("a", 2), *b = replica("b", 2);
    struct tenant t = tenant(2, 1, 0);
    struct lease l1, l2, l3, s1, s2;
    struct err err = ERR_INIT;
    long mine = 0;

    CHECK(cluster_limits_take(a, LEASE_JOBS, &t, &l1, &mine, &err) == 0);
    CHECK(mine == 2 && l1.token[0]);
    CHECK(cluster_limits_take(b, LEASE_JOBS, &t, &l2, &mine, &err) == 0);
    CHECK(cluster_limits_take(a, LEASE_JOBS, &t, &l3, &mine, &err) ==
          ERR_BUSY);
    CHECK(strstr(err.msg, "every replica together") != NULL);
    CHECK(l3.token[0] == '\0');
    /* sessions are counted apart from jobs */
    CHECK(cluster_limits_take(b, LEASE_SESSIONS, &t, &s1, &mine, &err) == 0);
    CHECK(cluster_limits_take(a, LEASE_SESSIONS, &t, &s2, &mine, &err) ==
          ERR_BUSY);
    cluster_limits_drop(&l2);
    CHECK(l2.token[0] == '\0');
    CHECK(cluster_limits_take(a, LEASE_JOBS, &t, &l3, &mine, &err) == 0);
    cluster_limits_drop(&l1);
    cluster_limits_drop(&l3);
    cluster_limits_drop(&s1);
    CHECK(wait_shared(a, true, 2));
    cluster_limits_free(a);
    cluster_limits_free(b);
    redis_server_stop(redis);
}

TEST(cluster_limits__a_dead_replicas_leases_lapse)
{
    pid_t redis = redis_server_start();
    struct cluster_limits *a = replica("a", 2), *b = replica("b", 2);
    struct tenant t = tenant(0, 1, 0);
    struct lease held, l;
    struct err err = ERR_INIT;
    long mine = 0;
    int tries = 0;

    CHECK(cluster_limits_take(a, LEASE_SESSIONS, &t, &held, &mine, &err) == 0);
    CHECK(cluster_limits_take(b, LEASE_SESSIONS, &t, &l, &mine, &err) ==
          ERR_BUSY);
    /* a dies holding it: nobody renews or drops it */
    cluster_limits_free(a);
    while (cluster_limits_take(b, LEASE_SESSIONS, &t, &l, &mine, &err) ==
               ERR_BUSY &&
           ++tries < 300)
        usleep(100000);
    CHECK(tries < 300); /* free within 30 s (the TTL is 10) */
    CHECK(tries > 0);   /* and not at once: the lease was held */
    cluster_limits_drop(&l);
    cluster_limits_free(b);
    redis_server_stop(redis);
}

TEST(cluster_limits__without_redis_each_takes_its_share_then_shares_again)
{
    pid_t redis = redis_server_start();
    struct cluster_limits *a = replica("a", 1), *b = replica("b", 1);
    struct tenants *keys = NULL;
    struct tenant t = tenant(4, 2, 10);
    struct lease alone, alone2, l;
    struct err err = ERR_INIT;
    struct cluster_limits_stats st;
    long mine = 0, admitted = 0, w = 0;

    CHECK(tenants_new(&keys, NULL, &err) == 0);
    CHECK(wait_shared(a, true, 2) && wait_shared(b, true, 2));
    redis_server_stop(redis);

    /* two replicas known: half each */
    CHECK(cluster_limits_take(a, LEASE_JOBS, &t, &l, &mine, &err) == 0);
    CHECK(mine == 2);
    cluster_limits_drop(&l);
    CHECK(cluster_limits_take(a, LEASE_SESSIONS, &t, &alone, &mine, &err) ==
          0);
    CHECK(mine == 1 && alone.token[0]);
    for (int i = 0; i < 12; i++)
        admitted += cluster_limits_admit(a, keys, &t, &w, &err) == 0;
    CHECK(admitted >= 5 && admitted <= 6); /* 10 / 2, and a refill */
    cluster_limits_stats(a, &st);
    CHECK(st.redis && !st.shared && st.fallbacks >= 3 && st.replicas == 2);

    /* back, empty: the session a took alone is written again, and counts */
    redis = redis_server_start();
    CHECK(wait_shared(a, true, 1));
    /* b may take one more of the 2, not two: polled, as the renewal that
     * writes it comes within 3 s */
    for (int i = 0; i < 100; i++) {
        struct lease m;
        bool full;

        CHECK(cluster_limits_take(b, LEASE_SESSIONS, &t, &l, &mine, &err) ==
              0);
        full = cluster_limits_take(b, LEASE_SESSIONS, &t, &m, &mine, &err) ==
               ERR_BUSY;
        cluster_limits_drop(&m);
        if (full)
            break;
        cluster_limits_drop(&l);
        usleep(100000);
    }
    CHECK(cluster_limits_take(b, LEASE_SESSIONS, &t, &alone2, &mine, &err) ==
          ERR_BUSY);
    cluster_limits_drop(&l);
    cluster_limits_drop(&alone);
    tenants_free(keys);
    cluster_limits_free(a);
    cluster_limits_free(b);
    redis_server_stop(redis);
}

TEST(cluster_limits__a_refused_tenant_is_refused_without_asking_redis)
{
    pid_t redis = redis_server_start();
    struct cluster_limits *a = replica("a", 1);
    struct tenants *keys = NULL;
    struct tenant t = tenant(0, 0, 2);
    struct err err = ERR_INIT;
    struct cluster_limits_stats st;
    long w = 0;

    CHECK(tenants_new(&keys, NULL, &err) == 0);
    CHECK(cluster_limits_admit(a, keys, &t, &w, &err) == 0);
    CHECK(cluster_limits_admit(a, keys, &t, &w, &err) == 0);
    CHECK(cluster_limits_admit(a, keys, &t, &w, &err) == ERR_RATE_LIMITED);
    CHECK(w >= 1 && w <= 30); /* 2 a minute: one each 30 s */
    /* Redis gone: the refusal stands until its wait ends, and was decided
     * without Redis (no fallback counted, no share of 2 handed out) */
    redis_server_stop(redis);
    for (int i = 0; i < 5; i++)
        CHECK(cluster_limits_admit(a, keys, &t, &w, &err) == ERR_RATE_LIMITED);
    cluster_limits_stats(a, &st);
    CHECK(st.fallbacks == 0);
    tenants_free(keys);
    cluster_limits_free(a);
}

/* A job of one tenant waiting for a slot on its own thread. */
struct queued {
    struct jobs *jobs;
    struct tenant who;
    struct job_slot slot;
    atomic_bool done;
    pthread_t thread;
};

static void *wait_for_slot(void *arg)
{
    struct queued *q = arg;
    struct err err = ERR_INIT;

    CHECK(jobs_acquire(q->jobs, &q->who, NULL, &q->slot, &err) == 0);
    atomic_store(&q->done, true);
    return NULL;
}

static void queue_job(struct queued *q, struct jobs *j, const char *tenant)
{
    memset(q, 0, sizeof(*q));
    q->jobs = j;
    snprintf(q->who.name, sizeof(q->who.name), "%s", tenant);
    CHECK(pthread_create(&q->thread, NULL, wait_for_slot, q) == 0);
}

static bool queued_become(struct jobs *j, long running, long waiting)
{
    for (int i = 0; i < 300; i++) {
        long r, w;

        jobs_counts(j, &r, &w);
        if (r == running && w == waiting)
            return true;
        usleep(20000);
    }
    return false;
}

TEST(cluster_limits__the_fair_share_weighs_jobs_on_other_replicas)
{
    pid_t redis = redis_server_start();
    struct cluster_limits *a = replica("a", 2), *b = replica("b", 2);
    struct jobs *j = jobs_new(1, 8); /* replica b's one slot */
    struct tenant busy = tenant(0, 0, 0), light = tenant(0, 0, 0);
    struct lease on_a[3];
    struct job_slot first;
    struct queued x, y, *served;
    struct err err = ERR_INIT;
    long mine;
    int i;

    snprintf(busy.name, sizeof(busy.name), "busy");
    snprintf(light.name, sizeof(light.name), "light");
    jobs_share_limits(j, b);
    for (i = 0; i < 3; i++) /* three jobs of busy's run on replica a */
        CHECK(cluster_limits_take(a, LEASE_JOBS, &busy, &on_a[i], &mine,
                                  &err) == 0);
    CHECK(jobs_acquire(j, &light, NULL, &first, &err) == 0);
    queue_job(&x, j, "busy"); /* busy waits first, */
    CHECK(queued_become(j, 1, 1));
    queue_job(&y, j, "light"); /* then light, just served here */
    CHECK(queued_become(j, 1, 2));
    for (i = 0; i < 300 && cluster_limits_jobs_elsewhere(b, "busy") != 3; i++)
        usleep(100000); /* b's next renewal brings the counts */
    CHECK(cluster_limits_jobs_elsewhere(b, "busy") == 3);
    CHECK(cluster_limits_jobs_elsewhere(b, "light") == 0);

    /* here both have no job running and light was served last: alone,
     * busy would be next. Counting replica a, light is. */
    jobs_release(&first);
    for (i = 0; i < 500 && !atomic_load(&x.done) && !atomic_load(&y.done); i++)
        usleep(20000);
    CHECK(atomic_load(&y.done) && !atomic_load(&x.done));
    /* the other gets the slot next, whichever went first */
    served = atomic_load(&y.done) ? &y : &x;
    jobs_release(&served->slot);
    pthread_join(x.thread, NULL);
    pthread_join(y.thread, NULL);
    jobs_release(served == &y ? &x.slot : &y.slot);
    for (i = 0; i < 3; i++)
        cluster_limits_drop(&on_a[i]);
    jobs_free(j);
    cluster_limits_free(a);
    cluster_limits_free(b);
    redis_server_stop(redis);
}
