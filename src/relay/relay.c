/*
 * nbcanvas-relay: the one program of ours in a notebook sandbox besides
 * the kernel. It starts the kernel, joins the kernel's ZeroMQ sockets (ipc
 * transport, inside the container) to the container's stdin and stdout in
 * the framing of include/nbcanvas/relay_proto.h, and does the few chores
 * that must happen inside: placing the request's files, running pip on
 * the job's wheels, signalling the kernel and the code's processes, and
 * reading back the files the code wrote. The Jupyter client is the
 * service's (src/kernel_client.c): the relay never interprets a message,
 * except its own kernel_info handshake, which tells it the kernel is up
 * (started, preloaded, its iopub reaching us) before it says READY.
 *
 *   nbcanvas-relay KERNEL-ARGV...     ("{connection_file}" is replaced)
 *
 * It links libzmq and libcrypto (HMAC for the handshake) only: it starts
 * in a few milliseconds. It is the container's init (pid 1: it reaps the
 * code's orphans) and runs as the sandbox's user, like the code it relays
 * for; it makes itself non-dumpable, so that the code cannot reach its
 * channels through /proc/1/fd: it is the only holder of the container's
 * stdin and stdout, and nothing the code does can write a frame into the
 * service's stream or read the service's.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "nbcanvas/relay_proto.h"

#define WORKDIR "/home/sandbox"
#define JOBDIR_NAME ".nbcanvas"
#define CONNECTION_FILE "/tmp/nbcanvas-kernel.json"
#define IPC_BASE "/tmp/nbk"
#define RUN_OUTPUT_CAP (64 << 10)
#define MAX_INPUTS 4096
#define HANDSHAKE_RETRY_MS 500
#define HANDSHAKE_TIMEOUT_MS 120000

static int proto_in = -1, proto_out = -1;
static pid_t kernel_pid = -1;
static char key[65];
static void *sockets[RELAY_CHANNELS];

/* The files the job placed, as they were: one left as it is is no
 * artifact. */
static struct input {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} inputs[MAX_INPUTS];
static int n_inputs;

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(const char *what)
{
    fprintf(stderr, "nbcanvas-relay: %s: %s\n", what, strerror(errno));
    exit(70);
}

/* ------------------------------------------------------------ the channel */

