/*
 * action.c - the actions a verdict can take, their config words and
 * their precedence.
 *
 * Public calls: sr_action_name, sr_action_parse, sr_action_rank,
 * sr_action_register.
 *
 * Precedence (sr_action_rank), strongest first: reject > discard >
 * quarantine > defer > strip > tag > deliver. defer is only ever asked
 * for by scan errors (scan.error_action): it ranks below what a rule
 * would do to stop the message, and above delivering a part unchecked.
 *
 * lib/config.c reads the action keys of the file without knowing what
 * they mean; sr_action_register() hands it the parser below, which also
 * holds scan.error_action to defer or deliver/pass. No state but the
 * constant tables; thread-safe.
 */
#include <stdio.h>
#include <string.h>

#include "action.h"
#include "config.h"

static const char *const action_names[] = {
    [SR_ACTION_DELIVER] = "deliver", [SR_ACTION_TAG] = "tag",
    [SR_ACTION_DISCARD] = "discard", [SR_ACTION_REJECT] = "reject",
    [SR_ACTION_STRIP] = "strip",     [SR_ACTION_QUARANTINE] = "quarantine",
    [SR_ACTION_DEFER] = "defer",
};

#define NACTIONS (sizeof(action_names) / sizeof(action_names[0]))

const char *
sr_action_name(enum sr_action a)
{
    if ((size_t)a < NACTIONS && action_names[a])
        return action_names[a];
    return "?";
}

int
sr_action_parse(const char *s, enum sr_action *out)
{
    if (strcmp(s, "pass") == 0) {
        *out = SR_ACTION_DELIVER;
        return 0;
    }
    for (size_t i = 0; i < NACTIONS; i++) {
        if (action_names[i] && strcmp(s, action_names[i]) == 0) {
            *out = (enum sr_action)i;
            return 0;
        }
    }
    return -1;
}

int
sr_action_rank(enum sr_action a)
{
    switch (a) {
    case SR_ACTION_REJECT:
        return 6;
    case SR_ACTION_DISCARD:
        return 5;
    case SR_ACTION_QUARANTINE:
        return 4;
    case SR_ACTION_DEFER:
        return 3;
    case SR_ACTION_STRIP:
        return 2;
    case SR_ACTION_TAG:
        return 1;
    default:
        return 0;
    }
}

/* The hook lib/config calls for every action key. */
static int
config_word(const char *key, const char *word, int *code, char *why, size_t whylen)
{
    enum sr_action a;

    if (strcmp(key, "error_action") == 0) {
        if (sr_action_parse(word, &a) < 0 || (a != SR_ACTION_DEFER && a != SR_ACTION_DELIVER)) {
            snprintf(why, whylen, "scan error_action must be defer or pass");
            return -1;
        }
    } else if (sr_action_parse(word, &a) < 0) {
        snprintf(why, whylen, "deliver, tag, discard, reject, strip, quarantine or defer");
        return -1;
    }
    *code = (int)a;
    return 0;
}

void
sr_action_register(void)
{
    config_set_action_parser(config_word);
}
