#!/usr/bin/env python3
"""queue-admin-load.py - relay load with an admin verb in the middle, for
bench/queue-admin-bench.sh.

usage: queue-admin-load.py PORT SESSIONS SIZE CLI CONF WARMUP BASELINE AFTER

SESSIONS threads each keep one SMTP connection to PORT and send messages
one after the other, every message unique (a counter and a random nonce in
Message-ID, Subject and body; the body length varies around SIZE bytes).
Each 250 to the end of DATA is time-stamped. After WARMUP seconds, the
BASELINE window is measured; then `CLI -c CONF queue hold ALL` and
`queue release ALL` run one after the other (timed); AFTER seconds later
the load stops. Prints key=value lines: rates (msg/s) of the baseline
window, of the window of the two verbs (and of each), their ratio, the
verbs' times, the lines they printed, messages sent, and errors (any
reply other than 250 counts). Exit 0, or 1 when a message failed or a
verb failed.
"""
import os
import random
import smtplib
import subprocess
import sys
import threading
import time

port, sessions, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
cli, conf = sys.argv[4], sys.argv[5]
warmup, baseline, after = float(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8])

stamps = []
errors = []
stop = threading.Event()
line = b"x" * 70 + b"\r\n"


def message(tid, n):
    nonce = "%016x" % random.getrandbits(64)
    body_len = size + random.randrange(-size // 4, size // 4 + 1)
    head = ("From: <load@example.com>\r\nTo: <sink@example.org>\r\n"
            "Subject: load %d-%d %s\r\nMessage-ID: <%d.%d.%s@load>\r\n\r\n"
            % (tid, n, nonce, tid, n, nonce)).encode()
    nl = max(1, body_len // len(line))
    return head + (b"%s %d %d\r\n" % (nonce.encode(), tid, n)) + line * nl


def session(tid):
    n = 0
    s = None
    while not stop.is_set():
        try:
            if s is None:
                s = smtplib.SMTP("127.0.0.1", port, timeout=60)
                s.ehlo("load.example.com")
            n += 1
            s.sendmail("load@example.com", ["sink@example.org"], message(tid, n))
            stamps.append(time.monotonic())
        except Exception as e:  # noqa: BLE001 - every failure counts
            errors.append("%s: %s" % (type(e).__name__, e))
            try:
                if s:
                    s.close()
            except Exception:  # noqa: BLE001
                pass
            s = None
            time.sleep(0.05)
    if s is not None:
        try:
            s.quit()
        except Exception:  # noqa: BLE001
            pass


def count(a, b):
    return sum(1 for t in stamps if a <= t < b)


def verb(*args):
    t0 = time.monotonic()
    p = subprocess.run([cli, "-c", conf, "queue"] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    t1 = time.monotonic()
    out = p.stdout.splitlines()
    summary = (p.stderr.strip().splitlines() or [""])[-1] if p.returncode else (out[-1] if out else "")
    return t0, t1, p.returncode, len(out), summary


threads = [threading.Thread(target=session, args=(i,), daemon=True) for i in range(sessions)]
for t in threads:
    t.start()
time.sleep(warmup)
b0 = time.monotonic()
time.sleep(baseline)
b1 = time.monotonic()
h0, h1, hrc, hlines, hsum = verb("hold", "ALL")
r0, r1, rrc, rlines, rsum = verb("release", "ALL")
time.sleep(after)
stop.set()
for t in threads:
    t.join(120)
a1 = time.monotonic()

base = count(b0, b1) / (b1 - b0)
during = count(h0, r1) / (r1 - h0)
print("sessions=%d size=%d" % (sessions, size))
print("baseline_rate=%.1f window=%.1fs" % (base, b1 - b0))
print("hold_time=%.2f hold_rc=%d hold_lines=%d hold_summary=%s" % (h1 - h0, hrc, hlines, hsum))
print("release_time=%.2f release_rc=%d release_lines=%d release_summary=%s"
      % (r1 - r0, rrc, rlines, rsum))
print("hold_rate=%.1f" % (count(h0, h1) / max(h1 - h0, 1e-9)))
print("release_rate=%.1f" % (count(r0, r1) / max(r1 - r0, 1e-9)))
print("during_rate=%.1f window=%.1fs" % (during, r1 - h0))
print("after_rate=%.1f window=%.1fs" % (count(r1, a1) / max(a1 - r1, 1e-9), a1 - r1))
print("ratio=%.2f" % (during / base if base else 0.0))
print("sent=%d errors=%d" % (len(stamps), len(errors)))
for e in errors[:5]:
    print("error: %s" % e)
sys.exit(1 if errors or hrc or rrc else 0)
