/*
 * The shared cache against a real redis-server (Debian's, installed by
 * scripts/install-deps.sh), started here on a Unix socket in a temporary
 * folder: two cache objects stand for two replicas.
 */
#include "../check.h"
#include "cache_calls.h"
#include "redis_server.h"
#include "nbcanvas/cache.h"
#include "nbcanvas/util.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void redis_cli(const char *args)
{
    CHECK(redis_server_cli(args, NULL, 0) == 0);
}

static struct cache *replica(void)
{
    struct cache *c = NULL;
    struct err err = ERR_INIT;

    CHECK(cache_new_shared(&c, redis_server_url(), 60, 200, 8 << 20, &err) ==
          0);
    return c;
}

static const unsigned char KEY[32] = {7, 7, 7};

TEST(cache_redis__urls)
{
    struct cache *c = NULL;
    struct err err = ERR_INIT;
    const char *good[] = {"redis://127.0.0.1", "redis://h:6390/2",
                          "redis://:secret@h:1", "redis://:p@ss@h:1/0",
                          "unix:///run/r.sock?db=1"};
    const char *bad[] = {
        "http://h",        "redis://",          "redis://h:0",
        "redis://h:99999", "redis://h:12x",     "redis://h/x",
        "unix://relative", "redis://user:pw@h", "redis://h:4294973675",
        "redis://:@h"};

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        CHECK(cache_new_shared(&c, good[i], 1, 100, 1 << 20, &err) == 0);
        CHECK(cache_is_shared(c));
        cache_free(c);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(cache_new_shared(&c, bad[i], 1, 100, 1 << 20, &err) ==
              ERR_INVALID);
        CHECK(strstr(err.msg, "cache_redis_url") != NULL);
    }
}

TEST(cache_redis__one_replica_puts_another_hits)
{
    pid_t redis = redis_server_start();
    struct cache *a = replica(), *b = replica();
    struct cache_stats st;
    const char *type = NULL;
    char *body = NULL;
    size_t len = 0;

    CHECK(!get(b, KEY, &body, &len, &type));
    put(a, KEY, "<p>\n\0x", 6, "text/html; charset=utf-8");
    CHECK(get(b, KEY, &body, &len, &type));
    CHECK(len == 6 && memcmp(body, "<p>\n\0x", 6) == 0);
    CHECK_STREQ(type, "text/html; charset=utf-8");
    free(body);
    cache_stats(b, &st);
    CHECK(st.hits == 1 && st.misses == 1 && st.errors == 0);
    /* kept compressed: handed back as kept, to another replica too */
    cache_put(
        a, KEY,
        &(struct payload){(char *)"\x1f\x8bzz", 4, "application/json", true});
    {
        struct payload got;

        CHECK(cache_get(b, KEY, &got));
        CHECK(got.gzipped && got.len == 4);
        CHECK_STREQ(got.content_type, "application/json");
        free(got.body);
    }
    /* the TTL is Redis's: set on every answer */
    redis_cli("FLUSHALL");
    CHECK(!get(b, KEY, &body, &len, &type));
    cache_free(a);
    cache_free(b);
    redis_server_stop(redis);
}

TEST(cache_redis__what_redis_holds_is_checked_before_it_is_served)
{
    pid_t redis = redis_server_start();
    struct cache *a = NULL;
    struct err err = ERR_INIT;
    struct cache_stats st;
    const char *type = NULL;
    char *body = NULL, args[512], hex[65];
    size_t len = 0;

    /* entries of at most 64 KiB (an eighth of 512 KiB) */
    CHECK(cache_new_shared(&a, redis_server_url(), 60, 200, 512 << 10, &err) ==
          0);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", KEY[i]);
    /* a type the service never makes: it would choose how it is served */
    snprintf(args, sizeof(args),
             "SET nbcanvas:v1:answer:%s 'Text/HTML\n<script>x</script>'", hex);
    redis_cli(args);
    CHECK(!get(a, KEY, &body, &len, &type));
    /* too long: not even sent */
    snprintf(args, sizeof(args),
             "EVAL \"redis.call('SET', KEYS[1], 'application/json' .. "
             "string.char(10) .. string.rep('x', 200000))\" 1 "
             "nbcanvas:v1:answer:%s",
             hex);
    redis_cli(args);
    CHECK(!get(a, KEY, &body, &len, &type));
    cache_stats(a, &st);
    CHECK(st.errors == 1 && st.misses == 2);
    /* one of ours */
    put(a, KEY, "{}", 2, "application/json");
    CHECK(get(a, KEY, &body, &len, &type));
    CHECK_STREQ(type, "application/json");
    free(body);
    cache_free(a);
    redis_server_stop(redis);
}

