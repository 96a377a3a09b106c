/*
 * The warm pool (pool.c) against the fake engine. Each container runs a
 * fake relay that says READY when the test lets it, so the
 * tests can see the pool count a sandbox only once it is ready, hand it
 * out, refill, replace one that died while idle, back off while the
 * engine fails, and remove what it holds when freed. One case waits for
 * the pool's idle check, which runs every 5 s: this file takes about 9 s.
 */
#include "../check.h"
#include "fake_service.h"
#include "nbcanvas/job_status.h"
#include "nbcanvas/relay_proto.h"
#include "nbcanvas/pool.h"
#include "nbcanvas/sandbox.h"

#include <pthread.h>
#include <unistd.h>

#define PATIENCE_MS 5000
#define CHECK_INTERVAL_MS 5000 /* pool.c's POOL_CHECK_EVERY_MS */

/* ---- the fake relay: ready when let go ---------------------------- */

struct ready_relay {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    struct fake_gate gate; /* the ready line waits here */
    bool never_ready;      /* prints progress, never the ready line */
    char ids[8][65];       /* containers it ran in, in order */
    int n;
};

static void ready_fn(void *ctx, const struct fake_stream_info *info,
                     struct fake_output *out)
{
    struct ready_relay *r = ctx;

    pthread_mutex_lock(&r->lock);
    if (r->n < 8)
        snprintf(r->ids[r->n++], 65, "%s", info->container_id);
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->lock);
    fake_gate_wait(&r->gate);
    fake_output_write(out, 2, "importing numpy\n", 16); /* the kernel's */
    if (r->never_ready) { /* a frame, but not READY */
        uint8_t head[RELAY_HEADER_LEN];

        relay_frame_header(head, RELAY_FAILED, 0, 4);
        fake_output_write(out, 1, head, sizeof(head));
        fake_output_write(out, 1, "nope", 4);
    } else {
        static const char hello[] = "{\"key\": \"k\", \"pid\": 7}";
        uint8_t head[RELAY_HEADER_LEN];

        relay_frame_header(head, RELAY_READY, 0, sizeof(hello) - 1);
        fake_output_write(out, 1, head, sizeof(head));
        fake_output_write(out, 1, hello, sizeof(hello) - 1);
    }
}

/* The id of the i-th container the relay ran in ("" if none yet). */
static const char *relay_container(struct ready_relay *r, int i)
{
    const char *id;

    pthread_mutex_lock(&r->lock);
    id = i < r->n ? r->ids[i] : "";
    pthread_mutex_unlock(&r->lock);
    return id;
}

/* The fake, with r in every container; containers keep running after
 * they said ready, as the real relay waits for its jobs. */
static void start_engine(struct fake_service *fs, struct ready_relay *r,
                         bool gated)
{
    struct fake_script script = {.fn = ready_fn, .ctx = r, .hang = true};

    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    util_cond_init_monotonic(&r->changed);
    fake_gate_init(&r->gate);
    if (gated)
        fake_gate_close(&r->gate);
    CHECK(fake_service_start(fs) == 0);
    fake_engine_script(&fs->engine, FAKE_ATTACH, NULL, &script);
}

/* The same, and a service with a pool of size on it. */
static void start(struct fake_service *fs, struct ready_relay *r, long size,
                  bool gated)
{
    start_engine(fs, r, gated);
    CHECK(fake_service_open(fs, size, false) == 0);
}

static void stop(struct fake_service *fs, struct ready_relay *r)
{
    fake_service_stop(fs);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->changed);
    fake_gate_destroy(&r->gate);
}

static struct pool_stats stats(struct fake_service *fs)
{
    struct pool_stats st;

    pool_stats(fs->svc.pipe.pools[0], &st);
    return st;
}

static bool settled(struct fake_service *fs, long idle)
{
    struct pool_stats st = stats(fs);

    return st.idle == idle && st.starting == 0;
}

static size_t creates(struct fake_service *fs)
{
    return fake_engine_count(&fs->engine, "POST", "/containers/create");
}

static const char *label(json_t *body, const char *key)
{
    return json_string_value(
        json_object_get(json_object_get(body, "Labels"), key));
}

/* ---- filling -------------------------------------------------------- */

