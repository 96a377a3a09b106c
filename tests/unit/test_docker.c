/*
 * The engine client against a fake engine on a temporary unix socket: it
 * records each request line and answers with canned replies (recorded from
 * a real engine), so the exact method, path and body the client sends can
 * be checked, and faults (no engine, a hang, a huge reply) can be made.
 */
#include "../check.h"
#include "nbcanvas/docker.h"
#include "nbcanvas/util.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct fake {
    char path[108];
    int fd;
    const char *replies[8];
    int nreplies;
    char requests[8][512];
    int nrequests;
    bool hang;
    pthread_t thread;
};

static void read_request(int c, char *line, size_t cap)
{
    char req[65536];
    size_t n = 0;
    ssize_t got;
    char *end, *cl;
    size_t body = 0;

    while (n < sizeof(req) - 1 &&
           (got = read(c, req + n, sizeof(req) - 1 - n)) > 0) {
        n += (size_t)got;
        req[n] = '\0';
        end = strstr(req, "\r\n\r\n");
        if (!end)
            continue;
        cl = strcasestr(req, "Content-Length:");
        body = cl ? (size_t)strtol(cl + 15, NULL, 10) : 0;
        if (n >= (size_t)(end + 4 - req) + body)
            break;
    }
    snprintf(line, cap, "%.*s", (int)strcspn(req, "\r"), req);
    end = strstr(req, "\r\n\r\n");
    if (end && body)
        snprintf(line + strlen(line), cap - strlen(line), " %s", end + 4);
}

static void *serve(void *arg)
{
    struct fake *f = arg;
    int i;

    for (i = 0; i < f->nreplies; i++) {
        int c = accept(f->fd, NULL, NULL);

        if (c < 0)
            break;
        read_request(c, f->requests[f->nrequests++], sizeof(f->requests[0]));
        if (f->hang) {
            sleep(3);
        } else if (write(c, f->replies[i], strlen(f->replies[i])) < 0) {
            perror("write");
        }
        close(c);
    }
    return NULL;
}

static void fake_start(struct fake *f)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    snprintf(f->path, sizeof(f->path), "/tmp/nbcanvas-fake-%d-%p.sock",
             getpid(), (void *)f);
    unlink(f->path);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
    f->fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(f->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(f->fd, 8) < 0)
        perror("fake engine");
    pthread_create(&f->thread, NULL, serve, f);
}

static void fake_stop(struct fake *f)
{
    pthread_join(f->thread, NULL);
    close(f->fd);
    unlink(f->path);
}

static struct docker *client(struct fake *f, long timeout_ms)
{
    struct docker_opts o = DOCKER_OPTS_INIT;
    struct docker *d = NULL;
    char host[160];

    snprintf(host, sizeof(host), "unix://%s", f->path);
    o.host = host;
    o.call_timeout_ms = timeout_ms;
    docker_new(&d, &o, NULL);
    return d;
}

#define JSON_REPLY(status, body)                                              \
    "HTTP/1.1 " status "\r\nContent-Type: application/json\r\n"               \
    "Connection: close\r\n\r\n" body

TEST(docker__negotiate_caps_version)
{
    struct fake f = {
        .nreplies = 2,
        .replies = {JSON_REPLY("200 OK", "OK"),
                    JSON_REPLY("200 OK", "{\"ApiVersion\":\"1.50\","
                                         "\"MinAPIVersion\":\"1.24\"}")}};
    struct docker *d;

    fake_start(&f);
    d = client(&f, 2000);
    CHECK(docker_negotiate(d, NULL) == 0);
    CHECK_STREQ(docker_api_version(d), "1.43");
    fake_stop(&f);
    CHECK_STREQ(f.requests[0], "GET /_ping HTTP/1.1");
    CHECK_STREQ(f.requests[1], "GET /v1.41/version HTTP/1.1");
    docker_free(d);
}

TEST(docker__older_engine_version_kept)
{
    struct fake f = {
        .nreplies = 2,
        .replies = {JSON_REPLY("200 OK", "OK"),
                    JSON_REPLY("200 OK", "{\"ApiVersion\":\"1.41\"}")}};
    struct docker *d;

    fake_start(&f);
    d = client(&f, 2000);
    CHECK(docker_negotiate(d, NULL) == 0);
    CHECK_STREQ(docker_api_version(d), "1.41");
    fake_stop(&f);
    docker_free(d);
}

