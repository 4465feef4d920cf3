#!/usr/bin/env python3
"""
scan_relay.py - scanning through the daemon: what is stopped, what arrives.

Real peers: scanrelayd (scan { enabled = yes }, the test signature set
t/sigs), smtp-sink or a RawSink (exact wire bytes) downstream, an SMTP
client injecting. Covers issue 3's bars at the daemon level:

  * every file of Debian's clamav-testfiles, attached (base64), is stopped
    (554 5.7.1 with virus.action = reject) and nothing of it reaches
    smtp-sink;
  * clean mail arrives with X-Virus-Scanned / X-Virus-Status: Clean
    prepended and is otherwise byte-identical;
  * EICAR inline, attached base64 / quoted-printable / uuencoded, in a zip,
    a tar.gz, a 7z, zip-in-zip five deep: stopped, the log names the part;
  * each action: reject, discard, quarantine (file under
    state_directory/quarantine/), tag, strip (the part replaced by a
    notice, the other parts intact);
  * an encrypted zip -> encrypted_action;
  * a 1 GiB zip bomb -> a limit verdict, the daemon's RSS rises < 50 MB;
  * ISO-2022-JP / Shift_JIS file names decoded (UTF-8) in the log's part=.

Run: SCANRELAY_BUILD=build python3 t/integ/scan_relay.py [test ...]
"""

import email
import email.policy
import gzip
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import scan_util as su  # noqa: E402
from scan_util import raw  # noqa: E402

REJECT_ALL = {a: raw("reject") for a in (
    "file_size_action", "total_size_action", "archive_files_action", "archive_depth_action",
    "compression_ratio_action", "encrypted_action")}


def virus_logs(d, since=0):
    return [x for x in d.message_logs(since) if x.get("result") != "clean"]


def log_for(d, qid=None, pred=None, timeout=10, since=0):
    return d.wait_message_logs(lambda x: (qid is None or x.qid == qid) and
                               (pred is None or pred(x)), 1, timeout, since)[0]


def stopped_case(ctx, d, sink, msg, what, location=None, name=su.EICAR_NAME):
    """Send msg, expect 554 5.7.1, a result=virus log line with virus= and part=."""
    mark = d.log_mark()
    tx = su.send(d.port, msg)
    su.expect_final(tx, 554, what, "554 5.7.1")
    line = d.wait_message_logs(lambda x: x.get("action") == "rejected", 1, 10, mark)[0]
    h.check(line.get("result") == "virus", "%s: log result=%r, expected virus: %s"
            % (what, line.get("result"), line))
    h.check(line.get("virus", "").startswith(name),
            "%s: log virus=%r, expected %s...: %s" % (what, line.get("virus"), name, line))
    h.check(line.get("rule") == "virus", "%s: log rule=%r, expected virus: %s"
            % (what, line.get("rule"), line))
    if location is not None:
        part = su.parse_log_part(line.line)
        h.check(part == location, "%s: log part=%r, expected %r: %s"
                % (what, part, location, line))
    return line


# ---------------------------------------------------------------- clamav-testfiles

def test_testfiles_all_stopped(ctx):
    files = su.need_testfiles()
    sink = h.SmtpSink(ctx)
    d = su.scanning_daemon(ctx, sink.port, virus={"action": raw("reject")}, scan=REJECT_ALL)
    not_stopped, verdicts = [], {}
    for fn in files:
        with open(os.path.join(su.TESTFILES, fn), "rb") as f:
            data = f.read()
        msg = su.mime_message([su.text_part(), su.attachment(fn, data)],
                              subject="testfile %s" % fn)
        tx = su.send(d.port, msg)
        if tx.final is None or tx.final.code != 554 or not tx.final.line().startswith("554 5.7.1"):
            not_stopped.append("%s -> %s" % (fn, su.final_line(tx)))
    # one clean message last: the sink works and got only that one
    clean = su.mime_message([su.text_part(), su.attachment("notes.txt", su.TEXT)])
    tx = su.send(d.port, clean)
    su.expect_final(tx, 250, "clean message after the test files")
    dumps = sink.wait_dumps(1)
    time.sleep(0.3)
    dumps = sink.dumps(complete_only=False)
    for x in d.message_logs():
        verdicts.setdefault(x.get("result"), []).append(x.get("virus") or x.get("part"))
    h.check(not not_stopped, "%d of %d clamav-testfiles not stopped:\n  %s"
            % (len(not_stopped), len(files), "\n  ".join(not_stopped)))
    h.check(len(dumps) == 1, "smtp-sink got %d messages, expected only the clean one"
            % len(dumps))
    su.added_headers(dumps[0].message, h.sink_view(clean), crlf=False)
    nvirus = len(verdicts.get("virus", []))
    print("  %d test files: %d virus, %d policy (%s)" % (
        len(files), nvirus, len(verdicts.get("policy", [])),
        ", ".join(str(v) for v in verdicts.get("policy", []))))


