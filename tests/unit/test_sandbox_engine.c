/*
 * Job containers (sandbox.c) against the fake engine: the create request
 * carries the hardened body, the life of a sandbox (start, attach with
 * stdin, exec, OOM checks, destroy) makes the calls the engine expects,
 * and the reaper removes exactly the containers its mode selects. test_
 * sandbox.c checks the create body on its own; this file checks what goes
 * over the wire and what the engine is left with.
 */
#include "../check.h"
#include "fake_engine.h"
#include "nbcanvas/demux.h"
#include "nbcanvas/sandbox.h"
#include "nbcanvas/util.h"

#include <time.h>

static const struct sandbox_limits limits = {
    .memory_bytes = 256LL << 20,
    .cpus = 1,
    .pids = 64,
    .workdir_bytes = 64LL << 20,
    .tmp_bytes = 32LL << 20,
    .nofile = 256,
    .fsize_bytes = 16LL << 20,
};

static struct sandbox_spec spec_for(json_t *cmd, const char *owner,
                                    long long deadline_s)
{
    struct sandbox_spec spec = {
        .image = "nbcanvas/test:1",
        .cmd = cmd,
        .env = NULL,
        .limits = &limits,
        .runtime = "",
        .job_id = "job-1",
        .owner = owner,
        .deadline_s = deadline_s,
    };

    return spec;
}

/* "uid:gid" of the unprivileged user every sandbox runs as. */
static const char *sandbox_user(void)
{
    static char user[32];

    snprintf(user, sizeof(user), "%d:%d", SANDBOX_UID, SANDBOX_UID);
    return user;
}

#define HC(body, key) json_object_get(json_object_get(body, "HostConfig"), key)
#define LABEL(body, key)                                                      \
    json_string_value(json_object_get(json_object_get(body, "Labels"), key))

TEST(sandbox_engine__create_sends_the_hardened_body)
{
    struct fake_engine f = {0};
    json_t *cmd = json_pack("[s, s]", "sleep", "1");
    struct sandbox_spec spec = spec_for(cmd, "svc-test", 4242);
    json_t *want = sandbox_create_body(&spec), *sent, *kept;
    struct fake_request r;
    struct sandbox sb;
    struct err err = ERR_INIT;
    struct docker *d;

    fake_engine_start(&f);
    d = fake_engine_docker(&f);
    CHECK(sandbox_create(&sb, d, &spec, &err) == 0);
    CHECK(strlen(sb.id) == 64);
    CHECK(!sb.started);
    CHECK(fake_engine_find(&f, "POST", "/containers/create", 0, &r));
    CHECK_STREQ(r.version, "1.41");
    sent = json_loads(r.body, 0, NULL);
    fake_request_release(&r);
    /* exactly the body sandbox_create_body builds, every field */
    CHECK(sent && json_equal(sent, want));
    kept = fake_engine_container_body(&f, sb.id);
    CHECK(kept != NULL);
    CHECK_STREQ(json_string_value(HC(kept, "NetworkMode")), "none");
    CHECK(json_is_true(json_object_get(kept, "NetworkDisabled")));
    CHECK(json_is_true(HC(kept, "ReadonlyRootfs")));
    CHECK_STREQ(json_string_value(json_array_get(HC(kept, "CapDrop"), 0)),
                "ALL");
    CHECK(json_integer_value(HC(kept, "Memory")) == 256LL << 20);
    CHECK(json_integer_value(HC(kept, "MemorySwap")) == 256LL << 20);
    CHECK(json_integer_value(HC(kept, "PidsLimit")) == 64);
    CHECK_STREQ(json_string_value(json_object_get(kept, "User")),
                sandbox_user());
    CHECK_STREQ(LABEL(kept, SANDBOX_LABEL), "1");
    CHECK_STREQ(LABEL(kept, "org.nbcanvas.owner"), "svc-test");
    CHECK_STREQ(LABEL(kept, "org.nbcanvas.job"), "job-1");
    CHECK_STREQ(LABEL(kept, "org.nbcanvas.deadline"), "4242");
    json_decref(kept);
    json_decref(sent);
    json_decref(want);
    sandbox_destroy(&sb);
    CHECK(fake_engine_containers(&f) == 0);
    json_decref(cmd);
    docker_free(d);
    fake_engine_stop(&f);
}

