/*
 * The snippet runner (runner.c) against the fake engine. The container's
 * main process is faked by an attach script that reads exactly as many
 * stdin bytes as its command's "head -c <n>" says and then prints the
 * ready line; the compile and run steps are faked by an exec script that
 * answers each command with the output and exit code a test chose. The
 * tests check the job that reaches the container, the order of the steps,
 * how exit codes and output caps become a status, that a bad language
 * never reaches the engine, and that the container is removed every time.
 */
#include "../check.h"
#include "fake_service.h"
#include "nbcanvas/languages.h"
#include "nbcanvas/runner.h"

#include <pthread.h>

#define PATIENCE_MS 5000
#define REQUEST_ID "6c1d9a0e-3f4b-4c8e-9d2a-7b5e1f0a2c3d"
#define C_CODE "int main(void) { return 0; }\n"

/* ---- the fake container --------------------------------------------- */

struct box {
    struct fake_engine *engine;
    /* How it answers (set before the run). */
    bool no_ready;         /* the unpack fails: no ready line */
    struct fake_gate gate; /* the ready line waits here */
    int compile_exit;      /* the compile command's exit code */
    const char *compile_err;
    int run_exit; /* the run command's */
    const char *run_out, *run_err;
    bool run_oom; /* the run step is OOM-killed */
    /* What it saw, under lock. */
    pthread_mutex_t lock;
    pthread_cond_t changed;
    char container[65];
    size_t head_n; /* n of the command's "head -c <n>" */
    char *input;   /* the stdin it read */
    size_t input_len;
    char cmds[8][256]; /* every exec's shell command, in order */
    int ncmds;
};

/* n of "head -c <n> | tar ..." in the container's command, or 0. */
static size_t head_bytes(struct fake_engine *f, const char *id)
{
    json_t *body = fake_engine_container_body(f, id);
    const char *script = json_string_value(
        json_array_get(json_object_get(body, "Cmd"), 2));
    size_t n = 0;

    if (!script || sscanf(script, "head -c %zu |", &n) != 1)
        n = 0;
    json_decref(body);
    return n;
}

/* The main process: head -c n | tar -x, then the ready line. */
static void unpack_fn(void *ctx, const struct fake_stream_info *info,
                      struct fake_output *out)
{
    struct box *b = ctx;
    size_t n = head_bytes(b->engine, info->container_id);

    if (info->input_len < n) {
        fake_output_need_input(out, n);
        return;
    }
    pthread_mutex_lock(&b->lock);
    snprintf(b->container, sizeof(b->container), "%s", info->container_id);
    free(b->input);
    b->input = xmalloc(n + 1);
    memcpy(b->input, info->input, n);
    b->input_len = n;
    b->head_n = n;
    pthread_cond_broadcast(&b->changed);
    pthread_mutex_unlock(&b->lock);
    if (b->no_ready) {
        fake_output_write(out, 2, "tar: unexpected EOF\n", 20);
        return;
    }
    fake_gate_wait(&b->gate);
    fake_output_write(out, 1, RUNNER_READY_LINE, strlen(RUNNER_READY_LINE));
}

static void write_text(struct fake_output *out, int stream, const char *s)
{
    if (s)
        fake_output_write(out, stream, s, strlen(s));
}

/* An exec: the compile step, the run step ("exec ..."), or anything else
 * the service asks (an OOM check), which prints nothing. */
static void exec_fn(void *ctx, const struct fake_stream_info *info,
                    struct fake_output *out)
{
    struct box *b = ctx;
    const char *script = json_string_value(
        json_array_get(json_object_get(info->exec_body, "Cmd"), 2));

    if (!script)
        return;
    pthread_mutex_lock(&b->lock);
    if (b->ncmds < 8)
        snprintf(b->cmds[b->ncmds++], sizeof(b->cmds[0]), "%s", script);
    pthread_mutex_unlock(&b->lock);
    if (strncmp(script, "exec ", 5) == 0) {
        write_text(out, 1, b->run_out);
        write_text(out, 2, b->run_err);
        if (b->run_oom)
            fake_engine_set_oom(b->engine, info->container_id, true);
        fake_output_exit_code(out, b->run_exit);
    } else if (strncmp(script, "cat /sys/fs/cgroup", 18) != 0) {
        write_text(out, 2, b->compile_err);
        fake_output_exit_code(out, b->compile_exit);
    }
}

