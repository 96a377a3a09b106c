/*
 * Tenants' limits across replicas (cluster_limits.h for the design). The
 * three scripts below are the whole protocol; each runs on Redis's clock
 * (TIME), so the replicas' clocks never have to agree.
 */
#include "nbcanvas/cluster_limits.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbcanvas/redis_link.h"
#include "nbcanvas/util.h"

#define KEY_PREFIX "nbcanvas:v1:"
#define LEASE_TTL_MS 10000 /* a lease lapses this long after its renewal */
#define RENEW_EVERY_MS 3000

/* Redis's clock in ms, as every script starts. */
#define NOW_MS                                                                \
    "local t = redis.call('TIME') "                                           \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "

/* KEYS[1] the tenant's bucket, ARGV[1] its requests a minute: 0 when one
 * is taken, else the ms until the next is there. As tenants_admit. */
static const char RATE[] = NOW_MS
    "local rpm = tonumber(ARGV[1]) "
    "local b = redis.call('HMGET', KEYS[1], 'tokens', 'at') "
    "local tokens = tonumber(b[1]) or rpm "
    "local at = tonumber(b[2]) or now "
    "tokens = math.min(rpm, tokens + math.max(0, now - at) * rpm / "
    "60000) "
    "local wait = 0 "
    "if tokens >= 1 then tokens = tokens - 1 "
    "else wait = math.ceil((1 - tokens) * 60000 / rpm) end "
    "redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', "
    "tostring(now)) "
    "return wait";

/* KEYS[1] the tenant's leases, ARGV limit, token, ttl: 1 when the lease
 * is taken, 0 when the tenant holds all its places. */
static const char TAKE[] = NOW_MS
    "local ttl = tonumber(ARGV[3]) "
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) "
    "if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then "
    "return 0 end "
    "redis.call('ZADD', KEYS[1], now + ttl, ARGV[2]) "
    "return 1";

/* KEYS[1] the replicas' heartbeats, then one tenant's leases per lease
 * held; ARGV ttl, this replica, then the leases' tokens. Renews them all
 * (writing any taken while Redis was away) and answers, for each key, how
 * many are alive: the replicas, then each lease's tenant's places. */
static const char RENEW[] = NOW_MS
    "local ttl = tonumber(ARGV[1]) "
    "local alive = {} "
    "for i = 1, #KEYS do "
    "redis.call('ZADD', KEYS[i], now + ttl, ARGV[i + 1]) end "
    "for i = 1, #KEYS do "
    "redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now) "
    "alive[i] = redis.call('ZCARD', KEYS[i]) end "
    "return alive";

struct held {
    enum lease_kind kind;
    char tenant[TENANT_NAME_MAX];
    char token[64];
};

/* Leases: those held, or those dropped while a renewal was in flight. */
struct leases {
    struct held *at;
    size_t n, cap;
};

/* What this replica knows of a tenant from Redis. */
struct tenant_row {
    char tenant[TENANT_NAME_MAX];
    long long refused_until_ms; /* its rate: no request before (monotonic) */
    long jobs_elsewhere; /* its jobs on the other replicas, last renewal */
};

struct cluster_limits {
    struct redis_link *link; /* NULL: limits per replica */
    char heartbeat[96];      /* this process in the replicas' set */
    pthread_mutex_t lock;    /* everything below */
    long replicas;
    bool shared;
    long long fallbacks;
    unsigned long long leases_made;
    char token_prefix[16];
    struct leases held;
    struct leases dropped_in_renewal;
    bool renewing;
    struct tenant_row *rows; /* a row a tenant seen so far */
    size_t nrows;
    pthread_t renewer;
    pthread_cond_t stop;
    bool stopping;
};

static void key_name(char out[128], const char *what, const char *tenant)
{
    snprintf(out, 128, KEY_PREFIX "%s:%s", what, tenant);
}

static const char *lease_key_kind(enum lease_kind kind)
{
    return kind == LEASE_JOBS ? "lease:jobs" : "lease:sessions";
}

