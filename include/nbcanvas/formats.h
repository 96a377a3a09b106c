#ifndef NBCANVAS_FORMATS_H
#define NBCANVAS_FORMATS_H

/*
 * The four answer formats (html, zip, ipynb, json) built from what a
 * job gave back: its results (index.html, notebook.ipynb,
 * artifacts/) and the executed notebook. A render builds the one its
 * request asked for; a session's export and a streamed render's kept
 * result build any of them later from the same parts.
 */

#include <jansson.h>
#include <stddef.h>

#include "nbcanvas/err.h"
#include "nbcanvas/payload.h"
#include "nbcanvas/request.h"
#include "nbcanvas/tarball.h"

/* Everything borrowed. */
struct formats_input {
    const char *id;                  /* the answer's "id" */
    const struct tar_files *results; /* the job's results */
    json_t *notebook;                /* the executed notebook */
    json_t *timing;                  /* timing_ms object, may be NULL */
};

/* The answer in format into *out (release with payload_release).
 * ERR_INTERNAL when a part the format needs is missing. */
int formats_build(enum render_format format, const struct formats_input *in,
                  struct payload *out, struct err *err);

/* The static Content-Type string of one of the four formats whose text is
 * the len bytes at text; NULL for anything else. */
const char *formats_content_type(const char *text, size_t len);

/* True when an answer of this type and size is worth gzip: text of at
 * least 1 KiB (a page with its images inline shrinks about five times);
 * zips and images are compressed already. */
bool formats_compressible(const char *content_type, size_t len);

/* The json format's object (new reference). */
json_t *formats_result_json(const struct formats_input *in);

#endif
