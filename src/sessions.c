/*
 * Sessions (include/nbcanvas/sessions.h): the table, each session's life,
 * and the mapping of a session call's outcome to an answer.
 *
 * Locking: one mutex guards the table and every session's flags; a call
 * runs without it, with the session marked busy, so only its own thread
 * touches the session's sandbox. A session leaves the table (and its
 * sandbox goes to the janitor) in exactly one place, end_session(), called
 * either by the thread whose call made it end, or by the sweeper or a
 * delete when no call runs; a session deleted or expired during a call is
 * marked `ending` and ended by that call's thread when it returns.
 *
 * A gateway kernel (/api/kernels) is a session whose kernel its clients
 * drive through its channels (kernel_channels.h): the pump, not a call,
 * owns its link, so /v1 calls on it are refused, it is never frozen, and
 * it is culled once idle with no connection open (or when its kernel
 * died). A restart is the one call it takes: a fresh sandbox, same id.
 */
#include "nbcanvas/sessions.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nbcanvas/cluster_limits.h"
#include "nbcanvas/directory.h"
#include "nbcanvas/formats.h"
#include "nbcanvas/ids.h"
#include "nbcanvas/janitor.h"
#include "nbcanvas/jobs.h"
#include "nbcanvas/kernel_channels.h"
#include "nbcanvas/kernel_job.h"
#include "nbcanvas/list.h"
#include "nbcanvas/notebook.h"
#include "nbcanvas/packages.h"
#include "nbcanvas/pool.h"
#include "nbcanvas/results.h"
#include "nbcanvas/pipeline.h"
#include "nbcanvas/util.h"

/* Beyond a call's own timeout: the interrupt's grace, an export. */
#define CALL_GRACE_S 30
/* An export or a file read: no user code runs, only nbconvert. */
#define EXPORT_TIMEOUT_S 60
/* At shutdown, how long the calls still under way get to stop. */
#define SESSIONS_DRAIN_MS 15000

struct session {
    struct list_node link;
    char id[ID_MAX];
    char tenant[TENANT_NAME_MAX];
    struct tenant owner; /* its limits: a call takes a slot as it would */
    const struct kernel_info *kernel;
    struct sandbox sb;
    struct kernel_session ks;            /* its notebook so far, its count */
    char created_at[32], expires_at[32]; /* RFC 3339, UTC */
    long long idle_ms;                   /* idle_timeout_s */
    long long last_used_ms;              /* monotonic */
    long long end_ms;                    /* monotonic: the lifetime's end */
    long cells;                          /* executed so far */
    bool ready;                          /* the open job is done */
    bool busy;                           /* a call runs */
    bool ending;                         /* deleted or expired during a call */
    atomic_bool stop; /* set with ending: the call under way stops */
    bool pausing;     /* the sweeper is freezing it (busy meanwhile) */
    bool paused;      /* frozen between calls: thawed by the next one */
    long long pause_retry_ms;         /* a freeze failed: not again before */
    struct kernel_channels *channels; /* a gateway kernel's; else NULL */
    struct lease lease;               /* its tenant's place across replicas */
};

struct sessions {
    const struct pipeline *deps;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct list_node all;
    bool stopping;
    pthread_t sweeper;
    struct sessions_stats stats;
};

static void rfc3339(char *out, size_t len, time_t t)
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Takes s out of the table (lock held by the caller) and hands its
 * sandbox to the janitor once the lock is dropped: see end_session. */
static void unlink_session(struct sessions *ss, struct session *s)
{
    list_remove(&s->link);
    ss->stats.active--;
}

static void add_entries(json_t *entries, struct session *s, long long now);
static json_t *directory_entries(void *ctx);

static void dispose(struct sessions *ss, struct session *s)
{
    directory_forget(ss->deps->directory, s->tenant, s->id);
    if (s->channels) { /* the pump first: it uses the link */
        kernel_channels_stop(s->channels, true);
        kernel_channels_unref(s->channels);
    }
    janitor_dispose(ss->deps->janitor, &s->sb, NULL);
    kernel_session_release(&s->ks);
    cluster_limits_drop(&s->lease);
    free(s);
}

/* Freezes the sessions idle for session_pause_after_s (lock held; it is
 * dropped around each engine call, the session marked busy meanwhile):
 * what their code left running stops using the CPU until the next call. */
static void pause_idle(struct sessions *ss, long long now)
{
    long long after = ss->deps->cfg->session_pause_after_s * 1000LL;
    struct list_node *n;
    struct session *s;

    if (after <= 0)
        return;
    for (;;) {
        s = NULL;
        list_for_each(n, &ss->all) {
            struct session *c = list_entry(n, struct session, link);

            if (c->ready && !c->busy && !c->ending && !c->paused &&
                !c->channels && now >= c->last_used_ms + after &&
                now >= c->pause_retry_ms) {
                s = c;
                break;
            }
        }
        if (!s)
            return;
        s->busy = s->pausing = true;
        pthread_mutex_unlock(&ss->lock);
        s->paused = sandbox_pause(&s->sb, true, NULL) == 0;
        pthread_mutex_lock(&ss->lock);
        s->busy = s->pausing = false;
        if (!s->paused) /* not again for a while; idleness counts on */
            s->pause_retry_ms = now + after;
        pthread_cond_broadcast(&ss->wake); /* a claim may wait for it */
        if (s->ending) {                   /* deleted meanwhile */
            unlink_session(ss, s);
            pthread_mutex_unlock(&ss->lock);
            dispose(ss, s);
            pthread_mutex_lock(&ss->lock);
        }
    }
}

