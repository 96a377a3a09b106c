/*
 * Jupyter's wire format (include/nbcanvas/jmsg.h): the service is the
 * kernel's only client, so it signs what it sends and checks what comes
 * back, with libcrypto's HMAC-SHA256 and jansson for the JSON parts.
 */
#include "nbcanvas/jmsg.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "nbcanvas/util.h"

#define DELIMITER "<IDS|MSG>"
#define SIG_HEX_LEN 64

void jmsg_release(struct jmsg *m)
{
    json_decref(m->header);
    json_decref(m->parent_header);
    json_decref(m->metadata);
    json_decref(m->content);
    memset(m, 0, sizeof(*m));
}

void jmsg_new_id(char out[JMSG_ID_LEN + 1])
{
    util_uuid(out);
}

void jmsg_now(char out[40])
{
    struct timeval tv;
    struct tm tm;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);

    snprintf(out + n, 40 - n, ".%06dZ", (int)(tv.tv_usec % 1000000));
}

/* The hex signature of the four JSON parts. */
static void sign(const char *key, const struct relay_part parts[4],
                 char out[SIG_HEX_LEN + 1])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    EVP_MAC *alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = alg ? EVP_MAC_CTX_new(alg) : NULL;
    OSSL_PARAM params[2] = {
        OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
        OSSL_PARAM_construct_end()};
    size_t n = 0;

    out[0] = '\0';
    if (ctx &&
        EVP_MAC_init(ctx, (const unsigned char *)key, strlen(key), params)) {
        for (int i = 0; i < 4; i++)
            EVP_MAC_update(ctx, parts[i].data, parts[i].len);
        if (EVP_MAC_final(ctx, mac, &n, sizeof(mac)))
            mac_len = (unsigned int)n;
    }
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(alg);
    for (unsigned int i = 0; i < mac_len && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

static void put_part(struct buf *out, const void *data, size_t len)
{
    unsigned char n[4];

    relay_put_u32(n, (uint32_t)len);
    buf_append(out, n, 4);
    buf_append(out, data, len);
}

/* Signs and appends the relay payload of the four JSON texts and the
 * buffers; -1 when a text is missing or out is full. */
static int pack_texts(struct buf *out, const char *key, char *const text[4],
                      const struct relay_part *buffers, size_t nbuffers)
{
    char sig[SIG_HEX_LEN + 1];
    struct relay_part parts[4];
    unsigned char count[4];

    for (int i = 0; i < 4; i++) {
        if (!text[i])
            return -1;
        parts[i].data = (const unsigned char *)text[i];
        parts[i].len = strlen(text[i]);
    }
    if (key[0])
        sign(key, parts, sig);
    else
        sig[0] = '\0';
    relay_put_u32(count, (uint32_t)(6 + nbuffers));
    buf_append(out, count, 4);
    put_part(out, DELIMITER, strlen(DELIMITER));
    put_part(out, sig, strlen(sig));
    for (int i = 0; i < 4; i++)
        put_part(out, parts[i].data, parts[i].len);
    for (size_t i = 0; i < nbuffers; i++)
        put_part(out, buffers[i].data, buffers[i].len);
    return out->overflow ? -1 : 0;
}

int jmsg_pack(struct buf *out, const char *key, const char *session,
              const char *msg_id, const char *msg_type, json_t *parent,
              json_t *content)
{
    char date[40];
    json_t *header;
    char *text[4];
    int rc;

    jmsg_now(date);
    header = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "msg_id", msg_id,
                       "msg_type", msg_type, "username", "nbcanvas", "session",
                       session, "date", date, "version", "5.3");
    text[0] = json_dumps(header, JSON_COMPACT);
    text[1] = parent ? json_dumps(parent, JSON_COMPACT) : strdup("{}");
    text[2] = strdup("{}");
    text[3] = json_dumps(content, JSON_COMPACT);
    json_decref(header);
    rc = pack_texts(out, key, text, NULL, 0);
    for (int i = 0; i < 4; i++)
        free(text[i]);
    return rc;
}

int jmsg_pack_message(struct buf *out, const char *key, json_t *header,
                      json_t *parent, json_t *metadata, json_t *content,
                      const struct relay_part *buffers, size_t nbuffers)
{
    char *text[4] = {
        json_dumps(header, JSON_COMPACT), json_dumps(parent, JSON_COMPACT),
        json_dumps(metadata, JSON_COMPACT), json_dumps(content, JSON_COMPACT)};
    int rc = nbuffers > JMSG_MAX_BUFFERS
                 ? -1
                 : pack_texts(out, key, text, buffers, nbuffers);

    for (int i = 0; i < 4; i++)
        free(text[i]);
    return rc;
}

static json_t *load_object(const struct relay_part *p)
{
    json_t *v = json_loadb((const char *)p->data, p->len,
                           JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, NULL);

    if (!json_is_object(v)) {
        json_decref(v);
        return NULL;
    }
    return v;
}

static const char *string_in(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));

    return s ? s : "";
}

int jmsg_parse(struct jmsg *m, const char *key, const unsigned char *payload,
               size_t len, struct err *err)
{
    struct relay_part parts[RELAY_MAX_PARTS];
    char sig[SIG_HEX_LEN + 1];
    int n = relay_parts_parse(payload, len, parts, RELAY_MAX_PARTS), d;

    memset(m, 0, sizeof(*m));
    if (n < 0)
        return err_set(err, ERR_INTERNAL, "kernel: a malformed message");
    for (d = 0; d < n; d++)
        if (parts[d].len == strlen(DELIMITER) &&
            memcmp(parts[d].data, DELIMITER, parts[d].len) == 0)
            break;
    if (d >= n || n - d < 6)
        return err_set(err, ERR_INTERNAL,
                       "kernel: a message without its "
                       "parts");
    /* An empty key means unsigned messages, as in Jupyter (only tests and
     * the fuzzer use one: every relay makes a key). */
    if (key[0])
        sign(key, parts + d + 2, sig);
    if (!key[0] ? parts[d + 1].len != 0
                : parts[d + 1].len != SIG_HEX_LEN ||
                      CRYPTO_memcmp(sig, parts[d + 1].data, SIG_HEX_LEN) != 0)
        return err_set(err, ERR_INTERNAL,
                       "kernel: a message with a wrong "
                       "signature");
    m->header = load_object(&parts[d + 2]);
    m->parent_header = load_object(&parts[d + 3]);
    m->metadata = load_object(&parts[d + 4]);
    m->content = load_object(&parts[d + 5]);
    if (!m->header || !m->parent_header || !m->metadata || !m->content) {
        jmsg_release(m);
        return err_set(err, ERR_INTERNAL,
                       "kernel: a message part is not a "
                       "JSON object");
    }
    m->msg_type = string_in(m->header, "msg_type");
    m->date = string_in(m->header, "date");
    m->parent_id = string_in(m->parent_header, "msg_id");
    /* binary buffers: borrowed from payload (the executor reads none; a
     * gateway's client may) */
    for (int i = d + 6; i < n; i++)
        m->buffers[m->nbuffers++] = parts[i];
    return 0;
}
