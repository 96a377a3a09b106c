#ifndef NBCANVAS_CONFIG_H
#define NBCANVAS_CONFIG_H

/*
 * The service's settings: built-in defaults that work on the machine the
 * README sets up, overridden by a JSON config file. Read once at start and
 * read-only afterwards, so every thread may read it without locks.
 * docs/CONFIG.md lists every key.
 */

#include <stdbool.h>
#include <stddef.h>

#include "nbcanvas/err.h"

/* Limits that apply to one sandbox container. */
struct sandbox_limits {
    long long memory_bytes; /* memory and memory+swap: no swap */
    double cpus;
    long pids;
    long long workdir_bytes; /* tmpfs size of /home/sandbox */
    long long tmp_bytes;     /* tmpfs size of /tmp */
    long nofile;
    long long fsize_bytes;
};

struct config {
    char listen[64];
    char replica_id[64];    /* labels our sandboxes; "": the listen address */
    char replica_route[24]; /* in the ids it makes (ids.h); "": none */
    long cluster_replicas;  /* assumed alive before Redis tells */
    char docker_host[256];
    long docker_timeout_ms;
    char runtime[32]; /* "" for the engine's default, "runsc" for gVisor */
    char notebook_image[128]; /* the python3 kernel's (notebook.c) */
    char r_image[128];        /* the ir kernel's */
    char languages_file[512];
    char examples_dir[512];
    char html_csp[512];

    /* HTTP */
    long long max_body_bytes;
    long long max_run_body_bytes;
    long max_connections;
    long max_connections_per_ip;
    long connection_timeout_s;
    long request_deadline_s; /* the client's turn, absolute */

    /* /v1/render */
    long render_timeout_s;     /* default when the request names none */
    long render_max_timeout_s; /* the most a request may ask for */
    long long max_html_bytes;
    long long max_result_bytes; /* everything fetched back from a sandbox */
    long long max_artifact_bytes;
    long max_table_rows;    /* rows of a table+json's data at most */
    long pool_size;         /* warm sandboxes at least; -1: max_jobs */
    long r_pool_size;       /* the same for R; -1: 1, or 0 when pool_size is */
    bool pool_size_default; /* pool_size was -1: a floor from memory */
    long pool_max_size;     /* under demand at most; -1: from memory */
    double pool_memory_share;    /* of RAM idle sandboxes may hold */
    long long cache_bytes;       /* result cache size; 0 turns it off */
    char cache_redis_url[256];   /* "": the cache is in this process */
    long cache_ttl_s;            /* a shared cache entry's life */
    long cache_redis_timeout_ms; /* one Redis command at most */
    struct sandbox_limits render_limits;

    /* /v1/run */
    long run_timeout_s;
    long run_max_timeout_s;
    long compile_timeout_s;
    long long max_output_bytes; /* per stream */
    struct sandbox_limits run_limits;

    /* sessions (POST /v1/sessions) and streamed renders */
    long max_sessions;           /* live at once, service-wide */
    long session_idle_timeout_s; /* the default and most for a request */
    long session_max_lifetime_s; /* every session ends by then */
    long session_pause_after_s;  /* idle this long: frozen; 0: never */
    /* the kernel gateway's WebSocket (http_gateway.c) */
    long gateway_max_connections;        /* to one kernel */
    long gateway_max_tenant_connections; /* of one tenant, all kernels */
    long long gateway_max_message_bytes; /* one message from a client */
    long long gateway_max_queued_bytes;  /* a slow reader's backlog */
    long gateway_ping_interval_s;        /* pings; two missed: closed */
    long result_ttl_s;                   /* a streamed render's /v1/results */
    long long kept_results_bytes;        /* all kept results at most */

    /* packages at run time (packages.h); both sources "": off */
    char package_index_url[512]; /* a PEP 503 simple index */
    char wheelhouse_dir[512];    /* a folder of wheels */
    char wheel_cache_dir[512];
    long long wheel_cache_bytes;
    long long package_max_bytes;     /* one request's wheels at most */
    long package_timeout_s;          /* one resolution by pip at most */
    char package_python_version[16]; /* the sandbox's interpreter */
    char package_platforms[512];     /* its platform tags, one per line */

    /* scheduling */
    long max_jobs;  /* 0: from cores and memory */
    long max_queue; /* 0: twice max_jobs */
    long reaper_interval_s;

    /* who may call (docs/SECURITY.md, the threat model) */
    char api_keys_file[512];    /* "": no keys, loopback only */
    bool allow_unauthenticated; /* serve without keys beyond loopback */
    char allowed_hosts[1024];   /* Host names served, one per line */
    char allowed_origins[1024]; /* Origins that may call /mcp, one a line */
    char datasources[16384];    /* the databases, as JSON (datasources.h) */
    char tls_cert_file[512];    /* both set: HTTPS */
    char tls_key_file[512];
};

/* Fills cfg with the built-in defaults. */
void config_defaults(struct config *cfg);

/* Overrides cfg with the keys of the JSON file at path. Unknown keys, wrong
 * types and out-of-range values fail with ERR_INVALID naming the key. */
int config_load(struct config *cfg, const char *path, struct err *err);

/* Overrides cfg with NBCANVAS_<KEY> environment variables (the key's name
 * in capitals: NBCANVAS_MAX_JOBS=4), read through get (getenv in the
 * service). Values are checked as the file's are; a list is written with
 * commas. */
int config_load_env(struct config *cfg, const char *(*get)(const char *name),
                    struct err *err);

/* Settles derived values (max_jobs from the machine, ...). */
void config_finish(struct config *cfg);

#endif
