/*
 * A live kernel's channels shared by its clients (kernel_channels.h).
 *
 * Threads: the pump owns the relay link; clients' threads only queue
 * (the outbox, under the lock) and wake the pump through an eventfd.
 * Deliveries run on the pump's thread with the lock held, so a client
 * that detaches is never called again once detach returns.
 */
#include "nbcanvas/kernel_channels.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "nbcanvas/buf.h"
#include "nbcanvas/jmsg.h"
#include "nbcanvas/list.h"
#include "nbcanvas/util.h"

/* How long the pump waits for the kernel before looking at its outbox
 * and stop flag again (an eventfd wakes it sooner). */
#define PUMP_SLICE_MS 1000
/* A frame for the relay must be sent within this. */
#define SEND_DEADLINE_MS 10000

struct outgoing {
    struct list_node link;
    uint8_t type, channel;
    size_t len;
    unsigned char data[];
};

struct channels_client {
    struct list_node link;
    channels_deliver_fn deliver;
    void *ctx;
    char session[80]; /* the session its messages named, "" before one */
};

struct kernel_channels {
    pthread_mutex_t lock;
    long refs;
    long max_clients;
    size_t max_queued;
    struct list_node clients;
    long nclients;
    struct list_node outbox; /* newest first */
    size_t queued;
    int wake; /* eventfd: the outbox has something, or stop */
    pthread_t pump;
    bool pumping; /* the pump thread exists (its starter's and stopper's) */
    bool running; /* clients' messages are taken (lock) */
    atomic_bool stop;
    struct relay_link *link; /* borrowed while running */
    char key[128];           /* the running kernel's (lock) */
    long generation;         /* a new kernel each start (lock) */
    struct err err;          /* the pump's */
    bool gone;
    char state[16];
    long long last_activity_ms;   /* wall clock */
    long long last_activity_mono; /* util_now_ms */
    long dropped; /* kernel messages that failed their checks */
};

static const char *const CHANNEL_NAMES[RELAY_CHANNELS] = {
    [RELAY_SHELL] = "shell",
    [RELAY_CONTROL] = "control",
    [RELAY_STDIN] = "stdin",
    [RELAY_IOPUB] = "iopub",
};

static long long wall_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Something happened on the channels (lock held, or not yet shared). */
static void touch(struct kernel_channels *ch)
{
    ch->last_activity_ms = wall_ms();
    ch->last_activity_mono = util_now_ms();
}

static void wake(struct kernel_channels *ch)
{
    uint64_t one = 1;

    if (write(ch->wake, &one, sizeof(one)) < 0)
        perror("nbcanvas: channels eventfd");
}

struct kernel_channels *kernel_channels_new(long max_clients,
                                            size_t max_queued_bytes)
{
    struct kernel_channels *ch = xcalloc(1, sizeof(*ch));

    pthread_mutex_init(&ch->lock, NULL);
    ch->refs = 1;
    ch->max_clients = max_clients;
    ch->max_queued = max_queued_bytes;
    list_init(&ch->clients);
    list_init(&ch->outbox);
    ch->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (ch->wake < 0) {
        perror("nbcanvas: channels eventfd");
        abort();
    }
    snprintf(ch->state, sizeof(ch->state), "starting");
    touch(ch);
    ch->err = (struct err)ERR_INIT;
    return ch;
}

void kernel_channels_ref(struct kernel_channels *ch)
{
    pthread_mutex_lock(&ch->lock);
    ch->refs++;
    pthread_mutex_unlock(&ch->lock);
}

static void drop_outbox(struct kernel_channels *ch)
{
    while (!list_is_empty(&ch->outbox)) {
        struct outgoing *o = list_entry(ch->outbox.next, struct outgoing,
                                        link);

        list_remove(&o->link);
        free(o);
    }
    ch->queued = 0;
}

void kernel_channels_unref(struct kernel_channels *ch)
{
    long left;

    if (!ch)
        return;
    pthread_mutex_lock(&ch->lock);
    left = --ch->refs;
    pthread_mutex_unlock(&ch->lock);
    if (left > 0)
        return;
    drop_outbox(ch);
    close(ch->wake);
    pthread_mutex_destroy(&ch->lock);
    free(ch);
}

/* --- jupyter_server's binary layout ---------------------------------- */

