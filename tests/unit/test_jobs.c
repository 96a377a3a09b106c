/*
 * Back-pressure (jobs.c) with real threads: the bound on running jobs, the
 * bounded queue that answers ERR_BUSY at once, a cancelled waiter giving
 * its place back, and a release waking a waiter. Waits are polls with
 * generous limits (seconds), so a slow machine makes them slower, not
 * flaky; the only timing asserts are lower bounds (something did NOT
 * happen early) and upper bounds of two seconds or more.
 */
#include "../check.h"
#include "nbcanvas/jobs.h"
#include "nbcanvas/util.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>

#define PATIENCE_MS 5000

static void sleep_ms(int ms)
{
    poll(NULL, 0, ms);
}

/* Polls jobs_counts until it shows running and waiting (-1: any), for up
 * to PATIENCE_MS. */
static bool counts_become(struct jobs *j, long running, long waiting)
{
    int64_t until = util_now_ms() + PATIENCE_MS;

    for (;;) {
        long r, w;

        jobs_counts(j, &r, &w);
        if ((running < 0 || r == running) && (waiting < 0 || w == waiting))
            return true;
        if (util_now_ms() > until)
            return false;
        sleep_ms(5);
    }
}

/* A slot for tenant "" with no limit of its own, as most tests want. */
static int acquire(struct jobs *j, const atomic_bool *cancel, struct err *err)
{
    struct job_slot slot;

    return jobs_acquire(j, NULL, cancel, &slot, err);
}

static void release(struct jobs *j)
{
    struct job_slot slot = {j, "", LEASE_INIT};

    jobs_release(&slot);
}

/* One jobs_acquire in a thread of its own. */
struct waiter {
    struct jobs *j;
    atomic_bool cancel;
    atomic_bool done;
    int rc;
    struct err err;
    int64_t done_at;
    pthread_t thread;
};

static void *wait_for_slot(void *arg)
{
    struct waiter *w = arg;

    w->rc = acquire(w->j, &w->cancel, &w->err);
    w->done_at = util_now_ms();
    atomic_store(&w->done, true);
    return NULL;
}

static void waiter_start_cancelled(struct waiter *w, struct jobs *j,
                                   bool cancelled)
{
    memset(w, 0, sizeof(*w));
    w->j = j;
    atomic_init(&w->cancel, cancelled);
    atomic_init(&w->done, false);
    pthread_create(&w->thread, NULL, wait_for_slot, w);
}

static void waiter_start(struct waiter *w, struct jobs *j)
{
    waiter_start_cancelled(w, j, false);
}

static bool waiter_done_within(struct waiter *w, int ms)
{
    int64_t until = util_now_ms() + ms;

    while (!atomic_load(&w->done) && util_now_ms() < until)
        sleep_ms(5);
    return atomic_load(&w->done);
}

/* jobs_acquire that gives up after ms (by its cancel flag) instead of
 * hanging the test if it queues where it should not; *took is how long it
 * took to answer. */
static int acquire_or_give_up(struct jobs *j, int ms, struct err *err,
                              int64_t *took)
{
    struct waiter w;
    int64_t t0 = util_now_ms();

    waiter_start(&w, j);
    if (!waiter_done_within(&w, ms))
        atomic_store(&w.cancel, true);
    pthread_join(w.thread, NULL);
    *err = w.err;
    *took = w.done_at - t0;
    return w.rc;
}

/* Threads that each take a slot, hold it a moment and give it back,
 * recording how many held one at the same time. */
struct crowd {
    struct jobs *j;
    atomic_int inside, most, failures;
};

static void *take_and_hold(void *arg)
{
    struct crowd *c = arg;
    int now, seen;

    if (acquire(c->j, NULL, NULL) != 0) {
        atomic_fetch_add(&c->failures, 1);
        return NULL;
    }
    now = atomic_fetch_add(&c->inside, 1) + 1;
    seen = atomic_load(&c->most);
    while (now > seen && !atomic_compare_exchange_weak(&c->most, &seen, now))
        ;
    sleep_ms(30);
    atomic_fetch_sub(&c->inside, 1);
    release(c->j);
    return NULL;
}

