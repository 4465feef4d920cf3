#!/usr/bin/env python3
"""
scan_reload.py - signature reloads: under load, broken databases, start-up
without a database.

  * reload under load: smtp-source -s 20 -l 10240 runs of 200 messages,
    one after the other, through a scanning scanrelayd while the test
    triggers three signature reloads in turn (the control socket's
    "reload", SIGHUP, a new file in the database directory); the load lasts
    until the third reload is confirmed, then one more run: zero refused
    connections, zero 4xx (smtp-source aborts on any unexpected reply),
    every message at smtp-sink and relayed in the log, "signatures
    reloaded" three times while the load ran, messages scanned with the new
    set after it, and the new signature active afterwards;
  * a new database file is picked up through the directory watch alone
    (check_interval = 1h);
  * a broken database file: the reload fails, the log says which file and
    why, the old engine keeps scanning (EICAR still caught); removing the
    file makes the next reload succeed;
  * SIGHUP applies a changed virus.action;
  * `scanrelay reload` (the CLI) reloads the running daemon;
  * a missing or empty database directory at start-up: a clear error,
    exit status non-zero, no crash (also for scanrelayd -t).

Run: SCANRELAY_BUILD=build python3 t/integ/scan_reload.py [test ...]
"""

import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import scan_util as su  # noqa: E402
from scan_util import raw  # noqa: E402

RELOADED = "signatures reloaded"
MARKER = b"SCANRELAY-RELOAD-MARKER-7f3a9c-this-string-is-a-test-signature"


def reload_count(d, since=0):
    return d.log()[since:].count(RELOADED)


def wait_reloads(d, n, since, timeout=30, what="reload"):
    return h.wait_for(lambda: reload_count(d, since) >= n, timeout,
                      "%d '%s' line(s) in the log after the %s" % (n, RELOADED, what))


def add_marker_sig(db, name="marker.ndb", atomic=True):
    """A new .ndb file with a body signature for MARKER (written via rename when atomic)."""
    dst = os.path.join(db, name)
    tmp = os.path.join(db, ".tmp-" + name) if atomic else dst
    with open(tmp, "w") as f:
        f.write(su.ndb_line("Test.Reload.Marker", MARKER))
    if atomic:
        os.rename(tmp, dst)
    return dst


def bulk_hdb(db, n):
    """n MD5 signatures that match nothing: makes each compile take a while."""
    with open(os.path.join(db, "bulk.hdb"), "w") as f:
        for i in range(n):
            f.write("%s:%d:Test.Bulk.%d\n" % (hashlib.md5(b"bulk%d" % i).hexdigest(),
                                               1000 + i % 5000, i))


def marker_msg():
    return su.text_message(b"Nothing bad, just the marker:\r\n" + MARKER + b"\r\n",
                           subject="marker")


def eicar_msg():
    return su.mime_message([su.text_part(), su.attachment("eicar.com", su.EICAR)])


def sink_count(sink):
    try:
        return len(os.listdir(sink.dumpdir))
    except OSError:
        return -1


# ---------------------------------------------------------------- under load

class Load:
    """smtp-source runs of BATCH messages (20 sessions, 10 KB) one after the
    other in a thread, until finish() was called and one more run ended:
    the load lasts as long as the test needs it, however fast the relay."""
    BATCH = 200

    def __init__(self, ctx, port):
        self.ctx, self.port = ctx, port
        self.results = []  # (exit status, output) per run
        self.sent = 0
        self.proc = None
        self._finish = threading.Event()
        self._stopping = False
        ctx.at_exit(self._kill)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def running(self):
        return self.thread.is_alive()

    def finish(self):
        self._finish.set()

    def _kill(self):
        self._stopping = True
        p = self.proc
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(10)

    def _run(self):
        n = 0
        while not self._stopping:
            last = self._finish.is_set()
            path = self.ctx.path("smtp-source.%d.out" % n)
            with open(path, "wb") as out:
                self.proc = subprocess.Popen(
                    ["smtp-source", "-s", "20", "-m", str(self.BATCH), "-l", "10240",
                     "-f", "load@example.com", "-t", "rcpt@example.org",
                     "127.0.0.1:%d" % self.port], stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True)
            try:
                rc = self.proc.wait(300)
            except subprocess.TimeoutExpired:
                self._kill()
                rc = -1
            self.results.append((rc, h.read_text(path)))
            self.sent += self.BATCH
            n += 1
            if rc != 0 or last:
                break



