#ifndef NBCANVAS_RELAY_LINK_H
#define NBCANVAS_RELAY_LINK_H

/*
 * The service's end of a notebook sandbox's relay (src/relay/relay.c):
 * one attach to the container kept open while a job talks to its kernel,
 * with the relay's frames (relay_proto.h) read from stdout and the raw
 * output of the kernel and the code (its stderr, and whatever bypassed
 * the kernel) kept apart up to a cap. The first time a sandbox is joined,
 * the link waits for the relay's READY and keeps the kernel's key in the
 * sandbox. A caller owns a struct relay_link from relay_link_open (even
 * when it fails) to relay_link_close.
 */

#include <stdatomic.h>

#include "nbcanvas/buf.h"
#include "nbcanvas/demux.h"
#include "nbcanvas/docker.h"
#include "nbcanvas/err.h"
#include "nbcanvas/relay_proto.h"
#include "nbcanvas/sandbox.h"

struct relay_link;

/* For tests and the fuzzer: a peer in place of a container, handed every
 * frame the link sends; it answers by relay_link_feed. */
typedef void (*relay_peer_fn)(void *ctx, struct relay_link *l,
                              const struct relay_frame *f);

struct relay_link {
    struct sandbox *sb; /* borrowed */
    relay_peer_fn peer; /* NULL: the container is the peer */
    void *peer_ctx;
    struct docker_conn *conn;
    struct err *err;                        /* borrowed */
    const atomic_bool *cancel, *cancel_too; /* borrowed, may be NULL */
    struct buf out;    /* the relay's frames, not all read yet */
    struct buf errout; /* the sandbox's stderr, capped */
    struct demux demux;
    size_t read_to;  /* `out` before this has been handed on */
    struct buf *tap; /* may be NULL: a copy of every byte of the relay's
                        stdout (tests/relay/record.c records with it) */
    bool ended;      /* the container's output ended */
};

/* Joins sb's relay (starting the container if it is not running) and,
 * if the sandbox has no kernel key yet, waits for READY. errout_cap:
 * the most raw output kept (past it, reads fail with ERR_OUTPUT). */
int relay_link_open(struct relay_link *l, struct sandbox *sb,
                    size_t errout_cap, long long deadline_ms,
                    const atomic_bool *cancel, struct err *err);
void relay_link_close(struct relay_link *l);

/* A link kept for several calls (a session's): binds it to this call's
 * error and cancel flags, and starts a fresh count of raw output. */
void relay_link_bind(struct relay_link *l, struct err *err,
                     const atomic_bool *cancel, const atomic_bool *cancel_too);

/* Sends one frame (the payload borrowed). */
int relay_link_send(struct relay_link *l, uint8_t type, uint8_t channel,
                    const void *payload, size_t len, long long deadline_ms);

/* The next frame from the relay into *f (borrowed until the next call).
 * Returns 0, 1 when the container's output ended, RELAY_LINK_WOKEN when
 * the wake fd (relay_link_set_wake) became readable first, ERR_TIMEOUT,
 * ERR_CANCELLED, ERR_OUTPUT (raw output past its cap) or ERR_INTERNAL
 * (the stream broke the framing: the code may write into it). */
#define RELAY_LINK_WOKEN 2
int relay_link_next(struct relay_link *l, struct relay_frame *f,
                    long long deadline_ms);
/* A link read by one thread while others have messages for it (the
 * gateway's): fd readable wakes relay_link_next, which then returns
 * RELAY_LINK_WOKEN so the reader can send them; -1 for none. */
void relay_link_set_wake(struct relay_link *l, int fd);

/* A link to a peer function instead of a container (tests, fuzzing):
 * what the peer feeds is read as the relay's stdout; when it is all read,
 * relay_link_next says ERR_TIMEOUT, as a silent sandbox would. */
void relay_link_fake(struct relay_link *l, struct sandbox *sb,
                     relay_peer_fn peer, void *ctx, struct err *err);
/* Appends bytes to what the link will read (the peer's frames). */
void relay_link_feed(struct relay_link *l, const void *data, size_t len);

/* The last line of raw output, escaped, into out. */
const char *relay_link_stderr_tail(const struct relay_link *l, char *out,
                                   size_t out_len);

#endif