static void leases_add(struct leases *l, enum lease_kind kind,
                       const char *tenant, const char *token)
{
    struct held *h;

    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->at = xrealloc(l->at, l->cap * sizeof(*l->at));
    }
    h = &l->at[l->n++];
    h->kind = kind;
    snprintf(h->tenant, sizeof(h->tenant), "%s", tenant);
    snprintf(h->token, sizeof(h->token), "%s", token);
}

/* Under the lock: Redis answered or did not; logs each change. */
static void note_answer(struct cluster_limits *cl, bool answered)
{
    if (answered && !cl->shared)
        fprintf(stderr, "nbcanvas: tenant limits: shared through Redis "
                        "again\n");
    if (!answered && cl->shared)
        fprintf(stderr,
                "nbcanvas: tenant limits: Redis does not answer; each "
                "tenant limit is now this replica's share, 1/%ld (the "
                "replicas it last knew)\n",
                cl->replicas);
    cl->shared = answered;
}

/* A decision made through Redis (answered) or alone. */
static void decided(struct cluster_limits *cl, bool answered)
{
    pthread_mutex_lock(&cl->lock);
    note_answer(cl, answered);
    if (!answered)
        cl->fallbacks++;
    pthread_mutex_unlock(&cl->lock);
}

/* This replica's share of a stack-wide limit, at least 1. */
static long share(struct cluster_limits *cl, long limit)
{
    long n, mine;

    pthread_mutex_lock(&cl->lock);
    n = cl->replicas > 0 ? cl->replicas : 1;
    pthread_mutex_unlock(&cl->lock);
    mine = limit / n;
    return mine < 1 ? 1 : mine;
}

/* Under the lock: tenant's row, added if new (tenants are few: the keys
 * file's). */
static struct tenant_row *row_of(struct cluster_limits *cl, const char *tenant)
{
    size_t i;

    for (i = 0; i < cl->nrows; i++)
        if (strcmp(cl->rows[i].tenant, tenant) == 0)
            return &cl->rows[i];
    cl->rows = xrealloc(cl->rows, (i + 1) * sizeof(*cl->rows));
    memset(&cl->rows[i], 0, sizeof(cl->rows[i]));
    snprintf(cl->rows[i].tenant, sizeof(cl->rows[i].tenant), "%s", tenant);
    cl->nrows++;
    return &cl->rows[i];
}

/* Under the lock: from a renewal's answer (the replicas, then each held
 * lease's tenant's places; snapshot: the leases sent), how many replicas
 * are alive and how many jobs each tenant has on the others. */
static void read_counts(struct cluster_limits *cl, const redisReply *alive,
                        const struct held *snapshot, size_t n)
{
    if (alive->elements != n + 1 ||
        alive->element[0]->type != REDIS_REPLY_INTEGER)
        return;
    cl->replicas = alive->element[0]->integer > 0
                       ? (long)alive->element[0]->integer
                       : 1;
    for (size_t i = 0; i < cl->nrows; i++)
        cl->rows[i].jobs_elsewhere = 0;
    for (size_t i = 0; i < n; i++) {
        const redisReply *count = alive->element[i + 1];
        long mine = 0;

        if (snapshot[i].kind != LEASE_JOBS ||
            count->type != REDIS_REPLY_INTEGER)
            continue;
        for (size_t k = 0; k < n; k++)
            mine += snapshot[k].kind == LEASE_JOBS &&
                    strcmp(snapshot[k].tenant, snapshot[i].tenant) == 0;
        row_of(cl, snapshot[i].tenant)->jobs_elsewhere =
            count->integer > mine ? (long)count->integer - mine : 0;
    }
}

