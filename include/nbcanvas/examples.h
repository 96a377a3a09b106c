#ifndef NBCANVAS_EXAMPLES_H
#define NBCANVAS_EXAMPLES_H

/*
 * The ready requests in examples/, for the canvas page's menu
 * (GET /v1/examples): [{"name", "title", "request"}].
 */

#include <jansson.h>

/* A new JSON array of the examples found in dir (those that are valid
 * render requests in JSON); an empty array if there are none. */
json_t *examples_load(const char *dir);

#endif
