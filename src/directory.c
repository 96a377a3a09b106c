/*
 * The stack's directory of what replicas hold (directory.h for the
 * design). Two scripts are the whole protocol, each on Redis's clock
 * (TIME) as cluster_limits.c's, so the replicas' clocks never have to
 * agree; a removal is a plain HDEL.
 */
#include "nbcanvas/directory.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbcanvas/redis_link.h"
#include "nbcanvas/util.h"

#define KEY_PREFIX "nbcanvas:v1:directory:"

#define NOW_MS                                                                \
    "local t = redis.call('TIME') "                                           \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "

/* KEYS: a tenant's hash per entry; ARGV lapse ms, writer, then a field
 * and a model per entry. Each entry lapses `lapse` from now, and so does
 * its hash at the soonest (never sooner than another writer's entry). */
static const char PUT[] = NOW_MS
    "local lapse = tonumber(ARGV[1]) "
    "for i = 1, #KEYS do "
    "redis.call('HSET', KEYS[i], ARGV[2 * i + 1], "
    "tostring(now + lapse) .. ' ' .. ARGV[2] .. ' ' .. ARGV[2 * i + 2]) "
    "if redis.call('PTTL', KEYS[i]) < lapse then "
    "redis.call('PEXPIRE', KEYS[i], lapse) end end "
    "return #KEYS";

/* KEYS[1] a tenant's hash, ARGV[1] a kind's field prefix ("kernel/"): the
 * values of its entries alive. The lapsed ones, of any kind, are deleted:
 * a renewal keeps the hash alive, not each entry. */
static const char LIST[] = NOW_MS
    "local out = {} "
    "local all = redis.call('HGETALL', KEYS[1]) "
    "for i = 1, #all, 2 do "
    "local f, v = all[i], all[i + 1] "
    "local lapse = tonumber(string.match(v, '^(%d+) ')) "
    "if not lapse or lapse <= now then redis.call('HDEL', KEYS[1], f) "
    "elseif string.sub(f, 1, #ARGV[1]) == ARGV[1] then "
    "out[#out + 1] = v end end "
    "return out";

struct directory {
    struct redis_link *link; /* NULL: this replica alone */
    /* the renewals' own connection: a flood of listings on link never
     * holds them up past the lapse (the others would drop this replica's
     * entries) */
    struct redis_link *renew_link;
    long lapse_ms;
    char writer[16];             /* this process, in each entry it writes */
    pthread_mutex_t source_lock; /* a renewal reads the source under it */
    directory_source_fn source;
    void *source_ctx;
    pthread_mutex_t lock; /* what follows */
    pthread_cond_t wake;  /* the renewer's wait, and a renewal's end */
    bool stopping;
    /* a renewal writes what it read: a forget waits for it to end, or the
     * renewal could write the forgotten entry back after the HDEL */
    bool renewing;
    pthread_t renewer;
};

static void key_name(char out[160], const char *tenant)
{
    snprintf(out, 160, KEY_PREFIX "%s", tenant);
}

/* Removes tenant's id, both kinds: one HDEL. */
static void forget(struct directory *d, const char *tenant, const char *id)
{
    char key[160], session[160], kernel[160];
    const char *argv[4] = {"HDEL", key, session, kernel};

    if (!tenant || !id)
        return;
    key_name(key, tenant);
    snprintf(session, sizeof(session), DIRECTORY_SESSION "/%s", id);
    snprintf(kernel, sizeof(kernel), DIRECTORY_KERNEL "/%s", id);
    freeReplyObject(redis_link_command(d->link, false, 4, argv, NULL));
}

/* One PUT of entries through link: fields, models and keys built here. */
static void put_entries(struct directory *d, struct redis_link *link,
                        json_t *entries)
{
    size_t n = json_array_size(entries), argc = 5 + 3 * n, i;
    const char **argv;
    char(*keys)[160], (*fields)[160], **models, nkeys[24], lapse[24];
    json_t *e;

    if (!link || n == 0)
        return;
    argv = xcalloc(argc, sizeof(*argv));
    keys = xcalloc(n, sizeof(*keys));
    fields = xcalloc(n, sizeof(*fields));
    models = xcalloc(n, sizeof(*models));
    snprintf(nkeys, sizeof(nkeys), "%zu", n);
    snprintf(lapse, sizeof(lapse), "%ld", d->lapse_ms);
    argv[0] = "EVAL";
    argv[1] = PUT;
    argv[2] = nkeys;
    argv[3 + n] = lapse;
    argv[4 + n] = d->writer;
    json_array_foreach(entries, i, e) {
        const char *tenant = json_string_value(json_object_get(e, "tenant"));
        const char *kind = json_string_value(json_object_get(e, "kind"));
        const char *id = json_string_value(json_object_get(e, "id"));

        key_name(keys[i], tenant ? tenant : "");
        snprintf(fields[i], sizeof(fields[i]), "%s/%s", kind ? kind : "",
                 id ? id : "");
        models[i] = json_dumps(json_object_get(e, "model"), JSON_COMPACT);
        argv[3 + i] = keys[i];
        argv[5 + n + 2 * i] = fields[i];
        argv[6 + n + 2 * i] = models[i] ? models[i] : "{}";
    }
    freeReplyObject(redis_link_command(link, false, (int)argc, argv, NULL));
    for (i = 0; i < n; i++)
        free(models[i]);
    free(models);
    free(fields);
    free(keys);
    free(argv);
}

