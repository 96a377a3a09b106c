/*
 * The result cache's front: in this process, or handed to Redis
 * (cache_redis.c) when the service shares it with other replicas.
 *
 * In this process it is an LRU: a doubly linked list in recency order (newest first)
 * and a linear key search. With answers of hundreds of KiB and a cap of
 * hundreds of MiB the list holds a few thousand entries at most, and a
 * scan of 32-byte keys costs microseconds next to a render's seconds; a
 * hash table would be more code for nothing measurable.
 */
#include "nbcanvas/cache.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#include "nbcanvas/cache_redis.h"
#include "nbcanvas/list.h"
#include "nbcanvas/util.h"

struct entry {
    unsigned char key[32];
    struct payload answer;
    struct list_node link; /* in recency order, newest first */
};

/* A key some request is computing right now. */
struct flight {
    unsigned char key[32];
    struct flight *next;
};

struct cache {
    pthread_mutex_t lock;
    pthread_cond_t landed; /* a flight ended */
    struct flight *flights;
    struct list_node entries;
    long long max_bytes;
    struct cache_stats stats;
    struct cache_redis *shared; /* set: every call goes there */
};

struct cache *cache_new(long long max_bytes)
{
    struct cache *c = xcalloc(1, sizeof(*c));

    pthread_mutex_init(&c->lock, NULL);
    util_cond_init_monotonic(&c->landed);
    c->max_bytes = max_bytes;
    list_init(&c->entries);
    return c;
}

int cache_new_shared(struct cache **out, const char *redis_url, long ttl_s,
                     long timeout_ms, long long max_bytes, struct err *err)
{
    struct cache_redis *shared;
    int rc = cache_redis_new(&shared, redis_url, ttl_s, timeout_ms,
                             max_bytes / 8, err);

    if (rc < 0)
        return rc;
    *out = cache_new(max_bytes);
    (*out)->shared = shared;
    return 0;
}

bool cache_is_shared(const struct cache *c)
{
    return c->shared != NULL;
}

static struct entry *oldest(struct cache *c)
{
    return list_is_empty(&c->entries)
               ? NULL
               : list_entry(c->entries.prev, struct entry, link);
}

static void drop(struct cache *c, struct entry *e)
{
    list_remove(&e->link);
    c->stats.entries--;
    c->stats.bytes -= (long long)e->answer.len;
    free(e->answer.body);
    free(e);
}

static void clear(struct cache *c)
{
    while (oldest(c))
        drop(c, oldest(c));
}

void cache_free(struct cache *c)
{
    if (!c)
        return;
    cache_redis_free(c->shared);
    clear(c);
    while (c->flights) {
        struct flight *f = c->flights;

        c->flights = f->next;
        free(f);
    }
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->landed);
    free(c);
}

static struct entry *find(struct cache *c, const unsigned char key[32])
{
    struct list_node *n;

    list_for_each(n, &c->entries) {
        struct entry *e = list_entry(n, struct entry, link);

        if (memcmp(e->key, key, 32) == 0)
            return e;
    }
    return NULL;
}

/* Under the lock: copies out the answer for key if there is one. */
static bool take_copy(struct cache *c, const unsigned char key[32],
                      struct payload *out)
{
    struct entry *e = find(c, key);

    if (!e)
        return false;
    list_remove(&e->link);
    list_push_front(&c->entries, &e->link);
    *out = e->answer;
    out->body = xmalloc(e->answer.len + 1);
    memcpy(out->body, e->answer.body, e->answer.len);
    out->body[e->answer.len] = '\0';
    return true;
}

bool cache_get(struct cache *c, const unsigned char key[32],
               struct payload *out)
{
    bool hit;

    if (c->shared)
        return cache_redis_get(c->shared, key, out);
    pthread_mutex_lock(&c->lock);
    hit = take_copy(c, key, out);
    if (hit)
        c->stats.hits++;
    else
        c->stats.misses++;
    pthread_mutex_unlock(&c->lock);
    return hit;
}

static struct flight **find_flight(struct cache *c,
                                   const unsigned char key[32])
{
    struct flight **f;

    for (f = &c->flights; *f; f = &(*f)->next)
        if (memcmp((*f)->key, key, 32) == 0)
            return f;
    return NULL;
}

enum cache_lookup cache_get_or_claim(struct cache *c,
                                     const unsigned char key[32],
                                     struct payload *out,
                                     const atomic_bool *cancel,
                                     long long wait_ms)
{
    long long until = util_now_ms() + wait_ms;
    enum cache_lookup result;

    if (c->shared)
        return cache_redis_get_or_claim(c->shared, key, out, cancel, wait_ms);
    pthread_mutex_lock(&c->lock);
    for (;;) {
        struct timespec slice;

        if (take_copy(c, key, out)) {
            c->stats.hits++;
            result = CACHE_HIT;
            break;
        }
        if (!find_flight(c, key)) {
            struct flight *f = xcalloc(1, sizeof(*f));

            memcpy(f->key, key, 32);
            f->next = c->flights;
            c->flights = f;
            c->stats.misses++;
            result = CACHE_CLAIMED;
            break;
        }
        if ((cancel && *cancel) || util_now_ms() >= until) {
            c->stats.misses++;
            result = CACHE_MISS;
            break;
        }
        /* Short slices, so a cancelled request stops waiting soon. */
        slice = util_monotonic_in(200);
        pthread_cond_timedwait(&c->landed, &c->lock, &slice);
    }
    pthread_mutex_unlock(&c->lock);
    return result;
}

void cache_finish(struct cache *c, const unsigned char key[32])
{
    struct flight **f, *gone;

    if (c->shared) {
        cache_redis_finish(c->shared, key);
        return;
    }
    pthread_mutex_lock(&c->lock);
    f = find_flight(c, key);
    if (f) {
        gone = *f;
        *f = gone->next;
        free(gone);
    }
    pthread_cond_broadcast(&c->landed);
    pthread_mutex_unlock(&c->lock);
}

void cache_put(struct cache *c, const unsigned char key[32],
               const struct payload *in)
{
    struct entry *e;

    if (c->shared) {
        cache_redis_put(c->shared, key, in);
        return;
    }
    if ((long long)in->len > c->max_bytes / 8)
        return;
    e = xcalloc(1, sizeof(*e));
    memcpy(e->key, key, 32);
    e->answer = *in;
    e->answer.body = xmalloc(in->len + 1);
    memcpy(e->answer.body, in->body, in->len);
    pthread_mutex_lock(&c->lock);
    if (find(c, key))
        drop(c, find(c, key));
    list_push_front(&c->entries, &e->link);
    c->stats.entries++;
    c->stats.bytes += (long long)in->len;
    while (c->stats.bytes > c->max_bytes && oldest(c))
        drop(c, oldest(c));
    pthread_mutex_unlock(&c->lock);
}

void cache_stats(struct cache *c, struct cache_stats *out)
{
    if (c->shared) {
        cache_redis_stats(c->shared, out);
        return;
    }
    pthread_mutex_lock(&c->lock);
    *out = c->stats;
    pthread_mutex_unlock(&c->lock);
}
