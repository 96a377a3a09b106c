/*
 * Requirements as a request names them, and the `%pip install` lines a
 * model writes (include/nbcanvas/packages.h). They are hostile input:
 * each is checked against a strict subset of PEP 508 (a name, extras,
 * version clauses, a marker made only of the environment's names, quoted
 * strings and comparisons) before pip ever sees it, so nothing can be read
 * as an option, a URL or a path. A %pip line is rewritten only when every
 * word of it passes; anything else is left for the kernel, as it was.
 */
#include "nbcanvas/packages.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbcanvas/buf.h"
#include "nbcanvas/util.h"

static bool name_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.';
}

/* A project or extra name at *p: letters and digits at both ends. */
static bool take_name(const char **p)
{
    const char *s = *p, *e = s;

    if (!isalnum((unsigned char)*s))
        return false;
    while (name_char(*e))
        e++;
    if (!isalnum((unsigned char)e[-1]))
        return false;
    *p = e;
    return true;
}

static void skip_spaces(const char **p)
{
    while (**p == ' ')
        (*p)++;
}

static bool take_op(const char **p)
{
    static const char *const ops[] = {
        "===", "~=", "==", "!=", "<=", ">=", "<", ">"};
    size_t i;

    for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        if (strncmp(*p, ops[i], strlen(ops[i])) == 0) {
            *p += strlen(ops[i]);
            return true;
        }
    }
    return false;
}

static bool take_version(const char **p)
{
    const char *s = *p;

    while (**p && (isalnum((unsigned char)**p) || strchr(".*+!-_", **p)))
        (*p)++;
    return *p > s;
}

/* A marker (PEP 508): the environment's names, quoted strings,
 * comparisons, "in", "not", "and", "or" and parentheses, nothing else. */
static bool marker_ok(const char *p)
{
    static const char *const words[] = {"python_version",
                                        "python_full_version",
                                        "os_name",
                                        "sys_platform",
                                        "platform_release",
                                        "platform_system",
                                        "platform_version",
                                        "platform_machine",
                                        "platform_python_implementation",
                                        "implementation_name",
                                        "implementation_version",
                                        "extra",
                                        "and",
                                        "or",
                                        "in",
                                        "not"};
    bool any = false;

    while (*p) {
        if (*p == ' ' || *p == '(' || *p == ')') {
            p++;
        } else if (*p == '\'' || *p == '"') { /* a string: no quote inside */
            const char *end = strchr(p + 1, *p);

            if (!end)
                return false;
            for (p++; p < end; p++)
                if (!isalnum((unsigned char)*p) && !strchr(" ._-+*!", *p))
                    return false;
            p++;
            any = true;
        } else if (strchr("<>=!~", *p)) {
            while (*p && strchr("<>=!~", *p))
                p++;
        } else {
            size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyz_"), i;

            for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
                if (n == strlen(words[i]) && strncmp(p, words[i], n) == 0)
                    break;
            if (n == 0 || i == sizeof(words) / sizeof(words[0]))
                return false;
            p += n;
            any = true;
        }
    }
    return any;
}

bool packages_spec_ok(const char *spec, char *why, size_t why_len)
{
    const char *p = spec;

#define REFUSE(msg)                                                           \
    do {                                                                      \
        snprintf(why, why_len, "%s", msg);                                    \
        return false;                                                         \
    } while (0)
    if (strlen(spec) == 0 || strlen(spec) > PACKAGE_SPEC_MAX)
        REFUSE("a requirement is 1 to 200 bytes");
    skip_spaces(&p);
    if (*p == '-')
        REFUSE("options are not accepted");
    if (!take_name(&p))
        REFUSE("it must start with a project name");
    skip_spaces(&p);
    if (*p == '[') {
        do {
            p++;
            skip_spaces(&p);
            if (!take_name(&p))
                REFUSE("extras must be names");
            skip_spaces(&p);
        } while (*p == ',');
        if (*p++ != ']')
            REFUSE("extras end with ]");
        skip_spaces(&p);
    }
    if (*p == '@')
        REFUSE("URLs are not accepted");
    if (*p && *p != ';') {
        do {
            if (*p == ',')
                p++;
            skip_spaces(&p);
            if (!take_op(&p))
                REFUSE("a version clause starts with ==, >=, ~= ...");
            skip_spaces(&p);
            if (!take_version(&p))
                REFUSE("a version clause needs a version");
            skip_spaces(&p);
        } while (*p == ',');
    }
    if (*p == ';' && !marker_ok(p + 1))
        REFUSE("the marker holds characters a marker cannot");
    if (*p && *p != ';')
        REFUSE("unexpected characters (no URLs, paths or options)");
#undef REFUSE
    return true;
}

bool packages_source_set(const struct config *cfg)
{
    return cfg->package_index_url[0] || cfg->wheelhouse_dir[0];
}

size_t packages_name_len(const char *spec)
{
    const char *e = spec;

    while (name_char(*e))
        e++;
    return (size_t)(e - spec);
}

int packages_parse(json_t **out, json_t *list, const struct config *cfg,
                   struct err *err)
{
    char why[96], shown[4 * 64 + 1];
    json_t *v;
    size_t i;

