/* The queue behind struct mailbox. */
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "mailbox.h"
#include "util.h"

int mailbox_init(struct mailbox *mb) {
        pthread_mutex_init(&mb->lock, NULL);
        mb->head = NULL;
        mb->tail = &mb->head;
        mb->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        return mb->efd < 0 ? -errno : 0;
}

void mailbox_done(struct mailbox *mb) {
        if (mb->efd >= 0)
                close(mb->efd);
        mb->efd = -1;
        pthread_mutex_destroy(&mb->lock);
}

void mailbox_post(struct mailbox *mb, struct msg *m, msg_fn run) {
        bool wake;
        uint64_t one = 1;

        m->run = run;
        m->next = NULL;
        pthread_mutex_lock(&mb->lock);
        wake = mb->head == NULL;
        *mb->tail = m;
        mb->tail = &m->next;
        pthread_mutex_unlock(&mb->lock);
        /* one wake-up per batch: the owner takes the whole list at once */
        if (wake)
                (void) !write(mb->efd, &one, sizeof(one));
}

void mailbox_dispatch(struct mailbox *mb) {
        uint64_t v;
        struct msg *m;

        (void) !read(mb->efd, &v, sizeof(v));
        pthread_mutex_lock(&mb->lock);
        m = mb->head;
        mb->head = NULL;
        mb->tail = &mb->head;
        pthread_mutex_unlock(&mb->lock);
        while (m) {
                struct msg *next = m->next;
                m->run(m);
                m = next;
        }
}
