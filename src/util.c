/*
 * Small helpers every module uses: allocation that dies instead of failing,
 * monotonic time and the condition variables that wait on it, UUIDs,
 * SHA-256 and base64. Keeping them here means no module has to check
 * malloc's result or know which library makes UUIDs or digests.
 */
#include "nbcanvas/util.h"

#include "nbcanvas/buf.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uuid/uuid.h>

__attribute__((noreturn)) static void die_oom(size_t n)
{
    fprintf(stderr, "nbcanvas: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (!p)
        die_oom(n);
    return p;
}

void *xcalloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);

    if (!p)
        die_oom(count * n);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);

    if (!q)
        die_oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);

    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *out;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        die_oom(0);
    out = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(out, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return out;
}

int64_t util_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct timespec util_monotonic_in(long ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

void util_cond_init_monotonic(pthread_cond_t *cond)
{
    pthread_condattr_t attr;

    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
}

void util_uuid(char out[37])
{
    uuid_t u;

    uuid_generate_random(u);
    uuid_unparse_lower(u, out);
}

bool util_is_uuid(const char *s)
{
    uuid_t u;

    return s && strlen(s) == 36 && uuid_parse(s, u) == 0;
}

void util_sha256(unsigned char out[32], const void *data, size_t len)
{
    EVP_Digest(data, len, out, NULL, EVP_sha256(), NULL);
}

void util_sha256_hex(char out[65], const void *data, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[32];
    int i;

    util_sha256(md, data, len);
    for (i = 0; i < 32; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 15];
    }
    out[64] = '\0';
}

int util_base64_decode(char **out, size_t *out_len, const char *in, size_t len,
                       bool skip_line_breaks)
{
    char *clean = xmalloc(len + 1);
    size_t i, k = 0, pad = 0;
    int n = -1;

    for (i = 0; i < len; i++) {
        if (skip_line_breaks &&
            (in[i] == '\n' || in[i] == '\r' || in[i] == ' '))
            continue;
        clean[k++] = in[i];
    }
    clean[k] = '\0';
    *out = xmalloc(k / 4 * 3 + 1);
    /* EVP_DecodeBlock takes whitespace at the ends and no padding check:
     * a length that is a multiple of four is ours to require. */
    if (k % 4 == 0 && k <= (size_t)INT32_MAX)
        n = EVP_DecodeBlock((unsigned char *)*out,
                            (const unsigned char *)clean, (int)k);
    if (n >= 0 && k >= 1 && clean[k - 1] == '=')
        pad++;
    if (n >= 0 && k >= 2 && clean[k - 2] == '=')
        pad++;
    free(clean);
    if (n < 0 || (size_t)n < pad) {
        free(*out);
        *out = NULL;
        return -1;
    }
    *out_len = (size_t)n - pad;
    (*out)[*out_len] = '\0';
    return 0;
}

void util_escape(char *out, size_t out_len, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, k = 0;

    if (!out_len)
        return;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[4];
        size_t m = 0;

        if (c == '\\' || c < 0x20 || c > 0x7e) {
            esc[m++] = '\\';
            if (c == '\n' || c == '\\') {
                esc[m++] = c == '\n' ? 'n' : '\\';
            } else {
                esc[m++] = 'x';
                esc[m++] = hex[c >> 4];
                esc[m++] = hex[c & 15];
            }
        } else {
            esc[m++] = (char)c;
        }
        if (k + m >= out_len)
            break;
        memcpy(out + k, esc, m);
        k += m;
    }
    out[k] = '\0';
}

char *util_read_file(const char *path, size_t *len, size_t cap)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    struct buf b = BUF_INIT(cap);
    char chunk[65536];
    size_t n;

    if (!f)
        return NULL;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (buf_append(&b, chunk, n) < 0)
            break;
    if (f != stdin)
        fclose(f);
    if (b.overflow) {
        buf_release(&b);
        return NULL;
    }
    return buf_detach(&b, len);
}

size_t util_utf8_decode(const unsigned char *s, size_t n, unsigned long *cp)
{
    size_t len, i;
    unsigned long c;

    if (n == 0)
        return 0;
    if (s[0] < 0x80)
        len = 1, c = s[0];
    else if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2, c = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3, c = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4, c = s[0] & 0x07;
    else
        return 0;
    if (n < len)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    /* overlong forms, surrogates, past Unicode */
    if ((len == 3 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) ||
        (len == 4 && (c < 0x10000 || c > 0x10ffff)))
        return 0;
    if (cp)
        *cp = c;
    return len;
}
