#ifndef NBCANVAS_IDS_H
#define NBCANVAS_IDS_H

/*
 * Ids that find their replica. A session, a gateway kernel, an MCP session
 * and a streamed render's kept result live in the memory of the replica
 * that made them. With several replicas behind a front, such an id says
 * where: "<route>_<run>_<uuid>", the replica's route (replica_route: "r1"
 * for Swarm's task slot 1), a tag drawn at each start of the process, and
 * a UUID. The front reads the route off the path or the Mcp-Session-Id
 * header and sends the request there (deploy/haproxy.cfg): no table, so a
 * new, restarted or second front routes alike. A replica asked for an id
 * it does not hold can say whose it was: another replica's (gone, or the
 * front does not route by id) or an earlier run of its own (it restarted).
 * Without a route (one replica) an id is a plain UUID, as before.
 *
 * Every id fits Jupyter's kernel id pattern (\w+-\w+-\w+-\w+-\w+: the
 * prefix joins the UUID's first group with '_') and MCP's session id rule
 * (visible ASCII).
 */

#include <stdbool.h>

#include "nbcanvas/err.h"

#define ID_MAX 64       /* an id and its NUL */
#define ID_ROUTE_MAX 16 /* a route's characters at most: [a-z0-9] */

/* True when route is one ids_init takes: "" or 1 to ID_ROUTE_MAX of
 * [a-z0-9]. */
bool ids_route_valid(const char *route);

/* Sets this process's route (validated by config) and draws its run tag.
 * Called once at start, before any id is made; without it ids are plain
 * UUIDs. */
void ids_init(const char *route);

/* A new id. */
void ids_new(char out[ID_MAX]);

/* The id of what a request made, from the request's id (a UUID): the
 * route and run tag before it, so the id still names the request. */
void ids_for_request(char out[ID_MAX], const char *request_id);

/* ERR_NOT_FOUND for an id this replica does not hold, saying why when the
 * id tells: another replica's, or an earlier run's. `what` names the
 * thing ("session"), `otherwise` the reason when the id tells nothing
 * ("it ended, or was never made"). */
int ids_not_found(struct err *err, const char *what, const char *id,
                  const char *otherwise);

#endif
