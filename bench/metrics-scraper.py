#!/usr/bin/env python3
"""metrics-scraper.py PORT RATE|n=COUNT - GET /metrics like Prometheus (one kept-alive
connection). RATE: that many a second on a fixed schedule until SIGTERM; n=COUNT: that
many back to back. Prints "ok failed" (ok: a 200 holding the message counter)."""
import http.client
import signal
import sys
import time

port, rate = int(sys.argv[1]), sys.argv[2]
ok = bad = 0
stop = False
conn = None


def on_term(*_):
    global stop
    stop = True


def scrape():
    global conn, ok, bad
    try:
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        body = r.read()
        if r.status == 200 and b"scanrelay_received_messages_total" in body:
            ok += 1
        else:
            bad += 1
    except Exception:
        bad += 1
        conn = None


signal.signal(signal.SIGTERM, on_term)
if rate.startswith("n="):
    for _ in range(int(rate[2:])):
        scrape()
else:
    t = time.monotonic()
    while not stop:
        scrape()
        t += 1.0 / float(rate)
        d = t - time.monotonic()
        if d > 0:
            time.sleep(d)
print(ok, bad)
