/*
 * The shared result cache in Redis (see cache_redis.h for the design).
 * A stored answer is "<content type>\n<body>", or "gzip <content type>\n
 * <gzip stream>" for one kept compressed, so one GET brings all of it.
 *
 * What Redis hands back is not trusted further than a cache's word: an
 * answer is read only if it is at most max_entry_bytes (Redis checks the
 * length before sending it) and its content type is one of the four the
 * service itself makes (formats.h), so a value planted in Redis cannot
 * choose how the answer is served or how much memory it takes.
 *
 * A claim is held with a token of its own and a short TTL that a renewer
 * thread extends every few seconds while the render runs; released or
 * renewed only by a script that checks the token, so a claim that lapsed
 * and was taken over by another request is never touched again.
 */
#include "nbcanvas/cache_redis.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nbcanvas/formats.h"
#include "nbcanvas/redis_link.h"
#include "nbcanvas/util.h"

#define KEY_PREFIX "nbcanvas:v1:"
#define POLL_MS 50         /* a waiter looks again this often */
#define CLAIM_TTL_MS 10000 /* a claim lapses this long after its renewal */
#define RENEW_EVERY_MS 3000
#define MAX_CLAIMS 256 /* claims one process holds at once at most */

/* GET, unless the value is longer than ARGV[1]: then nothing. */
static const char GET_CAPPED[] =
    "if redis.call('STRLEN', KEYS[1]) > tonumber(ARGV[1]) then "
    "return false end return redis.call('GET', KEYS[1])";