/* Starts a service on the fake whose containers are b. */
static void start(struct fake_service *fs, struct box *b)
{
    struct fake_script attach = {.fn = unpack_fn, .ctx = b, .hang = true};
    struct fake_script exec = {.fn = exec_fn, .ctx = b};

    memset(b, 0, sizeof(*b));
    pthread_mutex_init(&b->lock, NULL);
    fake_gate_init(&b->gate);
    util_cond_init_monotonic(&b->changed);
    CHECK(fake_service_start(fs) == 0);
    b->engine = &fs->engine;
    fake_engine_script(&fs->engine, FAKE_ATTACH, NULL, &attach);
    fake_engine_script(&fs->engine, FAKE_EXEC, NULL, &exec);
    CHECK(fake_service_open(fs, 0, false) == 0);
}

static void stop(struct fake_service *fs, struct box *b)
{
    fake_service_stop(fs);
    free(b->input);
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->changed);
    fake_gate_destroy(&b->gate);
}

/* The attach script, set again: hang or not. An unpack that fails ends
 * the main process, and with it the stream. */
static void main_process_exits(struct fake_service *fs, struct box *b)
{
    struct fake_script attach = {.fn = unpack_fn, .ctx = b};

    fake_engine_script(&fs->engine, FAKE_ATTACH, NULL, &attach);
}

static int run(struct fake_service *fs, const char *body, json_t **out,
               struct err *err)
{
    struct run_request req;
    int rc = request_parse_run(&req, body, strlen(body), &fs->svc.cfg, err);

    *out = NULL;
    CHECK(rc == 0);
    if (rc == 0)
        rc = runner_run(out, &fs->svc.pipe, &req, REQUEST_ID, NULL, err);
    request_run_release(&req);
    return rc;
}

static const char *field(json_t *result, const char *key)
{
    return json_string_value(json_object_get(result, key));
}

static long long number(json_t *result, const char *key)
{
    return json_integer_value(json_object_get(result, key));
}

/* The container is gone, removed as sandbox_destroy does, and nothing is
 * held any more. */
static void check_cleaned_up(struct fake_service *fs, struct box *b)
{
    CHECK(b->container[0] != '\0');
    CHECK(fake_service_removed(fs, b->container));
    CHECK(fake_engine_containers(&fs->engine) == 0);
    CHECK(fake_service_slots_free(fs));
    CHECK(fake_service_live(fs) == 0);
}

/* C_CODE, with stdin and a file. */
static const char *const c_request =
    "{\"language\": \"c\", \"code\": \"int main(void) { return 0; }\\n\","
    " \"stdin\": \"42\\n\", \"timeout_s\": 5, \"files\": [{\"name\":"
    " \"in/data.txt\", \"content_base64\": \"aGk=\"}]}";

/* ---- the happy path ------------------------------------------------- */

