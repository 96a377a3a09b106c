/*
 * The driver protocol (driver.c) against the real driver's messages,
 * recorded by tests/driver/record.py into tests/data/driver (or into the
 * folder named by $NBCANVAS_DRIVER_RECORDINGS: the docker suite records
 * afresh from the current image and runs this same file on the result),
 * and against hand-made malformed input.
 */
#include "../check.h"
#include "nbcanvas/driver.h"
#include "nbcanvas/util.h"

struct recording {
    struct buf out, errout;
    struct tar_files results;
    json_t *status;
    char nonce[DRIVER_NONCE_LEN + 1];
    struct driver_status st;
    int parsed;        /* driver_parse_status's answer */
    size_t results_at; /* where the results tar starts in out */
};

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct buf b = BUF_INIT((size_t)-1);
    char chunk[65536];
    size_t n;

    if (!f)
        return NULL;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    return buf_detach(&b, len);
}

static const char *recordings(void)
{
    const char *dir = getenv("NBCANVAS_DRIVER_RECORDINGS");

    return dir && dir[0] ? dir : NBCANVAS_SOURCE_DIR "/tests/data/driver";
}

/* Loads a recorded case and runs it through the service's parsers. */
static bool load(struct recording *r, const char *name)
{
    char *path, *data;
    size_t len = 0, at = 0, n = 0, from = 0;
    const struct tar_entry *e;
    bool ok = false;

    memset(r, 0, sizeof(*r));
    buf_init(&r->out, (size_t)-1);
    buf_init(&r->errout, (size_t)-1);
    path = xasprintf("%s/%s.stdout", recordings(), name);
    data = slurp(path, &len);
    free(path);
    if (data)
        buf_append(&r->out, data, len);
    free(data);
    path = xasprintf("%s/%s.stderr", recordings(), name);
    data = slurp(path, &len);
    free(path);
    if (data)
        buf_append(&r->errout, data, len);
    free(data);
    path = xasprintf("%s/%s.nonce", recordings(), name);
    data = slurp(path, &len);
    free(path);
    snprintf(r->nonce, sizeof(r->nonce), "%s", data ? data : "");
    free(data);
    if (driver_find_results(r->out.data, r->out.len, r->nonce, &from, &at, &n,
                            NULL) == 1 &&
        tarball_read(&r->results, r->out.data + at, n, NULL, 100, 64 << 20,
                     NULL) == 0) {
        r->results_at = at;
        e = tarball_find(&r->results, DRIVER_RESULT_STATUS);
        r->status = e ? json_loadb(e->data, e->len, 0, NULL) : NULL;
        r->parsed = driver_parse_status(&r->st, r->status, NULL);
        ok = r->status != NULL;
    }
    if (!ok)
        fprintf(stderr, "recording %s/%s is missing or unreadable\n",
                recordings(), name);
    return ok;
}

static void release(struct recording *r)
{
    buf_release(&r->out);
    buf_release(&r->errout);
    tarball_files_release(&r->results);
    json_decref(r->status);
}

static const char *status_string(struct recording *r, const char *key)
{
    return json_string_value(json_object_get(r->status, key));
}

TEST(driver__ok_case_has_every_result)
{
    struct recording r;
    const struct tar_entry *page;

    CHECK(load(&r, "ok"));
    CHECK(driver_is_ready(r.out.data, r.out.len));
    CHECK(r.parsed == 0);
    CHECK(r.st.outcome == DRIVER_OK);
    CHECK(json_is_object(r.st.timing_ms));
    CHECK(tarball_find(&r.results, DRIVER_RESULT_NOTEBOOK) != NULL);
    page = tarball_find(&r.results, DRIVER_RESULT_PAGE);
    CHECK(page && strstr(page->data, "hello") != NULL);
    /* two cells, each announced as it started */
    CHECK(driver_last_cell(r.errout.data, r.errout.len) == 1);
    release(&r);
}

