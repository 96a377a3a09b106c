#ifndef NBCANVAS_NOTEBOOK_H
#define NBCANVAS_NOTEBOOK_H

/*
 * nbformat v4 notebooks as jansson values: built from a request's cells, or
 * taken from an uploaded notebook with its kernel forced to the requested
 * one (a kernelspec inside a notebook never picks the kernel by itself).
 */

#include <jansson.h>

#include <stdbool.h>
#include <stddef.h>

#include "nbcanvas/config.h"
#include "nbcanvas/err.h"

/* The notebook kernels, one table (src/notebook.c): a kernel is its image
 * and the command its relay starts; nothing else in the execution code
 * names one. */
struct kernel_info {
    const char *name;
    const char *language;
    const char *display_name;
    int index;               /* its place in the table (its pool's) */
    size_t image_key;        /* offsetof(struct config, the image's key) */
    size_t pool_key;         /* offsetof(struct config, its pool's floor) */
    const char *const *argv; /* what the relay starts, after itself */
    bool ipykernel;          /* Python's kernel: wheels, %%sql, chart and table
                       formatters (nbcanvas's kernel-side modules) */
};

#define NOTEBOOK_KERNELS 2

/* The kernel at index i (0 <= i < NOTEBOOK_KERNELS). */
const struct kernel_info *notebook_kernel_at(int i);
/* Its image, as cfg names it. */
const char *notebook_kernel_image(const struct kernel_info *k,
                                  const struct config *cfg);
/* Its pool's floor in cfg (-1: from memory, as pool_size). */
long notebook_kernel_pool_size(const struct kernel_info *k,
                               const struct config *cfg);

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
