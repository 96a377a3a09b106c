/*
 * Request validation. Rules are strict on purpose: unknown fields are
 * errors (a typo must not silently change behaviour), limits may only be
 * lowered from the server's maxima, and file names are checked before a
 * tar is ever built.
 */
#include "nbcanvas/request.h"

#include <stdlib.h>
#include <string.h>

#include "nbcanvas/packages.h"
#include "nbcanvas/util.h"

static const char *const format_names[] = {"html", "zip", "ipynb", "json"};
static const char *const templates[] = {"lab", "classic", "canvas"};

bool request_file_name_ok(const char *name, size_t len)
{
    const char *p = name;

    if (len == 0 || len > REQUEST_MAX_NAME || strlen(name) != len ||
        name[0] == '/' || strchr(name, '\\'))
        return false;
    if (strncmp(name, ".nbcanvas", 9) == 0 &&
        (name[9] == '\0' || name[9] == '/'))
        return false;
    while (*p) {
        size_t seg = strcspn(p, "/");

        if (seg == 0 || (seg == 1 && p[0] == '.') ||
            (seg == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        p += seg;
        if (*p == '/' && *++p == '\0')
            return false; /* trailing slash */
    }
    return true;
}

static bool has_name(const struct tar_files *files, const char *name)
{
    return tarball_find(files, name) != NULL;
}

/* A directory and a file of the same name cannot both exist: "a" and
 * "a/b" together are rejected. */
static bool clashes_with_folder(const struct tar_files *files,
                                const char *name)
{
    size_t i, n = strlen(name);

    for (i = 0; i < files->n; i++) {
        const char *other = files->v[i].name;
        size_t m = strlen(other);

        if ((m > n && strncmp(other, name, n) == 0 && other[n] == '/') ||
            (n > m && strncmp(name, other, m) == 0 && name[m] == '/'))
            return true;
    }
    return false;
}

static int parse_file(struct tar_files *files, json_t *f, size_t i,
                      struct err *err)
{
    json_t *name = json_object_get(f, "name");
    json_t *content = json_object_get(f, "content_base64");
    const char *key;
    json_t *v;
    char *data;
    size_t len;

    json_object_foreach(f, key, v) {
        if (strcmp(key, "name") && strcmp(key, "content_base64"))
            return err_set(err, ERR_INVALID, "files[%zu]: unknown field '%s'",
                           i, key);
    }
    if (!json_is_string(name) || !json_is_string(content))
        return err_set(err, ERR_INVALID,
                       "files[%zu] needs string fields name and "
                       "content_base64",
                       i);
    if (!request_file_name_ok(json_string_value(name),
                              json_string_length(name)))
        return err_set(err, ERR_INVALID,
                       "files[%zu].name must be a relative path without "
                       "'..', '.', empty parts or a leading '/' (at most %d "
                       "bytes)",
                       i, REQUEST_MAX_NAME);
    if (has_name(files, json_string_value(name)) ||
        clashes_with_folder(files, json_string_value(name)))
        return err_set(err, ERR_INVALID, "files[%zu].name '%s' is a duplicate",
                       i, json_string_value(name));
    if (util_base64_decode(&data, &len, json_string_value(content),
                           json_string_length(content), false) < 0)
        return err_set(err, ERR_INVALID,
                       "files[%zu].content_base64 is not valid base64", i);
    tarball_files_add(files, xstrdup(json_string_value(name)), data, len);
    return 0;
}

static int parse_files(struct tar_files *files, json_t *list, struct err *err)
{
    json_t *f;
    size_t i;
    int rc;

    if (!list)
        return 0;
    if (!json_is_array(list))
        return err_set(err, ERR_INVALID, "files must be a list");
    if (json_array_size(list) > REQUEST_MAX_FILES)
        return err_set(err, ERR_INVALID, "at most %d files are allowed",
                       REQUEST_MAX_FILES);
    json_array_foreach(list, i, f) {
        if (!json_is_object(f))
            return err_set(err, ERR_INVALID, "files[%zu] must be an object",
                           i);
        rc = parse_file(files, f, i, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Reads an optional number of seconds within [1, max]. */
static int parse_seconds(long *out, json_t *v, const char *name, long max,
                         struct err *err)
{
    double d;

    if (!v)
        return 0;
    if (!json_is_number(v))
        return err_set(err, ERR_INVALID, "%s must be a number", name);
    d = json_number_value(v);
    if (!(d >= 1 && d <= (double)max))
        return err_set(err, ERR_INVALID, "%s must be between 1 and %ld", name,
                       max);
    *out = (long)d;
    return 0;
}

static int parse_timeout(long *out, json_t *v, long max, struct err *err)
{
    return parse_seconds(out, v, "timeout_s", max, err);
}

/* The kernel named by an optional field, python3 by default. */
static int parse_kernel(const struct kernel_info **out, json_t *kernel,
                        struct err *err)
{
    if (kernel && !json_is_string(kernel))
        return err_set(err, ERR_INVALID, "kernel must be a string");
    *out = notebook_kernel_find(kernel ? json_string_value(kernel)
                                       : "python3");
    if (!*out)
        return err_set(err, ERR_INVALID,
                       "unknown kernel '%s' (see GET /v1/kernels)",
                       json_string_value(kernel));
    return 0;
}

/* What only Python's kernel has: wheels at run time (an R notebook uses
 * the image's R packages) and the chart and table formatters (Python
 * modules; off for another kernel, whatever the request said). */
static int kernel_features(const struct kernel_info *k, json_t **packages,
                           bool *structured, struct err *err)
{
    if (k->ipykernel)
        return 0;
    if (structured)
        *structured = false;
    if (*packages && json_array_size(*packages) > 0)
        return err_set(err, ERR_INVALID,
                       "packages are for the python3 kernel: the %s kernel "
                       "has its image's libraries (docs/API.md)",
                       k->name);
    return 0;
}

static int parse_bool(bool *out, json_t *v, const char *name, struct err *err)
{
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return err_set(err, ERR_INVALID, "%s must be true or false", name);
    *out = json_is_true(v);
    return 0;
}

/* Picks the value of an optional string field from a fixed list. */
static int parse_choice(int *out, json_t *v, const char *name,
                        const char *const *choices, size_t n, struct err *err)
{
    size_t i;

    if (!v)
        return 0;
    for (i = 0; json_is_string(v) && i < n; i++) {
        if (strcmp(json_string_value(v), choices[i]) == 0) {
            *out = (int)i;
            return 0;
        }
    }
    return err_set(err, ERR_INVALID, "%s must be one of %s%s%s%s%s%s%s", name,
                   choices[0], n > 1 ? ", " : "", n > 1 ? choices[1] : "",
                   n > 2 ? ", " : "", n > 2 ? choices[2] : "",
                   n > 3 ? ", " : "", n > 3 ? choices[3] : "");
}

static int check_fields(json_t *root, const char *const *allowed, size_t n,
                        struct err *err)
{
    const char *key;
    json_t *v;
    size_t i;

    json_object_foreach(root, key, v) {
        char names[256] = "";

        for (i = 0; i < n; i++)
            if (strcmp(key, allowed[i]) == 0)
                break;
        if (i < n)
            continue;
        /* name what is taken: the fix of a typo is in the message */
        for (i = 0; i < n; i++)
            snprintf(names + strlen(names), sizeof(names) - strlen(names),
                     "%s%s", i ? ", " : "", allowed[i]);
        return err_set(err, ERR_INVALID,
                       "unknown field '%.64s' (the fields are %s)", key,
                       names);
    }
    return 0;
}

static int load_object(json_t **out, const char *body, size_t len,
                       struct err *err)
{
    json_error_t jerr;

    *out = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!*out)
        return err_set(err, ERR_INVALID, "body is not valid JSON: %s (at %d)",
                       jerr.text, jerr.position);
    if (!json_is_object(*out))
        return err_set(err, ERR_INVALID, "body must be a JSON object");
    return 0;
}

const char *request_format_name(enum render_format format)
{
    return format_names[format];
}

static int parse_render_fields(struct render_request *r, json_t *root,
                               const struct config *cfg, struct err *err)
{
    json_t *cells = json_object_get(root, "cells");
    json_t *nb = json_object_get(root, "notebook");
    json_t *kernel = json_object_get(root, "kernel");
    int format = FORMAT_HTML, tmpl = 0, rc;

    if (!!cells == !!nb)
        return err_set(err, ERR_INVALID,
                       "give exactly one of cells or notebook");
    r->uploaded = nb != NULL;
    rc = parse_kernel(&r->kernel, kernel, err);
    if (rc == 0)
        rc = parse_choice(&format, json_object_get(root, "format"), "format",
                          format_names, 4, err);
    if (rc == 0)
        rc = parse_choice(&tmpl, json_object_get(root, "template"), "template",
                          templates, 3, err);
    if (rc == 0)
        rc = parse_bool(&r->include_input,
                        json_object_get(root, "include_input"),
                        "include_input", err);
    if (rc == 0)
        rc = parse_bool(&r->allow_errors,
                        json_object_get(root, "allow_errors"), "allow_errors",
                        err);
    if (rc == 0)
        rc = parse_bool(&r->cache, json_object_get(root, "cache"), "cache",
                        err);
    /* Data beside the figures is for those who read data: on by default
     * for json and zip answers; the page is the same either way. */
    r->structured = format == FORMAT_JSON || format == FORMAT_ZIP;
    if (rc == 0)
        rc = parse_bool(&r->structured, json_object_get(root, "structured"),
                        "structured", err);
    if (rc == 0)
        rc = parse_timeout(&r->timeout_s, json_object_get(root, "timeout_s"),
                           cfg->render_max_timeout_s, err);
    if (rc == 0)
        rc = parse_files(&r->files, json_object_get(root, "files"), err);
    if (rc < 0)
        return rc;
    r->format = (enum render_format)format;
    snprintf(r->template_name, sizeof(r->template_name), "%s",
             templates[tmpl]);
    r->source = json_incref(cells ? cells : nb);
    rc = packages_parse(&r->packages, json_object_get(root, "packages"), cfg,
                        err);
    if (rc == 0 && cells)
        rc = notebook_from_cells(&r->notebook, cells, r->kernel, err);
    else if (rc == 0)
        rc = notebook_from_upload(&r->notebook, nb, r->kernel, err);
    if (rc == 0 && r->kernel->ipykernel) /* models write %pip lines */
        packages_from_magics(r->notebook, &r->packages, cfg);
    if (rc == 0)
        rc = kernel_features(r->kernel, &r->packages, &r->structured, err);
    return rc;
}

int request_parse_render(struct render_request *r, const char *body,
                         size_t len, const struct config *cfg, struct err *err)
{
    static const char *const fields[] = {
        "cells",         "notebook",     "kernel",     "format",
        "include_input", "template",     "timeout_s",  "files",
        "cache",         "allow_errors", "structured", "packages"};
    json_t *root = NULL;
    int rc;

    memset(r, 0, sizeof(*r));
    r->cache = true;
    r->timeout_s = cfg->render_timeout_s < cfg->render_max_timeout_s
                       ? cfg->render_timeout_s
                       : cfg->render_max_timeout_s;
    rc = load_object(&root, body, len, err);
    if (rc == 0)
        rc = check_fields(root, fields, sizeof(fields) / sizeof(fields[0]),
                          err);
    if (rc == 0)
        rc = parse_render_fields(r, root, cfg, err);
    json_decref(root);
    return rc;
}

void request_render_release(struct render_request *r)
{
    json_decref(r->notebook);
    json_decref(r->source);
    json_decref(r->packages);
    r->notebook = r->source = r->packages = NULL;
    tarball_files_release(&r->files);
}

static int copy_string(char **out, size_t *out_len, json_t *v,
                       const char *name, struct err *err)
{
    if (!json_is_string(v))
        return err_set(err, ERR_INVALID, "%s must be a string", name);
    *out_len = json_string_length(v);
    *out = xstrndup(json_string_value(v), *out_len);
    return 0;
}

int request_parse_run(struct run_request *r, const char *body, size_t len,
                      const struct config *cfg, struct err *err)
{
    static const char *const fields[] = {"language", "code", "stdin",
                                         "timeout_s", "files"};
    json_t *root = NULL, *lang, *v;
    int rc;

    memset(r, 0, sizeof(*r));
    r->timeout_s = cfg->run_timeout_s < cfg->run_max_timeout_s
                       ? cfg->run_timeout_s
                       : cfg->run_max_timeout_s;
    rc = load_object(&root, body, len, err);
    if (rc == 0)
        rc = check_fields(root, fields, sizeof(fields) / sizeof(fields[0]),
                          err);
    if (rc < 0)
        goto done;
    lang = json_object_get(root, "language");
    if (!json_is_string(lang) || json_string_length(lang) == 0 ||
        json_string_length(lang) >= sizeof(r->language)) {
        rc = err_set(err, ERR_INVALID,
                     "language must be a name from GET /v1/languages");
        goto done;
    }
    snprintf(r->language, sizeof(r->language), "%s", json_string_value(lang));
    rc = copy_string(&r->code, &r->code_len, json_object_get(root, "code"),
                     "code", err);
    if (rc < 0)
        goto done;
    v = json_object_get(root, "stdin");
    if (v)
        rc = copy_string(&r->stdin_data, &r->stdin_len, v, "stdin", err);
    else
        r->stdin_data = xstrdup("");
    if (rc == 0)
        rc = parse_timeout(&r->timeout_s, json_object_get(root, "timeout_s"),
                           cfg->run_max_timeout_s, err);
    if (rc == 0)
        rc = parse_files(&r->files, json_object_get(root, "files"), err);
done:
    json_decref(root);
    return rc;
}

void request_run_release(struct run_request *r)
{
    free(r->code);
    free(r->stdin_data);
    r->code = r->stdin_data = NULL;
    tarball_files_release(&r->files);
}

int request_parse_session(struct session_request *r, const char *body,
                          size_t len, const struct config *cfg,
                          struct err *err)
{
    static const char *const fields[] = {"kernel", "files", "idle_timeout_s",
                                         "packages"};
    json_t *root = NULL, *none = json_array();
    int rc;

    memset(r, 0, sizeof(*r));
    r->idle_timeout_s = cfg->session_idle_timeout_s;
    rc = load_object(&root, body, len, err);
    if (rc == 0)
        rc = check_fields(root, fields, sizeof(fields) / sizeof(fields[0]),
                          err);
    if (rc == 0)
        rc = parse_kernel(&r->kernel, json_object_get(root, "kernel"), err);
    if (rc == 0)
        rc = parse_seconds(&r->idle_timeout_s,
                           json_object_get(root, "idle_timeout_s"),
                           "idle_timeout_s", cfg->session_idle_timeout_s, err);
    if (rc == 0)
        rc = parse_files(&r->files, json_object_get(root, "files"), err);
    if (rc == 0)
        rc = packages_parse(&r->packages, json_object_get(root, "packages"),
                            cfg, err);
    if (rc == 0)
        rc = kernel_features(r->kernel, &r->packages, NULL, err);
    if (rc == 0) /* the session's notebook: its metadata, no cells yet */
        rc = notebook_from_cells(&r->notebook, none, r->kernel, err);
    json_decref(none);
    json_decref(root);
    return rc;
}

void request_session_release(struct session_request *r)
{
    json_decref(r->notebook);
    json_decref(r->packages);
    r->notebook = r->packages = NULL;
    tarball_files_release(&r->files);
}

int request_parse_execute(struct execute_request *r, const char *body,
                          size_t len, const struct config *cfg,
                          const struct kernel_info *kernel, struct err *err)
{
    static const char *const fields[] = {"code", "timeout_s", "files"};
    json_t *root = NULL, *code, *cells = NULL;
    int rc;

    memset(r, 0, sizeof(*r));
    r->timeout_s = cfg->render_timeout_s < cfg->render_max_timeout_s
                       ? cfg->render_timeout_s
                       : cfg->render_max_timeout_s;
    rc = load_object(&root, body, len, err);
    if (rc == 0)
        rc = check_fields(root, fields, sizeof(fields) / sizeof(fields[0]),
                          err);
    code = json_object_get(root, "code");
    if (rc == 0 && !json_is_string(code))
        rc = err_set(err, ERR_INVALID, "code must be a string");
    if (rc == 0)
        rc = parse_timeout(&r->timeout_s, json_object_get(root, "timeout_s"),
                           cfg->render_max_timeout_s, err);
    if (rc == 0)
        rc = parse_files(&r->files, json_object_get(root, "files"), err);
    if (rc == 0) {
        cells = json_pack("[O]", code);
        rc = notebook_from_cells(&r->notebook, cells, kernel, err);
    }
    if (rc == 0 && kernel->ipykernel) /* %pip lines: before the cell */
        packages_from_magics(r->notebook, &r->packages, cfg);
    json_decref(cells);
    json_decref(root);
    return rc;
}

void request_execute_release(struct execute_request *r)
{
    json_decref(r->notebook);
    json_decref(r->packages);
    r->notebook = r->packages = NULL;
    tarball_files_release(&r->files);
}

/* The index of value in choices, or -1. */
static int choice_index(const char *value, const char *const *choices,
                        size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(value, choices[i]) == 0)
            return (int)i;
    return -1;
}

int request_parse_export(struct export_request *r, const char *format,
                         const char *template_name, const char *include_input,
                         struct err *err)
{
    int f = format ? choice_index(format, format_names, 4) : FORMAT_HTML;
    int t = template_name ? choice_index(template_name, templates, 3) : 0;

    if (f < 0)
        return err_set(err, ERR_INVALID,
                       "format must be one of html, zip, ipynb, json");
    if (t < 0)
        return err_set(err, ERR_INVALID,
                       "template must be one of lab, classic, canvas");
    if (include_input && strcmp(include_input, "true") &&
        strcmp(include_input, "false"))
        return err_set(err, ERR_INVALID,
                       "include_input must be true or false");
    r->format = (enum render_format)f;
    snprintf(r->template_name, sizeof(r->template_name), "%s", templates[t]);
    r->include_input = include_input && strcmp(include_input, "true") == 0;
    return 0;
}

int request_parse_sql(struct sql_request *r, const char *body, size_t len,
                      struct err *err)
{
    static const char *const fields[] = {"datasource", "query", "format",
                                         "template"};
    static const char *const formats[] = {"html", "json", "csv"};
    json_t *root = NULL, *ds;
    int format = SQL_HTML, tmpl = 2, rc; /* the canvas template */

    memset(r, 0, sizeof(*r));
    rc = load_object(&root, body, len, err);
    if (rc == 0)
        rc = check_fields(root, fields, sizeof(fields) / sizeof(fields[0]),
                          err);
    ds = json_object_get(root, "datasource");
    if (rc == 0 && (!json_is_string(ds) || json_string_length(ds) == 0 ||
                    json_string_length(ds) >= sizeof(r->datasource)))
        rc = err_set(err, ERR_INVALID,
                     "datasource must name one of GET /v1/datasources");
    if (rc == 0)
        rc = copy_string(&r->query, &r->query_len,
                         json_object_get(root, "query"), "query", err);
    if (rc == 0)
        rc = parse_choice(&format, json_object_get(root, "format"), "format",
                          formats, 3, err);
    if (rc == 0)
        rc = parse_choice(&tmpl, json_object_get(root, "template"), "template",
                          templates, 3, err);
    if (rc == 0) {
        snprintf(r->datasource, sizeof(r->datasource), "%s",
                 json_string_value(ds));
        r->format = (enum sql_format)format;
        snprintf(r->template_name, sizeof(r->template_name), "%s",
                 templates[tmpl]);
    }
    json_decref(root);
    return rc;
}

void request_sql_release(struct sql_request *r)
{
    free(r->query);
    r->query = NULL;
}
