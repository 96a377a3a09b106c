/* Fuzz target: what a sandbox's relay sends, as the service reads it.
 * The input is the relay's whole stdout for one job: frames (relay_proto.h)
 * carrying Jupyter messages (jmsg.h), read by the executor running a
 * two-cell notebook, with an empty key (unsigned messages, so the fuzzer
 * can write valid ones) and the client session "s", so that the messages
 * answering the executor's requests have parents "s_1" (kernel_info),
 * "s_2" and "s_3" (the cells). Nothing here may crash, leak or hang: a
 * stream that stops early reads as a silent sandbox (a timeout). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "nbcanvas/executor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void ignore(void *ctx, struct relay_link *l,
                   const struct relay_frame *f)
{
    (void)ctx;
    (void)l;
    (void)f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sandbox sb = {0};
    struct relay_link link;
    struct executor ex;
    struct err err = ERR_INIT;
    json_t *nb = json_pack("{s:[{s:s, s:s, s:{}, s:[]}, {s:s, s:s, s:{}, "
                           "s:[]}], s:{}}",
                           "cells", "cell_type", "code", "source", "a",
                           "metadata", "outputs", "cell_type", "code",
                           "source", "b", "metadata", "outputs", "metadata");
    json_t *status = json_object();
    long counter = 0;

    relay_link_fake(&link, &sb, ignore, NULL, &err);
    relay_link_feed(&link, data, size);
    executor_init(&ex, &link, &counter);
    snprintf(ex.session, sizeof(ex.session), "s");
    ex.deadline_ms = (long long)1 << 62;
    ex.output_budget = 1 << 16;
    if (executor_kernel_info(&ex, nb, &err) == 0)
        (void)executor_run(&ex, nb, 0, status, &err);
    executor_release(&ex);
    relay_link_close(&link);
    json_decref(nb);
    json_decref(status);
    return 0;
}
