/*
 * The fake engine (fake_engine.h) checked against the real client
 * (docker.c): if the fake drifted from what the client sends and expects,
 * every test built on it would prove nothing. Each test drives the fake
 * through docker.c and checks both sides: what the client got and what the
 * fake recorded.
 */
#include "../check.h"
#include "fake_engine.h"
#include "nbcanvas/demux.h"
#include "nbcanvas/docker.h"
#include "nbcanvas/util.h"

#include <poll.h>
#include <pthread.h>

TEST(fake_engine__negotiate_and_log)
{
    struct fake_engine f = {.api_version = "1.42"};
    struct fake_request r;
    struct docker *d;

    CHECK(fake_engine_start(&f) == 0);
    CHECK(strncmp(fake_engine_host(&f), "unix:///tmp/", 12) == 0);
    d = fake_engine_docker(&f);
    CHECK(docker_negotiate(d, NULL) == 0);
    CHECK_STREQ(docker_api_version(d), "1.42");
    CHECK(fake_engine_nrequests(&f) == 2);
    CHECK(fake_engine_request(&f, 0, &r));
    CHECK_STREQ(r.method, "GET");
    CHECK_STREQ(r.path, "/_ping");
    CHECK_STREQ(r.version, "");
    CHECK(r.status == 200);
    fake_request_release(&r);
    CHECK(fake_engine_request(&f, 1, &r));
    CHECK_STREQ(r.path, "/version");
    CHECK_STREQ(r.version, "1.41"); /* asked before the version is known */
    fake_request_release(&r);
    CHECK(!fake_engine_request(&f, 2, &r));
    docker_free(d);
    fake_engine_stop(&f);
}

TEST(fake_engine__container_lifecycle)
{
    struct fake_engine f = {0};
    struct docker *d;
    json_t *body = json_pack("{s:s, s:{s:s}}", "Image", "img:1", "Labels", "k",
                             "v"),
           *out = NULL;
    struct fake_request r;
    struct err err = ERR_INIT;
    char path[160], id[65];

    fake_engine_start(&f);
    d = fake_engine_docker(&f);
    CHECK(docker_call_json(d, "POST", "/containers/create", body, &out, 0,
                           &err) == 0);
    snprintf(id, sizeof(id), "%s",
             json_string_value(json_object_get(out, "Id")));
    json_decref(out);
    CHECK(strlen(id) == 64 && fake_engine_has_container(&f, id));
    CHECK(fake_engine_find(&f, "POST", "/containers/create", 0, &r));
    CHECK(strstr(r.body, "\"img:1\"") != NULL && r.status == 201);
    fake_request_release(&r);

    snprintf(path, sizeof(path), "/containers/%s/json", id);
    CHECK(docker_call_json(d, "GET", path, NULL, &out, 0, &err) == 0);
    CHECK(json_is_false(
        json_object_get(json_object_get(out, "State"), "Running")));
    json_decref(out);
    snprintf(path, sizeof(path), "/containers/%s/start", id);
    CHECK(docker_call_json(d, "POST", path, NULL, NULL, 0, &err) == 0);
    fake_engine_set_oom(&f, id, true);
    snprintf(path, sizeof(path), "/containers/%s/json", id);
    CHECK(docker_call_json(d, "GET", path, NULL, &out, 0, &err) == 0);
    CHECK(json_is_true(
        json_object_get(json_object_get(out, "State"), "Running")));
    CHECK(json_is_true(
        json_object_get(json_object_get(out, "State"), "OOMKilled")));
    CHECK_STREQ(
        json_string_value(json_object_get(
            json_object_get(json_object_get(out, "Config"), "Labels"), "k")),
        "v");
    json_decref(out);

    /* the engine refuses to remove a running container without force */
    snprintf(path, sizeof(path), "/containers/%s", id);
    CHECK(docker_call_json(d, "DELETE", path, NULL, NULL, 0, &err) ==
          ERR_INTERNAL);
    CHECK(strstr(err.msg, "cannot remove a running container") != NULL);
    snprintf(path, sizeof(path), "/containers/%s?force=1&v=1", id);
    CHECK(docker_call_json(d, "DELETE", path, NULL, NULL, 0, &err) == 0);
    CHECK(!fake_engine_has_container(&f, id));
    CHECK(docker_call_json(d, "DELETE", path, NULL, NULL, 0, &err) ==
          ERR_NOT_FOUND);
    CHECK(fake_engine_count(&f, "DELETE", "/containers/") == 3);
    json_decref(body);
    docker_free(d);
    fake_engine_stop(&f);
}

