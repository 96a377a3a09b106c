#ifndef NBCANVAS_JOBS_H
#define NBCANVAS_JOBS_H

/*
 * Back-pressure and fairness: at most max_running jobs run at once and at
 * most max_waiting wait for a slot; past that, jobs_acquire answers
 * ERR_BUSY at once so the client can retry (429 with Retry-After) instead
 * of piling up threads and memory. A tenant with a max_jobs of its own may
 * have no more than that many jobs running or waiting. When a slot frees,
 * it goes to the waiting tenant with the fewest jobs running (the oldest
 * waiter of that tenant); with the queue full, a lighter tenant's request
 * takes the busiest tenant's newest place (that one is ERR_BUSY): one
 * tenant's flood never holds up another's work beyond its fair share.
 *
 * With cluster limits (cluster_limits.h) a tenant's max_jobs counts
 * across every replica: a job holds a lease for as long as its slot,
 * taken before it queues here and dropped with the slot; and the fair
 * share weighs each tenant's jobs on the other replicas too.
 */

#include <stdatomic.h>
#include <stdbool.h>

#include "nbcanvas/cluster_limits.h"
#include "nbcanvas/err.h"
#include "nbcanvas/tenants.h"

struct jobs;

/* A slot held by a job of one tenant; given back with jobs_release. */
struct job_slot {
    struct jobs *jobs; /* NULL: no slot held */
    char tenant[TENANT_NAME_MAX];
    struct lease lease; /* the tenant's place across replicas */
};

#define JOB_SLOT_INIT                                                         \
    {                                                                         \
        NULL, "", LEASE_INIT                                                  \
    }

/* A new limiter, freed with jobs_free once no slot is held or awaited. */
struct jobs *jobs_new(long max_running, long max_waiting);
void jobs_free(struct jobs *j);

/* Counts tenants' max_jobs across replicas through cl (borrowed; set
 * once, before the first job). */
void jobs_share_limits(struct jobs *j, struct cluster_limits *cl);

/* Waits for a slot for who (NULL: tenant "" with no limit of its own) and
 * fills *slot. ERR_BUSY when the queue or the tenant's own limit is full,
 * ERR_CANCELLED when *cancel becomes true while waiting. */
int jobs_acquire(struct jobs *j, const struct tenant *who,
                 const atomic_bool *cancel, struct job_slot *slot,
                 struct err *err);
/* Gives back one slot (does nothing for a slot never acquired). */
void jobs_release(const struct job_slot *slot);

void jobs_counts(struct jobs *j, long *running, long *waiting);

#endif
