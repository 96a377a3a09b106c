#ifndef NBCANVAS_TESTS_CACHE_CALLS_H
#define NBCANVAS_TESTS_CACHE_CALLS_H

/*
 * cache.h's calls in the shape the cache tests read best (body, length and
 * type apart), shared by the in-memory and the Redis tests.
 */
#include <stdbool.h>
#include <stddef.h>

#include "nbcanvas/cache.h"

/* The calls in the shape the tests read best: body, length and type. */
static inline bool get(struct cache *c, const unsigned char key[32],
                       char **body, size_t *len, const char **type)
{
    struct payload got;
    bool hit = cache_get(c, key, &got);

    if (hit) {
        *body = got.body;
        *len = got.len;
        *type = got.content_type;
    }
    return hit;
}

static inline enum cache_lookup get_or_claim(
    struct cache *c, const unsigned char key[32], char **body, size_t *len,
    const char **type, const atomic_bool *cancel, long long wait_ms)
{
    struct payload got = PAYLOAD_INIT;
    enum cache_lookup r = cache_get_or_claim(c, key, &got, cancel, wait_ms);

    if (r == CACHE_HIT) {
        *body = got.body;
        *len = got.len;
        *type = got.content_type;
    }
    return r;
}

static inline void put(struct cache *c, const unsigned char key[32],
                       const char *body, size_t len, const char *type)
{
    cache_put(c, key, &(struct payload){(char *)body, len, type, false});
}

#endif