TEST(pool__counts_a_sandbox_only_once_its_relay_is_ready)
{
    struct fake_service fs;
    struct ready_relay r;
    char id[65], prefix[160];
    json_t *body;
    long i_create, i_attach, i_start;

    start(&fs, &r, 1, true);
    WAIT_UNTIL(relay_container(&r, 0)[0], PATIENCE_MS);
    snprintf(id, sizeof(id), "%s", relay_container(&r, 0));
    CHECK(id[0] != '\0');
    /* created, attached, started, and still not counted */
    poll(NULL, 0, 200);
    CHECK(stats(&fs).idle == 0 && stats(&fs).starting == 1);
    CHECK(fake_engine_count(&fs.engine, "POST", "/containers/create") == 1);
    i_create = fake_service_log_index(&fs, "POST", "/containers/create");
    snprintf(prefix, sizeof(prefix), "/containers/%s/attach", id);
    i_attach = fake_service_log_index(&fs, "POST", prefix);
    snprintf(prefix, sizeof(prefix), "/containers/%s/start", id);
    i_start = fake_service_log_index(&fs, "POST", prefix);
    CHECK(i_create >= 0 && i_create < i_attach && i_attach < i_start);
    /* one attach, with stdin: the relay's conversation (READY comes on
     * it) */
    CHECK(fake_service_count_with(&fs, "POST", "/containers/", "stdin=1") ==
          1);

    /* the body: the notebook image and relay, preloading, ours */
    body = fake_engine_container_body(&fs.engine, id);
    CHECK_STREQ(json_string_value(json_object_get(body, "Image")),
                fs.svc.cfg.notebook_image);
    CHECK(fake_service_has_string(json_object_get(body, "Cmd"),
                                  "/opt/nbcanvas/nbcanvas-relay"));
    CHECK(fake_service_has_string(json_object_get(body, "Env"),
                                  "NBCANVAS_PRELOAD=1"));
    CHECK(fake_service_has_string(json_object_get(body, "Env"),
                                  "NBCANVAS_KERNEL=python3"));
    CHECK_STREQ(label(body, "org.nbcanvas.owner"), FAKE_SERVICE_OWNER);
    CHECK_STREQ(label(body, SANDBOX_LABEL), "1");
    json_decref(body);

    fake_gate_open(&r.gate);
    WAIT_UNTIL(settled(&fs, 1), PATIENCE_MS);
    CHECK(settled(&fs, 1));
    CHECK(creates(&fs) == 1);
    CHECK(fake_service_live(&fs) == 1);
    CHECK(fake_engine_has_container(&fs.engine, id));
    stop(&fs, &r);
}

TEST(pool__a_relay_that_says_anything_but_ready_first_is_replaced)
{
    struct fake_service fs;
    struct ready_relay r;

    start_engine(&fs, &r, false);
    r.never_ready = true;
    CHECK(fake_service_open(&fs, 1, false) == 0);
    WAIT_UNTIL(relay_container(&r, 0)[0], PATIENCE_MS);
    CHECK(relay_container(&r, 0)[0]);
    /* never counted: removed, and another one tried after the pause */
    WAIT_UNTIL(fake_service_removed(&fs, relay_container(&r, 0)), PATIENCE_MS);
    CHECK(fake_service_removed(&fs, relay_container(&r, 0)));
    CHECK(stats(&fs).idle == 0);
    WAIT_UNTIL(creates(&fs) >= 2, PATIENCE_MS);
    CHECK(creates(&fs) >= 2);
    CHECK(stats(&fs).idle == 0);
    stop(&fs, &r);
}

