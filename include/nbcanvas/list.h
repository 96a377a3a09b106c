#ifndef NBCANVAS_LIST_H
#define NBCANVAS_LIST_H

/*
 * An intrusive, circular doubly linked list with a head node, as in the
 * Linux kernel: a struct embeds a struct list_node and is found again
 * from it with list_entry. Insertion and removal are O(1) and need no
 * allocation; the one place where the links are rewired is here.
 */

#include <stdbool.h>
#include <stddef.h>

struct list_node {
    struct list_node *prev, *next;
};

static inline void list_init(struct list_node *head)
{
    head->prev = head->next = head;
}

static inline bool list_is_empty(const struct list_node *head)
{
    return head->next == head;
}

/* Puts node first, right after head. */
static inline void list_push_front(struct list_node *head,
                                   struct list_node *node)
{
    node->next = head->next;
    node->prev = head;
    head->next->prev = node;
    head->next = node;
}

/* Takes node out of whatever list holds it. */
static inline void list_remove(struct list_node *node)
{
    node->prev->next = node->next;
    node->next->prev = node->prev;
    node->prev = node->next = node;
}

/* The struct of type whose member is node. */
#define list_entry(node, type, member)                                        \
    ((type *)(void *)((char *)(node)-offsetof(type, member)))

#define list_for_each(pos, head)                                              \
    for ((pos) = (head)->next; (pos) != (head); (pos) = (pos)->next)

#endif
