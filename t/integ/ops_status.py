#!/usr/bin/env python3
"""
ops_status.py - what an administrator sees (issue 13, items 4 and 5):
`scanrelay status` (and -j), `scanrelayd -V`, and the Prometheus /metrics
listener.

  * status_signatures: a signature folder holding the test set (.ndb,
    .hdb with mtimes the test sets) and a real ClamAV container built here
    (make_cud.py: the 512-byte "ClamAV-VDB:..." header, a tar with the
    .info manifest and an .ndb; a .cud, because libclamav refuses a
    home-made .cvd/.cld, which must carry ClamAV's digital signature).
    The daemon loads it (the container's signature detects its marker),
    and `status -j` lists each file with its version and build time (the
    container's from its header, the plain sets' mtimes), the total, the
    age of the newest; the text status says the same in its lines; a
    `scanrelay reload` shows up as the last reload; the downstream going
    away shows as "down since".
  * version: scanrelayd -V names scanrelayd and its five libraries.
  * metrics_values: GET /metrics while mail flows: counters by result
    and action, bytes, relay outcomes, histograms and gauges move by what
    was sent; other paths are 404, POST is refused.
  * metrics_promtool: `promtool check metrics` accepts the page (skipped
    when promtool, Debian package prometheus, is not installed).
  * metrics_reload: a reload opens, moves and closes the listener.

Run: SCANRELAY_BUILD=build-asan SCANRELAY_SRC=. python3 t/integ/ops_status.py
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import scan_util as su  # noqa: E402
from harness import check, check_eq, fail, run_tests, wait_for  # noqa: E402
from make_cud import make_cud  # noqa: E402
from queue_util import cli, cli_ok  # noqa: E402

# libclamav 1.4 leaks a hash context for each container it loads: not ours.
if "LSAN_OPTIONS" not in os.environ:
    os.environ["LSAN_OPTIONS"] = "suppressions=" + os.path.join(h.SRC, "t", "lsan.supp")

CUD_STIME = 1700000000
NDB_MTIME = 1750000000
HDB_MTIME = 1740000000
MARKER = b"SCANRELAY-OPS-STATUS-MARKER-5d1e"


def sig_folder(ctx):
    db = su.copy_sigs(ctx, "sigs")
    make_cud(os.path.join(db, "extra.cud"), 31, CUD_STIME,
             {"extra.ndb": su.ndb_line("Ops.Test.Marker", MARKER).encode()
              + su.ndb_line("Ops.Test.Other", b"ANOTHER-OPS-MARKER").encode()})
    os.utime(os.path.join(db, "test.ndb"), (NDB_MTIME, NDB_MTIME))
    os.utime(os.path.join(db, "test.hdb"), (HDB_MTIME, HDB_MTIME))
    os.remove(os.path.join(db, "README")) if os.path.exists(os.path.join(db, "README")) else None
    return db


def status_json(d):
    out = cli_ok(d, "status", json_out=True)
    try:
        return json.loads(out)
    except ValueError as e:
        fail("scanrelay -j status: not one JSON object (%s): %r" % (e, out[:2000]))


def test_status_signatures(ctx):
    db = sig_folder(ctx)
    sink = h.SmtpSink(ctx)
    d = su.scanning_daemon(ctx, sink.port, dbdir=db)

    # The container is really loaded: its signature catches its marker.
    tx = su.send(d.port, su.text_message(b"see " + MARKER + b"\r\n"))
    su.expect_final(tx, 250, "marker message", "250 2.7.0")
    check("Ops.Test.Marker" in d.log(), "the container's signature did not fire:\n%s"
          % d.log()[-2000:])

    st = status_json(d)
    now = time.time()
    check_eq(st.get("state"), "running", "state")
    files = {e["file"]: e for e in st.get("signatures", [])}
    check_eq(sorted(files), ["extra.cud", "test.hdb", "test.ndb"], "signature files in status -j")
    check_eq(files["extra.cud"], {"file": "extra.cud", "version": "31",
                                  "build_time": CUD_STIME, "signatures": 2}, "extra.cud entry")
    check_eq(files["test.ndb"], {"file": "test.ndb", "version": None, "build_time": NDB_MTIME,
                                 "signatures": 1}, "test.ndb entry")
    check_eq(files["test.hdb"]["build_time"], HDB_MTIME, "test.hdb build_time (mtime)")
    check_eq(st.get("signatures_total"), 4, "signatures_total")
    age = st.get("signatures_newest_age")
    check(isinstance(age, int) and abs(age - (now - NDB_MTIME)) < 120,
          "signatures_newest_age %r, expected about %d" % (age, now - NDB_MTIME))
    check_eq(st.get("signature_reload"), None, "signature_reload before any reload")
    check_eq(st["scan"]["enabled"], True, "scan.enabled")
    check(st["scan"]["threads"] >= 1, "scan threads %r" % st["scan"])
    check_eq(st["listen"], ["127.0.0.1:%d" % d.port], "listen")
    check_eq(st["configuration"]["file"], d.conf_path, "configuration file")
    check(abs(st["configuration"]["loaded"] - now) < 120, "configuration loaded %r" % st)
    check(0 <= st["uptime"] < 600, "uptime %r" % st["uptime"])
    check_eq(st["downstream"]["state"], "up", "downstream state")
    check_eq(st["messages"]["received"], 1, "messages.received")
    check_eq(st["messages"]["discarded"], 1, "messages.discarded")
    check_eq(st["message_log"]["enabled"], True, "message_log.enabled")
    for k in ("queue", "quarantine", "sessions", "pid", "version"):
        check(k in st, "status -j lacks %r: %r" % (k, st))

    # The text form says the same, one line each.
    text = cli_ok(d, "status")
    for pat in [r"(?m)^version: \S+$",
                r"(?m)^started: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(up \d+ s\)$",
                r"(?m)^configuration: %s \(loaded \d{4}-" % re.escape(d.conf_path),
                r"(?m)^listen: 127\.0\.0\.1:%d$" % d.port,
                r"(?m)^scan: on, \d+ threads, \d+ busy, \d+ jobs waiting$",
                r"(?m)^signatures: 4 \(ClamAV [^)]+\), newest built \d+ s ago$",
                r"(?m)^signature database: extra\.cud version 31, built 2023-11-14 22:13:20 UTC, "
                r"2 signatures$",
                r"(?m)^signature database: test\.ndb, modified 2025-06-15 15:06:40 UTC, "
                r"1 signatures$",
                r"(?m)^signature reload: none since the start \(loaded ",
                r"(?m)^downstream: 127\.0\.0\.1:%d up$" % sink.port,
                r"(?m)^quarantine: \d+ messages, \d+ bytes \(quota \d+ bytes\)$",
                r"(?m)^message log: on, \d+ rows waiting, \d+ dropped$",
                r"(?m)^messages: 1 received, 0 relayed, .*1 discarded$",
                r"(?m)^metrics: off$"]:
        check(re.search(pat, text), "scanrelay status: no line matching %r in:\n%s" % (pat, text))

    # A reload shows up as the last reload.
    mark = d.log_mark()
    cli_ok(d, "reload")
    d.wait_log("signatures reloaded", 60, since=mark)
    st = wait_for(lambda: (lambda s: s if s.get("signature_reload") else None)(status_json(d)),
                  30, "signature_reload in status -j")
    check_eq(st["signature_reload"]["ok"], True, "signature_reload.ok")
    check("signatures reloaded" in st["signature_reload"]["message"], "reload message %r" % st)

    # The downstream goes away: "down since".
    sink.stop()
    t0 = int(time.time())
    tx = su.send(d.port, su.text_message(b"hello\r\n"))
    check(tx.final is not None and tx.final.code in (250, 451), "reply with the downstream away: %r"
          % su.final_line(tx))
    st = status_json(d)
    check_eq(st["downstream"]["state"], "down", "downstream state after the sink stopped")
    check(abs(st["downstream"]["down_since"] - t0) < 60, "down_since %r" % st["downstream"])
    check(re.search(r"(?m)^downstream: 127\.0\.0\.1:%d down since \d{4}-" % sink.port,
                    cli_ok(d, "status")), "text status after the sink stopped")
    d.stop()


def test_version(ctx):
    p = subprocess.run([h.DAEMON, "-V"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    check_eq(p.returncode, 0, "scanrelayd -V exit status")
    out = p.stdout.decode()
    for pat in (r"(?m)^scanrelayd \d+\.\d+", r"(?m)^libclamav \d+\.\d+", r"(?m)^libevent \d+\.\d+",
                r"(?m)^GMime \d+\.\d+\.\d+$", r"(?m)^libarchive \d+\.\d+",
                r"(?m)^SQLite \d+\.\d+\.\d+$"):
        check(re.search(pat, out), "scanrelayd -V: no line matching %r in %r" % (pat, out))


def scrape(port, path="/metrics"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=30) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode()


SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def samples(text):
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = SAMPLE_RE.match(line)
        check(m, "not a sample line: %r" % line)
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def metrics_daemon(ctx, sink_port, **top):
    db = sig_folder(ctx)
    mport = h.free_port()
    d = su.scanning_daemon(ctx, sink_port, dbdir=db, metrics_listen="127.0.0.1:%d" % mport, **top)
    return d, mport


def test_metrics_values(ctx):
    sink = h.SmtpSink(ctx)
    d, mport = metrics_daemon(ctx, sink.port)
    status, ctype, text = scrape(mport)
    check_eq(status, 200, "GET /metrics status")
    check(ctype.startswith("text/plain; version=0.0.4"), "Content-Type %r" % ctype)
    s0 = samples(text)
    for name in ("scanrelay_sessions", "scanrelay_scan_threads", "scanrelay_signatures",
                 "scanrelay_signature_age_seconds", "scanrelay_quarantine_bytes",
                 'scanrelay_queue_messages{state="deferred"}', "scanrelay_downstream_up",
                 "scanrelay_received_messages_total", "scanrelay_message_log_backlog",
                 'scanrelay_signature_database_build_time_seconds{file="extra.cud",version="31"}'):
        check(name in s0, "/metrics lacks %s:\n%s" % (name, text[:3000]))
    check_eq(s0["scanrelay_signatures"], 4, "scanrelay_signatures")
    check_eq(s0['scanrelay_signature_database_build_time_seconds{file="extra.cud",version="31"}'],
             CUD_STIME, "extra.cud build time")
    check(abs(s0["scanrelay_signature_age_seconds"] - (time.time() - NDB_MTIME)) < 120,
          "signature age %r" % s0["scanrelay_signature_age_seconds"])

    clean = su.text_message(b"clean text\r\n" * 50)
    for _ in range(3):
        su.expect_final(su.send(d.port, clean), 250, "clean message", "250 2.0.0")
    su.expect_final(su.send(d.port, su.text_message(su.EICAR + b"\r\n")), 250, "EICAR", "250 2.7.0")
    sink.wait_dumps(3)
    s1 = samples(scrape(mport)[2])

    def delta(name):
        return s1.get(name, 0) - s0.get(name, 0)

    check_eq(delta('scanrelay_messages_total{result="clean",action="relayed"}'), 3,
             "clean/relayed messages")
    check_eq(delta('scanrelay_messages_total{result="virus",action="discarded"}'), 1,
             "virus/discarded messages")
    check_eq(delta("scanrelay_received_messages_total"), 4, "received")
    check_eq(delta('scanrelay_relay_recipients_total{source="first",outcome="sent"}'), 3,
             "relay recipients sent")
    check(delta("scanrelay_received_bytes_total") >= 4 * 500, "bytes in")
    check(delta("scanrelay_relayed_bytes_total") >= 3 * 500, "bytes out")
    check_eq(delta("scanrelay_scan_duration_seconds_count"), 4, "scan histogram count")
    check_eq(delta('scanrelay_scan_duration_seconds_bucket{le="+Inf"}'), 4, "scan +Inf bucket")
    check_eq(delta("scanrelay_message_delay_seconds_count"), 4, "delay histogram count")
    check(delta("scanrelay_message_delay_seconds_sum") > 0, "delay sum")
    check_eq(delta('scanrelay_rule_hits_total{rule="virus"}'), 1, "rule hits")

    # Only GET/HEAD of /metrics.
    try:
        scrape(mport, "/other")
        fail("GET /other answered 2xx")
    except urllib.error.HTTPError as e:
        check_eq(e.code, 404, "GET /other")
    try:
        urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:%d/metrics" % mport,
                                                      data=b"x", method="POST"), timeout=30)
        fail("POST /metrics answered 2xx")
    except urllib.error.HTTPError as e:
        check(e.code in (405, 413, 501), "POST /metrics: %d" % e.code)
    d.stop()


def test_metrics_promtool(ctx):
    promtool = shutil.which("promtool")
    if promtool is None:
        raise h.Skip("promtool is not installed (Debian package prometheus)")
    sink = h.SmtpSink(ctx)
    d, mport = metrics_daemon(ctx, sink.port)
    su.expect_final(su.send(d.port, su.text_message(b"clean\r\n")), 250, "clean", "250 2.0.0")
    su.expect_final(su.send(d.port, su.text_message(su.EICAR + b"\r\n")), 250, "EICAR", "250 2.7.0")
    text = subprocess.run(["curl", "-sS", "http://127.0.0.1:%d/metrics" % mport],
                          stdout=subprocess.PIPE, timeout=30, check=True).stdout \
        if shutil.which("curl") else scrape(mport)[2].encode()
    p = subprocess.run([promtool, "check", "metrics"], input=text, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    check(p.returncode == 0 and not p.stdout.strip(),
          "promtool check metrics: status %d:\n%s" % (p.returncode, p.stdout.decode()))
    d.stop()


def test_metrics_reload(ctx):
    sink = h.SmtpSink(ctx)
    d = h.Scanrelayd(ctx, relay_port=sink.port)
    port1, port2 = h.free_port(), h.free_port()
    check(h.port_refuses(port1), "port %d in use before" % port1)

    def reload_with(addr):
        d.top["metrics_listen"] = addr
        d.write_config()
        out = cli_ok(d, "reload")
        return out

    reload_with("127.0.0.1:%d" % port1)
    check_eq(scrape(port1)[0], 200, "GET /metrics after the reload that opened it")
    reload_with("127.0.0.1:%d" % port2)
    check_eq(scrape(port2)[0], 200, "GET /metrics on the new address")
    check(h.port_refuses(port1), "the old metrics address still listens")
    reload_with("")
    check(h.port_refuses(port2), "metrics listener still open after metrics_listen = \"\"")
    d.stop()


if __name__ == "__main__":
    run_tests(globals())
