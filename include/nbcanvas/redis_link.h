#ifndef NBCANVAS_REDIS_LINK_H
#define NBCANVAS_REDIS_LINK_H

/*
 * One connection to Redis that any thread may use, for the parts that
 * share state through it: the result cache (cache_redis.c) and the
 * tenants' limits (cluster_limits.c), each with a link of its own so a
 * large cached page never holds up a request's admission.
 *
 * Redis helps and is never needed: every read or write on the socket has
 * a timeout, a broken connection is dropped and not tried again for a
 * second (so a Redis that is down costs one failed connect a second, not
 * one a request), and the link comes back by itself when Redis answers.
 * The first failure and every hundredth are logged, under the link's
 * name; so is the link's return.
 */

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

#include "nbcanvas/err.h"

struct redis_link;

/* Reads url (redis://[:password@]host[:port][/db] or unix:///path[?db=N])
 * into a new link, which connects at first use; `name` labels its log
 * lines ("redis cache"). ERR_INVALID for a URL it cannot read (naming
 * config key cache_redis_url, where every Redis URL comes from). */
int redis_link_new(struct redis_link **out, const char *url, long timeout_ms,
                   const char *name, struct err *err);
void redis_link_free(struct redis_link *l);

/* One command (argv/lens as redisCommandArgv; lens NULL: strings), under
 * the link's lock; the reply (freeReplyObject) or NULL when Redis did not
 * answer or answered an error (counted, logged, the connection kept). A
 * link resting after a failure answers NULL at once unless force. */
redisReply *redis_link_command(struct redis_link *l, bool force, int argc,
                               const char **argv, const size_t *lens);

/* True while connected (a command may still fail). */
bool redis_link_up(struct redis_link *l);
/* Failed commands and connections so far. */
long long redis_link_errors(struct redis_link *l);

#endif