TEST(pool__cold_sandbox_is_made_like_a_warm_one_without_preload)
{
    struct fake_service fs;
    struct ready_relay r;
    struct sandbox cold;
    struct err err = ERR_INIT;
    json_t *warm_body, *cold_body;
    char prefix[160];

    start(&fs, &r, 1, false);
    WAIT_UNTIL(settled(&fs, 1), PATIENCE_MS);
    CHECK(settled(&fs, 1));
    CHECK(pool_create_cold(fs.svc.pipe.pools[0], &cold, "job-7", 4242, &err) ==
          0);
    warm_body = fake_engine_container_body(&fs.engine, relay_container(&r, 0));
    cold_body = fake_engine_container_body(&fs.engine, cold.id);
    CHECK(warm_body && cold_body);
    /* the same hardening, image and command; the warm one starts with a
     * low CPU weight (raised as a job takes it), the cold one's is the
     * default */
    CHECK(json_integer_value(json_object_get(
              json_object_get(warm_body, "HostConfig"), "CpuShares")) > 0);
    CHECK(!json_object_get(json_object_get(cold_body, "HostConfig"),
                           "CpuShares"));
    json_object_del(json_object_get(warm_body, "HostConfig"), "CpuShares");
    CHECK(json_equal(json_object_get(warm_body, "HostConfig"),
                     json_object_get(cold_body, "HostConfig")));
    CHECK(json_equal(json_object_get(warm_body, "Cmd"),
                     json_object_get(cold_body, "Cmd")));
    CHECK(json_equal(json_object_get(warm_body, "Image"),
                     json_object_get(cold_body, "Image")));
    /* but no preload, and the job's own labels */
    CHECK(fake_service_has_string(json_object_get(cold_body, "Env"),
                                  "NBCANVAS_PRELOAD=0"));
    CHECK_STREQ(label(cold_body, "org.nbcanvas.job"), "job-7");
    CHECK_STREQ(label(cold_body, "org.nbcanvas.deadline"), "4242");
    CHECK_STREQ(label(cold_body, "org.nbcanvas.owner"), FAKE_SERVICE_OWNER);
    /* created only: the job attaches and starts it */
    CHECK(!cold.started);
    snprintf(prefix, sizeof(prefix), "/containers/%s/", cold.id);
    CHECK(fake_engine_count(&fs.engine, NULL, prefix) == 0);
    CHECK(fake_service_live(&fs) == 2);
    sandbox_destroy(&cold);
    CHECK(fake_service_live(&fs) == 1);
    json_decref(warm_body);
    json_decref(cold_body);
    stop(&fs, &r);
}

/* ---- handing out ---------------------------------------------------- */

TEST(pool__take_hands_out_a_ready_sandbox_and_refills)
{
    struct fake_service fs;
    struct ready_relay r;
    struct sandbox sb;
    char first[65];

    start(&fs, &r, 1, false);
    WAIT_UNTIL(settled(&fs, 1), PATIENCE_MS);
    CHECK(settled(&fs, 1));
    snprintf(first, sizeof(first), "%s", relay_container(&r, 0));
    memset(&sb, 0, sizeof(sb));
    CHECK(pool_take(fs.svc.pipe.pools[0], &sb, NULL));
    CHECK_STREQ(sb.id, first);
    CHECK(sb.started);
    CHECK(stats(&fs).handed_out == 1);
    /* it is the caller's now: the pool neither keeps nor removes it */
    WAIT_UNTIL(settled(&fs, 1), PATIENCE_MS);
    CHECK(settled(&fs, 1));
    CHECK(creates(&fs) == 2);
    CHECK(strcmp(relay_container(&r, 1), first) != 0 &&
          relay_container(&r, 1)[0]);
    CHECK(fake_engine_has_container(&fs.engine, first));
    CHECK(fake_engine_count(&fs.engine, "DELETE", NULL) == 0);
    CHECK(fake_service_live(&fs) == 2); /* the taken one and the new one */
    sandbox_destroy(&sb);
    CHECK(fake_service_removed(&fs, first));
    CHECK(fake_service_live(&fs) == 1);
    stop(&fs, &r);
}

TEST(pool__an_empty_pool_hands_out_nothing)
{
    struct fake_service fs;
    struct ready_relay r;
    struct sandbox sb;

    start(&fs, &r, 0, false);
    memset(&sb, 0, sizeof(sb));
    snprintf(sb.id, sizeof(sb.id), "untouched");
    CHECK(!pool_take(fs.svc.pipe.pools[0], &sb, NULL));
    CHECK_STREQ(sb.id, "untouched");
    CHECK(stats(&fs).misses == 1 && stats(&fs).handed_out == 0);
    poll(NULL, 0, 100);
    CHECK(fake_engine_nrequests(&fs.engine) == 0);
    stop(&fs, &r);
}

