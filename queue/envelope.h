/* envelope.h - one message's envelope: sender, recipients, DSN and XFORWARD data (see envelope.c). */
#ifndef SR_ENVELOPE_H
#define SR_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* NOTIFY= bits (RFC 3461); 0 means "not given". */
#define DSN_NOTIFY_NEVER 0x01
#define DSN_NOTIFY_SUCCESS 0x02
#define DSN_NOTIFY_FAILURE 0x04
#define DSN_NOTIFY_DELAY 0x08

enum dsn_ret { DSN_RET_NONE = 0, DSN_RET_FULL, DSN_RET_HDRS };
enum body_type { BODY_NONE = 0, BODY_7BIT, BODY_8BITMIME };

/* Recipient state, as kept in the queue file. */
enum rcpt_state {
    RCPT_PENDING = 0, /* still to deliver */
    RCPT_DONE,        /* downstream accepted it */
    RCPT_BOUNCED,     /* permanent failure, DSN due or sent */
    RCPT_DEFERRED,    /* temporary failure, try again */
};

/* XFORWARD attributes in protocol order. */
enum xf_attr { XF_NAME = 0, XF_ADDR, XF_PORT, XF_PROTO, XF_HELO, XF_IDENT, XF_SOURCE, XF_COUNT };
extern const char *const xf_attr_names[XF_COUNT];

struct env_rcpt {
    char *addr;       /* without angle brackets */
    char *orcpt;      /* ORCPT= value as given ("rfc822;a@b"), or NULL */
    unsigned notify;  /* DSN_NOTIFY_* bits, 0 = not given */
    enum rcpt_state state;
    char *reason;     /* last reply or error text, or NULL */
};

struct envelope {
    char *sender;            /* "" for the null sender */
    char *envid;             /* ENVID= as given (xtext), or NULL */
    enum dsn_ret ret;
    enum body_type body;
    int smtputf8;
    struct env_rcpt *rcpt;
    size_t nrcpt, rcpt_cap;
    char *xforward[XF_COUNT]; /* attributes to pass downstream, or NULL */
    time_t arrival;
};

/* Per-transaction allocations are checked: NULL / -1 on no memory. */
struct envelope *envelope_new(void);
void envelope_free(struct envelope *env);
/* Clear sender and recipients, keep nothing; XFORWARD attributes too. */
void envelope_reset(struct envelope *env);
int envelope_set_sender(struct envelope *env, const char *addr);
/* Appends a recipient (strings copied); returns its index or -1. */
int envelope_add_rcpt(struct envelope *env, const char *addr, const char *orcpt, unsigned notify);
int envelope_set_reason(struct env_rcpt *r, const char *reason);
int envelope_set_xforward(struct envelope *env, enum xf_attr a, const char *value);
/* Deep copy, NULL on no memory. */
struct envelope *envelope_dup(const struct envelope *env);
/* Count of recipients in the given state. */
size_t envelope_count(const struct envelope *env, enum rcpt_state st);

/* RFC 3461 xtext: decode into a new string (NULL on bad xtext); encode likewise. */
char *xtext_decode(const char *s);
char *xtext_encode(const char *s);
/* NOTIFY= parse ("SUCCESS,DELAY"): 0 ok, -1 bad. Format into buf. */
int dsn_notify_parse(const char *s, unsigned *out);
void dsn_notify_format(unsigned bits, char *buf, size_t len);

#endif
