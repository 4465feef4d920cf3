/* notice.h - notices to the administrator, recipients and senders: templates, encoding, the
 * loop mark, rate limits and the admin summary window (see notice.c, notice_fmt.c). */
#ifndef SR_NOTICE_H
#define SR_NOTICE_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

struct event_base;
struct queue;
struct sr_config;
struct wpool;
struct notifier;

/* Notice kinds, as bits (config words "virus", "policy", ... "quarantine"). */
#define NOTICE_VIRUS 0x01
#define NOTICE_POLICY 0x02
#define NOTICE_SPAM 0x04
#define NOTICE_LIMIT 0x08
#define NOTICE_ENCRYPTED 0x10
#define NOTICE_ERROR 0x20
#define NOTICE_QUARANTINE 0x40 /* any quarantined message */

/* Audiences, as bits (a policy rule's notify = {...} asks with these). */
#define NOTICE_TO_ADMIN 0x1
#define NOTICE_TO_RCPTS 0x2
#define NOTICE_TO_SENDER 0x4

/*
 * Check the notify section: kind words, language, charset, attach, and
 * notify.from when any notice can be sent (not empty, not a placeholder,
 * not an example or local-only address). 0 ok, -1 with a message in err.
 * Called by `scanrelayd -t`, at start and on reload.
 */
int notice_check_config(const struct sr_config *cfg, char *err, size_t errlen);
/* Is from acceptable as notify.from? 0 yes, -1 with the reason in why. */
int notice_check_from(const char *from, char *why, size_t whylen);

/* What the header (and, for a notice, the body) of a received message says. */
struct notice_origin {
    int bulk;   /* Precedence: bulk|list|junk, List-Id, or Auto-Submitted other than "no" */
    int marked; /* carries X-Scanrelay-Notice (forged or not) */
    int ours;   /* the mark is valid: a notice this installation made (HMAC with its key) */
};

/* Read msg[0..len) (the whole message, or at least its header) into o. */
void notice_inspect(const struct notifier *n, const char *msg, size_t len, int whole,
                    struct notice_origin *o);
/* The largest message notice_inspect needs whole to recognise a notice of ours. */
size_t notice_max_size(const struct notifier *n);

/* One verdict that may call for notices. Strings are copied as needed. */
struct notice_event {
    const char *qid;
    const char *sender; /* "" for <> */
    const char *const *rcpts;
    size_t nrcpts;
    const char *subject; /* decoded UTF-8, or NULL */
    unsigned kind;       /* one NOTICE_* kind bit (not QUARANTINE) */
    int quarantined;     /* the message is in the quarantine under quarantine_id */
    const char *quarantine_id;
    const char *virus, *rule, *name, *location;
    const char *action; /* "discarded", "quarantined", "rejected", ... */
    int has_score;
    double score;
    unsigned rule_notify; /* NOTICE_TO_* a policy rule asks for, besides notify.*_kinds */
    const struct notice_origin *origin;
    /* The original message (attach = headers | message), read on the loop. */
    ssize_t (*pread)(void *ctx, void *buf, size_t len, off_t off);
    void *ctx;
    off_t size;
};

/*
 * A notifier: key and state in state_dir (notice.key, notify.state),
 * notices go into the queue by queue_inject, state writes run on pool.
 * config(ctx) gives the configuration in force (on the loop). NULL + err.
 */
struct notifier *notifier_new(struct event_base *base, struct queue *q, struct wpool *pool,
                              const struct sr_config *(*config)(void *ctx), void *ctx,
                              const char *state_dir, char *err, size_t errlen);
/* Save the state (synchronously) and free; run before the queue is freed. */
void notifier_free(struct notifier *n);

/* Notices for one verdict, by notify{} and ev->rule_notify (loop thread). */
void notice_verdict(struct notifier *n, const struct notice_event *ev);

/*
 * A text notice to notify.admin (health alerts, reports): subject and
 * body in UTF-8, encoded as configured (RFC 2047 subject, declared charset
 * and transfer encoding), null sender, Auto-Submitted and the loop mark,
 * at most notify.rate_limit per address per hour. Loop thread. Returns 0
 * queued (asynchronously), 1 not sent (notices off, no admin, rate limit),
 * -1 no memory.
 */
int notice_admin_text(struct notifier *n, const char *subject, const char *body_utf8);

/*
 * Building blocks (notice_fmt.c), pure, exported for the unit test.
 */
/* "Subject" header value, RFC 2047 encoded in charset ("utf-8" | "iso-2022-jp"); malloc'd. */
char *notice_encode_header(const char *utf8, const char *charset);
/* Body text (UTF-8, LF or CRLF lines) encoded: *cte gets "7bit" | "base64", *cs the charset
 * label; CRLF lines; malloc'd, NULL on no memory. */
char *notice_encode_body(const char *utf8, const char *charset, const char **cs, const char **cte);
/* Substitute %name% variables: vars[i*2] names, vars[i*2+1] values; "%%" is "%". malloc'd. */
char *notice_expand(const char *tmpl, const char *const *vars, size_t nvars);
/* The mark's MAC: hex HMAC-SHA256 over "v1|t|message-id|" and the body's non-blank bytes. */
char *notice_mac(const unsigned char *key, size_t keylen, long long t, const char *msgid,
                 const char *body, size_t bodylen);

#endif
