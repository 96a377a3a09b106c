/*
 * Packages at run time: resolving and keeping wheels
 * (include/nbcanvas/packages.h; the requirements are checked in
 * requirements.c).
 *
 * Requirements reach pip after "--", so that none can be read as an
 * option, and pip runs as an unprivileged user (nobody)
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
#include <curl/curl.h>
#include <zip.h>

#include "nbcanvas/buf.h"
#include "nbcanvas/sandbox.h"
#include "nbcanvas/util.h"

#define PIP_PYTHON "/usr/bin/python3"
#define NOBODY 65534
#define PIP_LOG_MAX (64 << 10)
#define WHEEL_MEMBERS_MAX 20000
#define WHEEL_UNPACKED_MAX (512LL << 20)

/* ------------------------------------------------------- the cache */

struct packages {
    const struct config *cfg;
    struct docker *docker;
    pthread_mutex_t lock; /* the cache's files, the stats, installed */
    struct packages_stats stats;
    /* What the image has (its label, " name name "), read again now and
     * then: wheels of these projects stay home unless asked for. */
    char *installed;
    long long installed_at;
};

#define INSTALLED_LABEL "org.nbcanvas.python-packages"
#define INSTALLED_TTL_MS 60000

/* A project name as PEP 503 compares them: lower case, runs of "-", "_"
 * and "." as one "-". */
static void normalize(char *out, size_t len, const char *name, size_t n)
{
    size_t o = 0, i;

    for (i = 0; i < n && o + 1 < len; i++) {
        char c = (char)tolower((unsigned char)name[i]);

        if (c == '_' || c == '.')
            c = '-';
        if (c == '-' && o > 0 && out[o - 1] == '-')
            continue;
        out[o++] = c;
    }
    out[o] = '\0';
}

/* True when the project is one the image has (lock held). */
static bool image_has(struct packages *p, const char *project)
{
    char word[PACKAGE_SPEC_MAX + 3];

    if (!p->installed)
        return false;
    snprintf(word, sizeof(word), " %s ", project);
    return strstr(p->installed, word) != NULL;
}

/* Reads the image's label when it is old (lock held). */
static void refresh_installed(struct packages *p)
{
    char *label;

    if (!p->docker ||
        (p->installed && util_now_ms() - p->installed_at < INSTALLED_TTL_MS))
        return;
    label = sandbox_image_label(p->docker, p->cfg->notebook_image,
                                INSTALLED_LABEL);
    if (!label)
        return;
    free(p->installed);
    p->installed = xasprintf(" %s ", label);
    p->installed_at = util_now_ms();
    free(label);
}

/* Drops from wheels (from index first on) those of projects the image
 * already has and the request did not name: pip in the sandbox takes the
 * image's, and they need not travel (lock held). */
static void drop_installed(struct packages *p, json_t *reqs,
                           struct tar_files *wheels, size_t first)
{
    size_t i, keep = first, k;

    refresh_installed(p);
    for (i = first; i < wheels->n; i++) {
        const char *file = wheels->v[i].name + strlen(PACKAGES_WHEEL_DIR);
        char project[PACKAGE_SPEC_MAX + 1];
        bool named = false;

        normalize(project, sizeof(project), file, strcspn(file, "-"));
        for (k = 0; k < json_array_size(reqs); k++) {
            const char *r = json_string_value(json_array_get(reqs, k));
            char asked[PACKAGE_SPEC_MAX + 1];

            while (*r == ' ')
                r++;
            normalize(asked, sizeof(asked), r, packages_name_len(r));
            named = named || strcmp(asked, project) == 0;
        }
        if (!named && image_has(p, project)) {
            free(wheels->v[i].name);
            free(wheels->v[i].data);
            continue;
        }
        wheels->v[keep++] = wheels->v[i];
    }
    wheels->n = keep;
}

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

struct packages *packages_new(const struct config *cfg, struct docker *d)
{
    struct packages *p;
    char *dir;

