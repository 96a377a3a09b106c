/*
 * The render pipeline (render.c) end to end against the fake engine, with
 * a fake driver in the container: it reads the job the service writes on
 * stdin ("nbcanvas:job <n> <nonce>\n" and an n-byte tar) and answers as
 * the real one does ("nbcanvas:done <nonce> <m>\n" and an m-byte tar), or
 * misbehaves on cue. test_driver.c checks the protocol's parsers on
 * recordings of the real driver; this file checks what render_run does
 * with them: the engine calls and their order, the job it sends, how each
 * status becomes an answer or an error, that the container is removed on
 * every path, and the cache (hits and single flight).
 */
#include "../check.h"
#include "fake_service.h"
#include "nbcanvas/cache.h"
#include "nbcanvas/driver.h"
#include "nbcanvas/pool.h"
#include "nbcanvas/render.h"

#include <pthread.h>

#define PATIENCE_MS 5000
#define REQUEST_ID "0f8fad5b-d9cb-469f-a165-70867728950e"
#define PAGE "<html><body>hello</body></html>"
#define FORGED_PAGE "<html><body>forged</body></html>"

static const char *const status_ok =
    "{\"status\": \"ok\", \"timing_ms\": {\"kernel\": 5, \"execute\": 11,"
    " \"export\": 13}}";

/* The notebook as the driver executed it: one code cell that printed. */
static const char *const executed =
    "{\"nbformat\": 4, \"nbformat_minor\": 5, \"metadata\": {},"
    " \"cells\": [{\"id\": \"c0\", \"cell_type\": \"code\", \"metadata\": {},"
    " \"execution_count\": 1, \"source\": \"print('hello')\","
    " \"outputs\": [{\"output_type\": \"stream\", \"name\": \"stdout\","
    " \"text\": \"hello\\n\"}]}]}";

static const char *const simple_request =
    "{\"cells\": [\"print('hello')\"], \"timeout_s\": 5}";

/* ---- the fake driver ------------------------------------------------ */

enum answer {
    ANSWER_DONE,             /* the done line and the results */
    ANSWER_FORGED_THEN_DONE, /* done lines without the nonce first */
    ANSWER_FORGED_ONLY,      /* only those, then the stream ends */
    ANSWER_NOTHING           /* no done line: the stream just ends */
};

struct driver {
    struct fake_engine *engine;
    /* How it answers (set before the render). */
    enum answer answer;
    const char *status;    /* status.json */
    const char *notebook;  /* notebook.ipynb, NULL: none */
    const char *page;      /* index.html, NULL: none */
    const char *errout;    /* written on stderr first, NULL: nothing */
    bool oom;              /* the engine records an OOM kill first */
    bool vanish;           /* the engine answers 404 for it afterwards */
    struct fake_gate gate; /* answers only once it is open */
    /* What it saw, under lock. */
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int jobs;           /* jobs read in full */
    char container[65]; /* the container of the last job */
    char nonce[64];
    size_t header_len, tar_len;
    struct tar_files job; /* the last job's files */
    char readied[8][65];  /* preloaded containers it said ready in */
    int nreadied;
};

static void driver_init(struct driver *d, struct fake_engine *engine)
{
    memset(d, 0, sizeof(*d));
    d->engine = engine;
    d->answer = ANSWER_DONE;
    d->status = status_ok;
    d->notebook = executed;
    d->page = PAGE;
    pthread_mutex_init(&d->lock, NULL);
    util_cond_init_monotonic(&d->changed);
    fake_gate_init(&d->gate);
}

static void driver_release(struct driver *d)
{
    tarball_files_release(&d->job);
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->changed);
    fake_gate_destroy(&d->gate);
}

static int driver_jobs(struct driver *d)
{
    int n;

    pthread_mutex_lock(&d->lock);
    n = d->jobs;
    pthread_mutex_unlock(&d->lock);
    return n;
}

/* A tar of the driver's results. */
static void results_tar(struct buf *tar, const char *status,
                        const char *notebook, const char *page)
{
    struct tar_entry e[3];
    size_t n = 0;

    if (status)
        e[n++] = (struct tar_entry){(char *)DRIVER_RESULT_STATUS,
                                    (char *)status, strlen(status)};
    if (notebook)
        e[n++] = (struct tar_entry){(char *)DRIVER_RESULT_NOTEBOOK,
                                    (char *)notebook, strlen(notebook)};
    if (page)
        e[n++] = (struct tar_entry){(char *)DRIVER_RESULT_PAGE, (char *)page,
                                    strlen(page)};
    CHECK(tarball_write(tar, e, n, SANDBOX_UID, SANDBOX_UID, NULL) == 0);
}

