#ifndef NBCANVAS_CONN_GUARD_H
#define NBCANVAS_CONN_GUARD_H

/*
 * An absolute deadline on the client's turn of a connection. The server's
 * inactivity timeout drops a client that goes quiet, but not one that
 * trickles a byte now and then (slowloris): the guard gives each turn of
 * the client -- sending a request, reading the answer -- a fixed budget,
 * and shuts the socket down when it runs out. The server's own turn (the
 * job) is paused, so a long render is never cut by it.
 *
 * The guard keeps its own dup of each socket, so shutting one down can
 * never hit an fd the server has already closed and reused.
 */

#include <stdint.h>

struct conn_guard;
struct metrics;
struct conn_guard_entry;

/* A guard whose turns last budget_ms, counting the connections it drops
 * in metrics (may be NULL); NULL if its thread cannot start. */
struct conn_guard *conn_guard_new(long budget_ms, struct metrics *metrics);
void conn_guard_free(struct conn_guard *g);

/* Starts watching socket fd, with a turn starting now. NULL if the socket
 * cannot be watched (the connection is then only under the inactivity
 * timeout). */
struct conn_guard_entry *conn_guard_add(struct conn_guard *g, int fd);
/* The server's turn: no deadline until the next conn_guard_rearm. */
void conn_guard_pause(struct conn_guard *g, struct conn_guard_entry *e);
/* The client's turn: a full budget from now. */
void conn_guard_rearm(struct conn_guard *g, struct conn_guard_entry *e);
/* Stops watching and frees e; NULL is fine. */
void conn_guard_remove(struct conn_guard *g, struct conn_guard_entry *e);

#endif
