#ifndef NBCANVAS_CACHE_KEY_H
#define NBCANVAS_CACHE_KEY_H

/*
 * The result cache's key, in one place: the SHA-256 of everything that
 * decides a render's answer — the cells or notebook as sent, the files'
 * contents, kernel, format, template, options, timeout — of the tenant
 * (one tenant never gets another's answer, or learns of it), and of the id of
 * the notebook image the answer comes from, so that a rebuilt image never
 * answers from the old one's results. The image id is asked of the engine
 * when a key is made and is at most CACHE_KEY_IMAGE_TTL_MS old; if the
 * engine cannot be asked, the last id known is used (the render will fail
 * anyway and failures are never cached).
 */

#include "nbcanvas/docker.h"
#include "nbcanvas/request.h"

#define CACHE_KEY_IMAGE_TTL_MS 2000

struct cache_keys;

/* Keys for renders, each with the id of its kernel's image as cfg names
 * it; d and cfg are borrowed and must outlive it. */
struct cache_keys *cache_keys_new(struct docker *d, const struct config *cfg);
void cache_keys_free(struct cache_keys *k);

/* The key of req's answer into out. */
void cache_keys_render(struct cache_keys *k, const struct render_request *req,
                       unsigned char out[32]);

/* The key made from req and a given image id (no engine call); what
 * cache_keys_render uses, apart for tests. */
void cache_key_of(const struct render_request *req, const char *image_id,
                  unsigned char out[32]);

#endif
