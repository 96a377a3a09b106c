/*
 * A Redis connection shared by threads (redis_link.h): a hiredis context
 * behind a mutex held for one command at a time. The URL is parsed here
 * once; the password never goes to a log line.
 */
#include "nbcanvas/redis_link.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbcanvas/util.h"

#define RETRY_AFTER_FAILURE_MS 1000 /* a Redis that failed is left alone */

struct redis_link {
    pthread_mutex_t lock; /* everything below */
    redisContext *conn;   /* NULL: not connected */
    long long retry_at_ms;
    long long errors;
    /* where */
    char host[256];
    int port;
    bool unix_socket;
    char password[128];
    long db;
    /* how */
    long timeout_ms;
    char name[32];
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

static int parse_url(struct redis_link *r, const char *url, struct err *err)
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
static void failed(struct redis_link *r, const char *what, const char *why)
{
    if (r->retry_at_ms == 0 || r->errors % 100 == 0)
        fprintf(stderr, "nbcanvas: %s: %s: %s\n", r->name, what, why);
    r->errors++;
    if (r->conn)
        redisFree(r->conn);
    r->conn = NULL;
    r->retry_at_ms = util_now_ms() + RETRY_AFTER_FAILURE_MS;
}

/* Under the lock: the answer to a connection's AUTH or SELECT (freed). */
static bool setup_ok(struct redis_link *r, const char *what, redisReply *ok)
{
    bool good = ok && ok->type != REDIS_REPLY_ERROR;

    if (!good)
        failed(r, what, ok ? ok->str : r->conn->errstr);
    freeReplyObject(ok);
    return good;
}

/* Under the lock: a connection, made if need be; false while resting
 * (unless force) or when Redis cannot be reached. */
static bool connected(struct redis_link *r, bool force)
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
        fprintf(stderr, "nbcanvas: %s: connected again\n", r->name);
    r->retry_at_ms = 0;
    return true;
}

int redis_link_new(struct redis_link **out, const char *url, long timeout_ms,
                   const char *name, struct err *err)
{
    struct redis_link *r = xcalloc(1, sizeof(*r));

    if (parse_url(r, url, err) < 0) {
        free(r);
        return ERR_INVALID;
    }
    pthread_mutex_init(&r->lock, NULL);
    r->timeout_ms = timeout_ms;
    snprintf(r->name, sizeof(r->name), "%s", name);
    *out = r;
    return 0;
}

void redis_link_free(struct redis_link *r)
{
    if (!r)
        return;
    if (r->conn)
        redisFree(r->conn);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

redisReply *redis_link_command(struct redis_link *r, bool force, int argc,
                               const char **argv, const size_t *lens)
{
    redisReply *reply = NULL;

    pthread_mutex_lock(&r->lock);
    if (connected(r, force)) {
        reply = redisCommandArgv(r->conn, argc, argv, lens);
        if (!reply) {
            failed(r, argv[0], r->conn->errstr);
        } else if (reply->type == REDIS_REPLY_ERROR) {
            if (r->errors++ % 100 == 0)
                fprintf(stderr, "nbcanvas: %s: %s: %s\n", r->name, argv[0],
                        reply->str);
            freeReplyObject(reply);
            reply = NULL;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return reply;
}

bool redis_link_up(struct redis_link *r)
{
    bool up;

    pthread_mutex_lock(&r->lock);
    up = r->conn != NULL;
    pthread_mutex_unlock(&r->lock);
    return up;
}

long long redis_link_errors(struct redis_link *r)
{
    long long n;

    pthread_mutex_lock(&r->lock);
    n = r->errors;
    pthread_mutex_unlock(&r->lock);
    return n;
}