TEST(jobs__never_more_than_max_running)
{
    struct crowd c = {.j = jobs_new(2, 16)};
    pthread_t t[10];
    int i;

    for (i = 0; i < 10; i++)
        pthread_create(&t[i], NULL, take_and_hold, &c);
    for (i = 0; i < 10; i++)
        pthread_join(t[i], NULL);
    CHECK(atomic_load(&c.failures) == 0);
    CHECK(atomic_load(&c.most) >= 1);
    CHECK(atomic_load(&c.most) <= 2);
    CHECK(counts_become(c.j, 0, 0));
    jobs_free(c.j);
}

TEST(jobs__counts_running_and_waiting)
{
    struct jobs *j = jobs_new(2, 4);
    struct waiter w;
    long running = -1, waiting = -1;

    CHECK(acquire(j, NULL, NULL) == 0);
    CHECK(acquire(j, NULL, NULL) == 0);
    jobs_counts(j, &running, &waiting);
    CHECK(running == 2);
    CHECK(waiting == 0);
    waiter_start(&w, j);
    CHECK(counts_become(j, 2, 1));
    release(j);
    CHECK(waiter_done_within(&w, PATIENCE_MS));
    pthread_join(w.thread, NULL);
    CHECK(w.rc == 0);
    jobs_counts(j, &running, &waiting);
    CHECK(running == 2); /* the waiter took the freed slot */
    CHECK(waiting == 0);
    release(j);
    release(j);
    CHECK(counts_become(j, 0, 0));
    jobs_free(j);
}

TEST(jobs__release_wakes_a_waiter)
{
    struct jobs *j = jobs_new(1, 4);
    struct waiter w;
    int64_t released;

    CHECK(acquire(j, NULL, NULL) == 0);
    waiter_start(&w, j);
    CHECK(counts_become(j, 1, 1));
    sleep_ms(300);
    CHECK(!atomic_load(&w.done)); /* no slot, so it must still wait */
    released = util_now_ms();
    release(j);
    CHECK(waiter_done_within(&w, PATIENCE_MS));
    pthread_join(w.thread, NULL);
    CHECK(w.rc == 0);
    CHECK(w.done_at - released < 2000);
    CHECK(counts_become(j, 1, 0));
    release(j);
    jobs_free(j);
}

TEST(jobs__full_queue_is_busy_at_once)
{
    struct jobs *j = jobs_new(1, 2);
    struct waiter w[2];
    struct err err = ERR_INIT;
    int64_t took;
    int rc, i;

    CHECK(acquire(j, NULL, NULL) == 0);
    for (i = 0; i < 2; i++)
        waiter_start(&w[i], j);
    CHECK(counts_become(j, 1, 2));
    rc = acquire_or_give_up(j, 2000, &err, &took);
    CHECK(rc == ERR_BUSY);
    CHECK(err.code == ERR_BUSY);
    CHECK(strstr(err.msg, "busy") != NULL);
    CHECK(took < 2000);            /* answered, not queued */
    CHECK(counts_become(j, 1, 2)); /* and it took no place */
    /* the two waiters get the slot one after the other */
    release(j);
    CHECK(counts_become(j, 1, 1));
    release(j);
    CHECK(counts_become(j, 1, 0));
    for (i = 0; i < 2; i++) {
        CHECK(waiter_done_within(&w[i], PATIENCE_MS));
        pthread_join(w[i].thread, NULL);
        CHECK(w[i].rc == 0);
    }
    release(j);
    CHECK(counts_become(j, 0, 0));
    jobs_free(j);
}