int channels_parse_binary(const unsigned char *data, size_t len,
                          struct relay_part *json_part,
                          struct relay_part *buffers, size_t max,
                          size_t *nbuffers)
{
    uint32_t n, at, next;

    if (len < 8)
        return -1;
    n = relay_get_u32(data);
    if (n < 1 || n - 1 > max || (size_t)4 * (n + 1) > len)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        at = relay_get_u32(data + 4 + 4 * i);
        next = i + 1 < n ? relay_get_u32(data + 8 + 4 * i) : (uint32_t)len;
        if (at < 4 * (n + 1) || next < at || next > len)
            return -1;
        if (i == 0)
            *json_part = (struct relay_part){data + at, next - at};
        else
            buffers[i - 1] = (struct relay_part){data + at, next - at};
    }
    *nbuffers = n - 1;
    return 0;
}

/* The binary frame of text and the buffers into out. */
static void build_binary(struct buf *out, const char *text, size_t text_len,
                         const struct relay_part *buffers, size_t nbuffers)
{
    uint32_t n = (uint32_t)(nbuffers + 1);
    uint8_t word[4];
    size_t offset = (size_t)4 * (n + 1);

    relay_put_u32(word, n);
    buf_append(out, word, 4);
    relay_put_u32(word, (uint32_t)offset);
    buf_append(out, word, 4);
    offset += text_len;
    for (size_t i = 0; i + 1 < n; i++) {
        relay_put_u32(word, (uint32_t)offset);
        buf_append(out, word, 4);
        offset += buffers[i].len;
    }
    buf_append(out, text, text_len);
    for (size_t i = 0; i < nbuffers; i++)
        buf_append(out, buffers[i].data, buffers[i].len);
}

/* --- from the kernel ------------------------------------------------ */

static bool known_state(const char *s)
{
    static const char *const states[] = {"starting", "idle", "busy",
                                         "restarting", "dead"};

    for (size_t i = 0; s && i < sizeof(states) / sizeof(*states); i++)
        if (strcmp(s, states[i]) == 0)
            return true;
    return false;
}

/* Hands text (or its binary frame) to the clients it is for (lock
 * held): every client for IOPub; for a reply, those whose session asked,
 * or every client when none did. */
static void deliver(struct kernel_channels *ch, uint8_t channel,
                    const char *session, const void *data, size_t len,
                    bool binary)
{
    struct list_node *n;
    bool any = false;

    if (channel != RELAY_IOPUB && session[0])
        list_for_each(n, &ch->clients) {
            struct channels_client *c = list_entry(n, struct channels_client,
                                                   link);

            if (strcmp(c->session, session) == 0) {
                c->deliver(c->ctx, data, len, binary);
                any = true;
            }
        }
    if (any)
        return;
    list_for_each(n, &ch->clients) {
        struct channels_client *c = list_entry(n, struct channels_client,
                                               link);

        c->deliver(c->ctx, data, len, binary);
    }
}

static void from_kernel(struct kernel_channels *ch,
                        const struct relay_frame *f)
{
    struct err err = ERR_INIT;
    struct jmsg m;
    json_t *msg;
    const char *session, *state, *msg_id;
    char *text;

    if (f->channel < RELAY_SHELL || f->channel >= RELAY_CHANNELS ||
        jmsg_parse(&m, ch->key, f->payload, f->len, &err) < 0) {
        pthread_mutex_lock(&ch->lock);
        ch->dropped++;
        pthread_mutex_unlock(&ch->lock);
        return;
    }
    msg_id = json_string_value(json_object_get(m.header, "msg_id"));
    msg = json_pack("{s:s, s:O, s:O, s:O, s:O, s:s, s:s, s:[]}", "channel",
                    CHANNEL_NAMES[f->channel], "header", m.header,
                    "parent_header", m.parent_header, "metadata", m.metadata,
                    "content", m.content, "msg_id", msg_id ? msg_id : "",
                    "msg_type", m.msg_type, "buffers");
    session = json_string_value(json_object_get(m.parent_header, "session"));
    state = json_string_value(json_object_get(m.content, "execution_state"));
    if (m.nbuffers) /* the binary frame's JSON carries no buffers */
        json_object_del(msg, "buffers");
    text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    pthread_mutex_lock(&ch->lock);
    touch(ch);
    if (f->channel == RELAY_IOPUB && strcmp(m.msg_type, "status") == 0 &&
        known_state(state))
        snprintf(ch->state, sizeof(ch->state), "%s", state);
    if (text && m.nbuffers == 0) {
        deliver(ch, f->channel, session ? session : "", text, strlen(text),
                false);
    } else if (text) {
        struct buf frame = BUF_INIT(RELAY_MAX_FRAME + 4096);

        build_binary(&frame, text, strlen(text), m.buffers, m.nbuffers);
        if (!frame.overflow)
            deliver(ch, f->channel, session ? session : "", frame.data,
                    frame.len, true);
        buf_release(&frame);
    }
    pthread_mutex_unlock(&ch->lock);
    free(text);
    json_decref(msg);
    jmsg_release(&m);
}