/* The next event of the recording, as "kind index state-or-output-type". */
static bool next_event(struct recording *r, size_t *from, char *out,
                       size_t len)
{
    json_t *e = NULL, *output;

    if (driver_next_event(r->out.data, r->results_at, r->nonce, from, &e) != 1)
        return false;
    output = json_object_get(e, "output");
    snprintf(out, len, "%s %lld %s",
             json_string_value(json_object_get(e, "event")),
             json_integer_value(json_object_get(e, "index")),
             output ? json_string_value(json_object_get(output, "output_type"))
                    : json_string_value(json_object_get(e, "state")));
    json_decref(e);
    return true;
}

TEST(driver__events_come_in_order_before_the_results)
{
    static const char *const want[] = {
        "cell 0 running", "output 0 stream",         "cell 0 done",
        "cell 1 running", "output 1 execute_result", "cell 1 done"};
    struct recording r;
    char got[128];
    size_t from = 0, i;

    CHECK(load(&r, "events"));
    CHECK(r.st.outcome == DRIVER_OK);
    for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        CHECK(next_event(&r, &from, got, sizeof(got)));
        CHECK_STREQ(got, want[i]);
    }
    CHECK(!next_event(&r, &from, got, sizeof(got)));
    /* a job that asked for none gets none */
    release(&r);
    CHECK(load(&r, "ok"));
    from = 0;
    CHECK(!next_event(&r, &from, got, sizeof(got)));
    release(&r);
}

TEST(driver__event_lines_without_the_nonce_are_skipped)
{
    static const char nonce[] = "0d4d2a4c-58c2-4b47-9a4b-4f3a4bb8d1a7";
    const char
        *out = "nbcanvas:event 11111111-58c2-4b47-9a4b-4f3a4bb8d1a7 "
               "{\"event\":\"cell\",\"index\":9}\n"
               "nbcanvas:event 0d4d2a4c-58c2-4b47-9a4b-4f3a4bb8d1a7 not json\n"
               "junk nbcanvas:event 0d4d2a4c-58c2-4b47-9a4b-4f3a4bb8d1a7 {}\n"
               "nbcanvas:event 0d4d2a4c-58c2-4b47-9a4b-4f3a4bb8d1a7 "
               "{\"event\":\"cell\",\"index\":1}\n"
               "nbcanvas:event 0d4d2a4c-58c2-4b47-9a4b-4f3a4bb8d1a7 "
               "{\"event\":\"cell\",\"index\":2}";
    size_t from = 0;
    json_t *e = NULL;

    CHECK(driver_next_event(out, strlen(out), nonce, &from, &e) == 1);
    CHECK(json_integer_value(json_object_get(e, "index")) == 1);
    json_decref(e);
    /* the last line is not complete yet */
    CHECK(driver_next_event(out, strlen(out), nonce, &from, &e) == 0);
}

TEST(driver__cell_error_names_the_cell)
{
    struct recording r;

    CHECK(load(&r, "cell_error"));
    CHECK(r.parsed == 0);
    CHECK(r.st.outcome == DRIVER_CELL_ERROR);
    CHECK(r.st.cell == 1);
    CHECK_STREQ(status_string(&r, "ename"), "ZeroDivisionError");
    CHECK(json_is_array(json_object_get(r.status, "traceback")));
    /* the executed part comes back for the partial results */
    CHECK(tarball_find(&r.results, DRIVER_RESULT_NOTEBOOK) != NULL);
    release(&r);
}

TEST(driver__timeout_names_the_running_cell)
{
    struct recording r;

    CHECK(load(&r, "timeout"));
    CHECK(r.parsed == 0);
    CHECK(r.st.outcome == DRIVER_TIMEOUT);
    CHECK(r.st.cell == 0);
    release(&r);
}

TEST(driver__kernel_died_message_is_text)
{
    struct recording r;

    CHECK(load(&r, "kernel_died"));
    CHECK(r.parsed == 0); /* a list here once broke the contract */
    CHECK(r.st.outcome == DRIVER_KERNEL_DIED);
    CHECK(r.st.cell == 0);
    CHECK(driver_last_cell(r.errout.data, r.errout.len) == 0);
    release(&r);
}

