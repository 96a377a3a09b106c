/*
 * A kernel job's status (include/nbcanvas/job_status.h): every field is
 * type-checked before use. kernel_job.c writes it in this process, but
 * parts of it (a cell's ename, evalue and traceback) come from the kernel,
 * next to the user's code.
 */
#include "nbcanvas/job_status.h"

#include <string.h>

#include "nbcanvas/sandbox.h"

static const struct {
    const char *word;
    enum job_outcome outcome;
} outcomes[] = {
    {"ok", JOB_OK},
    {"cell_error", JOB_CELL_ERROR},
    {"timeout", JOB_TIMEOUT},
    {"kernel_died", JOB_KERNEL_DIED},
    {"output_limit", JOB_OUTPUT_LIMIT},
    {"invalid_notebook", JOB_INVALID_NOTEBOOK},
    {"not_found", JOB_NOT_FOUND},
    {"package_failed", JOB_PACKAGE_FAILED},
    {"internal", JOB_FAILED},
};

int job_status_parse(struct job_status *out, json_t *status, struct err *err)
{
    json_t *word = json_object_get(status, "status");
    json_t *cell = json_object_get(status, "cell");
    json_t *message = json_object_get(status, "message");
    json_t *timing = json_object_get(status, "timing_ms");
    json_t *over = json_object_get(status, "session_over");
    size_t i;

    memset(out, 0, sizeof(*out));
    out->cell = -1;
    out->message = "";
    if (!json_is_object(status) || !json_is_string(word))
        return err_set(err, ERR_INTERNAL, "job status: status has no status");
    for (i = 0; i < sizeof(outcomes) / sizeof(outcomes[0]); i++)
        if (strcmp(json_string_value(word), outcomes[i].word) == 0)
            break;
    if (i == sizeof(outcomes) / sizeof(outcomes[0]))
        return err_set(err, ERR_INTERNAL, "job status: unknown status '%.40s'",
                       json_string_value(word));
    out->outcome = outcomes[i].outcome;
    if (cell && !json_is_null(cell) &&
        !(json_is_integer(cell) && json_integer_value(cell) >= 0))
        return err_set(err, ERR_INTERNAL, "job status: cell is not an index");
    if (json_is_integer(cell))
        out->cell = (long)json_integer_value(cell);
    if (message && !json_is_string(message))
        return err_set(err, ERR_INTERNAL,
                       "job status: message is not a string");
    if (message)
        out->message = json_string_value(message);
    if (timing && !json_is_object(timing))
        return err_set(err, ERR_INTERNAL,
                       "job status: timing_ms is not an object");
    out->timing_ms = timing;
    if (over && !json_is_boolean(over))
        return err_set(err, ERR_INTERNAL,
                       "job status: session_over is not a boolean");
    out->session_over = json_is_true(over);
    return 0;
}

int job_dead_kernel(struct sandbox *sb, json_t *status, long cell,
                    long long memory_bytes, const char *suffix,
                    struct err *err, json_t **details)
{
    *details = json_pack("{s:I}", "cell", (json_int_t)cell);
    if (sandbox_oom_killed(sb))
        return err_set(err, ERR_MEMORY,
                       "cell %ld ran out of memory (limit %lld MiB)%s", cell,
                       memory_bytes >> 20, suffix);
    /* Removed from outside: not the user's code's doing. (Asked only when
     * the death may have been the container's: the check waits a moment
     * for a container that still runs.) */
    if (json_is_true(json_object_get(status, "sandbox_ended")) &&
        sandbox_lost(sb)) {
        json_decref(*details);
        *details = NULL;
        return sandbox_lost_error(err);
    }
    json_object_set_new(*details, "ename", json_string("DeadKernelError"));
    json_object_set_new(*details, "evalue",
                        json_string("the kernel died while running this cell "
                                    "(it exited, crashed or was killed)"));
    json_object_set_new(*details, "traceback", json_array());
    return err_set(err, ERR_CELL,
                   "cell %ld stopped the kernel (it exited, crashed or was "
                   "killed)%s",
                   cell, suffix);
}
