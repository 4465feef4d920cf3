#!/usr/bin/env python3
"""
relay_load - many messages over parallel sessions arrive exactly once.

smtp-source -N numbers each recipient (1dst@..., 2dst@..., ...), so every
message is identifiable at smtp-sink; the Python sender uses unique
Message-IDs and several transactions per connection.
"""
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Scanrelayd, SmtpClient, SmtpSink, check, check_eq, run_tests,  # noqa: E402
                     simple_message)

N = 1000
SESSIONS = 20


def exactly_once(counter, expected, what):
    missing = sorted(expected - set(counter))
    dup = sorted(k for k, v in counter.items() if v > 1)
    extra = sorted(set(counter) - expected)
    check(not missing and not dup and not extra,
          "%s: %d missing %s, %d duplicated %s, %d unexpected %s"
          % (what, len(missing), missing[:10], len(dup), dup[:10], len(extra), extra[:10]))


def test_smtp_source_1000_messages(ctx):
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port)
    t0 = time.time()
    p = subprocess.run(["smtp-source", "-N", "-s", str(SESSIONS), "-m", str(N), "-l", "10240",
                        "-f", "load@example.com", "-t", "dst@example.org",
                        "127.0.0.1:%d" % d.port], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=600)
    dt = time.time() - t0
    out = p.stdout.decode("utf-8", "replace")
    check_eq(p.returncode, 0, "smtp-source exit status (it aborts on any unexpected reply); "
             "output:\n%s" % out[-2000:])
    print("  %d messages in %.1fs (%.0f msg/s) through scanrelayd" % (N, dt, N / dt), flush=True)
    sink.wait_dumps(N, timeout=120)
    time.sleep(1)
    dumps = sink.dumps()
    counter = Counter(r for x in dumps for r in x.recipients)
    exactly_once(counter, {"%ddst@example.org" % i for i in range(1, N + 1)},
                 "smtp-source messages at smtp-sink")
    check_eq(len(dumps), N, "dump files")
    # every payload is whole: equal to the payload smtp-source sends straight to smtp-sink
    ref_sink = SmtpSink(ctx, name="refsink")
    p = subprocess.run(["smtp-source", "-m", "1", "-l", "10240", "-f", "load@example.com",
                        "-t", "dst@example.org", "127.0.0.1:%d" % ref_sink.port],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    check_eq(p.returncode, 0, "reference smtp-source run")
    ref = ref_sink.wait_dumps(1)[0].message.split(b"\n\n", 1)[1]
    check(len(ref) > 10000, "reference payload only %d bytes" % len(ref))
    for x in dumps:
        body = x.message.split(b"\n\n", 1)[1] if b"\n\n" in x.message else b""
        check(body == ref, "payload differs (%d bytes, reference %d) in %s"
              % (len(body), len(ref), x.path))
    sent = [l for l in d.message_logs() if l.get("status") == "sent"]
    check_eq(len(sent), N, "log lines with status=sent")
    d.stop()


def test_python_senders_unique_message_ids(ctx):
    """20 parallel sessions, 25 transactions each on one connection, unique Message-IDs."""
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port)
    per = 25
    errors = []

    def sender(s):
        try:
            c = SmtpClient(d.port, timeout=120)
            c.ehlo("load%d.example" % s)
            for i in range(per):
                mid = "<load-%02d-%03d@integ.example>" % (s, i)
                body = ("session %d message %d\r\n" % (s, i)) * 50
                tx = c.transaction("s%d@example.com" % s, ["r%d-%d@example.org" % (s, i)],
                                   simple_message("load %d/%d" % (s, i), body=body, msgid=mid))
                if tx.first_error is not None or tx.final.code != 250:
                    errors.append("session %d message %d: %r" % (s, i, tx))
            c.quit()
        except Exception as e:  # reported below
            errors.append("session %d: %s" % (s, e))

    threads = [threading.Thread(target=sender, args=(s,)) for s in range(SESSIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    check_eq(errors, [], "sender errors")
    total = SESSIONS * per
    sink.wait_dumps(total, timeout=120)
    time.sleep(1)
    dumps = sink.dumps()
    ids = Counter()
    for x in dumps:
        m = re.search(rb"(?im)^Message-ID: (<[^>]+>)", x.message)
        ids[m.group(1).decode() if m else "none:" + x.path] += 1
        # the envelope and the content belong together
        if m:
            s, i = re.match(r"<load-(\d+)-(\d+)@", m.group(1).decode()).groups()
            check_eq(x.recipients, ["r%d-%d@example.org" % (int(s), int(i))],
                     "envelope recipient of %s" % m.group(1).decode())
            check_eq(x.message.count(b"session %d message %d\n" % (int(s), int(i))), 50,
                     "body lines of %s" % m.group(1).decode())
    exactly_once(ids, {"<load-%02d-%03d@integ.example>" % (s, i)
                       for s in range(SESSIONS) for i in range(per)}, "Message-IDs at smtp-sink")
    d.stop()


if __name__ == "__main__":
    run_tests(globals())