TEST(driver__invalid_notebook_says_why)
{
    struct recording r;

    CHECK(load(&r, "invalid_notebook"));
    CHECK(r.parsed == 0);
    CHECK(r.st.outcome == DRIVER_INVALID_NOTEBOOK);
    CHECK(strlen(r.st.message) > 0);
    CHECK(driver_last_cell(r.errout.data, r.errout.len) == -1);
    release(&r);
}

TEST(driver__output_limit_from_the_job_cap)
{
    struct recording r;

    CHECK(load(&r, "output_limit"));
    CHECK(r.parsed == 0);
    CHECK(r.st.outcome == DRIVER_OUTPUT_LIMIT);
    CHECK(r.st.cell == 0);
    release(&r);
}

TEST(driver__artifacts_come_back_under_their_folder)
{
    struct recording r;
    const struct tar_entry *csv;

    CHECK(load(&r, "artifacts"));
    CHECK(r.parsed == 0);
    CHECK(r.st.outcome == DRIVER_OK);
    csv = tarball_find(&r.results, DRIVER_RESULT_ARTIFACTS "out.csv");
    CHECK(csv && csv->len == 8 && memcmp(csv->data, "a,b\n1,2\n", 8) == 0);
    release(&r);
}

#define NONCE "0b9f4c1e-2d3a-4b5c-8d7e-6f5a4b3c2d1e"

static int find(const char *s, size_t *at, size_t *n)
{
    size_t from = 0;

    return driver_find_results(s, strlen(s), NONCE, &from, at, n, NULL);
}

TEST(driver__done_line_is_read_only_when_whole)
{
    size_t at = 0, n = 0;
    const char *s = "nbcanvas:ready\nnbcanvas:done " NONCE " 5\nabc";

    CHECK(find("nbcanvas:done " NONCE " 1", &at, &n) == 0);
    CHECK(find(s, &at, &n) == 0);
    CHECK(n == 5 && at == strlen(s) - 3);
    CHECK(find("nbcanvas:done " NONCE " 3\nabc", &at, &n) == 1);
    CHECK(find("nbcanvas:done " NONCE " 3x\nabc", &at, &n) == ERR_INTERNAL);
    CHECK(find("nbcanvas:done " NONCE " \n", &at, &n) == ERR_INTERNAL);
}

TEST(driver__done_line_without_the_nonce_is_ignored)
{
    size_t at = 0, n = 0;
    /* what the user's code can write into the channel before the driver */
    const char *forged = "nbcanvas:done 3\nabcnbcanvas:done "
                         "00000000-0000-0000-0000-000000000000 3\nxyz"
                         "unfinished linenbcanvas:done " NONCE " 2\nok";

    CHECK(find(forged, &at, &n) == 1);
    CHECK(n == 2 && memcmp(forged + at, "ok", 2) == 0);
    CHECK(find("nbcanvas:done 3\nabc", &at, &n) == 0);
}

TEST(driver__done_line_found_as_output_grows_byte_by_byte)
{
    /* Junk first (what user code may write), then the line, fed one byte
     * at a time as the stream brings it: found once whole, wherever the
     * chunks cut it, and each call scans only what is new. */
    char s[4096];
    size_t len, i, from = 0, at = 0, n = 0, scanned = 0;
    int rc = 0;

    memset(s, 'x', 3000); /* junk */
    snprintf(s + 3000, sizeof(s) - 3000,
             "nbcanvas:done 1\nmore junknbcanvas:done " NONCE " 4\ntar!");
    len = strlen(s);

    for (i = 1; i <= len && rc == 0; i++) {
        size_t before = from;

        rc = driver_find_results(s, i, NONCE, &from, &at, &n, NULL);
        CHECK(from >= before); /* never backwards */
        scanned += i - before;
    }
    CHECK(rc == 1 && i - 1 == len);
    CHECK(n == 4 && memcmp(s + at, "tar!", 4) == 0);
    CHECK(scanned < 60 * len); /* not len * len / 2: a word per byte */
}

