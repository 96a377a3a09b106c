#include "../check.h"
#include "nbcanvas/config.h"
#include "nbcanvas/languages.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char *write_temp(const char *text)
{
    char *path = strdup("/tmp/nbcanvas-test-XXXXXX");
    int fd = mkstemp(path);

    if (write(fd, text, strlen(text)) < 0)
        perror("write");
    close(fd);
    return path;
}

TEST(config__load_and_reject)
{
    struct config cfg;
    struct err err = ERR_INIT;
    char *ok = write_temp("{\"listen\": \"127.0.0.1:9999\", \"render_pids\":"
                          " 99, \"run_cpus\": 0.5}");
    char *unknown = write_temp("{\"lisen\": \"x\"}");
    char *range = write_temp("{\"render_pids\": 1}");

    config_defaults(&cfg);
    CHECK(config_load(&cfg, ok, &err) == 0);
    CHECK_STREQ(cfg.listen, "127.0.0.1:9999");
    CHECK(cfg.render_limits.pids == 99);
    CHECK(cfg.run_limits.cpus == 0.5);
    CHECK(config_load(&cfg, unknown, &err) == ERR_INVALID);
    CHECK(strstr(err.msg, "lisen") != NULL);
    CHECK(config_load(&cfg, range, &err) == ERR_INVALID);
    config_finish(&cfg);
    CHECK(cfg.max_jobs >= 1 && cfg.max_queue == 2 * cfg.max_jobs);
    unlink(ok);
    unlink(unknown);
    unlink(range);
    free(ok);
    free(unknown);
    free(range);
}

TEST(config__shipped_languages_load)
{
    struct languages *l = NULL;
    struct err err = ERR_INIT;
    const struct language *c;

    CHECK(languages_load(&l, NBCANVAS_SOURCE_DIR "/languages.json", &err) ==
          0);
    CHECK(languages_count(l) >= 6);
    c = languages_find(l, "c");
    CHECK(c && c->compile && strcmp(c->extension, "c") == 0);
    CHECK(languages_find(l, "python3") &&
          !languages_find(l, "python3")->compile);
    languages_free(l);
}

TEST(config__bad_languages)
{
    struct languages *l = NULL;
    struct err err = ERR_INIT;
    char *p = write_temp("{\"x\": {\"image\": \"i\", \"extension\": \"../e\","
                         " \"command\": \"c\"}}");
    char *q = write_temp("{\"x\": {\"image\": \"i\", \"extension\": \"e\"}}");

    CHECK(languages_load(&l, p, &err) == ERR_INVALID);
    CHECK(languages_load(&l, q, &err) == ERR_INVALID);
    CHECK(strstr(err.msg, "command") != NULL);
    unlink(p);
    unlink(q);
    free(p);
    free(q);
}

/* A fake environment for config_load_env: name=value pairs. */
static const char *const *fake_env;

static const char *fake_get(const char *name)
{
    for (const char *const *p = fake_env; *p; p += 2)
        if (strcmp(p[0], name) == 0)
            return p[1];
    return NULL;
}

TEST(config__environment_overrides)
{
    static const char *const good[] = {"NBCANVAS_LISTEN",
                                       "127.0.0.1:8182",
                                       "NBCANVAS_MAX_JOBS",
                                       "3",
                                       "NBCANVAS_RUN_CPUS",
                                       "0.25",
                                       "NBCANVAS_ALLOW_UNAUTHENTICATED",
                                       "true",
                                       "NBCANVAS_ALLOWED_HOSTS",
                                       "a.example,b.example",
                                       "NBCANVAS_CACHE_REDIS_URL",
                                       "redis://127.0.0.1:6390",
                                       "NBCANVAS_CONFIG",
                                       "/not/a/key", /* not a key: ignored */
                                       NULL};
    static const char *const bad_number[] = {"NBCANVAS_MAX_JOBS", "three",
                                             NULL};
    static const char *const out_of_range[] = {"NBCANVAS_RENDER_PIDS", "1",
                                               NULL};
    struct config cfg;
    struct err err = ERR_INIT;

    config_defaults(&cfg);
    fake_env = good;
    CHECK(config_load_env(&cfg, fake_get, &err) == 0);
    CHECK_STREQ(cfg.listen, "127.0.0.1:8182");
    CHECK(cfg.max_jobs == 3);
    CHECK(cfg.run_limits.cpus == 0.25);
    CHECK(cfg.allow_unauthenticated);
    CHECK_STREQ(cfg.allowed_hosts, "a.example\nb.example\n");
    CHECK_STREQ(cfg.cache_redis_url, "redis://127.0.0.1:6390");

    fake_env = bad_number;
    CHECK(config_load_env(&cfg, fake_get, &err) == ERR_INVALID);
    CHECK(strstr(err.msg, "NBCANVAS_MAX_JOBS") != NULL);
    CHECK(strstr(err.msg, "'three' is not a number") != NULL);
    CHECK(cfg.max_jobs == 3); /* unchanged */
    fake_env = out_of_range;
    CHECK(config_load_env(&cfg, fake_get, &err) == ERR_INVALID);
    CHECK(strstr(err.msg, "between") != NULL);
}
