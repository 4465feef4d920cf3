#!/usr/bin/env python3
"""
relay_bytes - what scanrelayd delivers is byte for byte what it received.

smtp-sink stores the unstuffed message with CRs dropped (see harness.py), so
it proves dot handling, 8-bit bytes, long lines and size; the RawSink run
proves the exact wire bytes (CRLFs, dot-stuffing) downstream.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import time

from harness import (Raw, RawSink, Scanrelayd, SmtpClient, SmtpSink, check, check_bytes,  # noqa: E402
                     check_eq, dot_stuff, fail, TestFailure, leftover_files, run_tests, sink_view)


def corpus():
    """(name, mail params, message bytes) - each message identifiable by its Subject."""
    hdr = lambda n, extra=b"": (b"From: <sender@example.com>\r\nTo: <rcpt@example.org>\r\n"
                                b"Subject: bytes-" + n.encode() + b"\r\nMessage-ID: <" +
                                n.encode() + b"@integ.example>\r\n" + extra + b"\r\n")
    return [
        ("dots", "", hdr("dots") +
         b"..\r\n.x\r\n.\r\n...\r\n. \r\n..leading two\r\nmiddle . dot\r\n.\r\n..\r\nend\r\n"),
        ("dotfirst", "", b".first line starts with a dot\r\n" + hdr("dotfirst")[0:] + b"body\r\n"),
        ("8bit", "BODY=8BITMIME",
         hdr("8bit", b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=latin1\r\n"
                     b"Content-Transfer-Encoding: 8bit\r\n") +
         bytes(range(0x80, 0x100)) + b"\r\n" + "Grüße, çà, €, 日本語\r\n".encode("utf-8") +
         bytes([0xff, 0xfe, 0x80, 0x20, 0x7f]) + b"\r\n"),
        ("longline", "", hdr("longline") + b"L" * 998 + b"\r\n" + b"." + b"d" * 997 + b"\r\n"),
        ("notrailingnewline", "", hdr("notrailingnewline") + b"last line has no CRLF"),
        ("headersonly", "", hdr("headersonly")[:-2]),
        ("emptylines", "", hdr("emptylines") + b"\r\n\r\n\r\ntext\r\n\r\n\r\n"),
    ]


def find_by_subject(dumps, name):
    subj = ("bytes-" + name).encode()
    hits = [d for d in dumps if (b"Subject: " + subj + b"\n") in d.message]
    check_eq(len(hits), 1, "number of delivered copies of message %r" % name)
    return hits[0]


def test_corpus_one_connection(ctx):
    """Several transactions on one connection; smtp-sink's dumps equal what was sent."""
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port)
    c = SmtpClient(d.port)
    check_eq(c.ehlo("bytes.example").code, 250, "EHLO")
    msgs = corpus()
    for i, (name, params, msg) in enumerate(msgs):
        tx = c.transaction("s-%s@example.com" % name, ["r-%s@example.org" % name, "other@example.org"],
                           msg, mail_params=params)
        check(tx.first_error is None and tx.final is not None and tx.final.code == 250,
              "message %r: %r" % (name, tx))
    check_eq(c.quit().code, 221, "QUIT")
    dumps = sink.wait_dumps(len(msgs))
    check_eq(len(dumps), len(msgs), "messages at smtp-sink")
    for name, params, msg in msgs:
        dm = find_by_subject(dumps, name)
        check_bytes(dm.message, sink_view(msg), "message %r at smtp-sink" % name)
        check_eq(dm.sender, "s-%s@example.com" % name, "envelope sender of %r" % name)
        check_eq(sorted(dm.recipients), sorted(["r-%s@example.org" % name, "other@example.org"]),
                 "envelope recipients of %r" % name)
        if params:
            check_eq(dm.mail_params.get("BODY"), "8BITMIME", "BODY= of %r downstream" % name)
    # a per-message log line with status=sent for every message
    for name, params, msg in msgs:
        l = d.wait_message_logs(lambda l, n=name: l.get("from") == "s-%s@example.com" % n
                                and l.get("status") == "sent")[0]
        check(l.get("relay", "").endswith(":%d" % sink.port), "relay= in %s" % l)
        check(l.get("size", "").isdigit(), "size= in %s" % l)
    d.stop()


def test_exact_wire_bytes(ctx):
    """The downstream sees exactly the upstream's DATA bytes (CRLF, stuffing)."""
    raw = RawSink(ctx)
    d = Scanrelayd(ctx, relay_port=raw.port)
    c = SmtpClient(d.port)
    c.ehlo("wire.example")
    msgs = corpus()
    for name, params, msg in msgs:
        tx = c.transaction("s-%s@example.com" % name, ["r-%s@example.org" % name], msg,
                           mail_params=params)
        check(tx.first_error is None, "message %r: %r" % (name, tx))
    c.quit()
    txs = raw.wait_txs(len(msgs))
    check_eq(len(txs), len(msgs), "transactions downstream")
    for name, params, msg in msgs:
        hits = [t for t in txs if t.mail and ("<s-%s@example.com>" % name) in t.mail]
        check_eq(len(hits), 1, "downstream copies of %r" % name)
        check_bytes(hits[0].wire, dot_stuff(msg)[:-3], "DATA wire bytes of %r" % name)
    d.stop()


