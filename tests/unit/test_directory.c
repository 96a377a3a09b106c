/*
 * The stack's directory (directory.c) against a real redis-server: two
 * directories stand for two replicas, each with a table of its own as
 * what it holds. A listing on either names what both hold, a tenant's
 * only; an ended thing leaves every listing at once, a dead replica's
 * within the lapse; without Redis a listing is the replica's own.
 */
#include "../check.h"
#include "nbcanvas/directory.h"
#include "redis_server.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* long enough that a renewal every third of it never misses on a loaded
 * machine, short enough for the lapse checks */
#define LAPSE_MS 3000

__attribute__((constructor)) static void ignore_sigpipe(void)
{
    signal(SIGPIPE, SIG_IGN);
}

/* What a replica holds: entries as sessions.c gives them. */
struct holding {
    pthread_mutex_t lock;
    json_t *entries;
    atomic_int reads;   /* renewals that read it so far */
    atomic_int slow_ms; /* how long a renewal takes after its read */
};

static json_t *source(void *ctx)
{
    struct holding *h = ctx;
    int slow_ms = atomic_load(&h->slow_ms);
    json_t *copy;

    pthread_mutex_lock(&h->lock);
    copy = json_deep_copy(h->entries);
    pthread_mutex_unlock(&h->lock);
    atomic_fetch_add(&h->reads, 1);
    usleep((useconds_t)slow_ms * 1000);
    return copy;
}

static json_t *entry(const char *tenant, const char *kind, const char *id,
                     int n)
{
    return json_pack("{s:s, s:s, s:s, s:{s:s, s:i}}", "tenant", tenant, "kind",
                     kind, "id", id, "model", "id", id, "n", n);
}

/* h holds entries (stolen) from now on. */
static void hold(struct holding *h, json_t *entries)
{
    pthread_mutex_lock(&h->lock);
    json_decref(h->entries);
    h->entries = entries;
    pthread_mutex_unlock(&h->lock);
}

static struct directory *replica(struct holding *h)
{
    struct directory *d = NULL;
    struct err err = ERR_INIT;

    pthread_mutex_init(&h->lock, NULL);
    h->entries = json_array();
    atomic_init(&h->reads, 0);
    atomic_init(&h->slow_ms, 0);
    CHECK(directory_new(&d, redis_server_url(), 250, LAPSE_MS, &err) == 0);
    directory_set_source(d, source, h);
    return d;
}

static void release(struct directory *d, struct holding *h)
{
    directory_free(d);
    json_decref(h->entries);
    pthread_mutex_destroy(&h->lock);
}

/* The listing d gives of tenant's kind, with `local` (stolen) as its own:
 * "id:n,id:n" in the order listed. */
static void listing(struct directory *d, const char *tenant, const char *kind,
                    json_t *local, char *out, size_t len)
{
    size_t i;
    json_t *m;

    out[0] = '\0';
    directory_add_others(d, tenant, kind, local);
    json_array_foreach(local, i, m) {
        size_t used = strlen(out);

        snprintf(out + used, len - used, "%s%s:%d", used ? "," : "",
                 json_string_value(json_object_get(m, "id")),
                 (int)json_integer_value(json_object_get(m, "n")));
    }
    json_decref(local);
}

/* Polls (at most 20 s) until d's listing is want. */
static bool lists(struct directory *d, const char *tenant, const char *kind,
                  const char *want)
{
    char got[256];

    for (int i = 0; i < 400; i++) {
        listing(d, tenant, kind, json_array(), got, sizeof(got));
        if (strcmp(got, want) == 0)
            return true;
        usleep(50000);
    }
    fprintf(stderr, "listed \"%s\", not \"%s\"\n", got, want);
    return false;
}

TEST(directory__without_redis_a_listing_is_the_replicas_own)
{
    struct directory *d = NULL;
    struct err err = ERR_INIT;
    json_t *entries = json_pack("[o]", entry("acme", "session", "s1", 1));
    char got[256];

    CHECK(directory_new(&d, "", 250, LAPSE_MS, &err) == 0);
    directory_put(d, entries);
    listing(d, "acme", "session",
            json_pack("[{s:s, s:i}]", "id", "mine", "n", 1), got, sizeof(got));
    CHECK_STREQ(got, "mine:1");
    directory_forget(d, "acme", "mine");
    json_decref(entries);
    directory_free(d);
}

