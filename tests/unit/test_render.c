/*
 * The render pipeline (render.c) end to end against the fake engine, with
 * the fake relay and kernel of fake_kernel.h in every notebook sandbox and
 * the fake exporter beside them: the engine calls and their order, what
 * the service asks of the relay, how each outcome becomes an answer or an
 * error, that the container is removed on every path, and the cache (hits
 * and single flight). test_executor.c checks the execution itself.
 */
#include "../check.h"
#include "fake_kernel.h"
#include "fake_service.h"
#include "nbcanvas/cache.h"
#include "nbcanvas/pool.h"
#include "nbcanvas/render.h"

#include <pthread.h>

#define PATIENCE_MS 5000
#define REQUEST_ID "0f8fad5b-d9cb-469f-a165-70867728950e"
#define PAGE "<html><body>hello</body></html>"

static const char
    *const simple_request = "{\"cells\": [\"out hello\"], \"timeout_s\": 5}";

/* ---- the notebook image: the fake relay, kernel and exporter ---------- */

struct image {
    struct fake_kernel k;
    struct fake_engine *engine;
    bool oom;              /* an OOM kill is recorded as a cell runs */
    bool vanish;           /* the engine answers 404 for it afterwards */
    struct fake_gate gate; /* a cell runs only once it is open */
};

static void on_execute(void *ctx)
{
    struct image *im = ctx;
    char path[160];

    fake_gate_wait(&im->gate);
    if (im->oom)
        fake_engine_set_oom(im->engine, im->k.container, true);
    if (im->vanish) {
        snprintf(path, sizeof(path), "/containers/%s/json", im->k.container);
        fake_engine_fail(im->engine, "GET", path, 100, 404,
                         "No such container");
    }
}

static int executions(struct image *im)
{
    int n;

    pthread_mutex_lock(&im->k.lock);
    n = im->k.count;
    pthread_mutex_unlock(&im->k.lock);
    return n;
}

/* The container the last frame came from. */
static const char *job_container(struct image *im)
{
    return im->k.container;
}

/* Starts a service on the fake whose notebook containers run im. */
static void start(struct fake_service *fs, struct image *im, long pool,
                  bool cache)
{
    struct fake_script script = {.fn = fake_image_fn, .interactive = true};

    memset(im, 0, sizeof(*im));
    CHECK(fake_service_start(fs) == 0);
    fs->exporters = true;
    im->engine = &fs->engine;
    im->k.key = "k3y";
    im->k.engine = &fs->engine;
    im->k.page = PAGE;
    im->k.on_execute = on_execute;
    im->k.on_execute_ctx = im;
    pthread_mutex_init(&im->k.lock, NULL);
    fake_gate_init(&im->gate);
    script.ctx = &im->k;
    fake_engine_script(&fs->engine, FAKE_ATTACH, NULL, &script);
    CHECK(fake_service_open(fs, pool, cache) == 0);
}

static void stop(struct fake_service *fs, struct image *im)
{
    fake_service_stop(fs);
    pthread_mutex_destroy(&im->k.lock);
    fake_gate_destroy(&im->gate);
}

/* Sandboxes made (the exporter's container is not one). */
static size_t sandboxes_made(struct fake_service *fs)
{
    return fake_service_count_body(fs, "POST", "/containers/create",
                                   "NBCANVAS_PRELOAD");
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
        rc = render_run(out, &fs->svc.pipe, &req, REQUEST_ID, NULL);
    else
        memset(out, 0, sizeof(*out));
    request_render_release(&req);
    return rc;
}

static long pool_idle(struct fake_service *fs)
{
    struct pool_stats st;

    pool_stats(fs->svc.pipe.pools[0], &st);
    return st.idle;
}

/* The job's own container is gone, removed the way sandbox_destroy does,
 * and the job's slot is free again. */
static void check_cleaned_up(struct fake_service *fs, struct image *im)
{
    CHECK(job_container(im)[0] != '\0');
    CHECK(fake_service_removed(fs, job_container(im)));
    CHECK(fake_service_slots_free(fs));
    /* held no more (the warm tests check the pool's own separately) */
    if (fs->svc.cfg.pool_size == 0)
        CHECK(fake_service_live(fs) == 0);
}

