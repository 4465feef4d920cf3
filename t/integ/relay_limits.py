#!/usr/bin/env python3
"""
relay_limits - EHLO, size/recipient/command/connection limits, bad input,
vanishing clients, pipelining.
"""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Closed, Raw, Scanrelayd, SmtpClient, SmtpSink, check, check_eq,  # noqa: E402
                     dot_stuff, leftover_files, run_tests, simple_message, swaks, swaks_replies,
                     wait_for)

MAX_30M = 30 * 1024 * 1024


def works(c, what, sender="after@example.com"):
    """The session still carries a transaction."""
    tx = c.transaction(sender, ["rcpt@example.org"], simple_message(what))
    check(tx.first_error is None and tx.final.code == 250, "%s: next transaction %r" % (what, tx))


def test_ehlo_keywords(ctx):
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port)
    c = SmtpClient(d.port)
    check_eq(c.greeting.code, 220, "greeting")
    r = c.ehlo("keywords.example")
    check_eq(r.code, 250, "EHLO")
    for kw in ("PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "DSN"):
        check(kw in c.extensions, "EHLO lacks %s: %r" % (kw, r))
    check_eq(c.extensions.get("SIZE"), str(MAX_30M), "SIZE announced for max_message_size = 30M")
    h = c.cmd("HELO keywords.example")
    check_eq(h.code, 250, "HELO")
    c.quit()
    d.stop()


def test_size_declared_too_big(ctx):
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port)
    c = SmtpClient(d.port)
    c.ehlo("size.example")
    r = c.cmd("MAIL FROM:<big@example.com> SIZE=%d" % (MAX_30M + 1))
    check_eq((r.code, r.enhanced), (552, "5.3.4"), "MAIL with SIZE over the limit (%r)" % r)
    check("Message size exceeds fixed limit" in r.text, "reply text %r" % r.line())
    r = c.cmd("MAIL FROM:<big@example.com> SIZE=99999999999999999999")
    check_eq((r.code, r.enhanced), (552, "5.3.4"), "MAIL with a huge SIZE (%r)" % r)
    r = c.cmd("MAIL FROM:<ok@example.com> SIZE=%d" % MAX_30M)
    check_eq(r.code, 250, "MAIL with SIZE at the limit (%r)" % r)
    c.cmd("RSET")
    works(c, "after SIZE refusal")
    c.quit()
    d.stop()


def test_oversize_body_without_size(ctx):
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port, max_message_size=1048576)
    before = d.spool_files()
    c = SmtpClient(d.port, timeout=60)
    c.ehlo("oversize.example")
    body = (b"x" * 76 + b"\r\n") * (1536 * 1024 // 78)
    msg = b"Subject: oversize\r\n\r\n" + body
    tx = c.transaction("over@example.com", ["rcpt@example.org"], msg)
    check(tx.final is not None, "DATA refused before the body: %r" % tx)
    check_eq((tx.final.code, tx.final.enhanced), (552, "5.3.4"),
             "end of data for a 1.5 MB body with max_message_size = 1M (%r)" % tx.final)
    check("Message size exceeds fixed limit" in tx.final.text, "text %r" % tx.final.line())
    works(c, "after an oversize message")
    c.quit()
    dumps = sink.wait_dumps(1)
    time.sleep(0.5)
    check_eq([x.sender for x in sink.dumps()], ["after@example.com"], "messages delivered")
    check_eq(leftover_files(before, d.spool_files()), [], "files left in state/queue dirs")
    d.stop()


def test_too_many_recipients(ctx):
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port, max_recipients=5)
    c = SmtpClient(d.port)
    c.ehlo("rcpts.example")
    check_eq(c.cmd("MAIL FROM:<many@example.com>").code, 250, "MAIL")
    rs = [c.cmd("RCPT TO:<r%d@example.org>" % i) for i in range(1, 7)]
    for i, r in enumerate(rs[:5]):
        check_eq(r.code, 250, "RCPT %d of 5 allowed" % (i + 1))
    check_eq((rs[5].code, rs[5].enhanced), (452, "4.5.3"), "6th RCPT (%r)" % rs[5])
    _, final = c.data(simple_message("many"))
    check(final is not None and final.code == 250, "end of data: %r" % final)
    c.quit()
    dumps = sink.wait_dumps(1)
    time.sleep(0.3)
    got = sorted(r for x in sink.dumps() for r in x.recipients)
    check_eq(got, ["r%d@example.org" % i for i in range(1, 6)], "recipients delivered")
    d.stop()