/* A gateway kernel's use as the sweeper sees it (lock held): its
 * clients' messages and the kernel's count as use, an open connection
 * keeps it in use, and a dead kernel is past its idle time at once. */
static void gateway_activity(struct session *s, long long now)
{
    struct channels_state st;
    long long idle_for;

    kernel_channels_state(s->channels, &st);
    idle_for = st.idle_ms;
    if (st.connections > 0)
        idle_for = 0;
    if (idle_for < now - s->last_used_ms)
        s->last_used_ms = now - (idle_for > 0 ? idle_for : 0);
    if (strcmp(st.execution_state, "dead") == 0)
        s->last_used_ms = now - s->idle_ms;
}

static void *sweep(void *arg)
{
    struct sessions *ss = arg;
    struct list_node gone, *n, *next;

    pthread_mutex_lock(&ss->lock);
    while (!ss->stopping) {
        struct timespec in_a_second = util_monotonic_in(1000);
        long long now = util_now_ms();

        pthread_cond_timedwait(&ss->wake, &ss->lock, &in_a_second);
        pause_idle(ss, now);
        list_init(&gone);
        for (n = ss->all.next; n != &ss->all; n = next) {
            struct session *s = list_entry(n, struct session, link);

            next = n->next;
            if (s->ready && s->channels && !s->busy)
                gateway_activity(s, now);
            if (!s->ready || s->ending ||
                (now < s->last_used_ms + s->idle_ms && now < s->end_ms))
                continue;
            if (s->busy) { /* past its lifetime mid-call: it stops */
                s->ending = now >= s->end_ms;
                s->stop = s->ending;
                continue;
            }
            unlink_session(ss, s);
            ss->stats.expired++;
            list_push_front(&gone, &s->link);
        }
        pthread_mutex_unlock(&ss->lock);
        while (!list_is_empty(&gone)) {
            struct session *s = list_entry(gone.next, struct session, link);

            list_remove(&s->link);
            dispose(ss, s);
        }
        pthread_mutex_lock(&ss->lock);
    }
    pthread_mutex_unlock(&ss->lock);
    return NULL;
}

struct sessions *sessions_new(const struct pipeline *deps)
{
    struct sessions *ss = xcalloc(1, sizeof(*ss));

    ss->deps = deps;
    pthread_mutex_init(&ss->lock, NULL);
    util_cond_init_monotonic(&ss->wake);
    list_init(&ss->all);
    if (pthread_create(&ss->sweeper, NULL, sweep, ss) != 0) {
        perror("nbcanvas: session sweeper");
        abort();
    }
    directory_set_source(deps->directory, directory_entries, ss);
    return ss;
}

void sessions_free(struct sessions *ss)
{
    struct timespec until = util_monotonic_in(SESSIONS_DRAIN_MS);
    struct list_node *n;
    long calls;

    if (!ss)
        return;
    directory_set_source(ss->deps->directory, NULL, NULL);
    pthread_mutex_lock(&ss->lock);
    ss->stopping = true;
    list_for_each(n, &ss->all) {
        struct session *s = list_entry(n, struct session, link);

        s->ending = s->busy; /* a call still under way stops */
        s->stop = s->busy;
    }
    pthread_cond_broadcast(&ss->wake);
    while (ss->stats.calls > 0 &&
           pthread_cond_timedwait(&ss->wake, &ss->lock, &until) == 0)
        ;
    calls = ss->stats.calls;
    pthread_mutex_unlock(&ss->lock);
    pthread_join(ss->sweeper, NULL);
    if (calls > 0) { /* never free what a thread still uses */
        fprintf(stderr, "nbcanvas: %ld session call(s) did not stop\n", calls);
        return;
    }
    while (!list_is_empty(&ss->all)) {
        struct session *s = list_entry(ss->all.next, struct session, link);

        unlink_session(ss, s);
        dispose(ss, s);
    }
    pthread_mutex_destroy(&ss->lock);
    pthread_cond_destroy(&ss->wake);
    free(ss);
}

/* The tenant's live session id, or NULL (lock held). */
static struct session *find(struct sessions *ss, const char *tenant,
                            const char *id)
{
    struct list_node *n;

    list_for_each(n, &ss->all) {
        struct session *s = list_entry(n, struct session, link);

        if (s->ready && !s->ending && strcmp(s->id, id) == 0 &&
            strcmp(s->tenant, tenant) == 0)
            return s;
    }
    return NULL;
}

static int not_found(const char *id, struct err *err)
{
    return ids_not_found(err, "session", id, "it ended, or was never made");
}

static int no_kernel(const char *id, struct err *err)
{
    return ids_not_found(err, "kernel", id, "it ended, or was never made");
}

static void release(struct sessions *ss, struct session *s, long cells,
                    bool end);

/* Marks the session busy for one call (thawing it if it was frozen). */
static int claim(struct sessions *ss, const char *tenant, const char *id,
                 struct session **out, struct err *err)
{
    struct session *s;
    int rc = 0;

