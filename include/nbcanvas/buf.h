#ifndef NBCANVAS_BUF_H
#define NBCANVAS_BUF_H

/*
 * A growable byte buffer with a hard cap (after curl's dynbuf). Invariants:
 * `data` is never NULL once initialised and is always NUL-terminated, so a
 * buffer of text can be used as a C string. Appending past `cap` fails and
 * sets `overflow`, leaving the first `cap` bytes in place.
 */

#include <stdbool.h>
#include <stddef.h>

struct buf {
    char *data;
    size_t len;
    size_t alloc;
    size_t cap;    /* most bytes it may ever hold */
    bool overflow; /* an append was cut at the cap */
};

/* The shared empty string an unallocated buffer points at; never written. */
extern char buf_empty[1];

#define BUF_INIT(max)                                                         \
    {                                                                         \
        buf_empty, 0, 0, (max), false                                         \
    }

/* Sets up an empty buffer that may hold at most cap bytes. */
void buf_init(struct buf *b, size_t cap);
/* Frees the contents; the buffer can be initialised again. */
void buf_release(struct buf *b);
/* Empties the buffer, keeping its memory. */
void buf_reset(struct buf *b);
/* Appends n bytes; returns 0, or -1 if it would pass the cap (then as many
 * bytes as fit are kept and overflow is set). */
int buf_append(struct buf *b, const void *data, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Hands the bytes over to the caller (who frees them with free) and leaves
 * the buffer empty. *len_out, when given, receives the length. */
char *buf_detach(struct buf *b, size_t *len_out);

#endif