    if (!packages_source_set(cfg))
        return NULL;
    p = xcalloc(1, sizeof(*p));
    p->cfg = cfg;
    p->docker = d;
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
    free(p->installed);
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

/* True when the index does not answer at all (pip says only "from
 * versions: none" when it cannot connect): asked directly, any HTTP
 * answer counts as up. */
static bool index_down(const struct config *cfg)
{
    CURL *h;
    CURLcode rc;

    if (!cfg->package_index_url[0])
        return false;
    h = curl_easy_init();
    if (!h)
        return false;
    curl_easy_setopt(h, CURLOPT_URL, cfg->package_index_url);
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    rc = curl_easy_perform(h);
    curl_easy_cleanup(h);
    return rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
           rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_SSL_CONNECT_ERROR ||
           rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING;
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
        } else if ((total += st.st_size) > 4 * p->cfg->package_max_bytes) {
            /* (what travels is checked once the image's own are out) */
            rc = err_set(err, ERR_PACKAGE,
                         "the wheels are larger than %lld MiB",
                         (4 * p->cfg->package_max_bytes) >> 20);
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

/* The wheels that travel with the job (from first on) fit in
 * package_max_bytes; else they are dropped and it is ERR_PACKAGE. */
static int check_travel_size(struct packages *p, struct tar_files *wheels,
                             size_t first, struct err *err)
{
    long long total = 0;
    size_t i;

    for (i = first; i < wheels->n; i++)
        total += (long long)wheels->v[i].len;
    if (total <= p->cfg->package_max_bytes)
        return 0;
    while (wheels->n > first) {
        wheels->n--;
        free(wheels->v[wheels->n].name);
        free(wheels->v[wheels->n].data);
    }
    return err_set(err, ERR_PACKAGE,
                   "the packages' wheels are %lld MiB, more than "
                   "package_max_bytes (%lld MiB)",
                   total >> 20, p->cfg->package_max_bytes >> 20);
}

int packages_fetch(struct packages *p, json_t *reqs, struct tar_files *wheels,
                   struct err *err)
{
    char key[65], tmpl[] = "/tmp/nbcanvas-pip-XXXXXX", line[256];
    char *dest = NULL;
    struct buf log = BUF_INIT(PIP_LOG_MAX + 1);
    bool timed_out = false;
    size_t first = wheels->n;
    int rc, status;

    if (!p || json_array_size(reqs) == 0)
        return 0;
    set_key(reqs, key);
    pthread_mutex_lock(&p->lock);
    rc = load_set(p, key, wheels);
    if (rc == 0) {
        p->stats.hits++;
        drop_installed(p, reqs, wheels, first);
        if (check_travel_size(p, wheels, first, err) < 0)
            rc = ERR_PACKAGE;
    }
    pthread_mutex_unlock(&p->lock);
    if (rc == ERR_PACKAGE)
        return rc;
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
        if (rc == 0)
            drop_installed(p, reqs, wheels, first);
    } else if (timed_out) {
        rc = err_set(err, ERR_INDEX,
                     "the package index did not answer within %ld s",
                     p->cfg->package_timeout_s);
    } else if (index_down(p->cfg)) {
        rc = err_set(err, ERR_INDEX, "the package index does not answer");
    } else if (missing_project(log.data, line, sizeof(line))) {
        rc = err_set(err, ERR_PACKAGE, "no wheel for %s (package_unavailable)",
                     line);
    } else {
        last_line(log.data, line, sizeof(line));
        rc = err_set(err, status < 0 ? ERR_INTERNAL : ERR_PACKAGE,
                     "pip could not resolve the packages: %s", line);
    }
    if (rc == 0)
        rc = check_travel_size(p, wheels, first, err);
    if (rc < 0)
        p->stats.errors++;
    pthread_mutex_unlock(&p->lock);
    buf_release(&log);
    remove_tree(tmpl);
    free(dest);
    return rc;
}