    pthread_mutex_lock(&ss->lock);
    /* being frozen is no call: wait the moment it takes */
    while ((s = find(ss, tenant, id)) && s->pausing)
        pthread_cond_wait(&ss->wake, &ss->lock);
    if (!s)
        rc = not_found(id, err);
    else if (s->busy)
        rc = err_set(err, ERR_SESSION_BUSY,
                     "the session is running another call; one at a time");
    else if (s->channels)
        rc = err_set(err, ERR_SESSION_BUSY,
                     "this session is a gateway kernel: its clients drive "
                     "it through /api/kernels/%s/channels",
                     s->id);
    else
        s->busy = true;
    ss->stats.calls += rc == 0;
    pthread_mutex_unlock(&ss->lock);
    *out = s;
    if (rc == 0 && s->paused) { /* the call owns it now */
        s->paused = false;
        if (sandbox_pause(&s->sb, false, err) < 0) {
            release(ss, s, 0, true);
            return err_set(err, ERR_ENGINE,
                           "the session's sandbox could not be thawed; it "
                           "has ended");
        }
    }
    return rc;
}

/* A call is over, its session disposed of if it ended: sessions_free may
 * go on once none is left (counted after dispose, which uses ss). */
static void call_done(struct sessions *ss)
{
    pthread_mutex_lock(&ss->lock);
    ss->stats.calls--;
    pthread_cond_broadcast(&ss->wake);
    pthread_mutex_unlock(&ss->lock);
}

/* The call is over: the session lives on, with cells more in its
 * notebook, or ends (end: by a fault). */
static void release(struct sessions *ss, struct session *s, long cells,
                    bool end)
{
    bool gone;

    pthread_mutex_lock(&ss->lock);
    s->busy = false;
    s->cells += cells;
    s->last_used_ms = util_now_ms();
    gone = end || s->ending;
    if (gone)
        unlink_session(ss, s);
    if (end)
        ss->stats.faulted++;
    pthread_mutex_unlock(&ss->lock);
    if (gone)
        dispose(ss, s);
    call_done(ss);
}

/* One job on the session's kernel (kernel_job.c), within a job slot.
 * Returns 0 once the job's status is written, or ERR_*. */
static int call(struct sessions *ss, struct session *s,
                const struct job_spec *job, json_t *notebook,
                const struct tar_files *files, long timeout_s,
                const atomic_bool *cancel, struct kernel_job *c)
{
    struct job_slot slot = JOB_SLOT_INIT;
    long long deadline = util_now_ms() + (timeout_s + CALL_GRACE_S) * 1000LL;
    int rc;

    c->cancel_too = &s->stop; /* deleted or expired meanwhile */
    rc = jobs_acquire(ss->deps->jobs, &s->owner, cancel, &slot, c->err);
    if (rc == 0 && s->stop) {
        jobs_release(&slot);
        rc = err_set(c->err, ERR_NOT_FOUND, "the session has ended");
    }
    if (rc < 0)
        return rc;
    switch (job->kind) {
    case JOB_OPEN:
        rc = kernel_job_open(c, &s->sb, &s->ks, job, notebook, files, deadline,
                             cancel);
        break;
    case JOB_EXECUTE:
        rc = kernel_job_execute(c, &s->sb, &s->ks, job, notebook, files,
                                deadline, cancel);
        break;
    case JOB_EXPORT:
        rc = kernel_job_export(c, &s->sb, &s->ks, job, deadline, cancel);
        break;
    case JOB_FILE:
        rc = kernel_job_file(c, &s->sb, &s->ks, job, deadline, cancel);
        break;
    default:
        rc = err_set(c->err, ERR_INTERNAL, "not a session's job");
    }
    jobs_release(&slot);
    return rc;
}

/* True when a call that failed (rc) leaves the session in an unknown
 * state: the job reached the sandbox, or the sandbox failed. A call that
 * never got a job slot, or whose client left before it was sent, leaves
 * the session as it was. */
static bool call_broke(int rc, const struct kernel_job *c)
{
    return c->uploaded || (rc != ERR_BUSY && rc != ERR_CANCELLED);
}

/* A call that ended without results: the session's state is unknown, so
 * it ends; the error says why. */
static int lost_call(struct sessions *ss, struct session *s, int rc,
                     struct kernel_job *c, json_t **details)
{
    const struct config *cfg = ss->deps->cfg;

    if (rc == ERR_CANCELLED && s->stop)
        return err_set(c->err, ERR_NOT_FOUND,
                       "the session was ended (deleted, or past its "
                       "lifetime) during this call");
    if (rc == ERR_CANCELLED || rc == ERR_BUSY)
        return rc;
    if (rc == ERR_TIMEOUT)
        return err_set(c->err, ERR_TIMEOUT,
                       "the session did not answer in time; it has ended");
    (void)details;
    if (sandbox_oom_killed(&s->sb))
        return err_set(c->err, ERR_MEMORY,
                       "the session ran out of memory (%lld MiB); it has "
                       "ended",
                       cfg->render_limits.memory_bytes >> 20);
    if (sandbox_lost(&s->sb))
        return sandbox_lost_error(c->err);
    return rc;
}

