#ifndef NBCANVAS_SSE_H
#define NBCANVAS_SSE_H

/*
 * A Server-Sent Events stream between a job's thread (the producer) and
 * the HTTP connection that sends it (the reader). The producer appends
 * events as its job makes them and closes the stream after the last; the
 * reader takes what is there, waits when nothing is, sends a ": ping"
 * comment after a silence (at most SSE_PING_MS, and less than the
 * connection's inactivity timeout, which would close a silent stream), and
 * notices a client that hung up, which sets the stream's cancel flag for the producer's job. Both
 * hold a reference; the last sse_unref frees it. Events are held within
 * a byte cap: a client that stops reading cannot make the service hold
 * more (past it the stream ends, and the job is cancelled).
 */

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define SSE_PING_MS 15000

struct sse;

/* A stream for the client on socket fd (watched for a hang-up, never
 * closed here), holding at most cap bytes unsent, with a ping after
 * ping_ms of silence; two references. */
struct sse *sse_new(int fd, size_t cap, long ping_ms);
void sse_unref(struct sse *s);

/* Appends "event: <name>\ndata: <data as one JSON line>\n\n"; data is
 * borrowed. */
void sse_send(struct sse *s, const char *name, json_t *data);
/* No more events: the reader ends the stream once all are sent. */
void sse_close(struct sse *s);
/* The reader is gone (or the service stops): the stream ends and the
 * producer's job is cancelled. */
void sse_stop(struct sse *s);
/* Set once the client is gone: the producer's job stops. */
const atomic_bool *sse_cancel(struct sse *s);

/* For the reader: copies up to max bytes into out, waiting while there is
 * nothing to send. Returns the bytes copied, 0 never, or -1 at the end of
 * the stream (closed and sent, or the client gone). */
ssize_t sse_read(struct sse *s, char *out, size_t max);

#endif
