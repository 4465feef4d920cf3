/*
 * policy.c - policy rules: rule "NAME" { ... } sections of the config.
 *
 * policy_compile() turns the raw rules of a config (lib/config.c keeps
 * them as written) into an immutable rule set, once per (re)load:
 * keyword entries are folded with textfold (NFKC + casefold, so
 * full-width/half-width forms and case match alike) and split into
 * words, "/regex/" entries are compiled with PCRE2 (UTF, JIT; caseless
 * unless case = yes), address entries are classified (address, @domain,
 * .domain = the domain and its subdomains, glob, /regex/). A bad entry is
 * an error with the config file and the rule's line; the caller keeps its
 * old set.
 *
 * policy_check() is a checker of the open verdict (scan.h): it reads the
 * message once (scan/mime.h), builds the folded Subject, From and the
 * text of every text part (charset from the bytes: ISO-2022-JP escapes,
 * UTF-8, else EUC-JP or Shift_JIS/CP932, so a mislabelled part still
 * reads; HTML reduced to its text), the attachments (decoded name,
 * declared type, true type from libmagic, and the members of archives
 * one level down, by libarchive), then runs the rules in order. All
 * conditions of a rule must hold; an exclude entry that matches cancels
 * the rule. The folded keywords of all rules are one Aho-Corasick
 * automaton: one pass over each folded text marks the words and phrases
 * present, and rules read bits; evaluation allocates nothing per keyword
 * (one bit set per text and one PCRE2 match block per message). Keywords
 * of case = yes rules are searched (strstr) in the unfolded text.
 *
 * Keyword entries (subject, from, body, exclude) with match =
 *   phrase: the entry appears as written (folded);
 *   all:    every word of the entry appears, in any order;
 *   any:    some word of the entry appears;
 * the list matches when one of its entries does.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <iconv.h>
#include <magic.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "action.h"
#include "log.h"
#include "mime.h"
#include "policy.h"
#include "textfold.h"
#include "xmalloc.h"

enum ekind { E_WORDS, E_REGEX, E_ADDR, E_DOMAIN, E_SUBDOMAIN, E_GLOB };

struct entry {
    enum ekind kind;
    char *text;   /* folded keyword / address / domain / glob */
    char **words; /* E_WORDS: the words of text (pointers into wbuf) */
    size_t nwords;
    char *wbuf;
    pcre2_code *re;
    int pid;  /* folded rules: needle of the whole entry (phrase mode), else -1 */
    int *wid; /* folded rules: needle of each word */
};

struct elist {
    struct entry *e;
    size_t n;
};

struct prule {
    const struct sr_config_rule *cr; /* in the config the policy is attached to */
    struct elist l[SR_RL_N];
    enum { M_ANY, M_ALL, M_PHRASE } match;
    int fold; /* case = no */
    time_t expires; /* 0 never; skipped from then on */
    atomic_uint_fast64_t hits;
    atomic_int expired_logged;
};

/*
 * One Aho-Corasick automaton over the folded keywords of every rule (each
 * distinct word or phrase a needle): one pass over each folded text marks
 * the needles present in a bit set, and the rules read their bits.
 */
struct ac_node {
    int child, sibling; /* first child, next sibling (-1 none) */
    int fail, dict;     /* failure link; nearest node on the fail chain with a needle, -1 */
    int needle;         /* needle ending here, -1 */
    unsigned char c;    /* the byte leading here */
};
struct ac {
    struct ac_node *n;
    size_t nn, cap;
    int root_next[256]; /* dense transitions of the root */
    char **needles;     /* id -> text */
    size_t nneedles;
};

struct policy {
    struct prule *r;
    size_t n;
    int need_attachments, need_true_type, need_body;
    struct ac ac;
};

/* ---- the keyword automaton ---- */

static int
ac_new_node(struct ac *a, unsigned char c)
{
    if (a->nn == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 256;
        a->n = xrealloc(a->n, a->cap * sizeof(*a->n));
    }
    a->n[a->nn] = (struct ac_node){-1, -1, 0, -1, -1, c};
    return (int)a->nn++;
}

static int
ac_child(const struct ac *a, int s, unsigned char c)
{
    if (s == 0)
        return a->root_next[c];
    for (int k = a->n[s].child; k >= 0; k = a->n[k].sibling)
        if (a->n[k].c == c)
            return k;
    return -1;
}

