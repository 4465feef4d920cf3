#!/usr/bin/env python3
"""
restart_postfix - the real Postfix sandwich across restarts of scanrelayd
(issue 13, item 1, test B).

    smtp-source -> Postfix front smtpd --content_filter=scan:[127.0.0.1]:SR-->
        scanrelayd (socket-activated by sd_launch.py) -> Postfix re-injection
        smtpd -> relayhost smtp-sink

RESTART_POSTFIX_MESSAGES (default 3,000, the bar) messages go into the
front Postfix while scanrelayd is restarted RESTART_POSTFIX_ROUNDS times
(default 10) with SIGTERM, spread over the flow (a restart each time
another MESSAGES / (ROUNDS + 2) messages have reached the sink). Postfix's
connection cache is on for the filter (smtp_connection_cache_destinations),
so cached idle sessions meet the restarts. The bar, read from Postfix's
own log and queue: zero deferrals (no "status=deferred", no "Connection
refused", no "lost connection", no "delivery temporarily suspended"),
nothing lost (every message at the sink, exactly once) and the Postfix
queue empty at the end.

test_flush_upstream_after_outage: item 3. With Postfix's stock retry
timers (300 s), mail deferred while scanrelayd was down goes out within
seconds of its return when etc/systemd/scanrelay-flush-upstream (the
unit's ExecStartPost=) runs; a folder without a Postfix in
SCANRELAY_UPSTREAM_POSTFIX is skipped harmlessly.
"""
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Postfix, Scanrelayd, Skip, SmtpSink, check, check_eq, fail,  # noqa: E402
                     free_port, run_tests, wait_for)
from restart_socket import Launcher  # noqa: E402

MESSAGES = int(os.environ.get("RESTART_POSTFIX_MESSAGES", "3000"))
ROUNDS = int(os.environ.get("RESTART_POSTFIX_ROUNDS", "10"))

BAD_RE = re.compile(r"status=deferred|status=bounced|Connection refused|lost connection|"
                    r"delivery temporarily suspended|421 4\.3\.2|conversation with .* timed out")


def sink_count(sink):
    try:
        return len(os.listdir(sink.dumpdir))
    except FileNotFoundError:
        return 0


def test_sandwich_restarts(ctx):
    if shutil.which("postfix") is None or shutil.which("smtp-source") is None:
        raise Skip("postfix is not installed (scripts/install-deps.sh installs it)")
    sink = SmtpSink(ctx)
    reinject = free_port()
    d = Scanrelayd(ctx, relay_port=reinject, start=False)
    launcher = Launcher(ctx, d)
    pf = Postfix(ctx, filter_port=d.port, relay_port=sink.port, reinject_port=reinject,
                 extra_main={"smtp_connection_cache_destinations": "127.0.0.1"})
    t0 = time.time()
    src = subprocess.Popen(["smtp-source", "-s", "10", "-m", str(MESSAGES), "-l", "2048",
                            "-M", "restart-client.example", "-f", "sender@example.com",
                            "-t", "rcpt@example.org", "127.0.0.1:%d" % pf.front_port],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ctx.at_exit(lambda: src.poll() is None and src.kill())
    step = max(1, MESSAGES // (ROUNDS + 2))
    statuses = []
    for i in range(ROUNDS):
        target = (i + 1) * step
        wait_for(lambda: sink_count(sink) >= target, 300,
                 "%d messages at the sink before restart %d" % (target, i + 1), interval=0.05)
        statuses.append(launcher.restart())
    out, _ = src.communicate(timeout=600)
    check_eq(src.returncode, 0, "smtp-source status (output %r)" % out)
    wait_for(lambda: sink_count(sink) >= MESSAGES, 600,
             "all %d messages at the sink (%d there)" % (MESSAGES, sink_count(sink)),
             interval=0.2)
    took = time.time() - t0
    st = launcher.stop()
    d.check_log_sane()
    # Nothing in flight may be left: the Postfix queue is empty.
    q = wait_for(lambda: (lambda q: q if "Mail queue is empty" in q else None)(
        pf.queue_listing()), 30, "the Postfix queue to be empty")
    log = pf.log()
    bad = [l for l in log.splitlines() if BAD_RE.search(l)]
    sent_scan = len(re.findall(r"postfix/scan/smtp\[\d+\]: \w+: to=.*status=sent", log))
    reused = len(re.findall(r"postfix/scan/smtp\[\d+\]: \w+: to=.*conn_use=", log))
    n = sink_count(sink)
    print("  %d messages through Postfix -> scanrelayd -> Postfix in %.1f s, %d restarts, "
          "%d deliveries over reused connections; %d bad Postfix log lines"
          % (n, took, len(statuses), reused, len(bad)), flush=True)
    check(not bad, "Postfix logged %d deferral(s)/refusal(s), first:\n%s"
          % (len(bad), "\n".join(bad[:10])))
    check_eq(sent_scan, MESSAGES, "Postfix deliveries to scanrelayd with status=sent")
    check_eq(n, MESSAGES, "messages at the final sink (none lost, none twice)")
    check_eq(len(statuses), ROUNDS, "restarts done")
    check(all(s == 0 for s in statuses + [st]), "daemon exit statuses %r" % (statuses + [st]))
    check(q, "queue listing")
    if reused == 0:
        fail("Postfix reused no cached connection: the test did not exercise the cache")


FLUSH = os.path.join(os.environ.get("SCANRELAY_SRC") or os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))), "etc", "systemd", "scanrelay-flush-upstream")


