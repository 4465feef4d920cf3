/* qadmin.h - control requests on the quarantine: release and delete (see qadmin.c). */
#ifndef SR_QADMIN_H
#define SR_QADMIN_H

struct daemon;

/* Called on the loop when the request is done: ok 1/0 and a one-line message. */
typedef void (*qadmin_done_fn)(void *arg, int ok, const char *msg);

/*
 * Release a quarantined message: re-injected with its original envelope
 * (or to addrs when n > 0) through the deferred queue, so it reaches the
 * downstream as soon as it answers. The copy carries an
 * "X-Quarantine-Released: <date> by scanrelay" header; the store records
 * the state. Work runs off the loop; done is called later.
 */
void qadmin_release(struct daemon *d, const char *id, char **addrs, int n, qadmin_done_fn done,
                    void *arg);
/* Delete quarantined messages (file removed, index row marked deleted). */
void qadmin_delete(struct daemon *d, char **ids, int n, qadmin_done_fn done, void *arg);

#endif