TEST(fake_engine__list_filters_by_label)
{
    struct fake_engine f = {0};
    struct docker *d;
    json_t *a = json_pack("{s:s, s:{s:s}}", "Image", "i", "Labels", "m", "1");
    json_t *b = json_pack("{s:s, s:{s:s}}", "Image", "i", "Labels", "m", "2");
    json_t *list = NULL;
    char ida[65], idb[65];

    fake_engine_start(&f);
    d = fake_engine_docker(&f);
    fake_engine_add_container(&f, a, true, ida);
    fake_engine_add_container(&f, b, false, idb);
    /* filters={"label":["m=1"]} */
    CHECK(docker_call_json(d, "GET",
                           "/containers/json?all=1&filters=%7B%22label%22%3A"
                           "%5B%22m%3D1%22%5D%7D",
                           NULL, &list, 0, NULL) == 0);
    CHECK(json_array_size(list) == 1);
    CHECK_STREQ(
        json_string_value(json_object_get(json_array_get(list, 0), "Id")),
        ida);
    json_decref(list);
    /* without all=1 only running containers are listed */
    CHECK(docker_call_json(d, "GET", "/containers/json", NULL, &list, 0,
                           NULL) == 0);
    CHECK(json_array_size(list) == 1);
    json_decref(list);
    CHECK(docker_call_json(d, "GET", "/containers/json?all=1", NULL, &list, 0,
                           NULL) == 0);
    CHECK(json_array_size(list) == 2);
    json_decref(list);
    json_decref(a);
    json_decref(b);
    docker_free(d);
    fake_engine_stop(&f);
}

TEST(fake_engine__faults_and_images)
{
    struct fake_engine f = {0};
    struct docker *d;
    struct err err = ERR_INIT;
    json_t *out = NULL;

    fake_engine_start(&f);
    d = fake_engine_docker(&f);
    fake_engine_fail(&f, "GET", "/images/", 2, 0, "boom");
    CHECK(docker_call_json(d, "GET", "/images/a/b:1/json", NULL, &out, 0,
                           &err) == ERR_INTERNAL);
    CHECK(strstr(err.msg, "boom") && strstr(err.msg, "HTTP 500"));
    CHECK(docker_call_json(d, "GET", "/images/a/b:1/json", NULL, &out, 0,
                           &err) == ERR_INTERNAL);
    CHECK(docker_call_json(d, "GET", "/images/a/b:1/json", NULL, &out, 0,
                           &err) == 0);
    CHECK(strncmp(json_string_value(json_object_get(out, "Id")),
                  "sha256:", 7) == 0);
    json_decref(out);
    fake_engine_image_missing(&f, "a/b:1", true);
    CHECK(docker_call_json(d, "GET", "/images/a/b:1/json", NULL, &out, 0,
                           &err) == ERR_NOT_FOUND);
    CHECK(strstr(err.msg, "No such image: a/b:1") != NULL);
    docker_free(d);
    fake_engine_stop(&f);
}

TEST(fake_engine__down_and_back)
{
    struct fake_engine f = {0};
    struct docker *d;
    struct err err = ERR_INIT;

    fake_engine_start(&f);
    d = fake_engine_docker(&f);
    fake_engine_set_down(&f, true);
    CHECK(docker_call_json(d, "GET", "/_ping", NULL, NULL, 0, &err) ==
          ERR_ENGINE);
    CHECK(fake_engine_nrequests(&f) == 0);
    fake_engine_set_down(&f, false);
    CHECK(docker_call_json(d, "GET", "/_ping", NULL, NULL, 0, &err) == 0);
    docker_free(d);
    fake_engine_stop(&f);
}

struct caller {
    struct docker *d;
    int ok;
    pthread_t t;
};

static void *call_many(void *arg)
{
    struct caller *c = arg;
    int i;

    for (i = 0; i < 20; i++)
        if (docker_call_json(c->d, "GET", "/version", NULL, NULL, 0, NULL) ==
            0)
            c->ok++;
    return NULL;
}

TEST(fake_engine__concurrent_clients)
{
    struct fake_engine f = {0};
    struct docker *d;
    struct caller c[8];
    int i, ok = 0;

    fake_engine_start(&f);
    d = fake_engine_docker(&f);
    for (i = 0; i < 8; i++) {
        c[i] = (struct caller){d, 0, 0};
        pthread_create(&c[i].t, NULL, call_many, &c[i]);
    }
    for (i = 0; i < 8; i++) {
        pthread_join(c[i].t, NULL);
        ok += c[i].ok;
    }
    CHECK(ok == 160);
    CHECK(fake_engine_count(&f, "GET", "/version") == 160);
    docker_free(d);
    fake_engine_stop(&f);
}

/* Collects a stream's frames into stdout and stderr. */
struct collected {
    struct buf out, err;
    struct demux demux;
    const char *until; /* stop once stdout holds this */
};