/* Removes leases from Redis, one ZREM each (no lock held). */
static void remove_leases(struct cluster_limits *cl, const struct leases *l)
{
    for (size_t i = 0; i < l->n; i++) {
        char key[128];
        const char *argv[3] = {"ZREM", key, l->at[i].token};

        key_name(key, lease_key_kind(l->at[i].kind), l->at[i].tenant);
        freeReplyObject(redis_link_command(cl->link, false, 3, argv, NULL));
    }
}

/* One renewal of the heartbeat and every lease held (lock held; dropped
 * around the call). */
static void renew_once(struct cluster_limits *cl)
{
    /* EVAL script n+1 replicas-key lease-keys... ttl replica tokens... */
    size_t n = cl->held.n, argc = 6 + 2 * n;
    const char **argv = xcalloc(argc, sizeof(*argv));
    char(*keys)[128] = xcalloc(n + 1, sizeof(*keys));
    char(*tokens)[64] = xcalloc(n + 1, sizeof(*tokens));
    struct held *snapshot = xcalloc(n + 1, sizeof(*snapshot));
    struct leases dropped;
    char nkeys[24], ttl[24];
    redisReply *reply;
    bool answered;

    snprintf(nkeys, sizeof(nkeys), "%zu", n + 1);
    snprintf(ttl, sizeof(ttl), "%d", LEASE_TTL_MS);
    key_name(keys[0], "replicas", "alive");
    argv[0] = "EVAL";
    argv[1] = RENEW;
    argv[2] = nkeys;
    argv[3] = keys[0];
    argv[4 + n] = ttl;
    argv[5 + n] = cl->heartbeat;
    for (size_t i = 0; i < n; i++) {
        key_name(keys[i + 1], lease_key_kind(cl->held.at[i].kind),
                 cl->held.at[i].tenant);
        snprintf(tokens[i], sizeof(tokens[i]), "%s", cl->held.at[i].token);
        snapshot[i] = cl->held.at[i];
        argv[4 + i] = keys[i + 1];
        argv[6 + n + i] = tokens[i];
    }
    cl->renewing = true;
    pthread_mutex_unlock(&cl->lock);
    reply = redis_link_command(cl->link, false, (int)argc, argv, NULL);
    pthread_mutex_lock(&cl->lock);
    cl->renewing = false;
    dropped = cl->dropped_in_renewal; /* the renewal may have written them */
    memset(&cl->dropped_in_renewal, 0, sizeof(cl->dropped_in_renewal));
    answered = reply && reply->type == REDIS_REPLY_ARRAY;
    note_answer(cl, answered);
    if (answered)
        read_counts(cl, reply, snapshot, n);
    pthread_mutex_unlock(&cl->lock);
    remove_leases(cl, &dropped);
    pthread_mutex_lock(&cl->lock);
    freeReplyObject(reply);
    free(dropped.at);
    free(snapshot);
    free(argv);
    free(keys);
    free(tokens);
}

/* Renews now and every RENEW_EVERY_MS, until stopped. */
static void *renew(void *arg)
{
    struct cluster_limits *cl = arg;

    pthread_mutex_lock(&cl->lock);
    while (!cl->stopping) {
        struct timespec next;

        renew_once(cl);
        next = util_monotonic_in(RENEW_EVERY_MS);
        if (!cl->stopping)
            pthread_cond_timedwait(&cl->stop, &cl->lock, &next);
    }
    pthread_mutex_unlock(&cl->lock);
    return NULL;
}

int cluster_limits_new(struct cluster_limits **out, const char *redis_url,
                       long timeout_ms, const char *replica,
                       long replicas_assumed, struct err *err)
{
    struct cluster_limits *cl = xcalloc(1, sizeof(*cl));
    char uuid[37];

    if (redis_url && redis_url[0] &&
        redis_link_new(&cl->link, redis_url, timeout_ms, "tenant limits",
                       err) < 0) {
        free(cl);
        return ERR_INVALID;
    }
    pthread_mutex_init(&cl->lock, NULL);
    util_cond_init_monotonic(&cl->stop);
    util_uuid(uuid);
    snprintf(cl->token_prefix, sizeof(cl->token_prefix), "%.8s", uuid);
    /* this run of this replica: two processes with one owner (a listen
     * address that repeats) still count as two */
    snprintf(cl->heartbeat, sizeof(cl->heartbeat), "%.64s/%s", replica,
             cl->token_prefix);
    cl->replicas = replicas_assumed > 0 ? replicas_assumed : 1;
    cl->shared = true;
    if (cl->link && pthread_create(&cl->renewer, NULL, renew, cl) != 0)
        abort();
    *out = cl;
    return 0;
}