/* The needle id of text, added when new. */
static int
ac_needle(struct ac *a, const char *text)
{
    for (size_t i = 0; i < a->nneedles; i++)
        if (strcmp(a->needles[i], text) == 0)
            return (int)i;
    a->needles = xrealloc(a->needles, (a->nneedles + 1) * sizeof(char *));
    a->needles[a->nneedles] = xstrdup(text);
    if (a->nn == 0) {
        ac_new_node(a, 0);
        for (int c = 0; c < 256; c++)
            a->root_next[c] = -1;
    }
    int s = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        int t = ac_child(a, s, *p);
        if (t < 0) {
            t = ac_new_node(a, *p);
            if (s == 0) {
                a->root_next[*p] = t;
            } else {
                a->n[t].sibling = a->n[s].child;
                a->n[s].child = t;
            }
        }
        s = t;
    }
    a->n[s].needle = (int)a->nneedles;
    return (int)a->nneedles++;
}

/* Failure and dictionary links, breadth first. */
static void
ac_build(struct ac *a)
{
    if (a->nn == 0)
        return;
    int *queue = xmalloc(a->nn * sizeof(int));
    size_t qh = 0, qt = 0;
    for (int c = 0; c < 256; c++) {
        int t = a->root_next[c];
        if (t >= 0) {
            a->n[t].fail = 0;
            queue[qt++] = t;
        }
    }
    while (qh < qt) {
        int s = queue[qh++];
        for (int t = a->n[s].child; t >= 0; t = a->n[t].sibling) {
            int f = a->n[s].fail, g;
            while ((g = ac_child(a, f, a->n[t].c)) < 0 && f != 0)
                f = a->n[f].fail;
            a->n[t].fail = g >= 0 && g != t ? g : 0;
            int fl = a->n[t].fail;
            a->n[t].dict = a->n[fl].needle >= 0 ? fl : a->n[fl].dict;
            queue[qt++] = t;
        }
    }
    free(queue);
}

/* Mark in bits the needles found in text. */
static void
ac_scan(const struct ac *a, const char *text, unsigned char *bits)
{
    if (a->nn == 0)
        return;
    int s = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        int t;
        while ((t = ac_child(a, s, *p)) < 0 && s != 0)
            s = a->n[s].fail;
        s = t >= 0 ? t : 0;
        for (int k = a->n[s].needle >= 0 ? s : a->n[s].dict; k >= 0; k = a->n[k].dict) {
            int id = a->n[k].needle;
            bits[id >> 3] |= (unsigned char)(1u << (id & 7));
        }
    }
}

static void
ac_free(struct ac *a)
{
    for (size_t i = 0; i < a->nneedles; i++)
        free(a->needles[i]);
    free(a->needles);
    free(a->n);
}

/* ---- compile ---- */

static int
is_regex(const char *s)
{
    size_t n = strlen(s);
    return n >= 2 && s[0] == '/' && s[n - 1] == '/';
}

static int
has_glob(const char *s)
{
    return strpbrk(s, "*?[") != NULL;
}

static char *
lower_ascii(const char *s)
{
    char *r = xstrdup(s);
    for (char *p = r; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return r;
}

static int
compile_regex(struct entry *e, const char *s, int caseless, char *why, size_t whylen)
{
    size_t n = strlen(s);
    int ec;
    PCRE2_SIZE eo;
    uint32_t flags = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (caseless ? PCRE2_CASELESS : 0);
    e->kind = E_REGEX;
    e->re = pcre2_compile((PCRE2_SPTR)(s + 1), n - 2, flags, &ec, &eo, NULL);
    if (e->re == NULL) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof(msg));
        snprintf(why, whylen, "bad regular expression %s: %s at offset %zu", s, (char *)msg,
                 (size_t)eo);
        return -1;
    }
    pcre2_jit_compile(e->re, PCRE2_JIT_COMPLETE); /* no JIT: the interpreter matches */
    return 0;
}

static int
compile_entry(struct entry *e, int list, const char *s, int fold, char *why, size_t whylen)
{
    memset(e, 0, sizeof(*e));
    e->pid = -1;
    if (s[0] == '\0') {
        snprintf(why, whylen, "empty entry in %s", sr_rule_list_keys[list]);
        return -1;
    }
    if (is_regex(s))
        return compile_regex(e, s, list == SR_RL_SENDER || list == SR_RL_RECIPIENT ||
                                           list >= SR_RL_ATT_NAME || fold,
                             why, whylen);
    switch (list) {
    case SR_RL_SENDER:
    case SR_RL_RECIPIENT:
        e->text = lower_ascii(s);
        if (has_glob(s))
            e->kind = E_GLOB;
        else if (s[0] == '@')
            e->kind = E_DOMAIN;
        else if (s[0] == '.')
            e->kind = E_SUBDOMAIN;
        else if (strchr(s, '@') == NULL) {
            snprintf(why, whylen, "%s entry '%s' is neither an address, @domain, .domain, "
                     "a glob nor a /regex/", sr_rule_list_keys[list], s);
            return -1;
        } else
            e->kind = E_ADDR;
        return 0;
    case SR_RL_ATT_NAME:
    case SR_RL_ATT_TYPE:
    case SR_RL_ATT_TRUE:
        e->kind = E_GLOB;
        e->text = textfold(s);
        return 0;
    default:
        e->kind = E_WORDS;
        e->text = fold ? textfold(s) : xstrdup(s);
        e->wbuf = xstrdup(e->text);
        for (char *save = NULL, *w = strtok_r(e->wbuf, " \t", &save); w;
             w = strtok_r(NULL, " \t", &save)) {
            e->words = xrealloc(e->words, (e->nwords + 1) * sizeof(char *));
            e->words[e->nwords++] = w;
        }
        if (e->nwords == 0) {
            snprintf(why, whylen, "blank entry in %s", sr_rule_list_keys[list]);
            return -1;
        }
        return 0;
    }
}

