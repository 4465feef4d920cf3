#!/usr/bin/env python3
"""
restart_queue - mail in scanrelay's own queue goes out right after a
restart, without `scanrelay flush` (issue 13, item 2).

RESTART_QUEUE_MESSAGES (default 300, the bar) messages are taken into
custody while the downstream is down, with minimal_backoff_time and
queue_run_delay far beyond the test (300 s), so only the new daemon's
start-up probe and the probes that follow can get them out. The daemon is
stopped (SIGTERM, or SIGKILL), restarted while the downstream is still
down, then the downstream (smtp-sink) comes back: the whole queue must
drain within probe_interval + 5 s of its return, and every message that
got a 250 arrives. A third case restarts with the downstream already up:
the start-up probe alone flushes everything. A fourth has a long
probe_interval (120 s) and no probe in time: one new message relayed
after the downstream's return wakes the whole queue.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Raw, SmtpSink, check, check_eq, run_tests, wait_for  # noqa: E402
from queue_util import (SenderPool, dump_message_ids, kill9, make_message,  # noqa: E402
                        queue_count, queue_daemon, send_one)

MESSAGES = int(os.environ.get("RESTART_QUEUE_MESSAGES", "300"))
PROBE = 3  # probe_interval, seconds
SLOW = {"queue_run_delay": Raw("300s"), "minimal_backoff_time": Raw("300s"),
        "maximal_backoff_time": Raw("600s"), "probe_interval": Raw("%ds" % PROBE),
        "max_parallel": 20}


def fill_queue(ctx, queue=SLOW):
    """A daemon whose downstream is down, holding MESSAGES messages in custody."""
    d = queue_daemon(ctx, queue=queue)
    pool = SenderPool(d.port, nthreads=6, size=2048, tag="restart")
    pool.release(MESSAGES)
    check(pool.wait_idle(240), "the senders did not finish within 240 s")
    pool.stop()
    check_eq(len(pool.accepted), MESSAGES, "messages answered 250 during the outage")
    check(all("deferred" in t for t in pool.accepted.values()),
          "every message should have been taken into custody (deferred)")
    check_eq(queue_count(d), MESSAGES, "queue files before the restart")
    return d, pool


def drain_after_restart(ctx, stop):
    d, pool = fill_queue(ctx)
    stop(d)
    check_eq(queue_count(d), MESSAGES, "queue files after the daemon stopped")
    mark = len(d.log())
    d.start()
    # The start-up probe finds the downstream still down (it says so in the log).
    d.wait_log(r"status=deferred", timeout=30, since=mark)
    sink = SmtpSink(ctx, port=d.relay_port)
    t0 = time.time()
    wait_for(lambda: queue_count(d) == 0, PROBE + 5 + 30,
             "the queue to drain after the downstream came back (%d left)" % queue_count(d),
             interval=0.1)
    took = time.time() - t0
    print("  %d messages drained %.1f s after the downstream came back (bar %d s)"
          % (MESSAGES, took, PROBE + 5), flush=True)
    check(took <= PROBE + 5, "the queue drained in %.1f s, more than probe_interval + 5 s" % took)
    got = dump_message_ids(sink.dumpdir)
    missing = [m for m in pool.accepted if got[m] == 0]
    check(not missing, "%d accepted message(s) never arrived, e.g. %s" % (len(missing),
                                                                         missing[:3]))
    d.stop()


def test_sigterm_restart_drains(ctx):
    drain_after_restart(ctx, lambda d: d.stop())


def test_sigkill_restart_drains(ctx):
    drain_after_restart(ctx, kill9)


def test_restart_with_downstream_up(ctx):
    d, pool = fill_queue(ctx)
    d.stop()
    sink = SmtpSink(ctx, port=d.relay_port)
    t0 = time.time()
    d.start()
    wait_for(lambda: queue_count(d) == 0, 30,
             "the queue to drain after a restart with the downstream up (%d left)"
             % queue_count(d), interval=0.1)
    took = time.time() - t0
    print("  %d messages drained %.1f s after the restart" % (MESSAGES, took), flush=True)
    check(took <= 5 + 5, "the queue drained in %.1f s after the restart" % took)
    got = dump_message_ids(sink.dumpdir)
    check_eq(sum(1 for m in pool.accepted if got[m]), MESSAGES, "messages at the sink")
    d.stop()


def test_relayed_mail_wakes_the_queue(ctx):
    q = dict(SLOW, probe_interval=Raw("120s"))
    d, pool = fill_queue(ctx, queue=q)
    d.stop()
    mark = len(d.log())
    d.start()
    d.wait_log(r"status=deferred", timeout=30, since=mark)  # the start-up probe failed
    sink = SmtpSink(ctx, port=d.relay_port)
    t0 = time.time()
    r = send_one(d.port, "live@example.com", ["rcpt@example.org"],
                 make_message("<live-1@restart-integ.example>"))
    check(r.code == 250 and "relayed" in r.text, "the new message is relayed: %r" % r)
    wait_for(lambda: queue_count(d) == 0, 30,
             "the queue to drain after a message was relayed (%d left)" % queue_count(d),
             interval=0.1)
    took = time.time() - t0
    print("  %d queued messages drained %.1f s after a new message was relayed "
          "(probe_interval 120 s)" % (MESSAGES, took), flush=True)
    check(took <= 10, "the queue drained in %.1f s" % took)
    got = dump_message_ids(sink.dumpdir)
    check_eq(sum(1 for m in pool.accepted if got[m]), MESSAGES, "messages at the sink")
    d.stop()


if __name__ == "__main__":
    run_tests(globals())
