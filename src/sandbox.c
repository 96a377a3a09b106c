/*
 * Job containers. The create body is where isolation is decided, so it is
 * built in one function with every setting spelled out: no network, memory
 * with no swap, a CPU quota, a pids limit, a read-only root with tmpfs for
 * /tmp and the working directory, no capabilities, no-new-privileges, an
 * unprivileged user, an init process, ulimits, no logs kept by the engine.
 * Nothing of the request reaches this body but the image's command, and
 * the request may only lower the limits (request.c checks that).
 *
 * Containers are never auto-removed by the engine: sandbox_destroy removes
 * them (and their anonymous volume, v=1) on every path, and a reaper
 * removes what a crash left behind, found by label.
 */
#include "nbcanvas/sandbox.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nbcanvas/demux.h"
#include "nbcanvas/util.h"

struct sandbox_set {
    pthread_mutex_t lock;
    char (*ids)[80];
    long n, alloc;
};

struct sandbox_set *sandbox_set_new(void)
{
    struct sandbox_set *set = xcalloc(1, sizeof(*set));

    pthread_mutex_init(&set->lock, NULL);
    return set;
}

void sandbox_set_free(struct sandbox_set *set)
{
    if (!set)
        return;
    pthread_mutex_destroy(&set->lock);
    free(set->ids);
    free(set);
}

long sandbox_set_count(struct sandbox_set *set)
{
    long n;

    pthread_mutex_lock(&set->lock);
    n = set->n;
    pthread_mutex_unlock(&set->lock);
    return n;
}

static void set_add(struct sandbox_set *set, const char *id)
{
    if (!set)
        return;
    pthread_mutex_lock(&set->lock);
    if (set->n == set->alloc) {
        set->alloc = set->alloc ? set->alloc * 2 : 16;
        set->ids = xrealloc(set->ids, (size_t)set->alloc * sizeof(*set->ids));
    }
    snprintf(set->ids[set->n++], sizeof(set->ids[0]), "%s", id);
    pthread_mutex_unlock(&set->lock);
}

static void set_remove(struct sandbox_set *set, const char *id)
{
    long i;

    if (!set)
        return;
    pthread_mutex_lock(&set->lock);
    for (i = 0; i < set->n; i++) {
        if (strcmp(set->ids[i], id) == 0) {
            set->n--;
            memcpy(set->ids[i], set->ids[set->n], sizeof(set->ids[0]));
            break;
        }
    }
    pthread_mutex_unlock(&set->lock);
}

static bool set_has(struct sandbox_set *set, const char *id)
{
    bool found = false;
    long i;

    if (!set)
        return false;
    pthread_mutex_lock(&set->lock);
    for (i = 0; i < set->n && !found; i++)
        found = strcmp(set->ids[i], id) == 0;
    pthread_mutex_unlock(&set->lock);
    return found;
}

static json_t *ulimit(const char *name, long long value)
{
    return json_pack("{s:s, s:I, s:I}", "Name", name, "Soft",
                     (json_int_t)value, "Hard", (json_int_t)value);
}

static bool is_gvisor(const struct sandbox_spec *spec);

/* tmpfs options of the working directory. gVisor (0.0~20221219) ignores
 * uid= on tmpfs, so there the directory is world-writable and sticky
 * instead; only the one unprivileged user exists in the container. */
static void workdir_options(char *out, size_t len,
                            const struct sandbox_spec *spec)
{
    if (is_gvisor(spec))
        snprintf(out, len, "rw,nosuid,nodev,exec,size=%lld,mode=1777",
                 spec->limits->workdir_bytes);
    else
        snprintf(out, len,
                 "rw,nosuid,nodev,exec,size=%lld,uid=%d,gid=%d,mode=0700",
                 spec->limits->workdir_bytes, SANDBOX_UID, SANDBOX_UID);
}

/* Under gVisor the pids cgroup also counts the sandbox kernel's own host
 * threads (and, on the ptrace platform, a stub per guest thread): with the
 * plain limit the sentry itself cannot start. The headroom keeps the same
 * number of processes available to the code. */
#define GVISOR_PIDS_HEADROOM 256

static bool is_gvisor(const struct sandbox_spec *spec)
{
    return spec->runtime && strcmp(spec->runtime, "runsc") == 0;
}

