/* verdict.h - findings of the checkers, and the composer that turns them into one action (see
 * verdict.c). */
#ifndef SR_VERDICT_H
#define SR_VERDICT_H

#include <stddef.h>
#include <stdint.h>

#include "action.h"

/*
 * Kinds of findings. An open list, not a ladder: the composer goes by the
 * actions the rules ask for, never by the kind. A new checker may add a
 * kind at the end.
 */
enum scan_kind {
    SCAN_CLEAN = 0, /* no finding (a verdict's kind only) */
    SCAN_ERROR,     /* a part could not be scanned (libclamav error, timeout, parse) */
    SCAN_LIMIT,     /* a size rule / archive budget limit was hit */
    SCAN_ENCRYPTED, /* an encrypted archive (content unchecked) */
    SCAN_VIRUS,     /* a signature matched */
    SCAN_POLICY,    /* a policy rule matched */
    SCAN_SPAM,      /* a spam score */
};
/* "clean", "error", "limit", "encrypted", "virus", "policy", "spam". */
const char *scan_kind_name(enum scan_kind k);
/* The log line's result=: "clean", "error", "policy" (limit, encrypted, policy), "virus", "spam".
 */
const char *scan_result_word(enum scan_kind k);

/*
 * Who a rule asks to be told (a policy rule's notify = {...}): a checker
 * ORs these into scan_result.notify; the pipeline sends the notices
 * (queue/notice.h NOTICE_TO_* has the same values).
 */
#define SCAN_NOTIFY_ADMIN 0x1
#define SCAN_NOTIFY_RCPTS 0x2
#define SCAN_NOTIFY_SENDER 0x4

/* One thing a checker found. */
struct scan_finding {
    const char *checker; /* static: "virus", "limits", "scan"; later "policy", "spam" */
    char *rule;          /* the rule whose action it carries: "virus", "file_size",
                            "declared_size", "mime_parts", "encrypted", "error", ... */
    enum scan_kind kind;
    enum sr_action action; /* what the rule asks for (from its config) */
    int has_score;
    double score;         /* when has_score */
    char *name;           /* virus name, rule, "encrypted", or the error text */
    char *location;       /* "invoice.zip/docs/a.exe"; the part path; "message"; a header */
    int part;             /* MIME part index (1-based), 0 = the message as a whole */
    int64_t value, limit; /* limit rules: value reached and threshold */
};

/* A score threshold: a total score of at least score asks for action. */
struct verdict_threshold {
    double score;
    enum sr_action action;
};

/* What the composer is given besides the findings. */
struct verdict_params {
    const struct verdict_threshold *thresholds; /* any order; none: a scored finding
                                                   asks for its own action */
    size_t nthresholds;
    /* Which finding names the verdict when several ask for the same
     * action: the first whose kind comes first here (kinds not listed
     * after those listed), then the first added. */
    const enum scan_kind *prefer;
    size_t nprefer;
};

/* The composed verdict. */
struct verdict {
    enum sr_action action; /* DELIVER when no finding asks for more */
    long deciding;         /* index of the deciding finding, -1 when none */
    int has_score;         /* some finding had a score */
    double score;          /* their sum */
};

/*
 * Compose findings f[0..n) into one action. Precedence, strongest first:
 * reject > discard > quarantine > defer > strip > tag > deliver
 * (sr_action_rank). A finding of the message as a whole (part 0) that asks
 * for strip counts as tag: there is no part to cut out. Findings with a
 * score are summed; with thresholds, the highest threshold the sum reaches
 * gives their action (none reached: deliver), carried by the scored
 * finding with the largest score (a sum that reaches no threshold names
 * nothing); without thresholds each asks for its own action. The deciding
 * finding is one that asks for the winning action (ties by
 * params->prefer, then order), so a finding that asks for deliver still
 * names the verdict when no finding asks for more. Scan errors are findings
 * like any other: their action is scan.error_action (defer or deliver).
 * Pure function; p may be NULL.
 */
void verdict_compose(const struct scan_finding *f, size_t n, const struct verdict_params *p,
                     struct verdict *out);

#endif
