/*
 * Tenants and their keys. The keys file is parsed whole into a new table,
 * which replaces the old one under the lock only if it parsed: a reload
 * never leaves the service with half a file. Request rates are token
 * buckets kept by tenant name in a table of their own, so a reload does
 * not refill anybody's bucket. A presented key is hashed at once and
 * compared with every digest, each in constant time, without stopping at
 * the first match; its clear text is wiped from our copy right after.
 */
#include "nbcanvas/tenants.h"

#include <ctype.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <strings.h>

#include "nbcanvas/util.h"

#define MAX_KEY_BYTES 256

struct key_entry {
    unsigned char digest[32];
    struct tenant tenant;
};

struct bucket {
    char name[TENANT_NAME_MAX];
    double tokens;
    long long refilled_ms;
};

struct tenants {
    pthread_mutex_t lock;
    char path[512];
    struct key_entry *keys; /* NULL with no keys file */
    size_t nkeys;
    struct bucket *buckets;
    size_t nbuckets;
};

static bool valid_name(const char *s)
{
    size_t i, n = strlen(s);

    if (n == 0 || n >= TENANT_NAME_MAX)
        return false;
    for (i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
            return false;
    return true;
}

static int hex_digest(unsigned char out[32], const char *hex)
{
    int i;

    if (!hex || strlen(hex) != 64)
        return -1;
    for (i = 0; i < 32; i++) {
        unsigned int byte;

        if (!isxdigit((unsigned char)hex[2 * i]) ||
            !isxdigit((unsigned char)hex[2 * i + 1]) ||
            sscanf(hex + 2 * i, "%2x", &byte) != 1)
            return -1;
        out[i] = (unsigned char)byte;
    }
    return 0;
}

static int read_limit(long *out, json_t *entry, const char *field,
                      size_t index, struct err *err)
{
    json_t *v = json_object_get(entry, field);

    *out = 0;
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > 1000000)
        return err_set(err, ERR_INVALID,
                       "keys entry %zu: %s must be a whole number >= 0", index,
                       field);
    *out = (long)json_integer_value(v);
    return 0;
}

/* An optional list of names into field, one a line. */
static int read_names(char *field, size_t size, json_t *v, size_t i,
                      struct err *err)
{
    size_t used = 0, j;
    json_t *name;

    field[0] = '\0';
    if (!v)
        return 0;
    if (!json_is_array(v))
        return err_set(err, ERR_INVALID,
                       "keys entry %zu: datasources must be a list of names",
                       i);
    json_array_foreach(v, j, name) {
        const char *s = json_string_value(name);

        if (!s || !*s || strchr(s, '\n') || used + strlen(s) + 2 > size)
            return err_set(err, ERR_INVALID,
                           "keys entry %zu: datasources must be a list of "
                           "names, %zu bytes in all at most",
                           i, size - 2);
        used += (size_t)snprintf(field + used, size - used, "%s\n", s);
    }
    return 0;
}

static int parse_entry(struct key_entry *k, json_t *e, size_t i,
                       struct err *err)
{
    static const char *const fields[] = {
        "tenant",       "key_sha256",          "max_jobs",
        "max_sessions", "requests_per_minute", "metrics",
        "datasources"};
    const char *name = json_string_value(json_object_get(e, "tenant"));
    json_t *metrics = json_object_get(e, "metrics"), *v;
    const char *field;
    size_t f;
    int rc;

