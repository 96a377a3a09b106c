/*
 * A job on a sandbox's kernel (include/nbcanvas/kernel_job.h). Every step
 * is one or a few frames to the relay and the frames that answer them;
 * whatever the sandbox sends back is read as untrusted (relay_link.c,
 * jmsg.c). The code that runs inside the kernel on the service's behalf
 * (the site folder of installed packages, nbcanvas's kernel-side modules)
 * is written here, run silently: nothing is bound in the user's
 * namespace, no execution count is used.
 */
#include "nbcanvas/kernel_job.h"

#include <stdio.h>
#include <string.h>

#include "nbcanvas/notebook.h"
#include "nbcanvas/sql_cells.h"
#include "nbcanvas/util.h"

#define WHEELS_DIR SANDBOX_WORKDIR "/.nbcanvas/wheels"
#define SQL_PREFIX ".nbcanvas/sql/"
#define SQL_DIR SANDBOX_WORKDIR "/.nbcanvas/sql"
#define SETUP_TIMEOUT_MS 30000
/* Room in the results for status.json and the tar's headers. */
#define RESULTS_HEADROOM (1 << 20)

/* Installed packages' folder joins the kernel's path, ahead of the
 * image's (a version the request named wins): the kernel started before
 * the folder existed. */
static const char add_user_site[] =
    "def __nbcanvas_site():\n"
    "    import importlib, site, sys\n"
    "    before = list(sys.path)\n"
    "    site.addsitedir(site.getusersitepackages())\n"
    "    sys.path[:] = [p for p in sys.path if p not in before] + before\n"
    "    importlib.invalidate_caches()\n"
    "__nbcanvas_site()\n"
    "del __nbcanvas_site\n";

/* Loads one of nbcanvas's kernel-side modules from /opt/nbcanvas and
 * calls its install(arg), without a name in the user's namespace or a
 * change to sys.path: nbcanvas_structured (chart and table formatters),
 * nbcanvas_sql (the %%sql magic over rows the service fetched). The
 * arguments are JSON literals, which Python reads alike. */
static const char install_module[] =
    "def __nbcanvas_install(name, arg):\n"
    "    import importlib.util\n"
    "    spec = importlib.util.spec_from_file_location(\n"
    "        name, '/opt/nbcanvas/%%s.py' %% name)\n"
    "    module = importlib.util.module_from_spec(spec)\n"
    "    spec.loader.exec_module(module)\n"
    "    module.install(arg)\n"
    "__nbcanvas_install(%s, %s)\n"
    "del __nbcanvas_install\n";

void kernel_job_init(struct kernel_job *j, const struct config *cfg,
                     struct exporters *exporters, struct err *err)
{
    memset(j, 0, sizeof(*j));
    j->cfg = cfg;
    j->exporters = exporters;
    j->err = err;
}

void kernel_job_release(struct kernel_job *j)
{
    if (j->linked)
        relay_link_close(&j->link);
    j->linked = false;
    json_decref(j->status);
    json_decref(j->notebook);
    j->status = j->notebook = NULL;
    tarball_files_release(&j->results);
}

const char *kernel_job_stderr_tail(const struct kernel_job *j, char *out,
                                   size_t out_len)
{
    if (!j->lk) {
        out[0] = '\0';
        return out;
    }
    return relay_link_stderr_tail(j->lk, out, out_len);
}

static bool status_is(const struct kernel_job *j, const char *word)
{
    const char *s = json_string_value(json_object_get(j->status, "status"));

    return s && strcmp(s, word) == 0;
}

static void set_status(struct kernel_job *j, const char *word,
                       const char *message)
{
    json_object_set_new(j->status, "status", json_string(word));
    if (message)
        json_object_set_new(j->status, "message", json_string(message));
}

/* Waits for the answer to a chore: a frame of type want (RELAY_FAILED
 * is an error naming what the relay said). Messages of the kernel that
 * come meanwhile are not the chore's and are dropped. */
