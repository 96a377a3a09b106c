/*
 * The connection guard (conn_guard.c) on real sockets (a unix socketpair:
 * the guard watches one end, the test is the client at the other): a turn
 * past its budget is shut down (the client reads EOF) and counted in the
 * metrics; a paused entry is left alone; rearm starts a fresh budget; an
 * entry removed in time never shuts its socket, nor a later socket that
 * reuses its fd numbers. The budget is 300 ms (600 ms where the test must
 * keep up with it) and the guard checks twice a second, so every wait
 * below is seconds long and every "did not happen" is checked well after
 * it would have.
 */
#include "../check.h"
#include "nbcanvas/conn_guard.h"
#include "nbcanvas/metrics.h"
#include "nbcanvas/util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUDGET_MS 300
/* Past the budget plus two of the guard's half-second ticks. */
#define QUIET_MS 1500
#define PATIENCE_MS 5000

static void sleep_ms(int ms)
{
    poll(NULL, 0, ms);
}

/* sv[0] is the server's socket (watched), sv[1] the client's. */
static void pair(int sv[2])
{
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
}

static void close_pair(int sv[2])
{
    close(sv[0]);
    close(sv[1]);
}

/* Waits up to ms for the client end to see the end of the stream; returns
 * the milliseconds it took, or -1 if it did not come. Nothing is ever
 * written to the client end by these tests, so readable means EOF. */
static long eof_within(int fd, int ms)
{
    int64_t t0 = util_now_ms();
    struct pollfd p = {fd, POLLIN, 0};
    char c;

    if (poll(&p, 1, ms) != 1)
        return -1;
    if (recv(fd, &c, 1, MSG_DONTWAIT) != 0)
        return -1;
    return (long)(util_now_ms() - t0);
}

/* True when the pair still carries bytes both ways. */
static bool pair_alive(int sv[2])
{
    char c = 0;

    return send(sv[0], "s", 1, MSG_NOSIGNAL) == 1 &&
           recv(sv[1], &c, 1, MSG_DONTWAIT) == 1 && c == 's' &&
           send(sv[1], "c", 1, MSG_NOSIGNAL) == 1 &&
           recv(sv[0], &c, 1, MSG_DONTWAIT) == 1 && c == 'c';
}

/* The value of the slow_clients_dropped counter in the metrics text (0
 * when it was never counted). */
static long dropped(struct metrics *m)
{
    struct buf out = BUF_INIT(1 << 20);
    const char *line;
    long n = 0;

    metrics_write(m, NULL, &out);
    line = strstr(out.data, "\nnbcanvas_slow_clients_dropped_total ");
    if (line)
        n = strtol(line + strlen("\nnbcanvas_slow_clients_dropped_total "),
                   NULL, 10);
    buf_release(&out);
    return n;
}

/* The guard counts a drop right after its shutdown, so a client can see
 * the EOF a moment before the count: wait for it. */
static bool dropped_becomes(struct metrics *m, long n)
{
    int64_t until = util_now_ms() + PATIENCE_MS;

    while (dropped(m) != n && util_now_ms() < until)
        sleep_ms(5);
    return dropped(m) == n;
}

TEST(conn_guard__turn_past_budget_is_shut_down_and_counted)
{
    struct metrics *m = metrics_new();
    struct conn_guard *g = conn_guard_new(BUDGET_MS, m);
    struct conn_guard_entry *e;
    int64_t added;
    long waited;
    int sv[2];

    CHECK(g != NULL);
    pair(sv);
    added = util_now_ms();
    e = conn_guard_add(g, sv[0]);
    CHECK(e != NULL);
    waited = eof_within(sv[1], PATIENCE_MS);
    CHECK(waited >= 0);
    /* never before its budget ran out */
    CHECK(util_now_ms() - added >= BUDGET_MS - 10);
    CHECK(dropped_becomes(m, 1));
    /* shut down once: the count stays at one */
    sleep_ms(1100);
    CHECK(dropped(m) == 1);
    conn_guard_remove(g, e);
    close_pair(sv);
    conn_guard_free(g);
    metrics_free(m);
}

