/*
 * The answer formats (include/nbcanvas/formats.h). The zip holds the page,
 * the executed notebook, result.json (the json answer, with notes on any
 * renamed or dropped artifact), each image output under resources/ and
 * the files the notebook wrote under artifacts/, named so that no unzip
 * tool writes outside its folder.
 */
#include "nbcanvas/formats.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nbcanvas/bundle.h"
#include "nbcanvas/job_status.h"
#include "nbcanvas/results.h"
#include "nbcanvas/util.h"

json_t *formats_result_json(const struct formats_input *in)
{
    json_t *timing = json_is_object(in->timing) ? json_incref(in->timing)
                                                : json_object();

    return json_pack("{s:s, s:s, s:o, s:o}", "id", in->id, "status", "ok",
                     "cells", results_cells_json(in->notebook), "timing_ms",
                     timing);
}

/* The json answer; notes (taken, may be NULL) adds its fields. */
static char *result_json(const struct formats_input *in, json_t *notes,
                         size_t *len)
{
    json_t *r = formats_result_json(in);
    char *s;

    if (notes)
        json_object_update(r, notes);
    json_decref(notes);
    s = json_dumps(r, JSON_COMPACT);
    json_decref(r);
    *len = strlen(s);
    return s;
}

static bool has_part(const struct bundle_part *parts, size_t n,
                     const char *name)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(parts[i].name, name) == 0)
            return true;
    return false;
}

/* Adds the files the notebook wrote to parts, under names any unzip tool
 * keeps inside its folder (a Windows one reads a backslash as a folder);
 * a name that had to change is listed in notes' artifacts_renamed, one
 * that then clashes with another is dropped and listed in
 * artifacts_dropped. The names are kept in names (caller frees). */
static size_t add_artifacts(const struct formats_input *in,
                            struct bundle_part *parts, size_t n,
                            struct tar_files *names, json_t *notes)
{
    json_t *renamed = json_array(), *dropped = json_array();
    size_t i;

    for (i = 0; i < in->results->n; i++) {
        const struct tar_entry *a = &in->results->v[i];
        char shown[4 * 256 + 1];
        bool changed;
        char *name;

        if (strncmp(a->name, JOB_RESULT_ARTIFACTS,
                    strlen(JOB_RESULT_ARTIFACTS)) != 0)
            continue;
        name = bundle_safe_name(a->name, &changed);
        util_escape(shown, sizeof(shown), a->name, strlen(a->name));
        if (has_part(parts, n, name)) {
            json_array_append_new(dropped, json_string(shown));
            free(name);
            continue;
        }
        if (changed)
            json_array_append_new(
                renamed, json_pack("{s:s, s:s}", "from", shown, "to", name));
        tarball_files_add(names, name, NULL, 0);
        parts[n++] = (struct bundle_part){name, a->data, a->len};
    }
    if (json_array_size(renamed))
        json_object_set(notes, "artifacts_renamed", renamed);
    if (json_array_size(dropped))
        json_object_set(notes, "artifacts_dropped", dropped);
    json_decref(renamed);
    json_decref(dropped);
    return n;
}

static int build_zip(const struct formats_input *in, char **body, size_t *len,
                     struct err *err)
{
    const struct tar_entry *html = tarball_find(in->results, JOB_RESULT_PAGE);
    const struct tar_entry *nb = tarball_find(in->results,
                                              JOB_RESULT_NOTEBOOK);
    struct tar_files images = TAR_FILES_INIT, names = TAR_FILES_INIT;
    struct bundle_part *parts;
    json_t *notes = json_object();
    char *result;
    size_t result_len, n = 0, i;
    int rc;

    results_images(&images, in->notebook);
    parts = xcalloc(3 + images.n + in->results->n, sizeof(*parts));
    parts[n++] = (struct bundle_part){"index.html", html->data, html->len};
    parts[n++] = (struct bundle_part){"notebook.ipynb", nb->data, nb->len};
    parts[n++] = (struct bundle_part){"result.json", NULL, 0};
    for (i = 0; i < images.n; i++) {
        char *name = xasprintf("resources/%s", images.v[i].name);

        free(images.v[i].name);
        images.v[i].name = name;
        parts[n++] = (struct bundle_part){name, images.v[i].data,
                                          images.v[i].len};
    }
    n = add_artifacts(in, parts, n, &names, notes);
    result = result_json(in, notes, &result_len);
    parts[2] = (struct bundle_part){"result.json", result, result_len};
    rc = bundle_zip(body, len, parts, n, err);
    free(result);
    free(parts);
    tarball_files_release(&images);
    tarball_files_release(&names);
    return rc;
}

/* Each format's Content-Type, by enum render_format. */
static const char *const CONTENT_TYPES[] = {
    [FORMAT_HTML] = "text/html; charset=utf-8",
    [FORMAT_ZIP] = "application/zip",
    [FORMAT_IPYNB] = "application/x-ipynb+json",
    [FORMAT_JSON] = "application/json",
};

bool formats_compressible(const char *content_type, size_t len)
{
    return len >= 1024 &&
           (strncmp(content_type, "text/", 5) == 0 ||
            strncmp(content_type, "application/json", 16) == 0 ||
            strncmp(content_type, "application/x-ipynb+json", 24) == 0);
}

const char *formats_content_type(const char *text, size_t len)
{
    for (size_t i = 0; i < sizeof(CONTENT_TYPES) / sizeof(CONTENT_TYPES[0]);
         i++)
        if (strlen(CONTENT_TYPES[i]) == len &&
            memcmp(CONTENT_TYPES[i], text, len) == 0)
            return CONTENT_TYPES[i];
    return NULL;
}

int formats_build(enum render_format format, const struct formats_input *in,
                  struct payload *out, struct err *err)
{
    const struct tar_entry *page = tarball_find(in->results, JOB_RESULT_PAGE);
    const struct tar_entry *nb = tarball_find(in->results,
                                              JOB_RESULT_NOTEBOOK);

    *out = (struct payload)PAYLOAD_INIT;
    if ((unsigned)format >= sizeof(CONTENT_TYPES) / sizeof(*CONTENT_TYPES))
        return err_set(err, ERR_INTERNAL, "unknown format");
    out->content_type = CONTENT_TYPES[format];
    switch (format) {
    case FORMAT_HTML:
        if (!page)
            return err_set(err, ERR_INTERNAL, "no page was exported");
        out->body = xstrndup(page->data, page->len);
        out->len = page->len;
        return 0;
    case FORMAT_IPYNB:
        if (!nb)
            return err_set(err, ERR_INTERNAL, "no executed notebook");
        out->body = xstrndup(nb->data, nb->len);
        out->len = nb->len;
        return 0;
    case FORMAT_JSON:
        if (!in->notebook)
            return err_set(err, ERR_INTERNAL, "no executed notebook");
        out->body = result_json(in, NULL, &out->len);
        return 0;
    case FORMAT_ZIP:
        if (!page || !nb || !in->notebook)
            return err_set(err, ERR_INTERNAL, "results are missing");
        return build_zip(in, &out->body, &out->len, err);
    }
    return err_set(err, ERR_INTERNAL, "unknown format");
}