static int await_frame(struct kernel_job *j, uint8_t want,
                       struct relay_frame *f, long long deadline_ms)
{
    for (;;) {
        int rc = relay_link_next(j->lk, f, deadline_ms);

        if (rc == 1)
            return err_set(j->err, ERR_INTERNAL,
                           "the sandbox ended during the job's set-up");
        if (rc < 0)
            return rc;
        if (f->type == want)
            return 0;
        if (f->type == RELAY_FAILED)
            return err_set(j->err, ERR_INTERNAL, "the sandbox's relay: %.*s",
                           (int)(f->len < 300 ? f->len : 300),
                           (const char *)f->payload);
    }
}

/* One chore: a frame to the relay, then its answer (of type want). */
static int chore(struct kernel_job *j, uint8_t type, const void *payload,
                 size_t len, uint8_t want, struct relay_frame *f,
                 long long deadline_ms)
{
    int rc = relay_link_send(j->lk, type, 0, payload, len, deadline_ms);

    return rc < 0 ? rc : await_frame(j, want, f, deadline_ms);
}

static int put_one(struct kernel_job *j, const struct tar_entry *e,
                   long long deadline_ms)
{
    size_t plen = strlen(e->name);
    struct buf frame = BUF_INIT(RELAY_MAX_FRAME);
    uint8_t head[2] = {(uint8_t)(plen >> 8), (uint8_t)plen};
    int rc;

    if (plen > 0xffff)
        return err_set(j->err, ERR_INVALID, "a file name is too long");
    buf_append(&frame, head, 2);
    buf_append(&frame, e->name, plen);
    if (buf_append(&frame, e->data, e->len) < 0)
        rc = err_set(j->err, ERR_TOO_LARGE, "the file %s is too large",
                     e->name);
    else
        rc = relay_link_send(j->lk, RELAY_PUT_FILE, 0, frame.data, frame.len,
                             deadline_ms);
    buf_release(&frame);
    if (rc == 0)
        j->uploaded = true;
    return rc;
}

/* The request's files and the job's wheels into the working folder. */
static int place_files(struct kernel_job *j, const struct tar_files *files,
                       const struct tar_files *wheels, long long deadline_ms)
{
    size_t sent = 0;
    int rc = 0;

    for (size_t i = 0; files && i < files->n && rc == 0; i++, sent++)
        rc = put_one(j, &files->v[i], deadline_ms);
    for (size_t i = 0; wheels && i < wheels->n && rc == 0; i++, sent++)
        rc = put_one(j, &wheels->v[i], deadline_ms);
    /* one answer a file, in order */
    for (size_t i = 0; i < sent && rc == 0; i++) {
        struct relay_frame f;

        rc = await_frame(j, RELAY_FILE, &f, deadline_ms);
    }
    return rc;
}

/* The last "ERROR" line of pip's output, else its last line. */
static char *pip_message(const char *out, size_t len)
{
    const char *best = NULL, *last = NULL, *p = out, *end = out + len;
    size_t best_len = 0, last_len = 0;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);

        if (n && strspn(p, " \t\r") < n) {
            last = p;
            last_len = n;
            if (n >= 5 && strncmp(p, "ERROR", 5) == 0) {
                best = p;
                best_len = n;
            }
        }
        p += n + 1;
    }
    if (!best) {
        best = last ? last : "pip failed";
        best_len = last ? last_len : strlen(best);
    }
    return xasprintf("%.*s", (int)(best_len < 500 ? best_len : 500), best);
}

/* pip installs the job's requirements from the wheels that came with it
 * (no index: the sandbox has no network). Returns 1 when installed, 0
 * when pip failed (the status says why), or ERR_*. */
