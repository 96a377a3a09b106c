#ifndef NBCANVAS_DIRECTORY_H
#define NBCANVAS_DIRECTORY_H

/*
 * The stack's directory of what its replicas hold. A tenant's sessions and
 * gateway kernels each live in one replica, yet a listing on any replica
 * (GET /v1/sessions, GET /api/kernels) names them all: behind a front the
 * listing comes from whichever replica the front picked, and Jupyter's own
 * servers take a listing at its word (jupyter_server's gateway client
 * forgets every kernel a listing leaves out, as "culled").
 *
 * Each replica writes its entries into the shared Redis (cache_redis_url):
 * one hash per tenant, a field "<kind>/<id>" per entry whose value is
 * "<lapse ms> <writer> <model JSON>". An entry is written as soon as its
 * thing is ready and removed when it ends; every 3 s the replica writes
 * all of its entries again, with fresh models and a lapse 10 s ahead, so
 * a replica that dies drops out of every listing within 10 s. The hash
 * itself expires with its newest entry. A listing reads the tenant's hash
 * in one call, leaves out (and deletes) the lapsed entries, and adds the
 * others' entries to this replica's own, which it knows better: its own
 * entries in Redis are never read back.
 *
 * The hashes carry a TTL, so a Redis short of memory (volatile-lru) may
 * evict one; the next renewal writes it again. Without a Redis URL, or
 * while Redis does not answer, a listing is this replica's alone. Every
 * function is thread-safe.
 */

#include <jansson.h>

#include "nbcanvas/err.h"

struct directory;

/* How long an entry outlives its last renewal, in the stack. */
#define DIRECTORY_LAPSE_MS 10000

/* The kinds of entry, as listings ask for them. A gateway kernel is
 * both: /v1/sessions lists it too. */
#define DIRECTORY_SESSION "session"
#define DIRECTORY_KERNEL "kernel"

/* What a replica holds now: a new JSON array of entries {"tenant", "kind",
 * "id", "model"}, the models as its listings give them. */
typedef json_t *(*directory_source_fn)(void *ctx);

/* redis_url "" or NULL: a directory of this replica alone (every call does
 * nothing). lapse_ms: how long an entry outlives its last renewal (renewed
 * every third of it). */
int directory_new(struct directory **out, const char *redis_url,
                  long timeout_ms, long lapse_ms, struct err *err);
/* Stops the renewals and removes this replica's entries. */
void directory_free(struct directory *d);

/* Where the renewals read what this replica holds (ctx borrowed); NULL
 * stops them. Returns once no renewal reads the old source, so its owner
 * may then be freed. */
void directory_set_source(struct directory *d, directory_source_fn fn,
                          void *ctx);

/* Writes entries (borrowed, as the source's) now: what a caller is told
 * exists is in every listing from then on. */
void directory_put(struct directory *d, json_t *entries);
/* Removes every entry of tenant's id. */
void directory_forget(struct directory *d, const char *tenant, const char *id);

/* Appends to list (an array of this replica's models of kind for tenant,
 * each with an "id") the models of the entries other replicas hold. */
void directory_add_others(struct directory *d, const char *tenant,
                          const char *kind, json_t *list);

#endif