TEST(pool__a_pool_found_empty_grows_up_to_its_ceiling)
{
    struct fake_service fs;
    struct ready_relay r;
    struct sandbox sb;

    start_engine(&fs, &r, false);
    fs.svc.cfg.pool_max_size = 3;
    CHECK(fake_service_open(&fs, 1, false) == 0);
    WAIT_UNTIL(settled(&fs, 1), PATIENCE_MS);
    CHECK(stats(&fs).size == 1 && stats(&fs).max_size == 3);
    /* taken while idle: no demand signal, the depth stays */
    CHECK(pool_take(fs.svc.pipe.pools[0], &sb, NULL));
    sandbox_destroy(&sb);
    CHECK(stats(&fs).size == 1);
    WAIT_UNTIL(settled(&fs, 1), PATIENCE_MS);
    CHECK(pool_take(fs.svc.pipe.pools[0], &sb, NULL));
    sandbox_destroy(&sb);
    /* found empty: deeper, by two, and never past the ceiling */
    CHECK(!pool_take(fs.svc.pipe.pools[0], &sb, NULL) ||
          (sandbox_destroy(&sb), 1));
    CHECK(stats(&fs).size == 3);
    WAIT_UNTIL(settled(&fs, 3), PATIENCE_MS);
    CHECK(settled(&fs, 3));
    while (stats(&fs).idle > 0) {
        CHECK(pool_take(fs.svc.pipe.pools[0], &sb, NULL));
        sandbox_destroy(&sb);
    }
    CHECK(!pool_take(fs.svc.pipe.pools[0], &sb, NULL) ||
          (sandbox_destroy(&sb), 1));
    CHECK(stats(&fs).size == 3);
    /* without a measured footprint (this engine has no stats), the depth
     * from memory would stay at the floor: the ceiling here is the
     * config's */
    stop(&fs, &r);
}

TEST(pool__an_engine_without_stats_sizes_the_ceiling_by_the_limit)
{
    struct fake_service fs;
    struct ready_relay r;
    long long ram = (long long)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE);
    long expect;

    start_engine(&fs, &r, false);
    fs.svc.cfg.pool_max_size = -1; /* from memory: the fake has no stats */
    CHECK(fake_service_open(&fs, 1, false) == 0);
    WAIT_UNTIL(stats(&fs).footprint_bytes > 0, PATIENCE_MS);
    expect = (long)(fs.svc.cfg.pool_memory_share * (double)ram /
                    (double)fs.svc.cfg.render_limits.memory_bytes);
    expect = expect > 64 ? 64 : expect < 1 ? 1 : expect;
    CHECK(stats(&fs).footprint_bytes == fs.svc.cfg.render_limits.memory_bytes);
    CHECK(stats(&fs).max_size == expect);
    CHECK(fake_service_count_with(&fs, "GET", "/containers/", "/stats") == 1);
    stop(&fs, &r);
}

TEST(pool__a_default_floor_grows_to_what_memory_holds_up_to_eight)
{
    struct fake_service fs;
    struct ready_relay r;
    long expect;

    start_engine(&fs, &r, false);
    fs.svc.cfg.pool_max_size = -1;
    fs.svc.cfg.pool_size_default = true; /* pool_size was -1 */
    CHECK(fake_service_open(&fs, 1, false) == 0);
    WAIT_UNTIL(stats(&fs).footprint_bytes > 0, PATIENCE_MS);
    expect = stats(&fs).max_size < 8 ? stats(&fs).max_size : 8;
    CHECK(stats(&fs).min_size == expect);
    WAIT_UNTIL(settled(&fs, expect), PATIENCE_MS);
    CHECK(settled(&fs, expect));
    stop(&fs, &r);

    /* a pool_size the operator gave stays as given */
    start_engine(&fs, &r, false);
    fs.svc.cfg.pool_max_size = -1;
    CHECK(fake_service_open(&fs, 1, false) == 0);
    WAIT_UNTIL(stats(&fs).footprint_bytes > 0, PATIENCE_MS);
    CHECK(stats(&fs).min_size == 1);
    stop(&fs, &r);
}

/* ---- upkeep --------------------------------------------------------- */

TEST(pool__an_idle_sandbox_that_stopped_is_replaced)
{
    struct fake_service fs;
    struct ready_relay r;
    char dead[65];

    start(&fs, &r, 1, false);
    WAIT_UNTIL(settled(&fs, 1), PATIENCE_MS);
    CHECK(settled(&fs, 1));
    snprintf(dead, sizeof(dead), "%s", relay_container(&r, 0));
    fake_engine_set_running(&fs.engine, dead, false);
    WAIT_UNTIL(stats(&fs).replaced == 1 && settled(&fs, 1),
               CHECK_INTERVAL_MS + PATIENCE_MS);
    CHECK(stats(&fs).replaced == 1);
    CHECK(settled(&fs, 1));
    CHECK(fake_service_removed(&fs, dead));
    CHECK(creates(&fs) == 2);
    CHECK(strcmp(relay_container(&r, 1), dead) != 0);
    CHECK(fake_service_live(&fs) == 1);
    stop(&fs, &r);
}