# ---------------------------------------------------------------- clean mail

def clean_messages():
    big = b"".join(b"line %06d of a longer clean body, nothing to see here\r\n" % i
                   for i in range(3000))
    return [
        ("plain", su.text_message(b"Hello.\r\nJust text.\r\n")),
        ("dots and spaces", su.text_message(b".leading dot\r\n..two\r\n.\r\n \r\ntrailing \t\r\n")),
        ("no final CRLF", su.text_message(b"last line without CRLF")),
        ("multipart zip+qp", su.mime_message([
            su.text_part(b"caf\xc3\xa9 = na\xc3\xafve\r\n" * 20, "utf-8", "quoted-printable"),
            su.attachment("report.zip", su.zip_of([("a.txt", su.TEXT), ("b/c.txt", su.TEXT * 50)]),
                          "application/zip"),
            su.attachment("notes.txt", su.TEXT, "text/plain", "base64")])),
        ("8bit latin-1", su.text_message(b"Gr\xfc\xdfe aus K\xf6ln\r\n",
                                         extra_headers="X-Weird:  two  spaces \r\n")),
        ("folded headers", su.text_message(b"body\r\n",
                                           extra_headers="X-Long: a\r\n\tb\r\n c\r\n")),
        ("200 KB body", su.text_message(big)),
    ]


def test_clean_mail_unchanged(ctx):
    """Exact wire bytes at a RawSink: two lines prepended (CRLF), the rest identical."""
    rs = h.RawSink(ctx)
    d = su.scanning_daemon(ctx, rs.port, virus={"action": raw("reject")})
    cases = clean_messages()
    for i, (what, msg) in enumerate(cases):
        tx = su.send(d.port, msg)
        su.expect_final(tx, 250, what)
    txs = rs.wait_txs(len(cases))
    nsigs = su.sig_count(su.SIGS)
    for (what, msg), rtx in zip(cases, txs):
        want = msg if msg.endswith(b"\r\n") else msg + b"\r\n"
        l1, l2, _ = su.added_headers(rtx.message, want)
        h.check(l2 == "X-Virus-Status: Clean", "%s: %r" % (what, l2))
        n = int(su.SCANNED_RE.match(l1).group(1))
        h.check(n == nsigs, "%s: X-Virus-Scanned says %d signatures, t/sigs has %d: %r"
                % (what, n, nsigs, l1))
    for x in d.message_logs():
        h.check(x.get("result") == "clean" and x.get("action") == "relayed",
                "clean message logged as %s" % x)


# ---------------------------------------------------------------- EICAR wrappings

def eicar_cases():
    e = su.EICAR
    z5, z5name, z5loc = su.nested_zip(e, "eicar.com", 5)
    return [
        ("inline", su.text_message(b"Test:\r\n" + e + b"\r\n"), None),
        ("base64", su.mime_message([su.text_part(), su.attachment("eicar.com", e)]), "eicar.com"),
        ("quoted-printable", su.mime_message([su.text_part(), su.attachment(
            "eicar.txt", e + b"\r\n", "text/plain", "quoted-printable")]), "eicar.txt"),
        ("x-uuencode", su.mime_message([su.text_part(), su.attachment(
            "eicar.com", e, enc="x-uuencode")]), "eicar.com"),
        ("uuencoded in the body", su.text_message(b"Here:\r\n\r\n" + su.uuencode(e, "eicar.com")
                                                  + b"\r\n"), "eicar.com"),
        ("zip", su.mime_message([su.text_part(), su.attachment(
            "invoice.zip", su.zip_of([("readme.txt", su.TEXT), ("docs/a.exe", e)]),
            "application/zip")]), "invoice.zip/docs/a.exe"),
        ("tar.gz", su.mime_message([su.text_part(), su.attachment(
            "files.tar.gz", su.targz_of([("files/readme.txt", su.TEXT), ("files/eicar.com", e)]),
            "application/gzip")]), "files.tar.gz/files/eicar.com"),
        ("zip in zip five deep", su.mime_message([su.text_part(), su.attachment(
            z5name, z5, "application/zip")]), z5loc),
    ]