/* The kernel is gone (lock held): a last status for every client, then
 * the word to close. */
static void tell_dead(struct kernel_channels *ch)
{
    char id[JMSG_ID_LEN + 1], date[40];
    json_t *msg;
    char *text;

    jmsg_new_id(id);
    jmsg_now(date);
    msg = json_pack("{s:s, s:{s:s, s:s, s:s, s:s, s:s, s:s}, s:{}, s:{}, "
                    "s:{s:s}, s:[]}",
                    "channel", "iopub", "header", "msg_id", id, "msg_type",
                    "status", "username", "nbcanvas", "session", id, "date",
                    date, "version", "5.3", "parent_header", "metadata",
                    "content", "execution_state", "dead", "buffers");
    text = json_dumps(msg, JSON_COMPACT);
    if (text)
        deliver(ch, RELAY_IOPUB, "", text, strlen(text), false);
    deliver(ch, RELAY_IOPUB, "", NULL, 0, false);
    free(text);
    json_decref(msg);
}

/* --- to the kernel -------------------------------------------------- */

/* Sends what clients queued, oldest first, without the lock. */
static int send_outbox(struct kernel_channels *ch)
{
    struct list_node batch;
    int rc = 0;

    list_init(&batch);
    pthread_mutex_lock(&ch->lock);
    while (!list_is_empty(&ch->outbox)) {
        struct list_node *oldest = ch->outbox.prev;

        list_remove(oldest);
        list_push_front(&batch, oldest); /* batch: newest first too */
    }
    ch->queued = 0;
    pthread_mutex_unlock(&ch->lock);
    while (!list_is_empty(&batch)) {
        struct outgoing *o = list_entry(batch.prev, struct outgoing, link);

        list_remove(&o->link);
        if (rc == 0)
            rc = relay_link_send(ch->link, o->type, o->channel, o->data,
                                 o->len, util_now_ms() + SEND_DEADLINE_MS);
        free(o);
    }
    return rc;
}

/* generation: the kernel the message was made for (signed with its
 * key), or -1 for any. */
static int queue(struct kernel_channels *ch, uint8_t type, uint8_t channel,
                 const void *data, size_t len, long generation,
                 struct err *err)
{
    struct outgoing *o;

    pthread_mutex_lock(&ch->lock);
    if (ch->gone) {
        pthread_mutex_unlock(&ch->lock);
        return err_set(err, ERR_NOT_FOUND, "the kernel has ended");
    }
    if (!ch->running || (generation >= 0 && generation != ch->generation)) {
        pthread_mutex_unlock(&ch->lock);
        return err_set(err, ERR_BUSY, "the kernel is restarting");
    }
    if (ch->queued + len > ch->max_queued) {
        pthread_mutex_unlock(&ch->lock);
        return err_set(err, ERR_BUSY,
                       "the kernel's queue is full (%zu bytes wait)",
                       ch->queued);
    }
    o = xmalloc(sizeof(*o) + len);
    o->type = type;
    o->channel = channel;
    o->len = len;
    memcpy(o->data, data, len);
    list_push_front(&ch->outbox, &o->link);
    ch->queued += len;
    touch(ch);
    pthread_mutex_unlock(&ch->lock);
    wake(ch);
    return 0;
}