static bool pool_settled(struct fake_service *fs)
{
    struct pool_stats st;

    pool_stats(fs->svc.pipe.pools[0], &st);
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

TEST(render__cold_render_creates_attaches_starts_and_runs_the_job)
{
    const char *body =
        "{\"cells\": [\"out hello\", {\"cell_type\": \"markdown\","
        " \"source\": \"# Title\"}], \"timeout_s\": 7, \"allow_errors\": true,"
        " \"include_input\": true, \"template\": \"classic\", \"files\":"
        " [{\"name\": \"data/x.csv\", \"content_base64\": \"YSxiCg==\"}]}";
    struct fake_service fs;
    struct image im;
    struct render_result out;
    struct fake_request r;
    json_t *create = NULL;
    char prefix[160];
    long i_create, i_attach, i_start;

    start(&fs, &im, 0, false);
    CHECK(render(&fs, body, &out) == 0);
    CHECK(out.code == 0);
    CHECK(out.answer.body && out.answer.len == strlen(PAGE) &&
          memcmp(out.answer.body, PAGE, out.answer.len) == 0);
    CHECK_STREQ(out.answer.content_type, "text/html; charset=utf-8");
    CHECK(!out.warm && !out.cache_hit);
    CHECK(strstr(out.server_timing, "desc=cold") != NULL);
    /* one code cell ran (the markdown is no code), the file went in, the
     * code was stopped before the page was made */
    CHECK(executions(&im) == 1);
    CHECK(im.k.sent[RELAY_PUT_FILE] == 1);
    CHECK(im.k.last_signal == RELAY_SIG_STOP_ALL);
    CHECK(im.k.exports == 1);

    /* create, then attach (stdin, hijacked), then start: in this order */
    i_create = fake_service_log_index(&fs, "POST", "/containers/create");
    snprintf(prefix, sizeof(prefix), "/containers/%s/attach",
             job_container(&im));
    i_attach = fake_service_log_index(&fs, "POST", prefix);
    snprintf(prefix, sizeof(prefix), "/containers/%s/start",
             job_container(&im));
    i_start = fake_service_log_index(&fs, "POST", prefix);
    CHECK(i_create >= 0 && i_create < i_attach && i_attach < i_start);
    CHECK(sandboxes_made(&fs) == 1);

    /* the create body: the notebook image, the relay, no preload, ours */
    for (size_t i = 0;
         fake_engine_find(&fs.engine, "POST", "/containers/create", i, &r);
         i++) {
        if (strstr(r.body, "NBCANVAS_PRELOAD")) {
            json_decref(create);
            create = json_loads(r.body, 0, NULL);
        }
        fake_request_release(&r);
    }
    CHECK_STREQ(json_string_value(json_object_get(create, "Image")),
                fs.svc.cfg.notebook_image);
    CHECK(fake_service_has_string(json_object_get(create, "Cmd"),
                                  "/opt/nbcanvas/nbcanvas-relay"));
    CHECK(fake_service_has_string(json_object_get(create, "Env"),
                                  "NBCANVAS_PRELOAD=0"));
    CHECK_STREQ(json_string_value(json_object_get(
                    json_object_get(create, "Labels"), "org.nbcanvas.owner")),
                FAKE_SERVICE_OWNER);
    CHECK_STREQ(json_string_value(json_object_get(
                    json_object_get(create, "Labels"), "org.nbcanvas.job")),
                REQUEST_ID);

    /* the attach is a conversation on stdin */
    snprintf(prefix, sizeof(prefix), "/containers/%s/attach",
             job_container(&im));
    CHECK(fake_engine_find(&fs.engine, "POST", prefix, 0, &r));
    CHECK(r.upgrade);
    CHECK(strstr(r.path, "stdin=1") != NULL);
    /* the file's bytes went out in its frame */
    CHECK(r.input_len > 0 && memmem(r.input, r.input_len, "data/x.csv", 10));
    CHECK(memmem(r.input, r.input_len, "a,b\n", 4) != NULL);
    fake_request_release(&r);

    check_cleaned_up(&fs, &im);
    json_decref(create);
    render_result_release(&out);
    stop(&fs, &im);
}

TEST(render__json_format_gives_the_cells)
{
    const char *body = "{\"cells\": [\"out hello\"], \"format\": "
                       "\"json\"}";
    struct fake_service fs;
    struct image im;
    struct render_result out;
    json_t *answer, *cell, *output;

    start(&fs, &im, 0, false);
    CHECK(render(&fs, body, &out) == 0);
    CHECK_STREQ(out.answer.content_type, "application/json");
    answer = out.answer.body
                 ? json_loadb(out.answer.body, out.answer.len, 0, NULL)
                 : NULL;
    CHECK(json_is_object(answer));
    CHECK_STREQ(json_string_value(json_object_get(answer, "status")), "ok");
    CHECK_STREQ(json_string_value(json_object_get(answer, "id")), REQUEST_ID);
    CHECK(json_array_size(json_object_get(answer, "cells")) == 1);
    cell = json_array_get(json_object_get(answer, "cells"), 0);
    CHECK(json_integer_value(json_object_get(cell, "index")) == 0);
    CHECK(json_integer_value(json_object_get(cell, "execution_count")) == 1);
    output = json_array_get(json_object_get(cell, "outputs"), 0);
    CHECK_STREQ(json_string_value(json_object_get(output, "text")), "hello");
    /* the job's phases are passed on */
    CHECK(json_is_integer(
        json_object_get(json_object_get(answer, "timing_ms"), "execute")));
    CHECK(json_is_integer(
        json_object_get(json_object_get(answer, "timing_ms"), "export")));
    check_cleaned_up(&fs, &im);
    json_decref(answer);
    render_result_release(&out);
    stop(&fs, &im);
}

TEST(render__only_an_uploaded_notebook_is_validated_first)
{
    struct fake_service fs;
    struct image im;
    struct render_result out;

    start(&fs, &im, 0, false);
    CHECK(render(&fs, simple_request, &out) == 0);
    CHECK(im.k.validations == 0); /* built from cells: valid as made */
    render_result_release(&out);
    CHECK(render(&fs,
                 "{\"notebook\": {\"nbformat\": 4, \"nbformat_minor\": 5,"
                 " \"metadata\": {}, \"cells\": [{\"id\": \"a\","
                 " \"cell_type\": \"code\", \"metadata\": {},"
                 " \"execution_count\": null, \"outputs\": [],"
                 " \"source\": \"out hi\"}]}}",
                 &out) == 0);
    CHECK(im.k.validations == 1);
    CHECK(im.k.exports == 2);
    render_result_release(&out);
    stop(&fs, &im);
}

/* ---- what the sandbox's code can spoil: its own render only ---------- */

TEST(render__a_message_with_another_key_fails_only_that_render)
{
    struct fake_service fs;
    struct image im;
    struct render_result out;

    start(&fs, &im, 0, false);
    CHECK(render(&fs, "{\"cells\": [\"forged x\\nout y\"]}", &out) ==
          ERR_INTERNAL);
    CHECK(out.answer.body == NULL);
    CHECK(strstr(out.message, "signature") != NULL);
    check_cleaned_up(&fs, &im);
    render_result_release(&out);
    /* the service goes on */
    CHECK(render(&fs, simple_request, &out) == 0);
    render_result_release(&out);
    stop(&fs, &im);
}

TEST(render__bytes_that_are_no_frame_fail_only_that_render)
{
    struct fake_service fs;
    struct image im;
    struct render_result out;

    start(&fs, &im, 0, false);
    CHECK(render(&fs, "{\"cells\": [\"garbage\"]}", &out) == ERR_INTERNAL);
    CHECK(strstr(out.message, "framing") != NULL);
    check_cleaned_up(&fs, &im);
    render_result_release(&out);
    stop(&fs, &im);
}

/* ---- outcomes that are errors --------------------------------------- */

TEST(render__cell_error_names_the_cell_and_keeps_the_outputs)
{
    struct fake_service fs;
    struct image im;
    struct render_result out;
    json_t *cells, *outputs;

    start(&fs, &im, 0, false);
    CHECK(render(&fs, "{\"cells\": [\"out hello\", \"raise ValueError\"]}",
                 &out) == ERR_CELL);
    CHECK(out.answer.body == NULL);
    CHECK(json_integer_value(details_of(&out, "cell")) == 1);
    CHECK_STREQ(json_string_value(details_of(&out, "ename")), "ValueError");
    CHECK_STREQ(json_string_value(details_of(&out, "evalue")), "boom");
    CHECK(json_array_size(details_of(&out, "traceback")) == 1);
    /* the partial results: the outputs of the executed notebook */
    cells = details_of(&out, "cells");
    CHECK(json_array_size(cells) == 2);
    outputs = json_object_get(json_array_get(cells, 0), "outputs");
    CHECK_STREQ(string_at(outputs, 0, "text"), "hello");
    CHECK(strstr(out.message, "ValueError") != NULL);
    CHECK(im.k.exports == 0);
    check_cleaned_up(&fs, &im);
    render_result_release(&out);
    stop(&fs, &im);
}

TEST(render__dead_kernel_with_an_oom_kill_is_memory_limit)
{
    struct fake_service fs;
    struct image im;
    struct render_result out;
    char inspect[160], remove[160];
    long i_inspect, i_delete;

    start(&fs, &im, 0, false);
    im.oom = true;
    CHECK(render(&fs, "{\"cells\": [\"out a\", \"die\"]}", &out) ==
          ERR_MEMORY);
    CHECK(json_integer_value(details_of(&out, "cell")) == 1);
    CHECK(strstr(out.message, "out of memory") != NULL);
    /* the OOM check asked the container before it was removed */
    snprintf(inspect, sizeof(inspect), "/containers/%s/json",
             job_container(&im));
    snprintf(remove, sizeof(remove), "/containers/%s?", job_container(&im));
    i_inspect = fake_service_log_index(&fs, "GET", inspect);
    i_delete = fake_service_log_index(&fs, "DELETE", remove);
    CHECK(i_inspect >= 0 && i_delete >= 0 && i_inspect < i_delete);
    check_cleaned_up(&fs, &im);
    render_result_release(&out);
    stop(&fs, &im);
}

TEST(render__dead_kernel_without_an_oom_kill_is_that_cells_error)
{
    struct fake_service fs;
    struct image im;
    struct render_result out;

    start(&fs, &im, 0, false);
    CHECK(render(&fs, "{\"cells\": [\"die\"]}", &out) == ERR_CELL);
    CHECK(json_integer_value(details_of(&out, "cell")) == 0);
    CHECK_STREQ(json_string_value(details_of(&out, "ename")),
                "DeadKernelError");
    check_cleaned_up(&fs, &im);
    render_result_release(&out);
    stop(&fs, &im);
}

TEST(render__a_sandbox_that_ends_during_a_cell_names_that_cell)
{
    struct fake_service fs;
    struct image im;
    struct render_result out;

    start(&fs, &im, 0, false);
    CHECK(render(&fs, "{\"cells\": [\"out a\", \"exit\"]}", &out) == ERR_CELL);
    CHECK(json_integer_value(details_of(&out, "cell")) == 1);
    CHECK_STREQ(json_string_value(details_of(&out, "ename")),
                "DeadKernelError");
    CHECK(strstr(out.message, "cell 1") != NULL);
    check_cleaned_up(&fs, &im);
    render_result_release(&out);
    stop(&fs, &im);
}

TEST(render__container_removed_from_outside_is_an_engine_error)
{
    struct fake_service fs;
    struct image im;
    struct render_result out;

    start(&fs, &im, 0, false);
    im.vanish = true;
    CHECK(render(&fs, "{\"cells\": [\"exit\"]}", &out) == ERR_ENGINE);
    CHECK(out.details == NULL || details_of(&out, "ename") == NULL);
    CHECK(strstr(out.message, "removed from outside") != NULL);
    check_cleaned_up(&fs, &im); /* the DELETE is still sent */
    render_result_release(&out);
    stop(&fs, &im);
}

/* ---- warm sandboxes ------------------------------------------------- */

static bool is_preloaded(struct fake_service *fs, const char *id)
{
    json_t *body = fake_engine_container_body(&fs->engine, id);
    bool yes = fake_service_has_string(json_object_get(body, "Env"),
                                       "NBCANVAS_PRELOAD=1");

    json_decref(body);
    return yes;
}

TEST(render__takes_a_warm_sandbox_from_the_pool)
{
    struct fake_service fs;
    struct image im;
    struct render_result out;
    char warm[65] = "", prefix[160];

    start(&fs, &im, 1, false);
    WAIT_UNTIL(pool_idle(&fs) == 1, PATIENCE_MS);
    CHECK(pool_idle(&fs) == 1);
    for (size_t i = 0; i < 8 && !warm[0]; i++) {
        struct fake_request r;

        if (!fake_engine_find(&fs.engine, "POST", "/containers/", i, &r))
            break;
        if (strstr(r.path, "/start")) {
            const char *p = r.path + strlen("/containers/");

            snprintf(warm, sizeof(warm), "%.*s", (int)(strchr(p, '/') - p), p);
            if (!is_preloaded(&fs, warm))
                warm[0] = '\0';
        }
        fake_request_release(&r);
    }
    CHECK(warm[0]);
    CHECK(render(&fs, simple_request, &out) == 0);
    CHECK(out.warm);
    CHECK(strstr(out.server_timing, "desc=warm") != NULL);
    /* the job ran in the pool's container, which was not started again */
    CHECK_STREQ(job_container(&im), warm);
    snprintf(prefix, sizeof(prefix), "/containers/%s/start", warm);
    CHECK(fake_engine_count(&fs.engine, "POST", prefix) == 1);
    /* its CPU weight raised from the pool's low one once it was ready */
    snprintf(prefix, sizeof(prefix), "/containers/%s/update", warm);
    CHECK(fake_engine_count(&fs.engine, "POST", prefix) == 1);
    CHECK(fake_service_count_body(&fs, "POST", "/containers/create",
                                  "NBCANVAS_PRELOAD=0") == 0);
    check_cleaned_up(&fs, &im);
    check_pool_refilled(&fs);
    render_result_release(&out);
    stop(&fs, &im);
}

TEST(render__a_warm_sandbox_that_died_is_replaced_by_a_cold_one)
{
    struct fake_service fs;
    struct image im;
    struct render_result out;
    char dead[65] = "";

    start(&fs, &im, 1, false);
    WAIT_UNTIL(pool_idle(&fs) == 1, PATIENCE_MS);
    CHECK(pool_idle(&fs) == 1);
    for (size_t i = 0; i < 8 && !dead[0]; i++) {
        struct fake_request r;

        if (!fake_engine_find(&fs.engine, "POST", "/containers/", i, &r))
            break;
        if (strstr(r.path, "/start")) {
            const char *p = r.path + strlen("/containers/");

            snprintf(dead, sizeof(dead), "%.*s", (int)(strchr(p, '/') - p), p);
            if (!is_preloaded(&fs, dead))
                dead[0] = '\0';
        }
        fake_request_release(&r);
    }
    fake_engine_set_running(&fs.engine, dead, false);
    CHECK(render(&fs, simple_request, &out) == 0);
    CHECK(!out.warm);
    CHECK(strcmp(job_container(&im), dead) != 0);
    CHECK(fake_service_count_body(&fs, "POST", "/containers/create",
                                  "NBCANVAS_PRELOAD=0") == 1);
    CHECK(fake_service_removed(&fs, dead));
    check_cleaned_up(&fs, &im);
    check_pool_refilled(&fs);
    render_result_release(&out);
    stop(&fs, &im);
}

/* ---- the cache ------------------------------------------------------ */

TEST(render__an_identical_render_is_answered_from_the_cache)
{
    struct fake_service fs;
    struct image im;
    struct render_result first, second;
    struct cache_stats st;

    start(&fs, &im, 0, true);
    CHECK(render(&fs, simple_request, &first) == 0);
    CHECK(!first.cache_hit);
    CHECK(render(&fs, simple_request, &second) == 0);
    CHECK(second.cache_hit);
    CHECK(second.answer.len == first.answer.len && second.answer.body &&
          memcmp(second.answer.body, first.answer.body, first.answer.len) ==
              0);
    CHECK_STREQ(second.answer.content_type, first.answer.content_type);
    CHECK(sandboxes_made(&fs) == 1);
    CHECK(executions(&im) == 1);
    cache_stats(fs.svc.pipe.cache, &st);
    CHECK(st.hits == 1 && st.entries == 1);
    render_result_release(&first);
    render_result_release(&second);
    stop(&fs, &im);
}

TEST(render__failures_are_not_cached)
{
    struct fake_service fs;
    struct image im;
    struct render_result out;

    start(&fs, &im, 0, true);
    CHECK(render(&fs, "{\"cells\": [\"raise E\"]}", &out) == ERR_CELL);
    render_result_release(&out);
    CHECK(render(&fs, "{\"cells\": [\"raise E\"]}", &out) == ERR_CELL);
    CHECK(!out.cache_hit);
    CHECK(sandboxes_made(&fs) == 2);
    render_result_release(&out);
    stop(&fs, &im);
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
    struct image im;
    struct render_call a, b;

    start(&fs, &im, 0, true);
    fake_gate_close(&im.gate); /* the first cell waits in its sandbox */
    a = (struct render_call){.fs = &fs};
    b = (struct render_call){.fs = &fs};
    pthread_create(&a.thread, NULL, render_thread, &a);
    WAIT_UNTIL(im.k.sent[RELAY_SEND] >= 2, PATIENCE_MS);
    CHECK(sandboxes_made(&fs) == 1);
    pthread_create(&b.thread, NULL, render_thread, &b);
    /* with a free job slot, a second run would create its own sandbox
     * now; single flight makes it wait for the first one's answer */
    poll(NULL, 0, 500);
    CHECK(sandboxes_made(&fs) == 1);
    fake_gate_open(&im.gate);
    pthread_join(a.thread, NULL);
    pthread_join(b.thread, NULL);
    CHECK(a.rc == 0 && b.rc == 0);
    CHECK(!a.out.cache_hit && b.out.cache_hit);
    CHECK(b.out.answer.body && b.out.answer.len == strlen(PAGE) &&
          memcmp(b.out.answer.body, PAGE, b.out.answer.len) == 0);
    CHECK(sandboxes_made(&fs) == 1);
    CHECK(executions(&im) == 1);
    render_result_release(&a.out);
    render_result_release(&b.out);
    stop(&fs, &im);
}
