/*
 * Cache keys: a canonical JSON text (sorted keys, compact, files by
 * content hash) of what decides the answer, hashed. The image id is
 * remembered for a short while so that a cache hit costs no engine call
 * most of the time.
 */
#include "nbcanvas/cache_key.h"

#include <pthread.h>

#include "nbcanvas/notebook.h"
#include "nbcanvas/sandbox.h"
#include "nbcanvas/util.h"

/* What is known of one kernel's image. */
struct known_image {
    char id[128];
    long long checked_ms; /* when id was last asked; 0: never */
};

struct cache_keys {
    struct docker *docker;
    const struct config *cfg;
    pthread_mutex_t lock;
    struct known_image images[NOTEBOOK_KERNELS]; /* by kernel index */
};

struct cache_keys *cache_keys_new(struct docker *d, const struct config *cfg)
{
    struct cache_keys *k = xcalloc(1, sizeof(*k));

    k->docker = d;
    k->cfg = cfg;
    pthread_mutex_init(&k->lock, NULL);
    return k;
}

void cache_keys_free(struct cache_keys *k)
{
    if (!k)
        return;
    pthread_mutex_destroy(&k->lock);
    free(k);
}

/* The kernel's image id, asked again when the one known is older than
 * the TTL. */
static void current_image_id(struct cache_keys *k,
                             const struct kernel_info *kernel, char out[128])
{
    struct known_image *known = &k->images[kernel->index];
    long long now = util_now_ms();
    char id[128] = "";
    bool stale;

    pthread_mutex_lock(&k->lock);
    stale = !known->checked_ms ||
            now - known->checked_ms > CACHE_KEY_IMAGE_TTL_MS;
    pthread_mutex_unlock(&k->lock);
    if (stale &&
        sandbox_image_id(k->docker, notebook_kernel_image(kernel, k->cfg), id,
                         sizeof(id), NULL) == 0) {
        pthread_mutex_lock(&k->lock);
        snprintf(known->id, sizeof(known->id), "%s", id);
        known->checked_ms = now;
        pthread_mutex_unlock(&k->lock);
    }
    pthread_mutex_lock(&k->lock);
    snprintf(out, 128, "%s", known->id);
    pthread_mutex_unlock(&k->lock);
}

void cache_key_of(const struct render_request *r, const char *image_id,
                  unsigned char out[32])
{
    json_t *files = json_array(), *k;
    char hex[65], *text;
    size_t i;

    for (i = 0; i < r->files.n; i++) {
        util_sha256_hex(hex, r->files.v[i].data, r->files.v[i].len);
        json_array_append_new(files,
                              json_pack("[s, s]", r->files.v[i].name, hex));
    }
    k = json_pack("{s:s, s:b, s:O, s:s, s:s, s:b, s:s, s:I, s:b, s:o, s:s}",
                  "tenant", r->tenant.name, "structured", r->structured,
                  "source", r->source, "kernel", r->kernel->name, "format",
                  request_format_name(r->format), "include_input",
                  r->include_input, "template", r->template_name, "timeout_s",
                  (json_int_t)r->timeout_s, "allow_errors", r->allow_errors,
                  "files", files, "image", image_id);
    if (r->packages) /* the packages change what the notebook does */
        json_object_set(k, "packages", r->packages);
    text = json_dumps(k, JSON_SORT_KEYS | JSON_COMPACT);
    util_sha256(out, text, strlen(text));
    free(text);
    json_decref(k);
}

void cache_keys_render(struct cache_keys *k, const struct render_request *req,
                       unsigned char out[32])
{
    char image_id[128];

    current_image_id(k, req->kernel, image_id);
    cache_key_of(req, image_id, out);
}