static void *pump(void *arg)
{
    struct kernel_channels *ch = arg;
    struct relay_frame f;
    uint64_t drained;
    bool dead = false;

    relay_link_bind(ch->link, &ch->err, &ch->stop, NULL);
    relay_link_set_wake(ch->link, ch->wake);
    while (!atomic_load(&ch->stop)) {
        int rc = send_outbox(ch);

        if (rc < 0) { /* the stream may be cut mid-frame: the link is lost */
            dead = !atomic_load(&ch->stop);
            break;
        }
        rc = relay_link_next(ch->link, &f, util_now_ms() + PUMP_SLICE_MS);
        if (rc == RELAY_LINK_WOKEN) {
            if (read(ch->wake, &drained, sizeof(drained)) < 0)
                drained = 0; /* raced with another read: fine */
            continue;
        }
        if (rc == ERR_TIMEOUT)
            continue;
        if (rc == ERR_OUTPUT) { /* raw stderr past its cap: count anew */
            relay_link_bind(ch->link, &ch->err, &ch->stop, NULL);
            continue;
        }
        if (rc == 0 && f.type == RELAY_RECV) {
            from_kernel(ch, &f);
            continue;
        }
        if (rc == 0 && f.type != RELAY_EXIT)
            continue; /* a chore's answer nobody asked for */
        dead = !atomic_load(&ch->stop);
        break;
    }
    relay_link_set_wake(ch->link, -1);
    if (dead) {
        pthread_mutex_lock(&ch->lock);
        ch->gone = true;
        snprintf(ch->state, sizeof(ch->state), "dead");
        tell_dead(ch);
        pthread_mutex_unlock(&ch->lock);
    }
    return NULL;
}

int kernel_channels_start(struct kernel_channels *ch, struct relay_link *link,
                          const char *key, struct err *err)
{
    if (ch->pumping)
        return err_set(err, ERR_INTERNAL, "the channels already run");
    ch->link = link;
    atomic_store(&ch->stop, false);
    pthread_mutex_lock(&ch->lock);
    snprintf(ch->key, sizeof(ch->key), "%s", key);
    ch->generation++;
    ch->gone = false;
    ch->running = true;
    snprintf(ch->state, sizeof(ch->state), "idle");
    touch(ch);
    pthread_mutex_unlock(&ch->lock);
    if (pthread_create(&ch->pump, NULL, pump, ch) != 0) {
        pthread_mutex_lock(&ch->lock);
        ch->running = false;
        pthread_mutex_unlock(&ch->lock);
        return err_set(err, ERR_INTERNAL, "cannot start the kernel's pump");
    }
    ch->pumping = true;
    return 0;
}

bool kernel_channels_gone(struct kernel_channels *ch)
{
    bool gone;

    pthread_mutex_lock(&ch->lock);
    gone = ch->gone;
    pthread_mutex_unlock(&ch->lock);
    return gone;
}

void kernel_channels_stop(struct kernel_channels *ch, bool gone)
{
    pthread_mutex_lock(&ch->lock);
    ch->running = false; /* clients' messages are refused from now on */
    pthread_mutex_unlock(&ch->lock);
    if (ch->pumping) {
        atomic_store(&ch->stop, true);
        wake(ch);
        pthread_join(ch->pump, NULL);
        ch->pumping = false;
    }
    pthread_mutex_lock(&ch->lock);
    drop_outbox(ch);
    if (gone && !ch->gone) {
        ch->gone = true;
        snprintf(ch->state, sizeof(ch->state), "dead");
        tell_dead(ch);
    } else if (!gone) {
        snprintf(ch->state, sizeof(ch->state), "restarting");
    }
    pthread_mutex_unlock(&ch->lock);
}

int kernel_channels_attach(struct kernel_channels *ch,
                           channels_deliver_fn deliver_fn, void *ctx,
                           struct channels_client **out, struct err *err)
{
    struct channels_client *c;
    int rc = 0;

    pthread_mutex_lock(&ch->lock);
    if (ch->gone)
        rc = err_set(err, ERR_NOT_FOUND, "the kernel has ended");
    else if (ch->nclients >= ch->max_clients)
        rc = err_set(err, ERR_BUSY,
                     "the kernel has its most connections (%ld)",
                     ch->max_clients);
    if (rc == 0) {
        c = xcalloc(1, sizeof(*c));
        c->deliver = deliver_fn;
        c->ctx = ctx;
        list_push_front(&ch->clients, &c->link);
        ch->nclients++;
        ch->refs++;
        *out = c;
    }
    pthread_mutex_unlock(&ch->lock);
    return rc;
}