static int collect(void *ctx, const char *data, size_t len)
{
    struct collected *c = ctx;

    if (demux_feed(&c->demux, data, len) < 0)
        return -1;
    return c->until && strstr(c->out.data, c->until) ? 1 : 0;
}

static void collected_init(struct collected *c, const char *until)
{
    buf_init(&c->out, 1 << 20);
    buf_init(&c->err, 1 << 20);
    demux_init(&c->demux, &c->out, &c->err);
    c->until = until;
}

static void collected_release(struct collected *c)
{
    buf_release(&c->out);
    buf_release(&c->err);
}

/* Starts the container when the attach is live, as the service does. */
struct opener {
    struct docker *d;
    const char *id;
    struct collected col;
};

static int open_start(void *ctx)
{
    struct opener *o = ctx;
    char path[128];

    snprintf(path, sizeof(path), "/containers/%s/start", o->id);
    return docker_call_json(o->d, "POST", path, NULL, NULL, 0, NULL);
}

static int opener_data(void *ctx, const char *data, size_t len)
{
    return collect(&((struct opener *)ctx)->col, data, len);
}

/* Answers with the length of the input it got. */
static void echo_len(void *ctx, const struct fake_stream_info *info,
                     struct fake_output *out)
{
    char line[64];
    int n = snprintf(line, sizeof(line), "got %zu\n", info->input_len);

    (void)ctx;
    fake_output_write(out, 1, line, (size_t)n);
}

TEST(fake_engine__attach_with_stdin)
{
    struct fake_engine f = {0};
    static const struct fake_chunk chunks[] = {{2, "warming\n", 0}};
    struct fake_script s = {.chunks = chunks,
                            .nchunks = 1,
                            .fn = echo_len,
                            .after_input = 5,
                            .exit_code = 3};
    json_t *body = json_pack("{s:s}", "Image", "i");
    struct opener o;
    struct docker_stream_cb cb = {open_start, opener_data, &o, NULL, NULL};
    struct fake_request r;
    char id[65], path[160];
    json_t *info = NULL;

    fake_engine_start(&f);
    o.d = fake_engine_docker(&f);
    fake_engine_add_container(&f, body, false, id);
    o.id = id;
    collected_init(&o.col, NULL);
    fake_engine_script(&f, FAKE_ATTACH, NULL, &s);
    snprintf(path, sizeof(path),
             "/containers/%s/attach?stream=1&stdin=1&stdout=1&stderr=1", id);
    CHECK(docker_stream_duplex(o.d, path, "hello", 5, &cb,
                               util_now_ms() + 5000, NULL) == 0);
    CHECK_STREQ(o.col.out.data, "got 5\n");
    CHECK_STREQ(o.col.err.data, "warming\n");
    CHECK(fake_engine_find(&f, "POST", "/containers/", 0, &r));
    CHECK(r.upgrade && r.status == 101);
    CHECK(r.input_len == 5 && memcmp(r.input, "hello", 5) == 0);
    fake_request_release(&r);
    /* the stream closed: the container exited with the script's code */
    snprintf(path, sizeof(path), "/containers/%s/json", id);
    CHECK(docker_call_json(o.d, "GET", path, NULL, &info, 0, NULL) == 0);
    CHECK(json_is_false(
        json_object_get(json_object_get(info, "State"), "Running")));
    CHECK(json_integer_value(json_object_get(json_object_get(info, "State"),
                                             "ExitCode")) == 3);
    json_decref(info);
    collected_release(&o.col);
    json_decref(body);
    docker_free(o.d);
    fake_engine_stop(&f);
}

/* An attach that waits up to 5 s in a thread of its own. */
struct attacher {
    struct docker *d;
    const char *path;
    int rc;
    long long ms;
};

static int ignore_data(void *ctx, const char *data, size_t len)
{
    (void)ctx;
    (void)data;
    (void)len;
    return 0;
}

static void *attach_long(void *arg)
{
    struct attacher *a = arg;
    struct docker_stream_cb cb = {NULL, ignore_data, NULL, NULL, NULL};
    long long t0 = util_now_ms();

    a->rc = docker_stream(a->d, "POST", a->path, NULL, &cb, t0 + 5000, NULL);
    a->ms = util_now_ms() - t0;
    return NULL;
}

