/*
 * Escape-sequence removal and UTF-8 repair, in one pass over the bytes.
 * The grammar is ECMA-48's: ESC [ parameters intermediates final for CSI;
 * ESC ] ... BEL or ST for OSC; ESC P/X/^/_ ... ST for the other strings;
 * ESC plus one byte for the rest. C1 controls (U+0080..U+009F, two bytes in
 * UTF-8) introduce the same sequences. An unfinished sequence at the end is
 * dropped, since it would garble whatever a terminal printed next.
 */
#include "nbcanvas/ansi.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nbcanvas/buf.h"
#include "nbcanvas/util.h"

static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */

/* Skips a control string (OSC, DCS, ...) starting at i: ends at BEL, at
 * ESC \ or at the C1 ST (0xc2 0x9c). Returns the index after it. */
static size_t skip_string(const unsigned char *s, size_t n, size_t i,
                          bool bel_ends)
{
    while (i < n) {
        if (bel_ends && s[i] == 0x07)
            return i + 1;
        if (s[i] == 0x1b && i + 1 < n && s[i + 1] == '\\')
            return i + 2;
        if (s[i] == 0xc2 && i + 1 < n && s[i + 1] == 0x9c)
            return i + 2;
        i++;
    }
    return n;
}

/* Skips CSI parameters, intermediates and the final byte from i. */
static size_t skip_csi(const unsigned char *s, size_t n, size_t i)
{
    while (i < n && s[i] >= 0x20 && s[i] <= 0x3f)
        i++;
    if (i < n && s[i] >= 0x40 && s[i] <= 0x7e)
        return i + 1;
    return i; /* malformed: drop what was read */
}

/* Skips the sequence introduced by the 7-bit or C1 byte `kind` (the byte
 * after ESC, or the C1 code minus 0x40); returns the index after it. */
static size_t skip_sequence(const unsigned char *s, size_t n, size_t i,
                            unsigned char kind)
{
    switch (kind) {
    case '[':
        return skip_csi(s, n, i);
    case ']':
        return skip_string(s, n, i, true);
    case 'P':
    case 'X':
    case '^':
    case '_':
        return skip_string(s, n, i, false);
    default:
        /* ESC with intermediates (e.g. ESC ( B) then one final byte. */
        while (i < n && s[i] >= 0x20 && s[i] <= 0x2f)
            i++;
        return kind >= 0x20 && kind <= 0x2f && i < n ? i + 1 : i;
    }
}

char *ansi_clean(const char *text, size_t n, size_t *out_len)
{
    const unsigned char *s = (const unsigned char *)text;
    struct buf out = BUF_INIT((size_t)-1);
    size_t i = 0, len;

    while (i < n) {
        if (s[i] == 0x1b) {
            if (i + 1 >= n)
                break;
            i = skip_sequence(s, n, i + 2, s[i + 1]);
            continue;
        }
        if (s[i] == 0xc2 && i + 1 < n && s[i + 1] >= 0x80 &&
            s[i + 1] <= 0x9f) {
            unsigned char c1 = s[i + 1];

            i += 2;
            if (c1 == 0x9b || c1 == 0x9d || c1 == 0x90 || c1 == 0x98 ||
                c1 == 0x9e || c1 == 0x9f)
                i = skip_sequence(s, n, i, (unsigned char)(c1 - 0x40));
            continue; /* other C1 controls are dropped too */
        }
        if (s[i] == 0) {
            buf_puts(&out, replacement);
            i++;
            continue;
        }
        len = util_utf8_decode(s + i, n - i, NULL);
        if (len == 0) {
            buf_puts(&out, replacement);
            i++;
            continue;
        }
        buf_append(&out, s + i, len);
        i += len;
    }
    return buf_detach(&out, out_len);
}

json_t *ansi_clean_json(const char *s, size_t len)
{
    size_t n;
    char *clean = ansi_clean(s, len, &n);
    json_t *j = json_stringn_nocheck(clean, n);

    free(clean);
    return j;
}

static void clean_string_in_place(json_t *str)
{
    size_t n;
    char *clean = ansi_clean(json_string_value(str), json_string_length(str),
                             &n);

    json_string_setn_nocheck(str, clean, n);
    free(clean);
}

void ansi_clean_json_text(json_t *v)
{
    size_t i;
    json_t *item;

    if (json_is_string(v)) {
        clean_string_in_place(v);
        return;
    }
    json_array_foreach(v, i, item) {
        if (json_is_string(item))
            clean_string_in_place(item);
    }
}