static void fill_job(struct job_spec *job, const struct config *cfg,
                     const struct session *s, enum job_kind kind)
{
    memset(job, 0, sizeof(*job));
    job->kind = kind;
    job->kernel = s->kernel->name;
    job->template_name = "lab";
    job->timeout_s = EXPORT_TIMEOUT_S;
    job->max_html_bytes = cfg->max_html_bytes;
    job->max_artifact_bytes = cfg->max_artifact_bytes;
    job->max_result_bytes = cfg->max_result_bytes;
    /* a Jupyter client gets plain output; the formatters are Python's */
    job->structured = !s->channels && s->kernel->ipykernel;
    job->table_rows = cfg->max_table_rows;
}

/* Room for one more session of tenant (lock held), who may hold
 * tenant_max here (its own max_sessions, or its share of it: see
 * cluster_limits.h). */
static int check_room(struct sessions *ss, const struct tenant *who,
                      long tenant_max, struct err *err)
{
    long mine = 0;
    struct list_node *n;

    if (ss->stats.active >= ss->deps->cfg->max_sessions)
        return err_set(err, ERR_BUSY,
                       "the service holds its most sessions (%ld): end one "
                       "or retry later",
                       ss->deps->cfg->max_sessions);
    list_for_each(n, &ss->all) {
        struct session *s = list_entry(n, struct session, link);

        /* (an ending one still holds its sandbox until its call ends) */
        mine += strcmp(s->tenant, who->name) == 0;
    }
    if (tenant_max > 0 && mine >= tenant_max)
        return err_set(err, ERR_BUSY,
                       "your key holds its most sessions (%ld): end one "
                       "first",
                       tenant_max);
    return 0;
}

/* A sandbox for a new session: a warm one when the pool has it. */
static int take_sandbox(struct sessions *ss, struct session *s,
                        const char *request_id, const atomic_bool *cancel,
                        struct err *err)
{
    const struct config *cfg = ss->deps->cfg;
    bool warm;

    return pool_sandbox(
        ss->deps->pools[s->kernel->index], ss->deps->janitor, &s->sb,
        request_id, (long long)time(NULL) + cfg->session_max_lifetime_s + 120,
        false, cancel, &warm, err);
}

/* A gateway kernel's model as jupyter_server reads it (lock held):
 * last_activity must carry fractions of a second and a "Z". */
static json_t *kernel_model(struct session *s)
{
    struct channels_state st;
    char when[40], stamp[64];
    time_t secs;
    struct tm tm;

    kernel_channels_state(s->channels, &st);
    secs = (time_t)(st.last_activity_ms / 1000);
    gmtime_r(&secs, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp, sizeof(stamp), "%s.%06lldZ", when,
             (st.last_activity_ms % 1000) * 1000);
    return json_pack("{s:s, s:s, s:s, s:s, s:I}", "id", s->id, "name",
                     s->kernel->name, "last_activity", stamp,
                     "execution_state", st.execution_state, "connections",
                     (json_int_t)st.connections);
}