def test_reload_under_load(ctx):
    db = su.copy_sigs(ctx)
    bulk_hdb(db, 30000)
    nsigs = su.sig_count(db)
    sink = h.SmtpSink(ctx)
    d = su.scanning_daemon(ctx, sink.port, dbdir=db,
                           virus={"action": raw("reject"), "check_interval": raw("1s")})
    d.wait_log(r"scanning with ClamAV", 30)
    t_start = time.monotonic()
    mark = d.log_mark()
    # The load lasts until every reload is confirmed, then one more batch
    # (a load of fixed size ran out before the third reload on a fast relay).
    load = Load(ctx, d.port)
    h.wait_for(lambda: sink_count(sink) >= 50 or not load.running(), 60,
               "the load to start")
    events = []

    def note(what):
        events.append((what, sink_count(sink), time.monotonic() - t_start, load.running()))

    # 1. the control socket
    note("reload requested (control socket)")
    ok, text, _ = su.control(d.top["control_socket"], "reload")
    h.check(ok, "control socket reload answered ERR %s" % text)
    wait_reloads(d, 1, mark, what="control-socket reload")
    note("reloaded #1")
    # 2. SIGHUP
    d.signal(signal.SIGHUP)
    wait_reloads(d, 2, mark, what="SIGHUP")
    note("reloaded #2")
    # 3. a change in the database directory
    add_marker_sig(db)
    wait_reloads(d, 3, mark, what="new file in the database directory")
    note("reloaded #3")
    load.finish()
    load.thread.join(300)
    h.check(not load.thread.is_alive(), "the load did not end within 300 s of the last reload")
    t_load = time.monotonic() - t_start
    note("load done")
    total = load.sent
    for what, n, t, running in events:
        print("  %6.2fs  %5d at smtp-sink  %s%s" % (t, n, what, "" if running else " (no load)"))
    print("  %d batches of %d messages" % (len(load.results), Load.BATCH))
    bad_runs = [(rc, out) for rc, out in load.results if rc != 0]
    h.check(not bad_runs, "smtp-source exited %d (a refused connection or an unexpected reply "
            "aborts it):\n%s" % (bad_runs[0][0], bad_runs[0][1][-2000:]) if bad_runs else "")
    dumps = sink.wait_dumps(total, timeout=60)
    h.check_eq(len(dumps), total, "messages at smtp-sink")
    logs = [x for x in d.message_logs(mark) if x.get("from") == "load@example.com"]
    bad = [x for x in logs if x.get("action") != "relayed" or not x.get("dsn", "").startswith("2")]
    h.check(not bad, "%d message(s) not relayed, e.g. %s" % (len(bad), bad[:3]))
    h.check_eq(len(logs), total, "per-message log lines of the load")
    text = d.log_since(mark)
    h.check(" 4.3." not in text and "421 " not in text,
            "the log shows a 4xx during the load:\n%s" % "\n".join(
                l for l in text.splitlines() if " 4.3." in l or "421 " in l)[:2000])
    h.check("reload failed" not in text, "a reload failed:\n%s" % text[-2000:])
    h.check(reload_count(d, mark) >= 3, "the log shows %d reloads" % reload_count(d, mark))
    # the reloads were swapped in while messages were still coming
    during = [e for e in events if e[0].startswith("reloaded") and e[3]]
    h.check(len(during) == 3, "only %d of the 3 reloads completed while the load ran "
            "(load took %.1fs): %r" % (len(during), t_load, events))
    h.check(events[-1][1] > events[-2][1], "no message relayed after the last reload: %r"
            % (events,))
    # signature counts in X-Virus-Scanned: the old set, then the new one
    counts = {}
    for x in dumps:
        m = su.SCANNED_RE.match(x.header("X-Virus-Scanned") and
                                "X-Virus-Scanned: " + x.header("X-Virus-Scanned") or "")
        h.check(m, "a delivered message without a proper X-Virus-Scanned: %r" % x.message[:200])
        counts[int(m.group(1))] = counts.get(int(m.group(1)), 0) + 1
    print("  X-Virus-Scanned signature counts: %r" % counts)
    h.check(set(counts) <= {nsigs, nsigs + 1}, "unexpected signature counts %r (expected %d "
            "then %d)" % (counts, nsigs, nsigs + 1))
    h.check(nsigs + 1 in counts, "no message of the load was scanned with the new signature "
            "set (%d): %r" % (nsigs + 1, counts))
    # the new signature is live, the old ones too
    su.expect_final(su.send(d.port, marker_msg()), 554, "marker after the reloads", "554 5.7.1")
    su.expect_final(su.send(d.port, eicar_msg()), 554, "EICAR after the reloads", "554 5.7.1")