static int install_packages(struct kernel_job *j, json_t *packages,
                            long timeout_s, struct executor *ex,
                            long long deadline_ms)
{
    static const char *const argv[] = {"env",
                                       "PIP_CONFIG_FILE=/dev/null",
                                       "python3",
                                       "-m",
                                       "pip",
                                       "install",
                                       "--user",
                                       "--break-system-packages",
                                       "--no-index",
                                       "--find-links",
                                       WHEELS_DIR,
                                       "--disable-pip-version-check",
                                       "--no-input",
                                       "--progress-bar",
                                       "off",
                                       "--no-warn-script-location",
                                       "--no-cache-dir",
                                       "--"};
    struct buf frame = BUF_INIT(1 << 20);
    struct relay_frame f;
    long long t0 = util_now_ms();
    uint8_t t[4];
    json_t *req;
    size_t i;
    int rc;

    relay_put_u32(t, (uint32_t)(timeout_s > 10 ? timeout_s : 10));
    buf_append(&frame, t, 4);
    for (i = 0; i < sizeof(argv) / sizeof(*argv); i++)
        buf_append(&frame, argv[i], strlen(argv[i]) + 1);
    json_array_foreach(packages, i, req) {
        if (json_is_string(req))
            buf_append(&frame, json_string_value(req),
                       json_string_length(req) + 1);
    }
    rc = chore(j, RELAY_RUN, frame.data, frame.len, RELAY_RUN_DONE, &f,
               deadline_ms);
    buf_release(&frame);
    if (rc < 0)
        return rc;
    json_object_set_new(json_object_get(j->status, "timing_ms"), "install",
                        json_integer(util_now_ms() - t0));
    if (f.len < 4 || relay_get_u32(f.payload) != 0) {
        char *why = f.len >= 4 && relay_get_u32(f.payload) == 0xffffffffu
                        ? xasprintf("pip did not finish in time")
                        : pip_message((const char *)f.payload + 4,
                                      f.len >= 4 ? f.len - 4 : 0);

        set_status(j, "package_failed", why);
        free(why);
        return 0;
    }
    rc = executor_silent(ex, add_user_site, SETUP_TIMEOUT_MS, j->err);
    return rc < 0 ? rc : 1;
}

/* Returns 1 (installed) or ERR_*. */
static int install_kernel_module(struct executor *ex, const char *name,
                                 json_t *arg, struct err *err)
{
    json_t *name_json = json_string(name);
    char *a = json_dumps(arg, JSON_ENCODE_ANY);
    char *n = json_dumps(name_json, JSON_ENCODE_ANY);
    char *code;
    int rc;

    json_decref(arg);
    json_decref(name_json);
    code = xasprintf(install_module, n, a);
    rc = executor_silent(ex, code, SETUP_TIMEOUT_MS, err);
    free(code);
    free(a);
    free(n);
    return rc < 0 ? rc : 1;
}

/* A %%sql cell for a kernel without the magic (R's): the rows the
 * service fetched read back by the image's helper (nbcanvas_sql_rows in
 * notebook-images/r/nbcanvas_kernel.R), bound to the header's name and
 * shown; the cell keeps its source. NULL for any other cell. */
static char *r_sql_cell(void *ctx, const char *source)
{
    struct sql_cell cell;
    struct err err = ERR_INIT;
    char key[65], *text;
    size_t n;

    (void)ctx;
    if (sql_cell_parse(source, strlen(source), &cell, &err) != 1)
        return NULL;
    /* the key nbcanvas_sql.py computes: the datasource, a newline, the
     * query (sql_cells.h) */
    n = strlen(cell.datasource) + 1 + cell.query_len;
    text = xmalloc(n + 1);
    snprintf(text, n + 1, "%s\n%.*s", cell.datasource, (int)cell.query_len,
             cell.query);
    util_sha256_hex(key, text, n);
    free(text);
    /* the name is checked by sql_cell_parse (an identifier); backquoted,
     * "_sql" is a name in R too */
    return xasprintf("`%s` <- nbcanvas_sql_rows('%s/%s.json')\n`%s`",
                     cell.name, SQL_DIR, key, cell.name);
}

/* A job whose files hold %%sql rows: Python's kernel gets the magic
 * (nbcanvas_sql.py); another kernel gets its cells rewritten. */
static int sql_cells_for(struct executor *ex, const struct job_spec *spec,
                         struct err *err)
{
    const struct kernel_info *k = notebook_kernel_find(spec->kernel);