    if (!list)
        return 0;
    if (!packages_source_set(cfg))
        return err_set(err, ERR_INVALID,
                       "packages: this service has no package source "
                       "(package_index_url or wheelhouse_dir)");
    if (!json_is_array(list))
        return err_set(err, ERR_INVALID, "packages must be a list");
    if (json_array_size(list) > PACKAGES_MAX)
        return err_set(err, ERR_INVALID, "packages: at most %d", PACKAGES_MAX);
    json_array_foreach(list, i, v) {
        const char *s = json_string_value(v);

        if (!s)
            return err_set(err, ERR_INVALID, "packages[%zu] must be a string",
                           i);
        if (!packages_spec_ok(s, why, sizeof(why))) {
            util_escape(shown, sizeof(shown), s,
                        strlen(s) > 64 ? 64 : strlen(s));
            return err_set(err, ERR_INVALID, "packages[%zu] '%s': %s", i,
                           shown, why);
        }
    }
    if (!*out)
        *out = json_array();
    json_array_foreach(list, i, v)
        json_array_append(*out, v);
    return 0;
}

/* ------------------------------------------------------- %pip lines */

/* The words of a line after its pip install command, or NULL. */
static const char *pip_install_words(const char *line)
{
    static const char *const starts[] = {"%pip install ",
                                         "!pip install ",
                                         "!pip3 install ",
                                         "!python -m pip install ",
                                         "!python3 -m pip install ",
                                         "%pip3 install "};
    size_t i;

    while (*line == ' ' || *line == '\t')
        line++;
    for (i = 0; i < sizeof(starts) / sizeof(starts[0]); i++)
        if (strncmp(line, starts[i], strlen(starts[i])) == 0)
            return line + strlen(starts[i]);
    return NULL;
}

/* The line's requirements (new array) when every word is a quiet flag or
 * a requirement, else NULL. */
static json_t *line_requirements(const char *words)
{
    json_t *reqs = json_array();
    char *copy = xstrdup(words), *save = NULL, *w;
    char why[96];

    for (w = strtok_r(copy, " \t", &save); w;
         w = strtok_r(NULL, " \t", &save)) {
        size_t n = strlen(w);

        /* quotes a shell would take away */
        if (n >= 2 && (w[0] == '"' || w[0] == '\'') && w[n - 1] == w[0]) {
            w[n - 1] = '\0';
            w++;
        }
        if (strcmp(w, "-q") == 0 || strcmp(w, "--quiet") == 0 ||
            strcmp(w, "-qq") == 0)
            continue;
        if (!packages_spec_ok(w, why, sizeof(why)) || strchr(w, ';')) {
            json_decref(reqs);
            free(copy);
            return NULL;
        }
        json_array_append_new(reqs, json_string(w));
    }
    free(copy);
    if (json_array_size(reqs) == 0) {
        json_decref(reqs);
        return NULL;
    }
    return reqs;
}

/* The cell's source with its pip lines rewritten (new string), or NULL
 * when it has none. */
static char *rewrite_source(const char *src, json_t **packages, bool on)
{
    struct buf out = BUF_INIT((size_t)-1);
    const char *line = src;
    bool changed = false;

    while (*line) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        char *text = xstrndup(line, n);
        const char *words = pip_install_words(text);
        json_t *reqs = words ? line_requirements(words) : NULL;
        size_t indent = strspn(text, " \t");

        if (reqs && *packages &&
            json_array_size(*packages) + json_array_size(reqs) >
                PACKAGES_MAX) { /* past the cap: the line stays */
            json_decref(reqs);
            reqs = NULL;
        }
        if (reqs) {
            char *list = json_dumps(reqs, JSON_COMPACT);

            changed = true;
            buf_append(&out, text, indent);
            if (on)
                buf_printf(&out,
                           "print('nbcanvas: installed before the notebook "
                           "ran: ' + ', '.join(%s))",
                           list);
            else
                buf_printf(
                    &out, "raise RuntimeError('nbcanvas: the sandbox has no "
                          "network; packages at run time need the "
                          "service\\'s package_index_url or wheelhouse_dir')");
            if (on) {
                if (!*packages)
                    *packages = json_array();
                json_array_extend(*packages, reqs);
            }
            free(list);
            json_decref(reqs);
        } else {
            buf_append(&out, text, n);
        }
        if (end)
            buf_puts(&out, "\n");
        free(text);
        line = end ? end + 1 : line + n;
    }
    if (!changed) {
        buf_release(&out);
        return NULL;
    }
    return buf_detach(&out, NULL);
}

void packages_from_magics(json_t *notebook, json_t **packages,
                          const struct config *cfg)
{
    json_t *cells = json_object_get(notebook, "cells"), *cell;
    size_t i;

    json_array_foreach(cells, i, cell) {
        json_t *src = json_object_get(cell, "source");
        struct buf joined = BUF_INIT((size_t)-1);
        char *rewritten;
        json_t *part;
        size_t k;

        if (strcmp(json_string_value(json_object_get(cell, "cell_type"))
                       ? json_string_value(json_object_get(cell, "cell_type"))
                       : "",
                   "code") != 0)
            continue;
        if (json_is_string(src))
            buf_puts(&joined, json_string_value(src));
        json_array_foreach(src, k, part)
            buf_puts(&joined,
                     json_string_value(part) ? json_string_value(part) : "");
        rewritten = rewrite_source(joined.data, packages,
                                   packages_source_set(cfg));
        if (rewritten)
            json_object_set_new(cell, "source", json_string(rewritten));
        free(rewritten);
        buf_release(&joined);
    }
}