# ---------------------------------------------------------------- directory watch

def test_new_database_file_watched(ctx):
    """check_interval = 1h: only the directory watch can notice the new file."""
    db = su.copy_sigs(ctx)
    sink = h.SmtpSink(ctx)
    d = su.scanning_daemon(ctx, sink.port, dbdir=db,
                           virus={"action": raw("reject"), "check_interval": raw("1h")})
    tx = su.send(d.port, marker_msg())
    su.expect_final(tx, 250, "marker before the new signature file")
    mark = d.log_mark()
    t0 = time.monotonic()
    add_marker_sig(db)
    wait_reloads(d, 1, mark, timeout=20, what="new file (directory watch)")
    dt = time.monotonic() - t0
    print("  new database file picked up in %.1fs" % dt)
    su.expect_final(su.send(d.port, marker_msg()), 554, "marker after the reload", "554 5.7.1")
    # a changed file (rewritten in place) is noticed as well
    mark = d.log_mark()
    with open(os.path.join(db, "marker.ndb"), "w") as f:
        f.write(su.ndb_line("Test.Reload.Marker2", MARKER))
    wait_reloads(d, 1, mark, timeout=20, what="a database file rewritten in place")
    tx = su.send(d.port, marker_msg())
    su.expect_final(tx, 554, "marker after the rewrite", "554 5.7.1")
    h.check("Test.Reload.Marker2" in tx.final.line(),
            "the rewritten signature is not the one in use: %r" % tx.final.line())


# ---------------------------------------------------------------- broken database

def test_broken_database_keeps_old_engine(ctx):
    db = su.copy_sigs(ctx)
    sink = h.SmtpSink(ctx)
    d = su.scanning_daemon(ctx, sink.port, dbdir=db,
                           virus={"action": raw("reject"), "check_interval": raw("1h")})
    nsigs = su.sig_count(db)
    mark = d.log_mark()
    with open(os.path.join(db, "broken.ndb"), "w") as f:
        f.write("this line is not a signature\n")
    # the watch notices; a control-socket reload gets the same answer
    line = d.wait_log(r"(?m)^.*reload failed.*$", 20, mark).group(0)
    print("  log: %s" % line.strip())
    h.check("broken.ndb" in line, "the failed-reload log line does not name the file: %r" % line)
    h.check(re.search(r"(?i)malformed|pars|invalid|error", line),
            "the failed-reload log line does not say why: %r" % line)
    h.check(reload_count(d, mark) == 0, "a reload succeeded with a broken file in place")
    mark2 = d.log_mark()
    ok, text, _ = su.control(d.top["control_socket"], "reload")
    d.wait_log(r"reload failed", 20, mark2)
    # the old engine still scans
    su.expect_final(su.send(d.port, eicar_msg()), 554, "EICAR with the old engine", "554 5.7.1")
    clean = su.text_message(b"clean\r\n")
    su.expect_final(su.send(d.port, clean), 250, "clean message with the old engine")
    dump = sink.wait_dumps(1)[0]
    l1, l2, _ = su.added_headers(dump.message, h.sink_view(clean), crlf=False)
    h.check_eq(int(su.SCANNED_RE.match(l1).group(1)), nsigs, "signature count (old engine)")
    # remove the broken file: the next reload succeeds
    mark3 = d.log_mark()
    os.remove(os.path.join(db, "broken.ndb"))
    add_marker_sig(db)
    wait_reloads(d, 1, mark3, timeout=20, what="removing the broken file")
    su.expect_final(su.send(d.port, marker_msg()), 554, "marker after recovery", "554 5.7.1")
    su.expect_final(su.send(d.port, eicar_msg()), 554, "EICAR after recovery", "554 5.7.1")


