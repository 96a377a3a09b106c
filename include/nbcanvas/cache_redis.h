#ifndef NBCANVAS_CACHE_REDIS_H
#define NBCANVAS_CACHE_REDIS_H

/*
 * The result cache shared by every replica, in Redis (cache_redis_url).
 * cache.c hands its calls here when the URL is set; nothing else uses
 * this file. Answers live under nbcanvas:v1:answer:<key> with a TTL
 * (cache_ttl_s); Redis's own memory cap and LRU policy bound the total.
 * Single flight across replicas is a claim, SET nbcanvas:v1:claim:<key>
 * NX PX with a token of its own: the holder runs, and a thread renews its
 * claims every 3 s for 10 s more; the others poll for the answer and take
 * the claim over when it is released or lapses (a crashed holder's claim
 * lapses within 10 s).
 *
 * Redis is a cache, never a dependency: every read or write on its socket
 * has a timeout (cache_redis_timeout_ms), a broken connection counts as an
 * error and a miss and is not tried again for a second, so a Redis that is
 * down costs a request one failed connection at most. Hits come back by
 * themselves when it answers again. One connection serves every thread,
 * under a lock held only for a command. What Redis returns is checked
 * (size, content type) before it is served.
 */

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "nbcanvas/cache.h"
#include "nbcanvas/err.h"

struct cache_redis;

/* Parses url (redis://[:password@]host[:port][/db] or unix:///path[?db=N])
 * and connects at first use. ERR_INVALID for a URL it cannot read. */
int cache_redis_new(struct cache_redis **out, const char *url, long ttl_s,
                    long timeout_ms, long long max_entry_bytes,
                    struct err *err);
void cache_redis_free(struct cache_redis *r);

/* As cache_get / cache_get_or_claim / cache_finish / cache_put (cache.h);
 * a content type read back is one of formats.h's static strings. A claim
 * is finished on the thread that made it. */
bool cache_redis_get(struct cache_redis *r, const unsigned char key[32],
                     struct payload *out);
enum cache_lookup cache_redis_get_or_claim(struct cache_redis *r,
                                           const unsigned char key[32],
                                           struct payload *out,
                                           const atomic_bool *cancel,
                                           long long wait_ms);
void cache_redis_finish(struct cache_redis *r, const unsigned char key[32]);
void cache_redis_put(struct cache_redis *r, const unsigned char key[32],
                     const struct payload *in);

/* hits, misses and errors; entries and bytes are Redis's (0 here). */
void cache_redis_stats(struct cache_redis *r, struct cache_stats *out);

#endif
