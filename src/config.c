/*
 * Configuration: one table maps every JSON key to a field of struct config,
 * its type and its allowed range, so adding a setting is one line here and
 * one in docs/CONFIG.md.
 */
#include "nbcanvas/config.h"

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "nbcanvas/util.h"

enum key_type {
    KEY_STR,
    KEY_LONG,
    KEY_LLONG,
    KEY_DOUBLE,
    KEY_BOOL,
    KEY_NAMES, /* a JSON list of strings, kept one per line */
    KEY_JSON   /* any JSON list, kept as its text (checked by its module) */
};

struct key {
    const char *name;
    enum key_type type;
    size_t offset;
    size_t size; /* for strings: the field's size */
    double min, max;
};

/* One line each reads best. */
/* clang-format off */
#define STR(n, f) {n, KEY_STR, offsetof(struct config, f), \
                   sizeof(((struct config *)0)->f), 0, 0}
#define LONG(n, f, lo, hi) {n, KEY_LONG, offsetof(struct config, f), 0, lo, hi}
#define LLONG(n, f, lo, hi) \
    {n, KEY_LLONG, offsetof(struct config, f), 0, lo, hi}
#define DBL(n, f, lo, hi) {n, KEY_DOUBLE, offsetof(struct config, f), 0, lo, hi}
#define BOOL(n, f) {n, KEY_BOOL, offsetof(struct config, f), 0, 0, 0}
#define NAMES(n, f) {n, KEY_NAMES, offsetof(struct config, f), \
                     sizeof(((struct config *)0)->f), 0, 0}
#define JSONLIST(n, f) {n, KEY_JSON, offsetof(struct config, f), \
                        sizeof(((struct config *)0)->f), 0, 0}
/* clang-format on */
#define MiB (1024.0 * 1024.0)
#define GiB (1024.0 * MiB)