TEST(jobs__cancelled_waiter_leaves_and_frees_its_place)
{
    struct jobs *j = jobs_new(1, 1);
    struct waiter w, next;
    struct err err = ERR_INIT;
    int64_t cancelled, took;

    CHECK(acquire(j, NULL, NULL) == 0);
    waiter_start(&w, j);
    CHECK(counts_become(j, 1, 1));
    /* the queue is full */
    CHECK(acquire_or_give_up(j, 2000, &err, &took) == ERR_BUSY);
    cancelled = util_now_ms();
    atomic_store(&w.cancel, true);
    CHECK(waiter_done_within(&w, PATIENCE_MS));
    if (!atomic_load(&w.done))
        release(j); /* broken: let it in (the slot stays taken) */
    pthread_join(w.thread, NULL);
    CHECK(w.rc == ERR_CANCELLED);
    CHECK(w.err.code == ERR_CANCELLED);
    CHECK(w.done_at - cancelled < 2000); /* noticed within a wake-up or so */
    CHECK(counts_become(j, 1, 0));       /* it got no slot */
    /* its place in the queue is free again: a new waiter queues */
    waiter_start(&next, j);
    CHECK(counts_become(j, 1, 1));
    CHECK(!atomic_load(&next.done) || next.rc != ERR_BUSY);
    release(j);
    CHECK(waiter_done_within(&next, PATIENCE_MS));
    pthread_join(next.thread, NULL);
    CHECK(next.rc == 0);
    release(j);
    CHECK(counts_become(j, 0, 0));
    jobs_free(j);
}

TEST(jobs__cancelled_before_queueing_with_no_slot)
{
    struct jobs *j = jobs_new(1, 4);
    atomic_bool cancel;
    struct err err = ERR_INIT;
    struct waiter w;

    atomic_init(&cancel, true);
    CHECK(acquire(j, &cancel, &err) == 0); /* a free slot is taken */
    /* no slot: a request already cancelled leaves at once */
    waiter_start_cancelled(&w, j, true);
    CHECK(waiter_done_within(&w, PATIENCE_MS));
    if (!atomic_load(&w.done))
        release(j); /* broken: let it in rather than hang */
    pthread_join(w.thread, NULL);
    CHECK(w.rc == ERR_CANCELLED);
    CHECK(counts_become(j, 1, 0));
    release(j);
    jobs_free(j);
}

/* A waiter of one tenant in a thread of its own, recording when it got
 * its slot (it holds the slot until released by the test). */
struct tenant_waiter {
    struct jobs *j;
    struct tenant who;
    struct job_slot slot;
    atomic_int order; /* 0: still waiting; else its place in the line */
    pthread_t thread;
};

static atomic_int served;

static void *wait_as_tenant(void *arg)
{
    struct tenant_waiter *w = arg;

    if (jobs_acquire(w->j, &w->who, NULL, &w->slot, NULL) == 0)
        atomic_store(&w->order, atomic_fetch_add(&served, 1) + 1);
    return NULL;
}

static void tenant_waiter_start(struct tenant_waiter *w, struct jobs *j,
                                const char *tenant)
{
    memset(w, 0, sizeof(*w));
    w->j = j;
    snprintf(w->who.name, sizeof(w->who.name), "%s", tenant);
    pthread_create(&w->thread, NULL, wait_as_tenant, w);
}

TEST(jobs__a_freed_slot_goes_to_the_tenant_with_fewest_running)
{
    /* One slot. Tenant a holds it and has three more waiting; tenant b
     * comes last. The next slot is b's, not a's oldest waiter's. */
    struct jobs *j = jobs_new(1, 8);
    struct tenant a = {.name = "a"};
    struct job_slot held;
    struct tenant_waiter wa[3], wb;
    int i;

    atomic_store(&served, 0);
    CHECK(jobs_acquire(j, &a, NULL, &held, NULL) == 0);
    for (i = 0; i < 3; i++) {
        tenant_waiter_start(&wa[i], j, "a");
        CHECK(counts_become(j, 1, i + 1));
    }
    tenant_waiter_start(&wb, j, "b");
    CHECK(counts_become(j, 1, 4));
    jobs_release(&held);
    CHECK(counts_become(j, 1, 3));
    CHECK(atomic_load(&wb.order) == 1);
    for (i = 0; i < 3; i++) { /* then a's, oldest first */
        CHECK(atomic_load(&wa[i].order) == 0);
    }
    jobs_release(&wb.slot);
    for (i = 0; i < 3; i++) {
        CHECK(counts_become(j, 1, 2 - i));
        CHECK(atomic_load(&wa[i].order) == i + 2);
        jobs_release(&wa[i].slot);
    }
    pthread_join(wb.thread, NULL);
    for (i = 0; i < 3; i++)
        pthread_join(wa[i].thread, NULL);
    CHECK(counts_become(j, 0, 0));
    jobs_free(j);
}