static int write_all(const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = write(proto_out, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* One frame out, its payload in up to two pieces. */
static void send_frame2(uint8_t type, uint8_t channel, const void *a,
                        size_t alen, const void *b, size_t blen)
{
    uint8_t head[RELAY_HEADER_LEN];

    relay_frame_header(head, type, channel, (uint32_t)(alen + blen));
    if (write_all(head, sizeof(head)) < 0 || write_all(a, alen) < 0 ||
        write_all(b, blen) < 0)
        exit(0); /* the service is gone: so is the sandbox's reason to be */
}

static void send_frame(uint8_t type, const void *payload, size_t len)
{
    send_frame2(type, 0, payload, len, NULL, 0);
}

/* what went wrong, and the name it concerns (or "") */
static void send_failed(const char *what, const char *name)
{
    char text[512];

    snprintf(text, sizeof(text), "%s%s", what, name);
    send_frame(RELAY_FAILED, text, strlen(text));
}

/* A growable byte string for the frames the relay builds. */
struct bytes {
    uint8_t *data;
    size_t len, alloc;
};

static void bytes_add(struct bytes *b, const void *data, size_t len)
{
    if (b->len + len > b->alloc) {
        size_t want = b->alloc ? b->alloc * 2 : 4096;

        while (want < b->len + len)
            want *= 2;
        b->data = realloc(b->data, want);
        if (!b->data)
            die("realloc");
        b->alloc = want;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

static void bytes_u32(struct bytes *b, uint32_t v)
{
    uint8_t p[4];

    relay_put_u32(p, v);
    bytes_add(b, p, 4);
}

/* ------------------------------------------------------------- the kernel */

static void random_hex(char *out, size_t bytes)
{
    unsigned char raw[32];
    size_t i;

    if (bytes > sizeof(raw) || getrandom(raw, bytes, 0) != (ssize_t)bytes)
        die("getrandom");
    for (i = 0; i < bytes; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

static void write_connection_file(void)
{
    FILE *f;
    int fd = open(CONNECTION_FILE, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW,
                  0600);

    if (fd < 0 || !(f = fdopen(fd, "w")))
        die(CONNECTION_FILE);
    fprintf(f,
            "{\"transport\": \"ipc\", \"ip\": \"%s\", \"shell_port\": %d, "
            "\"iopub_port\": %d, \"stdin_port\": %d, \"control_port\": %d, "
            "\"hb_port\": 5, \"key\": \"%s\", \"signature_scheme\": "
            "\"hmac-sha256\", \"kernel_name\": \"\"}\n",
            IPC_BASE, RELAY_SHELL, RELAY_IOPUB, RELAY_STDIN, RELAY_CONTROL,
            key);
    if (fclose(f) != 0)
        die(CONNECTION_FILE);
}

static void start_kernel(char **argv)
{
    int devnull = open("/dev/null", O_RDONLY);

    kernel_pid = fork();
    if (kernel_pid < 0)
        die("fork");
    if (kernel_pid > 0) {
        close(devnull);
        return;
    }
    /* The kernel's raw stdout and stderr go to the container's stderr,
     * which the service reads apart and caps; it never sees our channel. */
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(2, 1) < 0 ||
        chdir(WORKDIR) < 0)
        _exit(71);
    for (char **a = argv; *a; a++)
        if (strcmp(*a, "{connection_file}") == 0)
            *a = CONNECTION_FILE;
    signal(SIGPIPE, SIG_DFL);
    execvp(argv[0], argv);
    fprintf(stderr, "nbcanvas-relay: cannot start %s: %s\n", argv[0],
            strerror(errno));
    _exit(72);
}

static void *connect_socket(void *ctx, int type, int port)
{
    char endpoint[64];
    void *s = zmq_socket(ctx, type);
    int zero = 0;

    if (!s)
        die("zmq_socket");
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    if (type == ZMQ_SUB)
        zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0);
    snprintf(endpoint, sizeof(endpoint), "ipc://%s-%d", IPC_BASE, port);
    if (zmq_connect(s, endpoint) != 0)
        die("zmq_connect");
    return s;
}

/* Reads every part of one message from s into a RELAY_RECV payload. */
static int recv_message(void *s, struct bytes *payload)
{
    uint32_t count = 0;
    int more = 1;

    payload->len = 0;
    bytes_u32(payload, 0); /* the count, set below */
    while (more) {
        zmq_msg_t part;
        size_t more_len = sizeof(more);

        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, s, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&part);
            return count ? -1 : 0;
        }
        if (count < RELAY_MAX_PARTS) {
            bytes_u32(payload, (uint32_t)zmq_msg_size(&part));
            bytes_add(payload, zmq_msg_data(&part), zmq_msg_size(&part));
        }
        count++;
        zmq_msg_close(&part);
        zmq_getsockopt(s, ZMQ_RCVMORE, &more, &more_len);
    }
    if (count > RELAY_MAX_PARTS)
        return 0; /* not a Jupyter message: dropped */
    relay_put_u32(payload->data, count);
    return 1;
}

/* The handshake's kernel_info_request, signed as Jupyter's protocol
 * wants, with msg_id for the id. */
static void send_kernel_info(const char *msg_id)
{
    char header[256];
    const char *parts[4] = {header, "{}", "{}", "{}"};
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    char sig[2 * EVP_MAX_MD_SIZE + 1], signed_text[512];

    snprintf(header, sizeof(header),
             "{\"msg_id\": \"%s\", \"session\": \"nbcanvas-relay\", "
             "\"username\": \"nbcanvas\", \"date\": "
             "\"1970-01-01T00:00:00.000000Z\", \"msg_type\": "
             "\"kernel_info_request\", \"version\": \"5.3\"}",
             msg_id);
    snprintf(signed_text, sizeof(signed_text), "%s{}{}{}", header);
    HMAC(EVP_sha256(), key, (int)strlen(key),
         (const unsigned char *)signed_text, strlen(signed_text), mac,
         &mac_len);
    for (unsigned int i = 0; i < mac_len; i++)
        snprintf(sig + 2 * i, 3, "%02x", mac[i]);
    zmq_send(sockets[RELAY_SHELL], "<IDS|MSG>", 9, ZMQ_SNDMORE);
    zmq_send(sockets[RELAY_SHELL], sig, strlen(sig), ZMQ_SNDMORE);
    for (int i = 0; i < 4; i++)
        zmq_send(sockets[RELAY_SHELL], parts[i], strlen(parts[i]),
                 i < 3 ? ZMQ_SNDMORE : 0);
}

/* True when the message in payload answers msg_id (its parent header,
 * the part after the signature's, names it) and is of kind `word`. */
static int answers(const struct bytes *payload, const char *msg_id,
                   const char *word, const char **content, size_t *clen)
{
    struct relay_part parts[RELAY_MAX_PARTS];
    int n = relay_parts_parse(payload->data, payload->len, parts,
                              RELAY_MAX_PARTS);
    int d;

    for (d = 0; d < n; d++)
        if (parts[d].len == 9 && memcmp(parts[d].data, "<IDS|MSG>", 9) == 0)
            break;
    if (d >= n || n - d < 6)
        return 0;
    if (!memmem(parts[d + 3].data, parts[d + 3].len, msg_id, strlen(msg_id)) ||
        !memmem(parts[d + 2].data, parts[d + 2].len, word, strlen(word)))
        return 0;
    if (content) {
        *content = (const char *)parts[d + 5].data;
        *clen = parts[d + 5].len;
    }
    return 1;
}

/* Waits until the kernel answers kernel_info on shell and its idle for it
 * reaches us on iopub (so nothing published from now on is missed), then
 * says READY with the key and the kernel's info. */
static void handshake(void)
{
    struct bytes payload = {0}, ready = {0};
    long long start = now_ms(), sent = 0;
    char msg_id[40], line[128];
    int got_reply = 0, got_idle = 0, attempt = 0;

    while (!(got_reply && got_idle)) {
        zmq_pollitem_t items[2] = {{sockets[RELAY_SHELL], 0, ZMQ_POLLIN, 0},
                                   {sockets[RELAY_IOPUB], 0, ZMQ_POLLIN, 0}};
        int status;
        pid_t pid;

        /* the kernel's end, and orphans': we are the container's init */
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
            if (pid == kernel_pid) {
                fprintf(stderr, "nbcanvas-relay: the kernel ended at "
                                "start\n");
                exit(73);
            }
        if (now_ms() - start > HANDSHAKE_TIMEOUT_MS) {
            fprintf(stderr, "nbcanvas-relay: the kernel did not answer\n");
            exit(74);
        }
        /* iopub may join after the first reply: ask again until its idle
         * comes through too. */
        if (now_ms() - sent > HANDSHAKE_RETRY_MS) {
            snprintf(msg_id, sizeof(msg_id), "nbcanvas-relay-%d", attempt++);
            send_kernel_info(msg_id);
            sent = now_ms();
            got_reply = got_idle = 0;
        }
        if (zmq_poll(items, 2, 100) <= 0)
            continue;
        while (recv_message(sockets[RELAY_SHELL], &payload) == 1) {
            const char *content;
            size_t clen;

            if (answers(&payload, msg_id, "kernel_info_reply", &content,
                        &clen)) {
                got_reply = 1;
                ready.len = 0;
                bytes_add(&ready, content, clen);
            }
        }
        while (recv_message(sockets[RELAY_IOPUB], &payload) == 1)
            if (answers(&payload, msg_id, "\"status\"", NULL, NULL))
                got_idle = got_idle || memmem(payload.data, payload.len,
                                              "\"idle\"", 6) != NULL;
    }
    snprintf(line, sizeof(line),
             "{\"key\": \"%s\", \"pid\": %d, "
             "\"kernel_info\": ",
             key, (int)kernel_pid);
    payload.len = 0;
    bytes_add(&payload, line, strlen(line));
    bytes_add(&payload, ready.data, ready.len);
    bytes_add(&payload, "}", 1);
    send_frame(RELAY_READY, payload.data, payload.len);
    free(payload.data);
    free(ready.data);
}

/* ----------------------------------------------------------------- chores */

/* A relative path of plain names, none of them "." or "..". */
static int safe_relative(const char *path)
{
    const char *p = path;

    if (!*path || *path == '/')
        return 0;
    while (*p) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);

        if (n == 0 || (n == 1 && p[0] == '.') ||
            (n == 2 && p[0] == '.' && p[1] == '.'))
            return 0;
        p += n + (end ? 1 : 0);
        if (end && !*p)
            return 0;
    }
    return 1;
}