def test_eicar_wrappings_stopped(ctx):
    sink = h.SmtpSink(ctx)
    d = su.scanning_daemon(ctx, sink.port, virus={"action": raw("reject")})
    errs = []
    for what, msg, loc in eicar_cases():
        try:
            stopped_case(ctx, d, sink, msg, "EICAR " + what, loc)
        except h.TestFailure as e:
            errs.append(str(e))
    time.sleep(0.3)
    n = len(sink.dumps(complete_only=False))
    if n:
        errs.append("smtp-sink got %d message(s); every one carried EICAR" % n)
    h.check(not errs, "\n  ".join(errs))


def test_eicar_inline_part_named(ctx):
    """EICAR in a plain body: the log still names a part (not an empty part=)."""
    sink = h.SmtpSink(ctx)
    d = su.scanning_daemon(ctx, sink.port, virus={"action": raw("reject")})
    line = stopped_case(ctx, d, sink, su.text_message(b"x\r\n" + su.EICAR + b"\r\n"),
                        "EICAR inline")
    part = su.parse_log_part(line.line)
    h.check(part, "no part= in %s" % line)


# ---------------------------------------------------------------- actions

def infected_multipart():
    """text + clean notes.txt + eicar.com + clean data.bin (four leaf parts)."""
    parts = [su.text_part(b"Please find the files attached.\r\n"),
             su.attachment("notes.txt", su.TEXT, "text/plain", "base64"),
             su.attachment("eicar.com", su.EICAR),
             su.attachment("data.bin", bytes(range(256)) * 8)]
    return parts, su.mime_message(parts, subject="action test")


def test_action_reject(ctx):
    sink = h.SmtpSink(ctx)
    d = su.scanning_daemon(ctx, sink.port, virus={"action": raw("reject")})
    _, msg = infected_multipart()
    tx = su.send(d.port, msg)
    r = su.expect_final(tx, 554, "reject", "554 5.7.1 Rejected:")
    h.check(su.EICAR_NAME in r.line(), "the reject reply should name the virus: %r" % r.line())
    line = log_for(d)
    h.check(line.get("action") == "rejected" and line.get("result") == "virus", str(line))
    h.check(su.parse_log_part(line.line) == "eicar.com", "part=: %s" % line)
    time.sleep(0.3)
    h.check_eq(len(sink.dumps(False)), 0, "messages at smtp-sink")


def test_action_discard(ctx):
    sink = h.SmtpSink(ctx)
    d = su.scanning_daemon(ctx, sink.port, virus={"action": raw("discard")})
    _, msg = infected_multipart()
    tx = su.send(d.port, msg)
    r = su.expect_final(tx, 250, "discard", "250 2.7.0 Ok: discarded as ")
    qid = su.reply_qid(r)
    h.check(qid, "no queue ID in %r" % r.line())
    h.check(re.search(r"\(.+\)", r.line()), "the discard reply gives no reason: %r" % r.line())
    line = log_for(d, qid)
    h.check(line.get("action") == "discarded" and line.get("result") == "virus", str(line))
    time.sleep(0.3)
    h.check_eq(len(sink.dumps(False)), 0, "messages at smtp-sink")


def test_action_quarantine(ctx):
    sink = h.SmtpSink(ctx)
    d = su.scanning_daemon(ctx, sink.port, virus={"action": raw("quarantine")})
    _, msg = infected_multipart()
    tx = su.send(d.port, msg)
    r = su.expect_final(tx, 250, "quarantine", "250 2.7.0 Ok: quarantined as ")
    qid = su.reply_qid(r)
    h.check(qid, "no ID in %r" % r.line())
    line = log_for(d, qid)
    h.check(line.get("action") == "quarantined" and line.get("result") == "virus", str(line))
    qdir = os.path.join(d.state_dir, "quarantine")
    files = []
    for root, _, fs in os.walk(qdir):
        files += [os.path.join(root, f) for f in fs]
    h.check(files, "nothing under %s after a quarantine verdict" % qdir)
    match = [f for f in files if qid in os.path.basename(f)]
    h.check(match, "no file named after %s under %s: %r" % (qid, qdir, files))
    # The quarantine store keeps each message gzip'd (quarantine/YYYYMMDD/ID.gz).
    h.check(match[0].endswith(".gz"), "not a gzip file: %s" % match[0])
    with gzip.open(match[0], "rb") as f:
        stored = f.read()
    h.check(stored.endswith(msg) or stored.replace(b"\r\n", b"\n").endswith(
        msg.replace(b"\r\n", b"\n")),
            "the quarantined file does not hold the message as received (%d bytes)" % len(stored))
    time.sleep(0.3)
    h.check_eq(len(sink.dumps(False)), 0, "messages at smtp-sink")


