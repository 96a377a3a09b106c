/*
 * Packages at run time (include/nbcanvas/packages.h).
 *
 * Requirements are hostile input: they are checked against a strict
 * subset of PEP 508 before pip sees them, passed after "--" so that none
 * can be read as an option, and pip runs as an unprivileged user (nobody)
 * in a fresh folder with its own HOME, no cache of its own, no retries
 * and a timeout. Wheels are untrusted archives: each is checked with
 * libzip (a wheel file name, a size cap, no absolute or ".." member
 * names, a cap on members and on their uncompressed sizes) before it is
 * kept.
 *
 * The cache (wheel_cache_dir) is content-addressed: wheels/<sha256> holds
 * a wheel's bytes, sets/<sha256 of the sorted requirements> the file
 * names and hashes pip chose for that set. A set found there is answered
 * without pip, so the index may be down. Files are touched when used and
 * the least recently used go first past wheel_cache_bytes.
 */
#include "nbcanvas/packages.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zip.h>

#include "nbcanvas/buf.h"
#include "nbcanvas/util.h"

#define PIP_PYTHON "/usr/bin/python3"
#define NOBODY 65534
#define PIP_LOG_MAX (64 << 10)
#define WHEEL_MEMBERS_MAX 20000
#define WHEEL_UNPACKED_MAX (512LL << 20)

/* ------------------------------------------------------- requirements */

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

static bool source_set(const struct config *cfg)
{
    return cfg->package_index_url[0] || cfg->wheelhouse_dir[0];
}

int packages_parse(json_t **out, json_t *list, const struct config *cfg,
                   struct err *err)
{
    char why[96], shown[4 * 64 + 1];
    json_t *v;
    size_t i;

    if (!list)
        return 0;
    if (!source_set(cfg))
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
        rewritten = rewrite_source(joined.data, packages, source_set(cfg));
        if (rewritten)
            json_object_set_new(cell, "source", json_string(rewritten));
        free(rewritten);
        buf_release(&joined);
    }
}

/* ------------------------------------------------------- the cache */

struct packages {
    const struct config *cfg;
    pthread_mutex_t lock; /* the cache's files and the stats */
    struct packages_stats stats;
};

static int mkdirs(const char *path, mode_t mode)
{
    char *copy = xstrdup(path), *p;
    int rc = 0;

    for (p = copy + 1; *p && rc == 0; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(copy, mode) < 0 && errno != EEXIST)
            rc = -1;
        *p = '/';
    }
    if (rc == 0 && mkdir(copy, mode) < 0 && errno != EEXIST)
        rc = -1;
    free(copy);
    return rc;
}

struct packages *packages_new(const struct config *cfg)
{
    struct packages *p;
    char *dir;

    if (!source_set(cfg))
        return NULL;
    p = xcalloc(1, sizeof(*p));
    p->cfg = cfg;
    pthread_mutex_init(&p->lock, NULL);
    dir = xasprintf("%s/wheels", cfg->wheel_cache_dir);
    if (mkdirs(dir, 0755) < 0)
        fprintf(stderr, "nbcanvas: cannot make the wheel cache %s: %s\n", dir,
                strerror(errno));
    free(dir);
    dir = xasprintf("%s/sets", cfg->wheel_cache_dir);
    mkdirs(dir, 0755);
    free(dir);
    return p;
}

void packages_free(struct packages *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->lock);
    free(p);
}

void packages_stats(struct packages *p, struct packages_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    *out = p->stats;
    pthread_mutex_unlock(&p->lock);
}

/* The set's key: the sorted requirements, spaces dropped. */
static void set_key(json_t *reqs, char hex[65])
{
    size_t n = json_array_size(reqs), i;
    char **v = xcalloc(n + 1, sizeof(*v));
    struct buf all = BUF_INIT((size_t)-1);

    for (i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(reqs, i));
        char *c = xstrdup(s), *w = c;

        for (; *s; s++)
            if (*s != ' ')
                *w++ = *s;
        *w = '\0';
        v[i] = c;
    }
    qsort(v, n, sizeof(*v), (int (*)(const void *, const void *))strcmp);
    for (i = 0; i < n; i++) {
        buf_printf(&all, "%s\n", v[i]);
        free(v[i]);
    }
    free(v);
    util_sha256_hex(hex, all.data, all.len);
    buf_release(&all);
}