void cluster_limits_free(struct cluster_limits *cl)
{
    if (!cl)
        return;
    if (cl->link) {
        char key[128];
        const char *argv[3] = {"ZREM", key, cl->heartbeat};

        pthread_mutex_lock(&cl->lock);
        cl->stopping = true;
        pthread_cond_signal(&cl->stop);
        pthread_mutex_unlock(&cl->lock);
        pthread_join(cl->renewer, NULL);
        /* gone at once from the others' count, not in 10 s */
        key_name(key, "replicas", "alive");
        freeReplyObject(redis_link_command(cl->link, false, 3, argv, NULL));
        redis_link_free(cl->link);
    }
    free(cl->held.at);
    free(cl->dropped_in_renewal.at);
    free(cl->rows);
    pthread_mutex_destroy(&cl->lock);
    pthread_cond_destroy(&cl->stop);
    free(cl);
}

static int rate_limited(const struct tenant *who, long long wait_ms,
                        long *retry_after_s, struct err *err)
{
    *retry_after_s = (long)((wait_ms + 999) / 1000);
    return err_set(err, ERR_RATE_LIMITED,
                   "tenant %s is past its %ld requests a minute", who->name,
                   who->requests_per_minute);
}

int cluster_limits_admit(struct cluster_limits *cl, struct tenants *tenants,
                         const struct tenant *who, long *retry_after_s,
                         struct err *err)
{
    char key[128], rpm[24];
    const char *argv[5] = {"EVAL", RATE, "1", key, rpm};
    struct tenant mine = *who;
    long long now = util_now_ms(), wait_ms = 0;
    redisReply *reply;

    *retry_after_s = 0;
    if (who->requests_per_minute <= 0 || !cl || !cl->link)
        return tenants_admit(tenants, who, retry_after_s, err);
    pthread_mutex_lock(&cl->lock);
    wait_ms = row_of(cl, who->name)->refused_until_ms - now;
    pthread_mutex_unlock(&cl->lock);
    if (wait_ms > 0) /* Redis said so; no token comes back sooner */
        return rate_limited(who, wait_ms, retry_after_s, err);
    key_name(key, "rate", who->name);
    snprintf(rpm, sizeof(rpm), "%ld", who->requests_per_minute);
    reply = redis_link_command(cl->link, false, 5, argv, NULL);
    if (reply && reply->type == REDIS_REPLY_INTEGER) {
        wait_ms = reply->integer;
        freeReplyObject(reply);
        decided(cl, true);
        if (wait_ms <= 0)
            return 0;
        pthread_mutex_lock(&cl->lock);
        row_of(cl, who->name)->refused_until_ms = now + wait_ms;
        pthread_mutex_unlock(&cl->lock);
        return rate_limited(who, wait_ms, retry_after_s, err);
    }
    freeReplyObject(reply);
    decided(cl, false);
    /* alone: a bucket of its own, apart from the name's (a '/' is in no
     * tenant's name), at this replica's share of the rate */
    snprintf(mine.name, sizeof(mine.name), "%.62s/", who->name);
    mine.requests_per_minute = share(cl, who->requests_per_minute);
    return tenants_admit(tenants, &mine, retry_after_s, err);
}

