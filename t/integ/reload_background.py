#!/usr/bin/env python3
"""
reload_background.py - configuration reloads while background work runs
(issue 9, item 4: every job owns what it reads).

Worker jobs of the queue manager (custody writes, DSN writes, post-delivery
file updates) and quarantine releases used to read the daemon's current
configuration (d->cfg) from their worker thread; a reload could free that
configuration while such a job ran. This test reloads the configuration 50
times, alternating SIGHUP and `scanrelay reload`, while:

  * queue retries run (messages in custody for retry@ are accepted once the
    downstream stops answering 451 for them),
  * DSNs are written: on the first attempt (one recipient accepted, one
    refused with 550: bounce-now DSN) and from the queue (qbounce@ gets 451
    at first, then 550 on a retry: the DSN is written by the queue file
    update job),
  * quarantined EICAR messages are released one after another,
  * new messages keep arriving (transactions in flight during reloads).

Under the ASan build: no sanitizer report (harness checks the daemon's log
on stop), the counters of `scanrelay status` add up, and nothing lost: every message sent is delivered downstream,
bounced (one DSN each, to the sender) or released, counted by a test header
(X-Reload-ID) at the downstream (harness.RawSink).

On the code before the fix (workers read d->cfg, freed at reload when no
transaction was in flight) this test passed 4 runs out of 4 under ASan: the
window is a pointer load and a few path formats, too short to hit at this
speed. Under ThreadSanitizer (build with -fsanitize=thread, same test) it
failed: 14 data-race reports (write_dsn and release_work reading a config
that daemon_reload's config_free freed, queue_file_create formatting a
freed queue_directory) and one release answered "cannot queue the released
copy: No such file or directory". With every job holding its reference:
no report under either sanitizer.

Run: SCANRELAY_BUILD=build-asan SCANRELAY_SRC=. python3 t/integ/reload_background.py
"""
import os
import re
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import scan_util as su  # noqa: E402
from harness import RawSink, Raw, check, check_eq, run_tests, wait_for  # noqa: E402
from queue_util import cli, cli_ok, queue_count  # noqa: E402

SENDER = "sender@example.com"
RELOADS = 50
N_QUAR = 16      # quarantined, then released during the reloads
N_RETRY = 16     # in custody, delivered by a queue retry
N_QBOUNCE = 8    # in custody, bounced by a queue retry (DSN from the queue)
N_NOW = 8        # partial first attempt before the reloads (bounce-now DSN)
N_LIVE = 16      # sent during the reloads, partial first attempt too

MID_RE = re.compile(rb"(?im)^X-Reload-ID:\s*(<[^>]+>)")


def mid(tag, i):
    return "<reload-%s-%d.%d@reload-integ.example>" % (tag, i, os.getpid())


def clean_mail(msgid, rcpt):
    m = su.mime_message([su.text_part()], subject="reload test",
                        extra_headers="X-Reload-ID: %s\r\n" % msgid)
    return m.replace(b"To: Rcpt <rcpt@example.org>", ("To: <%s>" % rcpt).encode(), 1)


def eicar_mail(msgid):
    parts = [su.text_part(), su.attachment("invoice.exe", su.EICAR + b"\r\n" + msgid.encode())]
    return su.mime_message(parts, subject="reload virus",
                           extra_headers="X-Reload-ID: %s\r\n" % msgid)


class Downstream:
    """RawSink policy: retry@ and qbounce@ get 451 until opened; then qbounce@ gets 550."""

    def __init__(self, ctx):
        self.open = False
        self.sink = RawSink(ctx, policy=self.policy)

    def policy(self, verb, line, tx):
        if verb != "RCPT":
            return None
        if "bounce@" in line and "qbounce@" not in line:
            return "550 5.1.1 <bounce@example.org>: no such user (integ)"
        if "retry@" in line or "qbounce@" in line:
            if not self.open:
                return "451 4.3.0 try again later (integ)"
            if "qbounce@" in line:
                return "550 5.1.1 <qbounce@example.org>: no such user (integ)"
        return None

    def delivered(self):
        """(msgid, rcpt) pairs delivered, and the original msgids of DSNs (MAIL FROM:<>)."""
        got, dsns = [], []
        for tx in list(self.sink.txs):
            if not tx.rcpts or tx.message is None:
                continue
            ids = MID_RE.findall(tx.message)
            if tx.mail and "<>" in tx.mail:
                # The returned message's headers carry its X-Reload-ID.
                orig = [x.decode() for x in ids if b"reload-" in x]
                dsns.append(orig[0] if orig else None)
                continue
            for r in tx.rcpts:
                addr = re.sub(r"(?i)^RCPT TO:<([^>]*)>.*$", r"\1", r)
                got.append((ids[0].decode() if ids else None, addr))
        return got, dsns


def send_final(d, msg, rcpts, what, code=250, prefix=None):
    tx = su.send(d.port, msg, sender=SENDER, rcpts=rcpts)
    r = su.expect_final(tx, code, what, prefix)
    return su.reply_qid(r)


