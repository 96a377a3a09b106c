/*
 * Capped growable buffer. Every byte the service reads from a client or the
 * Docker engine lands in one of these, so the cap is what keeps a hostile
 * notebook or a chatty program from growing the service's memory.
 */
#include "nbcanvas/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbcanvas/util.h"

char buf_empty[1];

void buf_init(struct buf *b, size_t cap)
{
    b->data = buf_empty;
    b->len = 0;
    b->alloc = 0;
    b->cap = cap;
    b->overflow = false;
}

void buf_release(struct buf *b)
{
    if (b->alloc)
        free(b->data);
    buf_init(b, b->cap);
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    b->overflow = false;
    if (b->alloc)
        b->data[0] = '\0';
}

static void grow(struct buf *b, size_t want)
{
    size_t n = b->alloc ? b->alloc : 256;

    while (n < want + 1)
        n *= 2;
    if (b->alloc) {
        b->data = xrealloc(b->data, n);
    } else {
        b->data = xmalloc(n);
        b->data[0] = '\0';
    }
    b->alloc = n;
}

int buf_append(struct buf *b, const void *data, size_t n)
{
    int rc = 0;

    if (!b->data)
        buf_init(b, b->cap);
    if (n > b->cap - b->len) {
        n = b->cap - b->len;
        b->overflow = true;
        rc = -1;
    }
    if (n == 0)
        return rc;
    if (b->len + n + 1 > b->alloc)
        grow(b, b->len + n);
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return rc;
}

int buf_puts(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    char small[256];
    char *big;
    int n, rc;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n < sizeof(small))
        return buf_append(b, small, (size_t)n);
    big = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    rc = buf_append(b, big, (size_t)n);
    free(big);
    return rc;
}

char *buf_detach(struct buf *b, size_t *len_out)
{
    char *out;

    if (!b->data)
        buf_init(b, b->cap);
    out = b->alloc ? b->data : xstrdup("");
    if (len_out)
        *len_out = b->len;
    buf_init(b, b->cap);
    return out;
}