def test_sighup_applies_virus_action(ctx):
    sink = h.SmtpSink(ctx)
    d = su.scanning_daemon(ctx, sink.port, virus={"action": raw("reject")})
    su.expect_final(su.send(d.port, eicar_msg()), 554, "EICAR, action reject", "554 5.7.1")
    d.sections["virus"]["action"] = raw("discard")
    d.write_config()
    mark = d.log_mark()
    d.signal(signal.SIGHUP)
    wait_reloads(d, 1, mark, what="SIGHUP")
    su.expect_final(su.send(d.port, eicar_msg()), 250, "EICAR after SIGHUP, action discard",
                    "250 2.7.0")


def test_cli_reload(ctx):
    """`scanrelay -c CONF reload` talks to the running daemon (SPEC.md, Programs)."""
    db = su.copy_sigs(ctx)
    sink = h.SmtpSink(ctx)
    d = su.scanning_daemon(ctx, sink.port, dbdir=db, virus={"check_interval": raw("1h")})
    mark = d.log_mark()
    rc, out, err, _ = su.cli(["reload"], d.conf_path)
    h.check(rc == 0, "scanrelay reload exited %d: %s %s" % (rc, out, err))
    wait_reloads(d, 1, mark, what="scanrelay reload")


# ---------------------------------------------------------------- start-up

def start_fails(ctx, dbdir, what):
    d = su.scanning_daemon(ctx, h.free_port(), dbdir=dbdir, start=False, name="bad")
    t0 = time.monotonic()
    try:
        p = subprocess.run([h.DAEMON, "-f", "-c", d.conf_path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
    except subprocess.TimeoutExpired:
        h.fail("%s: scanrelayd is still running after 60 s" % what)
    out = p.stdout.decode("utf-8", "replace")
    print("  %s: exit %d in %.1fs: %s" % (what, p.returncode, time.monotonic() - t0,
                                          out.strip().splitlines()[-1] if out.strip() else ""))
    h.check(p.returncode > 0, "%s: scanrelayd exited with %d (expected a non-zero exit "
            "status, not a signal):\n%s" % (what, p.returncode, out))
    for bad in ("AddressSanitizer", "runtime error:", "Segmentation", "core dumped",
                "LeakSanitizer"):
        h.check(bad not in out, "%s: %s in the output:\n%s" % (what, bad, out))
    h.check(dbdir in out, "%s: the error does not name the directory %s:\n%s" % (what, dbdir, out))
    h.check(h.port_refuses(d.port), "%s: something listens on the daemon's port" % what)
    rc, tout = h.run_daemon_check(d.conf_path)
    h.check(rc == 1, "%s: scanrelayd -t exited %d (expected 1):\n%s" % (what, rc, tout))
    h.check(dbdir in tout, "%s: scanrelayd -t does not name %s:\n%s" % (what, dbdir, tout))
    return out


def test_missing_database_directory(ctx):
    start_fails(ctx, ctx.path("no-such-dir"), "missing database directory")


def test_empty_database_directory(ctx):
    start_fails(ctx, ctx.mkdir("empty-db"), "empty database directory")


def test_broken_database_at_startup(ctx):
    db = su.copy_sigs(ctx)
    with open(os.path.join(db, "broken.ndb"), "w") as f:
        f.write("garbage\n")
    out = start_fails(ctx, db, "broken database file")
    h.check("broken.ndb" in out, "the error does not name broken.ndb:\n%s" % out)


if __name__ == "__main__":
    h.run_tests(globals())
