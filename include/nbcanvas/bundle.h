#ifndef NBCANVAS_BUNDLE_H
#define NBCANVAS_BUNDLE_H

/*
 * The zip answer of POST /v1/render (libzip, built in memory): index.html,
 * notebook.ipynb, result.json, resources/<images>, artifacts/<files the
 * notebook wrote>.
 */

#include <stdbool.h>
#include <stddef.h>

#include "nbcanvas/err.h"
#include "nbcanvas/tarball.h"

struct bundle_part {
    const char *name; /* path inside the zip */
    const char *data; /* borrowed until bundle_zip returns */
    size_t len;
};

/* A copy of name (caller frees) that every unzip tool keeps inside its
 * folder and can write on any system: backslashes, control characters
 * (C0, DEL, C1) and bytes that are not UTF-8 become '_'. *changed says
 * whether anything was replaced. */
char *bundle_safe_name(const char *name, bool *changed);

/* Writes a new zip of parts into *out (caller frees) and its size into
 * *out_len. */
int bundle_zip(char **out, size_t *out_len, const struct bundle_part *parts,
               size_t n, struct err *err);

/* Reads a zip this service made (one kept in the result cache) back into
 * files, at most max_total bytes unpacked (release with
 * tarball_files_release). */
int bundle_unzip(struct tar_files *files, const char *zip, size_t len,
                 size_t max_total, struct err *err);

#endif
