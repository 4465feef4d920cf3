/*
 * verdict.c - the composer: the findings of every checker become one
 * action for the message.
 *
 * Public calls: verdict_compose, scan_kind_name, scan_result_word.
 *
 * Checkers (the virus engine, the size and archive rules; policy rules
 * and the spam scorer next) each add findings that carry the action their
 * own rule asks for. The composer knows no checker and no rule: it ranks
 * actions, reject > discard > quarantine > defer > strip > tag > deliver
 * (action.h), and adds up scores against thresholds it is handed. A new
 * checker needs no change here.
 *
 * Pure: reads the findings, writes *out; no allocation, cannot fail.
 */
#include <stddef.h>

#include "verdict.h"

static const char *const kind_names[] = {"clean", "error",  "limit", "encrypted",
                                         "virus", "policy", "spam"};
static const char *const kind_words[] = {"clean", "error",  "policy", "policy",
                                         "virus", "policy", "spam"};
#define NKINDS (sizeof(kind_names) / sizeof(kind_names[0]))

const char *
scan_kind_name(enum scan_kind k)
{
    return (size_t)k < NKINDS ? kind_names[k] : "?";
}

const char *
scan_result_word(enum scan_kind k)
{
    return (size_t)k < NKINDS ? kind_words[k] : "?";
}

/* Position of kind k in the naming preference (lower names first). */
static size_t
preference(const struct verdict_params *p, enum scan_kind k)
{
    if (p != NULL)
        for (size_t i = 0; i < p->nprefer; i++)
            if (p->prefer[i] == k)
                return i;
    return p != NULL ? p->nprefer : 0;
}

void
verdict_compose(const struct scan_finding *f, size_t n, const struct verdict_params *p,
                struct verdict *out)
{
    enum sr_action score_action = SR_ACTION_DELIVER;
    long top_scored = -1;

    out->action = SR_ACTION_DELIVER;
    out->deciding = -1;
    out->has_score = 0;
    out->score = 0;

    /*
     * Scores: the sum against the thresholds.
     */
    for (size_t i = 0; i < n; i++) {
        if (!f[i].has_score)
            continue;
        out->has_score = 1;
        out->score += f[i].score;
        if (top_scored < 0 || f[i].score > f[top_scored].score)
            top_scored = (long)i;
    }
    if (out->has_score && p != NULL && p->nthresholds > 0) {
        double best = 0;
        int reached = 0;
        for (size_t i = 0; i < p->nthresholds; i++) {
            const struct verdict_threshold *t = &p->thresholds[i];
            if (out->score >= t->score && (!reached || t->score > best)) {
                best = t->score;
                score_action = t->action;
                reached = 1;
            }
        }
    }

    /*
     * Precedence: the strongest action asked for; ties named by kind
     * preference, then by order.
     */
    for (size_t i = 0; i < n; i++) {
        enum sr_action a = f[i].action;
        if (f[i].has_score && p != NULL && p->nthresholds > 0) {
            if ((long)i != top_scored || score_action == SR_ACTION_DELIVER)
                continue; /* the sum speaks through the top scored finding, if at all */
            a = score_action;
        }
        if (a == SR_ACTION_STRIP && f[i].part == 0)
            a = SR_ACTION_TAG;
        int r = sr_action_rank(a), cur = sr_action_rank(out->action);
        if (out->deciding < 0 || r > cur ||
            (r == cur && preference(p, f[i].kind) < preference(p, f[out->deciding].kind))) {
            out->action = a;
            out->deciding = (long)i;
        }
    }
}
