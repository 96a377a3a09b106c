/*
 * Zip bundles with libzip, entirely in memory: a zip_source_buffer is the
 * archive's backing store, kept alive past zip_close so its bytes can be
 * read back. libzip contract: with freep=0 the data given to
 * zip_source_buffer must live until zip_close, and zip_source_free is only
 * ours to call when zip_file_add failed.
 */
#include "nbcanvas/bundle.h"

#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "nbcanvas/util.h"

/* The length of the UTF-8 sequence at s (at most n bytes) if it is a
 * valid one of a printable character, else 0. */
static size_t printable_utf8(const unsigned char *s, size_t n)
{
    size_t len, i;
    unsigned long cp;

    if (s[0] < 0x80)
        return s[0] >= 0x20 && s[0] != 0x7f && s[0] != '\\' ? 1 : 0;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2, cp = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3, cp = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    /* overlong forms, surrogates, past Unicode, C1 controls */
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff ||
        (cp >= 0x80 && cp <= 0x9f))
        return 0;
    return len;
}

char *bundle_safe_name(const char *name, bool *changed)
{
    const unsigned char *s = (const unsigned char *)name;
    size_t n = strlen(name), i = 0, k = 0, len;
    char *out = xmalloc(n + 1);

    *changed = false;
    while (i < n) {
        len = printable_utf8(s + i, n - i);
        if (len == 0) {
            out[k++] = '_';
            *changed = true;
            i++;
            continue;
        }
        memcpy(out + k, s + i, len);
        k += len;
        i += len;
    }
    out[k] = '\0';
    return out;
}

static int read_back(zip_source_t *src, char **out, size_t *out_len,
                     struct err *err)
{
    zip_stat_t st;

    if (zip_source_open(src) < 0)
        return err_set(err, ERR_INTERNAL, "zip: reopen failed");
    zip_stat_init(&st);
    if (zip_source_stat(src, &st) < 0 || !(st.valid & ZIP_STAT_SIZE)) {
        zip_source_close(src);
        return err_set(err, ERR_INTERNAL, "zip: no size");
    }
    *out = xmalloc(st.size + 1);
    if (zip_source_read(src, *out, st.size) != (zip_int64_t)st.size) {
        zip_source_close(src);
        free(*out);
        *out = NULL;
        return err_set(err, ERR_INTERNAL, "zip: short read");
    }
    *out_len = st.size;
    zip_source_close(src);
    return 0;
}

int bundle_zip(char **out, size_t *out_len, const struct bundle_part *parts,
               size_t n, struct err *err)
{
    zip_error_t ze;
    zip_source_t *backing;
    zip_t *za;
    size_t i;
    int rc = 0;

    zip_error_init(&ze);
    backing = zip_source_buffer_create(NULL, 0, 0, &ze);
    if (!backing) {
        zip_error_fini(&ze);
        return err_set(err, ERR_INTERNAL, "zip: no buffer");
    }
    zip_source_keep(backing); /* read it after zip_close */
    za = zip_open_from_source(backing, ZIP_TRUNCATE, &ze);
    if (!za) {
        rc = err_set(err, ERR_INTERNAL, "zip: %s", zip_error_strerror(&ze));
        goto done;
    }
    for (i = 0; i < n; i++) {
        zip_source_t *s = zip_source_buffer(za, parts[i].data, parts[i].len,
                                            0);

        if (!s || zip_file_add(za, parts[i].name, s, ZIP_FL_ENC_UTF_8) < 0) {
            zip_source_free(s);
            rc = err_set(err, ERR_INTERNAL, "zip %s: %s", parts[i].name,
                         zip_strerror(za));
            zip_discard(za);
            goto done;
        }
    }
    if (zip_close(za) < 0) {
        rc = err_set(err, ERR_INTERNAL, "zip: %s", zip_strerror(za));
        zip_discard(za);
        goto done;
    }
    rc = read_back(backing, out, out_len, err);
done:
    zip_source_free(backing);
    zip_error_fini(&ze);
    return rc;
}