static json_t *host_config(const struct sandbox_spec *spec)
{
    const struct sandbox_limits *l = spec->limits;
    long pids = l->pids + (is_gvisor(spec) ? GVISOR_PIDS_HEADROOM : 0);
    char tmp_opts[128], work_opts[160];
    json_t *hc;

    snprintf(tmp_opts, sizeof(tmp_opts), "rw,nosuid,nodev,noexec,size=%lld",
             l->tmp_bytes);
    workdir_options(work_opts, sizeof(work_opts), spec);
    hc = json_pack(
        "{s:s, s:I, s:I, s:I, s:I, s:b, s:{s:s, s:s}, s:I, s:s,"
        " s:[s], s:[s], s:b, s:b, s:{s:s}, s:{s:s}, s:b}",
        "NetworkMode", "none", "Memory", (json_int_t)l->memory_bytes,
        "MemorySwap", (json_int_t)l->memory_bytes, "NanoCpus",
        (json_int_t)(l->cpus * 1e9), "PidsLimit", (json_int_t)pids,
        "ReadonlyRootfs", 1, "Tmpfs", "/tmp", tmp_opts, SANDBOX_WORKDIR,
        work_opts, "ShmSize", (json_int_t)(16 << 20), "IpcMode", "private",
        "CapDrop", "ALL", "SecurityOpt", "no-new-privileges:true", "Init",
        !spec->own_init, "Privileged", 0, "LogConfig", "Type", "none",
        "RestartPolicy", "Name", "no", "OomKillDisable", 0);
    json_object_set_new(hc, "Ulimits",
                        json_pack("[o, o, o]", ulimit("nofile", l->nofile),
                                  ulimit("fsize", l->fsize_bytes),
                                  ulimit("core", 0)));
    if (spec->runtime && spec->runtime[0])
        json_object_set_new(hc, "Runtime", json_string(spec->runtime));
    if (spec->cpu_shares > 0)
        json_object_set_new(hc, "CpuShares", json_integer(spec->cpu_shares));
    return hc;
}

json_t *sandbox_create_body(const struct sandbox_spec *spec)
{
    char deadline[32], user[32];
    json_t *body;

    snprintf(deadline, sizeof(deadline), "%lld", spec->deadline_s);
    snprintf(user, sizeof(user), "%d:%d", SANDBOX_UID, SANDBOX_UID);
    body = json_pack("{s:s, s:O, s:s, s:s, s:b, s:b, s:b, s:b, s:b, s:b,"
                     " s:{s:s, s:s, s:s, s:s}}",
                     "Image", spec->image, "Cmd", spec->cmd, "User", user,
                     "WorkingDir", SANDBOX_WORKDIR, "NetworkDisabled", 1,
                     "AttachStdout", 1, "AttachStderr", 1, "AttachStdin", 1,
                     "OpenStdin", 1, "Tty", 0, "Labels", SANDBOX_LABEL, "1",
                     "org.nbcanvas.owner", spec->owner ? spec->owner : "",
                     "org.nbcanvas.job", spec->job_id ? spec->job_id : "",
                     "org.nbcanvas.deadline", deadline);
    json_object_set_new(body, "Env",
                        spec->env ? json_incref(spec->env) : json_array());
    json_object_set_new(body, "HostConfig", host_config(spec));
    return body;
}

/* The one wording of a missing image, wherever it is noticed. */
static int missing_image(struct err *err, const char *image)
{
    return err_set(err, ERR_ENGINE,
                   "image %s is missing: build it with "
                   "scripts/build-images.sh",
                   image);
}

/* The engine's description of image (new reference), or an error. */
static int inspect_image(struct docker *d, const char *image, json_t **info,
                         struct err *err)
{
    char *path = xasprintf("/images/%s/json", image);
    int rc = docker_call_json(d, "GET", path, NULL, info, 0, err);

    free(path);
    return rc;
}

char *sandbox_image_label(struct docker *d, const char *image,
                          const char *label)
{
    json_t *info = NULL;
    const char *v;
    char *out = NULL;

    if (inspect_image(d, image, &info, NULL) == 0) {
        v = json_string_value(json_object_get(
            json_object_get(json_object_get(info, "Config"), "Labels"),
            label));
        out = v ? xstrdup(v) : NULL;
    }
    json_decref(info);
    return out;
}

