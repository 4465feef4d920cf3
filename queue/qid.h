/* qid.h - queue IDs, unique over time (see qid.c). */
#ifndef SR_QID_H
#define SR_QID_H

#include <stddef.h>

#define QID_LEN 14 /* uppercase hex digits */

/* Next ID into buf (at least QID_LEN+1 bytes). Single-threaded (event loop). */
void qid_next(char *buf);
/* 1 if s looks like a queue ID. */
int qid_valid(const char *s);

#endif