TEST(driver__progress_lines_only_at_line_starts)
{
    const char
        *s = "nbcanvas:cell 0\nnoise nbcanvas:cell 7\nnbcanvas:cell 2\n";

    CHECK(driver_last_cell(s, strlen(s)) == 2);
    CHECK(driver_last_cell("", 0) == -1);
    CHECK(driver_last_cell("nbcanvas:cell 4", 15) == 4);
}

TEST(driver__status_that_breaks_the_contract_is_refused)
{
    struct driver_status st;
    struct err err = ERR_INIT;
    json_t *j;

    j = json_pack("{s:s, s:[s]}", "status", "kernel_died", "message", "x");
    CHECK(driver_parse_status(&st, j, &err) == ERR_INTERNAL);
    CHECK(strstr(err.msg, "message") != NULL);
    json_decref(j);
    j = json_pack("{s:s}", "status", "exploded");
    CHECK(driver_parse_status(&st, j, &err) == ERR_INTERNAL);
    json_decref(j);
    j = json_pack("{s:s, s:s}", "status", "timeout", "cell", "3");
    CHECK(driver_parse_status(&st, j, &err) == ERR_INTERNAL);
    json_decref(j);
    j = json_pack("{s:s, s:n}", "status", "timeout", "cell");
    CHECK(driver_parse_status(&st, j, &err) == 0 && st.cell == -1);
    json_decref(j);
    CHECK(driver_parse_status(&st, NULL, &err) == ERR_INTERNAL);
}

TEST(driver__job_stream_is_header_and_tar)
{
    struct driver_job spec = {.kernel = "python3",
                              .timeout_s = 7,
                              .allow_errors = true,
                              .template_name = "lab",
                              .max_html_bytes = 1000,
                              .artifacts = true,
                              .max_artifact_bytes = 2000,
                              .structured = true,
                              .table_rows = 25,
                              .max_result_bytes = 5 << 20};
    struct tar_files files = TAR_FILES_INIT, got = TAR_FILES_INIT;
    struct buf job = BUF_INIT((size_t)-1);
    json_t *nb = json_pack("{s:i}", "nbformat", 4), *j = NULL;
    const struct tar_entry *e;
    char nonce[DRIVER_NONCE_LEN + 1], seen[DRIVER_NONCE_LEN + 1] = "";
    char other[DRIVER_NONCE_LEN + 1];
    unsigned long n = 0;
    int used = 0;

    tarball_files_add(&files, xstrdup("data.csv"), xstrdup("1,2"), 3);
    CHECK(driver_write_job(&job, &spec, nb, &files, nonce, NULL) == 0);
    CHECK(sscanf(job.data, "nbcanvas:job %lu %36s\n%n", &n, seen, &used) == 2);
    CHECK(strlen(nonce) == DRIVER_NONCE_LEN);
    CHECK_STREQ(seen, nonce);
    CHECK(used > 0 && job.len == (size_t)used + n);
    CHECK(tarball_read(&got, job.data + used, n, NULL, 10, 1 << 20, NULL) ==
          0);
    CHECK(tarball_find(&got, "data.csv") != NULL);
    CHECK(tarball_find(&got, DRIVER_JOB_NOTEBOOK) != NULL);
    e = tarball_find(&got, DRIVER_JOB_SPEC);
    if (e)
        j = json_loadb(e->data, e->len, 0, NULL);
    CHECK(json_integer_value(json_object_get(j, "timeout_s")) == 7);
    CHECK(json_is_true(json_object_get(j, "artifacts")));
    CHECK(json_is_true(json_object_get(j, "structured")));
    CHECK(json_integer_value(json_object_get(j, "table_rows")) == 25);
    /* the driver's cap leaves room for the tar's own headers */
    CHECK(json_integer_value(json_object_get(j, "max_result_bytes")) > 0 &&
          json_integer_value(json_object_get(j, "max_result_bytes")) <
              5 << 20);
    json_decref(j);
    /* every job gets its own nonce */
    buf_reset(&job);
    CHECK(driver_write_job(&job, &spec, nb, &files, other, NULL) == 0);
    CHECK(strcmp(other, nonce) != 0);
    json_decref(nb);
    buf_release(&job);
    tarball_files_release(&files);
    tarball_files_release(&got);
}