/* Opens the folder that holds path's last name, making the folders on the
 * way, never following a link; returns its fd and sets *name. */
static int open_parent(char *path, const char **name)
{
    int dir = open(WORKDIR, O_RDONLY | O_DIRECTORY);
    char *p = path, *slash;

    while (dir >= 0 && (slash = strchr(p, '/'))) {
        int next;

        *slash = '\0';
        mkdirat(dir, p, 0755);
        next = openat(dir, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        *slash = '/';
        close(dir);
        dir = next;
        p = slash + 1;
    }
    *name = p;
    return dir;
}

static void put_file(const uint8_t *payload, size_t len)
{
    char path[4096];
    const char *name;
    size_t plen;
    int dir, fd;
    struct stat st;

    if (len < 2 ||
        (plen = (size_t)payload[0] << 8 | payload[1]) >= sizeof(path) ||
        len - 2 < plen) {
        send_failed("a malformed file frame", "");
        return;
    }
    memcpy(path, payload + 2, plen);
    path[plen] = '\0';
    if (!safe_relative(path) || strlen(path) != plen) {
        send_failed("not a path inside the working folder: ", path);
        return;
    }
    dir = open_parent(path, &name);
    /* Whatever was there (a link, a pipe a session's code left) is
     * replaced, never followed. */
    if (dir >= 0)
        unlinkat(dir, name, 0);
    fd = dir < 0 ? -1
                 : openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW,
                          0644);
    if (dir >= 0)
        close(dir);
    if (fd < 0) {
        send_failed("cannot write ", path);
        return;
    }
    for (const uint8_t *p = payload + 2 + plen, *end = payload + len;
         p < end;) {
        ssize_t n = write(fd, p, (size_t)(end - p));

        if (n <= 0) {
            close(fd);
            send_failed("cannot write ", path);
            return;
        }
        p += n;
    }
    if (fstat(fd, &st) == 0 && n_inputs < MAX_INPUTS)
        inputs[n_inputs++] = (struct input){st.st_dev, st.st_ino, st.st_size,
                                            st.st_mtim};
    close(fd);
    send_frame(RELAY_FILE, "\1", 1);
}