TEST(directory__a_listing_names_what_every_replica_holds_of_its_tenant)
{
    pid_t redis = redis_server_start();
    struct holding ha, hb;
    struct directory *a = replica(&ha), *b = replica(&hb);
    json_t *made = json_pack("[o, o, o]", entry("acme", "session", "k1", 1),
                             entry("acme", "kernel", "k1", 1),
                             entry("other", "session", "o1", 1));
    char got[256];

    /* a makes a gateway kernel and tells b's listings at once */
    hold(&ha, json_deep_copy(made));
    directory_put(a, made);
    listing(b, "acme", "kernel", json_pack("[{s:s, s:i}]", "id", "b1", "n", 1),
            got, sizeof(got));
    CHECK_STREQ(got, "b1:1,k1:1");
    listing(b, "acme", "session", json_array(), got, sizeof(got));
    CHECK_STREQ(got, "k1:1");
    listing(b, "other", "session", json_array(), got, sizeof(got));
    CHECK_STREQ(got, "o1:1");
    listing(b, "nobody", "session", json_array(), got, sizeof(got));
    CHECK_STREQ(got, "");
    /* a's own entries are never read back: it knows them better */
    listing(a, "acme", "kernel", json_array(), got, sizeof(got));
    CHECK_STREQ(got, "");
    /* and what a listing already has is not listed twice */
    listing(b, "acme", "kernel", json_pack("[{s:s, s:i}]", "id", "k1", "n", 7),
            got, sizeof(got));
    CHECK_STREQ(got, "k1:7");
    json_decref(made);
    release(a, &ha);
    release(b, &hb);
    redis_server_stop(redis);
}

TEST(directory__an_ended_thing_leaves_every_listing_at_once)
{
    pid_t redis = redis_server_start();
    struct holding ha, hb;
    struct directory *a = replica(&ha), *b = replica(&hb);
    json_t *made = json_pack("[o, o]", entry("acme", "session", "s1", 1),
                             entry("acme", "session", "s2", 1));
    char got[256];

    hold(&ha, json_deep_copy(made));
    directory_put(a, made);
    CHECK(lists(b, "acme", "session", "s1:1,s2:1") ||
          lists(b, "acme", "session", "s2:1,s1:1"));
    hold(&ha, json_pack("[o]", entry("acme", "session", "s2", 1)));
    directory_forget(a, "acme", "s1");
    listing(b, "acme", "session", json_array(), got, sizeof(got));
    CHECK_STREQ(got, "s2:1");
    /* a replica that stops removes what it held */
    release(a, &ha);
    listing(b, "acme", "session", json_array(), got, sizeof(got));
    CHECK_STREQ(got, "");
    json_decref(made);
    release(b, &hb);
    redis_server_stop(redis);
}

TEST(directory__a_forget_during_a_renewal_is_not_written_back)
{
    pid_t redis = redis_server_start();
    struct holding ha, hb;
    struct directory *a = replica(&ha), *b = replica(&hb);
    char got[256];
    int reads;

    hold(&ha, json_pack("[o]", entry("acme", "kernel", "k1", 1)));
    CHECK(lists(b, "acme", "kernel", "k1:1"));
    /* a renewal reads k1, then takes its time before writing it; k1 ends
     * meanwhile */
    atomic_store(&ha.slow_ms, 400);
    reads = atomic_load(&ha.reads);
    while (atomic_load(&ha.reads) == reads)
        usleep(5000);
    hold(&ha, json_array());
    atomic_store(&ha.slow_ms, 0);
    directory_forget(a, "acme", "k1");
    listing(b, "acme", "kernel", json_array(), got, sizeof(got));
    CHECK_STREQ(got, "");
    /* and once that renewal has written (400 ms), before k1 would lapse */
    usleep(600000);
    listing(b, "acme", "kernel", json_array(), got, sizeof(got));
    CHECK_STREQ(got, "");
    release(a, &ha);
    release(b, &hb);
    redis_server_stop(redis);
}

TEST(directory__renewals_refresh_models_and_a_dead_replicas_entries_lapse)
{
    pid_t redis = redis_server_start();
    struct holding ha, hb;
    struct directory *a = replica(&ha), *b = replica(&hb);

    /* written by the renewals alone: no put */
    hold(&ha, json_pack("[o]", entry("acme", "kernel", "k1", 1)));
    CHECK(lists(b, "acme", "kernel", "k1:1"));
    hold(&ha, json_pack("[o]", entry("acme", "kernel", "k1", 2)));
    CHECK(lists(b, "acme", "kernel", "k1:2"));
    /* a stops renewing without a word, as a replica killed: gone from b's
     * listing once the lapse has passed */
    directory_set_source(a, NULL, NULL);
    CHECK(lists(b, "acme", "kernel", ""));
    release(a, &ha);
    release(b, &hb);
    redis_server_stop(redis);
}

TEST(directory__while_redis_is_away_a_listing_is_the_replicas_own)
{
    pid_t redis = redis_server_start();
    struct holding ha, hb;
    struct directory *a = replica(&ha), *b = replica(&hb);
    char got[256];

    hold(&ha, json_pack("[o]", entry("acme", "session", "s1", 1)));
    CHECK(lists(b, "acme", "session", "s1:1"));
    redis_server_stop(redis);
    listing(b, "acme", "session",
            json_pack("[{s:s, s:i}]", "id", "b1", "n", 1), got, sizeof(got));
    CHECK_STREQ(got, "b1:1");
    /* Redis comes back empty; a's renewals write its entries again */
    redis = redis_server_start();
    CHECK(lists(b, "acme", "session", "s1:1"));
    release(a, &ha);
    release(b, &hb);
    redis_server_stop(redis);
}
