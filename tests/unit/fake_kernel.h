#ifndef NBCANVAS_TESTS_FAKE_KERNEL_H
#define NBCANVAS_TESTS_FAKE_KERNEL_H

/*
 * A fake Jupyter kernel behind a fake relay (relay_link_fake), for the
 * executor's unit tests: it answers kernel_info_request, and runs each
 * execute_request's code as a tiny script, one command a line, sending
 * the IOPub messages and the reply a real kernel would (busy,
 * execute_input, outputs, execute_reply, idle):
 *
 *   out TEXT            a stdout stream
 *   result TEXT         an execute_result (text/plain)
 *   display ID TEXT     a display_data, with display_id ID ("-": none)
 *   update ID TEXT      an update_display_data for ID
 *   clear / clearwait   clear_output (wait false / true)
 *   raise NAME          an error output, and an error reply
 *   widget ID KEY VAL   a comm_open of a jupyter.widget with one state
 *   foreign TEXT        a stream whose parent is another request
 *   forged TEXT         a stream signed with the wrong key
 *   hang                nothing more: no reply, no idle (a timeout)
 *   die                 the kernel exits (RELAY_EXIT)
 *   exit                the whole container ends (fake engine only)
 *   garbage             bytes that are no frame (what code writing into
 *                       the relay's stdout would leave)
 *
 * Silent requests get their reply and nothing on IOPub. Every frame the
 * link sent is counted by type in `sent`; `last_signal` records the last
 * signal. The relay's chores are answered as done (files placed, pip
 * succeeded, no artifacts, no such file), and a STOP_ALL signal ends the
 * kernel (RELAY_EXIT), as kill(-1) does.
 *
 * Two ways in: fake_kernel_peer behind relay_link_fake (the executor's
 * tests), or fake_relay_fn as an interactive attach script of the fake
 * engine (fake_engine.h), where it also says READY, with its key, on a
 * container's first attach (the pipelines' tests).
 */

#include <pthread.h>

#include "fake_engine.h"
#include "nbcanvas/relay_link.h"

struct fake_kernel {
    const char *key;
    int count;    /* the kernel's execution count */
    int sent[64]; /* frames received, by relay type */
    int last_signal;
    int stop_on_error; /* of the last execute_request: 0, 1, -1 absent */
    bool exit_now;     /* "exit" ran: the attach script ends the container */
    /* Called as an execute_request comes, before it is answered (a test
     * may make the engine report an OOM kill, say); may be NULL. */
    void (*on_execute)(void *ctx);
    void *on_execute_ctx;
    void (*on_die)(void *ctx); /* as "die" runs; may be NULL */
    void *on_die_ctx;
    /* As an attach script: the containers it said READY in, and the last
     * one a frame came from. Zero it, then init the lock. */
    pthread_mutex_t lock;
    char ready[16][65];
    int nready;
    char container[65];
    /* As the notebook image's script (fake_image_fn): the fake engine, to
     * tell an exporter's container from a sandbox by its command, and the
     * page the exporter makes. */
    struct fake_engine *engine;
    const char *page;
    int exports;     /* pages made */
    int validations; /* notebooks checked */
};

/* The peer function for relay_link_fake (ctx: a struct fake_kernel). */
void fake_kernel_peer(void *ctx, struct relay_link *l,
                      const struct relay_frame *f);

/* An interactive attach script (struct fake_script.interactive) running
 * the fake relay and kernel (ctx: a struct fake_kernel). */
void fake_relay_fn(void *ctx, const struct fake_stream_info *info,
                   struct fake_output *out);

/* An interactive attach script for every container of the notebook
 * image: exporters (their command runs nbcanvas_export.py) answer pages,
 * sandboxes run fake_relay_fn (ctx: a struct fake_kernel with engine and
 * page set). */
void fake_image_fn(void *ctx, const struct fake_stream_info *info,
                   struct fake_output *out);

#endif
