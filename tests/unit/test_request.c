#include "../check.h"
#include "nbcanvas/request.h"

static struct config cfg;

/* Every test parses against the built-in defaults. */
__attribute__((constructor)) static void defaults(void)
{
    config_defaults(&cfg);
}

static int parse(const char *body, struct err *err)
{
    struct render_request r;
    int rc = request_parse_render(&r, body, strlen(body), &cfg, err);

    request_render_release(&r);
    return rc;
}

TEST(request__defaults)
{
    const char *body = "{\"cells\": [\"print(1)\"]}";
    struct render_request r;

    CHECK(request_parse_render(&r, body, strlen(body), &cfg, NULL) == 0);
    CHECK(r.format == FORMAT_HTML);
    CHECK(!r.include_input);
    CHECK(r.cache);
    CHECK(r.timeout_s == 60);
    CHECK_STREQ(r.template_name, "lab");
    CHECK_STREQ(r.kernel->name, "python3");
    request_render_release(&r);
}

TEST(request__all_fields)
{
    const char *body =
        "{\"cells\": [{\"cell_type\": \"markdown\", \"source\": [\"# a\"]}],"
        " \"kernel\": \"python3\", \"format\": \"zip\", \"include_input\":"
        " true, \"template\": \"canvas\", \"timeout_s\": 5, \"allow_errors\":"
        " true, \"cache\": false, \"files\": [{\"name\": \"d/x.csv\","
        " \"content_base64\": \"YSxiCg==\"}]}";
    struct render_request r;

    CHECK(request_parse_render(&r, body, strlen(body), &cfg, NULL) == 0);
    CHECK(r.format == FORMAT_ZIP);
    CHECK(r.include_input && r.allow_errors && !r.cache);
    CHECK(r.timeout_s == 5);
    CHECK(r.files.n == 1);
    CHECK(r.files.v[0].len == 4 && memcmp(r.files.v[0].data, "a,b\n", 4) == 0);
    request_render_release(&r);
}

TEST(request__rejects)
{
    static const char *const bad[] = {
        "not json",
        "[1]",
        "{}",
        "{\"cells\": [], \"notebook\": {}}",
        "{\"cells\": [\"x\"], \"colour\": 1}",
        "{\"cells\": [\"x\"], \"format\": \"pdf\"}",
        "{\"cells\": [\"x\"], \"template\": \"fancy\"}",
        "{\"cells\": [\"x\"], \"kernel\": \"ruby\"}",
        "{\"cells\": [\"x\"], \"timeout_s\": 0}",
        "{\"cells\": [\"x\"], \"timeout_s\": 0.5}",
        "{\"cells\": [\"x\"], \"timeout_s\": 100000}",
        "{\"cells\": [\"x\"], \"timeout_s\": \"10\"}",
        "{\"cells\": [\"x\"], \"cache\": 1}",
        "{\"cells\": [7]}",
        "{\"cells\": [{\"cell_type\": \"python\", \"source\": \"x\"}]}",
        "{\"cells\": [{\"source\": 3}]}",
        "{\"cells\": [{\"source\": \"x\", \"outputs\": []}]}",
        "{\"cells\": [\"a\\u0000b\"]}",
        "{\"cells\": [\"x\"], \"cells\": [\"y\"]}",
        "{\"notebook\": {\"nbformat\": 3, \"cells\": []}}",
        "{\"notebook\": {\"nbformat\": 4, \"cells\": [1]}}",
        "{\"cells\": [\"x\"], \"files\": [{\"name\": \"a\", "
        "\"content_base64\": \"!!!\"}]}",
        "{\"cells\": [\"x\"], \"files\": [{\"name\": \"a\", "
        "\"content_base64\": \"\", \"mode\": 7}]}",
        "{\"cells\": [\"x\"], \"files\": [{\"name\": \"a\", "
        "\"content_base64\": \"\"}, {\"name\": \"a\", \"content_base64\": "
        "\"\"}]}",
        "{\"cells\": [\"x\"], \"files\": [{\"name\": \"a\", "
        "\"content_base64\": \"\"}, {\"name\": \"a/b\", \"content_base64\": "
        "\"\"}]}",
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct err err = ERR_INIT;

        if (parse(bad[i], &err) != ERR_INVALID)
            fprintf(stderr, "accepted: %s\n", bad[i]);
        CHECK(err.code == ERR_INVALID);
        CHECK(err.msg[0] != '\0');
    }
}

TEST(request__deep_nesting_rejected)
{
    static char body[300000];
    size_t i, n = 100000;
    struct err err = ERR_INIT;

    for (i = 0; i < n; i++)
        body[i] = '[';
    body[n] = '\0';
    CHECK(parse(body, &err) == ERR_INVALID);
}

TEST(request__file_names)
{
    static const char *const bad[] = {
        "",     "/abs", "../x", "a/../../b",          ".",        "a/./b",
        "a//b", "a\\b", "dir/", ".nbcanvas/job.json", ".nbcanvas"};
    static const char *const good[] = {"sales.csv", "data/db.sqlite",
                                       ".hidden", "a..b", "...x"};
    char long_name[300];
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(!request_file_name_ok(bad[i], strlen(bad[i])));
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        CHECK(request_file_name_ok(good[i], strlen(good[i])));
    CHECK(!request_file_name_ok("a\0b", 3));
    memset(long_name, 'x', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    CHECK(!request_file_name_ok(long_name, strlen(long_name)));
}

TEST(request__run)
{
    const char *body = "{\"language\": \"cpp\", \"code\": \"int main(){}\","
                       " \"stdin\": \"in\", \"timeout_s\": 3}";
    struct run_request r;
    struct err err = ERR_INIT;

    CHECK(request_parse_run(&r, body, strlen(body), &cfg, NULL) == 0);
    CHECK_STREQ(r.language, "cpp");
    CHECK_STREQ(r.stdin_data, "in");
    CHECK(r.timeout_s == 3);
    request_run_release(&r);

    body = "{\"language\": \"cpp\", \"code\": \"x\", \"image\": \"evil\"}";
    CHECK(request_parse_run(&r, body, strlen(body), &cfg, &err) ==
          ERR_INVALID);
    request_run_release(&r);
    body = "{\"code\": \"x\"}";
    CHECK(request_parse_run(&r, body, strlen(body), &cfg, &err) ==
          ERR_INVALID);
    request_run_release(&r);
}
