/* Fuzz target: what a client sends on a gateway kernel's WebSocket, as
 * the service reads it. The input is the client's whole byte stream after
 * the upgrade: read by a ws.h connection (libwslay's framing, our caps
 * and callbacks) whose messages go to kernel_channels_send (the JSON and
 * binary layouts, the checks, the signing with a key), queued for a
 * kernel that is not there. Nothing may crash, leak or hang. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nbcanvas/kernel_channels.h"
#include "nbcanvas/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_client {
    struct kernel_channels *ch;
    struct channels_client *client;
};

static void deliver(void *ctx, const void *d, size_t len, bool binary)
{
    (void)ctx;
    (void)d;
    (void)len;
    (void)binary;
}

static void on_message(void *ctx, struct ws_conn *w, const uint8_t *d,
                       size_t len, bool binary)
{
    struct fuzz_client *f = ctx;
    struct err err = ERR_INIT;

    (void)w;
    kernel_channels_send(f->ch, f->client, d, len, binary, &err);
}

static void on_close(void *ctx)
{
    struct fuzz_client *f = ctx;

    kernel_channels_detach(f->ch, f->client);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ws_options opts = {64 * 1024, 1 << 20, 60000};
    struct ws_handlers h = {on_message, on_close};
    struct fuzz_client f = {kernel_channels_new(4, 1 << 20), NULL};
    struct err err = ERR_INIT;
    struct ws_set *set = ws_set_new();
    struct ws_conn *w;
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 ||
        kernel_channels_attach(f.ch, deliver, &f, &f.client, &err) < 0) {
        perror("fuzz_gateway");
        return 0;
    }
    /* the input arrives as bytes read past the handshake; then the
     * client hangs up */
    shutdown(sv[0], SHUT_WR);
    w = ws_new(set, sv[1], NULL, (const char *)data, size, &opts, &h, &f);
    if (ws_start(w) < 0) {
        kernel_channels_detach(f.ch, f.client);
        ws_abandon(w);
    }
    while (ws_set_count(set) > 0) /* it ends at the end of the input */
        usleep(100);
    ws_set_stop(set, 1000);
    ws_set_free(set);
    close(sv[0]);
    kernel_channels_unref(f.ch);
    return 0;
}
