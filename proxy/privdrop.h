/* privdrop.h - never run as root: drop to the configured user (see privdrop.c). */
#ifndef SR_PRIVDROP_H
#define SR_PRIVDROP_H

#include <stdio.h>

struct sr_config;

int privdrop_prepare(const struct sr_config *cfg, char *err, size_t errlen);
int privdrop_pending(void);
int privdrop_drop(char *err, size_t errlen);
int privdrop_check(const struct sr_config *cfg, FILE *out);

#endif
