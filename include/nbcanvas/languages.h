#ifndef NBCANVAS_LANGUAGES_H
#define NBCANVAS_LANGUAGES_H

/*
 * The languages of POST /v1/run, read from a JSON file: each name maps to
 * an image, a file extension, a run command and optionally a compile
 * command (docs/LANGUAGES.md). Adding a language is an entry and an image,
 * never C code. Read-only after loading.
 */

#include <jansson.h>
#include <stddef.h>

#include "nbcanvas/err.h"

struct language {
    char *name;
    char *image;
    char *extension;
    char *command; /* run by sh -c in the working directory */
    char *compile; /* NULL when the language is not compiled */
    char *version;
};

struct languages;

/* Loads the file at path into a new table (caller frees). Fails with
 * ERR_INVALID naming the entry and field that is wrong. */
int languages_load(struct languages **out, const char *path, struct err *err);
void languages_free(struct languages *l);

/* The language called name, or NULL (borrowed). */
const struct language *languages_find(const struct languages *l,
                                      const char *name);
size_t languages_count(const struct languages *l);
const struct language *languages_at(const struct languages *l, size_t i);

/* A new JSON array for GET /v1/languages. */
json_t *languages_json(const struct languages *l);

#endif