TEST(conn_guard__paused_is_left_alone_then_rearm_gives_a_full_budget)
{
    struct metrics *m = metrics_new();
    struct conn_guard *g = conn_guard_new(BUDGET_MS, m);
    struct conn_guard_entry *e;
    int64_t rearmed;
    int sv[2];

    pair(sv);
    e = conn_guard_add(g, sv[0]);
    conn_guard_pause(g, e);
    CHECK(eof_within(sv[1], QUIET_MS) < 0);
    CHECK(pair_alive(sv));
    CHECK(dropped(m) == 0);
    rearmed = util_now_ms();
    conn_guard_rearm(g, e);
    CHECK(eof_within(sv[1], PATIENCE_MS) >= 0);
    /* the budget counted from the rearm, not from the add */
    CHECK(util_now_ms() - rearmed >= BUDGET_MS - 10);
    CHECK(dropped_becomes(m, 1));
    conn_guard_remove(g, e);
    close_pair(sv);
    conn_guard_free(g);
    metrics_free(m);
}

TEST(conn_guard__rearm_again_and_again_keeps_it_open)
{
    struct conn_guard *g = conn_guard_new(2 * BUDGET_MS, NULL);
    struct conn_guard_entry *e;
    int64_t until;
    int sv[2];

    pair(sv);
    e = conn_guard_add(g, sv[0]);
    /* a client that finishes a turn every 100 ms keeps its connection for
     * several budgets in a row */
    until = util_now_ms() + 4 * 2 * BUDGET_MS;
    while (util_now_ms() < until) {
        sleep_ms(100);
        conn_guard_rearm(g, e);
    }
    CHECK(eof_within(sv[1], 0) < 0);
    CHECK(pair_alive(sv));
    /* then stops: the guard (without metrics) still shuts it down */
    CHECK(eof_within(sv[1], PATIENCE_MS) >= 0);
    conn_guard_remove(g, e);
    close_pair(sv);
    conn_guard_free(g);
}

TEST(conn_guard__removed_before_expiry_is_never_shut_down)
{
    struct metrics *m = metrics_new();
    struct conn_guard *g = conn_guard_new(BUDGET_MS, m);
    struct conn_guard_entry *e;
    int sv[2];

    pair(sv);
    e = conn_guard_add(g, sv[0]);
    conn_guard_remove(g, e);
    CHECK(eof_within(sv[1], QUIET_MS) < 0);
    CHECK(pair_alive(sv));
    CHECK(dropped(m) == 0);
    conn_guard_remove(g, NULL); /* NULL is fine */
    close_pair(sv);
    conn_guard_free(g);
    metrics_free(m);
}

/* The lowest fd number free now (what the next socket or dup gets). */
static int lowest_free_fd(void)
{
    int fd = fcntl(0, F_DUPFD_CLOEXEC, 0);

    close(fd);
    return fd;
}

TEST(conn_guard__never_touches_an_fd_after_removal)
{
    struct metrics *m = metrics_new();
    struct conn_guard *g = conn_guard_new(BUDGET_MS, m);
    struct conn_guard_entry *e;
    int sv[2], a[2], b[2], own;

    pair(sv);
    own = lowest_free_fd(); /* where the guard's dup will land */
    e = conn_guard_add(g, sv[0]);
    CHECK(fcntl(own, F_GETFD) >= 0); /* the guard holds its own dup */
    conn_guard_remove(g, e);
    CHECK(fcntl(own, F_GETFD) < 0 && errno == EBADF); /* and let it go */
    close_pair(sv);
    /* new sockets take the freed numbers, the guard's dup among them */
    pair(a);
    pair(b);
    CHECK(a[0] == own || a[1] == own || b[0] == own || b[1] == own);
    CHECK(eof_within(a[1], QUIET_MS) < 0);
    CHECK(eof_within(a[0], 0) < 0 && eof_within(b[0], 0) < 0 &&
          eof_within(b[1], 0) < 0);
    CHECK(pair_alive(a));
    CHECK(pair_alive(b));
    CHECK(dropped(m) == 0);
    close_pair(a);
    close_pair(b);
    conn_guard_free(g);
    metrics_free(m);
}

TEST(conn_guard__free_lets_go_of_entries_still_watched)
{
    struct conn_guard *g = conn_guard_new(60000, NULL);
    int sv[2], own;

    pair(sv);
    own = lowest_free_fd();
    CHECK(conn_guard_add(g, sv[0]) != NULL);
    CHECK(conn_guard_add(g, sv[0]) != NULL);
    conn_guard_free(g); /* closes both dups, frees both entries */
    CHECK(fcntl(own, F_GETFD) < 0);
    CHECK(pair_alive(sv)); /* the server's own socket is untouched */
    close_pair(sv);
}