int sessions_create(struct sessions *ss, const struct session_request *req,
                    const char *request_id, const atomic_bool *cancel,
                    json_t **out, struct err *err)
{
    const struct config *cfg = ss->deps->cfg;
    struct session *s = xcalloc(1, sizeof(*s));
    struct kernel_job c;
    struct job_spec job;
    struct job_status st;
    struct tar_files wheels = TAR_FILES_INIT;
    time_t now = time(NULL);
    json_t *entries = NULL;
    long tenant_max;
    int rc;

    ids_new(s->id);
    snprintf(s->tenant, sizeof(s->tenant), "%s", req->tenant.name);
    s->owner = req->tenant;
    s->kernel = req->kernel;
    s->idle_ms = req->idle_timeout_s * 1000LL;
    s->end_ms = util_now_ms() + cfg->session_max_lifetime_s * 1000LL;
    s->busy = true;
    if (req->gateway)
        s->channels = kernel_channels_new(
            cfg->gateway_max_connections,
            (size_t)cfg->gateway_max_queued_bytes);
    rfc3339(s->created_at, sizeof(s->created_at), now);
    rfc3339(s->expires_at, sizeof(s->expires_at),
            now + cfg->session_max_lifetime_s);
    /* the stack's count first (it may ask Redis), then this replica's */
    rc = cluster_limits_take(ss->deps->limits, LEASE_SESSIONS, &req->tenant,
                             &s->lease, &tenant_max, err);
    pthread_mutex_lock(&ss->lock);
    if (rc == 0)
        rc = ss->stopping ? err_set(err, ERR_BUSY, "the service is stopping")
                          : check_room(ss, &req->tenant, tenant_max, err);
    if (rc == 0) {
        list_push_front(&ss->all, &s->link);
        ss->stats.active++;
        ss->stats.calls++;
    }
    pthread_mutex_unlock(&ss->lock);
    if (rc < 0) {
        kernel_channels_unref(s->channels);
        cluster_limits_drop(&s->lease);
        free(s);
        return rc;
    }
    kernel_job_init(&c, cfg, ss->deps->exporters, err);
    fill_job(&job, cfg, s, JOB_OPEN);
    job.packages = req->packages;
    job.wheels = &wheels;
    /* the wheels before a sandbox is taken: a download may take a while */
    rc = packages_fetch(ss->deps->packages, req->packages, &wheels, err);
    if (rc == 0)
        rc = take_sandbox(ss, s, request_id, cancel, err);
    if (rc == 0)
        rc = call(ss, s, &job, req->notebook, &req->files, EXPORT_TIMEOUT_S,
                  cancel, &c);
    if (rc == ERR_TIMEOUT)
        rc = lost_call(ss, s, rc, &c, NULL);
    if (rc == 0)
        rc = job_status_parse(&st, c.status, err);
    if (rc == 0 && st.outcome == JOB_PACKAGE_FAILED)
        rc = err_set(err, ERR_PACKAGE,
                     "the packages could not be installed: %s", st.message);
    else if (rc == 0 && st.outcome != JOB_OK)
        rc = err_set(err, ERR_INTERNAL, "the session did not start: %s",
                     st.message);
    if (rc == 0 && s->channels)
        rc = kernel_channels_start(s->channels, &s->ks.link, s->sb.kernel_key,
                                   err);
    kernel_job_release(&c);
    tarball_files_release(&wheels);
    if (rc == 0) {
        /* in every replica's listings before it is ready, so before
         * anything can find it here and end it: an end is never undone
         * by an entry written after it */
        entries = json_array();
        pthread_mutex_lock(&ss->lock);
        add_entries(entries, s, util_now_ms());
        pthread_mutex_unlock(&ss->lock);
        directory_put(ss->deps->directory, entries);
        json_decref(entries);
    }
    pthread_mutex_lock(&ss->lock);
    if (rc == 0) {
        s->ready = true;
        s->busy = false;
        s->last_used_ms = util_now_ms();
        ss->stats.created++;
        /* the answer now: once the lock drops, a delete may end it */
        *out = s->channels
                   ? kernel_model(s)
                   : json_pack("{s:s, s:s, s:s, s:s, s:I}", "id", s->id,
                               "kernel", s->kernel->name, "created_at",
                               s->created_at, "expires_at", s->expires_at,
                               "idle_timeout_s",
                               (json_int_t)req->idle_timeout_s);
    } else {
        unlink_session(ss, s);
    }
    pthread_mutex_unlock(&ss->lock);
    if (rc < 0)
        dispose(ss, s);
    call_done(ss);
    return rc;
}

/* The one cell of the call's answer, as the json format has it. */
static json_t *executed_cell(struct kernel_job *c)
{
    json_t *cells = results_cells_json(c->notebook);
    json_t *cell = json_incref(json_array_get(cells, 0));

    json_decref(cells);
    return cell;
}

/* The 200 answer of an execute: the cell ran (it may have raised). */
static json_t *execute_answer(struct kernel_job *c, long index, long long ms,
                              bool raised)
{
    json_t *cell = executed_cell(c);
    json_t *out = json_pack("{s:O, s:s, s:O, s:I, s:I}", "execution_count",
                            json_object_get(cell, "execution_count"), "status",
                            raised ? "error" : "ok", "outputs",
                            json_object_get(cell, "outputs"), "index",
                            (json_int_t)index, "duration_ms", (json_int_t)ms);

    if (raised) {
        json_t *e = results_cell_error(c->status);

        json_object_del(e, "cell");
        json_object_set_new(out, "error", e);
    }
    json_decref(cell);
    return out;
}

/* Details of a call stopped in a cell: the cell and what it wrote. */
static json_t *stopped_details(struct kernel_job *c, long index)
{
    json_t *cell = executed_cell(c);
    json_t *d = json_pack("{s:I, s:O}", "cell", (json_int_t)index, "outputs",
                          json_object_get(cell, "outputs"));

    json_decref(cell);
    return d;
}

int sessions_execute(struct sessions *ss, const char *tenant, const char *id,
                     const struct execute_request *req,
                     executor_event_fn on_event, void *event_ctx,
                     const atomic_bool *cancel, json_t **out, json_t **details,
                     struct err *err)
{
    const struct config *cfg = ss->deps->cfg;
    long long t0 = util_now_ms();
    struct session *s;
    struct kernel_job c;
    struct job_spec job;
    struct job_status st;
    struct tar_files wheels = TAR_FILES_INIT;
    bool end = false;
    int rc;