static void
entry_free(struct entry *e)
{
    free(e->text);
    free(e->words);
    free(e->wbuf);
    free(e->wid);
    if (e->re)
        pcre2_code_free(e->re);
}

/* "YYYY-MM-DD": the rule holds through that day (local time). */
static int
parse_expires(const char *s, time_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    char *end = strptime(s, "%Y-%m-%d", &tm);
    if (end == NULL || *end != '\0')
        return -1;
    tm.tm_mday += 1;
    tm.tm_isdst = -1;
    *out = mktime(&tm);
    return *out == (time_t)-1 ? -1 : 0;
}

void
policy_free(struct policy *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n; i++)
        for (int k = 0; k < SR_RL_N; k++) {
            for (size_t j = 0; j < p->r[i].l[k].n; j++)
                entry_free(&p->r[i].l[k].e[j]);
            free(p->r[i].l[k].e);
        }
    free(p->r);
    ac_free(&p->ac);
    free(p);
}

struct policy *
policy_compile(const struct sr_config *cfg, char *err, size_t errlen)
{
    struct policy *p = xcalloc(1, sizeof(*p));
    char why[400];

    p->n = cfg->nrules;
    p->r = xcalloc(p->n ? p->n : 1, sizeof(*p->r));
    for (size_t i = 0; i < p->n; i++) {
        const struct sr_config_rule *cr = &cfg->rules[i];
        struct prule *r = &p->r[i];
        r->cr = cr;
        r->fold = !cr->case_sensitive;
        r->match = strcmp(cr->match, "all") == 0      ? M_ALL
                   : strcmp(cr->match, "phrase") == 0 ? M_PHRASE
                                                      : M_ANY;
        why[0] = '\0';
        if (cr->action == SR_ACTION_DEFER)
            snprintf(why, sizeof(why), "action defer is for scan errors only");
        if (cr->expires[0] && parse_expires(cr->expires, &r->expires) < 0)
            snprintf(why, sizeof(why), "expires '%s' is not a date YYYY-MM-DD", cr->expires);
        if (cr->tag_header[0] && strchr(cr->tag_header, ':') == NULL)
            snprintf(why, sizeof(why), "tag_header '%s' is not \"Name: value\"", cr->tag_header);
        for (int k = 0; k < SR_RL_N && why[0] == '\0'; k++) {
            r->l[k].e = xcalloc(cr->list[k].n + 1, sizeof(struct entry));
            for (size_t j = 0; j < cr->list[k].n; j++) {
                if (compile_entry(&r->l[k].e[j], k, cr->list[k].v[j], r->fold, why,
                                  sizeof(why)) < 0) {
                    r->l[k].n = j + 1;
                    break;
                }
                r->l[k].n = j + 1;
            }
        }
        if (why[0]) {
            snprintf(err, errlen, "%s:%d: rule \"%s\": %s",
                     cr->file ? cr->file : cfg->path ? cfg->path : "(config)", cr->line, cr->name,
                     why);
            policy_free(p);
            return NULL;
        }
        if (cr->list[SR_RL_ATT_NAME].n || cr->list[SR_RL_ATT_TYPE].n ||
            cr->list[SR_RL_ATT_TRUE].n || cr->min_attachments)
            p->need_attachments = 1;
        if (cr->list[SR_RL_ATT_TRUE].n)
            p->need_true_type = 1;
        if (cr->list[SR_RL_BODY].n || cr->list[SR_RL_EXCLUDE].n)
            p->need_body = 1;
    }

    /* The folded keywords of every rule into one automaton. */
    for (size_t i = 0; i < p->n; i++) {
        struct prule *r = &p->r[i];
        if (!r->fold)
            continue;
        for (int k = 0; k <= SR_RL_EXCLUDE; k++)
            for (size_t j = 0; j < r->l[k].n; j++) {
                struct entry *e = &r->l[k].e[j];
                if (e->kind != E_WORDS)
                    continue;
                e->pid = ac_needle(&p->ac, e->text);
                e->wid = xcalloc(e->nwords, sizeof(int));
                for (size_t w = 0; w < e->nwords; w++)
                    e->wid[w] = ac_needle(&p->ac, e->words[w]);
            }
    }
    ac_build(&p->ac);
    return p;
}

