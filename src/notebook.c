/*
 * Building notebooks. The shape follows nbformat 4.5 (cell ids included) so
 * that nbformat's own validator accepts what we make; tests run that
 * validator inside the notebook image.
 */
#include "nbcanvas/notebook.h"

#include <stddef.h>
#include <string.h>

#include "nbcanvas/util.h"

/* The relay starts the kernel on a connection file it writes: it puts its
 * path in place of "{connection_file}". The launchers are the images'
 * (notebook-images/<name>/): they attach the common libraries first in a
 * pool's sandbox. */
static const char *const python_argv[] = {
    "python3",           "/opt/nbcanvas/nbcanvas_kernel.py",    "-f",
    "{connection_file}", "--HistoryManager.hist_file=:memory:", NULL};
static const char *const r_argv[] = {"Rscript", "--vanilla",
                                     "/opt/nbcanvas/nbcanvas_kernel.R",
                                     "{connection_file}", NULL};

static const struct kernel_info kernels[NOTEBOOK_KERNELS] = {
    {"python3", "python", "Python 3 (ipykernel)", 0,
     offsetof(struct config, notebook_image),
     offsetof(struct config, pool_size), python_argv, true},
    {"ir", "R", "R", 1, offsetof(struct config, r_image),
     offsetof(struct config, r_pool_size), r_argv, false},
};

const struct kernel_info *notebook_kernel_at(int i)
{
    return i >= 0 && i < NOTEBOOK_KERNELS ? &kernels[i] : NULL;
}

const char *notebook_kernel_image(const struct kernel_info *k,
                                  const struct config *cfg)
{
    return (const char *)cfg + k->image_key;
}

long notebook_kernel_pool_size(const struct kernel_info *k,
                               const struct config *cfg)
{
    return *(const long *)(const void *)((const char *)cfg + k->pool_key);
}

const struct kernel_info *notebook_kernel_find(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof(kernels) / sizeof(kernels[0]); i++)
        if (strcmp(kernels[i].name, name) == 0)
            return &kernels[i];
    return NULL;
}

json_t *notebook_kernels_json(void)
{
    json_t *list = json_array();
    size_t i;

    for (i = 0; i < sizeof(kernels) / sizeof(kernels[0]); i++)
        json_array_append_new(
            list, json_pack("{s:s, s:s, s:s}", "name", kernels[i].name,
                            "language", kernels[i].language, "display_name",
                            kernels[i].display_name));
    return list;
}

static void set_kernel_metadata(json_t *nb, const struct kernel_info *k)
{
    json_t *meta = json_object_get(nb, "metadata");

    if (!json_is_object(meta)) {
        meta = json_object();
        json_object_set_new(nb, "metadata", meta);
    }
    json_object_set_new(meta, "kernelspec",
                        json_pack("{s:s, s:s, s:s}", "name", k->name,
                                  "display_name", k->display_name, "language",
                                  k->language));
    json_object_set_new(meta, "language_info",
                        json_pack("{s:s}", "name", k->language));
}

/* A source is a string or a list of strings; returns a new copy of it. */
static int copy_source(json_t **out, json_t *src, size_t index,
                       struct err *err)
{
    size_t i;
    json_t *line;

    if (json_is_string(src)) {
        *out = json_copy(src);
        return 0;
    }
    if (!json_is_array(src))
        return err_set(err, ERR_INVALID,
                       "cells[%zu].source must be a string or a list of "
                       "strings",
                       index);
    json_array_foreach(src, i, line) {
        if (!json_is_string(line))
            return err_set(err, ERR_INVALID,
                           "cells[%zu].source[%zu] must be a string", index,
                           i);
    }
    *out = json_copy(src);
    return 0;
}

static json_t *new_cell(const char *type, json_t *source, json_t *metadata)
{
    char id[37];
    json_t *cell;

    util_uuid(id);
    cell = json_pack(
        "{s:s, s:s, s:o, s:o}", "id", id, "cell_type", type, "metadata",
        metadata ? json_copy(metadata) : json_object(), "source", source);
    if (strcmp(type, "code") == 0) {
        json_object_set_new(cell, "execution_count", json_null());
        json_object_set_new(cell, "outputs", json_array());
    }
    return cell;
}

