/*
 * The fake kernel of fake_kernel.h: what the executor sees of ipykernel,
 * written as messages with the service's own jmsg.c (which its own tests
 * check against Jupyter's format).
 */
#include "fake_kernel.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbcanvas/jmsg.h"

/* Where the fake's frames go: a fake link, or a fake engine's stream. */
struct sink {
    void (*write)(void *to, const void *data, size_t len);
    void *to;
};

static void frame_out(const struct sink *l, uint8_t type, uint8_t channel,
                      const void *payload, size_t len)
{
    uint8_t head[RELAY_HEADER_LEN];

    relay_frame_header(head, type, channel, (uint32_t)len);
    l->write(l->to, head, sizeof(head));
    l->write(l->to, payload, len);
}

static void emit_as(const struct sink *l, const char *key, uint8_t channel,
                    const char *type, json_t *parent, json_t *content)
{
    struct buf payload = BUF_INIT(1 << 24);
    char id[JMSG_ID_LEN + 1];

    jmsg_new_id(id);
    jmsg_pack(&payload, key, "kernel", id, type, parent, content);
    frame_out(l, RELAY_RECV, channel, payload.data, payload.len);
    buf_release(&payload);
    json_decref(content);
}

static void emit(struct fake_kernel *k, const struct sink *l, uint8_t channel,
                 const char *type, json_t *parent, json_t *content)
{
    emit_as(l, k->key, channel, type, parent, content);
}

static void status(struct fake_kernel *k, const struct sink *l, json_t *parent,
                   const char *state)
{
    emit(k, l, RELAY_IOPUB, "status", parent,
         json_pack("{s:s}", "execution_state", state));
}

/* Runs one line of the script; false when the cell must end here. */
static bool run_line(struct fake_kernel *k, const struct sink *l,
                     json_t *parent, const char *line, bool *raised)
{
    char word[16] = "", a[64] = "", b[256] = "";
    int n = sscanf(line, "%15s %63s %255[^\n]", word, a, b);
    char text[320];

    snprintf(text, sizeof(text), "%s%s%s", a, n > 2 ? " " : "", b);
    if (!strcmp(word, "out")) {
        emit(k, l, RELAY_IOPUB, "stream", parent,
             json_pack("{s:s, s:s}", "name", "stdout", "text", text));
    } else if (!strcmp(word, "result")) {
        emit(k, l, RELAY_IOPUB, "execute_result", parent,
             json_pack("{s:{s:s}, s:{}, s:i}", "data", "text/plain", text,
                       "metadata", "execution_count", k->count));
    } else if (!strcmp(word, "display") || !strcmp(word, "update")) {
        json_t *c = json_pack("{s:{s:s}, s:{}, s:{}}", "data", "text/plain", b,
                              "metadata", "transient");

        if (strcmp(a, "-") != 0)
            json_object_set_new(json_object_get(c, "transient"), "display_id",
                                json_string(a));
        emit(k, l, RELAY_IOPUB,
             word[0] == 'd' ? "display_data" : "update_display_data", parent,
             c);
    } else if (!strcmp(word, "clear") || !strcmp(word, "clearwait")) {
        emit(k, l, RELAY_IOPUB, "clear_output", parent,
             json_pack("{s:b}", "wait", word[5] == 'w'));
    } else if (!strcmp(word, "raise")) {
        emit(k, l, RELAY_IOPUB, "error", parent,
             json_pack("{s:s, s:s, s:[s]}", "ename", a, "evalue", "boom",
                       "traceback", "Traceback: boom"));
        *raised = true;
    } else if (!strcmp(word, "widget")) {
        emit(k, l, RELAY_IOPUB, "comm_open", parent,
             json_pack("{s:s, s:s, s:{s:{s:s, s:s}}}", "comm_id", a,
                       "target_name", "jupyter.widget", "data", "state",
                       "_model_name", "IntSliderModel", "value", b));
    } else if (!strcmp(word, "foreign")) {
        json_t *other = json_pack("{s:s}", "msg_id", "someone-else");

        emit(k, l, RELAY_IOPUB, "stream", other,
             json_pack("{s:s, s:s}", "name", "stdout", "text", text));
        json_decref(other);
    } else if (!strcmp(word, "forged")) {
        emit_as(l, "not-the-key", RELAY_IOPUB, "stream", parent,
                json_pack("{s:s, s:s}", "name", "stdout", "text", text));
    } else if (!strcmp(word, "hang")) {
        return false;
    } else if (!strcmp(word, "garbage")) {
        l->write(l->to, "\xff\xff\xff\xff\x01\x01\x00\x00", 8);
        return false;
    } else if (!strcmp(word, "exit")) {
        k->exit_now = true;
        return false;
    } else if (!strcmp(word, "die")) {
        uint8_t code[4] = {0, 0, 0, 9};

        frame_out(l, RELAY_EXIT, 0, code, 4);
        if (k->on_die)
            k->on_die(k->on_die_ctx);
        return false;
    }
    return true;
}

