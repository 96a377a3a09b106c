#ifndef NBCANVAS_TARBALL_H
#define NBCANVAS_TARBALL_H

/*
 * In-memory tar archives (libarchive): the job a sandbox reads on its
 * stdin, and the results it writes on its stdout; and gzip, through the
 * same library, for answers on the wire.
 * Writing: the service builds the upload itself from validated names, as
 * regular files with fixed owner and mode, never links. Reading: only
 * regular files are kept; links, devices and names that climb out of the
 * root are skipped and counted, and sizes are capped, so a hostile
 * container cannot make the service read or write outside its buffers.
 * Nothing is ever extracted to the host's filesystem.
 */

#include <stddef.h>

#include "nbcanvas/buf.h"
#include "nbcanvas/err.h"

struct tar_entry {
    char *name; /* relative path */
    char *data;
    size_t len;
};

struct tar_files {
    struct tar_entry *v;
    size_t n;
    size_t skipped; /* entries that were not plain regular files */
};

#define TAR_FILES_INIT                                                        \
    {                                                                         \
        NULL, 0, 0                                                            \
    }

/* Appends a tar of entries (borrowed) to out, owned by uid:gid, mode 0644,
 * with a directory entry for every parent folder. */
int tarball_write(struct buf *out, const struct tar_entry *entries, size_t n,
                  int uid, int gid, struct err *err);

/* Like tarball_write, for files (a request's, borrowed) followed by n
 * extra entries (the job's own): how every job reaches a sandbox. */
int tarball_write_files(struct buf *out, const struct tar_files *files,
                        const struct tar_entry *extra, size_t n, int uid,
                        int gid, struct err *err);

/* Appends len bytes of data, gzip-compressed (RFC 1952), to out. */
int tarball_gzip(struct buf *out, const char *data, size_t len,
                 struct err *err);
/* Appends what the gzip stream of len bytes at data holds to out (its cap
 * bounds the result). */
int tarball_gunzip(struct buf *out, const char *data, size_t len,
                   struct err *err);

/* Reads the regular files of a tar held in memory into out (caller releases
 * with tarball_files_release). strip is a leading folder to drop from every
 * name ("sandbox/"); entries outside it are skipped. More than max_files
 * files or max_total bytes fails with ERR_OUTPUT. */
int tarball_read(struct tar_files *out, const char *data, size_t len,
                 const char *strip, size_t max_files, size_t max_total,
                 struct err *err);

/* Appends an entry to files, which takes ownership of name and data
 * (both allocated; data may hold len bytes and a NUL after them). */
struct tar_entry *tarball_files_add(struct tar_files *files, char *name,
                                    char *data, size_t len);

/* The entry named name, or NULL (borrowed). */
const struct tar_entry *tarball_find(const struct tar_files *files,
                                     const char *name);

void tarball_files_release(struct tar_files *files);

#endif
