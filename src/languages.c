/*
 * The languages file. Names and extensions are checked here because they
 * end up in file names inside the sandbox; commands are the operator's
 * (the file is configuration, not request input) and run inside it.
 */
#include "nbcanvas/languages.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nbcanvas/util.h"

struct languages {
    struct language *v;
    size_t n;
};

static bool word_ok(const char *s, size_t max)
{
    size_t i;

    if (!s[0] || strlen(s) > max)
        return false;
    for (i = 0; s[i]; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-' &&
            s[i] != '+')
            return false;
    return true;
}

static int field(char **out, json_t *entry, const char *lang, const char *key,
                 bool required, struct err *err)
{
    json_t *v = json_object_get(entry, key);

    *out = NULL;
    if (!v && !required)
        return 0;
    if (!json_is_string(v) || json_string_length(v) == 0)
        return err_set(err, ERR_INVALID,
                       "languages: %s.%s must be a non-empty string", lang,
                       key);
    *out = xstrdup(json_string_value(v));
    return 0;
}

static int load_entry(struct language *l, const char *name, json_t *entry,
                      struct err *err)
{
    const char *key;
    json_t *v;
    int rc;

    if (!json_is_object(entry) || !word_ok(name, 63))
        return err_set(err, ERR_INVALID,
                       "languages: '%s' must be a plain name with an object",
                       name);
    json_object_foreach(entry, key, v) {
        if (strcmp(key, "image") && strcmp(key, "extension") &&
            strcmp(key, "command") && strcmp(key, "compile") &&
            strcmp(key, "version"))
            return err_set(err, ERR_INVALID, "languages: %s: unknown key '%s'",
                           name, key);
    }
    l->name = xstrdup(name);
    rc = field(&l->image, entry, name, "image", true, err);
    if (rc == 0)
        rc = field(&l->extension, entry, name, "extension", true, err);
    if (rc == 0)
        rc = field(&l->command, entry, name, "command", true, err);
    if (rc == 0)
        rc = field(&l->compile, entry, name, "compile", false, err);
    if (rc == 0)
        rc = field(&l->version, entry, name, "version", false, err);
    if (rc == 0 && !word_ok(l->extension, 15))
        rc = err_set(err, ERR_INVALID,
                     "languages: %s.extension must be letters or digits",
                     name);
    return rc;
}

static void language_release(struct language *l)
{
    free(l->name);
    free(l->image);
    free(l->extension);
    free(l->command);
    free(l->compile);
    free(l->version);
}

int languages_load(struct languages **out, const char *path, struct err *err)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr), *v;
    struct languages *l;
    const char *name;
    int rc = 0;

    if (!root)
        return err_set(err, ERR_INVALID, "languages %s:%d: %s", path,
                       jerr.line, jerr.text);
    if (!json_is_object(root) || json_object_size(root) == 0) {
        json_decref(root);
        return err_set(err, ERR_INVALID,
                       "languages %s: must be an object of languages", path);
    }
    l = xcalloc(1, sizeof(*l));
    l->v = xcalloc(json_object_size(root), sizeof(*l->v));
    json_object_foreach(root, name, v) {
        rc = load_entry(&l->v[l->n++], name, v, err);
        if (rc < 0)
            break;
    }
    json_decref(root);
    if (rc < 0) {
        languages_free(l);
        return rc;
    }
    *out = l;
    return 0;
}

void languages_free(struct languages *l)
{
    size_t i;

    if (!l)
        return;
    for (i = 0; i < l->n; i++)
        language_release(&l->v[i]);
    free(l->v);
    free(l);
}

const struct language *languages_find(const struct languages *l,
                                      const char *name)
{
    size_t i;

    for (i = 0; l && i < l->n; i++)
        if (strcmp(l->v[i].name, name) == 0)
            return &l->v[i];
    return NULL;
}

size_t languages_count(const struct languages *l)
{
    return l ? l->n : 0;
}

const struct language *languages_at(const struct languages *l, size_t i)
{
    return &l->v[i];
}

json_t *languages_json(const struct languages *l)
{
    json_t *list = json_array();
    size_t i;

    for (i = 0; l && i < l->n; i++) {
        const struct language *g = &l->v[i];

        json_array_append_new(
            list, json_pack("{s:s, s:s, s:s, s:s, s:b}", "name", g->name,
                            "extension", g->extension, "image", g->image,
                            "version", g->version ? g->version : "",
                            "compiled", g->compile != NULL));
    }
    return list;
}
