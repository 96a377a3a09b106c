/* The executor against a fake kernel (fake_kernel.h): nbclient 0.7's
 * semantics, one property a test. */
#include "../check.h"
#include "fake_kernel.h"
#include "nbcanvas/executor.h"
#include "nbcanvas/util.h"

struct run {
    struct fake_kernel kernel;
    struct sandbox sb;
    struct relay_link link;
    struct executor ex;
    struct err err;
    long counter;
    json_t *nb, *status;
    json_t *events;
    int rc;
};

static void keep_event(void *ctx, json_t *event)
{
    json_array_append(ctx, event);
}

/* A notebook of code cells (NULL-terminated sources). */
static json_t *notebook(const char *const *sources)
{
    json_t *nb = json_pack("{s:[], s:{}, s:i, s:i}", "cells", "metadata",
                           "nbformat", 4, "nbformat_minor", 5);

    for (; *sources; sources++)
        json_array_append_new(json_object_get(nb, "cells"),
                              json_pack("{s:s, s:s, s:{}, s:[], s:n}",
                                        "cell_type", "code", "source",
                                        *sources, "metadata", "outputs",
                                        "execution_count"));
    return nb;
}

static void start(struct run *r, json_t *nb)
{
    memset(r, 0, sizeof(*r));
    r->kernel.key = "k";
    snprintf(r->sb.kernel_key, sizeof(r->sb.kernel_key), "k");
    relay_link_fake(&r->link, &r->sb, fake_kernel_peer, &r->kernel, &r->err);
    executor_init(&r->ex, &r->link, &r->counter);
    r->ex.deadline_ms = util_now_ms() + 60000;
    r->ex.output_budget = 1 << 20;
    r->events = json_array();
    r->ex.on_event = keep_event;
    r->ex.event_ctx = r->events;
    r->nb = nb;
    r->status = json_object();
}

static void go(struct run *r)
{
    r->rc = executor_kernel_info(&r->ex, r->nb, &r->err);
    if (r->rc == 0)
        r->rc = executor_run(&r->ex, r->nb, 0, r->status, &r->err);
}

static void finish(struct run *r)
{
    executor_release(&r->ex);
    relay_link_close(&r->link);
    json_decref(r->nb);
    json_decref(r->status);
    json_decref(r->events);
}

static json_t *cell(struct run *r, size_t i)
{
    return json_array_get(json_object_get(r->nb, "cells"), i);
}

static json_t *output(struct run *r, size_t i, size_t j)
{
    return json_array_get(json_object_get(cell(r, i), "outputs"), j);
}

static const char *text_of(json_t *out)
{
    json_t *t = json_object_get(out, "text");

    return json_string_value(
        t ? t : json_object_get(json_object_get(out, "data"), "text/plain"));
}

static const char *status_word(struct run *r)
{
    return json_string_value(json_object_get(r->status, "status"));
}

TEST(executor__outputs_counts_and_language_info)
{
    const char *src[] = {"out hello\nresult 42", "out again", NULL};
    struct run r;

    start(&r, notebook(src));
    go(&r);
    CHECK(r.rc == 0);
    CHECK_STREQ(status_word(&r), "ok");
    CHECK_STREQ(json_string_value(json_object_get(
                    json_object_get(json_object_get(r.nb, "metadata"),
                                    "language_info"),
                    "name")),
                "python");
    CHECK(json_array_size(json_object_get(cell(&r, 0), "outputs")) == 2);
    CHECK_STREQ(
        json_string_value(json_object_get(output(&r, 0, 0), "output_type")),
        "stream");
    CHECK_STREQ(text_of(output(&r, 0, 0)), "hello");
    CHECK_STREQ(
        json_string_value(json_object_get(output(&r, 0, 1), "output_type")),
        "execute_result");
    CHECK(json_integer_value(
              json_object_get(cell(&r, 0), "execution_count")) == 1);
    CHECK(json_integer_value(
              json_object_get(cell(&r, 1), "execution_count")) == 2);
    /* transient is never kept */
    CHECK(!json_object_get(output(&r, 0, 1), "transient"));
    finish(&r);
}