def test_flush_upstream_after_outage(ctx):
    if shutil.which("postfix") is None or shutil.which("smtp-source") is None:
        raise Skip("postfix is not installed (scripts/install-deps.sh installs it)")
    n = 20
    sink = SmtpSink(ctx)
    reinject = free_port()
    d = Scanrelayd(ctx, relay_port=reinject, start=False)
    pf = Postfix(ctx, filter_port=d.port, relay_port=sink.port, reinject_port=reinject,
                 extra_main={"queue_run_delay": "300s", "minimal_backoff_time": "300s",
                             "maximal_backoff_time": "4000s"})
    subprocess.run(["smtp-source", "-s", "4", "-m", str(n), "-l", "1024", "-M",
                    "flush-client.example", "-f", "sender@example.com", "-t", "rcpt@example.org",
                    "127.0.0.1:%d" % pf.front_port], check=True, timeout=120)
    wait_for(lambda: len(re.findall(r": to=<rcpt@example\.org>, .*status=deferred",
                                    pf.log())) >= n, 60,
             "Postfix deferring the %d messages while scanrelayd is down" % n)
    d.start()
    env = dict(os.environ, SCANRELAY_UPSTREAM_POSTFIX="%s %s" % (ctx.path("no-postfix"), pf.conf))
    p = subprocess.run(["sh", FLUSH], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=60)
    check_eq(p.returncode, 0, "scanrelay-flush-upstream status (%r)" % p.stdout)
    check("skipped" in p.stdout, "the folder without Postfix is skipped: %r" % p.stdout)
    t0 = time.time()
    wait_for(lambda: sink_count(sink) >= n, 30,
             "the deferred messages at the sink after the flush (%d there)" % sink_count(sink),
             interval=0.1)
    print("  %d deferred messages delivered %.1f s after the flush (Postfix's next retry: "
          "300 s)" % (n, time.time() - t0), flush=True)
    p = subprocess.run(["sh", FLUSH], env=dict(os.environ, SCANRELAY_UPSTREAM_POSTFIX="none"),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    check_eq((p.returncode, p.stdout), (0, ""), "SCANRELAY_UPSTREAM_POSTFIX=none")
    d.stop()


if __name__ == "__main__":
    run_tests(globals())
