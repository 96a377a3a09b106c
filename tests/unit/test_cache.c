#include "../check.h"
#include "cache_calls.h"
#include "nbcanvas/cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const unsigned char KEY_A[32] = {1};
static const unsigned char KEY_B[32] = {2};

TEST(cache__lru_evicts_the_oldest)
{
    struct cache *c = cache_new(8 * 100);
    const char *type = NULL;
    char big[100], *body = NULL;
    size_t len = 0;
    unsigned char key[32] = {0};
    int i;

    memset(big, 'x', sizeof(big));
    for (i = 0; i < 9; i++) { /* 9 x 100 bytes into 800 */
        key[0] = (unsigned char)i;
        put(c, key, big, sizeof(big), "text/plain");
    }
    key[0] = 0;
    CHECK(!get(c, key, &body, &len, &type));
    key[0] = 8;
    CHECK(get(c, key, &body, &len, &type));
    CHECK(len == sizeof(big));
    CHECK_STREQ(type, "text/plain");
    free(body);
    cache_free(c);
}

struct waiter {
    struct cache *cache;
    atomic_bool cancel;
    long long wait_ms;
    enum cache_lookup got;
    char *body;
};

static void *wait_for_a(void *arg)
{
    struct waiter *w = arg;
    const char *type = NULL;
    size_t len = 0;

    w->got = get_or_claim(w->cache, KEY_A, &w->body, &len, &type, &w->cancel,
                          w->wait_ms);
    return NULL;
}

/* The second identical request waits for the first and shares its answer. */
TEST(cache__single_flight_shares_the_answer)
{
    struct cache *c = cache_new(1 << 20);
    struct waiter w = {c, false, 10000, CACHE_MISS, NULL};
    const char *type = NULL;
    char *body = NULL;
    size_t len = 0;
    pthread_t t;

    CHECK(get_or_claim(c, KEY_A, &body, &len, &type, NULL, 0) ==
          CACHE_CLAIMED);
    /* another key is not held up */
    CHECK(get_or_claim(c, KEY_B, &body, &len, &type, NULL, 0) ==
          CACHE_CLAIMED);
    cache_finish(c, KEY_B);
    pthread_create(&t, NULL, wait_for_a, &w);
    usleep(300 * 1000);
    put(c, KEY_A, "answer", 6, "text/html");
    cache_finish(c, KEY_A);
    pthread_join(t, NULL);
    CHECK(w.got == CACHE_HIT);
    CHECK_STREQ(w.body, "answer");
    free(w.body);
    cache_free(c);
}

/* Failures are not kept: a waiter then runs the request itself. */
TEST(cache__single_flight_after_a_failure_claims)
{
    struct cache *c = cache_new(1 << 20);
    struct waiter w = {c, false, 10000, CACHE_MISS, NULL};
    const char *type = NULL;
    char *body = NULL;
    size_t len = 0;
    pthread_t t;

    CHECK(get_or_claim(c, KEY_A, &body, &len, &type, NULL, 0) ==
          CACHE_CLAIMED);
    pthread_create(&t, NULL, wait_for_a, &w);
    usleep(300 * 1000);
    cache_finish(c, KEY_A); /* no answer stored */
    pthread_join(t, NULL);
    CHECK(w.got == CACHE_CLAIMED);
    cache_finish(c, KEY_A);
    cache_free(c);
}

/* A waiter stops waiting when cancelled or past its wait. */
TEST(cache__single_flight_gives_up)
{
    struct cache *c = cache_new(1 << 20);
    struct waiter timed = {c, false, 300, CACHE_HIT, NULL};
    struct waiter cancelled = {c, false, 60000, CACHE_HIT, NULL};
    const char *type = NULL;
    char *body = NULL;
    size_t len = 0;
    pthread_t t1, t2;

    CHECK(get_or_claim(c, KEY_A, &body, &len, &type, NULL, 0) ==
          CACHE_CLAIMED);
    pthread_create(&t1, NULL, wait_for_a, &timed);
    pthread_create(&t2, NULL, wait_for_a, &cancelled);
    usleep(100 * 1000);
    cancelled.cancel = true;
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CHECK(timed.got == CACHE_MISS);
    CHECK(cancelled.got == CACHE_MISS);
    cache_finish(c, KEY_A);
    cache_free(c);
}

TEST(cache__a_compressed_answer_comes_back_as_kept)
{
    struct cache *c = cache_new(1 << 20);
    struct payload got;

    cache_put(c, KEY_A,
              &(struct payload){(char *)"\x1f\x8b...", 5,
                                "text/html; charset=utf-8", true});
    CHECK(cache_get(c, KEY_A, &got));
    CHECK(got.gzipped && got.len == 5);
    CHECK(memcmp(got.body, "\x1f\x8b...", 5) == 0);
    free(got.body);
    cache_free(c);
}