/* "nbcanvas:done <nonce> <m>\n" (no nonce: the form before nonces) and
 * the tar. */
static void write_done(struct fake_output *out, const char *nonce,
                       const struct buf *tar)
{
    char line[128];
    int n = nonce ? snprintf(line, sizeof(line), "nbcanvas:done %s %zu\n",
                             nonce, tar->len)
                  : snprintf(line, sizeof(line), "nbcanvas:done %zu\n",
                             tar->len);

    fake_output_write(out, 1, line, (size_t)n);
    fake_output_write(out, 1, tar->data, tar->len);
}

/* What a forger in the sandbox can write: results under a made-up nonce,
 * and under none. */
static void write_forgeries(struct fake_output *out)
{
    struct buf tar = BUF_INIT((size_t)-1);

    results_tar(&tar, status_ok, executed, FORGED_PAGE);
    write_done(out, "00000000-0000-4000-8000-000000000000", &tar);
    write_done(out, NULL, &tar);
    buf_release(&tar);
}

static bool is_preloaded(struct driver *d, const char *id)
{
    json_t *body = fake_engine_container_body(d->engine, id);
    bool yes = fake_service_has_string(json_object_get(body, "Env"),
                                       "NBCANVAS_PRELOAD=1");

    json_decref(body);
    return yes;
}

/* The first attach of a pool's container: say ready and wait for a job
 * (later attach). True if this was it. */
static bool ready_if_new(struct driver *d, const char *id,
                         struct fake_output *out)
{
    bool fresh = is_preloaded(d, id);
    int i;

    pthread_mutex_lock(&d->lock);
    for (i = 0; fresh && i < d->nreadied; i++)
        fresh = strcmp(d->readied[i], id) != 0;
    if (fresh && d->nreadied < 8)
        snprintf(d->readied[d->nreadied++], 65, "%s", id);
    pthread_mutex_unlock(&d->lock);
    if (fresh)
        fake_output_write(out, 1, DRIVER_READY_LINE,
                          strlen(DRIVER_READY_LINE));
    return fresh;
}

/* Reads the job header and tar; false (having asked the fake for more
 * input) until they are all there. */
static bool read_job(struct driver *d, const struct fake_stream_info *info,
                     struct fake_output *out)
{
    const char *nl = memchr(info->input, '\n', info->input_len);
    unsigned long long n = 0;
    char nonce[64] = "";
    size_t header;

    if (!nl) {
        fake_output_need_input(out, info->input_len + 1);
        return false;
    }
    header = (size_t)(nl + 1 - info->input);
    CHECK(sscanf(info->input, "nbcanvas:job %llu %63s", &n, nonce) == 2);
    if (info->input_len < header + n) {
        fake_output_need_input(out, header + n);
        return false;
    }
    pthread_mutex_lock(&d->lock);
    tarball_files_release(&d->job);
    CHECK(tarball_read(&d->job, info->input + header, (size_t)n, NULL, 100,
                       64 << 20, NULL) == 0);
    snprintf(d->container, sizeof(d->container), "%s", info->container_id);
    snprintf(d->nonce, sizeof(d->nonce), "%s", nonce);
    d->header_len = header;
    d->tar_len = (size_t)n;
    d->jobs++;
    pthread_cond_broadcast(&d->changed);
    pthread_mutex_unlock(&d->lock);
    return true;
}

/* The attach script: the driver's side of one job. */
static void driver_fn(void *ctx, const struct fake_stream_info *info,
                      struct fake_output *out)
{
    struct driver *d = ctx;
    struct buf tar = BUF_INIT((size_t)-1);
    char path[160];

    if (ready_if_new(d, info->container_id, out) || !read_job(d, info, out))
        return;
    fake_gate_wait(&d->gate);
    if (d->oom)
        fake_engine_set_oom(d->engine, info->container_id, true);
    if (d->vanish) {
        snprintf(path, sizeof(path), "/containers/%s/json",
                 info->container_id);
        fake_engine_fail(d->engine, "GET", path, 100, 404,
                         "No such container");
    }
    if (d->errout)
        fake_output_write(out, 2, d->errout, strlen(d->errout));
    if (d->answer == ANSWER_FORGED_THEN_DONE ||
        d->answer == ANSWER_FORGED_ONLY)
        write_forgeries(out);
    if (d->answer == ANSWER_DONE || d->answer == ANSWER_FORGED_THEN_DONE) {
        results_tar(&tar, d->status, d->notebook, d->page);
        write_done(out, d->nonce, &tar);
    }
    buf_release(&tar);
}

