/*
 * qid.c - queue IDs. An ID is the time of its creation in microseconds as
 * 14 uppercase hex digits (good until the year 2540), bumped by one when
 * the clock has not moved or went back, so IDs are unique and ordered over
 * the life of the queue even across restarts (as long as the clock does not
 * go back across a restart). They match Postfix's short-ID pattern
 * [0-9A-F]+, so log tools written for Postfix pick them up.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "qid.h"

static uint64_t qid_last;

void
qid_next(char *buf)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    uint64_t now = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
    if (now <= qid_last)
        now = qid_last + 1;
    qid_last = now;
    snprintf(buf, QID_LEN + 1, "%014llX", (unsigned long long)now);
}

int
qid_valid(const char *s)
{
    size_t n = strlen(s);
    if (n != QID_LEN)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]) || islower((unsigned char)s[i]))
            return 0;
    return 1;
}