TEST(jobs__a_tenant_limit_refuses_past_its_own_max)
{
    struct jobs *j = jobs_new(4, 8);
    struct tenant a = {.name = "a", .max_jobs = 1};
    struct tenant b = {.name = "b", .max_jobs = 1};
    struct job_slot sa, sb, extra;
    struct err err = ERR_INIT;

    CHECK(jobs_acquire(j, &a, NULL, &sa, &err) == 0);
    CHECK(jobs_acquire(j, &a, NULL, &extra, &err) == ERR_BUSY);
    CHECK(strstr(err.msg, "tenant a") != NULL);
    CHECK(jobs_acquire(j, &b, NULL, &sb, &err) == 0); /* b has its own */
    jobs_release(&sa);
    CHECK(jobs_acquire(j, &a, NULL, &sa, &err) == 0);
    jobs_release(&sa);
    jobs_release(&sb);
    jobs_free(j);
}

/* A waiter of a tenant that records its answer. */
struct answer_waiter {
    struct jobs *j;
    struct tenant who;
    struct job_slot slot;
    atomic_int rc; /* 1: still waiting */
    pthread_t thread;
};

static void *wait_for_answer(void *arg)
{
    struct answer_waiter *w = arg;

    atomic_store(&w->rc, jobs_acquire(w->j, &w->who, NULL, &w->slot, NULL));
    return NULL;
}

static void answer_waiter_start(struct answer_waiter *w, struct jobs *j,
                                const char *tenant)
{
    memset(w, 0, sizeof(*w));
    w->j = j;
    atomic_store(&w->rc, 1);
    snprintf(w->who.name, sizeof(w->who.name), "%s", tenant);
    pthread_create(&w->thread, NULL, wait_for_answer, w);
}

static bool rc_becomes(struct answer_waiter *w, int rc)
{
    int64_t until = util_now_ms() + 3000;

    while (atomic_load(&w->rc) != rc && util_now_ms() < until)
        sleep_ms(5);
    return atomic_load(&w->rc) == rc;
}

TEST(jobs__a_full_queue_makes_room_for_a_lighter_tenant)
{
    /* One slot, two places. Tenant a holds the slot and both places; b
     * comes: it takes the place of a's newest waiter (429 for that one),
     * not a 429 of its own, and gets the next slot. */
    struct jobs *j = jobs_new(1, 2);
    struct tenant a = {.name = "a"}, c = {.name = "a"};
    struct job_slot held, extra;
    struct answer_waiter a1, a2, b;

    CHECK(jobs_acquire(j, &a, NULL, &held, NULL) == 0);
    answer_waiter_start(&a1, j, "a");
    CHECK(counts_become(j, 1, 1));
    answer_waiter_start(&a2, j, "a");
    CHECK(counts_become(j, 1, 2));
    /* another request of a's own: the queue is full for it */
    CHECK(jobs_acquire(j, &c, NULL, &extra, NULL) == ERR_BUSY);
    answer_waiter_start(&b, j, "b");
    CHECK(rc_becomes(&a2, ERR_BUSY)); /* a's newest gave its place */
    CHECK(atomic_load(&a1.rc) == 1 && atomic_load(&b.rc) == 1);
    CHECK(counts_become(j, 1, 2));
    jobs_release(&held);
    CHECK(rc_becomes(&b, 0)); /* b has fewer running: it goes first */
    CHECK(atomic_load(&a1.rc) == 1);
    jobs_release(&b.slot);
    CHECK(rc_becomes(&a1, 0));
    jobs_release(&a1.slot);
    pthread_join(a1.thread, NULL);
    pthread_join(a2.thread, NULL);
    pthread_join(b.thread, NULL);
    CHECK(counts_become(j, 0, 0));
    jobs_free(j);
}