int sandbox_image_id(struct docker *d, const char *image, char *out,
                     size_t out_len, struct err *err)
{
    json_t *info = NULL;
    const char *id;
    int rc;

    rc = inspect_image(d, image, &info, err);
    if (rc == ERR_NOT_FOUND)
        rc = missing_image(err, image);
    else if (rc < 0 && err)
        err->code = ERR_ENGINE;
    if (rc < 0)
        rc = ERR_ENGINE;
    id = json_string_value(json_object_get(info, "Id"));
    if (rc == 0 && !id)
        rc = err_set(err, ERR_ENGINE, "engine: image %s has no Id", image);
    if (rc == 0)
        snprintf(out, out_len, "%s", id);
    json_decref(info);
    return rc;
}

int sandbox_create(struct sandbox *sb, struct docker *d,
                   const struct sandbox_spec *spec, struct err *err)
{
    json_t *body = sandbox_create_body(spec), *resp = NULL;
    const char *id;
    int rc;

    memset(sb, 0, sizeof(*sb));
    sb->docker = d;
    sb->live = spec->live;
    rc = docker_call_json(d, "POST", "/containers/create", body, &resp, 0,
                          err);
    if (rc == ERR_NOT_FOUND) {
        rc = missing_image(err, spec->image);
        goto done;
    }
    if (rc < 0)
        goto done;
    id = json_string_value(json_object_get(resp, "Id"));
    if (!id || strlen(id) >= sizeof(sb->id)) {
        rc = err_set(err, ERR_INTERNAL, "engine: create returned no Id");
        goto done;
    }
    snprintf(sb->id, sizeof(sb->id), "%s", id);
    set_add(sb->live, sb->id);
done:
    json_decref(body);
    json_decref(resp);
    return rc;
}

int sandbox_start(struct sandbox *sb, struct err *err)
{
    char path[128];
    int rc;

    snprintf(path, sizeof(path), "/containers/%s/start", sb->id);
    rc = docker_call_json(sb->docker, "POST", path, NULL, NULL, 0, err);
    if (rc == 0)
        sb->started = true;
    return rc;
}

int sandbox_attach(struct sandbox *sb, const struct docker_stream_cb *cb,
                   long long deadline_ms, struct err *err)
{
    char path[160];

    snprintf(path, sizeof(path),
             "/containers/%s/attach?stream=1&stdout=1&stderr=1", sb->id);
    return docker_stream(sb->docker, "POST", path, NULL, cb, deadline_ms, err);
}

int sandbox_attach_stdin(struct sandbox *sb, const char *input, size_t len,
                         const struct docker_stream_cb *cb,
                         long long deadline_ms, struct err *err)
{
    char path[160];

    snprintf(path, sizeof(path),
             "/containers/%s/attach?stream=1&stdin=1&stdout=1&stderr=1",
             sb->id);
    return docker_stream_duplex(sb->docker, path, input, len, cb, deadline_ms,
                                err);
}

struct connect {
    struct sandbox *sb;
    struct err *err;
};

static int start_on_open(void *ctx)
{
    struct connect *c = ctx;

    return c->sb->started ? 0 : sandbox_start(c->sb, c->err);
}

int sandbox_connect(struct sandbox *sb, struct docker_conn **out,
                    long long deadline_ms, struct err *err)
{
    struct connect c = {sb, err};
    char path[160];

    snprintf(path, sizeof(path),
             "/containers/%s/attach?stream=1&stdin=1&stdout=1&stderr=1",
             sb->id);
    return docker_conn_open(sb->docker, path, out, start_on_open, &c,
                            deadline_ms, err);
}

