#!/usr/bin/env python3
"""
relay_params - envelope parameters and XFORWARD end to end.

Observation points: smtp-sink's dump (X-Mail-Args / X-Rcpt-Args hold the MAIL
and RCPT arguments verbatim); smtp-sink -v logs every command line, which is
the only place XFORWARD shows (the dump headers do not reflect it); the
RawSink records command lines verbatim and announces what smtp-sink does not
(SMTPUTF8, SIZE, every XFORWARD attribute).
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (RawSink, Scanrelayd, SmtpClient, SmtpSink, check, check_eq,  # noqa: E402
                     run_tests, simple_message, split_args)

XF = {"NAME": "spike.example.net", "ADDR": "192.0.2.7", "PORT": "4711", "PROTO": "ESMTP",
      "HELO": "spike-helo.example.net", "IDENT": "4F1A2B3C4D", "SOURCE": "REMOTE"}


def xforward_attrs(lines):
    """Merge XFORWARD command lines into {ATTR: value}."""
    out = {}
    for l in lines:
        for tok in l.split()[1:]:
            k, _, v = tok.partition("=")
            out[k.upper()] = v
    return out


def send_with_xforward(d, attrs, sender):
    c = SmtpClient(d.port)
    r = c.ehlo("xforward-client.example")
    check_eq(r.code, 250, "EHLO")
    replies = [c.cmd("XFORWARD " + " ".join("%s=%s" % (k, attrs[k]) for k in keys))
               for keys in (("NAME", "ADDR", "PORT", "PROTO"), ("HELO", "IDENT", "SOURCE"))]
    tx = c.transaction(sender, ["rcpt@example.org"], simple_message("xforward"))
    c.quit()
    return c, replies, tx


def test_xforward_authorized_to_smtp_sink(ctx):
    """From 127.0.0.1 (authorized): smtp-sink (-v) receives the attributes it announces."""
    sink = SmtpSink(ctx, verbose=True)
    d = Scanrelayd(ctx, relay_port=sink.port)
    c = SmtpClient(d.port)
    c.ehlo("probe.example")
    c.quit()
    check_eq(c.extensions.get("XFORWARD", "").split(),
             ["NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE"],
             "XFORWARD keyword announced to an authorized client")
    c, replies, tx = send_with_xforward(d, XF, "xf@example.com")
    for r in replies:
        check_eq(r.code, 250, "XFORWARD reply %r" % r)
    check(tx.first_error is None, "transaction after XFORWARD: %r" % tx)
    sink.wait_dumps(1)
    cmds = sink.commands()
    # the XFORWARD lines sent before the MAIL of our transaction
    mail_i = max(i for i, l in enumerate(cmds) if l.upper().startswith("MAIL FROM:<XF@"))
    start = max([i for i, l in enumerate(cmds[:mail_i]) if l.lower().startswith(("ehlo", "helo"))]
                + [0])
    xf = [l for l in cmds[start:mail_i] if l.upper().startswith("XFORWARD")]
    check(xf, "no XFORWARD command reached smtp-sink; commands seen: %r" % cmds)
    got = xforward_attrs(xf)
    want = {k: XF[k] for k in ("NAME", "ADDR", "PROTO", "HELO")}  # what smtp-sink announces
    check_eq({k: got.get(k) for k in want}, want, "XFORWARD attributes at smtp-sink")
    extra = sorted(set(got) - set(want))
    check_eq(extra, [], "XFORWARD attributes sent although smtp-sink does not announce them")
    d.stop()


def test_xforward_all_attributes(ctx):
    """A downstream that announces all seven attributes gets all seven, values unchanged."""
    raw = RawSink(ctx)
    d = Scanrelayd(ctx, relay_port=raw.port)
    c, replies, tx = send_with_xforward(d, XF, "xf-all@example.com")
    check(all(r.code == 250 for r in replies), "XFORWARD replies %r" % replies)
    check(tx.first_error is None, "transaction: %r" % tx)
    t = raw.wait_txs(1)[0]
    check_eq(xforward_attrs(t.xforward), XF, "XFORWARD attributes downstream")
    d.stop()


def test_xforward_unauthorized(ctx):
    """xforward_networks = {10.0.0.0/8}: XFORWARD from 127.0.0.1 is refused, forged data not passed on."""
    sink = SmtpSink(ctx, verbose=True)
    d = Scanrelayd(ctx, relay_port=sink.port, xforward_networks=["10.0.0.0/8"])
    c = SmtpClient(d.port)
    c.ehlo("unauth.example")
    r = c.cmd("XFORWARD NAME=forged.example.net ADDR=198.51.100.66")
    check_eq((r.code, r.enhanced), (550, "5.7.0"), "XFORWARD from an unauthorized client (%r)" % r)
    check_eq(c.cmd("NOOP").code, 250, "session goes on after the refused XFORWARD")
    tx = c.transaction("unauth@example.com", ["rcpt@example.org"], simple_message("unauth"))
    check(tx.first_error is None, "transaction after the refused XFORWARD: %r" % tx)
    c.quit()
    sink.wait_dumps(1)
    for l in sink.commands():
        check("forged.example.net" not in l and "198.51.100.66" not in l,
              "forged XFORWARD data reached downstream: %r" % l)
    d.stop()


def test_dsn_and_body_params_smtp_sink(ctx):
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port)
    c = SmtpClient(d.port)
    c.ehlo("dsn.example")
    msg = simple_message("dsn", body="8bit: \xe9t\xe9\r\n").decode().encode("latin-1")
    c.cmd("MAIL FROM:<dsn@example.com> RET=HDRS ENVID=QQ314159+2Bx BODY=8BITMIME")
    r1 = c.cmd("RCPT TO:<one@example.org> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;one+2Balias@example.org")
    r2 = c.cmd("RCPT TO:<two@example.org> NOTIFY=NEVER")
    r3 = c.cmd("RCPT TO:<three@example.org>")
    check(all(r.code == 250 for r in (r1, r2, r3)), "RCPT replies %r" % [r1, r2, r3])
    _, final = c.data(msg)
    check(final is not None and final.code == 250, "end of data: %r" % final)
    c.quit()
    dm = sink.wait_dumps(1)[0]
    check_eq(dm.sender, "dsn@example.com", "sender")
    check_eq(dm.mail_params, {"RET": "HDRS", "ENVID": "QQ314159+2Bx", "BODY": "8BITMIME"},
             "MAIL parameters downstream (X-Mail-Args: %s)" % dm.mail_args)
    rc = {split_args(a)[0]: split_args(a)[1] for a in dm.rcpt_args}
    check_eq(sorted(rc), ["one@example.org", "three@example.org", "two@example.org"],
             "recipients downstream")
    check_eq(rc["one@example.org"], {"NOTIFY": "SUCCESS,DELAY",
                                     "ORCPT": "rfc822;one+2Balias@example.org"},
             "RCPT parameters of one@ downstream")
    check_eq(rc["two@example.org"].get("NOTIFY"), "NEVER", "NOTIFY of two@ downstream")
    check(rc["two@example.org"].get("ORCPT") in (None, "rfc822;two@example.org"),
          "ORCPT of two@ downstream: %r" % rc["two@example.org"])
    check(rc["three@example.org"].get("NOTIFY") is None, "NOTIFY invented for three@: %r"
          % rc["three@example.org"])
    d.stop()


def test_smtputf8_and_size_rawsink(ctx):
    """SMTPUTF8 (announced by the RawSink, not by smtp-sink) and UTF-8 addresses arrive intact."""
    raw = RawSink(ctx)
    d = Scanrelayd(ctx, relay_port=raw.port)
    c = SmtpClient(d.port)
    c.ehlo("utf8.example")
    check("SMTPUTF8" in c.extensions, "SMTPUTF8 announced: %r" % c.extensions)
    msg = ("From: Jörg <jörg@bücher.example>\r\nTo: <ünïcode@exämple.org>\r\n"
           "Subject: smtputf8 ✓\r\n\r\nGrüße\r\n").encode("utf-8")
    r = c.cmd("MAIL FROM:<jörg@bücher.example> SMTPUTF8 BODY=8BITMIME SIZE=%d ENVID=utf8env"
              % len(msg))
    check_eq(r.code, 250, "MAIL with SMTPUTF8 (%r)" % r)
    r = c.cmd("RCPT TO:<ünïcode@exämple.org> NOTIFY=FAILURE")
    check_eq(r.code, 250, "RCPT with a UTF-8 address (%r)" % r)
    _, final = c.data(msg)
    check(final is not None and final.code == 250, "end of data: %r" % final)
    c.quit()
    t = raw.wait_txs(1)[0]
    addr, params = split_args(t.mail.split(":", 1)[1])
    check_eq(addr, "jörg@bücher.example", "UTF-8 sender downstream")
    check_eq(params.get("SMTPUTF8", "missing"), None, "SMTPUTF8 downstream (%s)" % t.mail)
    check_eq(params.get("BODY"), "8BITMIME", "BODY downstream (%s)" % t.mail)
    check_eq(params.get("ENVID"), "utf8env", "ENVID downstream (%s)" % t.mail)
    if "SIZE" in params:
        check(params["SIZE"].isdigit() and int(params["SIZE"]) >= len(msg),
              "SIZE downstream too small: %s" % t.mail)
    check_eq(len(t.rcpts), 1, "recipients downstream")
    raddr, rparams = split_args(t.rcpts[0].split(":", 1)[1])
    check_eq(raddr, "ünïcode@exämple.org", "UTF-8 recipient downstream")
    check_eq(rparams.get("NOTIFY"), "FAILURE", "NOTIFY downstream (%s)" % t.rcpts[0])
    check_eq(t.message, msg, "message bytes")
    d.stop()


def test_no_params_invented(ctx):
    """A plain MAIL/RCPT arrives without DSN/BODY/SMTPUTF8 parameters the client never gave."""
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port)
    c = SmtpClient(d.port)
    c.ehlo("plain.example")
    tx = c.transaction("plain@example.com", ["rcpt@example.org"], simple_message("plain"))
    check(tx.first_error is None, "transaction: %r" % tx)
    c.quit()
    dm = sink.wait_dumps(1)[0]
    bad = {k: v for k, v in dm.mail_params.items() if k in ("RET", "ENVID", "BODY", "SMTPUTF8")}
    check_eq(bad, {}, "MAIL parameters invented downstream (X-Mail-Args: %s)" % dm.mail_args)
    check("NOTIFY" not in dm.rcpt_params(0), "NOTIFY invented: %s" % dm.rcpt_args)
    d.stop()


def test_smtputf8_required_but_not_offered(ctx):
    """
    RFC 6531 3.2: a message needing SMTPUTF8 (UTF-8 envelope address) must not go to a
    server that does not announce SMTPUTF8 (smtp-sink does not). Postfix bounces it with
    5.6.7; here the client must get a 5xx with 5.6.7 and smtp-sink nothing.
    """
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port)
    c = SmtpClient(d.port)
    c.ehlo("utf8-no.example")
    tx = c.transaction("jörg@bücher.example", ["rcpt@example.org"],
                       simple_message("needs smtputf8"), mail_params="SMTPUTF8")
    c.quit()
    time.sleep(0.5)
    got = [x.mail_args for x in sink.dumps()]
    check_eq(got, [], "messages with a UTF-8 envelope delivered to a server without SMTPUTF8")
    r = tx.first_error
    check(r is not None and r.code // 100 == 5 and r.enhanced == "5.6.7",
          "reply for a SMTPUTF8 message the downstream cannot take: %r" % tx)
    d.stop()


if __name__ == "__main__":
    run_tests(globals())
