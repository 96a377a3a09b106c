#ifndef NBCANVAS_CACHE_H
#define NBCANVAS_CACHE_H

/*
 * The result cache: successful render answers kept in memory, keyed by the
 * SHA-256 of everything that decides the answer (cache_key.h makes the
 * keys), bounded in bytes and evicted least-recently-used first. An
 * answer of an image since rebuilt is never found again (its id is in the
 * key) and ages out.
 */

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "nbcanvas/err.h"
#include "nbcanvas/payload.h"

struct cache;

struct cache_stats {
    long entries;
    long long bytes;
    long hits;
    long misses;
    long errors; /* the shared cache's failed commands */
};

struct cache *cache_new(long long max_bytes);
/* The same cache in Redis, shared by every replica that names the same
 * URL (cache_redis.h); ERR_INVALID for a URL it cannot read. Answers over
 * an eighth of max_bytes are not kept, as in memory. */
int cache_new_shared(struct cache **out, const char *redis_url, long ttl_s,
                     long timeout_ms, long long max_bytes, struct err *err);
void cache_free(struct cache *c);

/* An answer is kept as a payload (payload.h); text is kept
 * gzip-compressed (a hit then costs no CPU for the clients that take
 * gzip, and the cache holds five times as many pages). */

/* Copies the answer for key into *out (caller frees out->body). False
 * when absent. */
bool cache_get(struct cache *c, const unsigned char key[32],
               struct payload *out);
/* Stores a copy of in (an answer over an eighth of the cap is not kept). */
void cache_put(struct cache *c, const unsigned char key[32],
               const struct payload *in);

/* Single flight: identical requests that arrive while one of them runs
 * wait for its answer instead of running again. */
enum cache_lookup {
    CACHE_HIT,     /* *body holds the answer */
    CACHE_CLAIMED, /* run it, then cache_finish(key) */
    CACHE_MISS     /* run it without a claim (gave up waiting, cancelled) */
};

/* Like cache_get, but when an identical request is already running, waits
 * for it (up to wait_ms, or until *cancel) and looks again: its answer is
 * shared; if it failed (failures are not kept), this request claims the
 * key and runs. */
enum cache_lookup cache_get_or_claim(struct cache *c,
                                     const unsigned char key[32],
                                     struct payload *out,
                                     const atomic_bool *cancel,
                                     long long wait_ms);
/* Ends a CACHE_CLAIMED run (after cache_put, or after a failure). */
void cache_finish(struct cache *c, const unsigned char key[32]);

void cache_stats(struct cache *c, struct cache_stats *out);
/* True when the cache is Redis's (cache_new_shared). */
bool cache_is_shared(const struct cache *c);

#endif
