/* policy.h - policy rules (rule "NAME" { } of the config), compiled once per load, run as a
 * checker of the open verdict (see policy.c). */
#ifndef SR_POLICY_H
#define SR_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "scan.h"

struct policy;

/*
 * Compile cfg's rules (regexes with PCRE2 JIT, keywords folded with
 * textfold). NULL with err "FILE:LINE: rule "NAME": why" on a bad rule
 * (unbalanced regex, bad date, unusable entry). A config without rules
 * gives an empty policy (policy_nrules 0). Immutable once built: many
 * threads may run it at once.
 */
struct policy *policy_compile(const struct sr_config *cfg, char *err, size_t errlen);
void policy_free(struct policy *p);

/*
 * Compile cfg's rules and attach the result to cfg (cfg->attach), freed
 * with cfg. 0 ok (also without rules), -1 with err.
 */
int policy_attach(struct sr_config *cfg, char *err, size_t errlen);
/* The policy attached to cfg, or NULL. */
const struct policy *policy_of(const struct sr_config *cfg);

size_t policy_nrules(const struct policy *p);
const char *policy_rule_name(const struct policy *p, size_t i);
uint64_t policy_rule_hits(const struct policy *p, size_t i);

/* The envelope a checker run sees (the checker's arg is a struct policy_run). */
struct policy_run {
    const struct policy *policy;
    const char *sender;            /* envelope sender, "" for <> */
    const char *const *rcpts;      /* envelope recipients */
    size_t nrcpts;
    int dry_run;                   /* 1: findings ask for deliver, no hit counts ("rules test") */
};

/*
 * The checker (struct scan_checker.check, arg a struct policy_run *):
 * evaluates every rule in order, adds one finding (checker "policy", kind
 * SCAN_POLICY, rule = the rule's name, location = where it matched) per
 * matching rule with the rule's action; a rule whose action is deliver
 * stops the evaluation. 0, or -1 out of memory.
 */
int policy_check(void *arg, const struct scan_input *in, struct scan_result *res);

#endif