TEST(docker__create_sends_body_and_maps_404)
{
    struct fake f = {
        .nreplies = 2,
        .replies = {JSON_REPLY("201 Created", "{\"Id\":\"abc123\"}"),
                    JSON_REPLY("404 Not Found",
                               "{\"message\":\"No such image: x:1\"}")}};
    struct docker *d;
    json_t *body = json_pack("{s:s}", "Image", "x:1"), *out = NULL;
    struct err err = ERR_INIT;

    fake_start(&f);
    d = client(&f, 2000);
    CHECK(docker_call_json(d, "POST", "/containers/create", body, &out, 0,
                           &err) == 0);
    CHECK_STREQ(json_string_value(json_object_get(out, "Id")), "abc123");
    json_decref(out);
    CHECK(docker_call_json(d, "POST", "/containers/create", body, &out, 0,
                           &err) == ERR_NOT_FOUND);
    CHECK(strstr(err.msg, "No such image") != NULL);
    fake_stop(&f);
    CHECK_STREQ(f.requests[0],
                "POST /v1.41/containers/create HTTP/1.1 {\"Image\":\"x:1\"}");
    json_decref(body);
    docker_free(d);
}

TEST(docker__no_engine_is_engine_error)
{
    struct docker_opts o = DOCKER_OPTS_INIT;
    struct docker *d = NULL;
    struct err err = ERR_INIT;

    o.host = "unix:///tmp/nbcanvas-no-such-engine.sock";
    docker_new(&d, &o, NULL);
    CHECK(docker_negotiate(d, &err) == ERR_ENGINE);
    CHECK(strstr(err.msg, "nbcanvas-no-such-engine") != NULL);
    docker_free(d);
    CHECK(docker_new(&d, &(struct docker_opts){"ftp://x", 1, 1}, &err) ==
          ERR_INVALID);
}

TEST(docker__hung_engine_times_out)
{
    struct fake f = {.nreplies = 1, .hang = true, .replies = {""}};
    struct docker *d;
    struct err err = ERR_INIT;
    long long t0 = util_now_ms();

    fake_start(&f);
    d = client(&f, 300);
    CHECK(docker_call_json(d, "GET", "/info", NULL, NULL, 0, &err) ==
          ERR_ENGINE);
    CHECK(util_now_ms() - t0 < 2500);
    fake_stop(&f);
    docker_free(d);
}

static int count_data(void *ctx, const char *data, size_t len)
{
    (void)data;
    *(size_t *)ctx += len;
    return 0;
}

TEST(docker__stream_deadline)
{
    struct fake f = {.nreplies = 1, .hang = true, .replies = {""}};
    struct docker *d;
    struct err err = ERR_INIT;
    size_t got = 0;
    struct docker_stream_cb cb = {NULL, count_data, &got, NULL, NULL};

    fake_start(&f);
    d = client(&f, 10000);
    CHECK(docker_stream(d, "POST", "/containers/x/attach", NULL, &cb,
                        util_now_ms() + 300, &err) == ERR_TIMEOUT);
    fake_stop(&f);
    docker_free(d);
}

TEST(docker__reply_over_cap)
{
    static char reply[200000];
    struct fake f = {.nreplies = 1, .replies = {reply}};
    struct docker *d;
    struct buf resp = BUF_INIT(1000);
    struct err err = ERR_INIT;
    long status = 0;
    size_t n;

    n = (size_t)snprintf(reply, sizeof(reply),
                         "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
    memset(reply + n, 'x', sizeof(reply) - n - 1);
    fake_start(&f);
    d = client(&f, 2000);
    CHECK(docker_request(d, "GET", "/containers/x/archive", NULL, 0, NULL,
                         &resp, &status, 0, &err) == ERR_OUTPUT);
    CHECK(resp.len == 1000);
    fake_stop(&f);
    buf_release(&resp);
    docker_free(d);
}