def test_malformed_and_unknown_commands(ctx):
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port)
    c = SmtpClient(d.port)
    c.ehlo("bad.example")
    r = c.cmd("MAIL FROM:<broken")
    check_eq(r.code, 501, "MAIL FROM:<broken (%r)" % r)
    check(r.enhanced is not None and r.enhanced.startswith("5.5.") or r.enhanced == "5.1.7",
          "enhanced code of the 501: %r" % r.line())
    r = c.cmd("FOOBAR baz")
    check_eq((r.code, r.enhanced), (502, "5.5.2"), "unknown command (%r)" % r)
    r = c.cmd("RCPT TO:<nomail@example.org>")
    check_eq(r.code, 503, "RCPT without MAIL (%r)" % r)
    r = c.cmd("DATA")
    check_eq(r.code, 503, "DATA without MAIL (%r)" % r)
    works(c, "after bad commands")
    c.quit()
    sink.wait_dumps(1)
    d.stop()


def test_overlong_command_line(ctx):
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port)
    c = SmtpClient(d.port)
    c.ehlo("long.example")
    c.send("MAIL FROM:<" + "a" * 3000 + "@example.com>\r\n")
    r = c.read_reply()
    check_eq((r.code, r.enhanced), (500, "5.5.2"), "3000-character command (%r)" % r)
    # exactly one reply for that line: the next reply belongs to NOOP
    r = c.cmd("NOOP")
    check_eq(r.code, 250, "NOOP after the long line (%r)" % r)
    works(c, "after an over-long command line")
    c.quit()
    d.stop()


def test_max_connections(ctx):
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port, max_connections=5)
    conns = [SmtpClient(d.port) for _ in range(5)]
    for i, c in enumerate(conns):
        check_eq(c.greeting.code, 220, "greeting of connection %d" % (i + 1))
    sixth = SmtpClient(d.port, read_greeting=False)
    try:
        r = sixth.read_reply(timeout=10)
    except Closed as e:
        r = None
        check(False, "6th connection closed without a 421: %s" % e)
    check_eq((r.code, r.enhanced), (421, "4.3.2"), "6th connection (%r)" % r)
    check(sixth.closed_by_peer(5), "6th connection not closed after 421")
    # the five are still served
    for i, c in enumerate(conns):
        check_eq(c.cmd("NOOP").code, 250, "NOOP on connection %d" % (i + 1))
    conns[0].quit()

    def seventh_ok():
        c = SmtpClient(d.port, read_greeting=False)
        try:
            r = c.read_reply(timeout=5)
        except Closed:
            r = None
        if r is not None and r.code == 220:
            return c
        c.close()
        return None
    c7 = wait_for(seventh_ok, 10, "a new connection after one of five closed")
    c7.ehlo("seventh.example")
    works(c7, "a new connection after one closed")
    c7.quit()
    for c in conns[1:]:
        c.quit()
    d.stop()


def test_client_vanishes_mid_data(ctx):
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port)
    before = d.spool_files()
    c = SmtpClient(d.port, timeout=60)
    c.ehlo("vanish.example")
    check_eq(c.cmd("MAIL FROM:<vanish@example.com>").code, 250, "MAIL")
    check_eq(c.cmd("RCPT TO:<rcpt@example.org>").code, 250, "RCPT")
    check_eq(c.cmd("DATA").code, 354, "DATA")
    chunk = (b"y" * 98 + b"\r\n") * 10486  # about 1 MB
    for _ in range(10):  # about 10 MB of a 20 MB message
        c.send(chunk)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()  # RST: gone without a goodbye
    time.sleep(2)
    check(d.alive(), "scanrelayd died after a client vanished mid-DATA")
    check_eq(sink.files(), [], "smtp-sink dump files (complete or not)")
    check_eq(leftover_files(before, d.spool_files()), [], "files left in state/queue dirs")
    c2 = SmtpClient(d.port)
    c2.ehlo("after-vanish.example")
    works(c2, "after a vanished client")
    c2.quit()
    sink.wait_dumps(1)
    check_eq([x.sender for x in sink.dumps()], ["after@example.com"], "messages delivered")
    d.stop()


