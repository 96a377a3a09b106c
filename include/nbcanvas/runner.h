#ifndef NBCANVAS_RUNNER_H
#define NBCANVAS_RUNNER_H

/*
 * POST /v1/run: one snippet in one language, in a fresh sandbox. The
 * program's own failure is a result (status runtime_error, compile_error,
 * timeout, memory_limit or output_limit), not an error; errors are for bad
 * requests and infrastructure faults.
 */

/* What the snippet sandbox's unpack step says before the program runs. */
#define RUNNER_READY "nbcanvas:ready"
#define RUNNER_READY_LINE RUNNER_READY "\n"

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "nbcanvas/err.h"
#include "nbcanvas/request.h"
#include "nbcanvas/pipeline.h"

/* Runs req; on success *out is a new JSON result object as API.md
 * describes. cancel ends the job early (client gone). */
int runner_run(json_t **out, const struct pipeline *deps,
               const struct run_request *req, const char *request_id,
               const atomic_bool *cancel, struct err *err);

#endif
