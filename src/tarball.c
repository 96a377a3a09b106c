/*
 * Tar archives in memory with libarchive. See tarball.h for the rules; the
 * reader is the boundary where bytes made by untrusted code come back into
 * the service, so it trusts nothing in a header: type, name and size are
 * all checked before a byte is kept.
 */
#include "nbcanvas/tarball.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nbcanvas/util.h"

static la_ssize_t write_cb(struct archive *a, void *ctx, const void *data,
                           size_t n)
{
    (void)a;
    if (buf_append(ctx, data, n) < 0)
        return -1;
    return (la_ssize_t)n;
}

static int write_header(struct archive *a, const char *name, mode_t type,
                        size_t size, int uid, int gid)
{
    struct archive_entry *e = archive_entry_new();
    int rc;

    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, type == AE_IFDIR ? 0755 : 0644);
    archive_entry_set_size(e, (la_int64_t)size);
    archive_entry_set_uid(e, uid);
    archive_entry_set_gid(e, gid);
    archive_entry_set_mtime(e, time(NULL), 0);
    rc = archive_write_header(a, e);
    archive_entry_free(e);
    return rc;
}

/* Writes a directory entry for each parent of name not written before. */
static int write_parents(struct archive *a, const char *name, struct buf *seen,
                         int uid, int gid)
{
    const char *slash = name;

    while ((slash = strchr(slash, '/'))) {
        char *dir = xstrndup(name, (size_t)(slash - name) + 1);
        char *key = xasprintf("\n%s\n", dir);
        int rc = ARCHIVE_OK;

        if (!strstr(seen->data, key)) {
            buf_puts(seen, key + 1);
            rc = write_header(a, dir, AE_IFDIR, 0, uid, gid);
        }
        free(key);
        free(dir);
        if (rc != ARCHIVE_OK)
            return rc;
        slash++;
    }
    return ARCHIVE_OK;
}

int tarball_write(struct buf *out, const struct tar_entry *entries, size_t n,
                  int uid, int gid, struct err *err)
{
    struct archive *a = archive_write_new();
    struct buf seen = BUF_INIT(1 << 20);
    size_t i;
    int rc = 0;

    buf_puts(&seen, "\n");
    archive_write_set_format_pax_restricted(a);
    archive_write_set_bytes_in_last_block(a, 1);
    if (archive_write_open2(a, out, NULL, write_cb, NULL, NULL) !=
        ARCHIVE_OK) {
        rc = err_set(err, ERR_INTERNAL, "tar: %s", archive_error_string(a));
        goto done;
    }
    for (i = 0; i < n; i++) {
        const struct tar_entry *e = &entries[i];

        if (write_parents(a, e->name, &seen, uid, gid) != ARCHIVE_OK ||
            write_header(a, e->name, AE_IFREG, e->len, uid, gid) !=
                ARCHIVE_OK ||
            archive_write_data(a, e->data, e->len) != (la_ssize_t)e->len) {
            rc = err_set(err, ERR_INTERNAL, "tar %s: %s", e->name,
                         archive_error_string(a));
            goto done;
        }
    }
    if (archive_write_close(a) != ARCHIVE_OK)
        rc = err_set(err, ERR_INTERNAL, "tar: %s", archive_error_string(a));
done:
    archive_write_free(a);
    buf_release(&seen);
    return rc;
}

/* A name is kept only if it stays below the root: no absolute path, no
 * ".." component. */
static bool name_is_safe(const char *name)
{
    const char *p = name;

    if (!*name || name[0] == '/')
        return false;
    while (*p) {
        size_t len = strcspn(p, "/");

        if (len == 2 && p[0] == '.' && p[1] == '.')
            return false;
        p += len;
        if (*p == '/')
            p++;
    }
    return true;
}

static int read_entry_data(struct archive *a, struct tar_entry *e, size_t size,
                           struct err *err)
{
    la_ssize_t got;

    e->data = xmalloc(size + 1);
    e->len = 0;
    while (e->len < size) {
        got = archive_read_data(a, e->data + e->len, size - e->len);
        if (got < 0)
            return err_set(err, ERR_INTERNAL, "tar %s: %s", e->name,
                           archive_error_string(a));
        if (got == 0)
            break;
        e->len += (size_t)got;
    }
    e->data[e->len] = '\0';
    return 0;
}

int tarball_write_files(struct buf *out, const struct tar_files *files,
                        const struct tar_entry *extra, size_t n, int uid,
                        int gid, struct err *err)
{
    struct tar_entry *all = xcalloc(files->n + n, sizeof(*all));
    int rc;

    if (files->n) /* memcpy from NULL is undefined even for 0 bytes */
        memcpy(all, files->v, files->n * sizeof(*all));
    if (n)
        memcpy(all + files->n, extra, n * sizeof(*all));
    rc = tarball_write(out, all, files->n + n, uid, gid, err);
    free(all);
    return rc;
}