def test_reload_during_background_work(ctx):
    ds = Downstream(ctx)
    q = {"queue_run_delay": Raw("1s"), "minimal_backoff_time": Raw("1s"),
         "maximal_backoff_time": Raw("1s"), "probe_interval": Raw("1s"),
         "min_free_space": Raw("1M")}
    d = su.scanning_daemon(ctx, ds.sink.port, virus={"action": Raw("quarantine")}, start=False)
    d.sections["queue"] = q
    d.write_config()
    d.start()

    # Background work to come: quarantined messages, messages in custody.
    quarantined = []
    for i in range(N_QUAR):
        quarantined.append(send_final(d, eicar_mail(mid("quar", i)), ["rcpt@example.org"],
                                      "EICAR %d" % i, prefix="250 2.7.0 Ok: quarantined as "))
    for i in range(N_RETRY):
        send_final(d, clean_mail(mid("retry", i), "retry@example.org"), ["retry@example.org"],
                   "retry %d (custody)" % i)
    for i in range(N_QBOUNCE):
        send_final(d, clean_mail(mid("qbounce", i), "qbounce@example.org"),
                   ["qbounce@example.org"], "qbounce %d (custody)" % i)
    for i in range(N_NOW):
        send_final(d, clean_mail(mid("now", i), "ok@example.org"),
                   ["ok@example.org", "bounce@example.org"], "bounce-now %d" % i)
    # The bounce-now DSNs leave the queue; the custody messages stay.
    wait_for(lambda: queue_count(d) == N_RETRY + N_QBOUNCE, 60,
             "%d messages in the queue before the reloads" % (N_RETRY + N_QBOUNCE))

    # Now the downstream takes retry@ and refuses qbounce@ for good; the
    # queue runs every second from here on.
    ds.open = True
    errors = []

    def releaser():
        try:
            for qid in quarantined:
                rc, out, err = cli(d, "quarantine", "release", qid)
                if rc != 0:
                    errors.append("release %s: %d %s %s" % (qid, rc, out, err))
        except Exception as e:  # noqa: BLE001
            errors.append("releaser: %r" % e)

    def sender():
        try:
            for i in range(N_LIVE):
                tx = su.send(d.port, clean_mail(mid("live", i), "ok@example.org"), sender=SENDER,
                             rcpts=["ok@example.org", "bounce@example.org"])
                if tx.final is None or tx.final.code != 250:
                    errors.append("live %d: %s" % (i, su.final_line(tx)))
        except Exception as e:  # noqa: BLE001
            errors.append("sender: %r" % e)

    threads = [threading.Thread(target=releaser), threading.Thread(target=sender)]
    for t in threads:
        t.start()
    for i in range(RELOADS):
        mark = d.log_mark()
        if i % 2 == 0:
            d.signal(signal.SIGHUP)
            d.wait_log(r"reload: configuration .* reloaded", timeout=30, since=mark)
        else:
            cli_ok(d, "reload")
        check(d.alive(), "scanrelayd died at reload %d" % (i + 1))
    for t in threads:
        t.join(300)
    check_eq(errors, [], "errors of the release and sender threads")

    # Nothing lost: count at the downstream.
    want_dsns = N_NOW + N_LIVE + N_QBOUNCE

    def complete():
        got, dsns = ds.delivered()
        return (got, dsns) if len(got) >= N_QUAR + N_RETRY + N_NOW + N_LIVE and \
            len(dsns) >= want_dsns else None
    wait_for(complete, 120, "every message delivered, released or bounced")
    wait_for(lambda: queue_count(d) == 0, 60, "an empty queue")
    got, dsns = ds.delivered()
    want = sorted([(mid("quar", i), "rcpt@example.org") for i in range(N_QUAR)] +
                  [(mid("retry", i), "retry@example.org") for i in range(N_RETRY)] +
                  [(mid("now", i), "ok@example.org") for i in range(N_NOW)] +
                  [(mid("live", i), "ok@example.org") for i in range(N_LIVE)])
    check_eq(sorted(got), want, "deliveries at the downstream (X-Reload-ID, recipient)")
    want_d = sorted([mid("now", i) for i in range(N_NOW)] +
                    [mid("live", i) for i in range(N_LIVE)] +
                    [mid("qbounce", i) for i in range(N_QBOUNCE)])
    check_eq(sorted(x or "?" for x in dsns), want_d, "DSNs at the downstream (X-Reload-ID of the original)")
    released = cli_ok(d, "-j", "quarantine", "list", "--state", "released")
    check_eq(len([x for x in released.splitlines() if x.strip()]), N_QUAR,
             "quarantine list --state released")
    n = len(re.findall(r"reload: configuration .* reloaded", d.log()))
    check_eq(n, RELOADS, "reloads logged")
    # The counters (lib/counter.c registry) say the same in `scanrelay status`.
    sent = N_QUAR + N_RETRY + N_QBOUNCE + N_NOW + N_LIVE
    m = re.search(r"(?m)^messages: (\d+) received, (\d+) relayed, (\d+) rejected, "
                  r"(\d+) deferred, (\d+) bounced, (\d+) quarantined, (\d+) discarded$",
                  cli_ok(d, "status"))
    check(m, "scanrelay status: no 'messages:' line in the format of the counters")
    check_eq([int(x) for x in m.groups()],
             [sent, N_NOW + N_LIVE, 0, N_RETRY + N_QBOUNCE, N_NOW + N_LIVE, N_QUAR, 0],
             "scanrelay status: received, relayed, rejected, deferred, bounced, quarantined, "
             "discarded")
    d.stop()


if __name__ == "__main__":
    run_tests(globals())
