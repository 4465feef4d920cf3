#!/usr/bin/env python3
"""
health_alerts.py - health alerts, quarantine statistics, release/delete rows
in the message log and the daily report (issue 12, items 5-7), through a
real scanrelayd and a real smtp-sink downstream; the administrator's mail is
parsed with Python's email package.

Each alert is raised once (a warning in the log, one mail, listed by
`scanrelay status` and `status -j`) and cleared once (one mail), and
nothing else is mailed about it:
  * signature_age: signature files made stale with os.utime; a restart
    while the alert is active does not mail it again;
  * signature_reload: a broken signature file, then removed;
  * quota_retention: backdated quarantine entries and a quota below their
    size (set by a reload: quarantine settings apply without a restart),
    then a large quota;
  * free_space: alert.min_free_space above the free space, then lowered;
  * queue_size and downstream_down: the downstream away while mail arrives,
    then back;
  * msglog_drops: the message log database locked by the test while mail
    arrives (log.queue_max = 1), then unlocked.

Run: SCANRELAY_BUILD=build SCANRELAY_SRC=. python3 t/integ/health_alerts.py [test ...]
"""

import email
import email.policy
import json
import os
import re
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import scan_util as su  # noqa: E402
from scan_util import raw  # noqa: E402

ADMIN = "security@mail.scanrelay-ci.net"
FROM = "postmaster@mail.scanrelay-ci.net"  # not an example domain: notify.from refuses those

FAST_QUEUE = {
    "queue_run_delay": raw("1s"),
    "minimal_backoff_time": raw("1s"),
    "maximal_backoff_time": raw("2s"),
    "probe_interval": raw("1s"),
    "min_free_space": raw("1M"),
}

TITLES = {
    "signature_age": "virus signatures are out of date",
    "signature_reload": "virus signature reload failed",
    "quota_retention": "quarantine quota is cutting retention short",
    "free_space": "free disk space is low",
    "queue_size": "the deferred queue is growing",
    "downstream_down": "the downstream MTA does not answer",
    "msglog_drops": "the message log is dropping rows",
}


# ---------------------------------------------------------------- helpers

def daemon(ctx, relay_port, alert=None, scanning=False, dbdir=None, virus=None, start=True,
           sections=None, **top):
    a = {"interval": raw("1s"), "min_free_space": raw("0")}
    a.update(alert or {})
    secs = {"alert": a, "notify": {"from": FROM, "admin": [ADMIN]}, "queue": dict(FAST_QUEUE)}
    for k, v in (sections or {}).items():
        secs.setdefault(k, {}).update(v)
    if scanning:
        d = su.scanning_daemon(ctx, relay_port, dbdir=dbdir, virus=virus, start=False, **top)
    else:
        d = h.Scanrelayd(ctx, relay_port=relay_port, start=False, **top)
    for k, v in secs.items():
        d.sections.setdefault(k, {}).update(v)
    d.write_config()
    if start:
        d.start()
    return d


def admin_mails(sink):
    """The health mails the downstream received, parsed: [(subject, body, msg, dump)]."""
    out = []
    for dump in sink.dumps():
        if dump.header("X-Scanrelay-Notice") != "health":
            continue
        m = email.message_from_bytes(dump.message, policy=email.policy.default)
        out.append((str(m["Subject"]), m.get_content(), m, dump))
    return out


def alert_mails(sink, name):
    """(raised, cleared) mails about one alert."""
    t = TITLES[name]
    ms = admin_mails(sink)
    raised = [x for x in ms if x[0].startswith("scanrelay alert on ") and x[0].endswith(t)]
    cleared = [x for x in ms if x[0].startswith("scanrelay alert cleared on ") and
               x[0].endswith(t)]
    return raised, cleared


def wait_mails(sink, name, nraised, ncleared, timeout=60):
    def ok():
        r, c = alert_mails(sink, name)
        return (r, c) if len(r) >= nraised and len(c) >= ncleared else None
    return h.wait_for(ok, timeout, "%d raised / %d cleared mail(s) for alert %s"
                      % (nraised, ncleared, name), interval=0.2)


