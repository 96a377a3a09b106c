/*
 * The service's side of the driver protocol (include/nbcanvas/driver.h).
 * The ready and progress lines are found by their word at the start of a
 * line, the done line by its word and the job's nonce anywhere, and every
 * status.json field is type-checked before use: the driver runs next to
 * the user's code, so what it sends is read as carefully as a request.
 */
#include "nbcanvas/driver.h"

#include <stdlib.h>
#include <string.h>

#include "nbcanvas/sandbox.h"
#include "nbcanvas/util.h"

#define RELAY_PATH "/opt/nbcanvas/nbcanvas-relay"
#define KERNEL_LAUNCHER "/opt/nbcanvas/nbcanvas_kernel.py"
#define JOB_WORD "nbcanvas:job "
#define DONE_WORD "nbcanvas:done "
#define CELL_WORD "nbcanvas:cell "
#define EVENT_WORD "nbcanvas:event "
/* Room in the results stream for the tar's headers and status.json. */
#define RESULTS_HEADROOM (1 << 20)

/* The relay, and after it the kernel's command line as a kernel spec has
 * it (nbclient's own history setting: in memory, not a sqlite file that
 * every cell would write to). */
json_t *driver_command(void)
{
    return json_pack("[s, s, s, s, s, s]", RELAY_PATH, "python3",
                     KERNEL_LAUNCHER, "-f", "{connection_file}",
                     "--HistoryManager.hist_file=:memory:");
}

json_t *driver_environment(const char *kernel, bool preload)
{
    /* The root is read-only: everything Jupyter, IPython and matplotlib
     * write goes to the sandbox's /tmp. Jupyter's per-user data folder
     * would be ~/.local/share/jupyter, which the code can write: one on
     * the read-only root instead. Packages installed at run time go to
     * the working folder's tmpfs, under .nbcanvas (no artifacts). */
    json_t *env = json_pack(
        "[s, s, s, s, s, s]", "JUPYTER_RUNTIME_DIR=/tmp/jupyter-runtime",
        "IPYTHONDIR=/tmp/ipython", "MPLCONFIGDIR=/tmp/matplotlib",
        "XDG_CACHE_HOME=/tmp/cache",
        "JUPYTER_DATA_DIR=/opt/nbcanvas/no-user-data",
        "PYTHONUSERBASE=" SANDBOX_WORKDIR "/.nbcanvas/pkgs");

    json_array_append_new(env, json_sprintf("NBCANVAS_KERNEL=%s", kernel));
    json_array_append_new(
        env, json_sprintf("NBCANVAS_PRELOAD=%d", preload ? 1 : 0));
    return env;
}

static const char *const kind_words[] = {[DRIVER_RENDER] = "render",
                                         [DRIVER_OPEN] = "open",
                                         [DRIVER_EXECUTE] = "execute",
                                         [DRIVER_EXPORT] = "export",
                                         [DRIVER_FILE] = "file"};

static json_t *job_json(const struct driver_job *j)
{
    json_t *spec = json_pack(
        "{s:s, s:I, s:b, s:b, s:s, s:I, s:b, s:b, s:I, s:I, s:b, s:I}",
        "kernel", j->kernel, "timeout_s", (json_int_t)j->timeout_s,
        "allow_errors", j->allow_errors, "include_input", j->include_input,
        "template", j->template_name, "max_html_bytes",
        (json_int_t)j->max_html_bytes, "sanitize_html", 0, "artifacts",
        j->artifacts, "max_artifact_bytes", (json_int_t)j->max_artifact_bytes,
        "max_result_bytes",
        (json_int_t)(j->max_result_bytes - RESULTS_HEADROOM), "structured",
        j->structured, "table_rows", (json_int_t)j->table_rows);

    json_object_set_new(spec, "kind", json_string(kind_words[j->kind]));
    json_object_set_new(spec, "session",
                        json_boolean(j->kind != DRIVER_RENDER));
    json_object_set_new(spec, "events", json_boolean(j->events));
    if (j->path)
        json_object_set_new(spec, "path", json_string(j->path));
    if (json_array_size(j->packages))
        json_object_set(spec, "packages", j->packages);
    return spec;
}

int driver_write_job(struct buf *out, const struct driver_job *job,
                     json_t *notebook, const struct tar_files *files,
                     char nonce[DRIVER_NONCE_LEN + 1], struct err *err)
{
    struct buf tar = BUF_INIT((size_t)-1);
    json_t *spec = job_json(job);
    char *nb = json_dumps(notebook, JSON_COMPACT);
    char *spec_text = json_dumps(spec, JSON_COMPACT);
    struct tar_entry own[] = {{DRIVER_JOB_NOTEBOOK, nb, strlen(nb)},
                              {DRIVER_JOB_SPEC, spec_text, strlen(spec_text)}};
    size_t nwheels = job->wheels ? job->wheels->n : 0;
    struct tar_entry *extra = xcalloc(2 + nwheels, sizeof(*extra));
    int rc;

    util_uuid(nonce); /* 122 random bits from the system's generator */
    memcpy(extra, own, sizeof(own));
    if (nwheels) /* the wheels: .nbcanvas/wheels/<file> */
        memcpy(extra + 2, job->wheels->v, nwheels * sizeof(*extra));
    rc = tarball_write_files(&tar, files, extra, 2 + nwheels, SANDBOX_UID,
                             SANDBOX_UID, err);
    free(extra);
    if (rc == 0 && (buf_printf(out, JOB_WORD "%zu %s\n", tar.len, nonce) < 0 ||
                    buf_append(out, tar.data, tar.len) < 0))
        rc = err_set(err, ERR_TOO_LARGE, "the job is too large");
    buf_release(&tar);
    free(nb);
    free(spec_text);
    json_decref(spec);
    return rc;
}