static void
attach_free(void *p)
{
    policy_free(p);
}

int
policy_attach(struct sr_config *cfg, char *err, size_t errlen)
{
    struct policy *p = policy_compile(cfg, err, errlen);
    if (p == NULL)
        return -1;
    if (cfg->attach && cfg->attach_free)
        cfg->attach_free(cfg->attach);
    cfg->attach = p;
    cfg->attach_free = attach_free;
    return 0;
}

const struct policy *
policy_of(const struct sr_config *cfg)
{
    return cfg->attach_free == attach_free ? cfg->attach : NULL;
}

size_t
policy_nrules(const struct policy *p)
{
    return p ? p->n : 0;
}

const char *
policy_rule_name(const struct policy *p, size_t i)
{
    return p->r[i].cr->name;
}

uint64_t
policy_rule_hits(const struct policy *p, size_t i)
{
    return atomic_load(&p->r[i].hits);
}

/* ---- the message as the rules see it ---- */

struct attach {
    char *name;      /* folded name ("" none) */
    char *bare;      /* folded name without bidi controls */
    char *ctype;     /* declared (lowercase), "" for archive members */
    char *truetype;  /* libmagic MIME type, or "" */
    char *where;     /* part path, or part path/member */
    int part;        /* 1-based MIME part */
};

struct view {
    char *subject[2], *from[2]; /* [0] as decoded, [1] folded */
    char *body[2];
    struct attach *a;
    size_t na, nattachments; /* entries; MIME attachments only */
    int nparts;
    const struct scan_input *in;
    const struct sr_config *cfg;
    pcre2_match_data *md;
    unsigned char *bits[3]; /* needles found in subject, from, body (folded) */
    size_t bodylen[2];
};

struct sbuf {
    char *s;
    size_t len, cap;
};

static void
sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 2 > b->cap) {
        b->cap = (b->len + n + 2) * 2;
        b->s = xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static int
valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0)
            k = 1;
        else if ((c & 0xF0) == 0xE0)
            k = 2;
        else if ((c & 0xF8) == 0xF0)
            k = 3;
        else
            return 0;
        if (i + k >= n)
            return 0;
        for (size_t j = 1; j <= k; j++)
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
        i += k + 1;
    }
    return 1;
}

/* Convert with iconv; 0 ok (all input read), -1 not that charset. */
static int
convert(const char *from, const unsigned char *in, size_t n, struct sbuf *out)
{
    iconv_t cd = iconv_open("UTF-8", from);
    if (cd == (iconv_t)-1)
        return -1;
    char buf[4096];
    char *ip = (char *)(uintptr_t)in;
    size_t il = n;
    size_t start = out->len;
    int rc = 0;
    while (il > 0) {
        char *op = buf;
        size_t ol = sizeof(buf);
        size_t r = iconv(cd, &ip, &il, &op, &ol);
        sb_add(out, buf, (size_t)(op - buf));
        if (r == (size_t)-1 && errno != E2BIG) {
            rc = -1;
            break;
        }
    }
    iconv_close(cd);
    if (rc < 0) {
        out->len = start;
        if (out->s)
            out->s[start] = '\0';
    }
    return rc;
}

/* Text of a text part in UTF-8, charset read from the bytes. */
static void
decode_text(const unsigned char *d, size_t n, struct sbuf *out)
{
    int esc = memmem(d, n, "\x1b$", 2) != NULL || memmem(d, n, "\x1b(I", 3) != NULL;
    if (esc && (convert("ISO-2022-JP-3", d, n, out) == 0 || convert("ISO-2022-JP-2", d, n, out) == 0))
        return;
    if (valid_utf8(d, n)) {
        sb_add(out, (const char *)d, n);
        return;
    }
    /* EUC-JP has no byte 0x80-0x8D / 0x90-0xA0 (0x8E, 0x8F lead its rare
     * planes); Shift_JIS lead bytes are 0x81-0x9F, 0xE0-0xFC. */
    int sjis_lead = 0;
    for (size_t i = 0; i < n; i++)
        if (d[i] >= 0x81 && d[i] <= 0x9F && d[i] != 0x8E && d[i] != 0x8F)
            sjis_lead = 1;
    if (!sjis_lead && convert("EUC-JP", d, n, out) == 0)
        return;
    if (convert("CP932", d, n, out) == 0 || convert("EUC-JP", d, n, out) == 0)
        return;
    /* Unknown: ASCII kept, the rest dropped. */
    for (size_t i = 0; i < n; i++)
        if (d[i] < 0x80)
            sb_add(out, (const char *)&d[i], 1);
}