def status(d):
    rc, out, err, _ = su.cli(["-j", "status"], d.conf_path)
    h.check_eq(rc, 0, "scanrelay -j status exit status (%s)" % err)
    return json.loads(out)


def active(d):
    return {a["name"]: a for a in status(d)["alerts"]}


def checks(d):
    return int(status(d)["health_checks"])


def wait_checks(d, n=3):
    """Wait until n more health checks ran (each one a whole pass of the state machines)."""
    start = checks(d)
    h.wait_for(lambda: checks(d) >= start + n, 60, "%d health checks" % n, interval=0.2)


def wait_active(d, name, on=True, timeout=60):
    h.wait_for(lambda: (name in active(d)) == on, timeout,
               "alert %s %s in `scanrelay status`" % (name, "active" if on else "cleared"),
               interval=0.2)


def check_mail_form(mail, name):
    """The alert mail: null sender, From notify.from, To the admin, auto-generated, UTF-8."""
    subject, body, m, dump = mail
    h.check_eq(dump.sender, "", "envelope sender of the %s mail" % name)
    h.check_eq(dump.recipients, [ADMIN], "envelope recipients of the %s mail" % name)
    h.check_eq(str(m["From"]), FROM, "From: of the %s mail" % name)
    h.check_eq(str(m["To"]), ADMIN, "To: of the %s mail" % name)
    h.check_eq(str(m["Auto-Submitted"]), "auto-generated", "Auto-Submitted of the %s mail" % name)
    h.check_eq(m.get_content_type(), "text/plain", "content type of the %s mail" % name)
    h.check_eq(m.get_content_charset(), "utf-8", "charset of the %s mail" % name)


def stays_quiet(sink, d, name, n=2):
    """While the alert stays active, further checks mail nothing more."""
    wait_checks(d, n)
    h.check(name in active(d), "alert %s no longer active" % name)
    r, c = alert_mails(sink, name)
    h.check_eq((len(r), len(c)), (1, 0), "mails while alert %s stays active" % name)


def exactly_once(sink, d, name, settle=3):
    """After the alert cleared: a few more checks, and still one raise and one clear mail."""
    wait_checks(d, settle)
    r, c = alert_mails(sink, name)
    h.check_eq((len(r), len(c)), (1, 1), "raised/cleared mails for alert %s" % name)
    raises = re.findall(r"alert %s: " % name, d.log())
    h.check_eq(len(raises), 1, "warning log lines raising %s" % name)
    h.check_eq(len(re.findall(r"alert %s cleared" % name, d.log())), 1,
               "log lines clearing %s" % name)
    check_mail_form(r[0], name)
    check_mail_form(c[0], name)


# ---------------------------------------------------------------- alerts

def test_signature_age(ctx):
    db = su.copy_sigs(ctx)
    old = time.time() - 3 * 86400
    for f in os.listdir(db):
        os.utime(os.path.join(db, f), (old, old))
    # freshclam's own state file is written on every run: it is no signature
    with open(os.path.join(db, "freshclam.dat"), "wb") as f:
        f.write(b"\0" * 64)
    sink = h.SmtpSink(ctx)
    d = daemon(ctx, sink.port, scanning=True, dbdir=db,
               virus={"check_interval": raw("1h")}, alert={"signature_age": raw("2d")})
    (r,), _ = wait_mails(sink, "signature_age", 1, 0)
    print("  raised: %s / %s" % (r[0], r[1].splitlines()[0]))
    h.check("virus signatures are 3 days old" in r[1], "age not in the mail: %r" % r[1])
    a = active(d)
    h.check("signature_age" in a and "3 days old" in a["signature_age"]["text"],
            "status -j alerts: %r" % a)
    rc, out, _, _ = su.cli(["status"], d.conf_path)
    h.check(re.search(r"(?m)^alert: signature_age \d+ virus signatures are 3 days old", out),
            "plain status does not list the alert:\n%s" % out)
    h.check(re.search(r"warning.*alert signature_age|alert signature_age: ", d.log()),
            "no warning in the log")
    # a restart while it is active: not mailed again
    d.stop()
    d.start()
    wait_checks(d, 3)
    h.check("signature_age" in active(d), "the alert is not active after the restart")
    r, c = alert_mails(sink, "signature_age")
    h.check_eq((len(r), len(c)), (1, 0), "mails after a restart with the alert active")
    d.wait_log(r"alert signature_age \(active since before the restart\)", 20)
    # fresh files: cleared once
    for f in os.listdir(db):
        os.utime(os.path.join(db, f), None)
    _, (c,) = wait_mails(sink, "signature_age", 1, 1)
    wait_active(d, "signature_age", False)
    exactly_once(sink, d, "signature_age")


