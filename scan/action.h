/* action.h - what a verdict does with a message, and the config words for it (see action.c). */
#ifndef SR_ACTION_H
#define SR_ACTION_H

#include <stddef.h>

/* Actions a verdict can take. */
enum sr_action {
    SR_ACTION_DELIVER = 0, /* pass as is (tagged Clean) */
    SR_ACTION_TAG,         /* deliver with X-Virus-Status: Infected (...) */
    SR_ACTION_DISCARD,     /* 250 2.7.0 ... discarded */
    SR_ACTION_REJECT,      /* 554 5.7.1 */
    SR_ACTION_STRIP,       /* replace offending part by a notice */
    SR_ACTION_QUARANTINE,  /* into the quarantine store */
    SR_ACTION_DEFER,       /* 451 4.3.0 (scan errors only) */
};

/* "deliver", "tag", "discard", "reject", "strip", "quarantine", "defer"; "?" otherwise. */
const char *sr_action_name(enum sr_action a);
/* A config word ("pass" is deliver) to an action; 0 ok, -1 unknown. */
int sr_action_parse(const char *s, enum sr_action *out);
/*
 * Precedence of an action when findings disagree, higher wins:
 * reject > discard > quarantine > defer > strip > tag > deliver.
 */
int sr_action_rank(enum sr_action a);

/*
 * Register the action words with lib/config (config_set_action_parser):
 * call once before config_load(). error_action accepts only defer and
 * deliver/pass; every other action key any of the seven words.
 */
void sr_action_register(void);

#endif