TEST(pool__engine_failures_back_off_and_the_pool_fills_after)
{
    struct fake_service fs;
    struct ready_relay r;
    long long t0, second, third;

    start_engine(&fs, &r, false);
    fake_engine_fail(&fs.engine, "POST", "/containers/create", 2, 500,
                     "engine hiccup");
    t0 = util_now_ms();
    CHECK(fake_service_open(&fs, 1, false) == 0);
    /* the second try comes after about a second, not at once */
    CHECK(fake_engine_wait(&fs.engine, "POST", "/containers/create", 2,
                           PATIENCE_MS) == 2);
    second = util_now_ms() - t0;
    /* and the third after about two more (the delay doubles) */
    CHECK(fake_engine_wait(&fs.engine, "POST", "/containers/create", 3,
                           PATIENCE_MS) == 3);
    third = util_now_ms() - t0;
    CHECK(second >= 800);
    CHECK(third - second >= 1600);
    WAIT_UNTIL(settled(&fs, 1), PATIENCE_MS);
    CHECK(settled(&fs, 1));
    CHECK(creates(&fs) == 3);
    CHECK(fake_engine_containers(&fs.engine) == 1);
    CHECK(fake_service_live(&fs) == 1);
    stop(&fs, &r);
}

TEST(pool__free_removes_every_idle_sandbox)
{
    struct fake_service fs;
    struct ready_relay r;
    char a[65], b[65];

    start(&fs, &r, 2, false);
    WAIT_UNTIL(settled(&fs, 2), PATIENCE_MS);
    CHECK(settled(&fs, 2));
    snprintf(a, sizeof(a), "%s", relay_container(&r, 0));
    snprintf(b, sizeof(b), "%s", relay_container(&r, 1));
    CHECK(fake_engine_containers(&fs.engine) == 2);
    pool_free(fs.svc.pipe.pools[0]);
    fs.svc.pipe.pools[0] = NULL;
    CHECK(fake_service_removed(&fs, a));
    CHECK(fake_service_removed(&fs, b));
    CHECK(fake_engine_count(&fs.engine, "DELETE", NULL) == 2);
    CHECK(fake_engine_containers(&fs.engine) == 0);
    CHECK(fake_service_live(&fs) == 0);
    stop(&fs, &r);
}

/* ---- waiting for a start under way ----------------------------------- */

struct taker {
    struct fake_service *fs;
    struct sandbox sb;
    atomic_int got; /* -1: still waiting, 0: none, 1: one */
    pthread_t thread;
};

static void *take_in_thread(void *arg)
{
    struct taker *t = arg;

    atomic_store(&t->got,
                 pool_take(t->fs->svc.pipe.pools[0], &t->sb, NULL) ? 1 : 0);
    return NULL;
}

TEST(pool__an_empty_pool_waits_for_the_start_under_way)
{
    /* The first fill takes about a second (the gate), so the pool expects
     * a refill to take as long. A request that finds it empty while the
     * refill runs waits for that refill rather than going cold; a second
     * one, with nothing more starting, goes cold at once. */
    struct fake_service fs;
    struct ready_relay r;
    struct sandbox first, second;
    struct taker t = {.got = -1};
    long long t0;

    start(&fs, &r, 1, true);
    poll(NULL, 0, 1000);
    fake_gate_open(&r.gate);
    WAIT_UNTIL(settled(&fs, 1), PATIENCE_MS);
    CHECK(settled(&fs, 1) && stats(&fs).last_refill_ms >= 900);
    fake_gate_close(&r.gate); /* the refill now waits at the gate */
    memset(&first, 0, sizeof(first));
    CHECK(pool_take(fs.svc.pipe.pools[0], &first, NULL));
    WAIT_UNTIL(stats(&fs).starting == 1, PATIENCE_MS);
    t.fs = &fs;
    pthread_create(&t.thread, NULL, take_in_thread, &t);
    poll(NULL, 0, 300);
    CHECK(atomic_load(&t.got) == -1); /* still waiting for the refill */
    t0 = util_now_ms();
    memset(&second, 0, sizeof(second));
    CHECK(!pool_take(fs.svc.pipe.pools[0], &second,
                     NULL)); /* nothing more coming */
    CHECK(util_now_ms() - t0 < 500);
    fake_gate_open(&r.gate);
    pthread_join(t.thread, NULL);
    CHECK(atomic_load(&t.got) == 1 && t.sb.id[0]);
    CHECK(stats(&fs).waited == 1 && stats(&fs).misses == 1);
    sandbox_destroy(&first);
    sandbox_destroy(&t.sb);
    stop(&fs, &r);
}