TEST(fake_engine__attach_hang_until_client_leaves)
{
    struct fake_engine f = {0};
    static const struct fake_chunk chunks[] = {{1, "ready\n", 0}};
    struct fake_script s = {.chunks = chunks, .nchunks = 1, .hang = true};
    json_t *body = json_pack("{s:s}", "Image", "i");
    struct opener o;
    struct docker_stream_cb cb = {open_start, opener_data, &o, NULL, NULL};
    char id[65], path[160];
    long long t0;

    fake_engine_start(&f);
    o.d = fake_engine_docker(&f);
    fake_engine_add_container(&f, body, false, id);
    o.id = id;
    fake_engine_script(&f, FAKE_ATTACH, id, &s);
    snprintf(path, sizeof(path),
             "/containers/%s/attach?stream=1&stdout=1&stderr=1", id);
    /* plain (curl) attach: stops itself once "ready" is there */
    collected_init(&o.col, "ready\n");
    CHECK(docker_stream(o.d, "POST", path, NULL, &cb, util_now_ms() + 5000,
                        NULL) == 1);
    collected_release(&o.col);
    /* a second attach to the running container hangs until the deadline */
    collected_init(&o.col, NULL);
    t0 = util_now_ms();
    CHECK(docker_stream(o.d, "POST", path, NULL, &cb, t0 + 400, NULL) ==
          ERR_TIMEOUT);
    CHECK(util_now_ms() - t0 >= 350);
    CHECK_STREQ(o.col.out.data, "ready\n");
    collected_release(&o.col);
    /* removal ends a hanging stream, as the engine does */
    {
        struct attacher a = {o.d, path, 0, 0};
        pthread_t t;
        char del[160];

        snprintf(del, sizeof(del), "/containers/%s/attach", id);
        pthread_create(&t, NULL, attach_long, &a);
        CHECK(fake_engine_wait(&f, "POST", del, 3, 5000) == 3);
        snprintf(del, sizeof(del), "/containers/%s?force=1", id);
        CHECK(docker_call_json(o.d, "DELETE", del, NULL, NULL, 0, NULL) == 0);
        pthread_join(t, NULL);
        CHECK(a.rc == 0);
        CHECK(a.ms < 4000);
    }
    json_decref(body);
    docker_free(o.d);
    fake_engine_stop(&f);
}

TEST(fake_engine__exec_exit_code)
{
    struct fake_engine f = {0};
    static const struct fake_chunk chunks[] = {{1, "out\n", 0},
                                               {2, "err\n", 0}};
    struct fake_script s = {.chunks = chunks, .nchunks = 2, .exit_code = 7};
    json_t *body = json_pack("{s:s}", "Image", "i"), *resp = NULL, *info;
    json_t *ex = json_pack("{s:[s]}", "Cmd", "true");
    struct collected col;
    struct docker_stream_cb cb = {NULL, collect, &col, NULL, NULL};
    struct docker *d;
    char id[65], path[160];
    const char *eid;

    fake_engine_start(&f);
    d = fake_engine_docker(&f);
    fake_engine_add_container(&f, body, true, id);
    fake_engine_script(&f, FAKE_EXEC, NULL, &s);
    collected_init(&col, NULL);
    snprintf(path, sizeof(path), "/containers/%s/exec", id);
    CHECK(docker_call_json(d, "POST", path, ex, &resp, 0, NULL) == 0);
    eid = json_string_value(json_object_get(resp, "Id"));
    CHECK(eid != NULL);
    snprintf(path, sizeof(path), "/exec/%s/start", eid ? eid : "x");
    CHECK(docker_stream(d, "POST", path, "{}", &cb, util_now_ms() + 5000,
                        NULL) == 0);
    CHECK_STREQ(col.out.data, "out\n");
    CHECK_STREQ(col.err.data, "err\n");
    snprintf(path, sizeof(path), "/exec/%s/json", eid ? eid : "x");
    info = NULL;
    CHECK(docker_call_json(d, "GET", path, NULL, &info, 0, NULL) == 0);
    CHECK(json_is_false(json_object_get(info, "Running")));
    CHECK(json_integer_value(json_object_get(info, "ExitCode")) == 7);
    json_decref(info);
    json_decref(resp);
    json_decref(ex);
    json_decref(body);
    collected_release(&col);
    docker_free(d);
    fake_engine_stop(&f);
}

struct release_later {
    struct fake_engine *f;
    long ms;
};

static void *release_hold(void *arg)
{
    struct release_later *r = arg;

    poll(NULL, 0, (int)r->ms);
    fake_engine_hold(r->f, NULL, NULL, false);
    return NULL;
}

TEST(fake_engine__hold_delays_answer)
{
    struct fake_engine f = {0};
    struct release_later rl = {&f, 300};
    struct docker *d;
    pthread_t t;
    long long t0;

    fake_engine_start(&f);
    d = fake_engine_docker(&f);
    fake_engine_hold(&f, "GET", "/_ping", true);
    pthread_create(&t, NULL, release_hold, &rl);
    t0 = util_now_ms();
    CHECK(docker_call_json(d, "GET", "/_ping", NULL, NULL, 0, NULL) == 0);
    CHECK(util_now_ms() - t0 >= 250);
    pthread_join(t, NULL);
    CHECK(fake_engine_held(&f) == 0);
    docker_free(d);
    fake_engine_stop(&f);
}