    *out = *details = NULL;
    rc = claim(ss, tenant, id, &s, err);
    if (rc < 0)
        return rc;
    kernel_job_init(&c, cfg, ss->deps->exporters, err);
    c.on_event = on_event;
    c.event_ctx = event_ctx;
    fill_job(&job, cfg, s, JOB_EXECUTE);
    job.events = on_event != NULL;
    job.timeout_s = req->timeout_s;
    job.packages = req->packages;
    job.wheels = &wheels;
    rc = packages_fetch(ss->deps->packages, req->packages, &wheels, err);
    if (rc < 0) {
        kernel_job_release(&c);
        release(ss, s, 0, false);
        return rc;
    }
    rc = call(ss, s, &job, req->notebook, &req->files, req->timeout_s, cancel,
              &c);
    if (rc != 0) {
        end = call_broke(rc, &c);
        rc = lost_call(ss, s, rc, &c, details);
    }
    if (rc == 0)
        rc = job_status_parse(&st, c.status, err);
    if (rc == 0 && !c.notebook &&
        (st.outcome == JOB_OK || st.outcome == JOB_CELL_ERROR ||
         st.outcome == JOB_TIMEOUT))
        rc = err_set(err, ERR_INTERNAL, "the session sent no cell back");
    if (rc < 0) {
        end = end || rc == ERR_INTERNAL;
    } else {
        end = st.session_over;
        switch (st.outcome) {
        case JOB_OK:
        case JOB_CELL_ERROR:
            *out = execute_answer(&c, s->cells, util_now_ms() - t0,
                                  st.outcome == JOB_CELL_ERROR);
            if (!*out) { /* no code cell came back */
                end = true;
                rc = err_set(err, ERR_INTERNAL,
                             "the session's answer held no cell; it has "
                             "ended");
            }
            break;
        case JOB_TIMEOUT:
            *details = stopped_details(&c, st.cell);
            rc = err_set(err, ERR_TIMEOUT,
                         end ? "cell %ld ran past %ld s and did not stop "
                               "when interrupted; the session has ended"
                             : "cell %ld ran past %ld s and was interrupted; "
                               "the session lives on",
                         st.cell, req->timeout_s);
            break;
        case JOB_OUTPUT_LIMIT:
            *details = json_pack("{s:I}", "cell", (json_int_t)st.cell);
            rc = err_set(err, ERR_OUTPUT, "output too large: %s; %s",
                         st.message,
                         end ? "the session has ended"
                             : "it was interrupted and the session lives on");
            break;
        case JOB_KERNEL_DIED:
            end = true;
            rc = job_dead_kernel(&s->sb, c.status, st.cell,
                                 cfg->render_limits.memory_bytes,
                                 "; the session has ended", err, details);
            break;
        case JOB_PACKAGE_FAILED:
            rc = err_set(err, ERR_PACKAGE,
                         "the packages could not be installed: %s",
                         st.message);
            break;
        default:
            end = true;
            rc = err_set(err, ERR_INTERNAL, "the session failed: %s",
                         st.message);
        }
    }
    kernel_job_release(&c);
    tarball_files_release(&wheels);
    /* the cell is in the session's notebook unless the call broke */
    release(ss, s, rc == 0 || rc == ERR_TIMEOUT || rc == ERR_OUTPUT ? 1 : 0,
            end);
    return rc;
}

/* An export or a file read in the claimed session s: one job with no
 * cell, on the session's kernel. Returns 0 with the job's status in *st, or
 * the error; *end says whether the session must end (the call broke, the
 * sandbox misbehaved or the session is over). */
static int quiet_call(struct sessions *ss, struct session *s,
                      const struct job_spec *job, const atomic_bool *cancel,
                      struct kernel_job *c, struct job_status *st, bool *end)
{
    json_t *empty = json_object();
    struct tar_files none = TAR_FILES_INIT;
    int rc = call(ss, s, job, empty, &none, EXPORT_TIMEOUT_S, cancel, c);

    json_decref(empty);
    if (rc != 0) {
        *end = call_broke(rc, c);
        return lost_call(ss, s, rc, c, NULL);
    }
    rc = job_status_parse(st, c->status, c->err);
    *end = rc < 0 || st->session_over;
    return rc;
}

int sessions_export(struct sessions *ss, const char *tenant, const char *id,
                    const struct export_request *req,
                    const atomic_bool *cancel, struct payload *out,
                    struct err *err)
{
    const struct config *cfg = ss->deps->cfg;
    struct session *s;
    struct kernel_job c;
    struct job_spec job;
    struct job_status st;
    bool end = false;
    int rc;

    rc = claim(ss, tenant, id, &s, err);
    if (rc < 0)
        return rc;
    kernel_job_init(&c, cfg, ss->deps->exporters, err);
    fill_job(&job, cfg, s, JOB_EXPORT);
    job.template_name = req->template_name;
    job.include_input = req->include_input;
    job.artifacts = req->format == FORMAT_ZIP;
    rc = quiet_call(ss, s, &job, cancel, &c, &st, &end);
    if (rc == 0 && st.outcome == JOB_OUTPUT_LIMIT)
        rc = err_set(err, ERR_OUTPUT, "output too large: %s", st.message);
    else if (rc == 0 && st.outcome != JOB_OK)
        rc = err_set(err, ERR_INTERNAL, "the export failed: %s", st.message);
    end = end || rc == ERR_INTERNAL; /* the sandbox misbehaved: it ends */
    if (rc == 0) {
        struct formats_input in = {s->id, &c.results, c.notebook, NULL};

        rc = formats_build(req->format, &in, out, err);
    }
    kernel_job_release(&c);
    release(ss, s, 0, end);
    return rc;
}

int sessions_file(struct sessions *ss, const char *tenant, const char *id,
                  const char *path, const atomic_bool *cancel,
                  struct payload *out, struct err *err)
{
    const struct config *cfg = ss->deps->cfg;
    struct session *s;
    struct kernel_job c;
    struct job_spec job;
    struct job_status st;
    const struct tar_entry *e;
    bool end = false;
    int rc;

