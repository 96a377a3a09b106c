/*
 * The shared result cache in Redis (see cache_redis.h for the design).
 * A stored answer is "<content type>\n<body>", so one GET brings both.
 */
#include "nbcanvas/cache_redis.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nbcanvas/util.h"

#define KEY_PREFIX "nbcanvas:v1:"
#define RETRY_AFTER_FAILURE_MS 1000 /* a Redis that failed is left alone */
#define POLL_MS 50                  /* a waiter looks again this often */
#define MAX_TYPES 16                /* distinct content types kept */

struct cache_redis {
    pthread_mutex_t lock; /* the connection, the types and the stats */
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
    char token[64]; /* this process's claims hold it */
    char types[MAX_TYPES][96];
    long n_types;
    struct cache_stats stats;
};

static int parse_url(struct cache_redis *r, const char *url, struct err *err)
{
    const char *p, *at, *colon, *slash;
    char *end;

    if (strncmp(url, "unix://", 7) == 0) {
        p = url + 7;
        r->unix_socket = true;
        slash = strstr(p, "?db=");
        snprintf(r->host, sizeof(r->host), "%.*s",
                 (int)(slash ? (size_t)(slash - p) : strlen(p)), p);
        if (slash)
            r->db = strtol(slash + 4, &end, 10);
        if (r->host[0] != '/' || (slash && (*end || r->db < 0)))
            goto bad;
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0)
        goto bad;
    p = url + 8;
    at = strchr(p, '@');
    if (at) {
        if (*p != ':' || (size_t)(at - p - 1) >= sizeof(r->password))
            goto bad;
        snprintf(r->password, sizeof(r->password), "%.*s", (int)(at - p - 1),
                 p + 1);
        p = at + 1;
    }
    slash = strchr(p, '/');
    colon = memchr(p, ':', slash ? (size_t)(slash - p) : strlen(p));
    r->port = 6379;
    if (colon) {
        r->port = (int)strtol(colon + 1, &end, 10);
        if (end == colon + 1 || (*end && *end != '/') || r->port < 1 ||
            r->port > 65535)
            goto bad;
    }
    snprintf(r->host, sizeof(r->host), "%.*s",
             (int)(colon   ? colon - p
                   : slash ? slash - p
                           : (long)strlen(p)),
             p);
    if (slash && slash[1]) {
        r->db = strtol(slash + 1, &end, 10);
        if (*end || r->db < 0)
            goto bad;
    }
    if (!r->host[0])
        goto bad;
    return 0;
bad:
    return err_set(err, ERR_INVALID,
                   "cache_redis_url: not redis://[:password@]host[:port][/db] "
                   "or unix:///path[?db=N]");
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
    r->ttl_s = ttl_s;
    r->timeout_ms = timeout_ms;
    r->max_entry_bytes = max_entry_bytes;
    util_uuid(id);
    snprintf(r->token, sizeof(r->token), "%s", id);
    *out = r;
    return 0;
}

