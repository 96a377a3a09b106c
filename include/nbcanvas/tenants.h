#ifndef NBCANVAS_TENANTS_H
#define NBCANVAS_TENANTS_H

/*
 * Who may call, and how much: the API keys of api_keys_file, each naming
 * its tenant and that tenant's limits, and each tenant's request rate (a
 * token bucket). Keys are kept only as SHA-256 digests, compared in
 * constant time, and never logged; the file is read again on SIGHUP, and
 * a file that does not parse leaves the keys in force as they were.
 * Without a keys file there is one tenant, "", with no limits of its own.
 */

#include <stdbool.h>

#include "nbcanvas/err.h"

#define TENANT_NAME_MAX 64

/* A request's tenant: a copy, so a reload never pulls it from under a
 * request in flight. */
struct tenant {
    char name[TENANT_NAME_MAX]; /* "" without keys */
    long max_jobs;              /* 0: only the service's limit */
    long max_sessions;          /* 0: only the service's limit */
    long requests_per_minute;   /* 0: no rate limit */
    bool metrics;               /* may read /metrics */
    /* the datasources it may query, one name a line ("*": every one;
     * "": none, the default for a key; every one without a keys file) */
    char datasources[512];
};

struct tenants;

/* Loads the keys at path (NULL or "": no keys, every caller is tenant "")
 * into a new *out, freed with tenants_free. A bad file fails with
 * ERR_INVALID naming the entry and the field. Every function below is
 * thread-safe. */
int tenants_new(struct tenants **out, const char *path, struct err *err);
void tenants_free(struct tenants *t);

/* Reads the keys file again; on failure the keys in force are kept and
 * err says why. */
int tenants_reload(struct tenants *t, struct err *err);

/* True when a keys file is in force. */
bool tenants_required(struct tenants *t);
/* How many key entries the keys file holds (for the log). */
long tenants_count(struct tenants *t);

/* The tenant of an Authorization header value ("Bearer <key>", or
 * "token <key>" as Jupyter's clients write it) into out.
 * Without keys every caller is tenant "". A missing, malformed or unknown
 * key is ERR_UNAUTHENTICATED (all alike from outside). */
int tenants_authenticate(struct tenants *t, const char *authorization,
                         struct tenant *out, struct err *err);

/* Takes one request from who's rate; past it, ERR_RATE_LIMITED with the
 * seconds until the next is allowed in *retry_after_s. */
int tenants_admit(struct tenants *t, const struct tenant *who,
                  long *retry_after_s, struct err *err);

/* A fresh random key (text, written to key[]) and its SHA-256 in hex, for
 * `nbcanvas key new`. */
#define TENANT_KEY_LEN 46
void tenants_new_key(char key[TENANT_KEY_LEN + 1], char sha256_hex[65]);

#endif