/* Starts a service on the fake whose containers run d. hang: the
 * container keeps running after it answered (a pool's must, to be used
 * later); otherwise it exits, as the real driver does after a job. */
static void start(struct fake_service *fs, struct driver *d, long pool,
                  bool cache, bool hang)
{
    struct fake_script script = {.fn = driver_fn, .hang = hang};

    CHECK(fake_service_start(fs) == 0);
    driver_init(d, &fs->engine);
    script.ctx = d;
    fake_engine_script(&fs->engine, FAKE_ATTACH, NULL, &script);
    CHECK(fake_service_open(fs, pool, cache) == 0);
}

static void stop(struct fake_service *fs, struct driver *d)
{
    fake_service_stop(fs);
    driver_release(d);
}

static int render(struct fake_service *fs, const char *body,
                  struct render_result *out)
{
    struct render_request req;
    struct err err = ERR_INIT;
    int rc = request_parse_render(&req, body, strlen(body), &fs->svc.cfg,
                                  &err);

    CHECK(rc == 0);
    if (rc == 0)
        rc = render_run(out, &fs->svc, &req, REQUEST_ID, NULL);
    else
        memset(out, 0, sizeof(*out));
    request_render_release(&req);
    return rc;
}

static long pool_idle(struct fake_service *fs)
{
    struct pool_stats st;

    pool_stats(fs->svc.pool, &st);
    return st.idle;
}

/* The job's own container is gone, removed the way sandbox_destroy does,
 * and the job's slot is free again. */
static void check_cleaned_up(struct fake_service *fs, struct driver *d)
{
    CHECK(d->container[0] != '\0');
    CHECK(fake_service_removed(fs, d->container));
    CHECK(fake_service_slots_free(fs));
    /* held no more (the warm tests check the pool's own separately) */
    if (fs->svc.cfg.pool_size == 0)
        CHECK(fake_service_live(fs) == 0);
}

static bool pool_settled(struct fake_service *fs)
{
    struct pool_stats st;

    pool_stats(fs->svc.pool, &st);
    return st.idle == 1 && st.starting == 0;
}

/* The pool is full again and idle: its container is the one live. */
static void check_pool_refilled(struct fake_service *fs)
{
    WAIT_UNTIL(pool_settled(fs), PATIENCE_MS);
    CHECK(pool_settled(fs));
    CHECK(fake_service_live(fs) == 1);
}

static json_t *details_of(const struct render_result *r, const char *key)
{
    return json_object_get(r->details, key);
}

/* The string key of the i-th object of array. */
static const char *string_at(json_t *array, size_t i, const char *key)
{
    return json_string_value(json_object_get(json_array_get(array, i), key));
}

/* ---- a cold render -------------------------------------------------- */