TEST(sandbox_engine__missing_image_is_engine_error)
{
    struct fake_engine f = {0};
    json_t *cmd = json_pack("[s]", "true");
    struct sandbox_spec spec = spec_for(cmd, "svc-test", 1);
    struct sandbox sb;
    struct err err = ERR_INIT;
    struct docker *d;

    fake_engine_start(&f);
    d = fake_engine_docker(&f);
    fake_engine_image_missing(&f, "nbcanvas/test:1", true);
    CHECK(sandbox_create(&sb, d, &spec, &err) == ERR_ENGINE);
    CHECK(strstr(err.msg, "nbcanvas/test:1 is missing") != NULL);
    CHECK(sb.id[0] == '\0');
    CHECK(fake_engine_containers(&f) == 0);
    sandbox_destroy(&sb); /* never created: no call */
    CHECK(fake_engine_count(&f, "DELETE", NULL) == 0);
    json_decref(cmd);
    docker_free(d);
    fake_engine_stop(&f);
}

/* ---- a sandbox's life ---------------------------------------------- */

struct job {
    struct sandbox *sb;
    struct buf out, err;
    struct demux demux;
    int started;
};

static int job_open(void *ctx)
{
    struct job *j = ctx;

    j->started++;
    return sandbox_start(j->sb, NULL);
}

static int job_data(void *ctx, const char *data, size_t len)
{
    struct job *j = ctx;

    if (demux_feed(&j->demux, data, len) < 0)
        return -1;
    return strstr(j->out.data, "done\n") ? 1 : 0;
}

static void job_init(struct job *j, struct sandbox *sb)
{
    memset(j, 0, sizeof(*j));
    j->sb = sb;
    buf_init(&j->out, 1 << 20);
    buf_init(&j->err, 1 << 20);
    demux_init(&j->demux, &j->out, &j->err);
}

static void job_release(struct job *j)
{
    buf_release(&j->out);
    buf_release(&j->err);
}

/* The container's side of a job: reads the upload, says what it got. */
static void answer_upload(void *ctx, const struct fake_stream_info *info,
                          struct fake_output *out)
{
    char line[128];
    int n = snprintf(line, sizeof(line), "got %zu bytes: %.*s\ndone\n",
                     info->input_len, (int)info->input_len, info->input);

    (void)ctx;
    fake_output_write(out, 2, "working\n", 8);
    fake_output_write(out, 1, line, (size_t)n);
}

TEST(sandbox_engine__attach_stdin_starts_and_delivers)
{
    struct fake_engine f = {0};
    json_t *cmd = json_pack("[s]", "relay");
    struct sandbox_spec spec = spec_for(cmd, "svc-test", 1);
    struct fake_script script = {
        .fn = answer_upload, .after_input = 7, .hang = true};
    struct docker_stream_cb cb;
    struct fake_request r;
    struct sandbox sb;
    struct job job;
    struct docker *d;

    fake_engine_start(&f);
    d = fake_engine_docker(&f);
    CHECK(sandbox_create(&sb, d, &spec, NULL) == 0);
    fake_engine_script(&f, FAKE_ATTACH, sb.id, &script);
    job_init(&job, &sb);
    cb = (struct docker_stream_cb){job_open, job_data, &job, NULL, NULL};
    CHECK(!sandbox_is_running(&sb));
    CHECK(sandbox_attach_stdin(&sb, "payload", 7, &cb, util_now_ms() + 5000,
                               NULL) == 1);
    CHECK(job.started == 1);
    CHECK(sb.started);
    CHECK_STREQ(job.out.data, "got 7 bytes: payload\ndone\n");
    CHECK_STREQ(job.err.data, "working\n");
    /* create, then the attach, then the start (once attached) */
    CHECK(fake_engine_find(&f, "POST", "/containers/", 1, &r));
    CHECK_STREQ(strstr(r.path, "/attach"),
                "/attach?stream=1&stdin=1&stdout=1&stderr=1");
    CHECK(r.upgrade);
    CHECK(r.input_len == 7 && memcmp(r.input, "payload", 7) == 0);
    fake_request_release(&r);
    CHECK(fake_engine_find(&f, "POST", "/containers/", 2, &r));
    CHECK_STREQ(strstr(r.path, "/start"), "/start");
    fake_request_release(&r);
    CHECK(sandbox_is_running(&sb)); /* the script hangs: still running */
    job_release(&job);
    sandbox_destroy(&sb);
    json_decref(cmd);
    docker_free(d);
    fake_engine_stop(&f);
}