void kernel_channels_detach(struct kernel_channels *ch,
                            struct channels_client *c)
{
    pthread_mutex_lock(&ch->lock);
    list_remove(&c->link);
    ch->nclients--;
    pthread_mutex_unlock(&ch->lock);
    free(c);
    kernel_channels_unref(ch);
}

/* The object at key in msg, {} when absent or null; NULL when it is
 * something else. */
static json_t *object_or_empty(json_t *msg, const char *key)
{
    json_t *v = json_object_get(msg, key);

    if (!v || json_is_null(v)) {
        v = json_object();
        json_object_set_new(msg, key, v);
    }
    return json_is_object(v) ? v : NULL;
}

int kernel_channels_send(struct kernel_channels *ch, struct channels_client *c,
                         const void *data, size_t len, bool binary,
                         struct err *err)
{
    struct relay_part text = {data, len}, buffers[JMSG_MAX_BUFFERS];
    size_t nbuffers = 0;
    json_t *msg, *header, *parent, *metadata, *content;
    const char *channel, *session;
    struct buf packed = BUF_INIT(RELAY_MAX_FRAME);
    uint8_t which = 0;
    char key[sizeof(ch->key)];
    long generation;
    int rc;

    if (binary && channels_parse_binary(data, len, &text, buffers,
                                        JMSG_MAX_BUFFERS, &nbuffers) < 0)
        return err_set(err, ERR_INVALID,
                       "a binary frame not in jupyter_server's layout");
    msg = json_loadb((const char *)text.data, text.len, JSON_REJECT_DUPLICATES,
                     NULL);
    channel = json_string_value(json_object_get(msg, "channel"));
    for (uint8_t i = RELAY_SHELL; channel && i <= RELAY_STDIN; i++)
        if (strcmp(channel, CHANNEL_NAMES[i]) == 0)
            which = i;
    header = json_object_get(msg, "header");
    if (!json_is_object(msg) || !which) {
        json_decref(msg);
        return err_set(err, ERR_INVALID,
                       "a message needs a channel of shell, control or "
                       "stdin");
    }
    parent = object_or_empty(msg, "parent_header");
    metadata = object_or_empty(msg, "metadata");
    content = object_or_empty(msg, "content");
    if (!json_is_object(header) ||
        !json_is_string(json_object_get(header, "msg_id")) ||
        !json_is_string(json_object_get(header, "msg_type")) || !parent ||
        !metadata || !content) {
        json_decref(msg);
        return err_set(err, ERR_INVALID,
                       "a message needs a header with msg_id and msg_type, "
                       "and objects for parent_header, metadata and "
                       "content");
    }
    /* input() is not offered: the code gets an error, not a hang */
    if (strcmp(json_string_value(json_object_get(header, "msg_type")),
               "execute_request") == 0)
        json_object_set_new(content, "allow_stdin", json_false());
    session = json_string_value(json_object_get(header, "session"));
    pthread_mutex_lock(&ch->lock);
    if (session)
        snprintf(c->session, sizeof(c->session), "%s", session);
    memcpy(key, ch->key, sizeof(key)); /* a restart may change it */
    generation = ch->generation;
    pthread_mutex_unlock(&ch->lock);
    rc = jmsg_pack_message(&packed, key, header, parent, metadata, content,
                           buffers, nbuffers) < 0
             ? err_set(err, ERR_TOO_LARGE, "the message is too large")
             : queue(ch, RELAY_SEND, which, packed.data, packed.len,
                     generation, err);
    OPENSSL_cleanse(key, sizeof(key));
    buf_release(&packed);
    json_decref(msg);
    return rc;
}

void kernel_channels_interrupt(struct kernel_channels *ch)
{
    uint8_t sig = RELAY_SIG_INTERRUPT;
    struct err err = ERR_INIT;

    queue(ch, RELAY_SIGNAL, 0, &sig, 1, -1, &err);
}

void kernel_channels_state(struct kernel_channels *ch,
                           struct channels_state *out)
{
    pthread_mutex_lock(&ch->lock);
    snprintf(out->execution_state, sizeof(out->execution_state), "%s",
             ch->state);
    out->last_activity_ms = ch->last_activity_ms;
    out->idle_ms = util_now_ms() - ch->last_activity_mono;
    out->connections = ch->nclients;
    pthread_mutex_unlock(&ch->lock);
}