def test_action_tag(ctx):
    rs = h.RawSink(ctx)
    d = su.scanning_daemon(ctx, rs.port, virus={"action": raw("tag")})
    _, msg = infected_multipart()
    tx = su.send(d.port, msg)
    su.expect_final(tx, 250, "tag")
    rtx = rs.wait_txs(1)[0]
    l1, l2, _ = su.added_headers(rtx.message, msg)
    m = su.STATUS_RE.match(l2)
    h.check(m.group(2) and m.group(2).startswith(su.EICAR_NAME),
            "tagged message: expected X-Virus-Status: Infected (%s...), got %r"
            % (su.EICAR_NAME, l2))
    line = log_for(d)
    h.check(line.get("action") == "tagged" and line.get("result") == "virus", str(line))


def _leaves(m):
    return [p for p in m.walk() if not p.is_multipart()]


def test_action_strip(ctx):
    rs = h.RawSink(ctx)
    d = su.scanning_daemon(ctx, rs.port, virus={"action": raw("strip")})
    parts, msg = infected_multipart()
    tx = su.send(d.port, msg)
    su.expect_final(tx, 250, "strip")
    out = rs.wait_txs(1)[0].message
    line = log_for(d)
    h.check(line.get("action") == "stripped" and line.get("result") == "virus", str(line))
    h.check(su.EICAR not in out, "EICAR still in the delivered message")
    l1, l2, rest = su.added_headers(out)
    # the clean parts arrive byte for byte
    for i in (0, 1, 3):
        h.check(parts[i] in rest, "part %d is not intact in the stripped message" % (i + 1))
    # the original header block is intact
    hdr = msg.split(b"\r\n\r\n", 1)[0]
    h.check(rest.startswith(hdr + b"\r\n"), "the header block changed:\n%r" % rest[:600])
    m = email.message_from_bytes(rest, policy=email.policy.default)
    leaves = _leaves(m)
    h.check(len(leaves) == 4, "expected 4 leaf parts after strip, got %d: %r"
            % (len(leaves), [p.get_content_type() for p in leaves]))
    notice = leaves[2]
    h.check(notice.get_content_type() == "text/plain",
            "the stripped part is %s, expected text/plain" % notice.get_content_type())
    text = notice.get_content()
    h.check("eicar.com" in text, "the notice does not name the file: %r" % text)
    h.check(su.EICAR_NAME in text or "virus" in text.lower() or "infected" in text.lower(),
            "the notice does not give the reason: %r" % text)
    h.check_eq(leaves[1].get_content(), su.TEXT.decode(), "notes.txt content")
    h.check_eq(leaves[3].get_content(), bytes(range(256)) * 8, "data.bin content")


# ---------------------------------------------------------------- encrypted, bomb

def test_encrypted_zip_action(ctx):
    sink = h.SmtpSink(ctx)
    enc = su.encrypted_zip([("payload.exe", su.EICAR + b" padding" * 8)])
    msg = su.mime_message([su.text_part(), su.attachment("secret.zip", enc, "application/zip")])
    d = su.scanning_daemon(ctx, sink.port, virus={"action": raw("discard")},
                           scan={"encrypted_action": raw("reject")})
    tx = su.send(d.port, msg)
    su.expect_final(tx, 554, "encrypted zip with encrypted_action = reject", "554 5.7.1")
    line = log_for(d)
    h.check(line.get("result") == "policy" and line.get("action") == "rejected",
            "encrypted zip logged as %s" % line)
    h.check((su.parse_log_part(line.line) or "").startswith("secret.zip"),
            "part= should name secret.zip: %s" % line)
    time.sleep(0.3)
    h.check_eq(len(sink.dumps(False)), 0, "messages at smtp-sink")