TEST(sandbox_engine__exec_reports_output_and_exit_code)
{
    struct fake_engine f = {0};
    json_t *cmd = json_pack("[s]", "sleep");
    json_t *run = json_pack("[s, s, s]", "sh", "-c", "exit 3");
    struct sandbox_spec spec = spec_for(cmd, "svc-test", 1);
    static const struct fake_chunk chunks[] = {{1, "ran\n", 0},
                                               {2, "oops\n", 0}};
    struct fake_script script = {
        .chunks = chunks, .nchunks = 2, .exit_code = 3};
    struct docker_stream_cb cb;
    struct fake_request r;
    struct sandbox sb;
    struct job job;
    struct docker *d;
    json_t *body;
    int code = -1;

    fake_engine_start(&f);
    d = fake_engine_docker(&f);
    CHECK(sandbox_create(&sb, d, &spec, NULL) == 0);
    CHECK(sandbox_start(&sb, NULL) == 0);
    fake_engine_script(&f, FAKE_EXEC, NULL, &script);
    job_init(&job, &sb);
    cb = (struct docker_stream_cb){NULL, job_data, &job, NULL, NULL};
    CHECK(sandbox_exec(&sb, run, &cb, util_now_ms() + 5000, &code, NULL) == 0);
    CHECK_STREQ(job.out.data, "ran\n");
    CHECK_STREQ(job.err.data, "oops\n");
    CHECK(code == 3);
    CHECK(fake_engine_find(&f, "POST", "/containers/", 2, &r));
    body = json_loads(r.body, 0, NULL);
    CHECK(strstr(r.path, "/exec") != NULL);
    CHECK(json_equal(json_object_get(body, "Cmd"), run));
    CHECK_STREQ(json_string_value(json_object_get(body, "User")),
                sandbox_user());
    json_decref(body);
    fake_request_release(&r);
    CHECK(fake_engine_count(&f, "GET", "/exec/") == 1);
    job_release(&job);
    sandbox_destroy(&sb);
    json_decref(run);
    json_decref(cmd);
    docker_free(d);
    fake_engine_stop(&f);
}

TEST(sandbox_engine__output_in_the_same_read_as_the_headers_is_kept)
{
    /* The engine may send the first frames in the same packet as its
     * answer's headers; docker_stream once took them for an error body
     * and lost them. */
    struct fake_engine f = {0};
    json_t *cmd = json_pack("[s]", "sleep");
    json_t *run = json_pack("[s]", "true");
    struct sandbox_spec spec = spec_for(cmd, "svc-test", 1);
    static const struct fake_chunk chunks[] = {{1, "first\n", 0},
                                               {2, "second\n", 0}};
    struct fake_script script = {
        .chunks = chunks, .nchunks = 2, .exit_code = 0, .coalesce = true};
    struct docker_stream_cb cb;
    struct sandbox sb;
    struct job job;
    struct docker *d;
    int code = -1;

    fake_engine_start(&f);
    d = fake_engine_docker(&f);
    CHECK(sandbox_create(&sb, d, &spec, NULL) == 0);
    CHECK(sandbox_start(&sb, NULL) == 0);
    fake_engine_script(&f, FAKE_EXEC, NULL, &script);
    job_init(&job, &sb);
    cb = (struct docker_stream_cb){NULL, job_data, &job, NULL, NULL};
    CHECK(sandbox_exec(&sb, run, &cb, util_now_ms() + 5000, &code, NULL) == 0);
    CHECK_STREQ(job.out.data, "first\n");
    CHECK_STREQ(job.err.data, "second\n");
    CHECK(code == 0);
    job_release(&job);
    sandbox_destroy(&sb);
    json_decref(run);
    json_decref(cmd);
    docker_free(d);
    fake_engine_stop(&f);
}