TEST(runner__c_is_unpacked_then_compiled_then_run)
{
    struct fake_service fs;
    struct box b;
    json_t *result = NULL, *create = NULL;
    struct err err = ERR_INIT;
    struct fake_request r;
    struct tar_files job = TAR_FILES_INIT;
    const struct language *c;
    const struct tar_entry *e;
    char prefix[160];
    long i_attach, i_start, i_exec;

    start(&fs, &b);
    b.compile_err = "code.c: warning: unused variable\n";
    b.run_out = "hello\n";
    b.run_err = "note\n";
    CHECK(run(&fs, c_request, &result, &err) == 0);
    c = languages_find(fs.svc.pipe.languages, "c");
    CHECK(c && c->compile);

    /* the container: the language's image, a command that unpacks
     * exactly the job's bytes, ours */
    CHECK(fake_engine_find(&fs.engine, "POST", "/containers/create", 0, &r));
    create = json_loads(r.body, 0, NULL);
    fake_request_release(&r);
    CHECK_STREQ(json_string_value(json_object_get(create, "Image")), c->image);
    CHECK_STREQ(
        json_string_value(json_array_get(json_object_get(create, "Cmd"), 0)),
        "sh");
    CHECK_STREQ(json_string_value(json_object_get(
                    json_object_get(create, "Labels"), "org.nbcanvas.job")),
                REQUEST_ID);
    CHECK_STREQ(json_string_value(json_object_get(
                    json_object_get(create, "Labels"), "org.nbcanvas.owner")),
                FAKE_SERVICE_OWNER);

    /* stdin carried exactly the tar, and head -c cut it to its length */
    snprintf(prefix, sizeof(prefix), "/containers/%s/attach", b.container);
    CHECK(fake_engine_find(&fs.engine, "POST", prefix, 0, &r));
    CHECK(strstr(r.path, "stdin=1") != NULL);
    CHECK(b.head_n > 0 && r.input_len == b.head_n);
    fake_request_release(&r);
    CHECK(tarball_read(&job, b.input, b.input_len, NULL, 100, 1 << 20, NULL) ==
          0);
    e = tarball_find(&job, "code.c");
    CHECK(e && e->len == strlen(C_CODE) &&
          memcmp(e->data, C_CODE, e->len) == 0);
    e = tarball_find(&job, ".nbcanvas/stdin");
    CHECK(e && e->len == 3 && memcmp(e->data, "42\n", 3) == 0);
    e = tarball_find(&job, "in/data.txt");
    CHECK(e && e->len == 2 && memcmp(e->data, "hi", 2) == 0);

    /* attach, start, then the steps by exec: compile, run */
    i_attach = fake_service_log_index(&fs, "POST", prefix);
    snprintf(prefix, sizeof(prefix), "/containers/%s/start", b.container);
    i_start = fake_service_log_index(&fs, "POST", prefix);
    snprintf(prefix, sizeof(prefix), "/containers/%s/exec", b.container);
    i_exec = fake_service_log_index(&fs, "POST", prefix);
    CHECK(i_attach >= 0 && i_attach < i_start && i_start < i_exec);
    CHECK(b.ncmds == 2);
    CHECK_STREQ(b.cmds[0], c->compile);
    CHECK_STREQ(b.cmds[1], "exec ./code < .nbcanvas/stdin");

    /* the run's own output only, not the compiler's */
    CHECK_STREQ(field(result, "status"), "ok");
    CHECK_STREQ(field(result, "id"), REQUEST_ID);
    CHECK_STREQ(field(result, "language"), "c");
    CHECK(number(result, "exit_code") == 0);
    CHECK_STREQ(field(result, "stdout"), "hello\n");
    CHECK_STREQ(field(result, "stderr"), "note\n");
    CHECK(json_is_false(json_object_get(result, "stdout_truncated")));
    CHECK(json_is_false(json_object_get(result, "stderr_truncated")));
    check_cleaned_up(&fs, &b);
    tarball_files_release(&job);
    json_decref(create);
    json_decref(result);
    stop(&fs, &b);
}

TEST(runner__python_runs_without_a_compile_step)
{
    const char *body = "{\"language\": \"python3\", \"code\": \"print(1)\"}";
    struct fake_service fs;
    struct box b;
    json_t *result = NULL;
    struct err err = ERR_INIT;

    start(&fs, &b);
    b.run_out = "1\n";
    CHECK(run(&fs, body, &result, &err) == 0);
    CHECK(b.ncmds == 1);
    CHECK_STREQ(b.cmds[0], "exec python3 -u code.py < .nbcanvas/stdin");
    CHECK_STREQ(field(result, "status"), "ok");
    CHECK_STREQ(field(result, "stdout"), "1\n");
    check_cleaned_up(&fs, &b);
    json_decref(result);
    stop(&fs, &b);
}

struct run_call {
    struct fake_service *fs;
    json_t *result;
    struct err err;
    int rc;
};

static void *run_thread(void *arg)
{
    struct run_call *c = arg;

    c->rc = run(c->fs, c_request, &c->result, &c->err);
    return NULL;
}

static bool job_arrived(struct box *b)
{
    bool yes;

    pthread_mutex_lock(&b->lock);
    yes = b->input_len > 0;
    pthread_mutex_unlock(&b->lock);
    return yes;
}

TEST(runner__nothing_runs_before_the_ready_line)
{
    struct fake_service fs;
    struct box b;
    struct run_call call = {0};
    pthread_t t;

    start(&fs, &b);
    fake_gate_close(&b.gate);
    call.fs = &fs;
    pthread_create(&t, NULL, run_thread, &call);
    WAIT_UNTIL(job_arrived(&b), PATIENCE_MS);
    CHECK(job_arrived(&b));
    poll(NULL, 0, 200);
    CHECK(fake_service_count_with(&fs, "POST", "/containers/", "/exec") == 0);
    fake_gate_open(&b.gate);
    pthread_join(t, NULL);
    CHECK(call.rc == 0);
    CHECK(fake_service_count_with(&fs, "POST", "/containers/", "/exec") == 2);
    CHECK_STREQ(field(call.result, "status"), "ok");
    json_decref(call.result);
    stop(&fs, &b);
}