int cluster_limits_take(struct cluster_limits *cl, enum lease_kind kind,
                        const struct tenant *who, struct lease *out,
                        long *local_max, struct err *err)
{
    long limit = kind == LEASE_JOBS ? who->max_jobs : who->max_sessions;
    char key[128], max[24], token[64], ttl[24];
    const char *argv[7] = {"EVAL", TAKE, "1", key, max, token, ttl};
    redisReply *reply;
    bool answered, taken;

    *out = (struct lease)LEASE_INIT;
    *local_max = limit;
    /* a job is counted even without a limit: the fair share between
     * tenants weighs their jobs on every replica */
    if ((limit <= 0 && kind != LEASE_JOBS) || !cl || !cl->link)
        return 0;
    key_name(key, lease_key_kind(kind), who->name);
    snprintf(max, sizeof(max), "%ld", limit > 0 ? limit : LONG_MAX);
    snprintf(ttl, sizeof(ttl), "%d", LEASE_TTL_MS);
    pthread_mutex_lock(&cl->lock);
    snprintf(token, sizeof(token), "%s-%llu/%.24s", cl->token_prefix,
             ++cl->leases_made, cl->heartbeat);
    pthread_mutex_unlock(&cl->lock);
    reply = redis_link_command(cl->link, false, 7, argv, NULL);
    answered = reply && reply->type == REDIS_REPLY_INTEGER;
    taken = answered && reply->integer == 1;
    freeReplyObject(reply);
    decided(cl, answered);
    if (answered && !taken)
        return kind == LEASE_JOBS
                   ? err_set(err, ERR_BUSY,
                             "tenant %s already has its %ld jobs (on every "
                             "replica together); retry later",
                             who->name, limit)
                   : err_set(err, ERR_BUSY,
                             "your key holds its most sessions (%ld, on "
                             "every replica together): end one first",
                             limit);
    if (!answered && limit > 0)
        *local_max = share(cl, limit);
    /* taken, or decided alone: either way held, and written to Redis by
     * the renewals */
    pthread_mutex_lock(&cl->lock);
    leases_add(&cl->held, kind, who->name, token);
    pthread_mutex_unlock(&cl->lock);
    out->limits = cl;
    snprintf(out->token, sizeof(out->token), "%s", token);
    return 0;
}

void cluster_limits_drop(struct lease *l)
{
    struct cluster_limits *cl = l->limits;
    struct leases gone = {NULL, 0, 0};

    if (!cl || !l->token[0])
        return;
    pthread_mutex_lock(&cl->lock);
    for (size_t i = 0; i < cl->held.n; i++) {
        struct held h = cl->held.at[i];

        if (strcmp(h.token, l->token) != 0)
            continue;
        cl->held.at[i] = cl->held.at[--cl->held.n];
        leases_add(&gone, h.kind, h.tenant, h.token);
        if (cl->renewing) /* removed again once the renewal is done */
            leases_add(&cl->dropped_in_renewal, h.kind, h.tenant, h.token);
        break;
    }
    pthread_mutex_unlock(&cl->lock);
    remove_leases(cl, &gone); /* Redis away: it lapses by itself */
    free(gone.at);
    *l = (struct lease)LEASE_INIT;
}

long cluster_limits_jobs_elsewhere(struct cluster_limits *cl,
                                   const char *tenant)
{
    long n = 0;

    if (!cl || !cl->link)
        return 0;
    pthread_mutex_lock(&cl->lock);
    for (size_t i = 0; i < cl->nrows; i++)
        if (strcmp(cl->rows[i].tenant, tenant) == 0)
            n = cl->rows[i].jobs_elsewhere;
    pthread_mutex_unlock(&cl->lock);
    return n;
}

void cluster_limits_stats(struct cluster_limits *cl,
                          struct cluster_limits_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->replicas = 1;
    if (!cl)
        return;
    pthread_mutex_lock(&cl->lock);
    out->redis = cl->link != NULL;
    out->shared = cl->link && cl->shared;
    out->replicas = cl->replicas;
    out->fallbacks = cl->fallbacks;
    out->leases = (long long)cl->held.n;
    pthread_mutex_unlock(&cl->lock);
}
