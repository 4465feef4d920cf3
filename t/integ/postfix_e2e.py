#!/usr/bin/env python3
"""
postfix_e2e - a real Postfix in front of and behind scanrelayd.

    client -> Postfix front smtpd --content_filter=scan:[127.0.0.1]:SR-->
           scanrelayd -> Postfix re-injection smtpd -> relayhost smtp-sink

Everything in the test's own folder (see harness.Postfix and
NOTES-peers.md). Exit 77 (skip) only when Postfix is not installed.
"""
import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Postfix, Scanrelayd, Skip, SmtpClient, SmtpSink, check, check_eq,  # noqa: E402
                     fail, free_port, run_tests, swaks)

COUNT = 20


def wait_delivered(pf, sink, n, timeout=60):
    """Wait for n dumps, flushing the Postfix queue every few seconds."""
    deadline = time.time() + timeout
    last_flush = time.time()
    while True:
        ds = sink.dumps()
        if len(ds) >= n:
            return ds
        if time.time() > deadline:
            fail("only %d of %d messages reached smtp-sink after %ds; queue:\n%s\nPostfix log "
                 "tail:\n%s" % (len(ds), n, timeout, pf.queue_listing(),
                                "\n".join(pf.log().splitlines()[-30:])))
        if time.time() - last_flush > 5:
            pf.flush()
            last_flush = time.time()
        time.sleep(0.2)


def test_sandwich_20_messages(ctx):
    if shutil.which("postfix") is None:
        raise Skip("postfix is not installed (scripts/install-deps.sh installs it)")
    sink = SmtpSink(ctx)
    reinject = free_port()
    d = Scanrelayd(ctx, relay_port=reinject)
    pf = Postfix(ctx, filter_port=d.port, relay_port=sink.port, reinject_port=reinject)

    sent = {}
    # half with swaks (pipelining), half with the raw client on one connection
    for i in range(COUNT // 2):
        tag = "e2e-swaks-%02d" % i
        body = "body of %s\n.leading dot line\nlast line\n" % tag
        rc, out = swaks(pf.front_port, "--pipeline", "--ehlo", "e2e-client.example",
                        "--from", "%s@example.com" % tag, "--to", "rcpt-%s@example.org" % tag,
                        "--header", "Subject: %s" % tag, "--header",
                        "Message-Id: <%s@integ.example>" % tag, "--body", body)
        check_eq(rc, 0, "swaks into the front Postfix; output:\n%s" % out)
        sent[tag] = body.replace("\n", "\r\n").encode()
    c = SmtpClient(pf.front_port)
    c.ehlo("e2e-client.example")
    for i in range(COUNT // 2, COUNT):
        tag = "e2e-raw-%02d" % i
        body = ("body of %s\r\n" % tag + "x" * 900 + "\r\n..two dots\r\n").encode()
        msg = ("From: <%s@example.com>\r\nTo: <rcpt-%s@example.org>\r\nSubject: %s\r\n"
               "Message-ID: <%s@integ.example>\r\n\r\n" % (tag, tag, tag, tag)).encode() + body
        tx = c.transaction("%s@example.com" % tag, ["rcpt-%s@example.org" % tag], msg)
        check(tx.first_error is None and tx.final.code == 250, "front Postfix: %r" % tx)
        sent[tag] = body
    c.quit()

    dumps = wait_delivered(pf, sink, COUNT, timeout=60)
    time.sleep(0.5)
    dumps = sink.dumps()
    check_eq(len(dumps), COUNT, "messages at smtp-sink")
    log = pf.log()
    relay_re = r"relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*status=sent \((.*)\)"
    for tag, body in sent.items():
        hits = [x for x in dumps if x.sender == "%s@example.com" % tag]
        check_eq(len(hits), 1, "copies of %s at smtp-sink" % tag)
        x = hits[0]
        check_eq(x.recipients, ["rcpt-%s@example.org" % tag], "recipient of %s" % tag)
        head, _, got_body = x.message.partition(b"\n\n")
        want = body.replace(b"\r", b"")
        if "swaks" in tag:  # swaks ends the body with one more empty line of its own
            got_body, want = got_body.rstrip(b"\n"), want.rstrip(b"\n")
        check_eq(got_body, want, "body of %s" % tag)
        # Received chain: re-injection (top) and front (below), both Postfix
        ids = re.findall(rb"by pf-integ\.example \(Postfix\) with E?SMTP id ([0-9A-F]+)", head)
        check_eq(len(ids), 2, "Postfix Received headers in %s:\n%s" % (tag, head.decode()))
        reinj_id, front_id = ids[0].decode(), ids[1].decode()
        # front -> scanrelayd, status=sent with scanrelayd's 250
        m = re.search(r"%s: to=<rcpt-%s@example\.org>, %s" % (front_id, tag, relay_re % d.port),
                      log)
        check(m, "Postfix log: %s relayed through scanrelayd (port %d) with status=sent:\n%s"
              % (front_id, d.port, "\n".join(l for l in log.splitlines() if front_id in l)))
        check(m.group(1).startswith("250"), "scanrelayd's reply to Postfix: %r" % m.group(1))
        # scanrelayd -> re-injection smtpd, with the front queue ID via XFORWARD IDENT
        check(re.search(r"postfix/reinject/smtpd\[\d+\]: %s: client=.*orig_queue_id=%s"
                        % (reinj_id, front_id), log),
              "re-injection smtpd log for %s shows orig_queue_id=%s (XFORWARD through "
              "scanrelayd):\n%s" % (reinj_id, front_id,
                                    "\n".join(l for l in log.splitlines() if reinj_id in l)))
        # re-injected mail -> smtp-sink
        check(re.search(r"%s: to=<rcpt-%s@example\.org>, %s" % (reinj_id, tag,
                                                               relay_re % sink.port), log),
              "final delivery of %s to smtp-sink in the Postfix log" % reinj_id)
        # scanrelayd's own log: relayed to the re-injection port, downstream queue ID in it
        lines = [l for l in d.message_logs() if l.get("from") == "%s@example.com" % tag]
        check(lines, "no scanrelayd log line for %s" % tag)
        l = lines[-1]
        check_eq(l.get("status"), "sent", "scanrelayd status for %s (%s)" % (tag, l))
        check(l.get("relay", "").endswith(":%d" % reinject), "scanrelayd relay= for %s: %s"
              % (tag, l))
        check(reinj_id in l.get("status_text", ""), "downstream queue ID %s in %s" % (reinj_id, l))
    q = pf.queue_listing()
    check("Mail queue is empty" in q, "Postfix queue not empty:\n%s" % q)
    d.stop()


if __name__ == "__main__":
    run_tests(globals())
