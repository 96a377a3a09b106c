#ifndef NBCANVAS_ANSI_H
#define NBCANVAS_ANSI_H

/*
 * Making program output safe to hand to a person or a JSON parser:
 * terminal escape sequences removed (CSI, OSC, DCS/APC/PM/SOS strings and
 * two-byte ESC forms, in both their 7-bit and 8-bit C1 spellings), bytes
 * that are not valid UTF-8 and NUL replaced by U+FFFD.
 */

#include <jansson.h>
#include <stddef.h>

/* Returns a new NUL-terminated string (caller frees); *out_len, when given,
 * receives its length. */
char *ansi_clean(const char *s, size_t len, size_t *out_len);

/* A new JSON string holding the cleaned text. */
json_t *ansi_clean_json(const char *s, size_t len);

/* Cleans, in place, every string in a JSON string or array of strings
 * (nbformat's multiline strings); other values are left alone. */
void ansi_clean_json_text(json_t *v);

#endif