    if (k && !k->ipykernel) {
        ex->rewrite = r_sql_cell;
        return 1;
    }
    return install_kernel_module(ex, "nbcanvas_sql", json_string(SQL_DIR),
                                 err);
}

static bool has_sql_rows(const struct tar_files *files)
{
    for (size_t i = 0; files && i < files->n; i++)
        if (strncmp(files->v[i].name, SQL_PREFIX, strlen(SQL_PREFIX)) == 0)
            return true;
    return false;
}

static char *copy_of(const uint8_t *data, size_t n)
{
    char *p = xmalloc(n + 1);

    memcpy(p, data, n);
    p[n] = '\0';
    return p;
}

/* The files the code wrote, under artifacts/ in the results. */
static int collect_artifacts(struct kernel_job *j, long long cap,
                             long long deadline_ms)
{
    uint8_t c[8];
    struct relay_frame f;
    size_t at = 0;
    int rc;

    relay_put_u32(c, (uint32_t)((unsigned long long)cap >> 32));
    relay_put_u32(c + 4, (uint32_t)cap);
    rc = chore(j, RELAY_COLLECT, c, 8, RELAY_FILES, &f, deadline_ms);
    while (rc == 0 && at < f.len) {
        size_t plen, n;

        if (f.len - at < 2)
            break;
        plen = (size_t)f.payload[at] << 8 | f.payload[at + 1];
        if (f.len - at - 2 < plen + 4)
            break;
        n = relay_get_u32(f.payload + at + 2 + plen);
        if (f.len - at - 2 - plen - 4 < n)
            break;
        tarball_files_add(&j->results,
                          xasprintf("artifacts/%.*s", (int)plen,
                                    (const char *)f.payload + at + 2),
                          copy_of(f.payload + at + 2 + plen + 4, n), n);
        at += 2 + plen + 4 + n;
    }
    if (rc == 0 && at != f.len)
        rc = err_set(j->err, ERR_INTERNAL,
                     "the sandbox's file list is "
                     "malformed");
    return rc;
}

static long long results_size(const struct tar_files *r)
{
    long long n = 0;

    for (size_t i = 0; i < r->n; i++)
        n += (long long)r->v[i].len;
    return n;
}

/* Asks the exporters for the page of the executed notebook. */
static int export_page(struct kernel_job *j, const struct job_spec *spec,
                       long long deadline_ms, const atomic_bool *cancel)
{
    struct conversion req = {
        EXPORT_HTML,         j->notebook, spec->template_name,
        spec->include_input, false,       spec->max_html_bytes};
    long long t0 = util_now_ms();
    char *page = NULL;
    size_t len = 0;
    int rc = exporters_convert(j->exporters, &req, &page, &len, deadline_ms,
                               cancel, j->err);

    if (rc == ERR_OUTPUT) {
        set_status(j, "output_limit", j->err->msg);
        return 0;
    }
    if (rc < 0)
        return rc;
    tarball_files_add(&j->results, xstrdup("index.html"), page, len);
    json_object_set_new(json_object_get(j->status, "timing_ms"), "export",
                        json_integer(util_now_ms() - t0));
    return 0;
}