/* Runs argv in the working folder (stdin empty, output kept up to a cap),
 * up to timeout_s; answers RUN_DONE with the exit status (0xffffffff when
 * it was killed at the timeout) and the end of the output. */
static void run_chore(const uint8_t *payload, size_t len)
{
    char *args, *argv[256];
    int argc = 0, out[2], status = 0;
    uint32_t timeout_s;
    long long deadline;
    struct bytes output = {0};
    uint8_t code[4];
    pid_t pid;

    if (len < 5 || payload[len - 1] != '\0') {
        send_failed("a malformed run frame", "");
        return;
    }
    timeout_s = relay_get_u32(payload);
    args = (char *)payload + 4;
    for (char *a = args; a < (char *)payload + len && argc < 255;
         a += strlen(a) + 1)
        argv[argc++] = a;
    argv[argc] = NULL;
    if (pipe2(out, O_CLOEXEC) < 0 || (pid = fork()) < 0) {
        send_failed("cannot start the command", "");
        return;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);

        if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(out[1], 1) < 0 ||
            dup2(out[1], 2) < 0 || chdir(WORKDIR) < 0)
            _exit(71);
        signal(SIGPIPE, SIG_DFL);
        execvp(argv[0], argv);
        _exit(72);
    }
    close(out[1]);
    deadline = now_ms() + (long long)timeout_s * 1000;
    for (;;) {
        struct pollfd p = {out[0], POLLIN, 0};
        char chunk[4096];
        ssize_t n;
        long long left = deadline - now_ms();

        if (left <= 0) {
            kill(pid, SIGKILL);
            status = -1;
            break;
        }
        if (poll(&p, 1, (int)(left < 1000 ? left : 1000)) <= 0)
            continue;
        n = read(out[0], chunk, sizeof(chunk));
        if (n <= 0)
            break;
        bytes_add(&output, chunk, (size_t)n);
        if (output.len > RUN_OUTPUT_CAP) { /* keep the end: errors are there */
            memmove(output.data, output.data + output.len - RUN_OUTPUT_CAP / 2,
                    RUN_OUTPUT_CAP / 2);
            output.len = RUN_OUTPUT_CAP / 2;
        }
    }
    close(out[0]);
    if (status == -1)
        waitpid(pid, NULL, 0);
    else if (waitpid(pid, &status, 0) < 0)
        status = -1;
    relay_put_u32(code, status == -1 ? 0xffffffffu : (uint32_t)status);
    send_frame2(RELAY_RUN_DONE, 0, code, 4, output.data, output.len);
    free(output.data);
}