/* What this replica holds now, from its source (NULL: none). */
static json_t *read_source(struct directory *d)
{
    json_t *entries = NULL;

    pthread_mutex_lock(&d->source_lock);
    if (d->source)
        entries = d->source(d->source_ctx);
    pthread_mutex_unlock(&d->source_lock);
    return entries;
}

/* Writes all this replica holds, now and every third of the lapse, until
 * stopped. */
static void *renew(void *arg)
{
    struct directory *d = arg;

    pthread_mutex_lock(&d->lock);
    while (!d->stopping) {
        struct timespec next;
        json_t *entries;

        d->renewing = true;
        pthread_mutex_unlock(&d->lock);
        entries = read_source(d);
        put_entries(d, d->renew_link, entries);
        json_decref(entries);
        pthread_mutex_lock(&d->lock);
        d->renewing = false;
        pthread_cond_broadcast(&d->wake); /* the forgets that waited */
        next = util_monotonic_in(d->lapse_ms / 3);
        while (!d->stopping &&
               pthread_cond_timedwait(&d->wake, &d->lock, &next) == 0)
            ; /* woken by its own broadcast or the stop: on until next */
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

int directory_new(struct directory **out, const char *redis_url,
                  long timeout_ms, long lapse_ms, struct err *err)
{
    struct directory *d = xcalloc(1, sizeof(*d));
    char uuid[37];

    if (redis_url && redis_url[0] &&
        (redis_link_new(&d->link, redis_url, timeout_ms, "directory", err) <
             0 ||
         redis_link_new(&d->renew_link, redis_url, timeout_ms,
                        "directory renewals", err) < 0)) {
        redis_link_free(d->link);
        free(d);
        return ERR_INVALID;
    }
    d->lapse_ms = lapse_ms > 3 ? lapse_ms : 3;
    util_uuid(uuid);
    snprintf(d->writer, sizeof(d->writer), "%.8s", uuid);
    pthread_mutex_init(&d->source_lock, NULL);
    pthread_mutex_init(&d->lock, NULL);
    util_cond_init_monotonic(&d->wake);
    if (d->link && pthread_create(&d->renewer, NULL, renew, d) != 0)
        abort();
    *out = d;
    return 0;
}

void directory_free(struct directory *d)
{
    if (!d)
        return;
    if (d->link) {
        json_t *entries, *e;
        size_t i;

        pthread_mutex_lock(&d->lock);
        d->stopping = true;
        pthread_cond_broadcast(&d->wake);
        pthread_mutex_unlock(&d->lock);
        pthread_join(d->renewer, NULL);
        /* gone from the others' listings at once, not in lapse_ms */
        entries = read_source(d);
        json_array_foreach(entries, i, e)
            forget(d, json_string_value(json_object_get(e, "tenant")),
                   json_string_value(json_object_get(e, "id")));
        json_decref(entries);
        redis_link_free(d->link);
        redis_link_free(d->renew_link);
    }
    pthread_mutex_destroy(&d->source_lock);
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->wake);
    free(d);
}

void directory_set_source(struct directory *d, directory_source_fn fn,
                          void *ctx)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->source_lock); /* waits out a renewal's read */
    d->source = fn;
    d->source_ctx = ctx;
    pthread_mutex_unlock(&d->source_lock);
}

void directory_put(struct directory *d, json_t *entries)
{
    if (d)
        put_entries(d, d->link, entries);
}

void directory_forget(struct directory *d, const char *tenant, const char *id)
{
    if (!d || !d->link)
        return;
    pthread_mutex_lock(&d->lock);
    while (d->renewing) /* at most one PUT: every call has a timeout */
        pthread_cond_wait(&d->wake, &d->lock);
    pthread_mutex_unlock(&d->lock);
    forget(d, tenant, id);
}

/* True when list holds a model with this id. */
static bool listed(json_t *list, const char *id)
{
    size_t i;
    json_t *m;

    json_array_foreach(list, i, m) {
        const char *mine = json_string_value(json_object_get(m, "id"));

        if (mine && strcmp(mine, id) == 0)
            return true;
    }
    return false;
}

void directory_add_others(struct directory *d, const char *tenant,
                          const char *kind, json_t *list)
{
    char key[160], prefix[32];
    const char *argv[5] = {"EVAL", LIST, "1", key, prefix};
    redisReply *reply;

    if (!d || !d->link)
        return;
    key_name(key, tenant);
    snprintf(prefix, sizeof(prefix), "%s/", kind);
    reply = redis_link_command(d->link, false, 5, argv, NULL);
    for (size_t i = 0;
         reply && reply->type == REDIS_REPLY_ARRAY && i < reply->elements;
         i++) {
        const redisReply *v = reply->element[i];
        /* "<lapse> <writer> <model>" */
        const char *writer = v->type == REDIS_REPLY_STRING
                                 ? memchr(v->str, ' ', v->len)
                                 : NULL;
        const char *model = writer ? memchr(writer + 1, ' ',
                                            v->len -
                                                (size_t)(writer + 1 - v->str))
                                   : NULL;
        const char *id;
        json_t *m;

        if (!model)
            continue;
        writer++;
        if ((size_t)(model - writer) == strlen(d->writer) &&
            memcmp(writer, d->writer, strlen(d->writer)) == 0)
            continue; /* its own: this replica knows them better */
        m = json_loadb(model + 1, v->len - (size_t)(model + 1 - v->str), 0,
                       NULL);
        id = json_string_value(json_object_get(m, "id"));
        if (json_is_object(m) && id && !listed(list, id))
            json_array_append(list, m);
        json_decref(m);
    }
    freeReplyObject(reply);
}
