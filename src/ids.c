/*
 * Ids that find their replica (ids.h). The route and run tag are set once
 * at start and only read after, so no lock guards them.
 */
#include "nbcanvas/ids.h"

#include <stdio.h>
#include <string.h>

#include "nbcanvas/util.h"

#define RUN_TAG_LEN 6

static char route[ID_ROUTE_MAX + 1];
static char run_tag[RUN_TAG_LEN + 1];

bool ids_route_valid(const char *r)
{
    size_t n = strlen(r);

    if (n > ID_ROUTE_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((r[i] >= 'a' && r[i] <= 'z') || (r[i] >= '0' && r[i] <= '9')))
            return false;
    return true;
}

void ids_init(const char *r)
{
    char uuid[37];

    snprintf(route, sizeof(route), "%s", ids_route_valid(r) ? r : "");
    util_uuid(uuid); /* its first characters are random hex */
    snprintf(run_tag, sizeof(run_tag), "%.*s", RUN_TAG_LEN, uuid);
}

void ids_for_request(char out[ID_MAX], const char *request_id)
{
    if (route[0])
        snprintf(out, ID_MAX, "%s_%s_%.36s", route, run_tag, request_id);
    else
        snprintf(out, ID_MAX, "%.36s", request_id);
}

void ids_new(char out[ID_MAX])
{
    char uuid[37];

    util_uuid(uuid);
    ids_for_request(out, uuid);
}

/* The route and run tag an id carries, or false when it carries none. */
static bool holder_of(const char *id, char who[ID_ROUTE_MAX + 1],
                      char run[RUN_TAG_LEN + 1])
{
    const char *a = strchr(id, '_'), *b = a ? strchr(a + 1, '_') : NULL;

    if (!a || !b || a == id || (size_t)(a - id) > ID_ROUTE_MAX ||
        (size_t)(b - a - 1) != RUN_TAG_LEN)
        return false;
    snprintf(who, ID_ROUTE_MAX + 1, "%.*s", (int)(a - id), id);
    snprintf(run, RUN_TAG_LEN + 1, "%.*s", RUN_TAG_LEN, a + 1);
    return ids_route_valid(who);
}

int ids_not_found(struct err *err, const char *what, const char *id,
                  const char *otherwise)
{
    char who[ID_ROUTE_MAX + 1], run[RUN_TAG_LEN + 1];

    if (!holder_of(id, who, run))
        return err_set(err, ERR_NOT_FOUND, "no such %s (%s)", what, otherwise);
    if (strcmp(who, route) != 0)
        return err_set(err, ERR_NOT_FOUND,
                       "no such %s here: replica %s made it, and that "
                       "replica is gone (or the front did not send this "
                       "request to it)",
                       what, who);
    if (strcmp(run, run_tag) != 0)
        return err_set(err, ERR_NOT_FOUND,
                       "no such %s: this replica restarted since it made "
                       "it, and it ended then",
                       what);
    return err_set(err, ERR_NOT_FOUND, "no such %s (%s)", what, otherwise);
}
