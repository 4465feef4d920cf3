#!/usr/bin/env python3
"""
ops_reload.py - every setting but the listening addresses applies on a
reload (issue 13, item 6), and the reload says what changed.

  * scan_threads: scan.threads 1 -> 3 -> 1 by `scanrelay reload`: the
    pool has that many threads (status -j, the log), mail is still scanned.
  * scan_on_off: a daemon started with scanning off relays EICAR; a reload
    with scan { enabled = yes } compiles the signatures in the background
    and then EICAR is discarded; switched off again, EICAR passes.
  * quarantine: quarantine.quota lowered by a reload: the purger runs at
    once and the quarantine shrinks to the quota (no restart, no waiting
    for its interval).
  * message_log: log.enabled off by a reload: messages are no longer
    logged in messages.db; on again: they are.
  * says_what_changed: the reload's answer lists the changed keys, and
    names listen (and the folders) as needing a restart.

Run: SCANRELAY_BUILD=build-asan SCANRELAY_SRC=. python3 t/integ/ops_reload.py
"""
import json
import os
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import scan_util as su  # noqa: E402
from harness import Raw, check, check_eq, fail, run_tests, wait_for  # noqa: E402
from queue_util import cli_ok  # noqa: E402


def status_json(d):
    out = cli_ok(d, "status", json_out=True)
    try:
        return json.loads(out)
    except ValueError as e:
        fail("scanrelay -j status: not JSON (%s): %r" % (e, out[:2000]))


def reload_with(d, sections=None, **top):
    for k, v in (sections or {}).items():
        d.sections.setdefault(k, {}).update(v)
    d.top.update(top)
    d.write_config()
    out = cli_ok(d, "reload")
    check("configuration reloaded" in out, "scanrelay reload: %r" % out)
    return out


def eicar_msg():
    return su.text_message(su.EICAR + b"\r\n")


def test_scan_threads(ctx):
    sink = h.SmtpSink(ctx)
    d = su.scanning_daemon(ctx, sink.port, scan={"threads": 1})
    check_eq(status_json(d)["scan"]["threads"], 1, "scan threads at start")
    out = reload_with(d, {"scan": {"threads": 3}})
    check("scan.threads" in out, "reload answer does not name scan.threads: %r" % out)
    st = status_json(d)
    check_eq(st["scan"]["threads"], 3, "scan threads after the reload to 3")
    d.wait_log(r"reload: scan threads 1 -> 3", 10)
    su.expect_final(su.send(d.port, eicar_msg()), 250, "EICAR with 3 threads", "250 2.7.0")
    reload_with(d, {"scan": {"threads": 1}})
    check_eq(status_json(d)["scan"]["threads"], 1, "scan threads after the reload to 1")
    for i in range(3):
        su.expect_final(su.send(d.port, eicar_msg()), 250, "EICAR #%d with 1 thread" % i,
                        "250 2.7.0")
    su.expect_final(su.send(d.port, su.text_message(b"clean\r\n")), 250, "clean", "250 2.0.0")
    d.stop()


def test_scan_on_off(ctx):
    sink = h.SmtpSink(ctx)
    d = h.Scanrelayd(ctx, relay_port=sink.port)   # scan { enabled = no }
    check_eq(status_json(d)["scan"]["enabled"], False, "scan.enabled at start")
    su.expect_final(su.send(d.port, eicar_msg()), 250, "EICAR with scanning off", "250 2.0.0")

    out = reload_with(d, {"scan": {"enabled": Raw("yes")},
                          "virus": {"database_directory": su.SIGS}})
    check("scan.enabled" in out, "reload answer does not name scan.enabled: %r" % out)
    wait_for(lambda: status_json(d)["scan"]["enabled"], 60, "scanning on after the reload")
    check_eq(status_json(d)["signatures_total"], su.sig_count(su.SIGS), "signatures after on")
    su.expect_final(su.send(d.port, eicar_msg()), 250, "EICAR with scanning on", "250 2.7.0")

    reload_with(d, {"scan": {"enabled": Raw("no")}})
    check_eq(status_json(d)["scan"]["enabled"], False, "scan.enabled after off")
    su.expect_final(su.send(d.port, eicar_msg()), 250, "EICAR with scanning off again",
                    "250 2.0.0")
    reload_with(d, {"scan": {"enabled": Raw("yes")}})
    su.expect_final(su.send(d.port, eicar_msg()), 250, "EICAR with scanning on again",
                    "250 2.7.0")
    sink.wait_dumps(2)
    d.stop()


