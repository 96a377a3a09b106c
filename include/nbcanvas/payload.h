#ifndef NBCANVAS_PAYLOAD_H
#define NBCANVAS_PAYLOAD_H

/*
 * One answer's bytes on their way from where they are made (the formats,
 * the cache, a session's export or file) to the HTTP layer: the body, its
 * type and its encoding, always together. Every layer hands this one
 * value on, so none of them passes the three as loose out-parameters and
 * none can lose the fact that a body is gzip already.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

struct payload {
    char *body; /* owned by whoever holds the payload */
    size_t len;
    const char *content_type; /* static storage */
    bool gzipped;             /* body is a gzip stream of the answer */
};

#define PAYLOAD_INIT                                                          \
    {                                                                         \
        NULL, 0, NULL, false                                                  \
    }

/* Frees p->body and empties p. */
static inline void payload_release(struct payload *p)
{
    free(p->body);
    *p = (struct payload)PAYLOAD_INIT;
}

#endif