def test_encrypted_zip_tag_not_clean(ctx):
    """encrypted_action = tag: delivered, but never marked Clean."""
    rs = h.RawSink(ctx)
    enc = su.encrypted_zip([("payload.exe", b"MZ" + b"\0" * 300)])
    msg = su.mime_message([su.text_part(), su.attachment("secret.zip", enc, "application/zip")])
    d = su.scanning_daemon(ctx, rs.port, scan={"encrypted_action": raw("tag")})
    su.expect_final(su.send(d.port, msg), 250, "encrypted zip, tag")
    l1, l2, _ = su.added_headers(rs.wait_txs(1)[0].message, msg)
    h.check(l2 != "X-Virus-Status: Clean", "an unscannable encrypted zip was marked %r" % l2)
    line = log_for(d)
    h.check(line.get("action") == "tagged", str(line))


class RssWatch:
    """Poll VmRSS of pid every few ms in a thread; max_kb is the highest seen."""

    def __init__(self, pid):
        self.pid = pid
        self.max_kb = su.rss_kb(pid)
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            try:
                v = su.rss_kb(self.pid)
            except OSError:
                return
            if v and v > self.max_kb:
                self.max_kb = v
            time.sleep(0.002)

    def done(self):
        self.stop = True
        self.t.join(5)
        return self.max_kb


def bomb_through_daemon(ctx, cases, scan=None, virus=None):
    """
    cases: (label, file name, content type, bytes). Each is sent through a
    daemon with every limit action = reject: expect 554 5.7.1, result=policy,
    and VmRSS (polled, and VmHWM after a reset) < 50 MB above the level
    after two warm-up messages of the same size.
    """
    sink = h.SmtpSink(ctx)
    sc = dict(REJECT_ALL)
    sc.update(scan or {})
    vc = {"action": raw("reject")}
    vc.update(virus or {})
    d = su.scanning_daemon(ctx, sink.port, virus=vc, scan=sc)
    pid = d.proc.pid
    biggest = max(len(c[3]) for c in cases)
    filler = su.mime_message([su.text_part(), su.attachment("noise.bin", os.urandom(biggest))],
                             subject="warm-up")
    # warm up: a message of the same size (spool, MIME, base64 paths touched)
    for _ in range(2):
        su.expect_final(su.send(d.port, filler), 250, "warm-up message")
    errs = []
    for label, fname, ctype, data in cases:
        h.check(len(data) < 3 << 20, "%s is %d bytes compressed, expected ~1 MB"
                % (label, len(data)))
        msg = su.mime_message([su.text_part(), su.attachment(fname, data, ctype)],
                              subject=label)
        time.sleep(0.3)
        mark = d.log_mark()
        base = su.rss_kb(pid)
        hwm_ok = su.reset_hwm(pid)
        w = RssWatch(pid)
        t0 = time.monotonic()
        tx = su.send(d.port, msg)
        dt = time.monotonic() - t0
        peak = w.done()
        if hwm_ok:
            peak = max(peak, su.hwm_kb(pid))
        rise = (peak - base) / 1024.0
        print("  %s: %d bytes compressed, reply %r in %.2fs, RSS %.1f MB -> peak %.1f MB "
              "(+%.1f MB, %s)" % (label, len(data), su.final_line(tx)[:60], dt, base / 1024.0,
                                  peak / 1024.0, rise, "VmHWM reset" if hwm_ok else "polled"),
              flush=True)
        try:
            su.expect_final(tx, 554, "%s with the limit actions = reject" % label, "554 5.7.1")
            line = log_for(d, pred=lambda x: x.get("action") == "rejected", since=mark)
            h.check(line.get("result") == "policy", "%s logged as %s (expected a limit verdict, "
                    "result=policy)" % (label, line))
            h.check(rise < 50, "%s: the daemon's RSS rose by %.1f MB while scanning it "
                    "(bar: < 50 MB)" % (label, rise))
        except h.TestFailure as e:
            errs.append(str(e))
    time.sleep(0.3)
    n = len(sink.dumps(False))
    if n != 2:
        errs.append("smtp-sink got %d messages, expected the 2 warm-ups" % n)
    h.check(not errs, "\n  ".join(errs))


