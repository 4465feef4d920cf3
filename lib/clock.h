/* clock.h - the one monotonic clock (see clock.c). */
#ifndef SR_CLOCK_H
#define SR_CLOCK_H

/* Seconds since an arbitrary fixed point (CLOCK_MONOTONIC); for durations only. */
double clock_mono(void);

#endif