void cache_redis_free(struct cache_redis *r)
{
    if (!r)
        return;
    if (r->conn)
        redisFree(r->conn);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

/* Under the lock: a failure drops the connection and rests a while. */
static void failed(struct cache_redis *r, const char *what)
{
    if (r->retry_at_ms == 0 || r->stats.errors % 100 == 0)
        fprintf(stderr, "nbcanvas: redis cache: %s: %s\n", what,
                r->conn && r->conn->errstr[0] ? r->conn->errstr
                                              : "no connection");
    r->stats.errors++;
    if (r->conn)
        redisFree(r->conn);
    r->conn = NULL;
    r->retry_at_ms = util_now_ms() + RETRY_AFTER_FAILURE_MS;
}

/* Under the lock: runs one command; NULL (and counted) when Redis fails. */
static redisReply *command(struct cache_redis *r, int argc, const char **argv,
                           const size_t *lens)
{
    struct timeval tv = {r->timeout_ms / 1000, (r->timeout_ms % 1000) * 1000};
    redisReply *reply;

    if (!r->conn) {
        if (util_now_ms() < r->retry_at_ms)
            return NULL; /* resting: neither an error nor a wait */
        r->conn = r->unix_socket
                      ? redisConnectUnixWithTimeout(r->host, tv)
                      : redisConnectWithTimeout(r->host, r->port, tv);
        if (!r->conn || r->conn->err ||
            redisSetTimeout(r->conn, tv) != REDIS_OK) {
            failed(r, "connect");
            return NULL;
        }
        if (r->password[0] || r->db) {
            redisReply *ok = NULL;

            if (r->password[0])
                ok = redisCommand(r->conn, "AUTH %s", r->password);
            if ((!r->password[0] || (ok && ok->type != REDIS_REPLY_ERROR)) &&
                r->db) {
                freeReplyObject(ok);
                ok = redisCommand(r->conn, "SELECT %ld", r->db);
            }
            if (!ok || ok->type == REDIS_REPLY_ERROR) {
                freeReplyObject(ok);
                failed(r, "AUTH/SELECT");
                return NULL;
            }
            freeReplyObject(ok);
        }
        if (r->retry_at_ms)
            fprintf(stderr, "nbcanvas: redis cache: connected again\n");
        r->retry_at_ms = 0;
    }
    reply = redisCommandArgv(r->conn, argc, argv, lens);
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        freeReplyObject(reply);
        failed(r, argv[0]);
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

/* Under the lock: one of our own copies of type (NULL: too many kinds). */
static const char *intern_type(struct cache_redis *r, const char *type,
                               size_t len)
{
    long i;

    if (len >= sizeof(r->types[0]))
        return NULL;
    for (i = 0; i < r->n_types; i++)
        if (strlen(r->types[i]) == len && memcmp(r->types[i], type, len) == 0)
            return r->types[i];
    if (r->n_types == MAX_TYPES)
        return NULL;
    memcpy(r->types[r->n_types], type, len);
    r->types[r->n_types][len] = '\0';
    return r->types[r->n_types++];
}

/* Under the lock: GET the answer; true when there is one. */
static bool fetch(struct cache_redis *r, const unsigned char key[32],
                  char **body, size_t *len, const char **content_type)
{
    char name[96];
    const char *argv[2] = {"GET", name};
    redisReply *reply;
    const char *nl, *type;
    bool found = false;

    key_name(name, "answer", key);
    reply = command(r, 2, argv, NULL);
    if (reply && reply->type == REDIS_REPLY_STRING &&
        (nl = memchr(reply->str, '\n', reply->len)) &&
        (type = intern_type(r, reply->str, (size_t)(nl - reply->str)))) {
        *len = reply->len - (size_t)(nl + 1 - reply->str);
        *body = xmalloc(*len + 1);
        memcpy(*body, nl + 1, *len);
        (*body)[*len] = '\0';
        *content_type = type;
        found = true;
    }
    freeReplyObject(reply);
    return found;
}

/* Under the lock: SET the claim NX; true when it is now ours. */
static bool claim(struct cache_redis *r, const unsigned char key[32],
                  long long ttl_ms, bool *failed_out)
{
    char name[96], ms[24];
    const char *argv[6] = {"SET", name, r->token, "NX", "PX", ms};
    redisReply *reply;
    bool ours;

    key_name(name, "claim", key);
    snprintf(ms, sizeof(ms), "%lld", ttl_ms > 0 ? ttl_ms : 1);
    reply = command(r, 6, argv, NULL);
    *failed_out = reply == NULL;
    ours = reply && reply->type == REDIS_REPLY_STATUS;
    freeReplyObject(reply);
    return ours;
}

bool cache_redis_get(struct cache_redis *r, const unsigned char key[32],
                     char **body, size_t *len, const char **content_type)
{
    bool hit;

    pthread_mutex_lock(&r->lock);
    hit = fetch(r, key, body, len, content_type);
    if (hit)
        r->stats.hits++;
    else
        r->stats.misses++;
    pthread_mutex_unlock(&r->lock);
    return hit;
}

enum cache_lookup cache_redis_get_or_claim(struct cache_redis *r,
                                           const unsigned char key[32],
                                           char **body, size_t *len,
                                           const char **content_type,
                                           const atomic_bool *cancel,
                                           long long wait_ms)
{
    long long until = util_now_ms() + wait_ms;
    enum cache_lookup result;

    for (;;) {
        bool down = false;
        struct timespec pause = {0, POLL_MS * 1000000L};

        pthread_mutex_lock(&r->lock);
        if (fetch(r, key, body, len, content_type)) {
            r->stats.hits++;
            result = CACHE_HIT;
        } else if (claim(r, key, wait_ms, &down)) {
            r->stats.misses++;
            result = CACHE_CLAIMED;
        } else if (down || !r->conn || (cancel && *cancel) ||
                   util_now_ms() >= until) {
            r->stats.misses++; /* run it, uncached if Redis is away */
            result = CACHE_MISS;
        } else {
            pthread_mutex_unlock(&r->lock);
            nanosleep(&pause, NULL); /* another replica runs it */
            continue;
        }
        pthread_mutex_unlock(&r->lock);
        return result;
    }
}

void cache_redis_finish(struct cache_redis *r, const unsigned char key[32])
{
    /* only our own claim: one that lapsed may be another's by now */
    static const char release[] =
        "if redis.call('GET', KEYS[1]) == ARGV[1] then "
        "return redis.call('DEL', KEYS[1]) end return 0";
    char name[96];
    const char *argv[5] = {"EVAL", release, "1", name, r->token};

    key_name(name, "claim", key);
    pthread_mutex_lock(&r->lock);
    freeReplyObject(command(r, 5, argv, NULL));
    pthread_mutex_unlock(&r->lock);
}

void cache_redis_put(struct cache_redis *r, const unsigned char key[32],
                     const char *body, size_t len, const char *content_type)
{
    size_t type_len = strlen(content_type);
    char name[96], ms[24], *value;
    const char *argv[5] = {"SET", name, NULL, "PX", ms};
    size_t lens[5];

    if ((long long)len > r->max_entry_bytes)
        return;
    value = xmalloc(type_len + 1 + len);
    memcpy(value, content_type, type_len);
    value[type_len] = '\n';
    memcpy(value + type_len + 1, body, len);
    key_name(name, "answer", key);
    snprintf(ms, sizeof(ms), "%lld", r->ttl_s * 1000LL);
    argv[2] = value;
    for (int i = 0; i < 5; i++)
        lens[i] = i == 2 ? type_len + 1 + len : strlen(argv[i]);
    pthread_mutex_lock(&r->lock);
    freeReplyObject(command(r, 5, argv, lens));
    pthread_mutex_unlock(&r->lock);
    free(value);
}

void cache_redis_stats(struct cache_redis *r, struct cache_stats *out)
{
    pthread_mutex_lock(&r->lock);
    *out = r->stats;
    pthread_mutex_unlock(&r->lock);
}