    if (!json_is_object(e))
        return err_set(err, ERR_INVALID, "keys entry %zu: not an object", i);
    json_object_foreach(e, field, v) {
        for (f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
            if (strcmp(field, fields[f]) == 0)
                break;
        if (f == sizeof(fields) / sizeof(fields[0]))
            return err_set(err, ERR_INVALID,
                           "keys entry %zu: unknown field '%.40s'", i, field);
    }
    if (!name || !valid_name(name))
        return err_set(err, ERR_INVALID,
                       "keys entry %zu: tenant must be 1-63 of "
                       "[A-Za-z0-9._-]",
                       i);
    snprintf(k->tenant.name, sizeof(k->tenant.name), "%s", name);
    if (hex_digest(k->digest,
                   json_string_value(json_object_get(e, "key_sha256"))) < 0)
        return err_set(err, ERR_INVALID,
                       "keys entry %zu: key_sha256 must be 64 hex digits", i);
    rc = read_limit(&k->tenant.max_jobs, e, "max_jobs", i, err);
    if (rc == 0)
        rc = read_limit(&k->tenant.max_sessions, e, "max_sessions", i, err);
    if (rc == 0)
        rc = read_limit(&k->tenant.requests_per_minute, e,
                        "requests_per_minute", i, err);
    if (rc == 0 && metrics && !json_is_boolean(metrics))
        rc = err_set(err, ERR_INVALID,
                     "keys entry %zu: metrics must be true or false", i);
    k->tenant.metrics = json_is_true(metrics);
    if (rc == 0)
        rc = read_names(k->tenant.datasources, sizeof(k->tenant.datasources),
                        json_object_get(e, "datasources"), i, err);
    return rc;
}

/* Parses the keys file into a new table. */
static int load_keys(const char *path, struct key_entry **out, size_t *n,
                     struct err *err)
{
    json_error_t jerr;
    json_t *list = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr), *e;
    struct key_entry *keys;
    size_t i;
    int rc = 0;

    if (!list)
        return err_set(err, ERR_INVALID, "keys file %s:%d: %s", path,
                       jerr.line, jerr.text);
    if (!json_is_array(list)) {
        json_decref(list);
        return err_set(err, ERR_INVALID, "keys file %s: not a JSON list",
                       path);
    }
    keys = xcalloc(json_array_size(list) + 1, sizeof(*keys));
    json_array_foreach(list, i, e) {
        rc = parse_entry(&keys[i], e, i, err);
        if (rc < 0)
            break;
    }
    if (rc == 0) {
        *out = keys;
        *n = json_array_size(list);
    } else {
        free(keys);
    }
    json_decref(list);
    return rc;
}