static int write_file(const char *path, const char *data, size_t len)
{
    char *tmp = xasprintf("%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    int ok = f && fwrite(data, 1, len, f) == len;

    if (f)
        ok = fclose(f) == 0 && ok;
    ok = ok && rename(tmp, path) == 0;
    if (!ok)
        unlink(tmp);
    free(tmp);
    return ok ? 0 : -1;
}

/* Loads a cached set's wheels into wheels; 0, or -1 when anything of it
 * is missing (the caller resolves again). Touches what it reads. */
static int load_set(struct packages *p, const char *key,
                    struct tar_files *wheels)
{
    char *path = xasprintf("%s/sets/%s.json", p->cfg->wheel_cache_dir, key);
    json_t *set = json_load_file(path, 0, NULL), *w;
    size_t i, before = wheels->n;
    int rc = json_is_array(set) ? 0 : -1;

    utimes(path, NULL);
    free(path);
    json_array_foreach(set, i, w) {
        const char *file = json_string_value(json_object_get(w, "file"));
        const char *sha = json_string_value(json_object_get(w, "sha256"));
        char hex[65], *data;
        size_t len;

        if (rc < 0 || !file || !sha) {
            rc = -1;
            break;
        }
        path = xasprintf("%s/wheels/%s", p->cfg->wheel_cache_dir, sha);
        data = util_read_file(path, &len,
                              (size_t)p->cfg->package_max_bytes + 1);
        utimes(path, NULL);
        free(path);
        if (data)
            util_sha256_hex(hex, data, len);
        if (!data || strcmp(hex, sha) != 0) {
            free(data);
            rc = -1;
            break;
        }
        tarball_files_add(wheels, xasprintf(PACKAGES_WHEEL_DIR "%s", file),
                          data, len);
    }
    json_decref(set);
    if (rc < 0) { /* drop what was added */
        while (wheels->n > before) {
            wheels->n--;
            free(wheels->v[wheels->n].name);
            free(wheels->v[wheels->n].data);
        }
    }
    return rc;
}

struct aged {
    char *path;
    time_t used;
    long long size;
};

static int by_age(const void *a, const void *b)
{
    const struct aged *x = a, *y = b;

    return (x->used > y->used) - (x->used < y->used);
}

/* Removes the least recently used wheels past the cap (lock held). */
static void trim(struct packages *p)
{
    char *dir = xasprintf("%s/wheels", p->cfg->wheel_cache_dir);
    DIR *d = opendir(dir);
    struct aged *v = NULL;
    size_t n = 0, cap = 0, i;
    long long total = 0;
    struct dirent *e;

    while (d && (e = readdir(d))) {
        struct stat st;
        char *path;

        if (e->d_name[0] == '.')
            continue;
        path = xasprintf("%s/%s", dir, e->d_name);
        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
            free(path);
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            v = xrealloc(v, cap * sizeof(*v));
        }
        v[n++] = (struct aged){path, st.st_mtime, (long long)st.st_size};
        total += st.st_size;
    }
    if (d)
        closedir(d);
    qsort(v, n, sizeof(*v), by_age);
    for (i = 0; i < n; i++) {
        if (total > p->cfg->wheel_cache_bytes) {
            unlink(v[i].path);
            total -= v[i].size;
        }
        free(v[i].path);
    }
    free(v);
    free(dir);
    p->stats.bytes = total;
}

/* ------------------------------------------------------- wheels */

/* A wheel's file name: name-version(-build)?-python-abi-platform.whl,
 * one plain name. */
static bool wheel_name_ok(const char *file)
{
    size_t n = strlen(file);
    const char *c;
    int dashes = 0;

    if (n < 10 || n > 255 || strcmp(file + n - 4, ".whl") != 0)
        return false;
    for (c = file; *c; c++) {
        if (!isalnum((unsigned char)*c) && !strchr("._-+!", *c))
            return false;
        dashes += *c == '-';
    }
    return dashes == 4 || dashes == 5;
}

