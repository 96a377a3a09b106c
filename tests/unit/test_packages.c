/*
 * Requirements and %pip lines (packages.c), without pip or an engine:
 * what a request may name, what is refused and why, and how the lines a
 * model writes become packages (or a clear error without a source).
 */
#include "../check.h"
#include "nbcanvas/buf.h"
#include "nbcanvas/packages.h"

#include <string.h>

static bool ok(const char *spec)
{
    char why[96];

    return packages_spec_ok(spec, why, sizeof(why));
}

TEST(packages__plain_requirements_pass)
{
    CHECK(ok("tabulate"));
    CHECK(ok("tabulate==0.9.0"));
    CHECK(ok("humanize>=4"));
    CHECK(ok("requests[socks,security] >=2.0, <3"));
    CHECK(ok("Pillow~=10.0"));
    CHECK(ok("x.y_z-w===1.0.post1"));
    CHECK(ok("pywin32; sys_platform == 'win32'"));
    CHECK(ok("a; python_version >= \"3.8\" and (os_name == 'posix' or extra "
             "== 'x')"));
}

TEST(packages__urls_paths_options_and_code_are_refused)
{
    static const char *const bad[] = {"",
                                      "-r/etc/passwd",
                                      "--index-url=http://x",
                                      " -e .",
                                      "x @ http://x/x.whl",
                                      "../x",
                                      "/etc/passwd",
                                      "x==1.0 --pre",
                                      "x[",
                                      "x>=",
                                      "x==1.0;",
                                      "numpy; import os",
                                      "x; __import__('os') == 'a'",
                                      "x\nimport os",
                                      "x==1 ; os_name == 'a\\'b'",
                                      "x[y]z",
                                      "_x",
                                      "x_",
                                      "x y"};
    char long_name[260];
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (ok(bad[i])) {
            fprintf(stderr, "accepted: %s\n", bad[i]);
            CHECK(0);
        }
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    CHECK(!ok(long_name));
}

TEST(packages__a_list_names_the_bad_entry)
{
    struct config cfg;
    struct err err = ERR_INIT;
    json_t *out = NULL, *list = json_pack("[s, s]", "tabulate", "-rx");

    config_defaults(&cfg);
    /* no source: the field itself is refused */
    CHECK(packages_parse(&out, list, &cfg, &err) == ERR_INVALID);
    CHECK(strstr(err.msg, "package_index_url") != NULL);
    snprintf(cfg.package_index_url, sizeof(cfg.package_index_url),
             "http://127.0.0.1:1/simple/");
    CHECK(packages_parse(&out, list, &cfg, &err) == ERR_INVALID);
    CHECK(strstr(err.msg, "packages[1]") != NULL);
    json_decref(list);
    list = json_pack("[s]", "tabulate");
    CHECK(packages_parse(&out, list, &cfg, &err) == 0);
    CHECK(json_array_size(out) == 1);
    json_decref(list);
    json_decref(out);
}

static json_t *notebook(const char *source)
{
    return json_pack("{s:[{s:s, s:s}]}", "cells", "cell_type", "code",
                     "source", source);
}

static const char *source_of(json_t *nb)
{
    return json_string_value(json_object_get(
        json_array_get(json_object_get(nb, "cells"), 0), "source"));
}

TEST(packages__pip_lines_become_packages)
{
    struct config cfg;
    json_t *pk = NULL;
    json_t *nb = notebook(
        "import os\n  %pip install -q seaborn tabulate==0.9\n"
        "!python -m pip install 'humanize>=4'\nprint(1)");

    config_defaults(&cfg);
    snprintf(cfg.wheelhouse_dir, sizeof(cfg.wheelhouse_dir), "/srv/wheels");
    packages_from_magics(nb, &pk, &cfg);
    CHECK(json_array_size(pk) == 3);
    CHECK_STREQ(json_string_value(json_array_get(pk, 0)), "seaborn");
    CHECK_STREQ(json_string_value(json_array_get(pk, 2)), "humanize>=4");
    CHECK(strstr(source_of(nb), "import os\n  print('nbcanvas: installed") ==
          source_of(nb));
    CHECK(strstr(source_of(nb), "%pip") == NULL);
    CHECK(strstr(source_of(nb), "\nprint(1)") != NULL);
    json_decref(nb);
    json_decref(pk);
}

TEST(packages__other_pip_lines_are_left_alone)
{
    struct config cfg;
    json_t *pk = NULL;
    const char *src = "!pip install --index-url http://x seaborn\n"
                      "%pip install -e .\n!pip install -r req.txt\n"
                      "%pip list";
    json_t *nb = notebook(src);

    config_defaults(&cfg);
    snprintf(cfg.wheelhouse_dir, sizeof(cfg.wheelhouse_dir), "/srv/wheels");
    packages_from_magics(nb, &pk, &cfg);
    CHECK(pk == NULL);
    CHECK_STREQ(source_of(nb), src);
    json_decref(nb);
}

TEST(packages__without_a_source_a_pip_line_says_how)
{
    struct config cfg;
    json_t *pk = NULL;
    json_t *nb = notebook("%pip install seaborn");

    config_defaults(&cfg);
    packages_from_magics(nb, &pk, &cfg);
    CHECK(pk == NULL);
    CHECK(strstr(source_of(nb), "raise RuntimeError") != NULL);
    CHECK(strstr(source_of(nb), "package_index_url") != NULL);
    json_decref(nb);
}

TEST(packages__pip_lines_stop_at_the_cap)
{
    struct config cfg;
    struct buf src = BUF_INIT((size_t)-1);
    json_t *pk = NULL, *nb;
    int i;

    for (i = 0; i < 40; i++)
        buf_printf(&src, "%%pip install pkg%d\n", i);
    nb = notebook(src.data);
    config_defaults(&cfg);
    snprintf(cfg.wheelhouse_dir, sizeof(cfg.wheelhouse_dir), "/srv/wheels");
    packages_from_magics(nb, &pk, &cfg);
    CHECK(json_array_size(pk) == PACKAGES_MAX);
    /* the lines past the cap are left as they were */
    CHECK(strstr(source_of(nb), "%pip install pkg39") != NULL);
    json_decref(nb);
    json_decref(pk);
    buf_release(&src);
}
