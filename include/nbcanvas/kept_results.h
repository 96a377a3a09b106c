#ifndef NBCANVAS_KEPT_RESULTS_H
#define NBCANVAS_KEPT_RESULTS_H

/*
 * The results of streamed renders, kept for GET /v1/results/{id}: a
 * streamed answer carries progress and the json result, and the client
 * fetches the page, zip or notebook afterwards. Each is served to the
 * tenant that made it only, for result_ttl_s, within kept_results_bytes
 * in all (the oldest go first). Thread-safe.
 */

#include <stddef.h>

#include "nbcanvas/err.h"
#include "nbcanvas/render.h"

struct kept_results;

struct kept_results *kept_results_new(long long max_bytes, long ttl_s);
void kept_results_free(struct kept_results *kr);

/* Keeps k (taken over) for tenant under k->id. */
void kept_results_put(struct kept_results *kr, const char *tenant,
                      struct render_kept *k);

/* Builds the kept result id of tenant in format; ERR_NOT_FOUND when there
 * is none (another tenant's, expired, or never kept). */
int kept_results_build(struct kept_results *kr, const char *tenant,
                       const char *id, enum render_format format,
                       struct payload *out, struct err *err);

#endif
