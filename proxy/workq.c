/*
 * workq.c - a few threads for blocking work the event loop must not do
 * (writing and fsync'ing queue files). Items run in FIFO order; each
 * finished item's done() is called on the loop thread through one
 * event made active from the worker (libevent built with pthreads
 * support: evthread_use_pthreads() before the base is created).
 * Allocation failure of an item returns -1; nothing aborts.
 */
#include <pthread.h>
#include <stdlib.h>

#include <event2/event.h>

#include "workq.h"

struct witem {
    void (*work)(void *);
    void (*done)(void *);
    void *arg;
    struct witem *next;
};

struct workq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct witem *head, *tail;       /* to run */
    struct witem *dhead, *dtail;     /* finished */
    struct event *ev;
    pthread_t *threads;
    int nthreads;
    int stop;
    int pending;                     /* loop thread only */
};

static void *
worker(void *arg)
{
    struct workq *wq = arg;

    pthread_setname_np(pthread_self(), "sr-work"); /* top -H, ps -L */
    for (;;) {
        pthread_mutex_lock(&wq->mu);
        while (!wq->stop && wq->head == NULL)
            pthread_cond_wait(&wq->cv, &wq->mu);
        if (wq->stop) {
            pthread_mutex_unlock(&wq->mu);
            return NULL;
        }
        struct witem *it = wq->head;
        wq->head = it->next;
        if (wq->head == NULL)
            wq->tail = NULL;
        pthread_mutex_unlock(&wq->mu);

        it->work(it->arg);

        pthread_mutex_lock(&wq->mu);
        it->next = NULL;
        if (wq->dtail)
            wq->dtail->next = it;
        else
            wq->dhead = it;
        wq->dtail = it;
        pthread_mutex_unlock(&wq->mu);
        event_active(wq->ev, 0, 0);
    }
}

static void
done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct workq *wq = arg;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&wq->mu);
    struct witem *list = wq->dhead;
    wq->dhead = wq->dtail = NULL;
    pthread_mutex_unlock(&wq->mu);
    while (list) {
        struct witem *n = list->next;
        wq->pending--;
        list->done(list->arg);
        free(list);
        list = n;
    }
}

struct workq *
workq_new(struct event_base *base, int nthreads)
{
    struct workq *wq = calloc(1, sizeof(*wq));
    if (wq == NULL)
        return NULL;
    pthread_mutex_init(&wq->mu, NULL);
    pthread_cond_init(&wq->cv, NULL);
    wq->ev = event_new(base, -1, 0, done_cb, wq);
    wq->threads = calloc((size_t)nthreads, sizeof(pthread_t));
    if (wq->ev == NULL || wq->threads == NULL) {
        if (wq->ev)
            event_free(wq->ev);
        free(wq->threads);
        free(wq);
        return NULL;
    }
    for (int i = 0; i < nthreads; i++) {
        if (pthread_create(&wq->threads[i], NULL, worker, wq) != 0)
            break;
        wq->nthreads++;
    }
    if (wq->nthreads == 0) {
        workq_free(wq);
        return NULL;
    }
    return wq;
}

int
workq_submit(struct workq *wq, void (*work)(void *arg), void (*done)(void *arg), void *arg)
{
    struct witem *it = calloc(1, sizeof(*it));
    if (it == NULL)
        return -1;
    it->work = work;
    it->done = done;
    it->arg = arg;
    pthread_mutex_lock(&wq->mu);
    if (wq->tail)
        wq->tail->next = it;
    else
        wq->head = it;
    wq->tail = it;
    pthread_cond_signal(&wq->cv);
    pthread_mutex_unlock(&wq->mu);
    wq->pending++;
    return 0;
}

int
workq_pending(const struct workq *wq)
{
    return wq->pending;
}

void
workq_free(struct workq *wq)
{
    if (wq == NULL)
        return;
    pthread_mutex_lock(&wq->mu);
    wq->stop = 1;
    pthread_cond_broadcast(&wq->cv);
    pthread_mutex_unlock(&wq->mu);
    for (int i = 0; i < wq->nthreads; i++)
        pthread_join(wq->threads[i], NULL);
    struct witem *lists[2] = {wq->head, wq->dhead};
    for (int k = 0; k < 2; k++)
        while (lists[k]) {
            struct witem *n = lists[k]->next;
            free(lists[k]);
            lists[k] = n;
        }
    event_free(wq->ev);
    pthread_mutex_destroy(&wq->mu);
    pthread_cond_destroy(&wq->cv);
    free(wq->threads);
    free(wq);
}
