#ifndef NBCANVAS_TESTS_FAKE_SERVICE_H
#define NBCANVAS_TESTS_FAKE_SERVICE_H

/*
 * A struct service built by hand on the fake engine, for the unit tests of
 * the pipelines (render.c, runner.c) and of the pool: what service_open
 * builds, with the engine client pointed at a fresh fake, small known
 * limits instead of the machine's, and no janitor, so a used sandbox is
 * removed in-line, before render_run or runner_run returns.
 *
 *     struct fake_service fs;
 *     fake_service_start(&fs);          // the fake runs; cfg has defaults
 *     fs.svc.cfg.max_output_bytes = 64; // optional changes to the settings
 *     fake_service_open(&fs, 0, false); // no warm pool, no cache
 *     ... render_run(&out, &fs.svc, ...), checks on &fs.engine ...
 *     fake_service_stop(&fs);
 *
 * The pool borrows fs.svc.cfg: a struct fake_service must stay where it
 * is (no copies) from fake_service_open to fake_service_stop.
 */

#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "fake_engine.h"
#include "nbcanvas/service.h"
#include "nbcanvas/util.h"

#define FAKE_SERVICE_OWNER "test-owner"

struct fake_service {
    struct fake_engine engine;
    struct service svc;
    /* Set between fake_service_start (which clears it) and
     * fake_service_open: it also starts one warm exporter
     * (exporter.h), outside svc.pipe.live so that live counts sandboxes. */
    bool exporters;
};

/* Starts the fake engine and fills fs->svc.cfg with config_defaults,
 * pointed at the fake, with 2 job slots and a queue of 4. Returns 0 or -1. */
int fake_service_start(struct fake_service *fs);

/* Builds the rest of fs->svc from its cfg: the engine client, the set
 * of live containers, the job slots, the languages of languages.json, the metrics, a pool of
 * pool_size (0: always empty) and, if cache, the result cache and its
 * keys. Owner FAKE_SERVICE_OWNER; janitor NULL. Returns 0 or -1. */
int fake_service_open(struct fake_service *fs, long pool_size, bool cache);

/* service_close, then stops the fake. */
void fake_service_stop(struct fake_service *fs);

/* Polls the expression cond every 5 ms until it holds or ms have passed;
 * a test then CHECKs cond itself. */
#define WAIT_UNTIL(cond, ms)                                                  \
    for (long long wait_until_ = util_now_ms() + (ms);                        \
         !(cond) && util_now_ms() < wait_until_;)                             \
    poll(NULL, 0, 5)

/* How many containers the service holds (svc->pipe.live). */
long fake_service_live(struct fake_service *fs);

/* True when no job slot is held or waited for. */
bool fake_service_slots_free(struct fake_service *fs);

/* The index in the fake's log of the first request whose method is method
 * and whose path starts with prefix, or -1. */
long fake_service_log_index(struct fake_service *fs, const char *method,
                            const char *prefix);

/* How many requests of method have a path starting with prefix and
 * containing part (e.g. "/attach"). */
size_t fake_service_count_with(struct fake_service *fs, const char *method,
                               const char *prefix, const char *part);

/* How many requests of method have a path starting with prefix and a
 * body containing part. */
size_t fake_service_count_body(struct fake_service *fs, const char *method,
                               const char *prefix, const char *part);

/* True when the container id was removed with force=1&v=1 and no longer
 * exists. */
bool fake_service_removed(struct fake_service *fs, const char *id);

/* A gate a fake sandbox waits at until the test opens it (at most 10 s,
 * so a broken test fails rather than hangs). Open unless closed. */
struct fake_gate {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    bool closed;
};

void fake_gate_init(struct fake_gate *g);
void fake_gate_destroy(struct fake_gate *g);
void fake_gate_close(struct fake_gate *g);
void fake_gate_open(struct fake_gate *g);
void fake_gate_wait(struct fake_gate *g);

/* True when the JSON array of strings holds s. */
bool fake_service_has_string(json_t *array, const char *s);

#endif
