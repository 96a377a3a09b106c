#ifndef NBCANVAS_CLUSTER_LIMITS_H
#define NBCANVAS_CLUSTER_LIMITS_H

/*
 * A tenant's limits for the whole stack, not for each replica: its
 * requests a minute, its jobs running or queued at once (max_jobs) and its
 * sessions alive (max_sessions) mean the same with one replica or many.
 * They are kept in the shared Redis (cache_redis_url) when there is one:
 *
 * - the rate is a token bucket, the same as tenants.c's, that a Lua
 *   script refills and takes from in one step, on Redis's clock;
 * - a job or a session holds a lease: a member of the tenant's sorted set
 *   whose score is when it lapses. A script takes one only while fewer
 *   than the limit are alive. The holder renews all of its leases every
 *   3 s for 10 s more and drops each when done, so a replica that dies
 *   frees its tenants' places within 10 s.
 * - each replica renews a heartbeat beside its leases; the count of those
 *   alive is how many replicas it knows. Each renewal also brings back
 *   how many places each tenant holds, so the fair share between tenants
 *   (jobs.c) weighs a tenant's jobs on every replica, not only here: every
 *   job holds a lease, limit or not.
 *
 * When Redis does not answer, a replica decides alone, with each limit
 * divided by the replicas it last knew (cluster_replicas from the config
 * until it has heard from Redis), at least 1: together the replicas stay
 * near the stack's limit. It says so in its log once, counts each such
 * decision (/metrics), and goes back to Redis by itself. A lease taken
 * alone is written to Redis at the next renewal that reaches it, so the
 * count is right again once Redis is back.
 *
 * A tenant refused its rate is refused here, without asking Redis, until
 * its Retry-After ends. Without a Redis URL the limits are this replica's
 * alone, as they always were. The jobs and sessions modules own their places' leases; http.c
 * asks for the rate. Every function is thread-safe.
 */

#include <stdbool.h>

#include "nbcanvas/err.h"
#include "nbcanvas/tenants.h"

struct cluster_limits;

enum lease_kind { LEASE_JOBS, LEASE_SESSIONS };

/* One place of a tenant held across the stack; empty when token is "".
 * Copied by value with the job slot or session that holds it: exactly
 * one copy is dropped. */
struct lease {
    struct cluster_limits *limits;
    char token[64];
};

#define LEASE_INIT                                                            \
    {                                                                         \
        NULL, ""                                                              \
    }

/* redis_url "" or NULL: limits per replica. replica names this process's
 * heartbeat; replicas_assumed stands for the count before Redis tells. */
int cluster_limits_new(struct cluster_limits **out, const char *redis_url,
                       long timeout_ms, const char *replica,
                       long replicas_assumed, struct err *err);
void cluster_limits_free(struct cluster_limits *cl);

/* Takes one request from who's rate (requests_per_minute) across the
 * stack, or alone from tenants' bucket when Redis does not answer. Past
 * it: ERR_RATE_LIMITED and the seconds to wait in *retry_after_s. */
int cluster_limits_admit(struct cluster_limits *cl, struct tenants *tenants,
                         const struct tenant *who, long *retry_after_s,
                         struct err *err);

/* A lease on one of who's jobs or sessions into *out (left empty without
 * Redis, or for a session when who has no max_sessions; held and written to Redis
 * later when Redis does not answer now), and in *local_max the limit this
 * replica applies alone on top: who's own, or its share when Redis does
 * not answer. ERR_BUSY when the tenant holds all its places. */
int cluster_limits_take(struct cluster_limits *cl, enum lease_kind kind,
                        const struct tenant *who, struct lease *out,
                        long *local_max, struct err *err);
/* Gives a lease back (nothing for an empty one) and empties it. */
void cluster_limits_drop(struct lease *l);

struct cluster_limits_stats {
    bool redis;          /* a Redis URL is set */
    bool shared;         /* Redis answered the last call */
    long replicas;       /* replicas known (with itself) */
    long long fallbacks; /* decisions made alone, Redis away */
    long long leases;    /* leases held now by this replica */
};
void cluster_limits_stats(struct cluster_limits *cl,
                          struct cluster_limits_stats *out);

/* How many jobs (running or queued) tenant had on the other replicas at
 * the last renewal (0 without Redis): what the fair share between
 * tenants adds to a tenant's jobs here (jobs.c). */
long cluster_limits_jobs_elsewhere(struct cluster_limits *cl,
                                   const char *tenant);

#endif
