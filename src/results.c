/*
 * Executed-notebook readers. nbformat stores text as a string or a list of
 * strings and images as base64 (svg as text); these helpers flatten that
 * into what clients want, without trusting that outputs are well formed:
 * anything of an unexpected type is skipped, never dereferenced blindly.
 */
#include "nbcanvas/results.h"

#include <openssl/evp.h>
#include <string.h>

#include "nbcanvas/ansi.h"
#include "nbcanvas/util.h"

/* Joins a multiline string (string or list of strings) into one cleaned
 * JSON string. */
static json_t *joined_text(json_t *v)
{
    struct buf b = BUF_INIT((size_t)-1);
    json_t *line, *out;
    size_t i;

    if (json_is_string(v)) {
        buf_append(&b, json_string_value(v), json_string_length(v));
    } else {
        json_array_foreach(v, i, line) {
            if (json_is_string(line))
                buf_append(&b, json_string_value(line),
                           json_string_length(line));
        }
    }
    out = ansi_clean_json(b.data, b.len);
    buf_release(&b);
    return out;
}

static bool is_text_mime(const char *mime)
{
    return strncmp(mime, "text/", 5) == 0 ||
           strcmp(mime, "image/svg+xml") == 0 ||
           strcmp(mime, "application/javascript") == 0;
}

json_t *results_output_json(json_t *out)
{
    json_t *copy = json_deep_copy(out), *data, *v;
    const char *key;

    if (json_object_get(copy, "text"))
        json_object_set_new(copy, "text",
                            joined_text(json_object_get(copy, "text")));
    if (json_object_get(copy, "evalue"))
        ansi_clean_json_text(json_object_get(copy, "evalue"));
    if (json_is_array(json_object_get(copy, "traceback")))
        ansi_clean_json_text(json_object_get(copy, "traceback"));
    data = json_object_get(copy, "data");
    json_object_foreach(data, key, v) {
        if (is_text_mime(key))
            json_object_set_new(data, key, joined_text(v));
        else if (json_is_string(v) || json_is_array(v))
            json_object_set_new(data, key, joined_text(v)); /* base64 */
    }
    return copy;
}

json_t *results_cells_json(json_t *nb)
{
    json_t *cells = json_object_get(nb, "cells"), *list = json_array(), *cell;
    size_t i;

    json_array_foreach(cells, i, cell) {
        json_t *outs = json_object_get(cell, "outputs"), *o, *clean;
        size_t j;

        if (!json_is_string(json_object_get(cell, "cell_type")) ||
            strcmp(json_string_value(json_object_get(cell, "cell_type")),
                   "code") != 0)
            continue;
        clean = json_array();
        json_array_foreach(outs, j, o) {
            if (json_is_object(o))
                json_array_append_new(clean, results_output_json(o));
        }
        json_array_append_new(
            list, json_pack("{s:I, s:s, s:O, s:o}", "index", (json_int_t)i,
                            "cell_type", "code", "execution_count",
                            json_object_get(cell, "execution_count")
                                ? json_object_get(cell, "execution_count")
                                : json_null(),
                            "outputs", clean));
    }
    return list;
}

/* Decodes base64 that may hold newlines (nbformat allows them). */
static bool decode_base64(json_t *v, char **out, size_t *out_len)
{
    json_t *text = joined_text(v);
    bool ok = util_base64_decode(out, out_len, json_string_value(text),
                                 json_string_length(text), true) == 0;

    json_decref(text);
    return ok;
}

static const struct {
    const char *mime, *ext;
    bool base64;
} image_types[] = {
    {"image/png", "png", true},
    {"image/jpeg", "jpg", true},
    {"image/gif", "gif", true},
    {"image/svg+xml", "svg", false},
};

static void output_images(struct tar_files *files, json_t *data, size_t cell,
                          size_t index)
{
    size_t t;

    for (t = 0; t < sizeof(image_types) / sizeof(image_types[0]); t++) {
        json_t *v = json_object_get(data, image_types[t].mime);
        char *bytes = NULL;
        size_t len = 0;

        if (!v)
            continue;
        if (image_types[t].base64) {
            if (!decode_base64(v, &bytes, &len))
                continue;
        } else {
            json_t *text = joined_text(v);

            len = json_string_length(text);
            bytes = xstrndup(json_string_value(text), len);
            json_decref(text);
        }
        tarball_files_add(
            files,
            xasprintf("cell%zu_output%zu.%s", cell, index, image_types[t].ext),
            bytes, len);
        return; /* one file per output: the first image type found */
    }
}

void results_images(struct tar_files *files, json_t *nb)
{
    json_t *cells = json_object_get(nb, "cells"), *cell, *o;
    size_t i, j;

    json_array_foreach(cells, i, cell) {
        json_array_foreach(json_object_get(cell, "outputs"), j, o) {
            json_t *data = json_object_get(o, "data");

            if (json_is_object(data))
                output_images(files, data, i, j);
        }
    }
}

json_t *results_cell_error(json_t *status)
{
    json_t *tb = json_deep_copy(json_object_get(status, "traceback"));
    json_t *evalue = json_object_get(status, "evalue");
    json_t *ename = json_object_get(status, "ename");

    if (!json_is_array(tb)) {
        json_decref(tb);
        tb = json_array();
    }
    ansi_clean_json_text(tb);
    return json_pack(
        "{s:O, s:o, s:o, s:o}", "cell",
        json_object_get(status, "cell") ? json_object_get(status, "cell")
                                        : json_null(),
        "ename",
        json_is_string(ename) ? ansi_clean_json(json_string_value(ename),
                                                json_string_length(ename))
                              : json_string(""),
        "evalue",
        json_is_string(evalue) ? ansi_clean_json(json_string_value(evalue),
                                                 json_string_length(evalue))
                               : json_string(""),
        "traceback", tb);
}