int sandbox_exec(struct sandbox *sb, json_t *cmd,
                 const struct docker_stream_cb *cb, long long deadline_ms,
                 int *exit_code, struct err *err)
{
    json_t *body, *resp = NULL;
    char path[160], user[32];
    const char *exec_id;
    int rc;

    *exit_code = -1;
    snprintf(user, sizeof(user), "%d:%d", SANDBOX_UID, SANDBOX_UID);
    body = json_pack("{s:b, s:b, s:O, s:s, s:s}", "AttachStdout", 1,
                     "AttachStderr", 1, "Cmd", cmd, "User", user, "WorkingDir",
                     SANDBOX_WORKDIR);
    snprintf(path, sizeof(path), "/containers/%s/exec", sb->id);
    rc = docker_call_json(sb->docker, "POST", path, body, &resp, 0, err);
    json_decref(body);
    if (rc < 0)
        return rc;
    exec_id = json_string_value(json_object_get(resp, "Id"));
    if (!exec_id) {
        json_decref(resp);
        return err_set(err, ERR_INTERNAL, "engine: exec returned no Id");
    }
    snprintf(path, sizeof(path), "/exec/%s/start", exec_id);
    rc = docker_stream(sb->docker, "POST", path,
                       "{\"Detach\":false,\"Tty\":false}", cb, deadline_ms,
                       err);
    if (rc == 0) {
        json_t *info = NULL;

        snprintf(path, sizeof(path), "/exec/%s/json", exec_id);
        rc = docker_call_json(sb->docker, "GET", path, NULL, &info, 0, err);
        if (rc == 0 && !json_is_true(json_object_get(info, "Running")))
            *exit_code = (int)json_integer_value(
                json_object_get(info, "ExitCode"));
        json_decref(info);
    }
    json_decref(resp);
    return rc;
}

static json_t *container_state(struct sandbox *sb)
{
    char path[128];
    json_t *info = NULL, *state;

    snprintf(path, sizeof(path), "/containers/%s/json", sb->id);
    if (docker_call_json(sb->docker, "GET", path, NULL, &info, 0, NULL) < 0)
        return NULL;
    state = json_incref(json_object_get(info, "State"));
    json_decref(info);
    return state;
}

/* The container's State.Status ("running", "exited", "removing", ...), or
 * "gone" when the engine no longer knows it. */
static void container_status(struct sandbox *sb, char *out, size_t out_len)
{
    char path[128];
    json_t *info = NULL;
    const char *status;
    int rc;

    snprintf(path, sizeof(path), "/containers/%s/json", sb->id);
    rc = docker_call_json(sb->docker, "GET", path, NULL, &info, 0, NULL);
    status = json_string_value(
        json_object_get(json_object_get(info, "State"), "Status"));
    snprintf(out, out_len, "%s",
             rc == ERR_NOT_FOUND ? "gone"
             : status            ? status
                                 : "unknown");
    json_decref(info);
}

bool sandbox_lost(struct sandbox *sb)
{
    long long until = util_now_ms() + SANDBOX_LOST_WAIT_MS;
    char status[32];

    for (;;) {
        container_status(sb, status, sizeof(status));
        if (strcmp(status, "running") != 0 || util_now_ms() >= until)
            break;
        nanosleep(&(struct timespec){0, 50 * 1000000L}, NULL);
    }
    return strcmp(status, "gone") == 0 || strcmp(status, "removing") == 0 ||
           strcmp(status, "dead") == 0;
}

int sandbox_lost_error(struct err *err)
{
    return err_set(err, ERR_ENGINE,
                   "the sandbox was stopped or removed from outside while "
                   "the job ran; retry");
}

int sandbox_set_cpu_shares(struct sandbox *sb, long shares, struct err *err)
{
    char path[160];
    json_t *body = json_pack("{s:I}", "CpuShares",
                             (json_int_t)(shares > 0 ? shares : 1024));
    int rc;

    snprintf(path, sizeof(path), "/containers/%s/update", sb->id);
    rc = docker_call_json(sb->docker, "POST", path, body, NULL, 0, err);
    json_decref(body);
    return rc;
}

int sandbox_pause(struct sandbox *sb, bool pause, struct err *err)
{
    char *path = xasprintf("/containers/%s/%s", sb->id,
                           pause ? "pause" : "unpause");
    int rc = docker_call_json(sb->docker, "POST", path, NULL, NULL, 0, err);

    free(path);
    return rc;
}

long long sandbox_memory_bytes(struct sandbox *sb)
{
    char path[160];
    json_t *stats = NULL, *mem, *detail;
    long long usage, reclaimable;

    snprintf(path, sizeof(path),
             "/containers/%s/stats?stream=false&one-shot=true", sb->id);
    if (docker_call_json(sb->docker, "GET", path, NULL, &stats, 0, NULL) < 0)
        return -1;
    mem = json_object_get(stats, "memory_stats");
    detail = json_object_get(mem, "stats");
    usage = json_integer_value(json_object_get(mem, "usage"));
    /* what `docker stats` leaves out: the inactive page cache (cgroup v1
     * "total_inactive_file", v2 "inactive_file"); tmpfs pages stay in */
    reclaimable = json_integer_value(
        json_object_get(detail, "total_inactive_file"));
    if (!reclaimable)
        reclaimable = json_integer_value(
            json_object_get(detail, "inactive_file"));
    json_decref(stats);
    return usage > reclaimable ? usage - reclaimable : usage;
}

