/*
 * LRU result cache: a doubly linked list in recency order (head = newest)
 * and a linear key search. With answers of hundreds of KiB and a cap of
 * hundreds of MiB the list holds a few thousand entries at most, and a
 * scan of 32-byte keys costs microseconds next to a render's seconds; a
 * hash table would be more code for nothing measurable.
 */
#include "nbcanvas/cache.h"

#include <pthread.h>
#include <string.h>

#include "nbcanvas/util.h"

struct entry {
    unsigned char key[32];
    char *body;
    size_t len;
    const char *content_type;
    struct entry *prev, *next;
};

struct cache {
    pthread_mutex_t lock;
    struct entry *head, *tail;
    long long max_bytes;
    char image[128];
    struct cache_stats stats;
};

struct cache *cache_new(long long max_bytes)
{
    struct cache *c = xcalloc(1, sizeof(*c));

    pthread_mutex_init(&c->lock, NULL);
    c->max_bytes = max_bytes;
    return c;
}

static void unlink_entry(struct cache *c, struct entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void push_front(struct cache *c, struct entry *e)
{
    e->next = c->head;
    e->prev = NULL;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (!c->tail)
        c->tail = e;
}

static void drop(struct cache *c, struct entry *e)
{
    unlink_entry(c, e);
    c->stats.entries--;
    c->stats.bytes -= (long long)e->len;
    free(e->body);
    free(e);
}

static void clear(struct cache *c)
{
    while (c->head)
        drop(c, c->head);
}

void cache_free(struct cache *c)
{
    if (!c)
        return;
    clear(c);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static struct entry *find(struct cache *c, const unsigned char key[32])
{
    struct entry *e;

    for (e = c->head; e; e = e->next)
        if (memcmp(e->key, key, 32) == 0)
            return e;
    return NULL;
}

bool cache_get(struct cache *c, const unsigned char key[32], char **body,
               size_t *len, const char **content_type)
{
    struct entry *e;

    pthread_mutex_lock(&c->lock);
    e = find(c, key);
    if (e) {
        unlink_entry(c, e);
        push_front(c, e);
        *body = xmalloc(e->len + 1);
        memcpy(*body, e->body, e->len);
        (*body)[e->len] = '\0';
        *len = e->len;
        *content_type = e->content_type;
        c->stats.hits++;
    } else {
        c->stats.misses++;
    }
    pthread_mutex_unlock(&c->lock);
    return e != NULL;
}

void cache_put(struct cache *c, const unsigned char key[32], const char *body,
               size_t len, const char *content_type)
{
    struct entry *e;

    if ((long long)len > c->max_bytes / 8)
        return;
    e = xcalloc(1, sizeof(*e));
    memcpy(e->key, key, 32);
    e->body = xmalloc(len + 1);
    memcpy(e->body, body, len);
    e->len = len;
    e->content_type = content_type;
    pthread_mutex_lock(&c->lock);
    if (find(c, key))
        drop(c, find(c, key));
    push_front(c, e);
    c->stats.entries++;
    c->stats.bytes += (long long)len;
    while (c->stats.bytes > c->max_bytes && c->tail)
        drop(c, c->tail);
    pthread_mutex_unlock(&c->lock);
}

void cache_set_image(struct cache *c, const char *image_id)
{
    pthread_mutex_lock(&c->lock);
    if (strcmp(c->image, image_id) != 0) {
        clear(c);
        snprintf(c->image, sizeof(c->image), "%s", image_id);
    }
    pthread_mutex_unlock(&c->lock);
}

void cache_image(struct cache *c, char *out, size_t out_len)
{
    pthread_mutex_lock(&c->lock);
    snprintf(out, out_len, "%s", c->image);
    pthread_mutex_unlock(&c->lock);
}

void cache_stats(struct cache *c, struct cache_stats *out)
{
    pthread_mutex_lock(&c->lock);
    *out = c->stats;
    pthread_mutex_unlock(&c->lock);
}
