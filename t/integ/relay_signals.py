#!/usr/bin/env python3
"""
relay_signals - SIGHUP reloads, SIGTERM drains, -t checks the config.
"""
import os
import re
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Closed, Scanrelayd, SmtpClient, SmtpSink, check, check_bytes,  # noqa: E402
                     check_eq, dot_stuff, port_refuses, render_config, run_daemon_check,
                     run_tests, simple_message, sink_view, wait_for)


def rcpt_limit_probe(d, n):
    """Open a new session, send n RCPTs; return the list of reply codes."""
    c = SmtpClient(d.port)
    c.ehlo("probe.example")
    c.cmd("MAIL FROM:<probe@example.com>")
    codes = [c.cmd("RCPT TO:<p%d@example.org>" % i).code for i in range(n)]
    c.quit()
    return codes


def test_sighup_applies_new_config(ctx):
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port, max_recipients=5)
    check_eq(rcpt_limit_probe(d, 4), [250] * 4, "4 recipients with max_recipients = 5")
    held = SmtpClient(d.port)
    held.ehlo("held.example")
    check_eq(held.cmd("MAIL FROM:<held@example.com>").code, 250, "MAIL on the held connection")
    mark = d.log_mark()
    d.top["max_recipients"] = 2
    d.write_config()
    d.signal(signal.SIGHUP)
    wait_for(lambda: rcpt_limit_probe(d, 3) == [250, 250, 452], 10,
             "max_recipients = 2 to apply to new sessions after SIGHUP")
    check(d.alive(), "scanrelayd died on SIGHUP")
    # the connection opened before the reload is still there and works
    check_eq(held.cmd("RCPT TO:<held-rcpt@example.org>").code, 250, "RCPT on the held connection")
    _, final = held.data(simple_message("held across SIGHUP"))
    check(final is not None and final.code == 250, "end of data on the held connection: %r" % final)
    check_eq(held.quit().code, 221, "QUIT on the held connection")
    dm = sink.wait_dumps(1)
    check_eq([x.sender for x in dm], ["held@example.com"], "delivered")
    d.stop()


def test_sighup_broken_config_keeps_serving(ctx):
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port, max_recipients=3)
    mark = d.log_mark()
    good = open(d.conf_path).read()
    lines = good.splitlines()
    lines.insert(2, "no_such_key_anywhere = 42")
    d.write_config("\n".join(lines) + "\n")
    d.signal(signal.SIGHUP)
    d.wait_log(re.escape(d.conf_path), timeout=10, since=mark)
    logged = d.log_since(mark)
    check(d.conf_path in logged, "the log names the config file: %r" % logged)
    check(":3" in logged or "line 3" in logged, "the log names line 3: %r" % logged)
    check(d.alive(), "scanrelayd died on SIGHUP with a broken config")
    # still serving, with the old settings (max_recipients = 3)
    check_eq(rcpt_limit_probe(d, 4), [250, 250, 250, 452], "old max_recipients still in force")
    c = SmtpClient(d.port)
    c.ehlo("after-bad-hup.example")
    tx = c.transaction("afterhup@example.com", ["rcpt@example.org"], simple_message("after bad hup"))
    check(tx.first_error is None, "transaction after a failed reload: %r" % tx)
    c.quit()
    sink.wait_dumps(1)
    # put a good config back: stop must still be clean
    d.write_config(good)
    d.stop()


