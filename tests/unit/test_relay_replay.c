/*
 * What the real relay and kernel said, replayed through the service's
 * executor: the recordings in tests/data/relay (or $RELAY_RECORDINGS) were
 * made by tests/relay/record.c from the cases of tests/relay/cases.json
 * with the real notebook image, and each must come out as the case
 * expects. tests/relay/check_live.sh records afresh and runs this again,
 * so a change to the relay, the kernel's image or the executor that
 * breaks the other side fails a test.
 */
#include "../check.h"
#include "nbcanvas/executor.h"
#include "nbcanvas/util.h"

#include <stdio.h>
#include <stdlib.h>

static void ignore(void *ctx, struct relay_link *l,
                   const struct relay_frame *f)
{
    (void)ctx;
    (void)l;
    (void)f;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct buf b = BUF_INIT((size_t)256 << 20);
    char chunk[65536];
    size_t n;

    if (!f)
        return NULL;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    return buf_detach(&b, len);
}

static const char *text_of(json_t *out)
{
    json_t *t = json_object_get(out, "text");

    return json_string_value(
        t ? t : json_object_get(json_object_get(out, "data"), "text/plain"));
}

/* Replays one case; true when it came out as expected. */
static bool replay(json_t *c, const char *dir)
{
    const char *name = json_string_value(json_object_get(c, "name"));
    json_t *expect = json_object_get(c, "expect"), *cells, *want, *nb;
    json_t *status = json_object();
    struct sandbox sb = {0};
    struct relay_link link;
    struct executor ex;
    struct err err = ERR_INIT;
    char path[4096], *stream, *key;
    size_t len, klen, i;
    long counter = 0;
    bool ok = true;
    int rc;

    snprintf(path, sizeof(path), "%s/%s.bin", dir, name);
    stream = slurp(path, &len);
    snprintf(path, sizeof(path), "%s/%s.key", dir, name);
    key = slurp(path, &klen);
    if (!stream || !key) {
        fprintf(stderr, "%s: no recording in %s\n", name, dir);
        free(stream);
        free(key);
        json_decref(status);
        return false;
    }
    snprintf(sb.kernel_key, sizeof(sb.kernel_key), "%.*s", (int)klen, key);
    nb = json_pack("{s:[], s:{}, s:i, s:i}", "cells", "metadata", "nbformat",
                   4, "nbformat_minor", 5);
    json_array_foreach(json_object_get(c, "cells"), i, want) {
        json_array_append_new(json_object_get(nb, "cells"),
                              json_pack("{s:s, s:O, s:{}, s:[], s:n}",
                                        "cell_type", "code", "source", want,
                                        "metadata", "outputs",
                                        "execution_count"));
    }
    relay_link_fake(&link, &sb, ignore, NULL, &err);
    relay_link_feed(&link, stream, len);
    executor_init(&ex, &link, &counter);
    snprintf(ex.session, sizeof(ex.session), "recorded");
    ex.deadline_ms = util_now_ms() + 60000;
    ex.output_budget = 1 << 24;
    rc = executor_kernel_info(&ex, nb, &err);
    if (rc == 0)
        rc = executor_run(&ex, nb, 0, status, &err);
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", name, err.msg);
        ok = false;
    }
    ok = ok && json_equal(json_object_get(status, "status"),
                          json_object_get(expect, "status"));
    if (json_object_get(expect, "cell"))
        ok = ok && json_equal(json_object_get(status, "cell"),
                              json_object_get(expect, "cell"));
    if (json_object_get(expect, "ename"))
        ok = ok && json_equal(json_object_get(status, "ename"),
                              json_object_get(expect, "ename"));
    cells = json_object_get(nb, "cells");
    json_array_foreach(json_object_get(expect, "outputs"), i, want) {
        json_t *outs = json_object_get(json_array_get(cells, i), "outputs");
        json_t *w;
        size_t j;

        ok = ok && json_array_size(outs) == json_array_size(want);
        json_array_foreach(want, j, w) {
            json_t *o = json_array_get(outs, j);
            const char *t = json_string_value(json_array_get(w, 1));

            ok = ok && json_equal(json_object_get(o, "output_type"),
                                  json_array_get(w, 0));
            ok = ok && (!t || (text_of(o) && strcmp(text_of(o), t) == 0));
        }
    }
    if (!ok) {
        char *got = json_dumps(cells, JSON_COMPACT);
        char *st = json_dumps(status, JSON_COMPACT);

        fprintf(stderr, "%s: status %s, cells %.2000s\n", name, st, got);
        free(got);
        free(st);
    }
    executor_release(&ex);
    relay_link_close(&link);
    json_decref(nb);
    json_decref(status);
    free(stream);
    free(key);
    return ok;
}

TEST(relay_replay__every_recorded_case_comes_out_as_expected)
{
    const char *dir = getenv("RELAY_RECORDINGS");
    json_t *cases = json_load_file(
               NBCANVAS_SOURCE_DIR "/tests/relay/cases.json", 0, NULL),
           *c;
    size_t i;

    if (!dir)
        dir = NBCANVAS_SOURCE_DIR "/tests/data/relay";
    CHECK(json_array_size(cases) > 0);
    json_array_foreach(cases, i, c) {
        bool ok = replay(c, dir);

        if (!ok)
            fprintf(stderr, "case %s failed\n",
                    json_string_value(json_object_get(c, "name")));
        CHECK(ok);
    }
    json_decref(cases);
}