static int unchanged_input(const struct stat *st)
{
    for (int i = 0; i < n_inputs; i++)
        if (inputs[i].dev == st->st_dev && inputs[i].ino == st->st_ino &&
            inputs[i].size == st->st_size &&
            inputs[i].mtime.tv_sec == st->st_mtim.tv_sec &&
            inputs[i].mtime.tv_nsec == st->st_mtim.tv_nsec)
            return 1;
    return 0;
}

/* The bytes of a regular file (never a link, a pipe or a device), when it
 * has at most limit of them. */
static int read_regular(int dir, const char *name, size_t limit,
                        struct bytes *into, struct stat *st)
{
    int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    size_t at;

    if (fd < 0)
        return -1;
    if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode) ||
        (unsigned long long)st->st_size > limit) {
        close(fd);
        return -1;
    }
    at = into->len;
    for (;;) {
        char chunk[65536];
        ssize_t n = read(fd, chunk, sizeof(chunk));

        if (n <= 0)
            break;
        if (into->len - at + (size_t)n > limit) {
            into->len = at;
            close(fd);
            return -1;
        }
        bytes_add(into, chunk, (size_t)n);
    }
    close(fd);
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds the files under dir (relative name prefix) to out: each folder's
 * files in name order, then its folders, as os.walk goes. */
static void collect(int dir, const char *prefix, unsigned long long *left,
                    struct bytes *out, int depth)
{
    DIR *d = fdopendir(dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;

    if (!d) {
        close(dir);
        return;
    }
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
            (depth == 0 && !strcmp(e->d_name, JOBDIR_NAME)))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            names = realloc(names, cap * sizeof(*names));
            if (!names)
                die("realloc");
        }
        names[n++] = strdup(e->d_name);
    }
    qsort(names, n, sizeof(*names), by_name);
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < n; i++) {
            char path[4096];
            struct stat st;

            snprintf(path, sizeof(path), "%s%s", prefix, names[i]);
            if (pass == 1) {
                int sub = openat(dirfd(d), names[i],
                                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW);

                if (sub >= 0 && depth < 64) {
                    strncat(path, "/", sizeof(path) - strlen(path) - 1);
                    collect(sub, path, left, out, depth + 1);
                } else if (sub >= 0) {
                    close(sub);
                }
                continue;
            }
            size_t at = out->len, plen = strlen(path);
            uint8_t head[2] = {(uint8_t)(plen >> 8), (uint8_t)plen};
            uint8_t size[4];

            if (plen > 0xffff)
                continue;
            bytes_add(out, head, 2);
            bytes_add(out, path, plen);
            bytes_u32(out, 0);
            if (read_regular(dirfd(d), names[i], (size_t)*left, out, &st) <
                    0 ||
                unchanged_input(&st)) {
                out->len = at;
                continue;
            }
            relay_put_u32(size, (uint32_t)(out->len - at - 2 - plen - 4));
            memcpy(out->data + at + 2 + plen, size, 4);
            *left -= out->len - at - 2 - plen - 4;
        }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    closedir(d);
}

