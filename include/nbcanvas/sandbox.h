#ifndef NBCANVAS_SANDBOX_H
#define NBCANVAS_SANDBOX_H

/*
 * One hardened job container: created with nbcanvas's labels and the
 * limits of struct sandbox_limits, a read-only root and size-limited tmpfs
 * for the working directory and /tmp, and removed by sandbox_destroy on
 * every path. Input goes in on the container's stdin and results come out
 * on its stdout: the archive API cannot reach a tmpfs mount, refuses a
 * read-only root, and costs the engine a helper process per call. Callers own a struct sandbox from sandbox_create until
 * sandbox_destroy, which never fails in a way they must handle.
 */

#include <jansson.h>
#include <stdbool.h>

#include "nbcanvas/buf.h"
#include "nbcanvas/config.h"
#include "nbcanvas/docker.h"
#include "nbcanvas/err.h"

#define SANDBOX_WORKDIR "/home/sandbox"
/* The sandbox user: a uid (and gid) that is no account on the host, where
 * 1000 is usually a real person's, and has no entry in the images either
 * (HOME and USER come from the environment). docs/SECURITY.md. */
#define SANDBOX_UID 100000
#define SANDBOX_LABEL "org.nbcanvas.managed"
#define SANDBOX_LOST_WAIT_MS 1000

struct sandbox_set;

struct sandbox {
    struct docker *docker;    /* borrowed */
    struct sandbox_set *live; /* borrowed, may be NULL: see below */
    char id[80];
    bool started;
    /* A notebook sandbox's kernel key, from its relay's READY frame
     * (relay_link.c); "" until then. Plain bytes: a sandbox is copied by
     * value between the pool, a job and the janitor. */
    char kernel_key[72];
};

struct sandbox_spec {
    const char *image;
    json_t *cmd; /* borrowed JSON array of strings */
    json_t *env; /* borrowed JSON array of "K=V" strings, may be NULL */
    const struct sandbox_limits *limits;
    const char *runtime; /* "" for the engine's default */
    const char *job_id;  /* the request id, for the label */
    /* Who made it, for the label: the listen address for a service (so a
     * restarted service finds what its previous run left), "cli-<pid>" for
     * one-shot commands. */
    const char *owner;
    /* The set of containers its owner holds right now (borrowed, may be
     * NULL): the container is in it from its creation to its removal. */
    struct sandbox_set *live;
    long long deadline_s; /* wall-clock epoch after which reapers remove it */
    /* The command is the container's init (pid 1): no docker-init in
     * front of it. A notebook sandbox's relay is: non-dumpable as pid 1,
     * the one holder of the container's stdin and stdout, no process of
     * the user's can reach them through /proc/1/fd. It reaps orphans. */
    bool own_init;
    /* Relative CPU weight (cgroup cpu.shares); 0: the engine's default
     * (1024). The pool starts its sandboxes low, so that a refill takes
     * what the jobs leave, and raises each once it is ready. */
    long cpu_shares;
};

/* The containers a process holds right now — in use, warm in the pool,
 * or queued for removal — by id. The reaper never removes one of them,
 * whatever its deadline label says: a wall clock that jumps forward makes
 * every label read as past. Thread-safe. */
struct sandbox_set *sandbox_set_new(void);
void sandbox_set_free(struct sandbox_set *set);
/* How many containers the set holds. */
long sandbox_set_count(struct sandbox_set *set);

/* The JSON body of POST /containers/create for spec (new reference);
 * separate so tests can check every hardening field. */
json_t *sandbox_create_body(const struct sandbox_spec *spec);

/* The id of image into out. A missing image, or an engine that does not
 * answer, is ERR_ENGINE with a message that says what to do. */
int sandbox_image_id(struct docker *d, const char *image, char *out,
                     size_t out_len, struct err *err);

/* The value of one of image's labels (caller frees), or NULL when the
 * image or the label is not there. */
char *sandbox_image_label(struct docker *d, const char *image,
                          const char *label);

/* Creates the container. A missing image is ERR_ENGINE. */
int sandbox_create(struct sandbox *sb, struct docker *d,
                   const struct sandbox_spec *spec, struct err *err);
int sandbox_start(struct sandbox *sb, struct err *err);
/* Streams the container's stdout and stderr (see docker_stream). */
int sandbox_attach(struct sandbox *sb, const struct docker_stream_cb *cb,
                   long long deadline_ms, struct err *err);
/* Like sandbox_attach, and also writes len bytes of input (borrowed) to
 * the container's stdin once the attach is live (after cb->on_open). */
int sandbox_attach_stdin(struct sandbox *sb, const char *input, size_t len,
                         const struct docker_stream_cb *cb,
                         long long deadline_ms, struct err *err);
/* Sets the container's relative CPU weight (0: the default). */
int sandbox_set_cpu_shares(struct sandbox *sb, long shares, struct err *err);
/* Opens a conversation with the container's stdin, stdout and stderr
 * (docker_conn), starting the container once the attach is live if it
 * is not running yet. err (borrowed) describes every later failure too. */
int sandbox_connect(struct sandbox *sb, struct docker_conn **out,
                    long long deadline_ms, struct err *err);
/* Runs cmd inside the running container, streaming its output to cb, and
 * stores its exit code in *exit_code (-1 if it did not finish). */
int sandbox_exec(struct sandbox *sb, json_t *cmd,
                 const struct docker_stream_cb *cb, long long deadline_ms,
                 int *exit_code, struct err *err);
/* Freezes (or thaws) every process of the container: a session's
 * sandbox between calls uses no CPU. Removal works on a frozen one. */
int sandbox_pause(struct sandbox *sb, bool pause, struct err *err);
/* True when the container's main process is running. */
bool sandbox_is_running(struct sandbox *sb);
/* The memory the container holds now, page cache left out; -1 when the
 * engine cannot say. */
long long sandbox_memory_bytes(struct sandbox *sb);
/* True when the container was removed from outside while we used it: it
 * is gone, or being removed. A forced removal kills the processes a moment
 * before the container stops reading as running, so a container that
 * still does is asked again for up to SANDBOX_LOST_WAIT_MS. */
bool sandbox_lost(struct sandbox *sb);
/* The error for a job whose sandbox was lost: ERR_ENGINE (retryable). */
int sandbox_lost_error(struct err *err);
/* True when the engine recorded an out-of-memory kill in the container. */
bool sandbox_oom_killed(struct sandbox *sb);
/* Kills and removes the container and its volume; safe to call twice and
 * on a sandbox that was never created. */
void sandbox_destroy(struct sandbox *sb);

enum sandbox_reap_mode {
    REAP_OWNED,  /* every container of owner: at start and at exit */
    REAP_EXPIRED /* any nbcanvas container past its deadline label */
};

/* Removes nbcanvas's containers chosen by mode, never one in live (may be
 * NULL). Returns how many were removed, or a negative ERR_* code. */
int sandbox_reap(struct docker *d, enum sandbox_reap_mode mode,
                 const char *owner, struct sandbox_set *live, struct err *err);

#endif