struct waiter {
    struct cache *cache;
    long long wait_ms;
    enum cache_lookup got;
    long long took_ms;
    char *body;
};

static void *wait_for_key(void *arg)
{
    struct waiter *w = arg;
    const char *type = NULL;
    size_t len = 0;
    long long t0 = util_now_ms();

    w->got = get_or_claim(w->cache, KEY, &w->body, &len, &type, NULL,
                          w->wait_ms);
    w->took_ms = util_now_ms() - t0;
    return NULL;
}

TEST(cache_redis__single_flight_across_replicas)
{
    pid_t redis = redis_server_start();
    struct cache *a = replica(), *b = replica();
    struct waiter w = {b, 5000, CACHE_MISS, 0, NULL};
    pthread_t t;
    const char *type = NULL;
    char *body = NULL;
    size_t len = 0;

    CHECK(get_or_claim(a, KEY, &body, &len, &type, NULL, 5000) ==
          CACHE_CLAIMED);
    pthread_create(&t, NULL, wait_for_key, &w);
    usleep(300000); /* b waits on a's claim */
    put(a, KEY, "answer", 6, "application/json");
    cache_finish(a, KEY);
    pthread_join(t, NULL);
    CHECK(w.got == CACHE_HIT);
    CHECK(w.took_ms >= 250);
    CHECK(w.body && strcmp(w.body, "answer") == 0);
    free(w.body);
    cache_free(a);
    cache_free(b);
    redis_server_stop(redis);
}

TEST(cache_redis__a_crashed_claimers_claim_lapses)
{
    pid_t redis = redis_server_start();
    struct cache *b = replica();
    struct waiter w = {b, 5000, CACHE_MISS, 0, NULL};
    char args[256];

    /* a replica that claimed and died: its claim has a TTL of 400 ms */
    snprintf(args, sizeof(args),
             "SET nbcanvas:v1:claim:070707%058d gone-replica PX 400", 0);
    redis_cli(args);
    wait_for_key(&w);
    CHECK(w.got == CACHE_CLAIMED);
    CHECK(w.took_ms >= 300 && w.took_ms < 2000);
    /* ... and finishing releases only our own claim */
    cache_finish(b, KEY);
    cache_free(b);
    redis_server_stop(redis);
}

TEST(cache_redis__down_then_back)
{
    pid_t redis = redis_server_start();
    struct cache *a = replica();
    struct waiter w = {a, 5000, CACHE_HIT, 0, NULL};
    struct cache_stats st;
    const char *type = NULL;
    char *body = NULL;
    size_t len = 0;

    redis_server_stop(redis);
    /* down: a miss at once, counted as an error, no claim */
    wait_for_key(&w);
    CHECK(w.got == CACHE_MISS);
    CHECK(w.took_ms < 1000);
    put(a, KEY, "x", 1, "application/json"); /* resting: no wait */
    cache_stats(a, &st);
    CHECK(st.errors >= 1);
    /* back: hits resume by themselves once the rest is over */
    redis = redis_server_start();
    usleep(1100 * 1000);
    put(a, KEY, "again", 5, "application/json");
    CHECK(get(a, KEY, &body, &len, &type));
    CHECK(len == 5);
    free(body);
    cache_free(a);
    redis_server_stop(redis);
}
