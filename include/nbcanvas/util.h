#ifndef NBCANVAS_UTIL_H
#define NBCANVAS_UTIL_H

/*
 * Allocation that never fails (it aborts when memory runs out, as git's
 * wrapper.c does), so error paths only deal with I/O, protocol and input.
 */

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
/* Every header that declares a banned function comes before banned.h, as
 * in git's git-compat-util.h, so their inline definitions stay intact. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Returns a new string formatted like printf; caller frees. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Milliseconds on CLOCK_MONOTONIC, for deadlines that survive clock jumps. */
int64_t util_now_ms(void);
/* The CLOCK_MONOTONIC time ms from now, for pthread_cond_timedwait on a
 * condition variable set to that clock. */
struct timespec util_monotonic_in(long ms);
/* Initialises cond to time its waits on CLOCK_MONOTONIC (so a wall clock
 * that jumps cannot shorten or stretch them); pair with util_monotonic_in. */
void util_cond_init_monotonic(pthread_cond_t *cond);

/* A new random UUID in its 36-character text form, written into out[37]. */
void util_uuid(char out[37]);
/* True when s is a UUID in text form. */
bool util_is_uuid(const char *s);

/* SHA-256 of data: raw into out[32], or as lower-case hex into out[65]. */
void util_sha256(unsigned char out[32], const void *data, size_t len);
void util_sha256_hex(char out[65], const void *data, size_t len);

/* Decodes strict base64 (RFC 4648, padding required); with
 * skip_line_breaks, newlines and spaces are dropped first (nbformat wraps
 * its images). *out is a new NUL-terminated buffer. Returns 0 or -1. */
int util_base64_decode(char **out, size_t *out_len, const char *in, size_t len,
                       bool skip_line_breaks);

/* The whole file at path ("-": standard input) as a new NUL-terminated
 * buffer, its size in *len; NULL if it cannot be read or is over cap. */
char *util_read_file(const char *path, size_t *len, size_t cap);

/* The length (1-4) of the valid UTF-8 sequence at s, at most n bytes, and
 * its code point in *cp (may be NULL); 0 for anything that is not valid
 * UTF-8 (overlong forms and surrogates included). */
size_t util_utf8_decode(const unsigned char *s, size_t n, unsigned long *cp);

/* Writes n bytes of s into out as one line of printable ASCII: newline as
 * \n, a backslash as \\, every other byte outside 0x20..0x7e as \xNN
 * (so no terminal escape or forged log line gets through). Cut to fit
 * out_len, always NUL-terminated. */
void util_escape(char *out, size_t out_len, const char *s, size_t n);

#include "nbcanvas/banned.h"

#endif
