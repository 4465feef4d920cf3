#!/usr/bin/env python3
"""
queue_bounce - permanent failures and expiry from the queue send an RFC
3464 DSN to the sender; none for the null sender; held mail stays held.

  (a) a queued message meets a 5xx on its retry: a DSN (multipart/report;
      report-type=delivery-status, Action: failed, Final-Recipient: rfc822;
      RCPT, From MAILER-DAEMON, envelope sender <>) goes to the original
      sender through the same downstream. Three variants:
        - smtp-sink -f RCPT: the retry and the log lines; the DSN itself is
          refused by the same -f RCPT sink and, being from <>, dies there
          without a DSN of its own;
        - smtp-sink -f .: smtp-sink keeps the dump of a transaction that
          reached "." even when it refuses it, so the DSN's bytes and
          envelope show up at the real smtp-sink;
        - 5xx at RCPT for the recipient only, the DSN accepted: needs
          harness.RawSink, because smtp-sink cannot refuse one address and
          accept another (-f applies to every RCPT).
  (b) expiry (maximal_queue_lifetime = 2s) with the downstream answering 4xx
      or away: "status=expired, returned to sender" and a DSN that says so.
  (c) a null-sender message that fails permanently gets no DSN.
  (d) hold/release: held mail is not delivered by flush nor expired, is
      listed with "!", and goes out when released.
  (e) partial first attempt: one recipient accepted, one refused with 5xx
      (harness.RawSink, for the same reason as above): 250 upstream, one
      delivery, a DSN for the refused recipient.
  (f) the other administrator verbs: requeue, delete, hold/release ALL,
      unknown IDs.
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (RawSink, Raw, SmtpSink, check, check_eq, fail, free_port,  # noqa: E402
                     run_tests, split_args, wait_for)
from queue_util import (Dsn, check_dsn, cli, cli_ok, dump_message_ids, make_message,  # noqa: E402
                        queue_daemon, queue_files, queue_json, queue_listing, send_one,
                        send_queued, wait_queue_empty)

SENDER = "sender@example.com"
RCPT = "rcpt@example.org"
HARD = "550 5.1.1 <rcpt@example.org>: Recipient address rejected: no such user (integ)"


def msgid(tag):
    return "<bounce-%s.%d.%d@queue-integ.example>" % (tag, os.getpid(), int(time.time() * 1000))


def no_retry_queue(**kw):
    """Only flush, the probe or the recovery deliver (no timed retries)."""
    q = {"queue_run_delay": Raw("1h"), "minimal_backoff_time": Raw("1h"),
         "maximal_backoff_time": Raw("2h"), "probe_interval": Raw("1h")}
    q.update(kw)
    return q


def wait_log(d, regex, timeout=20, since=0):
    return d.wait_log(regex, timeout=timeout, since=since)


def dsn_id_of(d, qid, timeout=20):
    m = wait_log(d, r"%s: sender non-delivery notification: ([0-9A-Za-z]+)" % qid, timeout)
    return m.group(1)


def complete_dumps(sink):
    return sink.dumps(complete_only=True)


def test_5xx_at_rcpt_on_retry_smtp_sink(ctx):
    relay_port = free_port()
    d = queue_daemon(ctx, relay_port=relay_port, queue=no_retry_queue())
    qid = send_queued(d, msgid("rcpt5xx"))
    check_eq(queue_files(d, "deferred"), [qid], "deferred/ while the downstream is away")
    sink = SmtpSink(ctx, port=relay_port, faults={"f": "RCPT", "B": HARD})
    cli_ok(d, "flush")
    wait_log(d, r"%s: to=<%s>, relay=[^,]*, .*dsn=5\.1\.1, status=bounced \(.*550"
             % (qid, re.escape(RCPT)))
    dsn_id = dsn_id_of(d, qid)
    # The DSN goes to the sender through the same downstream, which refuses every RCPT:
    # it is dropped (a bounce is never bounced), and the queue ends empty.
    wait_log(d, r"%s: to=<%s>, relay=.*status=bounced" % (dsn_id, re.escape(SENDER)))
    wait_queue_empty(d, 20)
    time.sleep(1)
    check(not re.search(r"%s: sender non-delivery notification" % dsn_id, d.log()),
          "the DSN %s (from <>) got a DSN of its own" % dsn_id)
    check_eq(complete_dumps(sink), [], "smtp-sink dumps with -f RCPT")
    d.stop()


def test_5xx_at_dot_on_retry_dsn_at_smtp_sink(ctx):
    relay_port = free_port()
    d = queue_daemon(ctx, relay_port=relay_port, queue=no_retry_queue())
    mid = msgid("dot5xx")
    qid = send_queued(d, mid)
    sink = SmtpSink(ctx, port=relay_port, faults={"f": ".", "B": HARD})
    cli_ok(d, "flush")
    wait_log(d, r"%s: to=<%s>, .*status=bounced" % (qid, re.escape(RCPT)))
    dsn_id = dsn_id_of(d, qid)
    wait_log(d, r"%s: to=<%s>, .*status=bounced" % (dsn_id, re.escape(SENDER)))
    wait_queue_empty(d, 20)
    time.sleep(1)
    dumps = complete_dumps(sink)
    check_eq(len(dumps), 2, "smtp-sink dumps (the message, then its DSN; nothing more)")
    orig = [x for x in dumps if x.header("Message-ID") == mid]
    dsns = [x for x in dumps if x.header("Message-ID") != mid]
    check_eq(len(orig), 1, "dumps of the original message")
    check_eq(len(dsns), 1, "dumps of the DSN")
    x = dsns[0]
    check_eq(x.recipients, [SENDER], "DSN envelope recipient (the original sender)")
    check_dsn(x.message, x.sender, RCPT, "DSN at smtp-sink (5xx at '.')")
    ct = x.header("Content-Type") or ""
    check(re.match(r"(?i)multipart/report;\s*report-type=\"?delivery-status\"?", ct),
          "DSN Content-Type header: %r" % ct)
    check(mid.encode() in x.message, "the DSN does not return the original message (Message-ID)")
    check(not re.search(r"%s: sender non-delivery notification" % dsn_id, d.log()),
          "the DSN %s (from <>) got a DSN of its own" % dsn_id)
    d.stop()


def test_5xx_at_rcpt_on_retry_dsn_delivered(ctx):
    # smtp-sink cannot refuse one address and accept another: harness.RawSink does.
    def policy(verb, line, tx):
        if verb == "RCPT" and RCPT in line:
            return HARD
        return None
    relay_port = free_port()
    d = queue_daemon(ctx, relay_port=relay_port, queue=no_retry_queue())
    mid = msgid("rawsink")
    qid = send_queued(d, mid)
    # RawSink picks its own port: point the daemon at it by restarting with a new config.
    d.stop()
    raw = RawSink(ctx, policy=policy)
    d.top["relay"] = "127.0.0.1:%d" % raw.port
    d.write_config()
    d.start()
    cli_ok(d, "flush")
    txs = raw.wait_txs(1, 20)
    wait_queue_empty(d, 20)
    time.sleep(0.5)
    # With PIPELINING the refused transaction still reaches DATA at this fake server
    # (it answers 354 even with no valid recipient) and our client sends an empty
    # message, as RFC 2920 wants: only transactions with an accepted RCPT count.
    txs = [t for t in raw.txs if t.rcpts]
    for t in raw.txs:
        if not t.rcpts:
            check_eq(t.wire, b"", "DATA sent after every RCPT was refused (should be empty)")
    check_eq(len(txs), 1, "transactions with accepted recipients at the downstream (the DSN)")
    t = txs[0]
    check_eq(split_args(t.mail[len("MAIL FROM:"):])[0], "", "DSN envelope sender")
    check_eq([split_args(l[len("RCPT TO:"):])[0] for l in t.rcpts], [SENDER],
             "DSN envelope recipient")
    dsn = check_dsn(t.message, "", RCPT, "DSN after 5xx at RCPT on retry")
    check("550 5.1.1" in (dsn.rcpt(RCPT).get("diagnostic-code") or ""),
          "Diagnostic-Code should carry the downstream's reply: %r" % dsn.rcpt(RCPT))
    check_eq(dsn.rcpt(RCPT).get("status", "").strip(), "5.1.1", "DSN Status")
    check(mid.encode() in t.message, "the DSN does not return the original message")
    check(re.search(r"%s: to=<%s>, .*status=bounced" % (qid, re.escape(RCPT)), d.log()),
          "no status=bounced log line for %s" % qid)
    d.stop()


def expiry_case(ctx, faults):
    relay_port = free_port()
    d = queue_daemon(ctx, relay_port=relay_port,
                     queue={"maximal_queue_lifetime": Raw("2s"), "queue_run_delay": Raw("1s"),
                            "minimal_backoff_time": Raw("1s"), "maximal_backoff_time": Raw("1s"),
                            "probe_interval": Raw("1s")})
    sink = SmtpSink(ctx, port=relay_port, faults=faults) if faults else None
    mid = msgid("expire")
    if sink is not None:
        r = send_one(d.port, SENDER, [RCPT], make_message(mid))
        check(r.code == 250 and "deferred" in r.text, "4xx downstream: expected 250 (deferred), "
              "got %r" % r)
        qid = re.search(r"queued as (\w+)", r.text).group(1)
    else:
        qid = send_queued(d, mid)
    wait_log(d, r"%s: to=<%s>, .*status=expired, returned to sender" % (qid, re.escape(RCPT)),
             timeout=20)
    dsn_id = dsn_id_of(d, qid)
    # The downstream answers again: the DSN goes out.
    if sink is not None:
        sink.stop()
    sink = SmtpSink(ctx, port=relay_port, name="sink2")
    cli_ok(d, "flush")
    dumps = sink.wait_dumps(1, 20)
    wait_queue_empty(d, 20)
    time.sleep(0.5)
    dumps = complete_dumps(sink)
    check_eq(len(dumps), 1, "messages at smtp-sink after the expiry (the DSN only)")
    x = dumps[0]
    check_eq(x.recipients, [SENDER], "DSN envelope recipient")
    dsn = check_dsn(x.message, x.sender, RCPT, "expiry DSN", expect_status="4.4.7")
    check(re.search(r"(?i)expired", dsn.human),
          "the human-readable part of the expiry DSN does not say it expired: %r" % dsn.human)
    check(x.header("Message-ID") != mid, "the original message was delivered after expiry")
    check(re.search(r"%s: to=<%s>, .*status=sent" % (dsn_id, re.escape(SENDER)), d.log()),
          "no status=sent log line for the DSN %s" % dsn_id)
    d.stop()


def test_expiry_downstream_4xx(ctx):
    expiry_case(ctx, {"r": "RCPT"})


def test_expiry_downstream_away(ctx):
    expiry_case(ctx, None)


def test_expiry_while_down_returns_every_message(ctx):
    # Postfix returns every message past maximal_queue_lifetime at its next queue
    # run, whether or not the destination answers. While our downstream is away only
    # one message per probe_interval is tried; expiry must not wait for those probes
    # (with the defaults, 100,000 messages at one per 10s would take 11 days to
    # return after their 5 days).
    relay_port = free_port()
    d = queue_daemon(ctx, relay_port=relay_port,
                     queue={"maximal_queue_lifetime": Raw("2s"), "queue_run_delay": Raw("1s"),
                            "minimal_backoff_time": Raw("1s"), "maximal_backoff_time": Raw("1s"),
                            "probe_interval": Raw("3s")})
    ids = [send_queued(d, msgid("expdown%d" % i)) for i in range(10)]
    t0 = time.time()

    def expired():
        log = d.log()
        return [q for q in ids if re.search(r"%s: to=<[^>]*>, .*status=expired, returned to "
                                            r"sender" % q, log)]
    try:
        wait_for(lambda: len(expired()) == len(ids), 8,
                 "all %d messages past maximal_queue_lifetime (2s) returned" % len(ids))
    except AssertionError:
        fail("downstream away, maximal_queue_lifetime = 2s, queue_run_delay = 1s, "
             "probe_interval = 3s: %d of %d messages returned to the sender %.0fs after "
             "they were queued (expected all within a few queue runs after 2s)"
             % (len(expired()), len(ids), time.time() - t0))
    d.stop()


def test_delay_warning(ctx):
    """delay_warning_time: a message still deferred after it gets one 'Action: delayed' DSN
    (RFC 3464) and stays queued; no second warning on the next retry."""
    soft = "450 4.2.0 <rcpt@example.org>: mailbox busy (integ)"
    def policy(verb, line, tx):
        if verb == "RCPT" and RCPT in line:
            return soft
        return None
    raw = RawSink(ctx, policy=policy)
    d = queue_daemon(ctx, relay_port=raw.port,
                     queue={"delay_warning_time": Raw("1s"), "queue_run_delay": Raw("1s"),
                            "minimal_backoff_time": Raw("1s"), "maximal_backoff_time": Raw("1s")})
    mid = msgid("delay")
    r = send_one(d.port, SENDER, [RCPT], make_message(mid))
    check(r.code == 250 and "deferred" in r.text, "4xx downstream: expected 250 (deferred), got %r"
          % r)
    qid = re.search(r"queued as (\w+)", r.text).group(1)
    m = wait_log(d, r"%s: sender delay notification: ([0-9A-F]+)" % qid, timeout=20)
    dsn_id = m.group(1)
    wait_log(d, r"%s: to=<%s>, .*status=sent" % (dsn_id, re.escape(SENDER)), timeout=20)
    txs = [t for t in raw.txs if t.rcpts and t.message]
    check_eq(len(txs), 1, "messages accepted downstream (the delay warning only)")
    t = txs[0]
    check_eq(split_args(t.mail[len("MAIL FROM:"):])[0], "", "warning envelope sender")
    dsn = Dsn(t.message)
    check_eq(dsn.content_type, "multipart/report", "warning Content-Type")
    rr = dsn.rcpt(RCPT)
    check(rr is not None, "no Final-Recipient %s in the warning: %r" % (RCPT, dsn.per_rcpt))
    check_eq((rr.get("action") or "").strip().lower(), "delayed", "warning Action")
    check((rr.get("status") or "").strip().startswith("4."), "warning Status: %r" % rr)
    # Still queued, retried, and warned only once.
    time.sleep(3)
    check(re.search(r"%s: to=<%s>, .*status=deferred" % (qid, re.escape(RCPT)), d.log()),
          "the message should still be retried")
    check_eq(len(re.findall(r"%s: sender delay notification" % qid, d.log())), 1,
             "delay warnings for %s" % qid)
    d.stop()


def test_null_sender_no_dsn(ctx):
    relay_port = free_port()
    d = queue_daemon(ctx, relay_port=relay_port, queue=no_retry_queue())
    mid = msgid("null")
    r = send_one(d.port, "", [RCPT], make_message(mid, sender="MAILER-DAEMON@example.com"))
    check(r.code == 250 and "deferred" in r.text, "null sender during the outage: %r" % r)
    qid = re.search(r"queued as (\w+)", r.text).group(1)
    lst = queue_listing(d)
    check_eq(lst.by_id(qid)["sender"], "MAILER-DAEMON", "sender column of a null-sender message")
    # -f . keeps the dump of a refused transaction: a DSN, if any, would show up.
    sink = SmtpSink(ctx, port=relay_port, faults={"f": ".", "B": HARD})
    cli_ok(d, "flush")
    wait_log(d, r"%s: to=<%s>, .*status=bounced" % (qid, re.escape(RCPT)))
    wait_queue_empty(d, 20)
    time.sleep(2)
    check(not re.search(r"%s: sender non-delivery notification" % qid, d.log()),
          "a DSN was made for a null-sender message")
    dumps = complete_dumps(sink)
    check_eq([x.header("Message-ID") for x in dumps], [mid],
             "messages at smtp-sink (the null-sender message, no DSN)")
    d.stop()


def test_hold_release(ctx):
    relay_port = free_port()
    d = queue_daemon(ctx, relay_port=relay_port,
                     queue={"maximal_queue_lifetime": Raw("2s"), "queue_run_delay": Raw("1s"),
                            "minimal_backoff_time": Raw("1s"), "maximal_backoff_time": Raw("1s"),
                            "probe_interval": Raw("1s")})
    held_mid, other_mid = msgid("held"), msgid("other")
    held = send_queued(d, held_mid)
    other = send_queued(d, other_mid)
    out = cli_ok(d, "queue", "hold", held)
    check("held" in out, "scanrelay queue hold output: %r" % out)
    check_eq(queue_files(d, "hold"), [held], "hold/")
    check_eq(queue_files(d, "deferred"), [other], "deferred/")
    lst = queue_listing(d)
    check(lst.by_id(held) is not None and lst.by_id(held)["held"],
          "held message not listed with '!': %r" % lst.entries)
    check(not lst.by_id(other)["held"], "the other message is listed as held")
    rows = dict((o["queue_id"], o["queue_name"]) for o in queue_json(d))
    check_eq(rows, {held: "hold", other: "deferred"}, "JSON queue_name per message")
    # Past the lifetime while held: the other message expires, the held one does not.
    wait_log(d, r"%s: to=<.*status=expired, returned to sender" % other, timeout=20)
    dsn_id = dsn_id_of(d, other)
    sink = SmtpSink(ctx, port=relay_port)
    cli_ok(d, "flush")
    rc, out, err = cli(d, "flush", held)
    time.sleep(3)
    c = dump_message_ids(os.path.join(ctx.dir, "sink-dump"))
    check_eq(c[held_mid], 0, "held message delivered by flush")
    check_eq(queue_files(d, "hold"), [held], "hold/ after flush")
    check(not re.search(r"%s: .*status=expired" % held, d.log()), "the held message expired")
    check(any(x.recipients == [SENDER] for x in complete_dumps(sink)),
          "the expiry DSN %s for the other message did not arrive" % dsn_id)
    out = cli_ok(d, "queue", "release", held)
    check("released" in out, "scanrelay queue release output: %r" % out)
    wait_queue_empty(d, 20)
    time.sleep(0.5)
    c = dump_message_ids(os.path.join(ctx.dir, "sink-dump"))
    check_eq(c[held_mid], 1, "released message delivered once")
    check(re.search(r"%s: released from hold" % held, d.log()), "no 'released from hold' log line")
    d.stop()


def test_partial_first_attempt(ctx):
    bad = "bad@example.org"
    good = "good@example.org"
    # smtp-sink cannot refuse one recipient and accept another: harness.RawSink does.
    HARD_BAD = "550 5.1.1 <%s>: Recipient address rejected: User unknown" % bad

    def policy(verb, line, tx):
        if verb == "RCPT" and bad in line:
            return HARD_BAD
        return None
    raw = RawSink(ctx, policy=policy)
    d = queue_daemon(ctx, relay_port=raw.port, queue=no_retry_queue())
    mid = msgid("partial")
    r = send_one(d.port, SENDER, [good, bad], make_message(mid, rcpt=good))
    check(r.code == 250, "one recipient accepted, one refused: expected 250, got %r" % r)
    wait_for(lambda: len([t for t in raw.txs if t.rcpts]) >= 2, 20,
             "the message and the DSN at the downstream")
    time.sleep(1)
    txs = [t for t in raw.txs if t.rcpts]
    check_eq(len(txs), 2, "transactions at the downstream (the message, then the DSN)")
    orig = [t for t in txs if mid.encode() in t.message and b"multipart/report" not in t.message]
    dsns = [t for t in txs if b"multipart/report" in t.message]
    check_eq(len(orig), 1, "deliveries of the original message")
    check_eq([split_args(l[len("RCPT TO:"):])[0] for l in orig[0].rcpts], [good],
             "recipients the original was delivered to")
    check_eq(len(dsns), 1, "DSNs")
    t = dsns[0]
    check_eq(split_args(t.mail[len("MAIL FROM:"):])[0], "", "DSN envelope sender")
    check_eq([split_args(l[len("RCPT TO:"):])[0] for l in t.rcpts], [SENDER],
             "DSN envelope recipient")
    dsn = check_dsn(t.message, "", bad, "DSN for the refused recipient", expect_status="5.1.1")
    check(dsn.rcpt(good) is None, "the DSN names the delivered recipient too")
    check(re.search(r"to=<%s>.*status=bounced" % re.escape(bad), d.log()),
          "no status=bounced log line for %s" % bad)
    check_eq(queue_files(d, "deferred"), [], "deferred/ (nothing left to deliver)")
    d.stop()


def test_admin_verbs(ctx):
    relay_port = free_port()
    d = queue_daemon(ctx, relay_port=relay_port, queue=no_retry_queue())
    # The downstream answers 4xx (rather than being away): when it takes mail again,
    # there is no "connection restored" flush of the whole queue, so requeue and
    # flush ID can be seen to act on their IDs only.
    tmp = SmtpSink(ctx, port=relay_port, faults={"r": "RCPT"}, name="sink4xx")
    ids = []
    for i in range(4):
        r = send_one(d.port, SENDER, [RCPT], make_message(msgid("admin%d" % i)))
        check(r.code == 250 and "deferred" in r.text, "4xx downstream: %r" % r)
        ids.append(re.search(r"queued as (\w+)", r.text).group(1))
    out = cli_ok(d, "queue", "hold", "ALL")
    check_eq(sorted(queue_files(d, "hold")), sorted(ids), "hold/ after hold ALL")
    check(all(e["held"] for e in queue_listing(d).entries), "not all listed with '!'")
    mark = d.log_mark()
    cli_ok(d, "queue", "release", "ALL")
    check_eq(sorted(queue_files(d, "deferred")), sorted(ids), "deferred/ after release ALL")
    check_eq(queue_files(d, "hold"), [], "hold/ after release ALL")
    # Released mail is tried at once (4xx again here): wait for those attempts.
    wait_for(lambda: len(re.findall(r"\w+: to=<[^>]*>, relay=.*status=deferred",
                                    d.log_since(mark))) >= 4, 20,
             "the attempts of the released messages")
    tmp.stop()
    out = cli_ok(d, "queue", "delete", ids[0])
    check("deleted" in out, "delete output: %r" % out)
    check_eq(sorted(queue_files(d, "deferred")), sorted(ids[1:]), "deferred/ after delete")
    rc, out, err = cli(d, "queue", "delete", ids[0])
    check(rc != 0 or "no such message" in out + err,
          "deleting a message that is gone: status %d, %r %r" % (rc, out, err))
    rc, out, err = cli(d, "queue", "delete", "not-an-id")
    check(rc == 2 and "invalid queue ID" in err, "invalid ID: status %d, %r" % (rc, err))
    sink = SmtpSink(ctx, port=relay_port)
    time.sleep(1.5)
    check_eq(complete_dumps(sink), [], "delivered without a flush or requeue")
    cli_ok(d, "queue", "requeue", ids[1])
    sink.wait_dumps(1, 20)
    cli_ok(d, "flush", ids[2])
    sink.wait_dumps(2, 20)
    time.sleep(1)
    check_eq(sorted(queue_files(d, "deferred")), [ids[3]], "deferred/ after requeue + flush ID")
    cli_ok(d, "queue", "delete", "ALL")
    check_eq(queue_files(d, "deferred"), [], "deferred/ after delete ALL")
    time.sleep(1)
    check_eq(len(complete_dumps(sink)), 2, "messages delivered")
    d.stop()


if __name__ == "__main__":
    run_tests(globals())