TEST(render__cold_render_creates_attaches_starts_and_sends_the_job)
{
    const char *body =
        "{\"cells\": [\"print('hello')\", {\"cell_type\": \"markdown\","
        " \"source\": \"# Title\"}], \"timeout_s\": 7, \"allow_errors\": true,"
        " \"include_input\": true, \"template\": \"classic\", \"files\":"
        " [{\"name\": \"data/x.csv\", \"content_base64\": \"YSxiCg==\"}]}";
    struct fake_service fs;
    struct driver d;
    struct render_result out;
    struct fake_request r;
    const struct tar_entry *e;
    json_t *create = NULL, *spec = NULL, *nb = NULL;
    char prefix[160];
    long i_create, i_attach, i_start;

    start(&fs, &d, 0, false, false);
    CHECK(render(&fs, body, &out) == 0);
    CHECK(out.code == 0);
    CHECK(out.body && out.body_len == strlen(PAGE) &&
          memcmp(out.body, PAGE, out.body_len) == 0);
    CHECK_STREQ(out.content_type, "text/html; charset=utf-8");
    CHECK(!out.warm && !out.cache_hit);
    CHECK(strstr(out.server_timing, "desc=cold") != NULL);
    CHECK(driver_jobs(&d) == 1);

    /* create, then attach (stdin, hijacked), then start: in this order */
    i_create = fake_service_log_index(&fs, "POST", "/containers/create");
    snprintf(prefix, sizeof(prefix), "/containers/%s/attach", d.container);
    i_attach = fake_service_log_index(&fs, "POST", prefix);
    snprintf(prefix, sizeof(prefix), "/containers/%s/start", d.container);
    i_start = fake_service_log_index(&fs, "POST", prefix);
    CHECK(i_create >= 0 && i_create < i_attach && i_attach < i_start);
    CHECK(fake_engine_count(&fs.engine, "POST", "/containers/create") == 1);

    /* the create body: the notebook image, the driver, no preload, ours */
    CHECK(fake_engine_find(&fs.engine, "POST", "/containers/create", 0, &r));
    create = json_loads(r.body, 0, NULL);
    fake_request_release(&r);
    CHECK_STREQ(json_string_value(json_object_get(create, "Image")),
                fs.svc.cfg.notebook_image);
    CHECK(fake_service_has_string(json_object_get(create, "Cmd"),
                                  "/opt/nbcanvas/nbcanvas_driver.py"));
    CHECK(fake_service_has_string(json_object_get(create, "Env"),
                                  "NBCANVAS_PRELOAD=0"));
    CHECK_STREQ(json_string_value(json_object_get(
                    json_object_get(create, "Labels"), "org.nbcanvas.owner")),
                FAKE_SERVICE_OWNER);
    CHECK_STREQ(json_string_value(json_object_get(
                    json_object_get(create, "Labels"), "org.nbcanvas.job")),
                REQUEST_ID);

    /* the attach carried exactly the header and the tar on stdin */
    snprintf(prefix, sizeof(prefix), "/containers/%s/attach", d.container);
    CHECK(fake_engine_find(&fs.engine, "POST", prefix, 0, &r));
    CHECK(r.upgrade);
    CHECK(strstr(r.path, "stdin=1") != NULL);
    CHECK(r.input_len == d.header_len + d.tar_len);
    CHECK(util_is_uuid(d.nonce));
    CHECK(strncmp(r.input, "nbcanvas:job ", 13) == 0);
    fake_request_release(&r);

    /* the job: the notebook, job.json and the request's file */
    e = tarball_find(&d.job, DRIVER_JOB_NOTEBOOK);
    CHECK(e != NULL);
    nb = e ? json_loadb(e->data, e->len, 0, NULL) : NULL;
    CHECK(json_array_size(json_object_get(nb, "cells")) == 2);
    CHECK_STREQ(string_at(json_object_get(nb, "cells"), 0, "source"),
                "print('hello')");
    e = tarball_find(&d.job, DRIVER_JOB_SPEC);
    CHECK(e != NULL);
    spec = e ? json_loadb(e->data, e->len, 0, NULL) : NULL;
    CHECK_STREQ(json_string_value(json_object_get(spec, "kernel")), "python3");
    CHECK(json_integer_value(json_object_get(spec, "timeout_s")) == 7);
    CHECK(json_is_true(json_object_get(spec, "allow_errors")));
    CHECK(json_is_true(json_object_get(spec, "include_input")));
    CHECK_STREQ(json_string_value(json_object_get(spec, "template")),
                "classic");
    CHECK(json_is_false(json_object_get(spec, "artifacts")));
    CHECK(json_integer_value(json_object_get(spec, "max_html_bytes")) ==
          fs.svc.cfg.max_html_bytes);
    /* the results buffer less 1 MiB of headroom for headers and status */
    CHECK(json_integer_value(json_object_get(spec, "max_result_bytes")) ==
          fs.svc.cfg.max_result_bytes - (1 << 20));
    e = tarball_find(&d.job, "data/x.csv");
    CHECK(e && e->len == 4 && memcmp(e->data, "a,b\n", 4) == 0);

    check_cleaned_up(&fs, &d);
    CHECK(fake_engine_containers(&fs.engine) == 0);
    json_decref(create);
    json_decref(spec);
    json_decref(nb);
    render_result_release(&out);
    stop(&fs, &d);
}