/* HTML to text: tags out, a few entities decoded (in place in b from start). */
static void
html_to_text(struct sbuf *b, size_t start)
{
    char *r = b->s + start, *w = r;
    int intag = 0;
    while (*r) {
        if (intag) {
            if (*r == '>') {
                intag = 0;
                *w++ = ' ';
            }
            r++;
        } else if (*r == '<') {
            intag = 1;
            r++;
        } else if (*r == '&') {
            static const struct { const char *e, *t; } ents[] = {
                {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&nbsp;", " "}, {"&quot;", "\""}};
            size_t i;
            for (i = 0; i < sizeof(ents) / sizeof(ents[0]); i++) {
                size_t l = strlen(ents[i].e);
                if (strncasecmp(r, ents[i].e, l) == 0) {
                    *w++ = ents[i].t[0];
                    r += l;
                    break;
                }
            }
            if (i == sizeof(ents) / sizeof(ents[0]))
                *w++ = *r++;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    b->len = (size_t)(w - b->s);
}

#define TRUE_TYPE_HEAD (16 * 1024)

/* libmagic handle per thread (magic_t is not thread-safe). */
static pthread_key_t magic_key;
static pthread_once_t magic_once = PTHREAD_ONCE_INIT;

static void
magic_close_cb(void *m)
{
    magic_close(m);
}

static void
magic_key_init(void)
{
    pthread_key_create(&magic_key, magic_close_cb);
}

static const char *
true_type(const void *data, size_t len)
{
    pthread_once(&magic_once, magic_key_init);
    magic_t m = pthread_getspecific(magic_key);
    if (m == NULL) {
        m = magic_open(MAGIC_MIME_TYPE | MAGIC_NO_CHECK_COMPRESS | MAGIC_NO_CHECK_TAR |
                       MAGIC_NO_CHECK_JSON | MAGIC_NO_CHECK_CSV | MAGIC_NO_CHECK_TOKENS);
        if (m == NULL)
            return "";
        if (magic_load(m, NULL) < 0) {
            magic_close(m);
            return "";
        }
        pthread_setspecific(magic_key, m);
    }
    /* The head says what a file is (PE, ZIP, PDF, Office...); reading all of a
     * large attachment costs much and tells no more. */
    const char *t = magic_buffer(m, data, len < TRUE_TYPE_HEAD ? len : TRUE_TYPE_HEAD);
    return t ? t : "";
}

/* Name without bidi controls (U+200E/F, U+202A-202E, U+2066-2069). */
static char *
strip_bidi(const char *s)
{
    char *r = xstrdup(s), *w = r;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        if (p[0] == 0xE2 && p[1] == 0x80 && (p[2] == 0x8E || p[2] == 0x8F ||
                                             (p[2] >= 0xAA && p[2] <= 0xAE))) {
            p += 3;
            continue;
        }
        if (p[0] == 0xE2 && p[1] == 0x81 && p[2] >= 0xA6 && p[2] <= 0xA9) {
            p += 3;
            continue;
        }
        *w++ = (char)*p++;
    }
    *w = '\0';
    return r;
}

static void
add_attach(struct view *v, const char *name, const char *ctype, const char *tt, const char *where,
           int part)
{
    v->a = xrealloc(v->a, (v->na + 1) * sizeof(*v->a));
    struct attach *a = &v->a[v->na++];
    a->name = textfold(name ? name : "");
    a->bare = strip_bidi(a->name);
    a->ctype = lower_ascii(ctype ? ctype : "");
    a->truetype = xstrdup(tt ? tt : "");
    a->where = xstrdup(where);
    a->part = part;
}

/* Members of an archive one level down: names and true types. */
static void
archive_members(struct view *v, const struct policy *p, const struct mime_part_info *pi)
{
    struct archive *ar = archive_read_new();
    struct archive_entry *ae;
    archive_read_support_filter_all(ar);
    archive_read_support_format_all(ar);
    if (archive_read_open_memory(ar, pi->data, pi->len) != ARCHIVE_OK) {
        archive_read_free(ar);
        return;
    }
    int count = 0;
    while (count++ < 1000 && archive_read_next_header(ar, &ae) == ARCHIVE_OK) {
        const char *name = archive_entry_pathname_utf8(ae);
        if (name == NULL)
            name = archive_entry_pathname(ae);
        if (archive_entry_filetype(ae) != AE_IFREG)
            continue;
        char head[4096];
        const char *tt = "";
        if (p->need_true_type && !archive_entry_is_encrypted(ae)) {
            la_ssize_t got = archive_read_data(ar, head, sizeof(head));
            if (got > 0)
                tt = true_type(head, (size_t)got);
        }
        char where[1024];
        snprintf(where, sizeof(where), "%s/%s", pi->path, name ? name : "?");
        const char *base = name ? strrchr(name, '/') : NULL;
        add_attach(v, base ? base + 1 : name, "", tt, where, pi->index);
    }
    archive_read_free(ar);
}

struct walk {
    struct view *v;
    const struct policy *p;
    struct sbuf body;
};

static int
walk_cb(void *arg, const struct mime_part_info *pi)
{
    struct walk *w = arg;
    struct view *v = w->v;
    const char *ct = pi->content_type ? pi->content_type : "";
    int is_text = strncmp(ct, "text/", 5) == 0 && pi->filename == NULL;

    v->nparts = pi->index;
    if (is_text && w->p->need_body && !pi->embedded) {
        size_t start = w->body.len;
        decode_text(pi->data, pi->len, &w->body);
        if (strcmp(ct, "text/html") == 0)
            html_to_text(&w->body, start);
        sb_add(&w->body, "\n", 1);
    }
    if (!is_text || pi->filename) {
        v->nattachments++;
        if (w->p->need_attachments) {
            const char *tt = w->p->need_true_type ? true_type(pi->data, pi->len) : "";
            add_attach(v, pi->filename, ct, tt, pi->path, pi->index);
            if (pi->len > 4 && (memcmp(pi->data, "PK\3\4", 4) == 0 ||
                                strstr(tt, "zip") || strstr(tt, "tar") || strstr(tt, "7z") ||
                                strstr(tt, "rar") || strstr(tt, "gzip")))
                archive_members(v, w->p, pi);
        }
    }
    return 0;
}

static void
view_free(struct view *v)
{
    for (int i = 0; i < 2; i++) {
        free(v->subject[i]);
        free(v->from[i]);
        free(v->body[i]);
    }
    for (size_t i = 0; i < v->na; i++) {
        free(v->a[i].name);
        free(v->a[i].bare);
        free(v->a[i].ctype);
        free(v->a[i].truetype);
        free(v->a[i].where);
    }
    free(v->a);
    for (int i = 0; i < 3; i++)
        free(v->bits[i]);
    if (v->md)
        pcre2_match_data_free(v->md);
}

static void
view_build(struct view *v, const struct policy *p, const struct scan_input *in)
{
    const struct sr_config *cfg = in->cfg;
    char err[256];
    struct walk w = {v, p, {NULL, 0, 0}};

    v->subject[0] = xstrdup(in->subject ? in->subject : "");
    v->from[0] = xstrdup(in->hdr_from ? in->hdr_from : "");
    v->md = pcre2_match_data_create(1, NULL);
    struct mime_msg *m = in->mime;
    if (m == NULL && (p->need_body || p->need_attachments))
        m = mime_parse_mem(in->msg, in->len, (int)cfg->scan.max_mime_depth,
                           (int)cfg->scan.max_mime_parts, err, sizeof(err));
    if (m) {
        if (in->subject == NULL) {
            free(v->subject[0]);
            v->subject[0] = xstrdup(mime_subject(m));
        }
        if (p->need_body || p->need_attachments)
            mime_walk(m, walk_cb, &w);
        if (m != in->mime)
            mime_free(m);
    }
    v->body[0] = w.body.s ? w.body.s : xstrdup("");
    v->subject[1] = textfold(v->subject[0]);
    v->from[1] = textfold(v->from[0]);
    v->body[1] = textfold(v->body[0]);
    v->bodylen[0] = strlen(v->body[0]);
    v->bodylen[1] = strlen(v->body[1]);
    size_t nb = (p->ac.nneedles + 7) / 8 + 1;
    v->bits[0] = xcalloc(nb, 1);
    v->bits[1] = xcalloc(nb, 1);
    v->bits[2] = xcalloc(nb, 1);
    ac_scan(&p->ac, v->subject[1], v->bits[0]);
    ac_scan(&p->ac, v->from[1], v->bits[1]);
    if (p->need_body)
        ac_scan(&p->ac, v->body[1], v->bits[2]);
}

/* ---- matching ---- */

static int
re_match(const struct view *v, pcre2_code *re, const char *s)
{
    size_t n = s == v->body[0] ? v->bodylen[0] : s == v->body[1] ? v->bodylen[1] : strlen(s);
    return pcre2_match(re, (PCRE2_SPTR)s, n, 0, 0, v->md, NULL) >= 0;
}

static int
has(const char *text, const char *needle)
{
    return strstr(text, needle) != NULL;
}

#define BIT(b, id) (((b)[(id) >> 3] >> ((id) & 7)) & 1)

/*
 * A keyword list on one text (already folded when the rule folds; bits:
 * the needles of the automaton found in it, for folded rules).
 */
static int
kw_match(const struct view *v, const struct prule *r, const struct elist *l, const char *text,
         const unsigned char *bits)
{
    for (size_t i = 0; i < l->n; i++) {
        const struct entry *e = &l->e[i];
        if (e->kind == E_REGEX) {
            if (re_match(v, e->re, text))
                return 1;
            continue;
        }
        if (e->wid != NULL) {
            size_t j;
            if (r->match == M_PHRASE) {
                if (BIT(bits, e->pid))
                    return 1;
            } else if (r->match == M_ALL) {
                for (j = 0; j < e->nwords && BIT(bits, e->wid[j]); j++)
                    ;
                if (j == e->nwords)
                    return 1;
            } else {
                for (j = 0; j < e->nwords; j++)
                    if (BIT(bits, e->wid[j]))
                        return 1;
            }
            continue;
        }
        if (r->match == M_PHRASE) {
            if (has(text, e->text))
                return 1;
        } else if (r->match == M_ALL) {
            size_t j;
            for (j = 0; j < e->nwords && has(text, e->words[j]); j++)
                ;
            if (j == e->nwords)
                return 1;
        } else {
            for (size_t j = 0; j < e->nwords; j++)
                if (has(text, e->words[j]))
                    return 1;
        }
    }
    return 0;
}

static int
addr_match(const struct view *v, const struct elist *l, const char *addr)
{
    char a[512];
    size_t n = strlen(addr);
    if (n >= sizeof(a))
        n = sizeof(a) - 1;
    for (size_t i = 0; i < n; i++)
        a[i] = (char)tolower((unsigned char)addr[i]);
    a[n] = '\0';
    const char *at = strrchr(a, '@');
    const char *dom = at ? at + 1 : "";
    for (size_t i = 0; i < l->n; i++) {
        const struct entry *e = &l->e[i];
        switch (e->kind) {
        case E_REGEX:
            if (re_match(v, e->re, a))
                return 1;
            break;
        case E_ADDR:
            if (strcmp(a, e->text) == 0)
                return 1;
            break;
        case E_DOMAIN:
            if (strcmp(dom, e->text + 1) == 0)
                return 1;
            break;
        case E_SUBDOMAIN: {
            size_t dl = strlen(dom), el = strlen(e->text);
            if (strcmp(dom, e->text + 1) == 0 || (dl > el && strcmp(dom + dl - el, e->text) == 0))
                return 1;
            break;
        }
        case E_GLOB:
            if (fnmatch(e->text, a, 0) == 0)
                return 1;
            break;
        default:
            break;
        }
    }
    return 0;
}

static int
glob_match(const struct view *v, const struct elist *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++) {
        const struct entry *e = &l->e[i];
        if (e->kind == E_REGEX ? re_match(v, e->re, s) : fnmatch(e->text, s, 0) == 0)
            return 1;
    }
    return 0;
}