static void execute(struct fake_kernel *k, const struct sink *l, json_t *hdr,
                    json_t *content)
{
    const char *code = json_string_value(json_object_get(content, "code"));
    bool silent = json_is_true(json_object_get(content, "silent"));
    bool raised = false, go_on = true;
    char line[512];

    k->stop_on_error = json_is_boolean(
                           json_object_get(content, "stop_on_error"))
                           ? json_is_true(
                                 json_object_get(content, "stop_on_error"))
                           : -1;
    if (silent) {
        emit(k, l, RELAY_SHELL, "execute_reply", hdr,
             json_pack("{s:s}", "status", "ok"));
        return;
    }
    k->count++;
    status(k, l, hdr, "busy");
    emit(k, l, RELAY_IOPUB, "execute_input", hdr,
         json_pack("{s:s, s:i}", "code", code, "execution_count", k->count));
    for (const char *p = code; go_on && p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);

        snprintf(line, sizeof(line), "%.*s", (int)n, p);
        go_on = run_line(k, l, hdr, line, &raised);
        p = nl ? nl + 1 : NULL;
    }
    if (!go_on)
        return;
    emit(k, l, RELAY_SHELL, "execute_reply", hdr,
         raised ? json_pack("{s:s, s:i, s:s, s:s, s:[]}", "status", "error",
                            "execution_count", k->count, "ename", "E",
                            "evalue", "boom", "traceback")
                : json_pack("{s:s, s:i}", "status", "ok", "execution_count",
                            k->count));
    status(k, l, hdr, "idle");
}

/* One frame from the service. */
static void handle(struct fake_kernel *k, const struct sink *l,
                   const struct relay_frame *f)
{
    struct err err = ERR_INIT;
    struct jmsg m;

    if (f->type < 64)
        k->sent[f->type]++;
    if (f->type == RELAY_SIGNAL && f->len == 1)
        k->last_signal = f->payload[0];
    if (f->type == RELAY_PUT_FILE)
        frame_out(l, RELAY_FILE, 0, "\1", 1);
    if (f->type == RELAY_RUN)
        frame_out(l, RELAY_RUN_DONE, 0, "\0\0\0\0", 4);
    if (f->type == RELAY_COLLECT)
        frame_out(l, RELAY_FILES, 0, "", 0);
    if (f->type == RELAY_GET_FILE)
        frame_out(l, RELAY_FILE, 0, "", 1);
    if (f->type == RELAY_SIGNAL && f->len == 1 &&
        f->payload[0] == RELAY_SIG_STOP_ALL)
        frame_out(l, RELAY_EXIT, 0, "\0\0\0\x09", 4);
    if (f->type != RELAY_SEND ||
        jmsg_parse(&m, k->key, f->payload, f->len, &err) < 0)
        return;
    if (!strcmp(m.msg_type, "kernel_info_request")) {
        status(k, l, m.header, "busy");
        emit(k, l, RELAY_SHELL, "kernel_info_reply", m.header,
             json_pack("{s:s, s:{s:s, s:s}}", "status", "ok", "language_info",
                       "name", "python", "version", "3.11.2"));
        status(k, l, m.header, "idle");
    } else if (!strcmp(m.msg_type, "execute_request")) {
        if (k->on_execute)
            k->on_execute(k->on_execute_ctx);
        execute(k, l, m.header, m.content);
    }
    jmsg_release(&m);
}

static void to_link(void *to, const void *data, size_t len)
{
    relay_link_feed(to, data, len);
}

