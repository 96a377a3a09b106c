/*
 * A redis-server for the tests (redis_server.h). Its folder is made at
 * load and removed at exit, so a test binary never leaves one behind.
 */
#include "redis_server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char folder[] = "/tmp/nbcanvas-redis-XXXXXX";
static char socket_path[128], url[160];

static void remove_folder(void)
{
    rmdir(folder);
}

__attribute__((constructor)) static void make_folder(void)
{
    if (!mkdtemp(folder))
        abort();
    snprintf(socket_path, sizeof(socket_path), "%s/redis.sock", folder);
    snprintf(url, sizeof(url), "unix://%s", socket_path);
    atexit(remove_folder);
}

const char *redis_server_url(void)
{
    return url;
}

pid_t redis_server_start(void)
{
    pid_t pid = fork();

    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout))
            _exit(127);
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket",
               socket_path, "--save", "", "--appendonly", "no", "--dir",
               folder, "--loglevel", "warning", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100 && access(socket_path, F_OK) != 0; i++)
        usleep(20000);
    return pid;
}

void redis_server_stop(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    unlink(socket_path);
}

int redis_server_cli(const char *args, char *out, size_t len)
{
    char cmd[512];
    FILE *p;
    size_t n = 0;

    snprintf(cmd, sizeof(cmd), "redis-cli -s %s %s", socket_path, args);
    if (!(p = popen(cmd, "r")))
        return -1;
    if (out && len) {
        n = fread(out, 1, len - 1, p);
        out[n] = '\0';
    } else {
        char sink[256];

        while (fread(sink, 1, sizeof(sink), p) > 0)
            ;
    }
    return pclose(p);
}