def test_sigterm_lets_inflight_message_finish(ctx):
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port)
    body = (b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n") * \
        (20 * 1024 * 1024 // 74)
    msg = b"Subject: in flight at SIGTERM\r\n\r\n" + body
    payload = dot_stuff(msg)
    c = SmtpClient(d.port, timeout=120)
    c.ehlo("inflight.example")
    check_eq(c.cmd("MAIL FROM:<inflight@example.com>").code, 250, "MAIL")
    check_eq(c.cmd("RCPT TO:<rcpt@example.org>").code, 250, "RCPT")
    check_eq(c.cmd("DATA").code, 354, "DATA")
    step = 512 * 1024
    sent = 0
    termed = False
    while sent < len(payload):
        c.send(payload[sent:sent + step])
        sent += step
        if not termed and sent >= len(payload) // 3:
            d.signal(signal.SIGTERM)
            termed = True
            time.sleep(0.3)
            check(d.alive(), "scanrelayd exited at once on SIGTERM with a message in flight")
        time.sleep(0.02)
    try:
        final = c.read_reply(timeout=60)
    except Closed as e:
        final = None
        check(False, "connection closed before the final reply: %s" % e)
    check_eq(final.code, 250, "final reply for the message in flight at SIGTERM (%r)" % final)
    try:
        c.cmd("QUIT", timeout=10)
    except (Closed, OSError):
        pass
    c.close()
    dm = sink.wait_dumps(1, timeout=30)
    check_eq(len(dm), 1, "delivered")
    check_bytes(dm[0].message, sink_view(msg), "the message in flight at SIGTERM")
    rc = d.stop(timeout=30)
    check_eq(rc, 0, "exit status")
    check(port_refuses(d.port), "listen port still open after exit")


def test_sigterm_idle_exits_clean(ctx):
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port)
    idle = SmtpClient(d.port)
    idle.ehlo("idle.example")
    t0 = time.time()
    d.stop(timeout=30)
    check(time.time() - t0 < 25, "exit took %.1fs with one idle client" % (time.time() - t0))


def test_config_check(ctx):
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port, start=False)
    rc, out = run_daemon_check(d.conf_path)
    check_eq(rc, 0, "scanrelayd -t -c GOOD exit status; output: %r" % out)
    bad = ctx.path("bad.conf")
    with open(bad, "w") as f:
        f.write('listen = "127.0.0.1:%d"\nrelay = "127.0.0.1:%d"\nbogus_key_here = 17\n'
                'scan {\n    enabled = no\n}\n' % (d.port, sink.port))
    rc, out = run_daemon_check(bad)
    check_eq(rc, 1, "scanrelayd -t -c BAD exit status; output: %r" % out)
    check(bad in out, "the message names the file %s: %r" % (bad, out))
    check(":3" in out or "line 3" in out, "the message names line 3: %r" % out)
    bad2 = ctx.path("bad2.conf")
    with open(bad2, "w") as f:
        f.write('listen = "127.0.0.1:%d"\n# comment\nmax_message_size = 30Q\n' % d.port)
    rc, out = run_daemon_check(bad2)
    check_eq(rc, 1, "scanrelayd -t with a bad size value; output: %r" % out)
    check(bad2 in out and (":3" in out or "line 3" in out), "file and line named: %r" % out)
    # Action words are checked by the scan layer's hook, still with file and line.
    bad3 = ctx.path("bad3.conf")
    with open(bad3, "w") as f:
        f.write('listen = "127.0.0.1:%d"\nvirus {\n    action = explode\n}\n' % d.port)
    rc, out = run_daemon_check(bad3)
    check_eq(rc, 1, "scanrelayd -t with a bad action; output: %r" % out)
    check(bad3 in out and (":3" in out or "line 3" in out) and "explode" in out,
          "file, line and word named: %r" % out)
    bad4 = ctx.path("bad4.conf")
    with open(bad4, "w") as f:
        f.write('listen = "127.0.0.1:%d"\nscan {\n    error_action = reject\n}\n' % d.port)
    rc, out = run_daemon_check(bad4)
    check_eq(rc, 1, "scanrelayd -t with error_action = reject; output: %r" % out)
    check(bad4 in out and "error_action" in out and "defer or pass" in out,
          "error_action named with what it takes: %r" % out)
    rc, out = run_daemon_check(ctx.path("does-not-exist.conf"))
    check_eq(rc, 1, "scanrelayd -t -c MISSING exit status; output: %r" % out)


if __name__ == "__main__":
    run_tests(globals())