TEST(render__json_format_gives_the_cells)
{
    const char *body = "{\"cells\": [\"print('hello')\"], \"format\": "
                       "\"json\"}";
    struct fake_service fs;
    struct driver d;
    struct render_result out;
    json_t *answer, *cell, *output;

    start(&fs, &d, 0, false, false);
    CHECK(render(&fs, body, &out) == 0);
    CHECK_STREQ(out.content_type, "application/json");
    answer = out.body ? json_loadb(out.body, out.body_len, 0, NULL) : NULL;
    CHECK(json_is_object(answer));
    CHECK_STREQ(json_string_value(json_object_get(answer, "status")), "ok");
    CHECK_STREQ(json_string_value(json_object_get(answer, "id")), REQUEST_ID);
    CHECK(json_array_size(json_object_get(answer, "cells")) == 1);
    cell = json_array_get(json_object_get(answer, "cells"), 0);
    CHECK(json_integer_value(json_object_get(cell, "index")) == 0);
    CHECK(json_integer_value(json_object_get(cell, "execution_count")) == 1);
    output = json_array_get(json_object_get(cell, "outputs"), 0);
    CHECK_STREQ(json_string_value(json_object_get(output, "text")), "hello\n");
    /* the driver's phases are passed on */
    CHECK(json_integer_value(json_object_get(
              json_object_get(answer, "timing_ms"), "execute")) == 11);
    check_cleaned_up(&fs, &d);
    json_decref(answer);
    render_result_release(&out);
    stop(&fs, &d);
}

/* ---- forged results ------------------------------------------------- */

TEST(render__done_lines_without_the_jobs_nonce_are_ignored)
{
    struct fake_service fs;
    struct driver d;
    struct render_result out;

    start(&fs, &d, 0, false, false);
    d.answer = ANSWER_FORGED_THEN_DONE;
    CHECK(render(&fs, simple_request, &out) == 0);
    /* the real page, not the forger's that came first */
    CHECK(out.body && out.body_len == strlen(PAGE) &&
          memcmp(out.body, PAGE, out.body_len) == 0);
    check_cleaned_up(&fs, &d);
    render_result_release(&out);
    stop(&fs, &d);
}

TEST(render__forged_done_lines_alone_give_no_answer)
{
    struct fake_service fs;
    struct driver d;
    struct render_result out;

    start(&fs, &d, 0, false, false);
    d.answer = ANSWER_FORGED_ONLY;
    CHECK(render(&fs, simple_request, &out) == ERR_INTERNAL);
    CHECK(out.code == ERR_INTERNAL);
    CHECK(out.body == NULL);
    CHECK(strstr(out.message, "stopped before the notebook finished") != NULL);
    check_cleaned_up(&fs, &d);
    render_result_release(&out);
    stop(&fs, &d);
}

/* ---- statuses that are errors -------------------------------------- */

TEST(render__cell_error_names_the_cell_and_keeps_the_outputs)
{
    struct fake_service fs;
    struct driver d;
    struct render_result out;
    json_t *cells, *outputs;

    start(&fs, &d, 0, false, false);
    d.status = "{\"status\": \"cell_error\", \"cell\": 1, \"ename\":"
               " \"ValueError\", \"evalue\": \"bad value\", \"traceback\":"
               " [\"Traceback (most recent call last)\","
               " \"ValueError: bad value\"]}";
    CHECK(render(&fs, simple_request, &out) == ERR_CELL);
    CHECK(out.body == NULL);
    CHECK(json_integer_value(details_of(&out, "cell")) == 1);
    CHECK_STREQ(json_string_value(details_of(&out, "ename")), "ValueError");
    CHECK_STREQ(json_string_value(details_of(&out, "evalue")), "bad value");
    CHECK(json_array_size(details_of(&out, "traceback")) == 2);
    /* the partial results: the outputs of the executed notebook */
    cells = details_of(&out, "cells");
    CHECK(json_array_size(cells) == 1);
    outputs = json_object_get(json_array_get(cells, 0), "outputs");
    CHECK_STREQ(string_at(outputs, 0, "text"), "hello\n");
    CHECK(strstr(out.message, "ValueError") != NULL);
    check_cleaned_up(&fs, &d);
    render_result_release(&out);
    stop(&fs, &d);
}

