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

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nbcanvas/formats.h"
#include "nbcanvas/util.h"

#define KEY_PREFIX "nbcanvas:v1:"
#define RETRY_AFTER_FAILURE_MS 1000 /* a Redis that failed is left alone */
#define POLL_MS 50                  /* a waiter looks again this often */
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
    pthread_mutex_t lock; /* everything below */
    redisContext *conn;   /* NULL: not connected */
    long long retry_at_ms;
    /* where */
    char host[256];
    int port;
    bool unix_socket;
    char password[128];
    long db;
    /* how */
    long ttl_s;
    long timeout_ms;
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

static int bad_url(struct err *err)
{
    return err_set(err, ERR_INVALID,
                   "cache_redis_url: not redis://[:password@]host[:port][/db] "
                   "or unix:///path[?db=N]");
}

/* A number of at most max, all of text; -1 when it is not. */
static long whole_number(const char *text, size_t len, long max)
{
    long n = 0;

    if (len == 0 || len > 9)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -1;
        n = n * 10 + (text[i] - '0');
    }
    return n <= max ? n : -1;
}

static int parse_url(struct cache_redis *r, const char *url, struct err *err)
{
    const char *p, *end, *at, *colon, *slash, *q;
    size_t host_len;

    if (strncmp(url, "unix://", 7) == 0) {
        p = url + 7;
        q = strstr(p, "?db=");
        end = q ? q : p + strlen(p);
        if (*p != '/' || (size_t)(end - p) >= 108 /* sun_path */ ||
            (q && (r->db = whole_number(q + 4, strlen(q + 4), 1 << 20)) < 0))
            return bad_url(err);
        r->unix_socket = true;
        snprintf(r->host, sizeof(r->host), "%.*s", (int)(end - p), p);
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0)
        return bad_url(err);
    p = url + 8;
    end = p + strcspn(p, "/"); /* the authority ends at the path */
    at = memrchr(p, '@', (size_t)(end - p)); /* a password may hold '@' */
    if (at) {
        if (*p != ':' || (size_t)(at - p - 1) >= sizeof(r->password) ||
            at == p + 1)
            return bad_url(err);
        snprintf(r->password, sizeof(r->password), "%.*s", (int)(at - p - 1),
                 p + 1);
        p = at + 1;
    }
    colon = memchr(p, ':', (size_t)(end - p));
    r->port = 6379;
    if (colon && (r->port = (int)whole_number(
                      colon + 1, (size_t)(end - colon - 1), 65535)) < 1)
        return bad_url(err);
    host_len = (size_t)((colon ? colon : end) - p);
    if (host_len == 0 || host_len >= sizeof(r->host))
        return bad_url(err);
    snprintf(r->host, sizeof(r->host), "%.*s", (int)host_len, p);
    slash = *end == '/' ? end : NULL;
    if (slash && slash[1] &&
        (r->db = whole_number(slash + 1, strlen(slash + 1), 1 << 20)) < 0)
        return bad_url(err);
    return 0;
}

/* Under the lock: the connection is broken; rest a while. */
static void failed(struct cache_redis *r, const char *what, const char *why)
{
    if (r->retry_at_ms == 0 || r->stats.errors % 100 == 0)
        fprintf(stderr, "nbcanvas: redis cache: %s: %s\n", what, why);
    r->stats.errors++;
    if (r->conn)
        redisFree(r->conn);
    r->conn = NULL;
    r->retry_at_ms = util_now_ms() + RETRY_AFTER_FAILURE_MS;
}

/* Under the lock: the answer to a connection's AUTH or SELECT (freed). */
static bool setup_ok(struct cache_redis *r, const char *what, redisReply *ok)
{
    bool good = ok && ok->type != REDIS_REPLY_ERROR;

    if (!good)
        failed(r, what, ok ? ok->str : r->conn->errstr);
    freeReplyObject(ok);
    return good;
}

/* Under the lock: a connection, made if need be; false while resting
 * (unless force) or when Redis cannot be reached. */
static bool connected(struct cache_redis *r, bool force)
{
    struct timeval tv = {r->timeout_ms / 1000, (r->timeout_ms % 1000) * 1000};

    if (r->conn)
        return true;
    if (!force && util_now_ms() < r->retry_at_ms)
        return false;
    r->conn = r->unix_socket ? redisConnectUnixWithTimeout(r->host, tv)
                             : redisConnectWithTimeout(r->host, r->port, tv);
    if (!r->conn || r->conn->err || redisSetTimeout(r->conn, tv) != REDIS_OK) {
        failed(r, "connect", r->conn ? r->conn->errstr : "out of memory");
        return false;
    }
    if (r->password[0] &&
        !setup_ok(r, "AUTH", redisCommand(r->conn, "AUTH %s", r->password)))
        return false;
    if (r->db &&
        !setup_ok(r, "SELECT", redisCommand(r->conn, "SELECT %ld", r->db)))
        return false;
    if (r->retry_at_ms)
        fprintf(stderr, "nbcanvas: redis cache: connected again\n");
    r->retry_at_ms = 0;
    return true;
}

/* Under the lock: one command; NULL (and counted) when it fails. An error
 * reply (a full Redis, a wrong type) is counted and logged, and the
 * connection kept; a broken connection is dropped and rested. */
static redisReply *command(struct cache_redis *r, bool force, int argc,
                           const char **argv, const size_t *lens)
{
    redisReply *reply;

    if (!connected(r, force))
        return NULL;
    reply = redisCommandArgv(r->conn, argc, argv, lens);
    if (!reply) {
        failed(r, argv[0], r->conn->errstr);
        return NULL;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        if (r->stats.errors++ % 100 == 0)
            fprintf(stderr, "nbcanvas: redis cache: %s: %s\n", argv[0],
                    reply->str);
        freeReplyObject(reply);
        return NULL;
    }
    return reply;
}

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
    reply = command(r, false, 5, argv, NULL);
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
    reply = command(r, false, 6, argv, NULL);
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
            freeReplyObject(command(r, false, 6, argv, NULL));
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

    if (parse_url(r, url, err) < 0) {
        free(r);
        return ERR_INVALID;
    }
    pthread_mutex_init(&r->lock, NULL);
    util_cond_init_monotonic(&r->stop);
    r->ttl_s = ttl_s;
    r->timeout_ms = timeout_ms;
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
    if (r->conn)
        redisFree(r->conn);
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
        } else if (down || !r->conn || (cancel && *cancel) ||
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
        freeReplyObject(command(r, true, 5, argv, NULL));
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
    freeReplyObject(command(r, false, 5, argv, lens));
    pthread_mutex_unlock(&r->lock);
    free(value);
}

void cache_redis_stats(struct cache_redis *r, struct cache_stats *out)
{
    pthread_mutex_lock(&r->lock);
    *out = r->stats;
    pthread_mutex_unlock(&r->lock);
}
