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
    unsigned long cp = 0;
    size_t len = util_utf8_decode(s, n, &cp);

    if (len == 0 || cp < 0x20 || cp == 0x7f || cp == '\\' ||
        (cp >= 0x80 && cp <= 0x9f)) /* C0, DEL, the backslash, C1 */
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

int bundle_unzip(struct tar_files *files, const char *zip, size_t len,
                 size_t max_total, struct err *err)
{
    zip_error_t ze;
    zip_source_t *src;
    zip_t *za;
    zip_int64_t n, i;
    size_t total = 0;
    int rc = 0;

    zip_error_init(&ze);
    src = zip_source_buffer_create(zip, len, 0, &ze);
    za = src ? zip_open_from_source(src, ZIP_RDONLY, &ze) : NULL;
    if (!za) {
        zip_source_free(src);
        rc = err_set(err, ERR_INTERNAL, "unzip: %s", zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return rc;
    }
    n = zip_get_num_entries(za, 0);
    for (i = 0; i < n && rc == 0; i++) {
        zip_stat_t st;
        zip_file_t *f;
        char *data;

        if (zip_stat_index(za, (zip_uint64_t)i, 0, &st) < 0 ||
            (total += (size_t)st.size) > max_total) {
            rc = err_set(err, ERR_INTERNAL, "unzip: too large");
            break;
        }
        data = xmalloc((size_t)st.size + 1);
        f = zip_fopen_index(za, (zip_uint64_t)i, 0);
        if (!f || zip_fread(f, data, st.size) != (zip_int64_t)st.size) {
            rc = err_set(err, ERR_INTERNAL, "unzip: cannot read %s", st.name);
            free(data);
        } else {
            data[st.size] = '\0';
            tarball_files_add(files, xstrdup(st.name), data, (size_t)st.size);
        }
        if (f)
            zip_fclose(f);
    }
    zip_discard(za); /* frees src */
    zip_error_fini(&ze);
    return rc;
}
