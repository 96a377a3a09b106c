/*
 * Background removal (janitor.c) against the fake engine: a disposed
 * sandbox is removed with force=1&v=1, janitor_pending counts what is
 * queued and what is being removed, janitor_free drains the queue, and the
 * cases that must not touch the engine (an empty id) or must not go
 * through the thread (no janitor). The fake's hold keeps a removal in
 * flight for as long as a test needs, so no count depends on timing.
 */
#include "../check.h"
#include "fake_engine.h"
#include "nbcanvas/janitor.h"
#include "nbcanvas/util.h"

#include <poll.h>
#include <pthread.h>

#define PATIENCE_MS 5000

/* A sandbox whose container runs in the fake (so only a forced removal
 * succeeds, as on the real engine). */
static void running_sandbox(struct fake_engine *f, struct docker *d,
                            struct sandbox *sb)
{
    json_t *body = json_pack("{s:s, s:{s:s}}", "Image", "nbcanvas/test:1",
                             "Labels", SANDBOX_LABEL, "1");

    memset(sb, 0, sizeof(*sb));
    sb->docker = d;
    sb->started = true;
    fake_engine_add_container(f, body, true, sb->id);
    json_decref(body);
}

static bool pending_becomes(struct janitor *j, long n)
{
    int64_t until = util_now_ms() + PATIENCE_MS;

    while (janitor_pending(j) != n && util_now_ms() < until)
        poll(NULL, 0, 5);
    return janitor_pending(j) == n;
}

static bool held_becomes(struct fake_engine *f, size_t n)
{
    int64_t until = util_now_ms() + PATIENCE_MS;

    while (fake_engine_held(f) != n && util_now_ms() < until)
        poll(NULL, 0, 5);
    return fake_engine_held(f) == n;
}

TEST(janitor__dispose_removes_with_force_and_volume)
{
    struct fake_engine f = {0};
    struct docker *d;
    struct janitor *j;
    struct sandbox sb;
    struct fake_request r;
    char id[80], want[160];

    fake_engine_start(&f);
    d = fake_engine_docker(&f);
    j = janitor_new();
    CHECK(j != NULL);
    running_sandbox(&f, d, &sb);
    snprintf(id, sizeof(id), "%s", sb.id);
    janitor_dispose(j, &sb, NULL);
    CHECK(sb.id[0] == '\0'); /* the janitor owns it now */
    CHECK(fake_engine_wait(&f, "DELETE", "/containers/", 1, PATIENCE_MS) == 1);
    CHECK(fake_engine_find(&f, "DELETE", "/containers/", 0, &r));
    snprintf(want, sizeof(want), "/containers/%s?force=1&v=1", id);
    CHECK_STREQ(r.path, want);
    CHECK(r.status == 204);
    fake_request_release(&r);
    CHECK(!fake_engine_has_container(&f, id));
    CHECK(pending_becomes(j, 0));
    janitor_free(j);
    CHECK(fake_engine_count(&f, "DELETE", NULL) == 1);
    docker_free(d);
    fake_engine_stop(&f);
}

TEST(janitor__pending_counts_queued_and_in_progress)
{
    struct fake_engine f = {0};
    struct docker *d;
    struct janitor *j;
    struct sandbox sb[3];
    int i;

    fake_engine_start(&f);
    d = fake_engine_docker(&f);
    j = janitor_new();
    CHECK(janitor_pending(j) == 0);
    CHECK(janitor_pending(NULL) == 0);
    fake_engine_hold(&f, "DELETE", "/containers/", true);
    for (i = 0; i < 3; i++) {
        running_sandbox(&f, d, &sb[i]);
        janitor_dispose(j, &sb[i], NULL);
    }
    /* all three in flight at once (held by the fake): removals run in
     * parallel, so a burst is not removed one at a time */
    CHECK(held_becomes(&f, 3));
    CHECK(janitor_pending(j) == 3);
    CHECK(fake_engine_containers(&f) == 3);
    fake_engine_hold(&f, NULL, NULL, false);
    CHECK(pending_becomes(j, 0));
    CHECK(fake_engine_containers(&f) == 0);
    CHECK(fake_engine_count(&f, "DELETE", "/containers/") == 3);
    janitor_free(j);
    docker_free(d);
    fake_engine_stop(&f);
}

struct release_later {
    struct fake_engine *f;
    int ms;
};

static void *release_hold(void *arg)
{
    struct release_later *r = arg;

    poll(NULL, 0, r->ms);
    fake_engine_hold(r->f, NULL, NULL, false);
    return NULL;
}