/* The first occurrence of word at the start of a line of s, or NULL. */
static const char *find_line(const char *s, size_t len, const char *word)
{
    size_t n = strlen(word);
    const char *p = s, *end = s + len, *hit;

    while (p < end && (hit = memmem(p, (size_t)(end - p), word, n))) {
        if (hit == s || hit[-1] == '\n')
            return hit;
        p = hit + 1;
    }
    return NULL;
}

bool driver_is_ready(const char *out, size_t len)
{
    return find_line(out, len, DRIVER_READY_LINE) != NULL;
}

int driver_find_results(const char *out, size_t len, const char *nonce,
                        size_t *from, size_t *at, size_t *n, struct err *err)
{
    char word[sizeof(DONE_WORD) + DRIVER_NONCE_LEN + 1];
    const char *line, *nl, *digits;
    unsigned long long size = 0;
    size_t wlen, start = *from < len ? *from : len;

    /* Anywhere, not only at a line's start: the nonce makes it unique, and
     * a forger could leave an unfinished line of its own before it. */
    snprintf(word, sizeof(word), DONE_WORD "%s ", nonce);
    wlen = strlen(word);
    line = memmem(out + start, len - start, word, wlen);
    if (!line) {
        /* next time, only what is new (and a word cut at the end) */
        *from = len >= wlen ? len - wlen + 1 : 0;
        return 0;
    }
    *from = (size_t)(line - out);
    digits = line + strlen(word);
    nl = memchr(digits, '\n', (size_t)(out + len - digits));
    if (!nl)
        return 0;
    if (nl == digits || nl - digits > 19)
        return err_set(err, ERR_INTERNAL, "driver: bad done line");
    for (; digits < nl; digits++) {
        if (*digits < '0' || *digits > '9')
            return err_set(err, ERR_INTERNAL, "driver: bad done line");
        size = size * 10 + (unsigned long long)(*digits - '0');
    }
    *at = (size_t)(nl + 1 - out);
    *n = (size_t)size;
    return len - *at >= size ? 1 : 0;
}

int driver_next_event(const char *out, size_t end, const char *nonce,
                      size_t *from, json_t **event)
{
    char word[sizeof(EVENT_WORD) + DRIVER_NONCE_LEN + 1];
    size_t wlen;

    snprintf(word, sizeof(word), EVENT_WORD "%s ", nonce);
    wlen = strlen(word);
    while (*from < end) {
        const char *line = out + *from;
        const char *nl = memchr(line, '\n', end - *from);
        json_t *e;

        if (!nl)
            return 0;
        *from = (size_t)(nl + 1 - out);
        if ((size_t)(nl - line) <= wlen || memcmp(line, word, wlen) != 0)
            continue;
        e = json_loadb(line + wlen, (size_t)(nl - line) - wlen, 0, NULL);
        if (json_is_object(e) && json_is_string(json_object_get(e, "event"))) {
            *event = e;
            return 1;
        }
        json_decref(e);
    }
    return 0;
}

long driver_last_cell(const char *errout, size_t len)
{
    const char *p = errout, *end = errout + len, *hit;
    long cell = -1;

    while (p < end && (hit = find_line(p, (size_t)(end - p), CELL_WORD))) {
        /* find_line counts p itself as a line start: only true at the
         * very beginning or right after a newline. */
        if (hit == errout || hit[-1] == '\n')
            cell = strtol(hit + strlen(CELL_WORD), NULL, 10);
        p = hit + strlen(CELL_WORD);
    }
    return cell;
}

static const struct {
    const char *word;
    enum driver_outcome outcome;
} outcomes[] = {
    {"ok", DRIVER_OK},
    {"cell_error", DRIVER_CELL_ERROR},
    {"timeout", DRIVER_TIMEOUT},
    {"kernel_died", DRIVER_KERNEL_DIED},
    {"output_limit", DRIVER_OUTPUT_LIMIT},
    {"invalid_notebook", DRIVER_INVALID_NOTEBOOK},
    {"not_found", DRIVER_NOT_FOUND},
    {"package_failed", DRIVER_PACKAGE_FAILED},
    {"internal", DRIVER_FAILED},
};

int driver_parse_status(struct driver_status *out, json_t *status,
                        struct err *err)
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
        return err_set(err, ERR_INTERNAL, "driver: status has no status");
    for (i = 0; i < sizeof(outcomes) / sizeof(outcomes[0]); i++)
        if (strcmp(json_string_value(word), outcomes[i].word) == 0)
            break;
    if (i == sizeof(outcomes) / sizeof(outcomes[0]))
        return err_set(err, ERR_INTERNAL, "driver: unknown status '%.40s'",
                       json_string_value(word));
    out->outcome = outcomes[i].outcome;
    if (cell && !json_is_null(cell) &&
        !(json_is_integer(cell) && json_integer_value(cell) >= 0))
        return err_set(err, ERR_INTERNAL, "driver: cell is not an index");
    if (json_is_integer(cell))
        out->cell = (long)json_integer_value(cell);
    if (message && !json_is_string(message))
        return err_set(err, ERR_INTERNAL, "driver: message is not a string");
    if (message)
        out->message = json_string_value(message);
    if (timing && !json_is_object(timing))
        return err_set(err, ERR_INTERNAL,
                       "driver: timing_ms is not an object");
    out->timing_ms = timing;
    if (over && !json_is_boolean(over))
        return err_set(err, ERR_INTERNAL,
                       "driver: session_over is not a boolean");
    out->session_over = json_is_true(over);
    return 0;
}