bool sandbox_is_running(struct sandbox *sb)
{
    json_t *state = container_state(sb);
    bool running = json_is_true(json_object_get(state, "Running"));

    json_decref(state);
    return running;
}

/* Reads the container's own OOM-kill counter. The engine's OOMKilled flag
 * is set only when the main process is the victim; a notebook's kernel or a
 * snippet started by exec is a child, so the cgroup's count is asked too
 * (cgroup v1 memory.oom_control, v2 memory.events). */
static int collect(void *ctx, const char *data, size_t len)
{
    return demux_feed(ctx, data, len) < 0 ? 1 : 0;
}

static bool cgroup_oom_kills(struct sandbox *sb)
{
    json_t *cmd = json_pack("[s, s, s]", "sh", "-c",
                            "cat /sys/fs/cgroup/memory/memory.oom_control "
                            "/sys/fs/cgroup/memory.events 2>/dev/null");
    struct buf out = BUF_INIT(16 << 10), errout = BUF_INIT(16 << 10);
    struct demux d;
    struct docker_stream_cb cb = {NULL, collect, &d, NULL, NULL};
    const char *p;
    int exit_code;
    bool oom = false;

    demux_init(&d, &out, &errout);
    if (sandbox_exec(sb, cmd, &cb, util_now_ms() + 5000, &exit_code, NULL) ==
        0) {
        p = strstr(out.data, "oom_kill ");
        oom = p && strtol(p + 9, NULL, 10) > 0;
    }
    json_decref(cmd);
    buf_release(&out);
    buf_release(&errout);
    return oom;
}

bool sandbox_oom_killed(struct sandbox *sb)
{
    json_t *state = container_state(sb);
    bool oom = json_is_true(json_object_get(state, "OOMKilled"));
    bool running = json_is_true(json_object_get(state, "Running"));

    json_decref(state);
    return oom || (running && cgroup_oom_kills(sb));
}

static int remove_container(struct docker *d, const char *id)
{
    char path[160];
    struct err err = ERR_INIT;
    int rc;

    snprintf(path, sizeof(path), "/containers/%s?force=1&v=1", id);
    rc = docker_call_json(d, "DELETE", path, NULL, NULL, 0, &err);
    /* 404: already gone; 409: removal already under way elsewhere. */
    if (rc == ERR_NOT_FOUND || (rc < 0 && strstr(err.msg, "in progress")))
        rc = 0;
    if (rc < 0)
        fprintf(stderr, "nbcanvas: remove container %.12s: %s\n", id, err.msg);
    return rc;
}

void sandbox_destroy(struct sandbox *sb)
{
    if (!sb->id[0])
        return;
    remove_container(sb->docker, sb->id);
    set_remove(sb->live, sb->id);
    sb->id[0] = '\0';
}

int sandbox_reap(struct docker *d, enum sandbox_reap_mode mode,
                 const char *owner, struct sandbox_set *live, struct err *err)
{
    json_t *list = NULL, *c;
    size_t i;
    int rc, removed = 0;
    long long now = (long long)time(NULL);

    rc = docker_call_json(d, "GET",
                          "/containers/json?all=1&filters=%7B%22label%22%3A%5B"
                          "%22" SANDBOX_LABEL "%3D1%22%5D%7D",
                          NULL, &list, 0, err);
    if (rc < 0)
        return rc;
    json_array_foreach(list, i, c) {
        json_t *labels = json_object_get(c, "Labels");
        const char *deadline = json_string_value(
            json_object_get(labels, "org.nbcanvas.deadline"));
        const char *who = json_string_value(
            json_object_get(labels, "org.nbcanvas.owner"));
        const char *id = json_string_value(json_object_get(c, "Id"));

        if (!id || set_has(live, id))
            continue;
        if (mode == REAP_OWNED && (!who || !owner || strcmp(who, owner) != 0))
            continue;
        if (mode == REAP_EXPIRED && deadline &&
            strtoll(deadline, NULL, 10) > now)
            continue;
        if (remove_container(d, id) == 0)
            removed++;
    }
    json_decref(list);
    return removed;
}