TEST(executor__streams_are_not_merged)
{
    const char *src[] = {"out a\nout b", NULL};
    struct run r;

    start(&r, notebook(src));
    go(&r);
    CHECK(json_array_size(json_object_get(cell(&r, 0), "outputs")) == 2);
    finish(&r);
}

TEST(executor__clear_output_wait_waits_for_the_next_output)
{
    const char *src[] = {"out a\nclearwait\nout b", "out a\nclear",
                         "out a\nclearwait", NULL};
    struct run r;

    start(&r, notebook(src));
    go(&r);
    CHECK(json_array_size(json_object_get(cell(&r, 0), "outputs")) == 1);
    CHECK_STREQ(text_of(output(&r, 0, 0)), "b");
    CHECK(json_array_size(json_object_get(cell(&r, 1), "outputs")) == 0);
    /* a clear that nothing follows leaves the outputs as they are */
    CHECK(json_array_size(json_object_get(cell(&r, 2), "outputs")) == 1);
    finish(&r);
}

TEST(executor__display_id_updates_every_earlier_output_across_cells)
{
    const char *src[] = {"display d1 first\ndisplay - other",
                         "display d1 second\nupdate d1 third", NULL};
    struct run r;

    start(&r, notebook(src));
    go(&r);
    CHECK_STREQ(text_of(output(&r, 0, 0)), "third");
    CHECK_STREQ(text_of(output(&r, 0, 1)), "other");
    /* the update adds no output of its own */
    CHECK(json_array_size(json_object_get(cell(&r, 1), "outputs")) == 1);
    CHECK_STREQ(text_of(output(&r, 1, 0)), "third");
    finish(&r);
}

TEST(executor__an_error_stops_the_notebook_and_names_its_cell)
{
    const char *src[] = {"out before", "raise ValueError", "out after", NULL};
    struct run r;

    start(&r, notebook(src));
    go(&r);
    CHECK(r.rc == 0);
    CHECK_STREQ(status_word(&r), "cell_error");
    CHECK(json_integer_value(json_object_get(r.status, "cell")) == 1);
    CHECK_STREQ(json_string_value(json_object_get(r.status, "ename")),
                "ValueError");
    CHECK(json_is_null(json_object_get(cell(&r, 2), "execution_count")));
    CHECK(r.kernel.count == 2);
    finish(&r);
}

TEST(executor__allow_errors_and_the_raises_exception_tag_go_on)
{
    const char *src[] = {"raise ValueError", "out after", NULL};
    struct run r;

    start(&r, notebook(src));
    r.ex.allow_errors = true;
    go(&r);
    CHECK_STREQ(status_word(&r), "ok");
    CHECK_STREQ(text_of(output(&r, 1, 0)), "after");
    finish(&r);

    start(&r, notebook(src));
    json_object_set_new(json_object_get(cell(&r, 0), "metadata"), "tags",
                        json_pack("[s]", "raises-exception"));
    go(&r);
    CHECK_STREQ(status_word(&r), "ok");
    CHECK(json_array_size(json_object_get(cell(&r, 1), "outputs")) == 1);
    finish(&r);
}

TEST(executor__skipped_cells_are_left_as_they_are)
{
    const char *src[] = {"out one", "   \n", "out three", "out four", NULL};
    struct run r;

    start(&r, notebook(src));
    json_object_set_new(json_object_get(cell(&r, 2), "metadata"), "tags",
                        json_pack("[s]", "skip-execution"));
    json_object_set_new(cell(&r, 3), "cell_type", json_string("markdown"));
    go(&r);
    CHECK(r.kernel.count == 1);
    CHECK(json_is_null(json_object_get(cell(&r, 1), "execution_count")));
    CHECK(json_is_null(json_object_get(cell(&r, 2), "execution_count")));
    CHECK(!json_object_get(json_object_get(cell(&r, 2), "metadata"),
                           "execution"));
    finish(&r);
}

