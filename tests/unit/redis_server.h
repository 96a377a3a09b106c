#ifndef NBCANVAS_TESTS_REDIS_SERVER_H
#define NBCANVAS_TESTS_REDIS_SERVER_H

/*
 * A real redis-server (Debian's, installed by scripts/install-deps.sh) for
 * the tests of what the replicas share through Redis: started on a Unix
 * socket in a temporary folder of the test's own, removed at exit.
 */

#include <sys/types.h>

/* The URL the service would be given (unix:///tmp/.../redis.sock). */
const char *redis_server_url(void);
/* Starts a fresh, empty server and waits for its socket. */
pid_t redis_server_start(void);
/* Kills it (SIGKILL: as a crash) and removes its socket. */
void redis_server_stop(pid_t pid);
/* Runs redis-cli with args against it; its exit status (0: ok). The
 * answer goes to out when out is not NULL. */
int redis_server_cli(const char *args, char *out, size_t len);

#endif