/* Does attachment a meet every attachment condition of r? */
static int
attach_match(const struct view *v, const struct prule *r, const struct attach *a)
{
    if (r->l[SR_RL_ATT_NAME].n && !glob_match(v, &r->l[SR_RL_ATT_NAME], a->name) &&
        !glob_match(v, &r->l[SR_RL_ATT_NAME], a->bare))
        return 0;
    if (r->l[SR_RL_ATT_TYPE].n && !glob_match(v, &r->l[SR_RL_ATT_TYPE], a->ctype))
        return 0;
    if (r->l[SR_RL_ATT_TRUE].n && !glob_match(v, &r->l[SR_RL_ATT_TRUE], a->truetype))
        return 0;
    return 1;
}

/* Evaluate r; 1 matched (where set), 0 not. */
static int
rule_match(const struct view *v, const struct policy_run *run, const struct prule *r,
           const char **where, int *part)
{
    const struct sr_config_rule *cr = r->cr;
    const struct scan_input *in = v->in;
    int f = r->fold;

    *where = "message";
    *part = 0;
    if (cr->min_size && (int64_t)in->len < cr->min_size)
        return 0;
    if (cr->max_size && (int64_t)in->len > cr->max_size)
        return 0;
    if (cr->min_recipients && (int64_t)(run->nrcpts ? run->nrcpts : (size_t)in->nrcpts) <
                                  cr->min_recipients)
        return 0;
    if (cr->min_attachments && (int64_t)v->nattachments < cr->min_attachments)
        return 0;
    if (r->l[SR_RL_SENDER].n) {
        if (run->sender == NULL || !addr_match(v, &r->l[SR_RL_SENDER], run->sender))
            return 0;
        *where = "sender";
    }
    if (r->l[SR_RL_RECIPIENT].n) {
        size_t i;
        for (i = 0; i < run->nrcpts && !addr_match(v, &r->l[SR_RL_RECIPIENT], run->rcpts[i]); i++)
            ;
        if (i == run->nrcpts)
            return 0;
        *where = "recipient";
    }
    if (r->l[SR_RL_SUBJECT].n) {
        if (!kw_match(v, r, &r->l[SR_RL_SUBJECT], v->subject[f], v->bits[0]))
            return 0;
        *where = "header Subject";
    }
    if (r->l[SR_RL_FROM].n) {
        if (!kw_match(v, r, &r->l[SR_RL_FROM], v->from[f], v->bits[1]))
            return 0;
        *where = "header From";
    }
    if (r->l[SR_RL_BODY].n) {
        if (!kw_match(v, r, &r->l[SR_RL_BODY], v->body[f], v->bits[2]))
            return 0;
        *where = "body";
    }
    if (r->l[SR_RL_ATT_NAME].n || r->l[SR_RL_ATT_TYPE].n || r->l[SR_RL_ATT_TRUE].n) {
        size_t i;
        for (i = 0; i < v->na && !attach_match(v, r, &v->a[i]); i++)
            ;
        if (i == v->na)
            return 0;
        *where = v->a[i].where;
        *part = v->a[i].part;
    }
    if (r->l[SR_RL_EXCLUDE].n) {
        /* Exclusion: any mode, as phrases. */
        struct prule ph = *r;
        ph.match = M_PHRASE;
        if (kw_match(v, &ph, &r->l[SR_RL_EXCLUDE], v->subject[f], v->bits[0]) ||
            kw_match(v, &ph, &r->l[SR_RL_EXCLUDE], v->body[f], v->bits[2]))
            return 0;
    }
    return 1;
}