    rc = claim(ss, tenant, id, &s, err);
    if (rc < 0)
        return rc;
    kernel_job_init(&c, cfg, ss->deps->exporters, err);
    fill_job(&job, cfg, s, JOB_FILE);
    job.path = path;
    rc = quiet_call(ss, s, &job, cancel, &c, &st, &end);
    if (rc == 0 && st.outcome == JOB_NOT_FOUND)
        rc = err_set(err, ERR_NOT_FOUND,
                     "the session has no regular file at that path (or one "
                     "larger than %lld MiB, max_artifact_bytes)",
                     cfg->max_artifact_bytes >> 20);
    else if (rc == 0 && st.outcome != JOB_OK)
        rc = err_set(err, ERR_INTERNAL, "reading the file failed: %s",
                     st.message);
    end = end || rc == ERR_INTERNAL; /* the sandbox misbehaved: it ends */
    e = rc == 0 ? tarball_find(&c.results, JOB_RESULT_FILE) : NULL;
    if (rc == 0 && !e)
        rc = err_set(err, ERR_INTERNAL, "the session sent no file");
    if (rc == 0) {
        *out = (struct payload)PAYLOAD_INIT; /* the type is the caller's */
        out->body = xmalloc(e->len ? e->len : 1);
        memcpy(out->body, e->data, e->len);
        out->len = e->len;
    }
    kernel_job_release(&c);
    release(ss, s, 0, end);
    return rc;
}

/* A session as GET /v1/sessions lists it (lock held). */
static json_t *session_json(const struct session *s, long long now)
{
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:I, s:b, s:b, s:I}", "id", s->id, "kernel",
        s->kernel->name, "created_at", s->created_at, "expires_at",
        s->expires_at, "cells", (json_int_t)s->cells, "busy",
        s->busy && !s->pausing, "paused", s->paused, "idle_s",
        (json_int_t)(s->busy ? 0 : (now - s->last_used_ms) / 1000));
}

/* s's entries in the stack's directory (lock held): a session, and a
 * gateway kernel's model too. */
static void add_entries(json_t *entries, struct session *s, long long now)
{
    json_array_append_new(entries,
                          json_pack("{s:s, s:s, s:s, s:o}", "tenant",
                                    s->tenant, "kind", DIRECTORY_SESSION, "id",
                                    s->id, "model", session_json(s, now)));
    if (s->channels)
        json_array_append_new(entries, json_pack("{s:s, s:s, s:s, s:o}",
                                                 "tenant", s->tenant, "kind",
                                                 DIRECTORY_KERNEL, "id", s->id,
                                                 "model", kernel_model(s)));
}

/* What this replica holds, for the directory's renewals. */
static json_t *directory_entries(void *ctx)
{
    struct sessions *ss = ctx;
    json_t *entries = json_array();
    long long now = util_now_ms();
    struct list_node *n;

    pthread_mutex_lock(&ss->lock);
    list_for_each(n, &ss->all) {
        struct session *s = list_entry(n, struct session, link);

        if (s->ready && !s->ending)
            add_entries(entries, s, now);
    }
    pthread_mutex_unlock(&ss->lock);
    return entries;
}

json_t *sessions_list(struct sessions *ss, const char *tenant)
{
    json_t *list = json_array();
    long long now = util_now_ms();
    struct list_node *n;

    pthread_mutex_lock(&ss->lock);
    list_for_each(n, &ss->all) {
        struct session *s = list_entry(n, struct session, link);

        if (!s->ready || s->ending || strcmp(s->tenant, tenant) != 0)
            continue;
        json_array_append_new(list, session_json(s, now));
    }
    pthread_mutex_unlock(&ss->lock);
    directory_add_others(ss->deps->directory, tenant, DIRECTORY_SESSION, list);
    return list;
}

static struct session *find_kernel(struct sessions *ss, const char *tenant,
                                   const char *id);

/* Ends the session id of tenant (kernels_only: a gateway kernel's), or
 * marks it to end when its call returns; false when there is none. */
static bool end_session_of(struct sessions *ss, const char *tenant,
                           const char *id, bool kernels_only)
{
    struct session *s;
    bool now = false, found;

    pthread_mutex_lock(&ss->lock);
    s = kernels_only ? find_kernel(ss, tenant, id) : find(ss, tenant, id);
    found = s != NULL;
    if (s && s->busy) {
        s->ending = true; /* its call stops, and its thread ends it */
        s->stop = true;
    } else if (s) {
        unlink_session(ss, s);
        now = true;
    }
    pthread_mutex_unlock(&ss->lock);
    if (now)
        dispose(ss, s);
    else if (found) /* out of every listing now, not when its call ends */
        directory_forget(ss->deps->directory, tenant, id);
    return found;
}

int sessions_delete(struct sessions *ss, const char *tenant, const char *id,
                    struct err *err)
{
    return end_session_of(ss, tenant, id, false) ? 0 : not_found(id, err);
}

int sessions_kernel_delete(struct sessions *ss, const char *tenant,
                           const char *id, struct err *err)
{
    return end_session_of(ss, tenant, id, true) ? 0 : no_kernel(id, err);
}

int sessions_check(struct sessions *ss, const char *tenant, const char *id,
                   const struct kernel_info **kernel, json_t **info,
                   struct err *err)
{
    struct session *s;
    int rc = 0;