static unsigned long long get_u64(const uint8_t *p)
{
    return (unsigned long long)relay_get_u32(p) << 32 | relay_get_u32(p + 4);
}

static void collect_files(const uint8_t *payload, size_t len)
{
    struct bytes out = {0};
    unsigned long long left;
    int dir;

    if (len != 8) {
        send_failed("a malformed collect frame", "");
        return;
    }
    left = get_u64(payload);
    dir = open(WORKDIR, O_RDONLY | O_DIRECTORY);
    if (dir >= 0)
        collect(dir, "", &left, &out, 0);
    send_frame(RELAY_FILES, out.data, out.len);
    free(out.data);
}

/* One file the session's code wrote: links are followed only as far as
 * they stay inside the working folder, and the job's own folder is not
 * readable this way. */
static void get_file(const uint8_t *payload, size_t len)
{
    char path[4096], real[PATH_MAX];
    struct bytes out = {0};
    struct stat st;
    size_t plen = len - 8;

    bytes_add(&out, "\0", 1);
    if (len < 9 || plen >= sizeof(path) - sizeof(WORKDIR) - 1) {
        send_frame(RELAY_FILE, out.data, out.len);
        free(out.data);
        return;
    }
    memcpy(path, WORKDIR "/", sizeof(WORKDIR));
    memcpy(path + sizeof(WORKDIR), payload + 8, plen);
    path[sizeof(WORKDIR) + plen] = '\0';
    if (memchr(payload + 8, '\0', plen) == NULL &&
        safe_relative(path + sizeof(WORKDIR)) && realpath(path, real) &&
        strncmp(real, WORKDIR "/", sizeof(WORKDIR)) == 0 &&
        strncmp(real, WORKDIR "/" JOBDIR_NAME "/",
                sizeof(WORKDIR) + sizeof(JOBDIR_NAME)) != 0 &&
        read_regular(AT_FDCWD, real, (size_t)get_u64(payload), &out, &st) == 0)
        out.data[0] = 1;
    else
        out.len = 1;
    send_frame(RELAY_FILE, out.data, out.len);
    free(out.data);
}

static void do_signal(const uint8_t *payload, size_t len)
{
    static const int for_all[] = {[RELAY_SIG_STOP_ALL] = SIGKILL,
                                  [RELAY_SIG_PAUSE_ALL] = SIGSTOP,
                                  [RELAY_SIG_RESUME_ALL] = SIGCONT};

    if (len != 1)
        return;
    if (payload[0] == RELAY_SIG_INTERRUPT && kernel_pid > 0)
        kill(kernel_pid, SIGINT);
    /* kill(-1) reaches every process of our uid but init and ourselves:
     * the kernel and whatever the code started, however it hid. */
    else if (payload[0] >= RELAY_SIG_STOP_ALL &&
             payload[0] <= RELAY_SIG_RESUME_ALL)
        kill(-1, for_all[payload[0]]);
}

static void send_message(uint8_t channel, const uint8_t *payload, size_t len)
{
    struct relay_part parts[RELAY_MAX_PARTS];
    int n = relay_parts_parse(payload, len, parts, RELAY_MAX_PARTS);

    if (n <= 0 || channel == RELAY_IOPUB || channel == 0 ||
        channel >= RELAY_CHANNELS) {
        send_failed("a malformed message frame", "");
        return;
    }
    for (int i = 0; i < n; i++)
        zmq_send(sockets[channel], parts[i].data, parts[i].len,
                 i < n - 1 ? ZMQ_SNDMORE : 0);
}

static void dispatch(const struct relay_frame *f)
{
    switch (f->type) {
    case RELAY_SEND:
        send_message(f->channel, f->payload, f->len);
        break;
    case RELAY_SIGNAL:
        do_signal(f->payload, f->len);
        break;
    case RELAY_PUT_FILE:
        put_file(f->payload, f->len);
        break;
    case RELAY_RUN:
        run_chore(f->payload, f->len);
        break;
    case RELAY_COLLECT:
        collect_files(f->payload, f->len);
        break;
    case RELAY_GET_FILE:
        get_file(f->payload, f->len);
        break;
    default:
        send_failed("an unknown frame type", "");
    }
}