static const struct key keys[] = {
    STR("listen", listen),
    STR("replica_id", replica_id),
    STR("replica_route", replica_route),
    LONG("cluster_replicas", cluster_replicas, 1, 1024),
    STR("docker_host", docker_host),
    LONG("docker_timeout_ms", docker_timeout_ms, 100, 600000),
    STR("runtime", runtime),
    STR("notebook_image", notebook_image),
    STR("r_image", r_image),
    STR("languages_file", languages_file),
    STR("examples_dir", examples_dir),
    STR("html_csp", html_csp),
    LLONG("max_body_bytes", max_body_bytes, 1024, 1 * GiB),
    LLONG("max_run_body_bytes", max_run_body_bytes, 1024, 1 * GiB),
    LONG("max_connections", max_connections, 1, 65536),
    LONG("max_connections_per_ip", max_connections_per_ip, 1, 65536),
    LONG("connection_timeout_s", connection_timeout_s, 1, 3600),
    LONG("request_deadline_s", request_deadline_s, 1, 3600),
    LONG("render_timeout_s", render_timeout_s, 1, 86400),
    LONG("render_max_timeout_s", render_max_timeout_s, 1, 86400),
    LLONG("max_html_bytes", max_html_bytes, 1024, 4 * GiB),
    /* above the headroom kept for the results' own parts (kernel_job.c) */
    LLONG("max_result_bytes", max_result_bytes, 2 * MiB, 4 * GiB),
    LLONG("max_artifact_bytes", max_artifact_bytes, 0, 4 * GiB),
    LONG("max_table_rows", max_table_rows, 1, 1000000),
    LONG("pool_size", pool_size, -1, 1024),
    LONG("r_pool_size", r_pool_size, -1, 1024),
    LONG("pool_max_size", pool_max_size, -1, 1024),
    DBL("pool_memory_share", pool_memory_share, 0, 0.9),
    LLONG("cache_bytes", cache_bytes, 0, 64 * GiB),
    STR("cache_redis_url", cache_redis_url),
    LONG("cache_ttl_s", cache_ttl_s, 1, 365 * 86400),
    LONG("cache_redis_timeout_ms", cache_redis_timeout_ms, 10, 60000),
    LLONG("render_memory_bytes", render_limits.memory_bytes, 16 * MiB,
          256 * GiB),
    DBL("render_cpus", render_limits.cpus, 0.01, 256),
    LONG("render_pids", render_limits.pids, 16, 100000),
    LLONG("render_workdir_bytes", render_limits.workdir_bytes, MiB, 64 * GiB),
    LLONG("render_tmp_bytes", render_limits.tmp_bytes, MiB, 64 * GiB),
    LONG("render_nofile", render_limits.nofile, 32, 1048576),
    LLONG("render_fsize_bytes", render_limits.fsize_bytes, MiB, 64 * GiB),
    LONG("run_timeout_s", run_timeout_s, 1, 86400),
    LONG("run_max_timeout_s", run_max_timeout_s, 1, 86400),
    LONG("compile_timeout_s", compile_timeout_s, 1, 86400),
    LLONG("max_output_bytes", max_output_bytes, 1024, GiB),
    LLONG("run_memory_bytes", run_limits.memory_bytes, 16 * MiB, 256 * GiB),
    DBL("run_cpus", run_limits.cpus, 0.01, 256),
    LONG("run_pids", run_limits.pids, 8, 100000),
    LLONG("run_workdir_bytes", run_limits.workdir_bytes, MiB, 64 * GiB),
    LLONG("run_tmp_bytes", run_limits.tmp_bytes, MiB, 64 * GiB),
    LONG("run_nofile", run_limits.nofile, 32, 1048576),
    LLONG("run_fsize_bytes", run_limits.fsize_bytes, MiB, 64 * GiB),
    LONG("max_sessions", max_sessions, 0, 4096),
    LONG("session_idle_timeout_s", session_idle_timeout_s, 1, 7 * 86400),
    LONG("session_max_lifetime_s", session_max_lifetime_s, 1, 30 * 86400),
    LONG("session_pause_after_s", session_pause_after_s, 0, 86400),
    LONG("gateway_max_connections", gateway_max_connections, 1, 1024),
    LONG("gateway_max_tenant_connections", gateway_max_tenant_connections, 1,
         65536),
    LLONG("gateway_max_message_bytes", gateway_max_message_bytes, 4096,
          64 * MiB),
    LLONG("gateway_max_queued_bytes", gateway_max_queued_bytes, 64 * 1024,
          GiB),
    LONG("gateway_ping_interval_s", gateway_ping_interval_s, 1, 3600),
    LONG("result_ttl_s", result_ttl_s, 1, 86400),
    LLONG("kept_results_bytes", kept_results_bytes, 0, 64 * GiB),
    STR("package_index_url", package_index_url),
    STR("wheelhouse_dir", wheelhouse_dir),
    STR("wheel_cache_dir", wheel_cache_dir),
    LLONG("wheel_cache_bytes", wheel_cache_bytes, 0, 1024 * GiB),
    LLONG("package_max_bytes", package_max_bytes, MiB, 4 * GiB),
    LONG("package_timeout_s", package_timeout_s, 1, 3600),
    STR("package_python_version", package_python_version),
    NAMES("package_platforms", package_platforms),
    LONG("max_jobs", max_jobs, 0, 4096),
    LONG("max_queue", max_queue, 0, 65536),
    LONG("reaper_interval_s", reaper_interval_s, 1, 3600),
    STR("api_keys_file", api_keys_file),
    BOOL("allow_unauthenticated", allow_unauthenticated),
    NAMES("allowed_hosts", allowed_hosts),
    NAMES("allowed_origins", allowed_origins),
    JSONLIST("datasources", datasources),
    STR("tls_cert_file", tls_cert_file),
    STR("tls_key_file", tls_key_file),
};

