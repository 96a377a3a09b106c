/*
 * Writes what the service would send a notebook sandbox for one case of
 * tests/driver/cases.json, with the service's own code (driver.c,
 * notebook.c): the container's command, its environment and the job's
 * nonce as JSON (<out>.json), and the job stream for its stdin
 * (<out>.job). The recorder (record.py) runs the real driver with them,
 * so a recording tests both directions of the protocol.
 *
 *   driver_make_job CASES.json NAME OUT_PREFIX
 */
#include <jansson.h>
#include <stdio.h>

#include "nbcanvas/driver.h"
#include "nbcanvas/notebook.h"
#include "nbcanvas/util.h"

static json_t *find_case(json_t *cases, const char *name)
{
    json_t *c;
    size_t i;

    json_array_foreach(cases, i, c) {
        if (strcmp(json_string_value(json_object_get(c, "name")), name) == 0)
            return c;
    }
    return NULL;
}

static long long number(json_t *c, const char *key, long long fallback)
{
    json_t *v = json_object_get(c, key);

    return json_is_integer(v) ? json_integer_value(v) : fallback;
}

static int write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(data, 1, len, f) == len;

    if (f)
        ok = fclose(f) == 0 && ok;
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    json_t *cases, *c, *nb = NULL, *header;
    const struct kernel_info *kernel = notebook_kernel_find("python3");
    struct tar_files none = TAR_FILES_INIT;
    struct buf job = BUF_INIT((size_t)-1);
    struct err err = ERR_INIT;
    char *path, *text, nonce[DRIVER_NONCE_LEN + 1];
    int rc;

    if (argc != 4) {
        fputs("usage: driver_make_job CASES.json NAME OUT_PREFIX\n", stderr);
        return 2;
    }
    cases = json_load_file(argv[1], 0, NULL);
    c = find_case(cases, argv[2]);
    if (!c) {
        fprintf(stderr, "driver_make_job: no case %s\n", argv[2]);
        return 2;
    }
    if (json_object_get(c, "raw_notebook"))
        nb = json_incref(json_object_get(c, "raw_notebook"));
    else if (notebook_from_cells(&nb, json_object_get(c, "cells"), kernel,
                                 &err) < 0) {
        fprintf(stderr, "driver_make_job: %s\n", err.msg);
        return 1;
    }
    {
        struct driver_job spec = {
            .kernel = "python3",
            .timeout_s = (long)number(c, "timeout_s", 30),
            .allow_errors = false,
            .include_input = false,
            .template_name = "canvas",
            .max_html_bytes = number(c, "max_html_bytes", 16 << 20),
            .artifacts = json_is_true(json_object_get(c, "artifacts")),
            .events = json_is_true(json_object_get(c, "events")),
            .max_artifact_bytes = 1 << 20,
            .max_result_bytes = 64 << 20,
        };

        rc = driver_write_job(&job, &spec, nb, &none, nonce, &err);
    }
    header = json_pack("{s:o, s:o, s:s}", "cmd", driver_command(), "env",
                       driver_environment("python3", false), "nonce",
                       rc == 0 ? nonce : "");
    text = json_dumps(header, JSON_INDENT(2));
    path = xasprintf("%s.json", argv[3]);
    if (rc == 0)
        rc = write_file(path, text, strlen(text));
    free(path);
    path = xasprintf("%s.job", argv[3]);
    if (rc == 0)
        rc = write_file(path, job.data, job.len);
    free(path);
    free(text);
    json_decref(header);
    json_decref(nb);
    json_decref(cases);
    buf_release(&job);
    if (rc < 0)
        fprintf(stderr, "driver_make_job: %s\n",
                err.msg[0] ? err.msg : "write failed");
    return rc < 0 ? 1 : 0;
}