def test_signature_reload_failure(ctx):
    db = su.copy_sigs(ctx)
    sink = h.SmtpSink(ctx)
    d = daemon(ctx, sink.port, scanning=True, dbdir=db, virus={"check_interval": raw("1h")})
    wait_checks(d, 2)
    with open(os.path.join(db, "broken.ndb"), "w") as f:
        f.write("this line is not a signature\n")
    ok, text, _ = su.control(d.top["control_socket"], "reload")
    (r,), _ = wait_mails(sink, "signature_reload", 1, 0)
    print("  raised: %s" % r[1].splitlines()[0])
    h.check("broken.ndb" in r[1], "the mail does not name the broken file: %r" % r[1])
    h.check("signature_reload" in active(d), "status does not list signature_reload")
    stays_quiet(sink, d, "signature_reload")
    os.remove(os.path.join(db, "broken.ndb"))
    su.control(d.top["control_socket"], "reload")
    wait_mails(sink, "signature_reload", 1, 1)
    wait_active(d, "signature_reload", False)
    exactly_once(sink, d, "signature_reload")


def quarantine_some(d, n, first=0):
    """n EICAR mails quarantined (distinct bodies); returns their new IDs, oldest first."""
    db = os.path.join(d.state_dir, "quarantine.db")
    before = set(r[0] for r in qrows(db)) if os.path.exists(db) else set()
    for i in range(first, first + n):
        msg = su.mime_message([su.text_part(), su.attachment(
            "x%d.exe" % i, su.EICAR + b"\r\n" + (b"tag %d" % i))], subject="virus %d" % i)
        su.expect_final(su.send(d.port, msg, sender="s%d@example.com" % i), 250,
                        "virus %d" % i)

    def new():
        ids = [r[0] for r in qrows(db) if r[0] not in before]
        return ids if len(ids) >= n else None
    return h.wait_for(new, 30, "%d quarantined messages" % n)


def qrows(db):
    c = sqlite3.connect(db, timeout=30)
    try:
        return c.execute("SELECT id, time, stored_size, size FROM q WHERE stored_size > 0 "
                         "ORDER BY time").fetchall()
    finally:
        c.close()


