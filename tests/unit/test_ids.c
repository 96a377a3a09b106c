/*
 * Ids that find their replica (ids.c): the form the front routes on, one
 * Jupyter's clients take for a kernel id, and the 404 that says where an
 * id's holder went.
 */
#include "../check.h"
#include "nbcanvas/ids.h"

#include <regex.h>
#include <string.h>

/* jupyter_server's kernel id pattern, anchored as tornado anchors it */
static bool jupyter_takes(const char *id)
{
    regex_t re;
    bool ok;

    CHECK(regcomp(&re,
                  "^[[:alnum:]_]+-[[:alnum:]_]+-[[:alnum:]_]+-"
                  "[[:alnum:]_]+-[[:alnum:]_]+$",
                  REG_EXTENDED | REG_NOSUB) == 0);
    ok = regexec(&re, id, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

TEST(ids__routes_are_short_lowercase_words)
{
    CHECK(ids_route_valid(""));
    CHECK(ids_route_valid("r1"));
    CHECK(ids_route_valid("0123456789abcdef"));
    CHECK(!ids_route_valid("0123456789abcdefg"));
    CHECK(!ids_route_valid("R1"));
    CHECK(!ids_route_valid("r_1"));
    CHECK(!ids_route_valid("r-1"));
    CHECK(!ids_route_valid("r 1"));
}

TEST(ids__without_a_route_an_id_is_a_uuid)
{
    char id[ID_MAX];

    ids_init("");
    ids_new(id);
    CHECK(strlen(id) == 36 && jupyter_takes(id));
    ids_for_request(id, "5f3e9c1d-0c4b-4a57-9d1e-6b7f2a3c4d5e");
    CHECK_STREQ(id, "5f3e9c1d-0c4b-4a57-9d1e-6b7f2a3c4d5e");
}

TEST(ids__with_a_route_an_id_starts_with_it_and_jupyter_takes_it)
{
    char a[ID_MAX], b[ID_MAX];

    ids_init("r2");
    ids_new(a);
    ids_new(b);
    CHECK(strncmp(a, "r2_", 3) == 0 && jupyter_takes(a));
    CHECK(strcmp(a, b) != 0);
    /* the same run tag: the part up to the second '_' */
    CHECK(strncmp(a, b, 10) == 0 && a[9] == '_');
    ids_for_request(a, "5f3e9c1d-0c4b-4a57-9d1e-6b7f2a3c4d5e");
    CHECK(strncmp(a, b, 10) == 0);
    CHECK_STREQ(a + 10, "5f3e9c1d-0c4b-4a57-9d1e-6b7f2a3c4d5e");
}

TEST(ids__a_miss_says_whose_the_id_was)
{
    char mine[ID_MAX], earlier[ID_MAX];
    struct err err = ERR_INIT;

    ids_init("r1");
    ids_new(earlier);
    ids_init("r1"); /* a restart: a new run tag */
    ids_new(mine);

    CHECK(ids_not_found(&err, "session", "r2_abcdef_x-y-z-w-v", "gone") ==
          ERR_NOT_FOUND);
    CHECK(strstr(err.msg, "replica r2 made it") != NULL);

    CHECK(ids_not_found(&err, "kernel", earlier, "gone") == ERR_NOT_FOUND);
    CHECK(strstr(err.msg, "restarted") != NULL);

    CHECK(ids_not_found(&err, "result", mine, "kept 300 s") == ERR_NOT_FOUND);
    CHECK_STREQ(err.msg, "no such result (kept 300 s)");

    /* a plain UUID, or anything else, tells nothing */
    CHECK(ids_not_found(&err, "session",
                        "5f3e9c1d-0c4b-4a57-9d1e-6b7f2a3c4d5e",
                        "it ended") == ERR_NOT_FOUND);
    CHECK_STREQ(err.msg, "no such session (it ended)");
    CHECK(ids_not_found(&err, "session", "_x_", "it ended") == ERR_NOT_FOUND);
    CHECK_STREQ(err.msg, "no such session (it ended)");
}
