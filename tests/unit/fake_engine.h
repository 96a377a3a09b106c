#ifndef NBCANVAS_TESTS_FAKE_ENGINE_H
#define NBCANVAS_TESTS_FAKE_ENGINE_H

/*
 * A fake Docker engine for unit tests: a unix socket under /tmp served by
 * its own threads, speaking just enough of the Engine API for src/docker.c
 * and src/sandbox.c (ping and version, containers and their update, exec,
 * images, attach)
 * and answering from a small in-memory state machine instead of canned
 * replies, so a test can run the real client code end to end without an
 * engine, inspect every request it made, and inject faults.
 *
 *     struct fake_engine f = {0};
 *     fake_engine_start(&f);
 *     struct docker *d = fake_engine_docker(&f);   // or fake_engine_host()
 *     ... run code under test ...
 *     CHECK(fake_engine_count(&f, "DELETE", "/containers/") == 1);
 *     docker_free(d);
 *     fake_engine_stop(&f);
 *
 * Paths. The client puts the API version in front of every path
 * ("/v1.41/containers/create"); the fake strips it. Every path a test
 * passes in or reads back is the stripped one, with its query string
 * ("/containers/<id>?force=1&v=1"); struct fake_request.version keeps the
 * prefix ("1.41", or "" for unversioned calls such as /_ping).
 *
 * Streams. Attach (POST /containers/<id>/attach) and exec start
 * (POST /exec/<id>/start) are answered like the real engine: with
 * "101 UPGRADED" when the request asked for "Upgrade: tcp", else with
 * "200 OK" and a body that lasts until the connection closes; either way
 * the body is Docker's multiplexed stream (8-byte header: stream, 0, 0, 0,
 * big-endian length). Bytes the client writes after the request (stdin) are
 * recorded in the request's `input`. What the fake writes is a script (see
 * struct fake_script), set for every container or for one.
 *
 * Attach output starts only once the container has been started (as on a
 * real engine nothing runs before start); when an attach script ends
 * without hang, the container exits (State.Running false) and the stream
 * closes. Exec output starts at once.
 *
 * Like the engine, it answers 409 to removing a running container without
 * force=1 and to an exec in a container that is not running, 304 to
 * starting one that runs, 404 to any unknown id. Not modelled: chunked
 * request bodies, names as ids, list filters other than "label", and
 * everything the client does not call (wait, kill, logs, archive...:
 * 404 "page not found").
 *
 * Threads. All functions are thread-safe; a script callback runs on one of
 * the fake's connection threads.
 *
 * Ownership. struct fake_engine is the caller's (zero it, start, stop);
 * everything inside it belongs to the fake and is freed by
 * fake_engine_stop. Strings and scripts passed in are copied, except a
 * script's ctx, which must stay valid until the script is replaced or the
 * fake stopped. Everything handed out is a copy the caller frees as stated
 * at each function.
 */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct docker;
struct fake_engine_state;

struct fake_engine {
    /* Settings, read by fake_engine_start; zero means the default. */
    const char *api_version; /* GET /version's ApiVersion, "1.43" */
    /* The fake's own state; NULL until started. */
    struct fake_engine_state *state;
};

/* Starts listening on a new socket under /tmp. Returns 0, or -1 (with a
 * message on stderr) if the socket or thread cannot be made. */
int fake_engine_start(struct fake_engine *f);
/* Closes every connection, joins the threads, removes the socket file and
 * frees all state; f can be started again. Safe on a fake never started. */
void fake_engine_stop(struct fake_engine *f);

/* "unix:///tmp/...sock", what struct docker_opts.host expects (borrowed,
 * valid until stop). */
const char *fake_engine_host(const struct fake_engine *f);
/* A client for this fake (docker_new with a 5 s call timeout; the API
 * version is left at the client's default, 1.41, until the caller runs
 * docker_negotiate). The caller frees it with docker_free. */
struct docker *fake_engine_docker(const struct fake_engine *f);

/* ---- the request log ---------------------------------------------- */

struct fake_request {
    char *method;  /* "POST" */
    char *path;    /* without the version prefix, with the query */
    char *version; /* "1.41", "" when the path had no prefix */
    char *body;    /* NUL-terminated; "" when there was none */
    size_t body_len;
    char *input; /* bytes the client wrote on a stream (stdin) */
    size_t input_len;
    bool upgrade; /* the request asked for "Upgrade: tcp" */
    int status;   /* the status the fake answered with */
};

/* A request is logged when it is answered, after its effect on the state
 * and before the reply goes out: once a client call has returned, its
 * request is in the log. A stream is logged when it opens; its input grows
 * while it lasts. */

/* Requests whose method equals method (NULL: any) and whose path starts
 * with prefix (NULL or "": any). */
size_t fake_engine_count(struct fake_engine *f, const char *method,
                         const char *prefix);
/* Every request recorded so far. */
size_t fake_engine_nrequests(struct fake_engine *f);
/* Copies the n-th request (from 0, in arrival order) into *out; false if
 * there is none. Free the copy with fake_request_release. */
bool fake_engine_request(struct fake_engine *f, size_t n,
                         struct fake_request *out);
/* Like fake_engine_request, for the n-th request matching method and
 * prefix as in fake_engine_count. */
bool fake_engine_find(struct fake_engine *f, const char *method,
                      const char *prefix, size_t n, struct fake_request *out);
