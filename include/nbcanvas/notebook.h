#ifndef NBCANVAS_NOTEBOOK_H
#define NBCANVAS_NOTEBOOK_H

/*
 * nbformat v4 notebooks as jansson values: built from a request's cells, or
 * taken from an uploaded notebook with its kernel forced to the requested
 * one (a kernelspec inside a notebook never picks the kernel by itself).
 */

#include <jansson.h>

#include "nbcanvas/err.h"

struct kernel_info {
    const char *name;
    const char *language;
    const char *display_name;
};

/* The kernel called name, or NULL (static storage). */
const struct kernel_info *notebook_kernel_find(const char *name);
/* A new JSON array describing every kernel, for GET /v1/kernels. */
json_t *notebook_kernels_json(void);

/* Builds a new notebook (caller decrefs) from cells: a JSON array whose
 * items are strings (code cells) or cell objects with cell_type code,
 * markdown or raw and source as a string or list of strings. */
int notebook_from_cells(json_t **out, json_t *cells,
                        const struct kernel_info *kernel, struct err *err);

/* A new deep copy of an uploaded notebook with kernelspec and language_info
 * set for kernel. Fails with ERR_INVALID when it is not nbformat 4 in shape
 * (the sandbox runs nbformat's full validator later). */
int notebook_from_upload(json_t **out, json_t *nb,
                         const struct kernel_info *kernel, struct err *err);

#endif
