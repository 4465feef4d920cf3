/*
 * envelope.c - the envelope of one message as the relay and the queue see
 * it: sender, recipients with their DSN parameters and delivery state,
 * the MAIL parameters that must survive end to end (RET, ENVID, BODY,
 * SMTPUTF8) and the XFORWARD attributes to hand downstream.
 *
 * Every string is owned by the envelope and copied in. Allocation
 * failures are reported (NULL or -1), never fatal: an envelope belongs to
 * one session, and only that session fails.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"

const char *const xf_attr_names[XF_COUNT] = {"NAME", "ADDR", "PORT", "PROTO",
                                             "HELO", "IDENT", "SOURCE"};

struct envelope *
envelope_new(void)
{
    return calloc(1, sizeof(struct envelope));
}

static int
set_str(char **dst, const char *v)
{
    char *n = NULL;
    if (v && (n = strdup(v)) == NULL)
        return -1;
    free(*dst);
    *dst = n;
    return 0;
}

void
envelope_reset(struct envelope *env)
{
    free(env->sender);
    env->sender = NULL;
    free(env->envid);
    env->envid = NULL;
    for (size_t i = 0; i < env->nrcpt; i++) {
        free(env->rcpt[i].addr);
        free(env->rcpt[i].orcpt);
        free(env->rcpt[i].reason);
    }
    free(env->rcpt);
    env->rcpt = NULL;
    env->nrcpt = env->rcpt_cap = 0;
    for (int i = 0; i < XF_COUNT; i++) {
        free(env->xforward[i]);
        env->xforward[i] = NULL;
    }
    env->ret = DSN_RET_NONE;
    env->body = BODY_NONE;
    env->smtputf8 = 0;
    env->arrival = 0;
}

void
envelope_free(struct envelope *env)
{
    if (env == NULL)
        return;
    envelope_reset(env);
    free(env);
}

int
envelope_set_sender(struct envelope *env, const char *addr)
{
    return set_str(&env->sender, addr);
}

int
envelope_add_rcpt(struct envelope *env, const char *addr, const char *orcpt, unsigned notify)
{
    if (env->nrcpt == env->rcpt_cap) {
        size_t ncap = env->rcpt_cap ? env->rcpt_cap * 2 : 4;
        struct env_rcpt *n = realloc(env->rcpt, ncap * sizeof(*n));
        if (n == NULL)
            return -1;
        env->rcpt = n;
        env->rcpt_cap = ncap;
    }
    struct env_rcpt *r = &env->rcpt[env->nrcpt];
    memset(r, 0, sizeof(*r));
    if (set_str(&r->addr, addr) < 0 || set_str(&r->orcpt, orcpt) < 0) {
        free(r->addr);
        free(r->orcpt);
        return -1;
    }
    r->notify = notify;
    r->state = RCPT_PENDING;
    return (int)env->nrcpt++;
}

int
envelope_set_reason(struct env_rcpt *r, const char *reason)
{
    return set_str(&r->reason, reason);
}

int
envelope_set_xforward(struct envelope *env, enum xf_attr a, const char *value)
{
    return set_str(&env->xforward[a], value);
}

struct envelope *
envelope_dup(const struct envelope *env)
{
    struct envelope *n = envelope_new();
    if (n == NULL)
        return NULL;
    if (set_str(&n->sender, env->sender) < 0 || set_str(&n->envid, env->envid) < 0)
        goto fail;
    n->ret = env->ret;
    n->body = env->body;
    n->smtputf8 = env->smtputf8;
    n->arrival = env->arrival;
    for (int i = 0; i < XF_COUNT; i++)
        if (set_str(&n->xforward[i], env->xforward[i]) < 0)
            goto fail;
    for (size_t i = 0; i < env->nrcpt; i++) {
        const struct env_rcpt *r = &env->rcpt[i];
        int k = envelope_add_rcpt(n, r->addr, r->orcpt, r->notify);
        if (k < 0 || set_str(&n->rcpt[k].reason, r->reason) < 0)
            goto fail;
        n->rcpt[k].state = r->state;
    }
    return n;
fail:
    envelope_free(n);
    return NULL;
}

size_t
envelope_count(const struct envelope *env, enum rcpt_state st)
{
    size_t n = 0;
    for (size_t i = 0; i < env->nrcpt; i++)
        if (env->rcpt[i].state == st)
            n++;
    return n;
}

static int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *
xtext_decode(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(n + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (const char *p = s; *p; p++) {
        if (*p == '+') {
            int h = p[1] ? hexval((unsigned char)p[1]) : -1;
            int l = (h >= 0 && p[2]) ? hexval((unsigned char)p[2]) : -1;
            if (h < 0 || l < 0) {
                free(out);
                return NULL;
            }
            *o++ = (char)(h * 16 + l);
            p += 2;
        } else if ((unsigned char)*p < 33 || (unsigned char)*p > 126 || *p == '=') {
            free(out);
            return NULL;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

char *
xtext_encode(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(n * 3 + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 33 || *p > 126 || *p == '+' || *p == '=')
            o += sprintf(o, "+%02X", *p);
        else
            *o++ = (char)*p;
    }
    *o = '\0';
    return out;
}

int
dsn_notify_parse(const char *s, unsigned *out)
{
    unsigned bits = 0;
    const char *p = s;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 5 && strncasecmp(p, "NEVER", 5) == 0)
            bits |= DSN_NOTIFY_NEVER;
        else if (n == 7 && strncasecmp(p, "SUCCESS", 7) == 0)
            bits |= DSN_NOTIFY_SUCCESS;
        else if (n == 7 && strncasecmp(p, "FAILURE", 7) == 0)
            bits |= DSN_NOTIFY_FAILURE;
        else if (n == 5 && strncasecmp(p, "DELAY", 5) == 0)
            bits |= DSN_NOTIFY_DELAY;
        else
            return -1;
        p += n;
        if (*p == ',')
            p++;
    }
    if (bits == 0 || ((bits & DSN_NOTIFY_NEVER) && bits != DSN_NOTIFY_NEVER))
        return -1;
    *out = bits;
    return 0;
}

void
dsn_notify_format(unsigned bits, char *buf, size_t len)
{
    buf[0] = '\0';
    if (bits & DSN_NOTIFY_NEVER) {
        snprintf(buf, len, "NEVER");
        return;
    }
    const char *names[] = {"SUCCESS", "FAILURE", "DELAY"};
    unsigned flags[] = {DSN_NOTIFY_SUCCESS, DSN_NOTIFY_FAILURE, DSN_NOTIFY_DELAY};
    size_t used = 0;
    for (int i = 0; i < 3; i++) {
        if (bits & flags[i]) {
            int w = snprintf(buf + used, len - used, "%s%s", used ? "," : "", names[i]);
            if (w < 0 || (size_t)w >= len - used)
                return;
            used += (size_t)w;
        }
    }
}
