/*
 * Kept results of streamed renders (include/nbcanvas/kept_results.h): a
 * list, newest first, pruned of the expired and of the oldest past the
 * byte cap on every put and looked up by id and tenant. A handful live at
 * once, so a list is enough.
 */
#include "nbcanvas/kept_results.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbcanvas/formats.h"
#include "nbcanvas/ids.h"
#include "nbcanvas/list.h"
#include "nbcanvas/tenants.h"
#include "nbcanvas/util.h"

struct entry {
    struct list_node link;
    char tenant[TENANT_NAME_MAX];
    struct render_kept *kept;
    size_t bytes;
    long long expires_ms; /* monotonic */
};

struct kept_results {
    pthread_mutex_t lock;
    struct list_node all; /* newest first */
    long long max_bytes, bytes;
    long ttl_s;
};

struct kept_results *kept_results_new(long long max_bytes, long ttl_s)
{
    struct kept_results *kr = xcalloc(1, sizeof(*kr));

    pthread_mutex_init(&kr->lock, NULL);
    list_init(&kr->all);
    kr->max_bytes = max_bytes;
    kr->ttl_s = ttl_s;
    return kr;
}

static void drop(struct kept_results *kr, struct entry *e)
{
    list_remove(&e->link);
    kr->bytes -= (long long)e->bytes;
    render_kept_free(e->kept);
    free(e);
}

void kept_results_free(struct kept_results *kr)
{
    if (!kr)
        return;
    while (!list_is_empty(&kr->all))
        drop(kr, list_entry(kr->all.next, struct entry, link));
    pthread_mutex_destroy(&kr->lock);
    free(kr);
}

/* Drops the expired, then the oldest while over the cap (lock held). */
static void prune(struct kept_results *kr)
{
    long long now = util_now_ms();

    while (!list_is_empty(&kr->all)) {
        struct entry *oldest = list_entry(kr->all.prev, struct entry, link);
        bool expired = false;
        struct list_node *n, *next;

        for (n = kr->all.next; n != &kr->all; n = next) {
            struct entry *e = list_entry(n, struct entry, link);

            next = n->next;
            if (now >= e->expires_ms) {
                drop(kr, e);
                expired = true;
            }
        }
        if (expired)
            continue;
        if (kr->bytes <= kr->max_bytes)
            break;
        drop(kr, oldest);
    }
}

void kept_results_put(struct kept_results *kr, const char *tenant,
                      struct render_kept *k)
{
    struct entry *e = xcalloc(1, sizeof(*e));
    size_t i;

    snprintf(e->tenant, sizeof(e->tenant), "%s", tenant);
    e->kept = k;
    for (i = 0; i < k->results.n; i++)
        e->bytes += k->results.v[i].len;
    e->expires_ms = util_now_ms() + kr->ttl_s * 1000LL;
    pthread_mutex_lock(&kr->lock);
    list_push_front(&kr->all, &e->link);
    kr->bytes += (long long)e->bytes;
    prune(kr);
    pthread_mutex_unlock(&kr->lock);
}

int kept_results_build(struct kept_results *kr, const char *tenant,
                       const char *id, enum render_format format,
                       struct payload *out, struct err *err)
{
    struct list_node *n;
    char why[96];
    int rc;

    snprintf(why, sizeof(why),
             "results are kept %ld s after a streamed "
             "render",
             kr->ttl_s);
    rc = ids_not_found(err, "result", id, why);

    pthread_mutex_lock(&kr->lock);
    prune(kr);
    list_for_each(n, &kr->all) {
        struct entry *e = list_entry(n, struct entry, link);
        struct formats_input in;

        if (strcmp(e->kept->result_id, id) != 0 ||
            strcmp(e->tenant, tenant) != 0)
            continue;
        in = (struct formats_input){e->kept->id, &e->kept->results,
                                    e->kept->notebook, e->kept->timing};
        err->code = 0;
        rc = formats_build(format, &in, out, err);
        break;
    }
    pthread_mutex_unlock(&kr->lock);
    return rc;
}