    pthread_mutex_lock(&ss->lock);
    s = find(ss, tenant, id);
    if (!s)
        rc = not_found(id, err);
    else if (kernel && s->busy && !s->pausing)
        rc = err_set(err, ERR_SESSION_BUSY,
                     "the session is running another call; one at a time");
    if (s && kernel)
        *kernel = s->kernel;
    if (s && info)
        *info = session_json(s, util_now_ms());
    pthread_mutex_unlock(&ss->lock);
    return rc;
}

void sessions_stats(struct sessions *ss, struct sessions_stats *out)
{
    pthread_mutex_lock(&ss->lock);
    *out = ss->stats;
    pthread_mutex_unlock(&ss->lock);
}

/* --- gateway kernels ------------------------------------------------ */

/* The tenant's gateway kernel id (lock held), or NULL. */
static struct session *find_kernel(struct sessions *ss, const char *tenant,
                                   const char *id)
{
    struct session *s = find(ss, tenant, id);

    return s && s->channels ? s : NULL;
}

json_t *sessions_kernel_model(struct sessions *ss, const char *tenant,
                              const char *id)
{
    struct session *s;
    json_t *model = NULL;

    pthread_mutex_lock(&ss->lock);
    s = find_kernel(ss, tenant, id);
    if (s)
        model = kernel_model(s);
    pthread_mutex_unlock(&ss->lock);
    return model;
}

json_t *sessions_list_kernels(struct sessions *ss, const char *tenant)
{
    json_t *list = json_array();
    struct list_node *n;

    pthread_mutex_lock(&ss->lock);
    list_for_each(n, &ss->all) {
        struct session *s = list_entry(n, struct session, link);

        if (s->ready && !s->ending && s->channels &&
            strcmp(s->tenant, tenant) == 0)
            json_array_append_new(list, kernel_model(s));
    }
    pthread_mutex_unlock(&ss->lock);
    directory_add_others(ss->deps->directory, tenant, DIRECTORY_KERNEL, list);
    return list;
}

int sessions_kernel_channels(struct sessions *ss, const char *tenant,
                             const char *id, struct kernel_channels **out,
                             struct err *err)
{
    struct session *s;

    pthread_mutex_lock(&ss->lock);
    s = find_kernel(ss, tenant, id);
    if (s) {
        kernel_channels_ref(s->channels);
        *out = s->channels;
    }
    pthread_mutex_unlock(&ss->lock);
    return s ? 0 : no_kernel(id, err);
}

int sessions_kernel_interrupt(struct sessions *ss, const char *tenant,
                              const char *id, struct err *err)
{
    struct kernel_channels *ch;
    int rc = sessions_kernel_channels(ss, tenant, id, &ch, err);

    if (rc < 0)
        return rc;
    kernel_channels_interrupt(ch);
    kernel_channels_unref(ch);
    return 0;
}

int sessions_kernel_restart(struct sessions *ss, const char *tenant,
                            const char *id, const char *request_id,
                            const atomic_bool *cancel, json_t **model,
                            struct err *err)
{
    const struct config *cfg = ss->deps->cfg;
    struct session *s;
    struct kernel_job c;
    struct job_spec job;
    struct job_status st;
    int rc = 0;

    pthread_mutex_lock(&ss->lock);
    s = find_kernel(ss, tenant, id);
    if (!s)
        rc = no_kernel(id, err);
    else if (s->busy)
        rc = err_set(err, ERR_SESSION_BUSY, "the kernel is restarting");
    else
        s->busy = true;
    ss->stats.calls += rc == 0;
    pthread_mutex_unlock(&ss->lock);
    if (rc < 0)
        return rc;
    /* the old kernel goes, its clients stay for the new one */
    kernel_channels_stop(s->channels, false);
    kernel_session_release(&s->ks);
    memset(&s->ks, 0, sizeof(s->ks));
    janitor_dispose(ss->deps->janitor, &s->sb, NULL);
    memset(&s->sb, 0, sizeof(s->sb));
    kernel_job_init(&c, cfg, ss->deps->exporters, err);
    fill_job(&job, cfg, s, JOB_OPEN);
    rc = take_sandbox(ss, s, request_id, cancel, err);
    if (rc == 0) {
        json_t *cells = json_array(), *nb = NULL;
        struct tar_files none = TAR_FILES_INIT;

        rc = notebook_from_cells(&nb, cells, s->kernel, err);
        if (rc == 0)
            rc = call(ss, s, &job, nb, &none, EXPORT_TIMEOUT_S, cancel, &c);
        json_decref(nb);
        json_decref(cells);
    }
    if (rc == 0)
        rc = job_status_parse(&st, c.status, err);
    if (rc == 0 && st.outcome != JOB_OK)
        rc = err_set(err, ERR_INTERNAL, "the kernel did not start: %s",
                     st.message);
    if (rc == 0)
        rc = kernel_channels_start(s->channels, &s->ks.link, s->sb.kernel_key,
                                   err);
    kernel_job_release(&c);
    if (rc == 0) {
        pthread_mutex_lock(&ss->lock);
        *model = kernel_model(s);
        pthread_mutex_unlock(&ss->lock);
    }
    release(ss, s, 0, rc < 0); /* a failed restart ends the kernel */
    return rc;
}