/* ------------------------------------------------------------------ main */

/* Reads what stdin has; hands on each complete frame. */
static void read_channel(struct bytes *in)
{
    uint8_t chunk[65536];
    ssize_t n = read(proto_in, chunk, sizeof(chunk));
    size_t at = 0, used;
    struct relay_frame f;
    int rc;

    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
        kill(-1, SIGKILL); /* the service let go: end everything */
        exit(0);
    }
    if (n < 0)
        return;
    bytes_add(in, chunk, (size_t)n);
    while ((rc = relay_frame_parse(in->data + at, in->len - at, &f, &used)) ==
           1) {
        dispatch(&f);
        at += used;
    }
    if (rc < 0) {
        fprintf(stderr, "nbcanvas-relay: a malformed frame on stdin\n");
        exit(75);
    }
    memmove(in->data, in->data + at, in->len - at);
    in->len -= at;
}

/* Reaps every child that ended: the relay is the container's init, so
 * the code's orphans are its children too. The kernel's end is told. */
static void reap(void)
{
    int status;
    pid_t pid;
    uint8_t code[4];

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        if (pid == kernel_pid) {
            relay_put_u32(code, (uint32_t)status);
            send_frame(RELAY_EXIT, code, 4);
            kernel_pid = -1;
        }
}

int main(int argc, char **argv)
{
    struct bytes in = {0}, payload = {0};
    void *ctx;

    if (argc < 2) {
        fprintf(stderr, "usage: nbcanvas-relay KERNEL-ARGV...\n");
        return 64;
    }
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        die("prctl");
    /* Our channels move off fds 0 and 1 (kept from everything we start):
     * what the kernel or the code writes to its own stdout is not ours. */
    proto_in = fcntl(0, F_DUPFD_CLOEXEC, 3);
    proto_out = fcntl(1, F_DUPFD_CLOEXEC, 3);
    if (proto_in < 0 || proto_out < 0 || dup2(2, 1) < 0)
        die("dup");
    {
        int devnull = open("/dev/null", O_RDONLY);

        if (devnull < 0 || dup2(devnull, 0) < 0)
            die("/dev/null");
        close(devnull);
    }
    signal(SIGPIPE, SIG_IGN);
    random_hex(key, 32);
    write_connection_file();
    start_kernel(argv + 1);
    ctx = zmq_ctx_new();
    sockets[RELAY_SHELL] = connect_socket(ctx, ZMQ_DEALER, RELAY_SHELL);
    sockets[RELAY_CONTROL] = connect_socket(ctx, ZMQ_DEALER, RELAY_CONTROL);
    sockets[RELAY_STDIN] = connect_socket(ctx, ZMQ_DEALER, RELAY_STDIN);
    sockets[RELAY_IOPUB] = connect_socket(ctx, ZMQ_SUB, RELAY_IOPUB);
    handshake();
    for (;;) {
        zmq_pollitem_t items[RELAY_CHANNELS] = {
            {NULL, proto_in, ZMQ_POLLIN, 0},
            {sockets[RELAY_SHELL], 0, ZMQ_POLLIN, 0},
            {sockets[RELAY_CONTROL], 0, ZMQ_POLLIN, 0},
            {sockets[RELAY_STDIN], 0, ZMQ_POLLIN, 0},
            {sockets[RELAY_IOPUB], 0, ZMQ_POLLIN, 0}};

        reap();
        if (zmq_poll(items, RELAY_CHANNELS, 200) <= 0)
            continue;
        if (items[0].revents & (ZMQ_POLLIN | ZMQ_POLLERR))
            read_channel(&in);
        for (int ch = RELAY_SHELL; ch < RELAY_CHANNELS; ch++)
            while (items[ch].revents & ZMQ_POLLIN &&
                   recv_message(sockets[ch], &payload) == 1)
                send_frame2(RELAY_RECV, (uint8_t)ch, payload.data, payload.len,
                            NULL, 0);
    }
}