int tenants_new(struct tenants **out, const char *path, struct err *err)
{
    struct tenants *t = xcalloc(1, sizeof(*t));
    int rc = 0;

    pthread_mutex_init(&t->lock, NULL);
    if (path && path[0]) {
        snprintf(t->path, sizeof(t->path), "%s", path);
        rc = load_keys(path, &t->keys, &t->nkeys, err);
    }
    if (rc < 0) {
        tenants_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void tenants_free(struct tenants *t)
{
    if (!t)
        return;
    if (t->keys)
        OPENSSL_cleanse(t->keys, t->nkeys * sizeof(*t->keys));
    free(t->keys);
    free(t->buckets);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

int tenants_reload(struct tenants *t, struct err *err)
{
    struct key_entry *keys = NULL, *old;
    size_t n = 0, old_n;
    int rc;

    if (!t->path[0])
        return 0;
    rc = load_keys(t->path, &keys, &n, err);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&t->lock);
    old = t->keys;
    old_n = t->nkeys;
    t->keys = keys;
    t->nkeys = n;
    pthread_mutex_unlock(&t->lock);
    OPENSSL_cleanse(old, old_n * sizeof(*old));
    free(old);
    return 0;
}

bool tenants_required(struct tenants *t)
{
    return t->path[0] != '\0';
}

long tenants_count(struct tenants *t)
{
    long n;

    pthread_mutex_lock(&t->lock);
    n = (long)t->nkeys;
    pthread_mutex_unlock(&t->lock);
    return n;
}

int tenants_authenticate(struct tenants *t, const char *authorization,
                         struct tenant *out, struct err *err)
{
    char key[MAX_KEY_BYTES + 1];
    unsigned char digest[32];
    const struct key_entry *match = NULL;
    size_t i, n;

    memset(out, 0, sizeof(*out));
    if (!tenants_required(t)) { /* everyone is the operator */
        snprintf(out->datasources, sizeof(out->datasources), "*\n");
        return 0;
    }
    /* "Bearer <key>", or "token <key>" as Jupyter's clients send it */
    if (authorization && strncasecmp(authorization, "Bearer ", 7) == 0)
        authorization += 7;
    else if (authorization && strncasecmp(authorization, "token ", 6) == 0)
        authorization += 6;
    else
        return err_set(err, ERR_UNAUTHENTICATED, "an API key is required");
    while (*authorization == ' ')
        authorization++;
    n = strlen(authorization);
    while (n > 0 && authorization[n - 1] == ' ')
        n--;
    if (n == 0 || n > MAX_KEY_BYTES)
        return err_set(err, ERR_UNAUTHENTICATED, "an API key is required");
    memcpy(key, authorization, n);
    util_sha256(digest, key, n);
    OPENSSL_cleanse(key, sizeof(key));
    pthread_mutex_lock(&t->lock);
    for (i = 0; i < t->nkeys; i++) /* every entry: no early exit */
        if (CRYPTO_memcmp(digest, t->keys[i].digest, 32) == 0 && !match)
            match = &t->keys[i];
    if (match)
        *out = match->tenant;
    pthread_mutex_unlock(&t->lock);
    OPENSSL_cleanse(digest, sizeof(digest));
    if (!match)
        return err_set(err, ERR_UNAUTHENTICATED, "an API key is required");
    return 0;
}

/* Under the lock: who's bucket, made full the first time. */
static struct bucket *bucket_of(struct tenants *t, const struct tenant *who)
{
    size_t i;

    for (i = 0; i < t->nbuckets; i++)
        if (strcmp(t->buckets[i].name, who->name) == 0)
            return &t->buckets[i];
    t->buckets = xrealloc(t->buckets, (t->nbuckets + 1) * sizeof(*t->buckets));
    t->buckets[i] = (struct bucket){"", (double)who->requests_per_minute,
                                    util_now_ms()};
    snprintf(t->buckets[i].name, sizeof(t->buckets[i].name), "%s", who->name);
    t->nbuckets++;
    return &t->buckets[i];
}

int tenants_admit(struct tenants *t, const struct tenant *who,
                  long *retry_after_s, struct err *err)
{
    double per_ms = (double)who->requests_per_minute / 60000.0;
    long long now = util_now_ms();
    struct bucket *b;
    int rc = 0;

    *retry_after_s = 0;
    if (who->requests_per_minute <= 0)
        return 0;
    pthread_mutex_lock(&t->lock);
    b = bucket_of(t, who);
    b->tokens += (double)(now - b->refilled_ms) * per_ms;
    if (b->tokens > (double)who->requests_per_minute)
        b->tokens = (double)who->requests_per_minute;
    b->refilled_ms = now;
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
    } else {
        *retry_after_s = (long)((1.0 - b->tokens) / per_ms / 1000.0) + 1;
        rc = err_set(err, ERR_RATE_LIMITED,
                     "tenant %s is past its %ld requests a minute", who->name,
                     who->requests_per_minute);
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

void tenants_new_key(char key[TENANT_KEY_LEN + 1], char sha256_hex[65])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char raw[21];
    int i;

    if (RAND_bytes(raw, sizeof(raw)) != 1)
        abort(); /* no randomness: never hand out a guessable key */
    memcpy(key, "nbk_", 4);
    for (i = 0; i < 21; i++) {
        key[4 + 2 * i] = digits[raw[i] >> 4];
        key[4 + 2 * i + 1] = digits[raw[i] & 15];
    }
    key[TENANT_KEY_LEN] = '\0';
    util_sha256_hex(sha256_hex, key, TENANT_KEY_LEN);
    OPENSSL_cleanse(raw, sizeof(raw));
}