static int render_steps(struct kernel_job *j, struct sandbox *sb,
                        const struct job_spec *spec, json_t *notebook,
                        const struct tar_files *files, long long deadline_ms,
                        const atomic_bool *cancel)
{
    struct conversion check = {EXPORT_VALIDATE, notebook, NULL,
                               false,           false,    0};
    struct executor ex;
    long counter = 0;
    long long t0;
    int rc;

    j->status = json_pack("{s:s, s:{}}", "status", "internal", "timing_ms");
    /* nbformat's verdict before anything runs (on an uploaded notebook:
     * one the service built from cells is valid as made) */
    rc = spec->validate ? exporters_convert(j->exporters, &check, NULL, NULL,
                                            deadline_ms, cancel, j->err)
                        : 0;
    if (rc == ERR_INVALID) {
        set_status(j, "invalid_notebook", j->err->msg);
        return 0;
    }
    if (rc < 0)
        return rc;
    j->notebook = json_deep_copy(notebook);
    t0 = util_now_ms();
    rc = relay_link_open(&j->link, sb, (size_t)j->cfg->max_output_bytes,
                         deadline_ms, cancel, j->err);
    j->linked = true;
    j->lk = &j->link;
    j->link.cancel_too = j->cancel_too;
    if (rc < 0)
        return rc;
    json_object_set_new(json_object_get(j->status, "timing_ms"), "kernel",
                        json_integer(util_now_ms() - t0));
    rc = place_files(j, files, spec->wheels, deadline_ms);
    if (rc < 0)
        return rc;
    j->uploaded = true;
    executor_init(&ex, j->lk, &counter);
    ex.deadline_ms = util_now_ms() + spec->timeout_s * 1000LL;
    if (ex.deadline_ms > deadline_ms)
        ex.deadline_ms = deadline_ms;
    ex.deadline_s = spec->timeout_s;
    ex.allow_errors = spec->allow_errors;
    ex.output_budget = spec->max_html_bytes;
    ex.stop = EXECUTOR_KILL;
    ex.on_event = spec->events ? j->on_event : NULL;
    ex.event_ctx = j->event_ctx;
    rc = 1; /* 1: go on; 0: the status says why not; < 0: ERR_* */
    if (json_array_size(spec->packages) > 0)
        rc = install_packages(j, spec->packages, spec->timeout_s, &ex,
                              deadline_ms);
    if (rc == 1 && spec->structured)
        rc = install_kernel_module(&ex, "nbcanvas_structured",
                                   json_integer(spec->table_rows), j->err);
    if (rc == 1 && has_sql_rows(files))
        rc = sql_cells_for(&ex, spec, j->err);
    if (rc == 1) {
        t0 = util_now_ms();
        rc = executor_kernel_info(&ex, j->notebook, j->err);
        if (rc == 0)
            rc = executor_run(&ex, j->notebook, 0, j->status, j->err);
        json_object_set_new(json_object_get(j->status, "timing_ms"), "execute",
                            json_integer(util_now_ms() - t0));
    }
    executor_release(&ex);
    if (rc < 0)
        return rc;
    /* Nothing of the code runs on while its results are read. */
    {
        uint8_t sig = RELAY_SIG_STOP_ALL;

        relay_link_send(j->lk, RELAY_SIGNAL, 0, &sig, 1, deadline_ms);
    }
    if (!status_is(j, "ok"))
        return 0;
    if (spec->artifacts) {
        rc = collect_artifacts(j, spec->max_artifact_bytes, deadline_ms);
        if (rc < 0)
            return rc;
    }
    rc = export_page(j, spec, deadline_ms, cancel);
    if (rc == 0 && results_size(&j->results) >
                       spec->max_result_bytes - RESULTS_HEADROOM) {
        char *why = xasprintf("the results are %lld bytes",
                              results_size(&j->results));

        tarball_files_release(&j->results);
        set_status(j, "output_limit", why);
        free(why);
    }
    return rc;
}

int kernel_job_render(struct kernel_job *j, struct sandbox *sb,
                      const struct job_spec *spec, json_t *notebook,
                      const struct tar_files *files, long long deadline_ms,
                      const atomic_bool *cancel)
{
    int rc = render_steps(j, sb, spec, notebook, files, deadline_ms, cancel);
    char *text;

    /* The executed notebook as nbformat writes it (sorted keys, one space
     * of indent), for the formats that carry the file. */
    if (rc == 0 && j->notebook &&
        (text = json_dumps(j->notebook, JSON_INDENT(1) | JSON_SORT_KEYS))) {
        if (status_is(j, "ok"))
            tarball_files_add(&j->results, xstrdup("notebook.ipynb"), text,
                              strlen(text));
        else
            free(text);
    }
    return rc;
}

/* ---------------------------------------------------------------- sessions */