TEST(executor__a_cell_past_the_deadline_is_a_timeout_and_the_code_stops)
{
    const char *src[] = {"out start", "hang", "out never", NULL};
    struct run r;

    start(&r, notebook(src));
    go(&r);
    CHECK(r.rc == 0);
    CHECK_STREQ(status_word(&r), "timeout");
    CHECK(json_integer_value(json_object_get(r.status, "cell")) == 1);
    CHECK(r.kernel.last_signal == RELAY_SIG_STOP_ALL);
    finish(&r);

    /* a session's cell is interrupted instead; with no answer to the
     * interrupt, the session is over */
    start(&r, notebook(src));
    r.ex.stop = EXECUTOR_INTERRUPT;
    go(&r);
    CHECK(r.kernel.last_signal == RELAY_SIG_INTERRUPT);
    CHECK(json_is_true(json_object_get(r.status, "session_over")));
    finish(&r);
}

TEST(executor__a_dead_kernel_is_named_with_its_cell)
{
    const char *src[] = {"out fine", "die", NULL};
    struct run r;

    start(&r, notebook(src));
    go(&r);
    CHECK_STREQ(status_word(&r), "kernel_died");
    CHECK(json_integer_value(json_object_get(r.status, "cell")) == 1);
    finish(&r);
}

TEST(executor__output_past_the_budget_is_output_limit)
{
    const char *src[] = {"out 0123456789\nout 0123456789", NULL};
    struct run r;

    start(&r, notebook(src));
    r.ex.output_budget = 15;
    go(&r);
    CHECK_STREQ(status_word(&r), "output_limit");
    CHECK(json_array_size(json_object_get(cell(&r, 0), "outputs")) == 1);
    finish(&r);
}

TEST(executor__messages_of_other_requests_are_dropped)
{
    const char *src[] = {"foreign intruder\nout mine", NULL};
    struct run r;

    start(&r, notebook(src));
    go(&r);
    CHECK(json_array_size(json_object_get(cell(&r, 0), "outputs")) == 1);
    CHECK_STREQ(text_of(output(&r, 0, 0)), "mine");
    finish(&r);
}

TEST(executor__a_message_with_a_wrong_signature_ends_the_job)
{
    const char *src[] = {"forged intruder\nout mine", NULL};
    struct run r;

    start(&r, notebook(src));
    go(&r);
    CHECK(r.rc == ERR_INTERNAL);
    CHECK(strstr(r.err.msg, "signature") != NULL);
    finish(&r);
}

TEST(executor__timing_metadata_and_events)
{
    const char *src[] = {"out x", NULL};
    json_t *timing;
    struct run r;

    start(&r, notebook(src));
    go(&r);
    timing = json_object_get(json_object_get(cell(&r, 0), "metadata"),
                             "execution");
    CHECK(json_is_string(json_object_get(timing, "iopub.status.busy")));
    CHECK(json_is_string(json_object_get(timing, "iopub.execute_input")));
    CHECK(json_is_string(json_object_get(timing, "shell.execute_reply")));
    CHECK(json_is_string(json_object_get(timing, "iopub.status.idle")));
    /* running, the output, done */
    CHECK(json_array_size(r.events) == 3);
    CHECK_STREQ(json_string_value(
                    json_object_get(json_array_get(r.events, 1), "event")),
                "output");
    finish(&r);
}

TEST(executor__widget_state_goes_into_the_metadata)
{
    const char *src[] = {"widget c1 7", NULL};
    json_t *state;
    struct run r;

    start(&r, notebook(src));
    go(&r);
    state = json_object_get(
        json_object_get(
            json_object_get(json_object_get(r.nb, "metadata"), "widgets"),
            "application/vnd.jupyter.widget-state+json"),
        "state");
    CHECK_STREQ(
        json_string_value(json_object_get(
            json_object_get(json_object_get(state, "c1"), "state"), "value")),
        "7");
    finish(&r);
}

TEST(executor__stop_on_error_as_nbclient_sends_it_but_not_in_a_session)
{
    const char *src[] = {"out x", NULL};
    struct run r;

    start(&r, notebook(src));
    go(&r);
    CHECK(r.kernel.stop_on_error == 1);
    finish(&r);

    start(&r, notebook(src));
    r.ex.allow_errors = true;
    go(&r);
    CHECK(r.kernel.stop_on_error == 0);
    finish(&r);

    /* a session's next call may come in the moment after an error, which
     * ipykernel would abort */
    start(&r, notebook(src));
    r.ex.stop = EXECUTOR_INTERRUPT;
    go(&r);
    CHECK(r.kernel.stop_on_error == 0);
    finish(&r);
}
