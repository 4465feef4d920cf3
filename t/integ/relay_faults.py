#!/usr/bin/env python3
"""
relay_faults - downstream failures as the upstream client sees them.

smtp-sink injects the faults: -f CMDS answers 5xx (text set with -B),
-r CMDS 4xx, -q CMDS drops the connection, -Q CMDS says 421 and drops it.
A downstream 5xx comes back to the client as sent; every temporary failure
is judged by expect_tempfail() alone.
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Raw, RawSink, Scanrelayd, SmtpClient, SmtpSink, check, check_eq,  # noqa: E402
                     fail, free_port, leftover_files, port_refuses, run_tests, simple_message)


# ============================================================================
# THE TEMPFAIL EXPECTATION - the one place that says what a client sees when
# the downstream hop fails temporarily (4xx, dropped connection, nobody
# listening).
#   "451":     issue 2 (relay spine, no custody): the client gets 451 4.4.x
#              and nothing is queued.
#   "custody": SPEC.md (later issue): the message is written to the deferred
#              queue and the client gets 250 ... queued as ID; the queue file
#              exists and the log line says status=deferred.
# The daemon under test already takes custody, so "custody" is the default;
# SCANRELAY_TEMPFAIL=451 selects the issue-2 expectation.
# ============================================================================
TEMPFAIL_MODE = os.environ.get("SCANRELAY_TEMPFAIL", "custody")


def expect_tempfail(tx, what, d, before, nmessages=1):
    """tx: the harness Tx of the upstream transaction; before: d.spool_files() earlier."""
    new = leftover_files(before, d.spool_files())
    if TEMPFAIL_MODE == "451":
        r = tx.first_error
        if r is None:
            fail("%s: expected a 451 4.4.x temporary failure, the transaction succeeded: %r"
                 % (what, tx))
        check(r.code == 451 and (r.enhanced or "").startswith("4.4."),
              "%s: expected '451 4.4.x ...', got %r (transaction %r)" % (what, r.line(), tx))
        check_eq(new, [], "%s: files left in state/queue dirs" % what)
        return None
    check(tx.first_error is None and tx.final is not None and tx.final.code == 250,
          "%s: expected custody (250 ... queued as ID), got %r" % (what, tx))
    m = re.search(r"queued as ([0-9A-Za-z]+)", tx.final.text)
    check(m, "%s: no 'queued as ID' in %r" % (what, tx.final.line()))
    qid = m.group(1)
    check(any(os.path.basename(f) == qid or qid in f for f in new),
          "%s: no queue file for %s among the new files %r" % (what, qid, new))
    check_eq(len(new), nmessages, "%s: new files in state/queue dirs %r" % (what, new))
    l = d.wait_message_logs(lambda l: l.qid == qid)[0]
    check_eq(l.get("status"), "deferred", "%s: log status for %s (%s)" % (what, qid, l))
    return qid


HARD = "554 5.7.9 Downstream says no (integ test)"
MSG_COUNTER = [0]


def one_tx(d, rcpts=("rcpt@example.org",), sender="sender@example.com"):
    """EHLO + one transaction on a fresh connection; returns (client, Tx)."""
    c = SmtpClient(d.port, timeout=40)
    check_eq(c.ehlo("faults.example").code, 250, "EHLO")
    MSG_COUNTER[0] += 1
    tx = c.transaction(sender, list(rcpts), simple_message("fault %d" % MSG_COUNTER[0]))
    return c, tx


def session_goes_on(c, what):
    """After a failed transaction the session is still usable."""
    r = c.cmd("RSET")
    check_eq(r.code, 250, "%s: RSET after the failure" % what)
    r = c.cmd("NOOP")
    check_eq(r.code, 250, "%s: NOOP after the failure" % what)


def hard_case(ctx, stage):
    sink = SmtpSink(ctx, faults={"f": stage, "B": HARD})
    d = Scanrelayd(ctx, relay_port=sink.port, relay_timeout=Raw("15s"))
    before = d.spool_files()
    c, tx = one_tx(d)
    r = tx.first_error
    check(r is not None, "downstream 5xx at %s: the transaction succeeded: %r" % (stage, tx))
    check_eq(r.line(), HARD, "downstream 5xx at %s passed back (code, enhanced code, text)" % stage)
    session_goes_on(c, "5xx at %s" % stage)
    c.quit()
    if stage != ".":
        # smtp-sink keeps the dump of a transaction that reached "." even when it refuses ".";
        # an open (unfinished) transaction's file is not a delivery
        time.sleep(0.3)
        check_eq(sink.dumps(), [], "messages at smtp-sink after 5xx at %s" % stage)
    check_eq(leftover_files(before, d.spool_files()), [], "5xx at %s: files left in state/queue "
             "dirs" % stage)
    d.stop()


def test_5xx_at_mail(ctx):
    hard_case(ctx, "MAIL")


def test_5xx_at_rcpt(ctx):
    hard_case(ctx, "RCPT")


def test_5xx_at_data(ctx):
    hard_case(ctx, "DATA")


def test_5xx_at_end_of_data(ctx):
    hard_case(ctx, ".")


def temp_case(ctx, faults, what):
    sink = SmtpSink(ctx, faults=faults)
    d = Scanrelayd(ctx, relay_port=sink.port, relay_timeout=Raw("15s"))
    before = d.spool_files()
    c, tx = one_tx(d)
    expect_tempfail(tx, what, d, before)
    session_goes_on(c, what)
    c.quit()
    check(d.alive(), "%s: scanrelayd died" % what)
    d.stop()


def test_4xx_at_mail(ctx):
    temp_case(ctx, {"r": "MAIL"}, "downstream 4xx at MAIL")


def test_4xx_at_rcpt(ctx):
    temp_case(ctx, {"r": "RCPT"}, "downstream 4xx at RCPT")


def test_4xx_at_data(ctx):
    temp_case(ctx, {"r": "DATA"}, "downstream 4xx at DATA")


def test_4xx_at_end_of_data(ctx):
    temp_case(ctx, {"r": "."}, "downstream 4xx at end of data")


def test_4xx_greeting(ctx):
    temp_case(ctx, {"r": "CONNECT"}, "downstream 4xx greeting")


def test_disconnect_at_connect(ctx):
    temp_case(ctx, {"q": "CONNECT"}, "downstream drops the connection at once")


def test_disconnect_at_mail(ctx):
    temp_case(ctx, {"q": "MAIL"}, "downstream drops the connection at MAIL")


def test_disconnect_at_data(ctx):
    temp_case(ctx, {"q": "DATA"}, "downstream drops the connection at DATA")


def test_disconnect_at_end_of_data(ctx):
    temp_case(ctx, {"q": "."}, "downstream drops the connection at end of data")


def test_421_at_rcpt(ctx):
    temp_case(ctx, {"Q": "RCPT"}, "downstream 421 + disconnect at RCPT")


def test_421_at_end_of_data(ctx):
    temp_case(ctx, {"Q": "."}, "downstream 421 + disconnect at end of data")


def test_no_downstream(ctx):
    port = free_port()
    check(port_refuses(port), "port %d should refuse connections" % port)
    d = Scanrelayd(ctx, relay_port=port)
    before = d.spool_files()
    c, tx = one_tx(d)
    expect_tempfail(tx, "no downstream (connection refused)", d, before)
    session_goes_on(c, "no downstream")
    # a second transaction on the same session fails the same way, nothing hangs
    MSG_COUNTER[0] += 1
    tx2 = c.transaction("again@example.com", ["rcpt@example.org"], simple_message("again"))
    expect_tempfail(tx2, "no downstream, second transaction", d, before, nmessages=2)
    c.quit()
    d.stop()


def test_recovers_after_downstream_returns(ctx):
    """Nothing listening, then smtp-sink appears on that port: the next message goes through
    (and with custody the held one is delivered too, exactly once)."""
    sink_port = free_port()
    d = Scanrelayd(ctx, relay_port=sink_port,
                   sections={"queue": {"queue_run_delay": Raw("1s"),
                                       "minimal_backoff_time": Raw("1s"),
                                       "maximal_backoff_time": Raw("2s")}})
    before = d.spool_files()
    c, tx = one_tx(d, sender="early@example.com")
    expect_tempfail(tx, "no downstream yet", d, before)
    c.quit()
    sink = SmtpSink(ctx, port=sink_port)  # on the very port scanrelayd relays to
    c, tx = one_tx(d, sender="later@example.com")
    check(tx.first_error is None and tx.final.code == 250, "after the downstream came back: %r" % tx)
    c.quit()
    want = ["later@example.com"] if TEMPFAIL_MODE == "451" else ["early@example.com",
                                                                  "later@example.com"]
    sink.wait_dumps(len(want), timeout=30)
    time.sleep(2.5)  # one more queue run: nothing is delivered twice
    check_eq(sorted(x.sender for x in sink.dumps()), want, "senders delivered")
    check_eq(leftover_files(before, d.spool_files()), [], "files left in state/queue dirs")
    d.stop()


BAD_RCPT_REPLY = "550 5.1.1 <bad@example.org>: Recipient address rejected: User unknown"


def test_some_recipients_refused(ctx):
    """good1, bad, good2: the client gets 250; the refused one is logged status=bounced."""
    def policy(verb, line, tx):
        if verb == "RCPT" and "<bad@example.org>" in line:
            return BAD_RCPT_REPLY
        return None
    raw = RawSink(ctx, policy=policy)
    d = Scanrelayd(ctx, relay_port=raw.port)
    mark = d.log_mark()
    c = SmtpClient(d.port)
    c.ehlo("partial.example")
    tx = c.transaction("partial@example.com",
                       ["good1@example.org", "bad@example.org", "good2@example.org"],
                       simple_message("partial"))
    c.quit()
    check(tx.final is not None and tx.final.code == 250,
          "final reply with 2 of 3 recipients accepted downstream: %r" % tx)
    bad_upstream = tx.rcpts[1]
    txs = raw.wait_txs(1)
    check_eq(len(txs), 1, "downstream transactions")
    got = sorted(l.split(":", 1)[1].split()[0] for l in txs[0].rcpts)
    check_eq(got, ["<good1@example.org>", "<good2@example.org>"], "recipients accepted downstream")
    if bad_upstream.code == 250:
        # store-and-forward: the refusal shows in the log as a bounce
        l = d.wait_message_logs(lambda l: l.get("to") == "bad@example.org", since=mark)[0]
        check_eq(l.get("status"), "bounced", "status of the refused recipient in %s" % l)
        check_eq(l.get("dsn"), "5.1.1", "dsn= of the refused recipient in %s" % l)
        check(BAD_RCPT_REPLY in l.get("status_text", ""),
              "the downstream reply in the log line: %s" % l)
    else:
        check_eq(bad_upstream.line(), BAD_RCPT_REPLY, "the refused RCPT passed back")
    for good in ("good1@example.org", "good2@example.org"):
        l = d.wait_message_logs(lambda l, g=good: l.get("to") == g, since=mark)[0]
        check_eq(l.get("status"), "sent", "status of %s in %s" % (good, l))
    d.stop()


def test_all_recipients_refused(ctx):
    reply = "550 5.1.1 Recipient unknown here (integ test)"
    sink = SmtpSink(ctx, faults={"f": "RCPT", "B": reply})
    d = Scanrelayd(ctx, relay_port=sink.port, relay_timeout=Raw("15s"))
    c, tx = one_tx(d, rcpts=("a@example.org", "b@example.org"))
    r = tx.first_error
    check(r is not None, "all recipients refused downstream, yet: %r" % tx)
    check_eq(r.line(), reply, "the downstream 5xx passed back")
    check(tx.final is None or tx.final.code != 250, "250 although nothing was delivered: %r" % tx)
    session_goes_on(c, "all recipients refused")
    c.quit()
    time.sleep(0.3)
    check_eq(sink.dumps(), [], "messages at smtp-sink")
    d.stop()


def test_downstream_5xx_then_good_transaction(ctx):
    """A refused transaction does not poison the next one on the same client session."""
    def policy(verb, line, tx):
        if verb == "MAIL" and "<refuse@example.com>" in line:
            return "553 5.7.1 <refuse@example.com>: Sender address rejected: not allowed"
        return None
    raw = RawSink(ctx, policy=policy)
    d = Scanrelayd(ctx, relay_port=raw.port)
    c = SmtpClient(d.port)
    c.ehlo("mixed.example")
    tx1 = c.transaction("refuse@example.com", ["r@example.org"], simple_message("refused"))
    check(tx1.first_error is not None, "refused sender accepted: %r" % tx1)
    check_eq(tx1.first_error.line(),
             "553 5.7.1 <refuse@example.com>: Sender address rejected: not allowed",
             "downstream MAIL refusal passed back")
    tx2 = c.transaction("fine@example.com", ["r@example.org"], simple_message("fine"))
    check(tx2.first_error is None and tx2.final.code == 250, "next transaction: %r" % tx2)
    c.quit()
    raw.wait_txs(1)
    time.sleep(0.3)
    check_eq([t.mail.split()[1] for t in raw.txs], ["FROM:<fine@example.com>"],
             "downstream transactions (MAIL commands)")
    check_eq(len(raw.txs), 1, "downstream transactions completed")
    d.stop()


if __name__ == "__main__":
    run_tests(globals())