void kernel_session_release(struct kernel_session *ks)
{
    if (ks->linked)
        relay_link_close(&ks->link);
    ks->linked = false;
    json_decref(ks->notebook);
    ks->notebook = NULL;
}

/* The session's link to its relay for this call: opened by its first
 * call and kept (one attach for the session's life, not one a call),
 * bound to this call's error, cancel flags and raw-output cap. */
static int link_up(struct kernel_job *j, struct sandbox *sb,
                   struct kernel_session *ks, long long deadline_ms,
                   const atomic_bool *cancel)
{
    int rc = 0;

    j->status = json_pack("{s:s, s:{}}", "status", "ok", "timing_ms");
    if (!ks->linked) {
        rc = relay_link_open(&ks->link, sb, (size_t)j->cfg->max_output_bytes,
                             deadline_ms, cancel, j->err);
        if (rc < 0) { /* the call fails; the next opens afresh */
            relay_link_close(&ks->link);
            return rc;
        }
        ks->linked = true;
    }
    relay_link_bind(&ks->link, j->err, cancel, j->cancel_too);
    j->lk = &ks->link;
    return rc;
}

/* A session call's first steps: its link, then the request's files and
 * the job's wheels placed (the call has then reached the sandbox). */
static int session_call_begin(struct kernel_job *j, struct sandbox *sb,
                              struct kernel_session *ks,
                              const struct job_spec *spec,
                              const struct tar_files *files,
                              long long deadline_ms, const atomic_bool *cancel)
{
    int rc = link_up(j, sb, ks, deadline_ms, cancel);

    if (rc == 0)
        rc = place_files(j, files, spec->wheels, deadline_ms);
    if (rc == 0)
        j->uploaded = true;
    return rc;
}

static void session_executor(struct kernel_job *j, struct executor *ex,
                             struct kernel_session *ks,
                             const struct job_spec *spec)
{
    executor_init(ex, j->lk, &ks->counter);
    ex->deadline_ms = util_now_ms() + spec->timeout_s * 1000LL;
    ex->deadline_s = spec->timeout_s;
    ex->allow_errors = false;
    ex->output_budget = spec->max_html_bytes;
    ex->stop = EXECUTOR_INTERRUPT;
    ex->on_event = spec->events ? j->on_event : NULL;
    ex->event_ctx = j->event_ctx;
}

int kernel_job_open(struct kernel_job *j, struct sandbox *sb,
                    struct kernel_session *ks, const struct job_spec *spec,
                    json_t *notebook, const struct tar_files *files,
                    long long deadline_ms, const atomic_bool *cancel)
{
    struct executor ex;
    json_t *meta;
    int rc = session_call_begin(j, sb, ks, spec, files, deadline_ms, cancel);

    if (rc < 0)
        return rc;
    meta = json_object_get(notebook, "metadata");
    meta = json_is_object(meta) ? json_deep_copy(meta) : json_object();
    ks->notebook = json_pack("{s:[], s:o, s:i, s:i}", "cells", "metadata",
                             meta, "nbformat", 4, "nbformat_minor", 5);
    session_executor(j, &ex, ks, spec);
    ex.deadline_ms = deadline_ms;
    rc = executor_kernel_info(&ex, ks->notebook, j->err);
    if (rc == 0 && json_array_size(spec->packages) > 0)
        rc = install_packages(j, spec->packages, spec->timeout_s, &ex,
                              deadline_ms);
    if (rc >= 0 && status_is(j, "ok") && spec->structured)
        rc = install_kernel_module(&ex, "nbcanvas_structured",
                                   json_integer(spec->table_rows), j->err);
    executor_release(&ex);
    return rc < 0 ? rc : 0;
}