void config_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->listen, sizeof(cfg->listen), "127.0.0.1:8080");
    snprintf(cfg->docker_host, sizeof(cfg->docker_host),
             "unix:///var/run/docker.sock");
    cfg->docker_timeout_ms = 15000;
    snprintf(cfg->notebook_image, sizeof(cfg->notebook_image),
             "nbcanvas/python:latest");
    snprintf(cfg->r_image, sizeof(cfg->r_image), "nbcanvas/r:latest");
    cfg->r_pool_size = -1;
    snprintf(cfg->languages_file, sizeof(cfg->languages_file),
             "%s/languages.json", NBCANVAS_SOURCE_DIR);
    snprintf(cfg->examples_dir, sizeof(cfg->examples_dir), "%s/examples",
             NBCANVAS_SOURCE_DIR);
    /* Scripts and styles inline only, no network, a unique origin. */
    snprintf(cfg->html_csp, sizeof(cfg->html_csp),
             "sandbox allow-scripts allow-popups; default-src 'none'; "
             "script-src 'unsafe-inline' 'unsafe-eval'; "
             "style-src 'unsafe-inline'; img-src data: blob:; "
             "font-src data:; media-src data:");
    cfg->max_body_bytes = 8 << 20;
    cfg->max_run_body_bytes = 256 << 10;
    cfg->max_connections = 256;
    cfg->max_connections_per_ip = 16;
    cfg->connection_timeout_s = 10;
    cfg->request_deadline_s = 30;
    cfg->render_timeout_s = 60;
    cfg->render_max_timeout_s = 300;
    cfg->max_html_bytes = 16 << 20;
    cfg->max_result_bytes = 64 << 20;
    cfg->max_artifact_bytes = 32 << 20;
    cfg->max_table_rows = 1000;
    cfg->pool_size = -1;
    cfg->pool_max_size = -1;
    cfg->pool_memory_share = 0.25;
    cfg->cache_bytes = 256LL << 20;
    cfg->cache_ttl_s = 3600;
    cfg->cache_redis_timeout_ms = 250;
    cfg->render_limits = (struct sandbox_limits){
        512LL << 20, 1.0, 128, 128LL << 20, 64LL << 20, 256, 32LL << 20};
    snprintf(cfg->wheel_cache_dir, sizeof(cfg->wheel_cache_dir),
             "/var/cache/nbcanvas/wheels");
    cfg->wheel_cache_bytes = 2LL << 30;
    cfg->package_max_bytes = 64LL << 20;
    cfg->package_timeout_s = 120;
    snprintf(cfg->package_python_version, sizeof(cfg->package_python_version),
             "3.11");
    snprintf(cfg->package_platforms, sizeof(cfg->package_platforms),
             "manylinux_2_36_x86_64\nlinux_x86_64");
    cfg->max_sessions = 8;
    cfg->cluster_replicas = 1;
    cfg->session_idle_timeout_s = 600;
    cfg->session_max_lifetime_s = 3600;
    cfg->session_pause_after_s = 10;
    cfg->gateway_max_connections = 8;
    cfg->gateway_max_tenant_connections = 64;
    cfg->gateway_max_message_bytes = 8 << 20; /* under tornado's 10 MiB */
    cfg->gateway_max_queued_bytes = 32 << 20;
    cfg->gateway_ping_interval_s = 30;
    cfg->result_ttl_s = 300;
    cfg->kept_results_bytes = 256LL << 20;
    cfg->run_timeout_s = 10;
    cfg->run_max_timeout_s = 60;
    cfg->compile_timeout_s = 30;
    cfg->max_output_bytes = 1 << 20;
    cfg->run_limits = (struct sandbox_limits){
        256LL << 20, 1.0, 64, 64LL << 20, 64LL << 20, 256, 16LL << 20};
    cfg->reaper_interval_s = 30;
}

/* A list of names into field, one per line (no name may hold one). */
static int set_names(char *field, const struct key *k, json_t *v,
                     struct err *err)
{
    size_t i, used = 0;
    json_t *name;

    if (!json_is_array(v))
        return err_set(err, ERR_INVALID,
                       "config key '%s' must be a list of strings", k->name);
    field[0] = '\0';
    json_array_foreach(v, i, name) {
        const char *s = json_string_value(name);
        size_t n = json_string_length(name);

        if (!s || n == 0 || strchr(s, '\n') || strlen(s) != n ||
            used + n + 2 > k->size)
            return err_set(err, ERR_INVALID,
                           "config key '%s' must be a list of names, "
                           "%zu bytes in all at most",
                           k->name, k->size - 1);
        used += (size_t)snprintf(field + used, k->size - used, "%s\n", s);
    }
    return 0;
}

static int set_key(struct config *cfg, const struct key *k, json_t *v,
                   struct err *err)
{
    char *field = (char *)cfg + k->offset;
    double d;

    if (k->type == KEY_BOOL) {
        if (!json_is_boolean(v))
            return err_set(err, ERR_INVALID,
                           "config key '%s' must be true or false", k->name);
        *(bool *)(void *)field = json_is_true(v);
        return 0;
    }
    if (k->type == KEY_NAMES)
        return set_names(field, k, v, err);
    if (k->type == KEY_JSON) {
        char *text = json_is_array(v) ? json_dumps(v, JSON_COMPACT) : NULL;
        bool fits = text && strlen(text) < k->size;

        if (fits)
            snprintf(field, k->size, "%s", text);
        free(text);
        return fits ? 0
                    : err_set(err, ERR_INVALID,
                              "config key '%s' must be a list, %zu bytes of "
                              "JSON at most",
                              k->name, k->size - 1);
    }

