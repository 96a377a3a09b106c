#ifndef NBCANVAS_KERNEL_CHANNELS_H
#define NBCANVAS_KERNEL_CHANNELS_H

/*
 * A live kernel's channels shared by any number of clients: what the
 * kernel gateway's WebSocket connections talk to. One thread, the pump,
 * is the relay link's only reader and writer (a docker_conn is one
 * thread's): it reads the kernel's messages, checks their signatures and
 * hands each to the clients as jupyter_server's gateway frames it (IOPub
 * to every client; a reply to the client whose session asked, or to all
 * when none did), and it sends what clients queued, signed with the
 * kernel's key, woken by an eventfd. Clients never see the key and cannot
 * reach any other kernel: a channels object belongs to one session.
 *
 * Ownership: the session that made it holds a reference and the link;
 * each attached client holds a reference (kernel_channels_unref). The pump
 * borrows the link from kernel_channels_start to kernel_channels_stop.
 */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "nbcanvas/err.h"
#include "nbcanvas/relay_link.h"
#include "nbcanvas/relay_proto.h"

struct kernel_channels;
struct channels_client;

/* A message for one client, already framed: text (the JSON message) when
 * nbuffers is 0, else the binary frame (jupyter_server's layout: the
 * count, the offsets, the JSON, the buffers). NULL data: the kernel is
 * gone for good, the client should close. Called on the pump's thread
 * with the channels' lock held: it must only queue, never block. */
typedef void (*channels_deliver_fn)(void *ctx, const void *data, size_t len,
                                    bool binary);

struct kernel_channels *kernel_channels_new(long max_clients,
                                            size_t max_queued_bytes);
void kernel_channels_ref(struct kernel_channels *ch);
void kernel_channels_unref(struct kernel_channels *ch);

/* Starts the pump on link (borrowed until kernel_channels_stop), whose
 * messages are signed with key. */
int kernel_channels_start(struct kernel_channels *ch, struct relay_link *link,
                          const char *key, struct err *err);
/* Stops the pump (joined); gone: the kernel ends for good and every client
 * is told to close (else a restart follows: the clients stay). */
void kernel_channels_stop(struct kernel_channels *ch, bool gone);

/* True once the kernel has ended for good. */
bool kernel_channels_gone(struct kernel_channels *ch);
/* A client joins: ERR_BUSY past max_clients, ERR_NOT_FOUND once gone. */
int kernel_channels_attach(struct kernel_channels *ch,
                           channels_deliver_fn deliver, void *ctx,
                           struct channels_client **out, struct err *err);
/* After it returns, deliver is not called again for this client. */
void kernel_channels_detach(struct kernel_channels *ch,
                            struct channels_client *c);

/* One message from a client, as a text frame or a binary frame in
 * jupyter_server's layout: checked (a channel of shell, control or stdin;
 * a header with msg_id and msg_type; objects), signed and queued for the
 * kernel. ERR_INVALID naming what is wrong; ERR_BUSY when the queue is
 * full or the kernel restarting. */
int kernel_channels_send(struct kernel_channels *ch, struct channels_client *c,
                         const void *data, size_t len, bool binary,
                         struct err *err);
/* SIGINT to the kernel, sent by the pump. */
void kernel_channels_interrupt(struct kernel_channels *ch);

struct channels_state {
    char execution_state[16];   /* starting, idle, busy, dead */
    long long last_activity_ms; /* wall clock, ms since the epoch */
    long long idle_ms;          /* since then, on the monotonic clock */
    long connections;
};
void kernel_channels_state(struct kernel_channels *ch,
                           struct channels_state *out);

/* jupyter_server's binary layout, both ways (exposed for tests and the
 * fuzzer). Parse: the JSON part and up to max buffers, borrowed from
 * data; -1 when the frame is not in that layout. */
int channels_parse_binary(const unsigned char *data, size_t len,
                          struct relay_part *json_part,
                          struct relay_part *buffers, size_t max,
                          size_t *nbuffers);

#endif