static bool known_cell_key(const char *key)
{
    static const char *const allowed[] = {"cell_type", "source", "metadata",
                                          "attachments", "id"};
    size_t i;

    for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
        if (strcmp(key, allowed[i]) == 0)
            return true;
    return false;
}

static int cell_from_object(json_t **out, json_t *obj, size_t index,
                            struct err *err)
{
    const char *type = "code", *key;
    json_t *v, *meta, *source = NULL;
    int rc;

    json_object_foreach(obj, key, v) {
        if (!known_cell_key(key))
            return err_set(err, ERR_INVALID, "cells[%zu]: unknown field '%s'",
                           index, key);
    }
    v = json_object_get(obj, "cell_type");
    if (v) {
        type = json_string_value(v);
        if (!type || (strcmp(type, "code") && strcmp(type, "markdown") &&
                      strcmp(type, "raw")))
            return err_set(err, ERR_INVALID,
                           "cells[%zu].cell_type must be code, markdown or "
                           "raw",
                           index);
    }
    v = json_object_get(obj, "source");
    if (!v)
        return err_set(err, ERR_INVALID, "cells[%zu] has no source", index);
    rc = copy_source(&source, v, index, err);
    if (rc < 0)
        return rc;
    meta = json_object_get(obj, "metadata");
    if (meta && !json_is_object(meta)) {
        json_decref(source);
        return err_set(err, ERR_INVALID,
                       "cells[%zu].metadata must be an object", index);
    }
    *out = new_cell(type, source, meta);
    v = json_object_get(obj, "attachments");
    if (v && strcmp(type, "code") != 0 && json_is_object(v))
        json_object_set(*out, "attachments", v);
    return 0;
}

int notebook_from_cells(json_t **out, json_t *cells,
                        const struct kernel_info *kernel, struct err *err)
{
    json_t *nb, *list, *item, *cell = NULL;
    size_t i;
    int rc;

    if (!json_is_array(cells))
        return err_set(err, ERR_INVALID, "cells must be a list");
    list = json_array();
    json_array_foreach(cells, i, item) {
        if (json_is_string(item)) {
            cell = new_cell("code", json_copy(item), NULL);
        } else if (json_is_object(item)) {
            rc = cell_from_object(&cell, item, i, err);
            if (rc < 0) {
                json_decref(list);
                return rc;
            }
        } else {
            json_decref(list);
            return err_set(err, ERR_INVALID,
                           "cells[%zu] must be a string or a cell object", i);
        }
        json_array_append_new(list, cell);
    }
    nb = json_pack("{s:i, s:i, s:{}, s:o}", "nbformat", 4, "nbformat_minor", 5,
                   "metadata", "cells", list);
    set_kernel_metadata(nb, kernel);
    *out = nb;
    return 0;
}

int notebook_from_upload(json_t **out, json_t *nb,
                         const struct kernel_info *kernel, struct err *err)
{
    json_t *copy, *cells, *cell;
    size_t i;

    if (!json_is_object(nb))
        return err_set(err, ERR_INVALID, "notebook must be an object");
    if (json_integer_value(json_object_get(nb, "nbformat")) != 4)
        return err_set(err, ERR_INVALID,
                       "notebook must be nbformat 4 (\"nbformat\": 4)");
    cells = json_object_get(nb, "cells");
    if (!json_is_array(cells))
        return err_set(err, ERR_INVALID, "notebook.cells must be a list");
    json_array_foreach(cells, i, cell) {
        if (!json_is_object(cell) ||
            !json_is_string(json_object_get(cell, "cell_type")))
            return err_set(err, ERR_INVALID,
                           "notebook.cells[%zu] must be an object with a "
                           "cell_type",
                           i);
    }
    copy = json_deep_copy(nb);
    set_kernel_metadata(copy, kernel);
    *out = copy;
    return 0;
}