/* Checks a downloaded wheel as an untrusted zip; why says what is wrong. */
static bool wheel_ok(const char *path, char *why, size_t why_len)
{
    zip_t *z;
    int zerr = 0;
    zip_int64_t n, i;
    long long unpacked = 0;

    z = zip_open(path, ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
    if (!z) {
        snprintf(why, why_len, "not a valid zip archive");
        return false;
    }
    n = zip_get_num_entries(z, 0);
    if (n <= 0 || n > WHEEL_MEMBERS_MAX) {
        zip_discard(z);
        snprintf(why, why_len, "%lld members", (long long)n);
        return false;
    }
    for (i = 0; i < n; i++) {
        zip_stat_t st;
        const char *name;

        if (zip_stat_index(z, (zip_uint64_t)i, 0, &st) < 0 ||
            !(st.valid & ZIP_STAT_NAME) || !(st.valid & ZIP_STAT_SIZE)) {
            snprintf(why, why_len, "an unreadable member");
            break;
        }
        name = st.name;
        unpacked += (long long)st.size;
        if (name[0] == '/' || strstr(name, "..") || strchr(name, '\\')) {
            snprintf(why, why_len, "a member outside the archive's folder");
            break;
        }
        if (unpacked > WHEEL_UNPACKED_MAX) {
            snprintf(why, why_len, "more than %lld MiB unpacked",
                     WHEEL_UNPACKED_MAX >> 20);
            break;
        }
        if (strstr(name, ".dist-info/METADATA") && st.size > (1 << 20)) {
            snprintf(why, why_len, "a METADATA of %llu bytes",
                     (unsigned long long)st.size);
            break;
        }
    }
    zip_discard(z);
    return i == n;
}

/* ------------------------------------------------------- pip */

/* Runs pip download as nobody into dest; its output (capped) into log.
 * Returns its exit status, or -1 when it could not run or timed out. */
static int run_pip(struct packages *p, json_t *reqs, const char *dest,
                   const char *home, struct buf *log, bool *timed_out)
{
    const struct config *cfg = p->cfg;
    const char *argv[64 + PACKAGES_MAX];
    char *platforms = xstrdup(cfg->package_platforms), *save = NULL, *pl;
    char abi[16];
    char *home_env = xasprintf("HOME=%s", home);
    char *env[] = {home_env,
                   "PATH=/usr/bin:/bin",
                   "LANG=C.UTF-8",
                   "PYTHONNOUSERSITE=1",
                   "PIP_CONFIG_FILE=/dev/null",
                   NULL};
    const char *v;
    int out[2], argc = 0, status = -1;
    long long deadline = util_now_ms() + cfg->package_timeout_s * 1000LL;
    size_t i;
    pid_t pid;

    *timed_out = false;
    /* cp311 for 3.11 */
    memcpy(abi, "cp", 2);
    for (i = 2, v = cfg->package_python_version; *v && i + 1 < sizeof(abi);
         v++)
        if (*v != '.')
            abi[i++] = *v;
    abi[i] = '\0';
    argv[argc++] = PIP_PYTHON;
    argv[argc++] = "-m";
    argv[argc++] = "pip";
    argv[argc++] = "download";
    argv[argc++] = "--disable-pip-version-check";
    argv[argc++] = "--no-input";
    argv[argc++] = "--no-cache-dir";
    argv[argc++] = "--progress-bar";
    argv[argc++] = "off";
    argv[argc++] = "--retries";
    argv[argc++] = "0";
    argv[argc++] = "--timeout";
    argv[argc++] = "15";
    argv[argc++] = "--only-binary=:all:";
    argv[argc++] = "--python-version";
    argv[argc++] = cfg->package_python_version;
    argv[argc++] = "--implementation";
    argv[argc++] = "cp";
    argv[argc++] = "--abi";
    argv[argc++] = abi;
    for (pl = strtok_r(platforms, "\n", &save); pl && argc < 50;
         pl = strtok_r(NULL, "\n", &save)) {
        argv[argc++] = "--platform";
        argv[argc++] = pl;
    }
    argv[argc++] = "--dest";
    argv[argc++] = dest;
    if (cfg->package_index_url[0]) {
        argv[argc++] = "--index-url";
        argv[argc++] = cfg->package_index_url;
    } else {
        argv[argc++] = "--no-index";
    }
    if (cfg->wheelhouse_dir[0]) {
        argv[argc++] = "--find-links";
        argv[argc++] = cfg->wheelhouse_dir;
    }
    argv[argc++] = "--";
    for (i = 0; i < json_array_size(reqs) && i < PACKAGES_MAX; i++)
        argv[argc++] = json_string_value(json_array_get(reqs, i));
    argv[argc] = NULL;

    if (pipe2(out, O_CLOEXEC) < 0) {
        free(platforms);
        free(home_env);
        return -1;
    }
    pid = fork();
    if (pid == 0) { /* only async-signal-safe calls until execve */
        sigset_t none;

        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        dup2(out[1], 1);
        dup2(out[1], 2);
        setpgid(0, 0);
        if (getuid() == 0 && (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 ||
                              setuid(NOBODY) < 0))
            _exit(126);
        if (chdir(home) < 0)
            _exit(126);
        execve(PIP_PYTHON, (char *const *)argv, env);
        _exit(127);
    }
    close(out[1]);
    free(platforms);
    free(home_env);
    if (pid < 0) {
        close(out[0]);
        return -1;
    }
    for (;;) {
        struct pollfd pf = {out[0], POLLIN, 0};
        long long left = deadline - util_now_ms();
        char chunk[4096];
        ssize_t n;

        if (left <= 0) {
            *timed_out = true;
            kill(-pid, SIGKILL);
            break;
        }
        if (poll(&pf, 1, (int)(left > 1000 ? 1000 : left)) <= 0)
            continue;
        n = read(out[0], chunk, sizeof(chunk));
        if (n <= 0)
            break;
        if (log->len + (size_t)n <= PIP_LOG_MAX)
            buf_append(log, chunk, (size_t)n);
    }
    close(out[0]);
    if (waitpid(pid, &status, 0) < 0 || *timed_out)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The project pip could not find, from its log, into name. */
static bool missing_project(const char *log, char *name, size_t len)
{
    static const char *const marks[] = {
        "No matching distribution found for ",
        "Could not find a version that satisfies the requirement "};
    size_t i;

    for (i = 0; i < sizeof(marks) / sizeof(marks[0]); i++) {
        const char *p = strstr(log, marks[i]);
        size_t n;

        if (!p)
            continue;
        p += strlen(marks[i]);
        n = strcspn(p, " \n");
        util_escape(name, len, p, n > 100 ? 100 : n);
        return true;
    }
    return false;
}

static bool index_down(const char *log)
{
    return strstr(log, "NewConnectionError") ||
           strstr(log, "Connection refused") ||
           strstr(log, "Max retries exceeded") ||
           strstr(log, "Failed to establish") || strstr(log, "timed out") ||
           strstr(log, "Temporary failure in name resolution");
}

/* The last line of pip's log, escaped, for a message. */
static void last_line(const char *log, char *out, size_t len)
{
    size_t n = strlen(log), start;

    while (n > 0 && (log[n - 1] == '\n' || log[n - 1] == '\r'))
        n--;
    start = n;
    while (start > 0 && log[start - 1] != '\n')
        start--;
    util_escape(out, len, log + start, n - start > 200 ? 200 : n - start);
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    while (d && (e = readdir(d))) {
        char *path;
        struct stat st;

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        path = xasprintf("%s/%s", dir, e->d_name);
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(path);
        else
            unlink(path);
        free(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

/* Checks and keeps the wheels pip left in dest; records the set. */
static int keep_wheels(struct packages *p, const char *dest, const char *key,
                       struct tar_files *wheels, struct err *err)
{
    DIR *d = opendir(dest);
    json_t *set = json_array();
    long long total = 0;
    struct dirent *e;
    int rc = 0;

    while (rc == 0 && d && (e = readdir(d))) {
        char *path, *data, hex[65], why[96];
        struct stat st;
        size_t len;

        if (e->d_name[0] == '.')
            continue;
        path = xasprintf("%s/%s", dest, e->d_name);
        if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode) ||
            !wheel_name_ok(e->d_name)) {
            rc = err_set(err, ERR_PACKAGE,
                         "the index gave something that is not a wheel");
        } else if ((total += st.st_size) > p->cfg->package_max_bytes) {
            rc = err_set(err, ERR_PACKAGE,
                         "the wheels are larger than %lld MiB "
                         "(package_max_bytes)",
                         p->cfg->package_max_bytes >> 20);
        } else if (!wheel_ok(path, why, sizeof(why))) {
            rc = err_set(err, ERR_PACKAGE, "wheel %s refused: %s", e->d_name,
                         why);
        } else if (!(data = util_read_file(path, &len,
                                           (size_t)st.st_size + 1))) {
            rc = err_set(err, ERR_INTERNAL, "cannot read %s", e->d_name);
        } else {
            char *kept;

            util_sha256_hex(hex, data, len);
            kept = xasprintf("%s/wheels/%s", p->cfg->wheel_cache_dir, hex);
            write_file(kept, data, len);
            free(kept);
            json_array_append_new(set, json_pack("{s:s, s:s}", "file",
                                                 e->d_name, "sha256", hex));
            tarball_files_add(wheels,
                              xasprintf(PACKAGES_WHEEL_DIR "%s", e->d_name),
                              data, len);
        }
        free(path);
    }
    if (d)
        closedir(d);
    if (rc == 0) {
        char *path = xasprintf("%s/sets/%s.json", p->cfg->wheel_cache_dir,
                               key);
        char *text = json_dumps(set, JSON_COMPACT);

        write_file(path, text, strlen(text));
        free(text);
        free(path);
    }
    json_decref(set);
    return rc;
}

int packages_fetch(struct packages *p, json_t *reqs, struct tar_files *wheels,
                   struct err *err)
{
    char key[65], tmpl[] = "/tmp/nbcanvas-pip-XXXXXX", line[256];
    char *dest = NULL;
    struct buf log = BUF_INIT(PIP_LOG_MAX + 1);
    bool timed_out = false;
    int rc, status;

    if (!p || json_array_size(reqs) == 0)
        return 0;
    set_key(reqs, key);
    pthread_mutex_lock(&p->lock);
    rc = load_set(p, key, wheels);
    if (rc == 0)
        p->stats.hits++;
    pthread_mutex_unlock(&p->lock);
    if (rc == 0)
        return 0;
    if (!mkdtemp(tmpl))
        return err_set(err, ERR_INTERNAL, "cannot make a folder for pip");
    dest = xasprintf("%s/wheels", tmpl);
    if (mkdir(dest, 0700) < 0 ||
        (getuid() == 0 && (chown(tmpl, NOBODY, NOBODY) < 0 ||
                           chown(dest, NOBODY, NOBODY) < 0))) {
        remove_tree(tmpl);
        free(dest);
        return err_set(err, ERR_INTERNAL, "cannot prepare pip's folder");
    }
    status = run_pip(p, reqs, dest, tmpl, &log, &timed_out);
    pthread_mutex_lock(&p->lock);
    p->stats.misses++;
    if (status == 0) {
        rc = keep_wheels(p, dest, key, wheels, err);
        trim(p);
    } else if (timed_out) {
        rc = err_set(err, ERR_INDEX,
                     "the package index did not answer within %ld s",
                     p->cfg->package_timeout_s);
    } else if (index_down(log.data)) {
        rc = err_set(err, ERR_INDEX, "the package index does not answer");
    } else if (missing_project(log.data, line, sizeof(line))) {
        rc = err_set(err, ERR_PACKAGE, "no wheel for %s (package_unavailable)",
                     line);
    } else {
        last_line(log.data, line, sizeof(line));
        rc = err_set(err, status < 0 ? ERR_INTERNAL : ERR_PACKAGE,
                     "pip could not resolve the packages: %s", line);
    }
    if (rc < 0)
        p->stats.errors++;
    pthread_mutex_unlock(&p->lock);
    buf_release(&log);
    remove_tree(tmpl);
    free(dest);
    return rc;
}