    if (k->type == KEY_STR) {
        if (!json_is_string(v) || json_string_length(v) >= k->size)
            return err_set(err, ERR_INVALID,
                           "config key '%s' must be a string under %zu bytes",
                           k->name, k->size);
        snprintf(field, k->size, "%s", json_string_value(v));
        return 0;
    }
    if (!json_is_number(v) || (k->type != KEY_DOUBLE && !json_is_integer(v)))
        return err_set(err, ERR_INVALID, "config key '%s' must be a number",
                       k->name);
    d = json_number_value(v);
    if (d < k->min || d > k->max)
        return err_set(err, ERR_INVALID,
                       "config key '%s' must be between %.0f and %.0f",
                       k->name, k->min, k->max);
    if (k->type == KEY_LONG)
        *(long *)(void *)field = (long)json_integer_value(v);
    else if (k->type == KEY_LLONG)
        *(long long *)(void *)field = (long long)json_integer_value(v);
    else
        *(double *)(void *)field = d;
    return 0;
}

int config_load(struct config *cfg, const char *path, struct err *err)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    const char *name;
    json_t *v;
    int rc = 0;

    if (!root)
        return err_set(err, ERR_INVALID, "config %s:%d: %s", path, jerr.line,
                       jerr.text);
    if (!json_is_object(root)) {
        rc = err_set(err, ERR_INVALID, "config %s: not a JSON object", path);
        goto done;
    }
    json_object_foreach(root, name, v) {
        size_t i;

        for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
            if (strcmp(keys[i].name, name) == 0)
                break;
        if (i == sizeof(keys) / sizeof(keys[0])) {
            rc = err_set(err, ERR_INVALID, "config %s: unknown key '%s'", path,
                         name);
            goto done;
        }
        rc = set_key(cfg, &keys[i], v, err);
        if (rc < 0)
            goto done;
    }
done:
    json_decref(root);
    return rc;
}

/* An environment variable's text as the JSON value its key takes: strings
 * as they are, lists split at commas, numbers and booleans parsed. */
static json_t *env_value(const struct key *k, const char *text)
{
    json_t *v, *list;
    const char *p = text;

    if (k->type == KEY_STR)
        return json_string(text);
    if (k->type == KEY_JSON)
        return json_loads(text, 0, NULL);
    if (k->type != KEY_NAMES)
        return json_loads(text, JSON_DECODE_ANY, NULL); /* NULL: wrong */
    list = json_array();
    while (*p) {
        size_t n = strcspn(p, ",");

        v = json_stringn(p, n);
        json_array_append_new(list, v ? v : json_string(""));
        p += n + (p[n] == ',');
    }
    return list;
}

int config_load_env(struct config *cfg, const char *(*get)(const char *name),
                    struct err *err)
{
    char name[96];
    size_t i, j;

    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const char *text;
        json_t *v;
        int rc;

        j = (size_t)snprintf(name, sizeof(name), "NBCANVAS_");
        for (const char *p = keys[i].name; *p && j + 1 < sizeof(name); p++)
            name[j++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        name[j] = '\0';
        text = get(name);
        if (!text)
            continue;
        v = env_value(&keys[i], text);
        rc = v ? set_key(cfg, &keys[i], v, err)
               : err_set(err, ERR_INVALID,
                         "config key '%s': '%.40s' is not %s", keys[i].name,
                         text,
                         keys[i].type == KEY_BOOL   ? "true or false"
                         : keys[i].type == KEY_JSON ? "a JSON list"
                                                    : "a number");
        json_decref(v);
        if (rc < 0) {
            char why[sizeof(err->msg)];

            snprintf(why, sizeof(why), "%s", err->msg);
            return err_set(err, ERR_INVALID, "%s: %s", name, why);
        }
    }
    return 0;
}

void config_finish(struct config *cfg)
{
    if (cfg->max_jobs == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        long long mem = (long long)sysconf(_SC_PHYS_PAGES) *
                        sysconf(_SC_PAGESIZE);
        long by_mem = (long)(mem / 2 / cfg->render_limits.memory_bytes);

        cfg->max_jobs = cores < by_mem ? cores : by_mem;
        if (cfg->max_jobs < 1)
            cfg->max_jobs = 1;
    }
    cfg->pool_size_default = cfg->pool_size < 0;
    if (cfg->pool_size < 0)
        cfg->pool_size = cfg->max_jobs;
    /* R's pool: one warm sandbox, unless the pools are off (pool_size 0
     * is the one switch for no idle containers) */
    if (cfg->r_pool_size < 0)
        cfg->r_pool_size = cfg->pool_size > 0 ? 1 : 0;
    if (cfg->pool_max_size >= 0 && cfg->pool_max_size < cfg->pool_size)
        cfg->pool_max_size = cfg->pool_size;
    if (cfg->max_queue == 0)
        cfg->max_queue = 2 * cfg->max_jobs;
}