void fake_request_release(struct fake_request *r);
/* Waits until fake_engine_count(f, method, prefix) >= n or timeout_ms
 * passes; returns the last count seen. */
size_t fake_engine_wait(struct fake_engine *f, const char *method,
                        const char *prefix, size_t n, long timeout_ms);

/* ---- containers, execs and images ---------------------------------- */

/* Containers that exist now (created and not deleted). */
size_t fake_engine_containers(struct fake_engine *f);
bool fake_engine_has_container(struct fake_engine *f, const char *id);
/* The body a container was created with (new reference; NULL if there is
 * no such container). */
json_t *fake_engine_container_body(struct fake_engine *f, const char *id);
/* Puts a container in place without a request, as if it had been made
 * with body (borrowed; copied) and, if running, started. Its id goes into
 * id_out (65 bytes). Returns 0, or -1 if the fake is not started. */
int fake_engine_add_container(struct fake_engine *f, json_t *body,
                              bool running, char id_out[65]);
/* What GET /containers/<id>/json reports as State.OOMKilled. */
void fake_engine_set_oom(struct fake_engine *f, const char *id, bool oom);
/* Sets State.Running, as if the container had been started or had exited
 * (a stream already open stays open; removing the container ends it). */
void fake_engine_set_running(struct fake_engine *f, const char *id,
                             bool running);
/* Makes an image unknown (404 on inspect and create) or known again.
 * Every image is known unless said otherwise. */
void fake_engine_image_missing(struct fake_engine *f, const char *name,
                               bool missing);

/* ---- scripted streams ---------------------------------------------- */

struct fake_chunk {
    int stream; /* 1 stdout, 2 stderr */
    const char *data;
    size_t len; /* 0: strlen(data) */
};

/* What the callback learns about the stream it answers (all borrowed, for
 * the call only). */
struct fake_stream_info {
    const char *container_id;
    const char *exec_id; /* NULL for an attach */
    json_t *exec_body;   /* the exec's create body; NULL for an attach */
    const char *input;   /* stdin received so far */
    size_t input_len;
};

struct fake_output;
/* Adds a frame to what the stream writes. */
void fake_output_write(struct fake_output *out, int stream, const void *data,
                       size_t len);
/* Overrides the script's exit_code for this stream. */
void fake_output_exit_code(struct fake_output *out, int code);
/* Says the callback cannot answer before n bytes of stdin (in all) have
 * arrived: what it wrote this time is dropped, and it is called again,
 * with the longer input, once they are there (or the stream ends if the
 * client goes away first). For input whose length the callback learns
 * from the input itself, such as a header followed by n bytes. */
void fake_output_need_input(struct fake_output *out, size_t n);

/* Interactive scripts: says the callback used the first n bytes of the
 * input it was given (they are not given again). */
void fake_output_consume(struct fake_output *out, size_t n);

typedef void (*fake_script_fn)(void *ctx, const struct fake_stream_info *info,
                               struct fake_output *out);

struct fake_script {
    const struct fake_chunk *chunks; /* written first, in order */
    size_t nchunks;
    fake_script_fn fn; /* then, if set, whatever it writes */
    void *ctx;
    /* Output waits until this many stdin bytes have arrived. */
    size_t after_input;
    /* After the output, keep the stream open until the client goes away
     * (or the fake is stopped) instead of closing it. */
    bool hang;
    /* Exec: what GET /exec/<id>/json reports as ExitCode. Attach: the
     * container's exit code when the stream closes. */
    int exit_code;
    /* Send the first output in the same write as the response headers
     * (a client must cope with both arriving in one read). By default the
     * headers go alone and the output follows about 20 ms later. */
    bool coalesce;
    /* A conversation instead of one answer: fn is called once the stream
     * is live and again whenever stdin brings more, with the input it has
     * not consumed yet (fake_output_consume); what it writes goes out at
     * once. The stream lasts until the client leaves, the container goes
     * or fn sets an exit code. Chunks, after_input and hang are unused. */
    bool interactive;
};

enum fake_stream_kind { FAKE_ATTACH, FAKE_EXEC };

/* Sets the script of every kind stream of the container id, or, with id
 * NULL, the default for containers that have none of their own. script
 * NULL clears it. Without any script a stream writes nothing and closes
 * (exit code 0). The script is copied (but not its ctx). */
void fake_engine_script(struct fake_engine *f, enum fake_stream_kind kind,
                        const char *id, const struct fake_script *script);

/* ---- faults --------------------------------------------------------- */

/* The next count requests whose method equals method (NULL: any) and whose
 * path starts with prefix get status (500 if 0) and
 * {"message": message}, and change nothing. */
void fake_engine_fail(struct fake_engine *f, const char *method,
                      const char *prefix, int count, int status,
                      const char *message);
/* Engine down: every open connection is cut and new ones are closed at
 * once, unread (nothing is logged). false brings it back. */
void fake_engine_set_down(struct fake_engine *f, bool down);
/* While on, requests matching method (NULL: any) and prefix wait
 * unanswered (and unlogged) until it is turned off, the engine goes down
 * or the fake stops: an engine call that is in flight, made to last as
 * long as a test needs. One rule at a time; a new call replaces it. */
void fake_engine_hold(struct fake_engine *f, const char *method,
                      const char *prefix, bool on);
/* Requests waiting on the hold now. */
size_t fake_engine_held(struct fake_engine *f);

#endif