def test_client_vanishes_mid_data_graceful(ctx):
    """Same with a FIN after half the body."""
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port)
    before = d.spool_files()
    c = SmtpClient(d.port, timeout=60)
    c.ehlo("vanish2.example")
    c.cmd("MAIL FROM:<vanish@example.com>")
    c.cmd("RCPT TO:<rcpt@example.org>")
    check_eq(c.cmd("DATA").code, 354, "DATA")
    c.send(b"Subject: half\r\n\r\n" + (b"z" * 78 + b"\r\n") * 4000)
    c.close()
    time.sleep(1.5)
    check(d.alive(), "scanrelayd died")
    check_eq(sink.files(), [], "smtp-sink dump files")
    check_eq(leftover_files(before, d.spool_files()), [], "files left in state/queue dirs")
    d.stop()


def test_pipelining_raw(ctx):
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port)
    c = SmtpClient(d.port)
    c.ehlo("pipe.example")
    check("PIPELINING" in c.extensions, "PIPELINING announced")
    m1 = simple_message("pipelined 1")
    m2 = simple_message("pipelined 2")
    # one write: MAIL, RCPT, RCPT, DATA
    c.send("MAIL FROM:<p1@example.com>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
    rs = [c.read_reply() for _ in range(4)]
    check_eq([r.code for r in rs], [250, 250, 250, 354], "pipelined replies %r" % rs)
    # body, then the next transaction and QUIT in the same write
    c.send(dot_stuff(m1) + b"RSET\r\nMAIL FROM:<p2@example.com>\r\nRCPT TO:<c@example.org>\r\nDATA\r\n")
    rs = [c.read_reply(timeout=60) for _ in range(5)]
    check_eq([r.code for r in rs], [250, 250, 250, 250, 354], "second batch %r" % rs)
    c.send(dot_stuff(m2) + b"QUIT\r\n")
    rs = [c.read_reply(timeout=60) for _ in range(2)]
    check_eq([r.code for r in rs], [250, 221], "final batch %r" % rs)
    c.close()
    dumps = sink.wait_dumps(2)
    got = sorted((x.sender, tuple(sorted(x.recipients))) for x in dumps)
    check_eq(got, [("p1@example.com", ("a@example.org", "b@example.org")),
                   ("p2@example.com", ("c@example.org",))], "pipelined messages delivered")
    d.stop()


def test_swaks_pipeline(ctx):
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port)
    rc, out = swaks(d.port, "--pipeline", "--from", "swaks@example.com",
                    "--to", "one@example.org,two@example.org", "--ehlo", "swaks.example",
                    "--header", "Subject: swaks pipelined", "--body", "pipelined body\n.dot line\n")
    check_eq(rc, 0, "swaks --pipeline exit status; output:\n%s" % out)
    replies = swaks_replies(out)
    check(any(r.startswith("250") and "PIPELINING" in r for r in replies),
          "PIPELINING in EHLO as swaks saw it: %r" % replies)
    dm = sink.wait_dumps(1)[0]
    check_eq(sorted(dm.recipients), ["one@example.org", "two@example.org"], "recipients")
    check(b"\npipelined body\n.dot line\n" in dm.message, "body at smtp-sink: %r" % dm.message[-80:])
    d.stop()


def test_vrfy_and_misc(ctx):
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port)
    c = SmtpClient(d.port)
    c.ehlo("vrfy.example")
    r = c.cmd("VRFY postmaster")
    check_eq(r.code, 252, "VRFY (%r)" % r)
    check_eq(c.cmd("NOOP").code, 250, "NOOP")
    check_eq(c.cmd("RSET").code, 250, "RSET")
    r = c.cmd("QUIT")
    check_eq(r.code, 221, "QUIT")
    check(c.closed_by_peer(5), "connection not closed after QUIT")
    d.stop()


def test_idle_client_timeout(ctx):
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port, smtpd_timeout=Raw("2s"))
    c = SmtpClient(d.port)
    c.ehlo("idle.example")
    t0 = time.time()
    try:
        r = c.read_reply(timeout=10)
    except Closed:
        r = None
    check(r is not None and r.code == 421, "reply to an idle client after smtpd_timeout = 2s: %r"
          % r)
    check(1.5 <= time.time() - t0 <= 8, "timeout after %.1fs" % (time.time() - t0))
    check(c.closed_by_peer(5), "connection not closed after the 421")
    check(d.alive(), "scanrelayd died")
    d.stop()


if __name__ == "__main__":
    run_tests(globals())