def quarantined(d):
    return len([l for l in cli_ok(d, "-j", "quarantine", "list").splitlines() if l.strip()])


def test_quarantine(ctx):
    sink = h.SmtpSink(ctx)
    d = su.scanning_daemon(ctx, sink.port, virus={"action": Raw("quarantine")})
    for i in range(4):
        msg = su.text_message(su.EICAR + b"\r\n" + (b"padding %d\r\n" % i) * 200)
        su.expect_final(su.send(d.port, msg), 250, "EICAR #%d" % i, "250 2.7.0 Ok: quarantined")
    check_eq(quarantined(d), 4, "quarantined messages")
    out = reload_with(d, {"quarantine": {"quota": 1}})
    check("quarantine.quota" in out, "reload answer does not name quarantine.quota: %r" % out)
    wait_for(lambda: quarantined(d) == 0, 30, "the purger to apply the lowered quota")
    # Status reports the new quota (and, within its 10 s refresh, the usage).
    check_eq(status_json(d)["quarantine"]["quota"], 1, "quarantine quota in status")
    d.stop()


def logged(d):
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(d.state_dir, "messages.db"), uri=True)
    try:
        return db.execute("SELECT count(*) FROM msg").fetchone()[0]
    finally:
        db.close()


def test_message_log(ctx):
    sink = h.SmtpSink(ctx)
    d = h.Scanrelayd(ctx, relay_port=sink.port)
    su.expect_final(su.send(d.port, su.text_message(b"one\r\n")), 250, "first", "250 2.0.0")
    wait_for(lambda: logged(d) == 1, 30, "the first message in messages.db")

    out = reload_with(d, {"log": {"enabled": Raw("no")}})
    check("log.enabled" in out, "reload answer does not name log.enabled: %r" % out)
    check_eq(status_json(d)["message_log"]["enabled"], False, "message_log.enabled after off")
    for i in range(2):
        su.expect_final(su.send(d.port, su.text_message(b"unlogged\r\n")), 250, "unlogged #%d" % i,
                        "250 2.0.0")

    reload_with(d, {"log": {"enabled": Raw("yes"), "retention": Raw("7d")}})
    wait_for(lambda: status_json(d)["message_log"]["enabled"], 30, "the message log on again")
    su.expect_final(su.send(d.port, su.text_message(b"two\r\n")), 250, "second", "250 2.0.0")
    wait_for(lambda: logged(d) >= 2, 30, "the message sent after the log was back")
    sink.wait_dumps(4)
    check_eq(logged(d), 2, "rows in messages.db (the two sent while it was off are not there)")
    d.stop()


def test_says_what_changed(ctx):
    sink = h.SmtpSink(ctx)
    d = h.Scanrelayd(ctx, relay_port=sink.port)
    out = reload_with(d)
    check("changed: nothing" in out, "reload without a change: %r" % out)
    new_listen = "127.0.0.1:%d" % h.free_port()
    out = reload_with(d, listen=new_listen, relay_timeout=Raw("45s"),
                      sections={"queue": {"probe_interval": Raw("7s")}})
    check("relay_timeout" in out and "queue.probe_interval" in out,
          "reload answer does not list the changed keys: %r" % out)
    check("needs a restart to apply: listen" in out, "reload answer: %r" % out)
    check("listen" not in out.split("changed:", 1)[1].split(";", 1)[0],
          "listen reported as applied: %r" % out)
    d.wait_log(r"reload: changes of listen take effect after a restart", 10)
    # Still listening where it was.
    su.expect_final(su.send(d.port, su.text_message(b"still here\r\n")), 250, "old port",
                    "250 2.0.0")
    d.stop()


if __name__ == "__main__":
    run_tests(globals())