int
policy_check(void *arg, const struct scan_input *in, struct scan_result *res)
{
    const struct policy_run *run = arg;
    const struct policy *p = run->policy;
    struct view v;
    time_t now = time(NULL);
    int rc = 0;

    if (p == NULL || p->n == 0)
        return 0;
    memset(&v, 0, sizeof(v));
    v.in = in;
    v.cfg = in->cfg;
    view_build(&v, p, in);
    for (size_t i = 0; i < p->n; i++) {
        struct prule *r = &p->r[i];
        const struct sr_config_rule *cr = r->cr;
        const char *where;
        int part;
        if (r->expires && now >= r->expires) {
            if (atomic_exchange(&r->expired_logged, 1) == 0)
                log_info("policy: rule \"%s\" expired on %s; skipped", cr->name, cr->expires);
            continue;
        }
        if (!rule_match(&v, run, r, &where, &part))
            continue;
        if (!run->dry_run)
            atomic_fetch_add(&r->hits, 1);
        enum sr_action act = run->dry_run ? SR_ACTION_DELIVER : (enum sr_action)cr->action;
        if (act == SR_ACTION_STRIP && (part < 1 || (size_t)part > res->nparts))
            act = SR_ACTION_TAG;
        struct scan_finding_in fi = {
            .checker = "policy",
            .rule = cr->name,
            .kind = SCAN_POLICY,
            .action = act,
            .name = cr->reject_text[0] ? cr->reject_text : "matched",
            .location = where,
            .part = act == SR_ACTION_STRIP ? part : 0,
        };
        if (scan_add_finding(res, &fi) < 0) {
            rc = -1;
            break;
        }
        if (!run->dry_run && cr->action == SR_ACTION_TAG && cr->tag_header[0]) {
            const char *colon = strchr(cr->tag_header, ':');
            char name[128];
            snprintf(name, sizeof(name), "%.*s", (int)(colon - cr->tag_header), cr->tag_header);
            const char *val = colon + 1;
            while (*val == ' ')
                val++;
            if (scan_add_header(res, name, val) < 0) {
                rc = -1;
                break;
            }
        }
        if (cr->action == SR_ACTION_DELIVER)
            break; /* an allow rule: later rules are not evaluated */
    }
    view_free(&v);
    return rc;
}