TEST(janitor__free_removes_everything_still_queued)
{
    struct fake_engine f = {0};
    struct release_later later = {&f, 300};
    struct docker *d;
    struct janitor *j;
    struct sandbox sb;
    pthread_t t;
    int i;

    fake_engine_start(&f);
    d = fake_engine_docker(&f);
    j = janitor_new();
    fake_engine_hold(&f, "DELETE", "/containers/", true);
    for (i = 0; i < 5; i++) {
        running_sandbox(&f, d, &sb);
        janitor_dispose(j, &sb, NULL);
    }
    CHECK(held_becomes(&f, 4));     /* every thread busy */
    CHECK(janitor_pending(j) == 5); /* one still queued when free starts */
    pthread_create(&t, NULL, release_hold, &later);
    janitor_free(j);
    CHECK(fake_engine_containers(&f) == 0);
    CHECK(fake_engine_count(&f, "DELETE", "/containers/") == 5);
    pthread_join(t, NULL);
    docker_free(d);
    fake_engine_stop(&f);
}

TEST(janitor__empty_id_does_nothing)
{
    struct fake_engine f = {0};
    struct docker *d;
    struct janitor *j;
    struct sandbox sb = {0};

    fake_engine_start(&f);
    d = fake_engine_docker(&f);
    j = janitor_new();
    sb.docker = d;
    janitor_dispose(j, &sb, NULL);
    CHECK(janitor_pending(j) == 0);
    janitor_dispose(NULL, &sb, NULL);
    janitor_free(j); /* drains: anything queued would be removed by now */
    CHECK(fake_engine_nrequests(&f) == 0);
    docker_free(d);
    fake_engine_stop(&f);
}

TEST(janitor__without_janitor_removes_in_the_callers_thread)
{
    struct fake_engine f = {0};
    struct docker *d;
    struct sandbox sb;
    char id[80];

    fake_engine_start(&f);
    d = fake_engine_docker(&f);
    running_sandbox(&f, d, &sb);
    snprintf(id, sizeof(id), "%s", sb.id);
    janitor_dispose(NULL, &sb, NULL);
    /* done by the time it returns: nothing else could have done it */
    CHECK(sb.id[0] == '\0');
    CHECK(!fake_engine_has_container(&f, id));
    CHECK(fake_engine_count(&f, "DELETE", "/containers/") == 1);
    docker_free(d);
    fake_engine_stop(&f);
}

TEST(janitor__failed_removal_does_not_stop_the_queue)
{
    struct fake_engine f = {0};
    struct docker *d;
    struct janitor *j;
    struct sandbox a, b;
    char ida[80], idb[80];

    fake_engine_start(&f);
    d = fake_engine_docker(&f);
    j = janitor_new();
    running_sandbox(&f, d, &a);
    running_sandbox(&f, d, &b);
    snprintf(ida, sizeof(ida), "%s", a.id);
    snprintf(idb, sizeof(idb), "%s", b.id);
    fake_engine_fail(&f, "DELETE", "/containers/", 1, 500, "engine hiccup");
    janitor_dispose(j, &a, NULL);
    janitor_dispose(j, &b, NULL);
    CHECK(pending_becomes(j, 0));
    CHECK(fake_engine_count(&f, "DELETE", "/containers/") == 2);
    /* one removal failed and is left to the reaper; the other ran (they
     * run in parallel: either may be the one that failed) */
    CHECK(fake_engine_containers(&f) == 1);
    CHECK(fake_engine_has_container(&f, ida) !=
          fake_engine_has_container(&f, idb));
    janitor_free(j);
    docker_free(d);
    fake_engine_stop(&f);
}

TEST(janitor__slot_is_free_only_once_the_container_is_gone)
{
    struct fake_engine f = {0};
    struct jobs *slots = jobs_new(1, 0);
    struct job_slot slot = JOB_SLOT_INIT, other = JOB_SLOT_INIT;
    struct err err = ERR_INIT;
    struct docker *d;
    struct janitor *j;
    struct sandbox sb;
    long running = -1, waiting = -1;

    fake_engine_start(&f);
    d = fake_engine_docker(&f);
    j = janitor_new();
    CHECK(jobs_acquire(slots, NULL, NULL, &slot, &err) == 0);
    running_sandbox(&f, d, &sb);
    fake_engine_hold(&f, "DELETE", "/containers/", true);
    janitor_dispose(j, &sb, &slot);
    CHECK(held_becomes(&f, 1));
    /* the container is still there (being removed): its slot is taken */
    jobs_counts(slots, &running, &waiting);
    CHECK(running == 1);
    CHECK(jobs_acquire(slots, NULL, NULL, &other, &err) == ERR_BUSY);
    fake_engine_hold(&f, NULL, NULL, false);
    CHECK(pending_becomes(j, 0));
    jobs_counts(slots, &running, &waiting);
    CHECK(running == 0);
    /* a sandbox never created gives its slot back at once */
    CHECK(jobs_acquire(slots, NULL, NULL, &slot, &err) == 0);
    memset(&sb, 0, sizeof(sb));
    janitor_dispose(j, &sb, &slot);
    jobs_counts(slots, &running, &waiting);
    CHECK(running == 0);
    janitor_free(j);
    jobs_free(slots);
    docker_free(d);
    fake_engine_stop(&f);
}