int tarball_gzip(struct buf *out, const char *data, size_t len,
                 struct err *err)
{
    struct archive *a = archive_write_new();
    struct archive_entry *e = archive_entry_new();
    int rc = 0;

    archive_write_add_filter_gzip(a);
    archive_write_set_format_raw(a);
    archive_write_set_bytes_in_last_block(a, 1);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_size(e, (la_int64_t)len);
    if (archive_write_open2(a, out, NULL, write_cb, NULL, NULL) !=
            ARCHIVE_OK ||
        archive_write_header(a, e) != ARCHIVE_OK ||
        (len && archive_write_data(a, data, len) != (la_ssize_t)len) ||
        archive_write_close(a) != ARCHIVE_OK)
        rc = err_set(err, ERR_INTERNAL, "gzip: %s", archive_error_string(a));
    archive_entry_free(e);
    archive_write_free(a);
    return rc;
}

int tarball_gunzip(struct buf *out, const char *data, size_t len,
                   struct err *err)
{
    struct archive *a = archive_read_new();
    struct archive_entry *e;
    char chunk[64 << 10];
    la_ssize_t n;
    int rc = 0;

    archive_read_support_filter_gzip(a);
    archive_read_support_format_raw(a);
    if (archive_read_open_memory(a, data, len) != ARCHIVE_OK ||
        archive_read_next_header(a, &e) != ARCHIVE_OK) {
        rc = err_set(err, ERR_INTERNAL, "gunzip: %s", archive_error_string(a));
        goto done;
    }
    if (archive_filter_code(a, 0) != ARCHIVE_FILTER_GZIP) { /* raw bytes */
        rc = err_set(err, ERR_INTERNAL, "gunzip: not a gzip stream");
        goto done;
    }
    while ((n = archive_read_data(a, chunk, sizeof(chunk))) > 0)
        if (buf_append(out, chunk, (size_t)n) < 0) {
            rc = err_set(err, ERR_INTERNAL, "gunzip: too large");
            goto done;
        }
    if (n < 0)
        rc = err_set(err, ERR_INTERNAL, "gunzip: %s", archive_error_string(a));
done:
    archive_read_free(a);
    return rc;
}

int tarball_read(struct tar_files *out, const char *data, size_t len,
                 const char *strip, size_t max_files, size_t max_total,
                 struct err *err)
{
    struct archive *a = archive_read_new();
    struct archive_entry *ae;
    size_t strip_len = strip ? strlen(strip) : 0, total = 0;
    int rc = 0, r;

    archive_read_support_format_tar(a);
    if (archive_read_open_memory(a, data, len) != ARCHIVE_OK) {
        rc = err_set(err, ERR_INTERNAL, "tar: %s", archive_error_string(a));
        goto done;
    }
    while ((r = archive_read_next_header(a, &ae)) == ARCHIVE_OK) {
        const char *name = archive_entry_pathname(ae);
        la_int64_t size = archive_entry_size(ae);
        struct tar_entry *e;

        if (archive_entry_filetype(ae) != AE_IFREG ||
            archive_entry_hardlink(ae) || !name ||
            strncmp(name, strip ? strip : "", strip_len) != 0 ||
            !name_is_safe(name + strip_len) || size < 0) {
            if (!name || archive_entry_filetype(ae) != AE_IFDIR)
                out->skipped++;
            continue;
        }
        total += (size_t)size;
        if (out->n >= max_files || total > max_total) {
            rc = err_set(err, ERR_OUTPUT,
                         "results exceed %zu files or %zu bytes", max_files,
                         max_total);
            goto done;
        }
        e = tarball_files_add(out, xstrdup(name + strip_len), NULL, 0);
        rc = read_entry_data(a, e, (size_t)size, err);
        if (rc < 0)
            goto done;
    }
    if (r != ARCHIVE_EOF)
        rc = err_set(err, ERR_INTERNAL, "tar: %s", archive_error_string(a));
done:
    archive_read_free(a);
    return rc;
}

struct tar_entry *tarball_files_add(struct tar_files *files, char *name,
                                    char *data, size_t len)
{
    struct tar_entry *e;

    files->v = xrealloc(files->v, (files->n + 1) * sizeof(*files->v));
    e = &files->v[files->n++];
    *e = (struct tar_entry){name, data, len};
    return e;
}

const struct tar_entry *tarball_find(const struct tar_files *files,
                                     const char *name)
{
    size_t i;

    for (i = 0; i < files->n; i++)
        if (strcmp(files->v[i].name, name) == 0)
            return &files->v[i];
    return NULL;
}

void tarball_files_release(struct tar_files *files)
{
    size_t i;

    for (i = 0; i < files->n; i++) {
        free(files->v[i].name);
        free(files->v[i].data);
    }
    free(files->v);
    files->v = NULL;
    files->n = 0;
    files->skipped = 0;
}