def test_zip_bomb_limit_and_memory(ctx):
    bomb = su.zip_bomb_file(ctx.path("bomb.zip"))
    with open(bomb, "rb") as f:
        data = f.read()
    with open(su.zip_bomb_file(ctx.path("bomb32.zip"), zip64=False), "rb") as f:
        data32 = f.read()
    bomb_through_daemon(ctx, [("1 GiB zip bomb", "bomb.zip", "application/zip", data),
                              ("1 GiB zip bomb without zip64 fields", "bomb.zip",
                               "application/zip", data32)])


def test_hidden_bombs_limit_and_memory(ctx):
    """
    Bombs that do not declare their size: a zip whose headers lie, a gzip
    stream. The second liar claims 2 MB, more than its 1 MB of deflate data
    (so not an impossible size): the budget walk counts it by that size and
    leaves the expanding to libclamav, whose expansion (cut at
    virus.max_file_size, 25M) gives the lie away (declared_size).
    """
    with open(su.lying_zip_bomb_file(ctx.path("liar.zip")), "rb") as f:
        liar = f.read()
    with open(su.lying_zip_bomb_file(ctx.path("liar2m.zip"), claimed=2 << 20), "rb") as f:
        liar2m = f.read()
    bomb_through_daemon(ctx, [
        ("1 GiB zip bomb claiming 1000 bytes", "liar.zip", "application/zip", liar),
        ("1 GiB zip bomb claiming 2 MB", "liar2m.zip", "application/zip", liar2m),
        ("1 GiB gzip bomb", "zeros.gz", "application/gzip", su.gzip_bomb()),
    ])


def test_hidden_bombs_size_budget(ctx):
    """
    The same bombs with the ratio rule off (compression_ratio_limit = 0):
    only the streamed byte budget (file_size_limit = 100M) can stop them,
    without ever holding much of the expansion in memory.
    """
    with open(su.lying_zip_bomb_file(ctx.path("liar.zip")), "rb") as f:
        liar = f.read()
    bomb_through_daemon(ctx, [
        ("1 GiB zip bomb claiming 1000 bytes, no ratio rule", "liar.zip", "application/zip",
         liar),
        ("1 GiB gzip bomb, no ratio rule", "zeros.gz", "application/gzip", su.gzip_bomb()),
    ], scan={"compression_ratio_limit": 0, "file_size_limit": raw("100M")})


def test_bomb_memory_with_raised_clamav_limits(ctx):
    """
    An administrator raises libclamav's per-file limit for big attachments
    (virus.max_file_size = 400M, max_scan_size = 1G). Our budget still stops
    the bomb after a few MB; the memory bar must still hold: what is held
    in memory is bounded by the streaming budget, not by libclamav's
    max_file_size.
    """
    with open(su.lying_zip_bomb_file(ctx.path("liar.zip")), "rb") as f:
        liar = f.read()
    bomb_through_daemon(ctx, [
        ("1 GiB zip bomb claiming 1000 bytes, virus.max_file_size = 400M", "liar.zip",
         "application/zip", liar)],
        virus={"max_file_size": raw("400M"), "max_scan_size": raw("1G")})


