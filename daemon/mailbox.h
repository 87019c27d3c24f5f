/* Messages between loops: a locked queue and an eventfd that wakes the loop
 * that owns the queue. A message is a function to run there. */
#pragma once

#include <pthread.h>

struct msg;
typedef void (*msg_fn)(struct msg *m);

struct msg {
        struct msg *next;
        msg_fn run;
};

struct mailbox {
        pthread_mutex_t lock;
        struct msg *head, **tail;
        int efd; /* readable while messages wait */
};

int mailbox_init(struct mailbox *mb);
void mailbox_done(struct mailbox *mb);
/* Callable from any thread; m->run runs later on the owner's loop. */
void mailbox_post(struct mailbox *mb, struct msg *m, msg_fn run);
/* Runs every waiting message; call from the owner when efd is readable. */
void mailbox_dispatch(struct mailbox *mb);
