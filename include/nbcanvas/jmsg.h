#ifndef NBCANVAS_JMSG_H
#define NBCANVAS_JMSG_H

/*
 * Jupyter's messages on the wire (the messaging protocol, version 5.3):
 * built and signed for the kernel, parsed and checked from it. A message
 * is a ZeroMQ multipart:
 *
 *   [identities..., "<IDS|MSG>", signature, header, parent_header,
 *    metadata, content, buffers...]
 *
 * the signature being the lowercase hex HMAC-SHA256, keyed with the
 * connection file's key, of the four JSON parts. What comes from a
 * sandbox is untrusted: the parser bounds everything, checks the
 * signature in constant time and the types of the fields it hands on.
 */

#include <jansson.h>
#include <stddef.h>

#include "nbcanvas/buf.h"
#include "nbcanvas/err.h"
#include "nbcanvas/relay_proto.h"

#define JMSG_ID_LEN 64
/* The most binary buffers one message carries (the relay's part cap less
 * the delimiter, the signature and the four JSON parts). */
#define JMSG_MAX_BUFFERS (RELAY_MAX_PARTS - 6)

/* One parsed message; every json_t is owned by it. */
struct jmsg {
    json_t *header, *parent_header, *metadata, *content;
    const char *msg_type;  /* from header, "" when absent */
    const char *parent_id; /* parent_header's msg_id, "" when absent */
    const char *date;      /* header's date, "" when absent */
    /* the binary buffers after content, borrowed from the parsed payload */
    struct relay_part buffers[JMSG_MAX_BUFFERS];
    size_t nbuffers;
};

void jmsg_release(struct jmsg *m);

/* A fresh message id (a UUID) into out. */
void jmsg_new_id(char out[JMSG_ID_LEN + 1]);

/* Appends to out the relay payload (relay_proto.h's multipart) of a
 * message: header from the arguments, parent_header {} (or parent,
 * borrowed), metadata {}, content (borrowed), signed with key. */
int jmsg_pack(struct buf *out, const char *key, const char *session,
              const char *msg_id, const char *msg_type, json_t *parent,
              json_t *content);

/* Appends to out the relay payload of a message whose parts are given
 * whole (a gateway client's: its header as it wrote it), the buffers
 * after them; all borrowed. -1 when a part cannot be written. */
int jmsg_pack_message(struct buf *out, const char *key, json_t *header,
                      json_t *parent, json_t *metadata, json_t *content,
                      const struct relay_part *buffers, size_t nbuffers);
/* Parses a multipart payload (from a RELAY_RECV frame) into m, checking
 * the signature with key. ERR_INTERNAL naming what is wrong. */
int jmsg_parse(struct jmsg *m, const char *key, const unsigned char *payload,
               size_t len, struct err *err);

/* The time now as Jupyter dates it (ISO 8601 UTC, microseconds, "Z"). */
void jmsg_now(char out[40]);

#endif
