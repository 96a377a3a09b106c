/*
 * Records what the real relay and kernel say, for the replay test
 * (tests/unit/test_relay_replay.c): for each case of tests/relay/cases.json
 * a cold notebook sandbox is made as the service makes one, the service's
 * own executor runs the case's cells on it with the client session
 * "recorded" (so message ids are the same on every run), and everything
 * the relay sent after READY is written to <dir>/<name>.bin, its key to
 * <dir>/<name>.key.
 *
 *     relay_record tests/relay/cases.json <dir>
 *
 * tests/relay/check_live.sh records into a fresh folder and replays it:
 * a change on either side that breaks the other fails a test.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nbcanvas/executor.h"
#include "nbcanvas/pool.h"
#include "nbcanvas/service.h"
#include "nbcanvas/util.h"

#define SESSION "recorded"

static json_t *notebook_of(json_t *cells)
{
    json_t *nb = json_pack("{s:[], s:{}, s:i, s:i}", "cells", "metadata",
                           "nbformat", 4, "nbformat_minor", 5);
    json_t *src;
    size_t i;

    json_array_foreach(cells, i, src) {
        json_array_append_new(json_object_get(nb, "cells"),
                              json_pack("{s:s, s:O, s:{}, s:[], s:n}",
                                        "cell_type", "code", "source", src,
                                        "metadata", "outputs",
                                        "execution_count"));
    }
    return nb;
}

static int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(data, 1, len, f) == len;

    if (f && fclose(f) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

static int record(struct service *svc, json_t *c, const char *dir)
{
    const char *name = json_string_value(json_object_get(c, "name"));
    struct err err = ERR_INIT;
    struct sandbox sb = {0};
    struct relay_link link;
    struct buf tap = BUF_INIT(64 << 20);
    struct executor ex;
    json_t *nb = notebook_of(json_object_get(c, "cells"));
    json_t *status = json_object();
    long counter = 0;
    char path[4096];
    int rc;

    rc = pool_create_cold(svc->pipe.pools[0], &sb, "relay-record",
                          (long long)time(NULL) + 600, &err);
    if (rc == 0)
        rc = relay_link_open(&link, &sb, 1 << 20, util_now_ms() + 120000, NULL,
                             &err);
    if (rc == 0) {
        link.tap = &tap;
        executor_init(&ex, &link, &counter);
        snprintf(ex.session, sizeof(ex.session), SESSION);
        ex.deadline_ms = util_now_ms() + 60000;
        ex.output_budget = 1 << 24;
        ex.allow_errors = json_is_true(json_object_get(c, "allow_errors"));
        rc = executor_kernel_info(&ex, nb, &err);
        if (rc == 0)
            rc = executor_run(&ex, nb, 0, status, &err);
        executor_release(&ex);
        relay_link_close(&link);
    }
    if (rc == 0) {
        snprintf(path, sizeof(path), "%s/%s.bin", dir, name);
        rc = write_file(path, tap.data, tap.len);
        snprintf(path, sizeof(path), "%s/%s.key", dir, name);
        if (rc == 0)
            rc = write_file(path, sb.kernel_key, strlen(sb.kernel_key));
    }
    fprintf(stderr, "relay_record: %s: %s (%zu bytes)\n", name,
            rc == 0 ? json_string_value(json_object_get(status, "status"))
                    : err.msg,
            tap.len);
    sandbox_destroy(&sb);
    buf_release(&tap);
    json_decref(nb);
    json_decref(status);
    return rc;
}

int main(int argc, char **argv)
{
    struct service_options opts = {.one_shot = true};
    struct service svc;
    struct err err = ERR_INIT;
    json_t *cases, *c;
    size_t i;
    int failed = 0;

    if (argc != 3) {
        fprintf(stderr, "usage: relay_record CASES.json DIR\n");
        return 2;
    }
    cases = json_load_file(argv[1], 0, NULL);
    if (!json_is_array(cases) || service_open(&svc, &opts, &err) < 0) {
        fprintf(stderr, "relay_record: %s\n", err.msg);
        return 1;
    }
    json_array_foreach(cases, i, c) {
        failed |= record(&svc, c, argv[2]) != 0;
    }
    service_close(&svc);
    json_decref(cases);
    return failed;
}
