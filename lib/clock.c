/*
 * clock.c - clock_mono(): CLOCK_MONOTONIC as seconds in a double, for
 * measuring durations (scan and queue wait times, the relay's delays, the
 * scanner's time budget). Not for dates. Cannot fail on Linux.
 */
#include <time.h>

#include "clock.h"

double
clock_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
