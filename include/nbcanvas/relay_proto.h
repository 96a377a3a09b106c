#ifndef NBCANVAS_RELAY_PROTO_H
#define NBCANVAS_RELAY_PROTO_H

/*
 * The framing between the service and the relay inside a notebook sandbox
 * (src/relay/relay.c), in one place: both sides compile this file. The
 * relay joins the kernel's ZeroMQ sockets to the container's stdin and
 * stdout; every byte either way is a frame:
 *
 *   u32 length (big-endian, of what follows the 8-byte header)
 *   u8  type   (enum relay_type)
 *   u8  channel (enum relay_channel, or 0)
 *   u16 zero
 *   length bytes of payload
 *
 * A Jupyter message's payload is its ZeroMQ multipart: u32 count, then
 * each part as u32 length and bytes. The user's code runs as the same uid
 * as the relay and can write into the relay's stdout (/proc/1/fd/1 of the
 * container's init): whatever it forges can only spoil its own request's
 * stream, which the service reads as untrusted input (bounded frames,
 * checked types, a bad frame ends the request, never the service).
 */

#include <stddef.h>
#include <stdint.h>

#define RELAY_HEADER_LEN 8
/* The largest frame either side accepts: a message carrying a big figure
 * fits, a stream of garbage is refused at its header. */
#define RELAY_MAX_FRAME (64u << 20)
#define RELAY_MAX_PARTS 64

enum relay_type {
    /* service -> relay */
    RELAY_SEND = 1, /* a multipart message for channel's socket */
    RELAY_SIGNAL,   /* payload: one byte, RELAY_SIG_* */
    RELAY_PUT_FILE, /* u16 path length, path, file bytes */
    RELAY_RUN,      /* u32 timeout s, argv as NUL-terminated strings */
    RELAY_COLLECT,  /* u64 cap: the files the code wrote */
    RELAY_GET_FILE, /* u64 cap, path: one file */
    /* relay -> service */
    RELAY_READY = 32, /* JSON: {"key": hmac key, "pid": kernel pid} */
    RELAY_RECV,       /* a multipart message from channel's socket */
    RELAY_EXIT,       /* the kernel ended: u32 wait status */
    RELAY_RUN_DONE,   /* u32 exit status (or 0xffffffff: timed out), output */
    RELAY_FILES,      /* (u16 path length, path, u32 length, bytes)* */
    RELAY_FILE,       /* u8 found, bytes */
    RELAY_FAILED      /* the relay could not do what was asked: text */
};

enum relay_channel {
    RELAY_SHELL = 1,
    RELAY_CONTROL,
    RELAY_STDIN,
    RELAY_IOPUB,
    RELAY_CHANNELS /* one past the last */
};

enum relay_signal {
    RELAY_SIG_INTERRUPT = 1, /* SIGINT to the kernel */
    RELAY_SIG_STOP_ALL,      /* SIGKILL to every process but init and relay */
    RELAY_SIG_PAUSE_ALL,     /* SIGSTOP to the same */
    RELAY_SIG_RESUME_ALL     /* SIGCONT to the same */
};

struct relay_frame {
    uint8_t type, channel;
    const uint8_t *payload; /* borrowed from the buffer parsed */
    size_t len;
};

struct relay_part {
    const uint8_t *data; /* borrowed */
    size_t len;
};

/* Parses one frame at the start of buf. Returns 1 with *f and *used (the
 * bytes it took), 0 while the frame is incomplete, -1 when the header is
 * malformed (a length over RELAY_MAX_FRAME, a non-zero reserved field). */
int relay_frame_parse(const uint8_t *buf, size_t len, struct relay_frame *f,
                      size_t *used);

/* Writes the 8-byte header of a frame with a payload of len bytes. */
void relay_frame_header(uint8_t out[RELAY_HEADER_LEN], uint8_t type,
                        uint8_t channel, uint32_t len);

/* Splits a multipart payload into at most max parts. Returns the count,
 * or -1 when the lengths do not add up to the payload exactly. */
int relay_parts_parse(const uint8_t *payload, size_t len,
                      struct relay_part *parts, int max);

uint32_t relay_get_u32(const uint8_t *p);
void relay_put_u32(uint8_t *p, uint32_t v);

#endif