TEST(render__dead_kernel_with_an_oom_kill_is_memory_limit)
{
    struct fake_service fs;
    struct driver d;
    struct render_result out;
    char inspect[160], remove[160];
    long i_inspect, i_delete;

    start(&fs, &d, 0, false, false);
    d.status = "{\"status\": \"kernel_died\", \"cell\": 1, \"message\":"
               " \"the kernel died\"}";
    d.oom = true;
    CHECK(render(&fs, simple_request, &out) == ERR_MEMORY);
    CHECK(json_integer_value(details_of(&out, "cell")) == 1);
    CHECK(strstr(out.message, "out of memory") != NULL);
    /* the OOM check asked the container before it was removed */
    snprintf(inspect, sizeof(inspect), "/containers/%s/json", d.container);
    snprintf(remove, sizeof(remove), "/containers/%s?", d.container);
    i_inspect = fake_service_log_index(&fs, "GET", inspect);
    i_delete = fake_service_log_index(&fs, "DELETE", remove);
    CHECK(i_inspect >= 0 && i_delete >= 0 && i_inspect < i_delete);
    check_cleaned_up(&fs, &d);
    render_result_release(&out);
    stop(&fs, &d);
}

TEST(render__dead_kernel_without_an_oom_kill_is_that_cells_error)
{
    struct fake_service fs;
    struct driver d;
    struct render_result out;

    start(&fs, &d, 0, false, false);
    d.status = "{\"status\": \"kernel_died\", \"cell\": 0, \"message\":"
               " \"the kernel died\"}";
    CHECK(render(&fs, simple_request, &out) == ERR_CELL);
    CHECK(json_integer_value(details_of(&out, "cell")) == 0);
    CHECK_STREQ(json_string_value(details_of(&out, "ename")),
                "DeadKernelError");
    check_cleaned_up(&fs, &d);
    render_result_release(&out);
    stop(&fs, &d);
}

TEST(render__runner_killed_during_a_cell_names_that_cell)
{
    struct fake_service fs;
    struct driver d;
    struct render_result out;

    start(&fs, &d, 0, false, false);
    d.answer = ANSWER_NOTHING;
    d.errout = "nbcanvas:cell 0\nsome noise\nnbcanvas:cell 1\nKilled\n";
    CHECK(render(&fs, simple_request, &out) == ERR_CELL);
    CHECK(json_integer_value(details_of(&out, "cell")) == 1);
    CHECK_STREQ(json_string_value(details_of(&out, "ename")),
                "DeadKernelError");
    CHECK(strstr(out.message, "cell 1") != NULL);
    check_cleaned_up(&fs, &d);
    render_result_release(&out);
    stop(&fs, &d);
}

TEST(render__container_gone_after_the_stream_is_an_engine_error)
{
    struct fake_service fs;
    struct driver d;
    struct render_result out;

    start(&fs, &d, 0, false, false);
    d.answer = ANSWER_NOTHING;
    d.errout = "nbcanvas:cell 2\n"; /* not the cell's doing all the same */
    d.vanish = true;
    CHECK(render(&fs, simple_request, &out) == ERR_ENGINE);
    CHECK(out.details == NULL || details_of(&out, "ename") == NULL);
    CHECK(strstr(out.message, "removed from outside") != NULL);
    check_cleaned_up(&fs, &d); /* the DELETE is still sent */
    render_result_release(&out);
    stop(&fs, &d);
}

/* ---- warm sandboxes ------------------------------------------------- */

TEST(render__takes_a_warm_sandbox_from_the_pool)
{
    struct fake_service fs;
    struct driver d;
    struct render_result out;
    char warm_id[65], prefix[160];

    start(&fs, &d, 1, false, true);
    WAIT_UNTIL(pool_idle(&fs) == 1, PATIENCE_MS);
    CHECK(pool_idle(&fs) == 1);
    snprintf(warm_id, sizeof(warm_id), "%s", d.readied[0]);
    CHECK(render(&fs, simple_request, &out) == 0);
    CHECK(out.warm);
    CHECK(strstr(out.server_timing, "desc=warm") != NULL);
    /* the job ran in the pool's container, which was not started again */
    CHECK_STREQ(d.container, warm_id);
    snprintf(prefix, sizeof(prefix), "/containers/%s/start", warm_id);
    CHECK(fake_engine_count(&fs.engine, "POST", prefix) == 1);
    CHECK(fake_service_count_body(&fs, "POST", "/containers/create",
                                  "NBCANVAS_PRELOAD=0") == 0);
    check_cleaned_up(&fs, &d);
    check_pool_refilled(&fs);
    render_result_release(&out);
    stop(&fs, &d);
}