def test_quota_retention_and_stats(ctx):
    sink = h.SmtpSink(ctx)
    d = daemon(ctx, sink.port, scanning=True, virus={"action": raw("quarantine")})
    quarantine_some(d, 4)
    db = os.path.join(d.state_dir, "quarantine.db")
    now = int(time.time())
    c = sqlite3.connect(db, timeout=30)
    ids = [r[0] for r in qrows(db)]
    # backdated: 5, 4, 3 and 2 days old (files keep their day folder)
    with c:
        for i, qid in enumerate(ids):
            c.execute("UPDATE q SET time = ? WHERE id = ?", (now - (5 - i) * 86400 - 60, qid))
    c.close()
    rows = qrows(db)

    # quarantine stats: the numbers of the index
    rc, out, err, _ = su.cli(["-j", "quarantine", "stats"], d.conf_path)
    h.check_eq(rc, 0, "quarantine stats exit status (%s)" % err)
    st = json.loads(out)
    print("  stats: messages %d bytes %d per day %d quota_days %s"
          % (st["messages"], st["bytes"], st["bytes_per_day"], st["quota_days"]))
    h.check_eq(st["messages"], 4, "stats messages")
    h.check_eq(st["bytes"], sum(r[2] for r in rows), "stats bytes (on disk)")
    h.check_eq(st["size"], sum(r[3] for r in rows), "stats size (original)")
    h.check_eq(st["oldest"], rows[0][1], "stats oldest")
    h.check_eq(st["newest"], rows[-1][1], "stats newest")
    h.check_eq(len(st["days"]), 14, "stats days")
    h.check_eq(sum(x["bytes"] for x in st["days"]), st["bytes"], "sum of bytes per day")
    h.check_eq(sum(x["messages"] for x in st["days"]), 4, "sum of messages per day")
    # the store's oldest is 5 days old: the rate is over 6 started days
    h.check_eq(st["rate_days"], 6, "days the rate is taken over")
    h.check_eq(st["bytes_per_day"], st["bytes"] // 6, "bytes per day")
    h.check_eq(st["quota_days"], 10 * 1024 ** 3 // st["bytes_per_day"], "days the quota holds")
    rc, out, _, _ = su.cli(["quarantine", "stats"], d.conf_path)
    h.check(re.search(r"(?m)^messages: +4$", out) and "quota holds:" in out,
            "plain stats:\n%s" % out)

    # a quota one byte under the total: the purge removes the oldest (5 days)
    quota = sum(r[2] for r in rows) - 1
    d.sections["quarantine"] = {"quota": raw("%dk" % (quota // 1024)) if quota % 1024 == 0
                                else quota}
    d.write_config()
    ok, text, _ = su.control(d.top["control_socket"], "reload")
    h.check(ok, "reload: %s" % text)
    (r,), _ = wait_mails(sink, "quota_retention", 1, 0)
    print("  raised: %s" % r[1].splitlines()[0])
    h.check("quota is cutting retention short: oldest kept mail is 4 days old, retention is "
            "14 days" in r[1], "mail text: %r" % r[1])
    h.check_eq(len(qrows(db)), 3, "messages kept under the quota")
    h.check("quota_retention" in active(d), "status does not list quota_retention")
    stays_quiet(sink, d, "quota_retention")
    # a large quota again (reload): cleared
    d.sections["quarantine"] = {"quota": raw("10G")}
    d.write_config()
    su.control(d.top["control_socket"], "reload")
    wait_mails(sink, "quota_retention", 1, 1)
    wait_active(d, "quota_retention", False)
    exactly_once(sink, d, "quota_retention")


def test_free_space(ctx):
    sink = h.SmtpSink(ctx)
    d = daemon(ctx, sink.port, alert={"min_free_space": raw("100000G")})
    (r,), _ = wait_mails(sink, "free_space", 1, 0)
    print("  raised: %s" % r[1].splitlines()[0])
    for folder in (d.state_dir, d.queue_dir):
        h.check(folder + " has " in r[1], "the mail does not name %s: %r" % (folder, r[1]))
    h.check("free_space" in active(d), "status does not list free_space")
    stays_quiet(sink, d, "free_space")
    d.sections["alert"]["min_free_space"] = raw("1M")
    d.write_config()
    su.control(d.top["control_socket"], "reload")
    wait_mails(sink, "free_space", 1, 1)
    wait_active(d, "free_space", False)
    exactly_once(sink, d, "free_space")


def test_free_space_tmpfs(ctx):
    """A small tmpfs holding state_directory, filled by the test and emptied again."""
    mnt = ctx.mkdir("tmpfs")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", mnt],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise h.Skip("cannot mount a tmpfs here: %s" % r.stdout.decode().strip())
    ctx.at_exit(lambda: subprocess.run(["umount", mnt]))
    state = os.path.join(mnt, "state")
    os.makedirs(state)
    sink = h.SmtpSink(ctx)
    d = daemon(ctx, sink.port, alert={"min_free_space": raw("3M")}, state_directory=state)
    wait_checks(d, 2)
    h.check("free_space" not in active(d), "free_space active on an empty tmpfs")
    filler = os.path.join(mnt, "filler")
    with open(filler, "wb") as f:
        f.write(b"\0" * (6 << 20))
    (r,), _ = wait_mails(sink, "free_space", 1, 0)
    print("  raised: %s" % r[1].splitlines()[0])
    h.check(state + " has " in r[1], "the mail does not name %s: %r" % (state, r[1]))
    stays_quiet(sink, d, "free_space")
    os.remove(filler)
    wait_mails(sink, "free_space", 1, 1)
    wait_active(d, "free_space", False)
    exactly_once(sink, d, "free_space")
    d.stop()


def test_queue_and_downstream(ctx):
    relay_port = h.free_port()  # nothing listens yet
    d = daemon(ctx, relay_port, alert={"queue_size": 2, "downstream_down": raw("2s")})
    for i in range(3):
        su.expect_final(su.send(d.port, su.text_message(b"hello %d\r\n" % i)), 250,
                        "message %d into custody" % i)
    wait_active(d, "queue_size")
    wait_active(d, "downstream_down")
    a = active(d)
    print("  active: %s" % "; ".join(x["text"] for x in a.values()))
    wait_checks(d, 2)  # active for a while: still one raise each (counted below)
    sink = h.SmtpSink(ctx, port=relay_port)
    wait_active(d, "queue_size", False)
    wait_active(d, "downstream_down", False)
    for name in ("queue_size", "downstream_down"):
        wait_mails(sink, name, 1, 1)
    sink.wait_dumps(3 + 4)
    for name in ("queue_size", "downstream_down"):
        exactly_once(sink, d, name)


def test_msglog_drops(ctx):
    sink = h.SmtpSink(ctx)
    d = daemon(ctx, sink.port, sections={"log": {"queue_max": 1}})
    su.expect_final(su.send(d.port, su.text_message(b"first\r\n")), 250, "first message")
    db = os.path.join(d.state_dir, "messages.db")
    h.wait_for(lambda: os.path.exists(db), 10, "messages.db")
    wait_checks(d, 2)
    lock = sqlite3.connect(db, timeout=30, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        for i in range(6):
            su.expect_final(su.send(d.port, su.text_message(b"m %d\r\n" % i)), 250,
                            "message %d" % i)
        wait_active(d, "msglog_drops")
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    (r,), _ = wait_mails(sink, "msglog_drops", 1, 0)
    print("  raised: %s" % r[1].splitlines()[0])
    wait_active(d, "msglog_drops", False)
    wait_mails(sink, "msglog_drops", 1, 1)
    exactly_once(sink, d, "msglog_drops")


# ---------------------------------------------------------------- message log, report

def test_release_delete_rows_and_report(ctx):
    sink = h.SmtpSink(ctx)
    d = daemon(ctx, sink.port, scanning=True, virus={"action": raw("quarantine")})
    ids = quarantine_some(d, 2)
    for i in range(2):
        su.expect_final(su.send(d.port, su.text_message(b"clean %d\r\n" % i),
                                sender="s0@example.com"), 250, "clean %d" % i)
    rc, out, err, _ = su.cli(["quarantine", "release", ids[0]], d.conf_path)
    h.check_eq(rc, 0, "release (%s)" % err)
    rc, out, err, _ = su.cli(["quarantine", "delete", ids[1]], d.conf_path)
    h.check_eq(rc, 0, "delete (%s)" % err)

    def rows(action):
        rc, out, _, _ = su.cli(["-j", "log", "--action", action], d.conf_path)
        return [json.loads(l) for l in out.splitlines() if l.strip()]
    rel = h.wait_for(lambda: rows("released"), 20, "the release row in the message log")
    dele = h.wait_for(lambda: rows("deleted"), 20, "the delete row in the message log")
    h.check_eq([r["id"] for r in rel], [ids[0]], "IDs of release rows")
    h.check_eq([r["id"] for r in dele], [ids[1]], "IDs of delete rows")
    h.check_eq(rel[0]["verdict"], "admin", "verdict of the release row")
    h.check_eq(rel[0]["sender"], "s0@example.com", "sender of the release row")
    # not counted as mail in the statistics
    rc, out, _, _ = su.cli(["-j", "stats", "--days", "1"], d.conf_path)
    tot = [json.loads(l) for l in out.splitlines() if '"total"' in l][0]
    h.check_eq((tot["messages"], tot["virus"], tot["clean"]), (4, 2, 2), "stats totals")

    # the daily report on demand
    rc, out, err, _ = su.cli(["report"], d.conf_path)
    h.check_eq(rc, 0, "scanrelay report (%s %s)" % (out, err))
    rep = h.wait_for(lambda: [m for m in admin_mails(sink) if "daily report" in m[0]], 30,
                     "the daily report mail")
    h.check_eq(len(rep), 1, "daily report mails")
    body = rep[0][1]
    print("  report:\n    " + "\n    ".join(body.splitlines()[:12]))
    check_mail_form(rep[0], "report")
    for k, v in (("messages", 4), ("clean", 2), ("virus", 2)):
        h.check(re.search(r"(?m)^%s +%d\b" % (k, v), body), "report %s != %d:\n%s"
                % (k, v, body))
    h.check(re.search(r"(?m)^quarantined +2 +\(2 messages, \d+ bytes\)", body),
            "report quarantined:\n%s" % body)
    h.check(re.search(r"(?msi)^top viruses:\n +2 +\S*eicar", body), "top viruses:\n%s" % body)
    h.check(re.search(r"(?ms)^top senders:\n +3 +s0@example.com", body),
            "top senders:\n%s" % body)
    h.check(re.search(r"(?ms)^top rules:\n +2 +\S+", body), "top rules:\n%s" % body)

    # a delete with the daemon down gets its row too
    ids += quarantine_some(d, 1, first=2)
    d.stop()
    rc, out, err, _ = su.cli(["quarantine", "delete", ids[2]], d.conf_path)
    h.check_eq(rc, 0, "offline delete (%s)" % err)
    h.check_eq(sorted(r["id"] for r in rows("deleted")), sorted(ids[1:3]),
               "IDs of delete rows after an offline delete")


def test_daily_report_schedule(ctx):
    """daily_report = yes: the first check of a new day mails the day before, once."""
    sink = h.SmtpSink(ctx)
    d = daemon(ctx, sink.port, alert={"daily_report": raw("yes")}, start=False)
    # the last report was on an earlier day (as after a night with the daemon running)
    with open(os.path.join(d.state_dir, "alerts"), "w") as f:
        f.write("report\t20000101\n")
    d.start()
    yesterday = time.strftime("%Y-%m-%d", time.localtime(time.time() - 86400))
    rep = h.wait_for(lambda: [m for m in admin_mails(sink) if "daily report" in m[0]], 30,
                     "the scheduled daily report")
    h.check_eq(rep[0][0].split(" on ")[0], "scanrelay daily report for %s" % yesterday,
               "subject of the scheduled report")
    check_mail_form(rep[0], "report")
    wait_checks(d, 3)
    h.check_eq(len([m for m in admin_mails(sink) if "daily report" in m[0]]), 1,
               "scheduled daily reports")
    # a restart the same day: no second report
    d.stop()
    d.start()
    wait_checks(d, 3)
    h.check_eq(len([m for m in admin_mails(sink) if "daily report" in m[0]]), 1,
               "daily reports after a restart the same day")


if __name__ == "__main__":
    h.run_tests(globals())