def big_body(size):
    """A deterministic body of about size bytes; every 1000th line starts with a dot."""
    out = []
    n = 0
    total = 0
    while total < size:
        if n % 1000 == 0:
            line = b".%09d dotted line .. with dots\r\n" % n
        else:
            line = b"%09d abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\r\n" % n
        out.append(line)
        total += len(line)
        n += 1
    return b"".join(out)


def test_20mb_body(ctx):
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port)
    before = d.spool_files()
    msg = (b"From: <big@example.com>\r\nTo: <rcpt@example.org>\r\nSubject: bytes-big\r\n\r\n"
           + big_body(20 * 1024 * 1024))
    c = SmtpClient(d.port, timeout=120)
    c.ehlo("big.example")
    tx = c.transaction("big@example.com", ["rcpt@example.org"], msg, mail_params="SIZE=%d" % len(msg))
    check(tx.first_error is None and tx.final.code == 250, "20 MB message: %r" % tx)
    c.quit()
    dumps = sink.wait_dumps(1, timeout=60)
    check_eq(len(dumps), 1, "messages at smtp-sink")
    check_bytes(dumps[0].message, sink_view(msg), "20 MB message at smtp-sink")
    check_eq(leftover_files(before, d.spool_files()), [], "files left in state/queue dirs")
    d.stop()


def test_rset_and_aborted_transactions(ctx):
    """RSET and an abandoned transaction deliver nothing; the next ones are intact."""
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port)
    c = SmtpClient(d.port)
    c.ehlo("rset.example")
    check_eq(c.cmd("MAIL FROM:<aborted@example.com>").code, 250, "MAIL")
    check_eq(c.cmd("RCPT TO:<x@example.org>").code, 250, "RCPT")
    check_eq(c.cmd("RSET").code, 250, "RSET")
    msgs = [b"Subject: bytes-after-rset-%d\r\n\r\nbody %d\r\n" % (i, i) for i in range(3)]
    for i, m in enumerate(msgs):
        tx = c.transaction("s%d@example.com" % i, ["r%d@example.org" % i], m)
        check(tx.first_error is None, "transaction %d: %r" % (i, tx))
        check_eq(c.cmd("RSET").code, 250, "RSET after a transaction")
    c.quit()
    dumps = sink.wait_dumps(3)
    import time
    time.sleep(0.5)
    dumps = sink.dumps()
    check_eq(len(dumps), 3, "messages at smtp-sink")
    check(all(dm.sender != "aborted@example.com" for dm in dumps), "the RSET transaction was relayed")
    for i, m in enumerate(msgs):
        hits = [dm for dm in dumps if dm.sender == "s%d@example.com" % i]
        check_eq(len(hits), 1, "copies of message %d" % i)
        check_bytes(hits[0].message, sink_view(m), "message %d" % i)
    d.stop()


def test_bare_lf_dot_does_not_end_data(ctx):
    """
    SMTP smuggling: only CRLF.CRLF ends DATA. "\n.\n", "\r\n.\n" and "\n.\r\n" inside the
    body must not end the message, and the commands after them must not become a second
    (smuggled) transaction downstream. Rejecting such a message is fine too; the replies
    must stay in step with the client's commands either way.
    """
    raw = RawSink(ctx)
    d = Scanrelayd(ctx, relay_port=raw.port, relay_timeout=Raw("10s"))
    for i, sep in enumerate((b"\n.\n", b"\r\n.\n", b"\n.\r\n")):
        c = SmtpClient(d.port, timeout=20)
        c.ehlo("smuggle.example")
        body = (b"Subject: smuggle %d\r\n\r\nbefore" % i + sep +
                b"MAIL FROM:<smuggled%d@example.net>\r\nRCPT TO:<victim@example.org>\r\n"
                b"DATA\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n" % i)
        try:
            tx = c.transaction("outer%d@example.com" % i, ["rcpt@example.org"], body)
        except TestFailure as e:
            fail("separator %r inside the body: no reply to the real end of data within 20s "
                 "(was DATA ended early at the bare-LF dot, leaving the downstream waiting for "
                 "CRLF.CRLF?): %s" % (sep, e))
        check(tx.final is not None and tx.final.code in (250, 500, 501, 521, 550, 554),
              "separator %r: reply to the end of data %r" % (sep, tx))
        r = c.cmd("NOOP")
        check_eq(r.code, 250, "separator %r: NOOP right after (replies in step with commands)"
                 % sep)
        c.quit()
    time.sleep(1)
    for t in raw.txs:
        check("smuggled" not in (t.mail or ""), "smuggled transaction downstream: %s" % t.mail)
    for cmd in raw.all_commands():
        check("smuggled" not in cmd, "smuggled command downstream: %r" % cmd)
    d.stop()


if __name__ == "__main__":
    run_tests(globals())