TEST(render__a_warm_sandbox_that_died_is_replaced_by_a_cold_one)
{
    struct fake_service fs;
    struct driver d;
    struct render_result out;
    char dead_id[65];

    start(&fs, &d, 1, false, true);
    WAIT_UNTIL(pool_idle(&fs) == 1, PATIENCE_MS);
    CHECK(pool_idle(&fs) == 1);
    snprintf(dead_id, sizeof(dead_id), "%s", d.readied[0]);
    fake_engine_set_running(&fs.engine, dead_id, false);
    CHECK(render(&fs, simple_request, &out) == 0);
    CHECK(!out.warm);
    CHECK(strcmp(d.container, dead_id) != 0);
    CHECK(fake_service_count_body(&fs, "POST", "/containers/create",
                                  "NBCANVAS_PRELOAD=0") == 1);
    CHECK(fake_service_removed(&fs, dead_id));
    check_cleaned_up(&fs, &d);
    check_pool_refilled(&fs);
    render_result_release(&out);
    stop(&fs, &d);
}

/* ---- the cache ------------------------------------------------------ */

TEST(render__an_identical_render_is_answered_from_the_cache)
{
    struct fake_service fs;
    struct driver d;
    struct render_result first, second;
    struct cache_stats st;

    start(&fs, &d, 0, true, false);
    CHECK(render(&fs, simple_request, &first) == 0);
    CHECK(!first.cache_hit);
    CHECK(render(&fs, simple_request, &second) == 0);
    CHECK(second.cache_hit);
    CHECK(second.body_len == first.body_len && second.body &&
          memcmp(second.body, first.body, first.body_len) == 0);
    CHECK_STREQ(second.content_type, first.content_type);
    CHECK(fake_engine_count(&fs.engine, "POST", "/containers/create") == 1);
    CHECK(driver_jobs(&d) == 1);
    cache_stats(fs.svc.cache, &st);
    CHECK(st.hits == 1 && st.entries == 1);
    render_result_release(&first);
    render_result_release(&second);
    stop(&fs, &d);
}

TEST(render__failures_are_not_cached)
{
    struct fake_service fs;
    struct driver d;
    struct render_result out;

    start(&fs, &d, 0, true, false);
    d.status = "{\"status\": \"cell_error\", \"cell\": 0, \"ename\": \"E\","
               " \"evalue\": \"v\"}";
    CHECK(render(&fs, simple_request, &out) == ERR_CELL);
    render_result_release(&out);
    d.status = status_ok;
    CHECK(render(&fs, simple_request, &out) == 0);
    CHECK(!out.cache_hit);
    CHECK(fake_engine_count(&fs.engine, "POST", "/containers/create") == 2);
    render_result_release(&out);
    stop(&fs, &d);
}

struct render_call {
    struct fake_service *fs;
    struct render_result out;
    int rc;
    pthread_t thread;
};

static void *render_thread(void *arg)
{
    struct render_call *c = arg;

    c->rc = render(c->fs, simple_request, &c->out);
    return NULL;
}

TEST(render__identical_renders_at_once_run_once)
{
    struct fake_service fs;
    struct driver d;
    struct render_call a, b;

    start(&fs, &d, 0, true, false);
    fake_gate_close(&d.gate); /* the first job waits in its sandbox */
    a = (struct render_call){.fs = &fs};
    b = (struct render_call){.fs = &fs};
    pthread_create(&a.thread, NULL, render_thread, &a);
    WAIT_UNTIL(driver_jobs(&d) == 1, PATIENCE_MS);
    CHECK(driver_jobs(&d) == 1);
    pthread_create(&b.thread, NULL, render_thread, &b);
    /* with a free job slot, a second run would create its own sandbox
     * now; single flight makes it wait for the first one's answer */
    CHECK(fake_engine_wait(&fs.engine, "POST", "/containers/create", 2, 500) ==
          1);
    fake_gate_open(&d.gate);
    pthread_join(a.thread, NULL);
    pthread_join(b.thread, NULL);
    CHECK(a.rc == 0 && b.rc == 0);
    CHECK(!a.out.cache_hit && b.out.cache_hit);
    CHECK(b.out.body && b.out.body_len == strlen(PAGE) &&
          memcmp(b.out.body, PAGE, b.out.body_len) == 0);
    CHECK(fake_engine_count(&fs.engine, "POST", "/containers/create") == 1);
    CHECK(driver_jobs(&d) == 1);
    render_result_release(&a.out);
    render_result_release(&b.out);
    stop(&fs, &d);
}
