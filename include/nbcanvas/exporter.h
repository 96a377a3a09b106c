#ifndef NBCANVAS_EXPORTER_H
#define NBCANVAS_EXPORTER_H

/*
 * Conversion in warm workers: nbconvert stays the converter (the page is
 * the one `jupyter nbconvert --to html` makes), but it runs in long-lived
 * containers of the notebook image that never run user code
 * (notebook-images/python/nbcanvas_export.py), hardened like a sandbox.
 * A job hands one an executed notebook and the options and gets the
 * page; the same worker checks an uploaded notebook against nbformat's
 * schema before it is executed.
 *
 * Workers are started in the background (a thread keeps every slot
 * filled), each is replaced after EXPORTER_RECYCLE_AFTER conversions, and
 * one that fails or wedges is removed and the conversion retried once on
 * a fresh one. Thread-safe.
 */

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "nbcanvas/config.h"
#include "nbcanvas/docker.h"
#include "nbcanvas/err.h"
#include "nbcanvas/sandbox.h"

#define EXPORTER_RECYCLE_AFTER 500
#define EXPORTER_MAX 8

struct exporters;

struct exporter_stats {
    long size;        /* workers wanted */
    long idle, busy;  /* workers ready and in use now */
    long conversions; /* answered, since start */
    long failures;    /* workers that failed or wedged, replaced */
    long recycled;    /* workers replaced after their quota */
};

enum export_op {
    EXPORT_HTML,    /* the page */
    EXPORT_VALIDATE /* only nbformat's verdict */
};

struct conversion {
    enum export_op op;
    json_t *notebook; /* borrowed */
    const char *template_name;
    bool include_input;
    bool sanitize_html;
    long long max_bytes; /* a page past it is ERR_OUTPUT */
};

/* size 0: from the cores (half of them, at least 1, at most
 * EXPORTER_MAX). cfg, owner and live are borrowed for the pool's life. */
struct exporters *exporters_new(struct docker *d, const struct config *cfg,
                                const char *owner, struct sandbox_set *live,
                                long size);
/* Stops the workers and removes their containers. */
void exporters_free(struct exporters *x);

/* Converts (or validates) req's notebook. On EXPORT_HTML, *page (caller
 * frees) and *len are the page. ERR_INVALID with nbformat's message when
 * the notebook is not valid; ERR_OUTPUT for a page over max_bytes;
 * ERR_TIMEOUT, ERR_CANCELLED; ERR_INTERNAL when nbconvert failed on it. */
int exporters_convert(struct exporters *x, const struct conversion *req,
                      char **page, size_t *len, long long deadline_ms,
                      const atomic_bool *cancel, struct err *err);

void exporters_stats(struct exporters *x, struct exporter_stats *out);

#endif