void fake_kernel_peer(void *ctx, struct relay_link *link,
                      const struct relay_frame *f)
{
    struct sink l = {to_link, link};

    handle(ctx, &l, f);
}

static void to_stream(void *to, const void *data, size_t len)
{
    fake_output_write(to, 1, data, len);
}

void fake_relay_fn(void *ctx, const struct fake_stream_info *info,
                   struct fake_output *out)
{
    struct fake_kernel *k = ctx;
    struct sink l = {to_stream, out};
    const uint8_t *in = (const uint8_t *)info->input;
    size_t at = 0, used;
    struct relay_frame f;
    bool fresh = true;

    pthread_mutex_lock(&k->lock);
    for (int i = 0; i < k->nready && fresh; i++)
        fresh = strcmp(k->ready[i], info->container_id) != 0;
    if (fresh && k->nready < 16)
        snprintf(k->ready[k->nready++], 65, "%s", info->container_id);
    pthread_mutex_unlock(&k->lock);
    if (fresh) {
        char hello[128];

        snprintf(hello, sizeof(hello), "{\"key\": \"%s\", \"pid\": 7}",
                 k->key);
        frame_out(&l, RELAY_READY, 0, hello, strlen(hello));
    }
    while (relay_frame_parse(in + at, info->input_len - at, &f, &used) == 1) {
        pthread_mutex_lock(&k->lock);
        snprintf(k->container, sizeof(k->container), "%s", info->container_id);
        handle(k, &l, &f);
        pthread_mutex_unlock(&k->lock);
        at += used;
        if (k->exit_now) { /* the container ends: its stream with it */
            k->exit_now = false;
            fake_output_exit_code(out, 137);
            break;
        }
    }
    fake_output_consume(out, at);
}

/* The exporter's side (nbcanvas_export.py): ready once, then a page for
 * each request ("validate" gets an empty one, as a valid notebook does). */
static void exporter_fn(struct fake_kernel *k,
                        const struct fake_stream_info *info,
                        struct fake_output *out, bool fresh)
{
    size_t at = 0;

    if (fresh)
        fake_output_write(out, 1, "nbcanvas:ready\n", 15);
    for (;;) {
        const char *p = info->input + at;
        const char *nl = memchr(p, '\n', info->input_len - at);
        unsigned long long n = 0;
        char line[64];
        json_t *req;
        bool validate;

        if (!nl || sscanf(p, "nbcanvas:export %llu", &n) != 1 ||
            info->input_len - at - (size_t)(nl + 1 - p) < n)
            break;
        req = json_loadb(nl + 1, (size_t)n, 0, NULL);
        validate = !strcmp(json_string_value(json_object_get(req, "op"))
                               ? json_string_value(json_object_get(req, "op"))
                               : "",
                           "validate");
        json_decref(req);
        if (validate) {
            fake_output_write(out, 1, "nbcanvas:page 0\n", 16);
        } else {
            snprintf(line, sizeof(line), "nbcanvas:page %zu\n",
                     strlen(k->page));
            fake_output_write(out, 1, line, strlen(line));
            fake_output_write(out, 1, k->page, strlen(k->page));
        }
        k->exports += !validate;
        k->validations += validate;
        at += (size_t)(nl + 1 - p) + (size_t)n;
    }
    fake_output_consume(out, at);
}

void fake_image_fn(void *ctx, const struct fake_stream_info *info,
                   struct fake_output *out)
{
    struct fake_kernel *k = ctx;
    json_t *body = fake_engine_container_body(k->engine, info->container_id);
    char *cmd = json_dumps(json_object_get(body, "Cmd"), 0);
    bool exporter = cmd && strstr(cmd, "nbcanvas_export.py");
    bool fresh = true;

    free(cmd);
    json_decref(body);
    if (!exporter) {
        fake_relay_fn(ctx, info, out);
        return;
    }
    pthread_mutex_lock(&k->lock);
    for (int i = 0; i < k->nready && fresh; i++)
        fresh = strcmp(k->ready[i], info->container_id) != 0;
    if (fresh && k->nready < 16)
        snprintf(k->ready[k->nready++], 65, "%s", info->container_id);
    exporter_fn(k, info, out, fresh);
    pthread_mutex_unlock(&k->lock);
}