TEST(sandbox_engine__oom_from_state_or_cgroup)
{
    struct fake_engine f = {0};
    json_t *cmd = json_pack("[s]", "sleep");
    struct sandbox_spec spec = spec_for(cmd, "svc-test", 1);
    static const struct fake_chunk events[] = {
        {1, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n", 0}};
    struct fake_script cgroup = {.chunks = events, .nchunks = 1};
    struct sandbox sb;
    struct docker *d;

    fake_engine_start(&f);
    d = fake_engine_docker(&f);
    CHECK(sandbox_create(&sb, d, &spec, NULL) == 0);
    CHECK(!sandbox_oom_killed(&sb)); /* not running: no exec */
    CHECK(fake_engine_count(&f, "POST", "/containers/") == 1);
    fake_engine_set_oom(&f, sb.id, true);
    CHECK(sandbox_oom_killed(&sb)); /* the engine's own flag */
    fake_engine_set_oom(&f, sb.id, false);
    CHECK(sandbox_start(&sb, NULL) == 0);
    CHECK(!sandbox_oom_killed(&sb)); /* running, cgroup says nothing */
    fake_engine_script(&f, FAKE_EXEC, sb.id, &cgroup);
    CHECK(sandbox_oom_killed(&sb)); /* a child was killed: cgroup counts */
    CHECK(fake_engine_count(&f, "POST", "/exec/") == 2);
    sandbox_destroy(&sb);
    json_decref(cmd);
    docker_free(d);
    fake_engine_stop(&f);
}

TEST(sandbox_engine__destroy_forces_once)
{
    struct fake_engine f = {0};
    json_t *cmd = json_pack("[s]", "sleep");
    struct sandbox_spec spec = spec_for(cmd, "svc-test", 1);
    struct fake_request r;
    struct sandbox sb;
    struct docker *d;
    char want[160];

    fake_engine_start(&f);
    d = fake_engine_docker(&f);
    CHECK(sandbox_create(&sb, d, &spec, NULL) == 0);
    CHECK(sandbox_start(&sb, NULL) == 0);
    snprintf(want, sizeof(want), "/containers/%s?force=1&v=1", sb.id);
    sandbox_destroy(&sb);
    CHECK(sb.id[0] == '\0');
    sandbox_destroy(&sb);
    CHECK(fake_engine_count(&f, "DELETE", NULL) == 1);
    CHECK(fake_engine_find(&f, "DELETE", NULL, 0, &r));
    CHECK_STREQ(r.path, want);
    fake_request_release(&r);
    CHECK(fake_engine_containers(&f) == 0);
    json_decref(cmd);
    docker_free(d);
    fake_engine_stop(&f);
}

/* ---- the reaper ----------------------------------------------------- */

/* Puts a container with nbcanvas's labels (owner, deadline) in the fake;
 * managed false leaves out the label the reaper looks for. */
static void labelled(struct fake_engine *f, const char *owner,
                     long long deadline_s, bool managed, char id[65])
{
    char deadline[32];
    json_t *body;

    snprintf(deadline, sizeof(deadline), "%lld", deadline_s);
    body = json_pack("{s:s, s:{s:s, s:s}}", "Image", "nbcanvas/test:1",
                     "Labels", "org.nbcanvas.owner", owner,
                     "org.nbcanvas.deadline", deadline);
    if (managed)
        json_object_set_new(json_object_get(body, "Labels"), SANDBOX_LABEL,
                            json_string("1"));
    fake_engine_add_container(f, body, true, id);
    json_decref(body);
}

TEST(sandbox_engine__reap_owned_takes_only_this_owner)
{
    struct fake_engine f = {0};
    long long later = (long long)time(NULL) + 3600;
    char mine1[65], mine2[65], theirs[65], unmanaged[65];
    struct err err = ERR_INIT;
    struct docker *d;

    fake_engine_start(&f);
    d = fake_engine_docker(&f);
    labelled(&f, "svc-a", later, true, mine1);
    labelled(&f, "svc-b", later, true, theirs);
    labelled(&f, "svc-a", later, true, mine2);
    labelled(&f, "svc-a", later, false, unmanaged);
    CHECK(sandbox_reap(d, REAP_OWNED, "svc-a", NULL, &err) == 2);
    CHECK(!fake_engine_has_container(&f, mine1));
    CHECK(!fake_engine_has_container(&f, mine2));
    CHECK(fake_engine_has_container(&f, theirs));
    CHECK(fake_engine_has_container(&f, unmanaged));
    CHECK(fake_engine_count(&f, "DELETE", "/containers/") == 2);
    CHECK(sandbox_reap(d, REAP_OWNED, "svc-a", NULL, &err) == 0);
    docker_free(d);
    fake_engine_stop(&f);
}

TEST(sandbox_engine__reap_expired_takes_only_those_past_deadline)
{
    struct fake_engine f = {0};
    long long now = (long long)time(NULL);
    char old1[65], old2[65], fresh[65], unmanaged[65];
    struct err err = ERR_INIT;
    struct docker *d;

    fake_engine_start(&f);
    d = fake_engine_docker(&f);
    labelled(&f, "svc-a", now - 60, true, old1);
    labelled(&f, "svc-b", now - 1, true, old2); /* any owner */
    labelled(&f, "svc-a", now + 3600, true, fresh);
    labelled(&f, "svc-a", now - 60, false, unmanaged);
    CHECK(sandbox_reap(d, REAP_EXPIRED, "svc-a", NULL, &err) == 2);
    CHECK(!fake_engine_has_container(&f, old1));
    CHECK(!fake_engine_has_container(&f, old2));
    CHECK(fake_engine_has_container(&f, fresh));
    CHECK(fake_engine_has_container(&f, unmanaged));
    docker_free(d);
    fake_engine_stop(&f);
}

TEST(sandbox_engine__reap_never_takes_a_container_in_use)
{
    /* After the wall clock jumps forward every deadline reads as past:
     * what the service holds (its live set) stays, what it does not goes. */
    struct fake_engine f = {0};
    json_t *cmd = json_pack("[s]", "sleep");
    struct sandbox_set *live = sandbox_set_new();
    struct sandbox_spec spec = spec_for(cmd, "svc-a", 1); /* 1970: past */
    long long now = (long long)time(NULL);
    char stray[65];
    struct err err = ERR_INIT;
    struct sandbox held;
    struct docker *d;

    spec.live = live;
    fake_engine_start(&f);
    d = fake_engine_docker(&f);
    CHECK(sandbox_create(&held, d, &spec, NULL) == 0);
    CHECK(sandbox_set_count(live) == 1);
    labelled(&f, "svc-a", now - 60, true, stray);
    CHECK(sandbox_reap(d, REAP_EXPIRED, "svc-a", live, &err) == 1);
    CHECK(fake_engine_has_container(&f, held.id));
    CHECK(!fake_engine_has_container(&f, stray));
    CHECK(sandbox_reap(d, REAP_OWNED, "svc-a", live, &err) == 0);
    CHECK(fake_engine_has_container(&f, held.id));
    sandbox_destroy(&held); /* leaves the set with its container */
    CHECK(sandbox_set_count(live) == 0);
    CHECK(fake_engine_containers(&f) == 0);
    sandbox_set_free(live);
    json_decref(cmd);
    docker_free(d);
    fake_engine_stop(&f);
}

TEST(sandbox_engine__reap_reports_an_engine_failure)
{
    struct fake_engine f = {0};
    struct err err = ERR_INIT;
    struct docker *d;

    fake_engine_start(&f);
    d = fake_engine_docker(&f);
    fake_engine_fail(&f, "GET", "/containers/json", 1, 500, "list failed");
    CHECK(sandbox_reap(d, REAP_EXPIRED, "svc-a", NULL, &err) < 0);
    CHECK(strstr(err.msg, "list failed") != NULL);
    fake_engine_set_down(&f, true);
    CHECK(sandbox_reap(d, REAP_OWNED, "svc-a", NULL, &err) == ERR_ENGINE);
    docker_free(d);
    fake_engine_stop(&f);
}