/* Only the holder may release or renew a claim. */
static const char RELEASE[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                              "return redis.call('DEL', KEYS[1]) end return 0";
static const char RENEW[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";

struct held_claim {
    unsigned char key[32];
    char token[64];
    pthread_t holder; /* cache_redis_finish is called on the same thread */
};

struct cache_redis {
    struct redis_link *link;
    pthread_mutex_t lock; /* everything below */
    /* how */
    long ttl_s;
    long long max_entry_bytes;
    /* claims */
    char token_prefix[40]; /* this process's; each claim adds a number */
    unsigned long claims_made;
    struct held_claim held[MAX_CLAIMS];
    long n_held;
    pthread_t renewer;
    pthread_cond_t stop; /* the renewer's sleep */
    bool stopping;
    struct cache_stats stats;
};

static void key_name(char out[96], const char *kind, const unsigned char k[32])
{
    int n = snprintf(out, 96, KEY_PREFIX "%s:", kind);

    for (int i = 0; i < 32; i++)
        n += snprintf(out + n, (size_t)(96 - n), "%02x", k[i]);
}

/* Under the lock: the answer; true when there is one worth reading. */
static bool fetch(struct cache_redis *r, const unsigned char key[32],
                  struct payload *out)
{
    char name[96], most[24];
    const char *argv[5] = {"EVAL", GET_CAPPED, "1", name, most};
    redisReply *reply;
    const char *nl = NULL, *type = NULL, *head;
    bool found = false, gzipped = false;

    key_name(name, "answer", key);
    snprintf(most, sizeof(most), "%lld", r->max_entry_bytes + 128);
    reply = redis_link_command(r->link, false, 5, argv, NULL);
    if (reply && reply->type == REDIS_REPLY_STRING &&
        (nl = memchr(reply->str, '\n', reply->len))) {
        head = reply->str;
        gzipped = nl - head > 5 && memcmp(head, "gzip ", 5) == 0;
        if (gzipped)
            head += 5;
        type = formats_content_type(head, (size_t)(nl - head));
    }
    if (type) {
        out->len = reply->len - (size_t)(nl + 1 - reply->str);
        out->body = xmalloc(out->len + 1);
        memcpy(out->body, nl + 1, out->len);
        out->body[out->len] = '\0';
        out->content_type = type;
        out->gzipped = gzipped;
        found = true;
    } else if (reply && reply->type == REDIS_REPLY_STRING) {
        r->stats.errors++; /* not an answer of ours: ignored */
    }
    freeReplyObject(reply);
    return found;
}

/* Under the lock: SET the claim NX with a fresh token; true when it is
 * now ours (and held, for renewal). *down: Redis did not answer. */
static bool claim(struct cache_redis *r, const unsigned char key[32],
                  bool *down)
{
    char name[96], token[64], ms[24];
    const char *argv[6] = {"SET", name, token, "NX", "PX", ms};
    redisReply *reply;
    bool ours;

    *down = false;
    if (r->n_held == MAX_CLAIMS)
        return false; /* run it unclaimed: single flight is an economy */
    key_name(name, "claim", key);
    snprintf(token, sizeof(token), "%s-%lu", r->token_prefix,
             ++r->claims_made);
    snprintf(ms, sizeof(ms), "%d", CLAIM_TTL_MS);
    reply = redis_link_command(r->link, false, 6, argv, NULL);
    *down = reply == NULL;
    ours = reply && reply->type == REDIS_REPLY_STATUS;
    freeReplyObject(reply);
    if (ours) {
        struct held_claim *h = &r->held[r->n_held++];

        memcpy(h->key, key, 32);
        snprintf(h->token, sizeof(h->token), "%s", token);
        h->holder = pthread_self();
    }
    return ours;
}

/* Renews every claim held, every RENEW_EVERY_MS, until stopped. */
static void *renew_claims(void *arg)
{
    struct cache_redis *r = arg;

    pthread_mutex_lock(&r->lock);
    while (!r->stopping) {
        struct timespec next = util_monotonic_in(RENEW_EVERY_MS);

        pthread_cond_timedwait(&r->stop, &r->lock, &next);
        for (long i = 0; i < r->n_held && !r->stopping; i++) {
            char name[96], ms[24];
            const char *argv[6] = {"EVAL",           RENEW, "1", name,
                                   r->held[i].token, ms};

            key_name(name, "claim", r->held[i].key);
            snprintf(ms, sizeof(ms), "%d", CLAIM_TTL_MS);
            freeReplyObject(redis_link_command(r->link, false, 6, argv, NULL));
        }
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

int cache_redis_new(struct cache_redis **out, const char *url, long ttl_s,
                    long timeout_ms, long long max_entry_bytes,
                    struct err *err)
{
    struct cache_redis *r = xcalloc(1, sizeof(*r));
    char id[37];

    if (redis_link_new(&r->link, url, timeout_ms, "redis cache", err) < 0) {
        free(r);
        return ERR_INVALID;
    }
    pthread_mutex_init(&r->lock, NULL);
    util_cond_init_monotonic(&r->stop);
    r->ttl_s = ttl_s;
    r->max_entry_bytes = max_entry_bytes;
    util_uuid(id);
    snprintf(r->token_prefix, sizeof(r->token_prefix), "%s", id);
    if (pthread_create(&r->renewer, NULL, renew_claims, r) != 0)
        abort();
    *out = r;
    return 0;
}

void cache_redis_free(struct cache_redis *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->stopping = true;
    pthread_cond_signal(&r->stop);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->renewer, NULL);
    redis_link_free(r->link);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->stop);
    free(r);
}

bool cache_redis_get(struct cache_redis *r, const unsigned char key[32],
                     struct payload *out)
{
    bool hit;

    pthread_mutex_lock(&r->lock);
    hit = fetch(r, key, out);
    if (hit)
        r->stats.hits++;
    else
        r->stats.misses++;
    pthread_mutex_unlock(&r->lock);
    return hit;
}

enum cache_lookup cache_redis_get_or_claim(struct cache_redis *r,
                                           const unsigned char key[32],
                                           struct payload *out,
                                           const atomic_bool *cancel,
                                           long long wait_ms)
{
    long long until = util_now_ms() + wait_ms;
    enum cache_lookup result;

    for (;;) {
        bool down = false;
        struct timespec pause = {0, POLL_MS * 1000000L};

        pthread_mutex_lock(&r->lock);
        if (fetch(r, key, out)) {
            r->stats.hits++;
            result = CACHE_HIT;
        } else if (claim(r, key, &down)) {
            r->stats.misses++;
            result = CACHE_CLAIMED;
        } else if (down || !redis_link_up(r->link) || (cancel && *cancel) ||
                   util_now_ms() >= until) {
            r->stats.misses++; /* run it, uncached if Redis is away */
            result = CACHE_MISS;
        } else {
            pthread_mutex_unlock(&r->lock);
            nanosleep(&pause, NULL); /* another request runs it */
            continue;
        }
        pthread_mutex_unlock(&r->lock);
        return result;
    }
}

void cache_redis_finish(struct cache_redis *r, const unsigned char key[32])
{
    char name[96];
    const char *argv[5] = {"EVAL", RELEASE, "1", name, NULL};

    key_name(name, "claim", key);
    pthread_mutex_lock(&r->lock);
    for (long i = 0; i < r->n_held; i++) {
        struct held_claim h = r->held[i];

        if (memcmp(h.key, key, 32) != 0 ||
            !pthread_equal(h.holder, pthread_self()))
            continue;
        r->held[i] = r->held[--r->n_held];
        argv[4] = h.token;
        /* even while resting: waiters should not sit out the TTL */
        freeReplyObject(redis_link_command(r->link, true, 5, argv, NULL));
        break;
    }
    pthread_mutex_unlock(&r->lock);
}

void cache_redis_put(struct cache_redis *r, const unsigned char key[32],
                     const struct payload *in)
{
    char name[96], ms[24], head[128], *value;
    size_t head_len = (size_t)snprintf(head, sizeof(head), "%s%s\n",
                                       in->gzipped ? "gzip " : "",
                                       in->content_type);
    const char *argv[5] = {"SET", name, NULL, "PX", ms};
    size_t lens[5];

    if ((long long)in->len > r->max_entry_bytes || head_len >= sizeof(head))
        return;
    value = xmalloc(head_len + in->len);
    memcpy(value, head, head_len);
    memcpy(value + head_len, in->body, in->len);
    key_name(name, "answer", key);
    snprintf(ms, sizeof(ms), "%lld", r->ttl_s * 1000LL);
    argv[2] = value;
    for (int i = 0; i < 5; i++)
        lens[i] = i == 2 ? head_len + in->len : strlen(argv[i]);
    pthread_mutex_lock(&r->lock);
    freeReplyObject(redis_link_command(r->link, false, 5, argv, lens));
    pthread_mutex_unlock(&r->lock);
    free(value);
}

void cache_redis_stats(struct cache_redis *r, struct cache_stats *out)
{
    pthread_mutex_lock(&r->lock);
    *out = r->stats;
    pthread_mutex_unlock(&r->lock);
    out->errors += (long)redis_link_errors(r->link);
}
