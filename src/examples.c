/*
 * Examples for the canvas page: every examples/<name>.json that is a JSON
 * object with "cells" is listed, titled by its first markdown heading or
 * by its name. Read once at start.
 */
#include "nbcanvas/examples.h"

#include <dirent.h>
#include <string.h>

#include "nbcanvas/util.h"

/* "# Sales overview" in the first markdown cell, else the file's name. */
static char *title_of(json_t *req, const char *name)
{
    json_t *cell;
    size_t i;

    json_array_foreach(json_object_get(req, "cells"), i, cell) {
        const char *type = json_string_value(
            json_object_get(cell, "cell_type"));
        const char *src = json_string_value(json_object_get(cell, "source"));

        if (type && src && strcmp(type, "markdown") == 0) {
            src += strspn(src, "# ");
            return xstrndup(src, strcspn(src, "\n"));
        }
    }
    return xstrdup(name);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(
        json_string_value(json_object_get(*(json_t *const *)a, "name")),
        json_string_value(json_object_get(*(json_t *const *)b, "name")));
}

json_t *examples_load(const char *dir)
{
    json_t *list = json_array(), **items;
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t i, n;

    if (!d)
        return list;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        char *path, *name, *title;
        json_t *req;

        if (len < 6 || strcmp(e->d_name + len - 5, ".json") != 0)
            continue;
        path = xasprintf("%s/%s", dir, e->d_name);
        req = json_load_file(path, 0, NULL);
        free(path);
        if (!json_is_object(req) ||
            !json_is_array(json_object_get(req, "cells"))) {
            json_decref(req);
            continue;
        }
        name = xstrndup(e->d_name, len - 5);
        title = title_of(req, name);
        json_array_append_new(list, json_pack("{s:s, s:s, s:o}", "name", name,
                                              "title", title, "request", req));
        free(name);
        free(title);
    }
    closedir(d);
    /* a stable order for the menu */
    n = json_array_size(list);
    items = xcalloc(n + 1, sizeof(*items));
    for (i = 0; i < n; i++)
        items[i] = json_incref(json_array_get(list, i));
    qsort(items, n, sizeof(*items), by_name);
    json_array_clear(list);
    for (i = 0; i < n; i++)
        json_array_append_new(list, items[i]);
    free(items);
    return list;
}