int kernel_job_execute(struct kernel_job *j, struct sandbox *sb,
                       struct kernel_session *ks, const struct job_spec *spec,
                       json_t *notebook, const struct tar_files *files,
                       long long deadline_ms, const atomic_bool *cancel)
{
    json_t *cells = json_object_get(ks->notebook, "cells"), *cell;
    size_t from = json_array_size(cells), i;
    struct executor ex;
    int rc = session_call_begin(j, sb, ks, spec, files, deadline_ms, cancel);

    if (rc < 0)
        return rc;
    session_executor(j, &ex, ks, spec);
    rc = 1;
    if (json_array_size(spec->packages) > 0)
        rc = install_packages(j, spec->packages, spec->timeout_s, &ex,
                              deadline_ms);
    if (rc == 1 && has_sql_rows(files))
        rc = sql_cells_for(&ex, spec, j->err);
    if (rc == 1) {
        json_array_foreach(json_object_get(notebook, "cells"), i, cell) {
            json_array_append_new(cells, json_deep_copy(cell));
        }
        rc = executor_run(&ex, ks->notebook, from, j->status, j->err);
        /* The session's notebook ends with the cell that stopped it. */
        if (json_is_integer(json_object_get(j->status, "cell"))) {
            size_t last = (size_t)json_integer_value(
                json_object_get(j->status, "cell"));

            while (json_array_size(cells) > last + 1)
                json_array_remove(cells, json_array_size(cells) - 1);
        }
    }
    executor_release(&ex);
    if (rc < 0)
        return rc;
    j->notebook = json_pack("{s:[], s:O, s:i, s:i}", "cells", "metadata",
                            json_object_get(ks->notebook, "metadata"),
                            "nbformat", 4, "nbformat_minor", 5);
    for (i = from; i < json_array_size(cells); i++)
        json_array_append(json_object_get(j->notebook, "cells"),
                          json_array_get(cells, i));
    return 0;
}

int kernel_job_export(struct kernel_job *j, struct sandbox *sb,
                      struct kernel_session *ks, const struct job_spec *spec,
                      long long deadline_ms, const atomic_bool *cancel)
{
    char *text;
    int rc;

    j->notebook = json_deep_copy(ks->notebook);
    if (spec->artifacts) {
        rc = link_up(j, sb, ks, deadline_ms, cancel);
        if (rc == 0)
            rc = collect_artifacts(j, spec->max_artifact_bytes, deadline_ms);
        if (rc < 0)
            return rc;
    } else {
        j->status = json_pack("{s:s, s:{}}", "status", "ok", "timing_ms");
    }
    rc = export_page(j, spec, deadline_ms, cancel);
    if (rc < 0 || !status_is(j, "ok"))
        return rc;
    text = json_dumps(j->notebook, JSON_INDENT(1) | JSON_SORT_KEYS);
    if (text)
        tarball_files_add(&j->results, xstrdup("notebook.ipynb"), text,
                          strlen(text));
    return 0;
}

int kernel_job_file(struct kernel_job *j, struct sandbox *sb,
                    struct kernel_session *ks, const struct job_spec *spec,
                    long long deadline_ms, const atomic_bool *cancel)
{
    struct buf frame = BUF_INIT(1 << 16);
    struct relay_frame f;
    uint8_t cap[8];
    int rc = link_up(j, sb, ks, deadline_ms, cancel);

    if (rc < 0)
        return rc;
    relay_put_u32(
        cap, (uint32_t)((unsigned long long)spec->max_artifact_bytes >> 32));
    relay_put_u32(cap + 4, (uint32_t)spec->max_artifact_bytes);
    buf_append(&frame, cap, 8);
    if (buf_puts(&frame, spec->path ? spec->path : "") < 0) {
        buf_release(&frame);
        set_status(j, "not_found", "no such file in the session");
        return 0;
    }
    rc = chore(j, RELAY_GET_FILE, frame.data, frame.len, RELAY_FILE, &f,
               deadline_ms);
    buf_release(&frame);
    if (rc < 0)
        return rc;
    if (f.len < 1 || f.payload[0] != 1) {
        set_status(j, "not_found", "no such file in the session");
        return 0;
    }
    tarball_files_add(&j->results, xstrdup("file"),
                      copy_of(f.payload + 1, f.len - 1), f.len - 1);
    return 0;
}