/* ---- what a failing program gets ----------------------------------- */

TEST(runner__a_failed_compile_is_compile_error_and_nothing_runs)
{
    struct fake_service fs;
    struct box b;
    json_t *result = NULL;
    struct err err = ERR_INIT;

    start(&fs, &b);
    b.compile_exit = 1;
    b.compile_err = "code.c:1: error: expected ';'\n";
    CHECK(run(&fs, c_request, &result, &err) == 0);
    CHECK_STREQ(field(result, "status"), "compile_error");
    CHECK(number(result, "exit_code") == 1);
    CHECK_STREQ(field(result, "stderr"), "code.c:1: error: expected ';'\n");
    CHECK(b.ncmds == 1); /* the compile only */
    check_cleaned_up(&fs, &b);
    json_decref(result);
    stop(&fs, &b);
}

TEST(runner__a_failed_program_is_runtime_error_with_its_exit_code)
{
    struct fake_service fs;
    struct box b;
    json_t *result = NULL;
    struct err err = ERR_INIT;

    start(&fs, &b);
    b.run_exit = 3;
    b.run_err = "Segmentation fault\n";
    CHECK(run(&fs, c_request, &result, &err) == 0);
    CHECK_STREQ(field(result, "status"), "runtime_error");
    CHECK(number(result, "exit_code") == 3);
    CHECK_STREQ(field(result, "stderr"), "Segmentation fault\n");
    CHECK(b.ncmds == 2);
    check_cleaned_up(&fs, &b);
    json_decref(result);
    stop(&fs, &b);
}

TEST(runner__a_program_killed_for_memory_is_memory_limit)
{
    struct fake_service fs;
    struct box b;
    json_t *result = NULL;
    struct err err = ERR_INIT;

    start(&fs, &b);
    b.run_exit = 137;
    b.run_oom = true;
    CHECK(run(&fs, c_request, &result, &err) == 0);
    CHECK_STREQ(field(result, "status"), "memory_limit");
    CHECK(number(result, "exit_code") == 137);
    check_cleaned_up(&fs, &b);
    json_decref(result);
    stop(&fs, &b);
}

TEST(runner__output_past_the_cap_is_output_limit_and_truncated)
{
    struct fake_service fs;
    struct box b;
    json_t *result = NULL;
    struct err err = ERR_INIT;
    char flood[201];

    memset(flood, 'x', 200);
    flood[200] = '\0';
    start(&fs, &b);
    fs.svc.cfg.max_output_bytes = 64; /* read when the run starts */
    b.run_out = flood;
    b.run_err = "short\n";
    CHECK(run(&fs, c_request, &result, &err) == 0);
    CHECK_STREQ(field(result, "status"), "output_limit");
    CHECK(json_is_true(json_object_get(result, "stdout_truncated")));
    CHECK(json_is_false(json_object_get(result, "stderr_truncated")));
    CHECK(field(result, "stdout") && strlen(field(result, "stdout")) == 64);
    check_cleaned_up(&fs, &b);
    json_decref(result);
    stop(&fs, &b);
}

/* ---- errors --------------------------------------------------------- */

TEST(runner__an_unknown_language_is_invalid_before_any_engine_call)
{
    const char *body = "{\"language\": \"cobol\", \"code\": \"x\"}";
    struct fake_service fs;
    struct box b;
    json_t *result = NULL;
    struct err err = ERR_INIT;

    start(&fs, &b);
    CHECK(run(&fs, body, &result, &err) == ERR_INVALID);
    CHECK(result == NULL);
    CHECK(strstr(err.msg, "cobol") != NULL);
    CHECK(fake_engine_nrequests(&fs.engine) == 0);
    CHECK(fake_service_slots_free(&fs));
    stop(&fs, &b);
}

TEST(runner__a_sandbox_that_cannot_unpack_the_job_is_an_error)
{
    struct fake_service fs;
    struct box b;
    json_t *result = NULL;
    struct err err = ERR_INIT;

    start(&fs, &b);
    main_process_exits(&fs, &b);
    b.no_ready = true;
    CHECK(run(&fs, c_request, &result, &err) == ERR_INTERNAL);
    CHECK(result == NULL);
    CHECK(strstr(err.msg, "tar: unexpected EOF") != NULL);
    CHECK(b.ncmds == 0);
    check_cleaned_up(&fs, &b);
    stop(&fs, &b);
}