def test_scan_timeout_error_action(ctx):
    """
    scan.timeout = 1s with limits far above the bomb (no ratio rule, 8G
    budgets): the scan cannot finish in time. error_action = defer ->
    451 4.3.0 soon after the timeout; error_action = pass -> delivered with
    X-Virus-Status: Unchecked. Never "Clean".
    """
    with open(su.lying_zip_bomb_file(ctx.path("liar.zip")), "rb") as f:
        liar = f.read()
    msg = su.mime_message([su.text_part(), su.attachment("liar.zip", liar, "application/zip")],
                          subject="slow scan")
    sc = {"timeout": raw("1s"), "compression_ratio_limit": 0, "file_size_limit": raw("8G"),
          "total_size_limit": raw("8G")}
    errs = []
    for action in ("defer", "pass"):
        rs = h.RawSink(ctx)
        s2 = dict(sc)
        s2["error_action"] = raw(action)
        # max_file_size above 32M: the budget walk expands the zip itself
        # (it does not leave the lying member to libclamav), slowly.
        d = su.scanning_daemon(ctx, rs.port, name="d-" + action,
                               virus={"max_scan_time": raw("1s"), "max_file_size": raw("64M")},
                               scan=s2)
        t0 = time.monotonic()
        tx = su.send(d.port, msg)
        dt = time.monotonic() - t0
        print("  error_action = %s: %r after %.2fs" % (action, su.final_line(tx), dt))
        line = d.wait_message_logs(lambda x: True, 1, 10)[0]
        if action == "defer":
            if not (tx.final and tx.final.line().startswith("451 4.3.0")):
                errs.append("defer: expected 451 4.3.0, got %r (log: %s)"
                            % (su.final_line(tx), line))
        else:
            if not (tx.final and tx.final.code == 250):
                errs.append("pass: expected 250, got %r" % su.final_line(tx))
            else:
                l1, l2, _ = su.added_headers(rs.wait_txs(1)[0].message, msg)
                if l2 != "X-Virus-Status: Unchecked":
                    errs.append("pass: delivered with %r, expected X-Virus-Status: Unchecked "
                                "(log: %s)" % (l2, line))
        if line.get("result") == "clean":
            errs.append("%s: a scan that overran scan.timeout was logged result=clean: %s"
                        % (action, line))
        if dt > 5:
            errs.append("%s: the answer took %.1fs with scan.timeout = 1s" % (action, dt))
    h.check(not errs, "\n  ".join(errs))


# ---------------------------------------------------------------- scan thread log lines

def test_scan_thread_lines_carry_qid(ctx):
    """A line written by a scan thread (with debug = yes, the note about an
    archive libarchive cannot read to its end) carries the queue ID of the
    message, like the message's own log line."""
    sink = h.SmtpSink(ctx)
    d = su.scanning_daemon(ctx, sink.port, debug=raw("yes"))
    z = su.zip_of([("a.txt", su.TEXT * 50), ("b.txt", su.TEXT * 50)])
    msg = su.mime_message([su.text_part(), su.attachment("broken.zip", z[:len(z) // 2],
                                                         "application/zip")])
    mark = d.log_mark()
    tx = su.send(d.port, msg)
    su.expect_final(tx, 250, "half a zip")
    line = d.wait_message_logs(lambda x: True, 1, 10, mark)[0]
    m = d.wait_log(r"scanrelayd\[\d+\]: (\S+): scan: broken\.zip\S*: archive not fully readable",
                   10, mark)
    h.check_eq(m.group(1), line.qid, "ID on the scan thread's line")


# ---------------------------------------------------------------- Japanese names

def test_japanese_filename_in_log(ctx):
    sink = h.SmtpSink(ctx)
    d = su.scanning_daemon(ctx, sink.port, virus={"action": raw("reject")})
    name = "請求書_ウイルス.com"
    zname = "見積書.zip"
    cases = [
        ("RFC 2047 ISO-2022-JP (B)", su.attachment(
            name, su.EICAR, name_param='name="%s"' % su.rfc2047(name, "iso-2022-jp"),
            disp_param='filename="%s"' % su.rfc2047(name, "iso-2022-jp")), name),
        ("RFC 2231 ISO-2022-JP", su.attachment(
            name, su.EICAR, name_param='name="%s"' % su.rfc2047(name, "iso-2022-jp"),
            disp_param="filename*=%s" % su.rfc2231(name, "iso-2022-jp")), name),
        ("RFC 2047 Shift_JIS (B)", su.attachment(
            name, su.EICAR, name_param='name="%s"' % su.rfc2047(name, "shift_jis"),
            disp_param='filename="%s"' % su.rfc2047(name, "shift_jis")), name),
        ("RFC 2047 ISO-2022-JP zip", su.attachment(
            zname, su.zip_of([("docs/a.exe", su.EICAR)]), "application/zip",
            name_param='name="%s"' % su.rfc2047(zname, "iso-2022-jp"),
            disp_param='filename="%s"' % su.rfc2047(zname, "iso-2022-jp")), zname + "/docs/a.exe"),
    ]
    errs = []
    for what, part, want in cases:
        subj = su.rfc2047("ウイルス検査 " + what, "iso-2022-jp")
        msg = su.mime_message([su.text_part(), part], subject=subj)
        try:
            stopped_case(ctx, d, sink, msg, what, want)
        except h.TestFailure as e:
            errs.append(str(e))
    h.check(not errs, "\n  ".join(errs))


if __name__ == "__main__":
    h.run_tests(globals())
