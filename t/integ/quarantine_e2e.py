#!/usr/bin/env python3
"""
quarantine_e2e.py - the quarantine store and the message log end to end
(issue 5): real scanrelayd (scanning on, virus.action = quarantine, the
test signature set t/sigs), a RawSink or smtp-sink downstream, and the
`scanrelay quarantine ...`, `scanrelay log`, `scanrelay stats` commands.

  * the issue's bar: an EICAR mail with an ISO-2022-JP subject is
    quarantined, found by `quarantine list --subject '日本語*'` (and not by
    a glob that does not match), released, and arrives downstream
    byte-identical to what was sent plus exactly one prepended
    X-Quarantine-Released header; the index says released, so does the log;
  * several quarantined messages (virus, encrypted zip, zip bomb, message
    size limit; different senders, recipients, subjects) queried by each
    filter of `quarantine list`: exact sets of IDs;
  * release --to ADDR: delivered to that recipient only;
  * release while the downstream is down: the released copy waits in the
    deferred queue (`scanrelay queue`) and is delivered when it comes back;
  * delete: gone from the list, listed with --state deleted/all, the .gz
    file removed, `show --raw` fails cleanly;
  * the message log: `scanrelay -j log --from A` rows carry the verdict and
    action of each message, `scanrelay -j stats --days 1` totals match.

Run: SCANRELAY_BUILD=build SCANRELAY_SRC=. python3 t/integ/quarantine_e2e.py [test ...]
"""

import email.header
import gzip
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import scan_util as su  # noqa: E402
from scan_util import raw  # noqa: E402

FAST_QUEUE = {
    "queue_run_delay": raw("1s"),
    "minimal_backoff_time": raw("1s"),
    "maximal_backoff_time": raw("2s"),
    "probe_interval": raw("1s"),
    "min_free_space": raw("1M"),
}

RELEASED_RE = re.compile(rb"^X-Quarantine-Released: \S.* by scanrelay$")
JP_SUBJECT = "日本語のテスト 請求書"


# ---------------------------------------------------------------- helpers

def qdaemon(ctx, relay_port, scan=None, virus=None, queue=None, **top):
    """scanrelayd with scanning on, virus.action = quarantine and a fast queue."""
    v = {"action": raw("quarantine")}
    v.update(virus or {})
    d = su.scanning_daemon(ctx, relay_port, virus=v, scan=scan, start=False, **top)
    q = dict(FAST_QUEUE)
    q.update(queue or {})
    d.sections["queue"] = q
    d.write_config()
    d.start()
    return d


def mail(subject, sender="sender@example.com", rcpt="rcpt@example.org", parts=None,
         tag=""):
    """A multipart message (CRLF, ending in CRLF) with header From/To matching the envelope."""
    if parts is None:
        parts = [su.text_part(), su.attachment("invoice.exe", su.EICAR + b"\r\n" + tag.encode())]
    m = su.mime_message(parts, subject=subject)
    m = m.replace(b"From: Sender <sender@example.com>", ("From: <%s>" % sender).encode(), 1)
    m = m.replace(b"To: Rcpt <rcpt@example.org>", ("To: <%s>" % rcpt).encode(), 1)
    h.check(m.endswith(b"\r\n"), "test message does not end in CRLF")
    return m


def eicar_mail(subject, sender="sender@example.com", rcpt="rcpt@example.org", tag=""):
    return mail(subject, sender, rcpt, tag=tag)


def clean_mail(subject, sender="sender@example.com", rcpt="rcpt@example.org"):
    return mail(subject, sender, rcpt, parts=[su.text_part()])


def quarantine_one(d, msg, sender="sender@example.com", rcpts=("rcpt@example.org",),
                   what="message"):
    """Send msg, expect 250 2.7.0 Ok: quarantined as ID; return ID."""
    tx = su.send(d.port, msg, sender=sender, rcpts=rcpts)
    r = su.expect_final(tx, 250, "%s (expected a quarantine verdict)" % what,
                        "250 2.7.0 Ok: quarantined as ")
    qid = su.reply_qid(r)
    h.check(qid, "%s: no ID in %r" % (what, r.line()))
    return qid


def cli(d, *args):
    rc, out, err, _ = su.cli(list(args), d.conf_path)
    return rc, out, err


def cli_ok(d, *args):
    rc, out, err = cli(d, *args)
    h.check(rc == 0, "scanrelay %s: exit status %d\nstdout: %s\nstderr: %s"
            % (" ".join(args), rc, out[:2000], err[:2000]))
    return out


def cli_bytes(d, *args):
    """scanrelay -c CONF ARGS -> (status, stdout bytes, stderr text)."""
    p = subprocess.run([su.CLI, "-c", d.conf_path] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def json_lines(out, what):
    objs = []
    for n, line in enumerate(out.splitlines()):
        if not line.strip():
            continue
        try:
            objs.append(json.loads(line))
        except ValueError as e:
            h.fail("%s: line %d is not JSON (%s): %r" % (what, n + 1, e, line))
    return objs


def qlist(d, *filters):
    """scanrelay -j quarantine list FILTERS -> list of entry objects (newest first)."""
    out = cli_ok(d, "-j", "quarantine", "list", *filters)
    objs = json_lines(out, "scanrelay -j quarantine list %s" % " ".join(filters))
    for o in objs:
        for k in ("id", "time", "sender", "recipients", "subject", "size", "reason", "rule",
                  "virus", "score", "state"):
            h.check(k in o, "quarantine list -j entry lacks %r: %r" % (k, o))
    return objs


def qids(d, *filters):
    return [o["id"] for o in qlist(d, *filters)]


def check_set(d, filters, want, names):
    """The IDs listed for filters are exactly want (a set)."""
    got = qids(d, *filters)
    h.check(len(got) == len(set(got)), "quarantine list %s lists an ID twice: %r"
            % (" ".join(filters), got))
    if set(got) != set(want):
        def nm(ids):
            return sorted(names.get(i, i) for i in ids)
        h.fail("quarantine list %s: expected %s, got %s (missing %s, extra %s)"
               % (" ".join(repr(f) for f in filters), nm(want), nm(got),
                  nm(set(want) - set(got)), nm(set(got) - set(want))))


def entry(d, qid, *filters):
    es = [o for o in qlist(d, "--state", "all", *filters) if o["id"] == qid]
    h.check(len(es) == 1, "quarantine list --state all: %d entries for %s" % (len(es), qid))
    return es[0]


def qfiles(d, qid=None):
    out = []
    for root, _, fs in os.walk(os.path.join(d.state_dir, "quarantine")):
        out += [os.path.join(root, f) for f in fs if qid is None or qid in f]
    return out


def release(d, qid, *to):
    args = ["quarantine", "release", qid]
    if to:
        args += ["--to"] + list(to)
    return cli_ok(d, *args)


def split_released(got, sent, what):
    """got = one X-Quarantine-Released line (CRLF) + sent, byte for byte."""
    nl = got.find(b"\r\n")
    h.check(nl > 0, "%s: no line end in the delivered message: %r" % (what, got[:200]))
    first, rest = got[:nl], got[nl + 2:]
    h.check(RELEASED_RE.match(first),
            "%s: the first line is not 'X-Quarantine-Released: <date> by scanrelay': %r"
            % (what, first))
    h.check_bytes(rest, sent, "%s: delivered message after the X-Quarantine-Released line" % what)
    h.check(b"X-Quarantine-Released" not in sent, "test message itself has the header")
    return first


def rcpt_addrs(rtx):
    return [re.sub(r"(?i)^RCPT TO:<([^>]*)>.*$", r"\1", r) for r in rtx.rcpts]


def wait_rs(rs, n, timeout=30):
    return rs.wait_txs(n, timeout)


# ---------------------------------------------------------------- 1. the bar

def test_bar_iso2022jp_subject_release(ctx):
    rs = h.RawSink(ctx)
    d = qdaemon(ctx, rs.port)
    enc = email.header.Header(JP_SUBJECT, "iso-2022-jp").encode()
    h.check(enc.lower().startswith("=?iso-2022-jp?"), "Header() did not encode: %r" % enc)
    msg = eicar_mail(enc, sender="jp@example.jp", rcpt="keiri@example.org")
    qid = quarantine_one(d, msg, sender="jp@example.jp", rcpts=("keiri@example.org",),
                         what="EICAR mail with an ISO-2022-JP subject")
    line = d.wait_message_logs(lambda x: x.qid == qid, 1, 10)[0]
    h.check(line.get("action") == "quarantined" and line.get("result") == "virus",
            "log line: %s" % line)
    h.check(len(qfiles(d, qid)) == 1 and qfiles(d, qid)[0].endswith(qid + ".gz"),
            "expected one file %s.gz under quarantine/: %r" % (qid, qfiles(d)))
    with gzip.open(qfiles(d, qid)[0], "rb") as f:
        stored = f.read()
    h.check_bytes(stored, msg, "the stored (gunzip'd) message vs. what was sent")

    # found by the Japanese glob; decoded subject in the index
    e = qlist(d, "--subject", "日本語*")
    h.check([o["id"] for o in e] == [qid],
            "quarantine list --subject '日本語*': expected [%s], got %r" % (qid, e))
    h.check_eq(e[0]["subject"], JP_SUBJECT, "decoded subject in quarantine list -j")
    h.check_eq(e[0]["state"], "held", "state before the release")
    h.check_eq(e[0]["reason"], "virus", "reason")
    h.check((e[0]["virus"] or "").startswith(su.EICAR_NAME), "virus: %r" % e[0]["virus"])
    h.check_eq(e[0]["sender"], "jp@example.jp", "sender")
    h.check_eq(e[0]["recipients"], ["keiri@example.org"], "recipients")
    h.check_eq(e[0]["size"], len(msg), "size")
    for glob, want in (("*請求書", [qid]), ("日本語のテスト*", [qid]), ("*テスト 請*", [qid]),
                       ("請求書*", []), ("日本語", []), ("中国語*", []),
                       ("=?iso-2022-jp?*", [])):
        got = qids(d, "--subject", glob)
        h.check(got == want, "quarantine list --subject %r: expected %r, got %r"
                % (glob, want, got))
    # the text listing shows the decoded subject too
    out = cli_ok(d, "quarantine", "list", "--subject", "日本語*")
    h.check(qid in out and JP_SUBJECT in out,
            "quarantine list (text) does not show %s and the decoded subject:\n%s" % (qid, out))
    out = cli_ok(d, "quarantine", "show", qid)
    h.check(JP_SUBJECT in out, "quarantine show %s lacks the decoded subject:\n%s" % (qid, out))
    rc, out, err = cli_bytes(d, "quarantine", "show", qid, "--raw")
    h.check(rc == 0, "quarantine show --raw: status %d %r" % (rc, err))
    h.check_bytes(out, msg, "quarantine show --raw vs. the message as sent")

    # nothing reached the downstream before the release
    time.sleep(0.3)
    h.check_eq(len(rs.txs), 0, "transactions at the downstream before the release")

    mark = d.log_mark()
    release(d, qid)
    rtx = wait_rs(rs, 1)[0]
    split_released(rtx.message, msg, "released message")
    h.check(re.match(r"(?i)MAIL FROM:<jp@example\.jp>( |$)", rtx.mail),
            "MAIL command of the release: %r" % rtx.mail)
    h.check_eq(rcpt_addrs(rtx), ["keiri@example.org"], "RCPT addresses of the release")
    time.sleep(0.5)
    h.check_eq(len(rs.txs), 1, "transactions at the downstream after one release")

    e = entry(d, qid)
    h.check_eq(e["state"], "released", "state after the release (quarantine list -j)")
    h.check_eq(qids(d, "--state", "released"), [qid], "quarantine list --state released")
    h.check_eq(qids(d, "--state", "held"), [], "quarantine list --state held")
    m = d.wait_log(r"%s: released from the quarantine as ([0-9A-Za-z]+)" % qid, 10, mark)
    new_id = m.group(1)
    d.wait_log(r"%s: to=<keiri@example\.org>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*"
               r"status=sent \(250 " % (new_id, rs.port), 10, mark)


def test_subject_decoding_and_folding(ctx):
    """--subject folds both sides (NFKC + case folding) and sees the decoded subject."""
    rs = h.RawSink(ctx)
    d = qdaemon(ctx, rs.port)
    long_jp = "長い件名のテストです、" * 4 + "終わり"
    cases = {
        # name: (Subject header text, decoded subject)
        "fullwidth": (su.rfc2047("Ｒｅｃｈｎｕｎｇ für STRAẞE", "utf-8"),
                      "Ｒｅｃｈｎｕｎｇ für STRAẞE"),
        "folded-jp": (email.header.Header(long_jp, "iso-2022-jp").encode(), long_jp),
        "sjis-q": (su.rfc2047("見積書 ｶﾀｶﾅ", "shift_jis", "Q"), "見積書 ｶﾀｶﾅ"),
        "utf8-raw": ("Café Überweisung", "Café Überweisung"),
    }
    h.check("\n" in cases["folded-jp"][0], "the long subject was not folded: %r"
            % cases["folded-jp"][0])
    ids = {}
    for i, (name, (hdr, _)) in enumerate(cases.items()):
        msg = eicar_mail("X", tag=str(i)).replace(b"Subject: X\r\n",
                                                  ("Subject: %s\r\n" % hdr.replace(
                                                      "\n", "\r\n")).encode(), 1)
        ids[name] = quarantine_one(d, msg, what=name)
    by = {o["id"]: o for o in qlist(d)}
    errs = []
    for name, (_, dec) in cases.items():
        if by[ids[name]]["subject"] != dec:
            errs.append("%s: decoded subject %r, expected %r" % (name, by[ids[name]]["subject"],
                                                                 dec))
    for glob, want in (("rechnung für strasse", {"fullwidth"}),
                       ("RECHNUNG*", {"fullwidth"}),
                       ("*終わり", {"folded-jp"}),
                       ("長い件名のテストです、長い件名*", {"folded-jp"}),
                       ("見積書 カタカナ", {"sjis-q"}),
                       ("*ｶﾀｶﾅ", {"sjis-q"}),
                       ("café über*", {"utf8-raw"}),
                       ("CAFÉ ÜBERWEISUNG", {"utf8-raw"}),
                       ("cafe*", set())):
        got = set(qids(d, "--subject", glob))
        w = {ids[n] for n in want}
        if got != w:
            inv = {v: k for k, v in ids.items()}
            errs.append("--subject %r: expected %r, got %r" % (glob, sorted(want),
                                                                sorted(inv.get(i, i) for i in got)))
    h.check(not errs, "\n  ".join(errs))


# ---------------------------------------------------------------- 2. filters

def _fmt(t):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def test_list_filters(ctx):
    rs = h.RawSink(ctx)
    d = qdaemon(ctx, rs.port, scan={"encrypted_action": raw("quarantine"),
                                    "compression_ratio_action": raw("quarantine"),
                                    "message_size_limit": raw("200k"),
                                    "message_size_action": raw("quarantine")})
    ids, names = {}, {}

    def q(name, msg, sender, rcpts):
        qid = quarantine_one(d, msg, sender=sender, rcpts=rcpts, what=name)
        h.check(qid not in names, "ID %s given twice" % qid)
        ids[name], names[qid] = qid, name
        return qid

    # batch 1
    q("A", eicar_mail("Invoice 2024 March", "alice@example.com", "bob@example.org"),
      "alice@example.com", ("bob@example.org",))
    q("B", eicar_mail("Code Name Falcon", "carol@example.net", "dave@example.org"),
      "carol@example.net", ("dave@example.org", "erin@example.org"))
    t_split = int(time.time()) + 1
    while time.time() < t_split + 0.1:
        time.sleep(0.05)
    # batch 2 (all at or after t_split)
    enc = su.encrypted_zip([("payload.exe", b"MZ" + b"\0" * 300)])
    q("C", mail("Encrypted stuff", "alice@example.com", "frank@example.org",
                parts=[su.text_part(), su.attachment("secret.zip", enc, "application/zip")]),
      "alice@example.com", ("frank@example.org",))
    bomb = su.zip_of([("zeros.bin", bytes(20 << 20))])
    q("D", mail("Quarterly figures", "mallory@example.com", "bob@example.org",
                parts=[su.text_part(), su.attachment("figures.zip", bomb, "application/zip")]),
      "mallory@example.com", ("bob@example.org",))
    big = os.urandom(240 << 10)
    q("E", mail("Big scan", "Trent@Example.COM", "grace@example.org",
                parts=[su.text_part(), su.attachment("scan.bin", big)]),
      "Trent@Example.COM", ("grace@example.org",))
    A, B, C, D, E = (ids[k] for k in "ABCDE")

    allq = qlist(d)
    h.check_eq(sorted(o["id"] for o in allq), sorted(ids.values()), "quarantine list (all)")
    by = {o["id"]: o for o in allq}
    for k, reason, rule in (("A", "virus", None), ("B", "virus", None),
                            ("C", "encrypted", None), ("D", "limit", "compression_ratio"),
                            ("E", "limit", "message_size")):
        o = by[ids[k]]
        h.check(o["reason"] == reason, "%s: reason %r, expected %r: %r" % (k, o["reason"],
                                                                           reason, o))
        if rule is not None:
            h.check(o["rule"] == rule, "%s: rule %r, expected %r: %r" % (k, o["rule"], rule, o))
        h.check_eq(o["state"], "held", "%s: state" % k)
    h.check_eq(by[A]["rule"], "virus", "A: the deciding rule")
    h.check_eq(by[B]["recipients"], ["dave@example.org", "erin@example.org"], "B: recipients")
    h.check_eq(by[B]["subject"], "Code Name Falcon", "B: subject")
    h.check((by[A]["virus"] or "").startswith(su.EICAR_NAME), "A: virus %r" % by[A]["virus"])
    for o in allq:
        h.check(o["time"] < t_split if names[o["id"]] in "AB" else o["time"] >= t_split,
                "%s: time %d vs the split at %d" % (names[o["id"]], o["time"], t_split))
    # newest first
    times = [o["time"] for o in allq]
    h.check(times == sorted(times, reverse=True), "quarantine list is not newest first: %r"
            % [(names[o["id"]], o["time"]) for o in allq])

    cases = [
        (["--from", "alice@example.com"], {A, C}),
        (["--from", "ALICE@example.COM"], {A, C}),
        (["--from", "trent@example.com"], {E}),
        (["--from", "*@example.net"], {B}),
        (["--from", "nobody@example.com"], set()),
        (["--to", "bob@example.org"], {A, D}),
        (["--to", "erin@example.org"], {B}),
        (["--to", "dave@example.org"], {B}),
        (["--to", "f*"], {C}),
        (["--to", "alice@example.com"], set()),
        (["--subject", "code name*"], {B}),
        (["--subject", "invoice*"], {A}),
        (["--subject", "*figures"], {D}),
        (["--subject", "*n*"], {A, B, C, E}),
        (["--subject", "name*"], set()),
        (["--reason", "virus"], {A, B}),
        (["--reason", "encrypted"], {C}),
        (["--reason", "limit"], {D, E}),
        (["--reason", "spam"], set()),
        (["--rule", "compression_ratio"], {D}),
        (["--rule", "message_size"], {E}),
        (["--rule", "nosuchrule"], set()),
        (["--since", _fmt(t_split)], {C, D, E}),
        (["--until", _fmt(t_split)], {A, B}),
        (["--since", _fmt(t_split - 3600), "--until", _fmt(t_split + 3600)], {A, B, C, D, E}),
        (["--since", "1h"], {A, B, C, D, E}),
        (["--since", _fmt(t_split + 3600)], set()),
        (["--from", "alice@example.com", "--reason", "encrypted"], {C}),
        (["--to", "bob@example.org", "--since", _fmt(t_split)], {D}),
        (["--limit", "0"], {A, B, C, D, E}),
    ]
    errs = []
    for filters, want in cases:
        try:
            check_set(d, filters, want, names)
        except h.TestFailure as e:
            errs.append(str(e))
    # --limit: the N newest
    for n in (1, 2, 4):
        got = qids(d, "--limit", str(n))
        want = [o["id"] for o in allq][:n]
        if got != want:
            errs.append("quarantine list --limit %d: expected %r, got %r"
                        % (n, [names[i] for i in want], [names.get(i, i) for i in got]))
    got = qids(d, "--reason", "limit", "--limit", "1")
    if got != [E]:
        errs.append("quarantine list --reason limit --limit 1: expected [E], got %r"
                    % [names.get(i, i) for i in got])
    # bad values are usage errors (status 2), not empty answers
    for bad in (["--reason", "bogus"], ["--since", "yesterday-ish"], ["--limit", "-1"]):
        rc, out, err = cli(d, "quarantine", "list", *bad)
        if rc != 2 or not err.strip():
            errs.append("quarantine list %s: expected status 2 and a message, got %d %r %r"
                        % (" ".join(bad), rc, out[:200], err[:200]))
    h.check(not errs, "\n  ".join(errs))


# ---------------------------------------------------------------- 3. release --to

def test_release_to_other(ctx):
    rs = h.RawSink(ctx)
    d = qdaemon(ctx, rs.port)
    msg = eicar_mail("release me elsewhere", "alice@example.com", "bob@example.org")
    qid = quarantine_one(d, msg, sender="alice@example.com",
                         rcpts=("bob@example.org", "carol@example.org"))
    release(d, qid, "other@example.org")
    rtx = wait_rs(rs, 1)[0]
    time.sleep(0.5)
    h.check_eq(len(rs.txs), 1, "transactions at the downstream")
    h.check(rtx.mail.upper().startswith("MAIL FROM:<ALICE@EXAMPLE.COM>"),
            "MAIL of the release: %r" % rtx.mail)
    h.check_eq(rcpt_addrs(rtx), ["other@example.org"], "RCPT addresses of the release --to")
    h.check_eq(rtx.refused, [], "refused RCPTs")
    split_released(rtx.message, msg, "message released --to other@example.org")
    h.check_eq(entry(d, qid)["state"], "released", "state after the release")
    # the index keeps the original envelope
    h.check_eq(entry(d, qid)["recipients"], ["bob@example.org", "carol@example.org"],
               "recipients in the index after release --to")
    # without --to: every original recipient
    msg3 = eicar_mail("two original recipients", "alice@example.com", "bob@example.org", tag="3")
    qid3 = quarantine_one(d, msg3, sender="alice@example.com",
                          rcpts=("bob@example.org", "carol@example.org"))
    release(d, qid3)
    rtx3 = wait_rs(rs, 2)[1]
    h.check_eq(sorted(rcpt_addrs(rtx3)), ["bob@example.org", "carol@example.org"],
               "RCPTs of a release without --to")
    split_released(rtx3.message, msg3, "message released to its original recipients")
    # several --to addresses
    msg2 = eicar_mail("two new recipients", "alice@example.com", "bob@example.org", tag="2")
    qid2 = quarantine_one(d, msg2, sender="alice@example.com", rcpts=("bob@example.org",))
    rc, out, err = cli(d, "quarantine", "release", qid2, "--to", "x1@example.org",
                       "--to", "x2@example.org")
    h.check(rc == 0, "release --to A --to B: status %d %r %r" % (rc, out, err))
    rtx2 = wait_rs(rs, 3)[2]
    h.check_eq(sorted(rcpt_addrs(rtx2)), ["x1@example.org", "x2@example.org"],
               "RCPTs of release --to A --to B")
    split_released(rtx2.message, msg2, "message released --to A --to B")


# ---------------------------------------------------------------- 4. downstream down

def test_release_downstream_down(ctx):
    port = h.free_port()
    d = qdaemon(ctx, port)
    msg = eicar_mail("release while down", "alice@example.com", "bob@example.org")
    qid = quarantine_one(d, msg, sender="alice@example.com", rcpts=("bob@example.org",))
    mark = d.log_mark()
    rc, out, err = cli(d, "quarantine", "release", qid)
    h.check(rc == 0, "quarantine release with the downstream down: status %d, stdout %r, "
            "stderr %r (expected success: the copy waits in the deferred queue)"
            % (rc, out, err))
    m = d.wait_log(r"%s: released from the quarantine as ([0-9A-Za-z]+)" % qid, 10, mark)
    new_id = m.group(1)

    def in_queue():
        out = cli_ok(d, "-j", "queue")
        objs = json_lines(out, "scanrelay -j queue")
        return [o for o in objs if o.get("queue_id") == new_id] or None
    q = h.wait_for(in_queue, 15, "released copy %s in `scanrelay -j queue`" % new_id)[0]
    h.check_eq([r.get("address") for r in q.get("recipients", [])], ["bob@example.org"],
               "recipients of the queued released copy")
    h.check_eq(q.get("sender"), "alice@example.com", "sender of the queued released copy")
    h.check_eq(q.get("message_size"), len(msg) + len(
        b"X-Quarantine-Released: Mon, 01 Jan 2024 00:00:00 +0000 by scanrelay\r\n"),
        "message_size of the queued released copy (message + release header)")
    text = cli_ok(d, "queue")
    h.check(new_id in text and "bob@example.org" in text,
            "scanrelay queue does not list %s:\n%s" % (new_id, text))
    h.check_eq(entry(d, qid)["state"], "released", "state after a release into the queue")

    # the downstream comes back on the same port: the probe delivers it
    time.sleep(1.5)
    sink = h.SmtpSink(ctx, port=port)
    dumps = sink.wait_dumps(1, 30)
    got = dumps[0].message
    nl = got.find(b"\n")
    h.check(RELEASED_RE.match(got[:nl]), "first line at the sink: %r" % got[:nl])
    h.check_bytes(got[nl + 1:], h.sink_view(msg),
                  "delivered (smtp-sink dump, CRs dropped) after the release header")
    h.check_eq(dumps[0].rcpt_args, ["<bob@example.org>"], "RCPT at the sink")
    h.wait_for(lambda: in_queue() is None, 15, "%s to leave the queue" % new_id)
    time.sleep(0.5)
    h.check_eq(len(sink.dumps(False)), 1, "messages at smtp-sink")


# ---------------------------------------------------------------- 5. delete

def test_delete(ctx):
    rs = h.RawSink(ctx)
    d = qdaemon(ctx, rs.port)
    m1 = eicar_mail("delete me", tag="1")
    m2 = eicar_mail("keep me", tag="2")
    id1 = quarantine_one(d, m1)
    id2 = quarantine_one(d, m2)
    h.check(len(qfiles(d, id1)) == 1, "no .gz for %s: %r" % (id1, qfiles(d)))
    h.check_eq(sorted(qids(d)), sorted([id1, id2]), "quarantine list before delete")

    out = cli_ok(d, "quarantine", "delete", id1)
    h.check_eq(qids(d), [id2], "quarantine list after deleting %s" % id1)
    h.check_eq(qfiles(d, id1), [], ".gz files of the deleted message")
    h.check(len(qfiles(d, id2)) == 1, "the other message's file vanished too: %r" % qfiles(d))
    h.check_eq(qids(d, "--state", "deleted"), [id1], "quarantine list --state deleted")
    h.check_eq(sorted(qids(d, "--state", "all")), sorted([id1, id2]),
               "quarantine list --state all")
    h.check_eq(entry(d, id1)["state"], "deleted", "state of the deleted entry")

    rc, out, err, _ = su.cli(["quarantine", "show", id1, "--raw"], d.conf_path)
    h.check(rc == 1 and out == "" and id1 in err and err.count("\n") == 1,
            "quarantine show --raw of a deleted message: expected status 1, no output, one "
            "error line naming the ID; got %d, stdout %r, stderr %r" % (rc, out[:200], err))
    rc, out, err, _ = su.cli(["quarantine", "show", id2, "--raw"], d.conf_path)
    h.check(rc == 0, "show --raw of the kept message: %d %r" % (rc, err))
    rc, out, err = cli(d, "quarantine", "release", id1)
    h.check(rc == 1 and err.strip(), "release of a deleted message: expected status 1 and a "
            "message, got %d %r %r" % (rc, out, err))
    time.sleep(0.3)
    h.check_eq(len(rs.txs), 0, "transactions at the downstream")
    rc, out, err = cli(d, "quarantine", "delete", "0123456789ABCD")
    h.check(rc != 0 and err.strip(), "delete of an unknown ID: expected a failure status and a "
            "message, got %d %r %r" % (rc, out, err))
    rc, out, err = cli(d, "quarantine", "delete", "../etc")
    h.check(rc == 2, "delete of an invalid ID: expected status 2, got %d %r" % (rc, err))
    h.check_eq(qids(d), [id2], "quarantine list at the end")

    # with the daemon stopped: release refuses (status 2, says why), delete works directly
    d.stop()
    rc, out, err = cli(d, "quarantine", "release", id2)
    h.check(rc == 2 and "scanrelayd" in err,
            "release with the daemon down: expected status 2 and a message naming scanrelayd, "
            "got %d %r %r" % (rc, out, err))
    h.check_eq(entry(d, id2)["state"], "held", "state after a refused release")
    rc, out, err = cli(d, "quarantine", "delete", id2)
    h.check(rc == 0, "delete with the daemon down: status %d %r %r" % (rc, out, err))
    h.check_eq(qids(d), [], "quarantine list after the offline delete")
    h.check_eq(qfiles(d, id2), [], ".gz files after the offline delete")
    h.check_eq(entry(d, id2)["state"], "deleted", "state after the offline delete")


# ---------------------------------------------------------------- 6. message log

def test_message_log_and_stats(ctx):
    rs = h.RawSink(ctx)
    d = qdaemon(ctx, rs.port)
    sent = []   # (qid, verdict, action, size, sender)
    plan = [("loguser@example.com", False), ("loguser@example.com", True),
            ("loguser@example.com", False), ("other@example.net", True),
            ("loguser@example.com", True), ("other@example.net", False),
            ("loguser@example.com", False)]
    for i, (sender, infected) in enumerate(plan):
        subj = "log test %d" % i
        msg = eicar_mail(subj, sender, tag=str(i)) if infected else clean_mail(subj, sender)
        tx = su.send(d.port, msg, sender=sender)
        if infected:
            r = su.expect_final(tx, 250, "infected #%d" % i, "250 2.7.0 Ok: quarantined as ")
            qid = su.reply_qid(r)
        else:
            su.expect_final(tx, 250, "clean #%d" % i)
            n_clean = sum(1 for x in sent if x[1] == "clean") + 1
            d.wait_message_logs(lambda x: x.get("action") == "relayed", n_clean, 10)
            qid = None
        sent.append([qid, "virus" if infected else "clean",
                     "quarantined" if infected else "relayed", len(msg), sender, subj])
    # the daemon's own log gives the clean messages' IDs
    relayed = [x.qid for x in d.message_logs() if x.get("action") == "relayed"]
    h.check_eq(len(relayed), 4, "relayed log lines")
    it = iter(relayed)
    for s in sent:
        if s[0] is None:
            s[0] = next(it)

    def rows():
        out = cli_ok(d, "-j", "log", "--from", "loguser@example.com")
        rr = json_lines(out, "scanrelay -j log")
        return rr if len(rr) >= 5 else None
    rr = h.wait_for(rows, 5, "5 rows in `scanrelay -j log --from loguser@example.com`", 0.1)
    mine = {s[0]: s for s in sent if s[4] == "loguser@example.com"}
    errs = []
    if sorted(r["id"] for r in rr) != sorted(mine):
        errs.append("log --from loguser@example.com: IDs %r, expected %r"
                    % (sorted(r["id"] for r in rr), sorted(mine)))
    for r in rr:
        s = mine.get(r["id"])
        if s is None:
            continue
        if (r.get("verdict"), r.get("action")) != (s[1], s[2]):
            errs.append("%s (%s): verdict/action %r/%r, expected %s/%s"
                        % (r["id"], s[5], r.get("verdict"), r.get("action"), s[1], s[2]))
        if r.get("sender") != "loguser@example.com" or r.get("recipients") != ["rcpt@example.org"]:
            errs.append("%s: sender/recipients %r %r" % (r["id"], r.get("sender"),
                                                          r.get("recipients")))
        if r.get("subject") != s[5]:
            errs.append("%s: subject %r, expected %r" % (r["id"], r.get("subject"), s[5]))
        if r.get("size") != s[3]:
            errs.append("%s: size %r, expected %d" % (r["id"], r.get("size"), s[3]))
        if s[1] == "virus" and not (r.get("virus") or "").startswith(su.EICAR_NAME):
            errs.append("%s: virus %r" % (r["id"], r.get("virus")))
        if s[1] == "clean" and r.get("virus"):
            errs.append("%s: clean message with virus %r" % (r["id"], r.get("virus")))
        # the deciding rule: the virus rule for an infected message, none for a clean one
        if r.get("rule") != ("virus" if s[1] == "virus" else None):
            errs.append("%s: rule %r for a %s message" % (r["id"], r.get("rule"), s[1]))
    times = [r["time"] for r in rr]
    if times != sorted(times, reverse=True):
        errs.append("log is not newest first: %r" % times)
    # other filters of the log
    for args, want in ((["--from", "other@example.net"], {s[0] for s in sent if s[4] ==
                                                           "other@example.net"}),
                       (["--verdict", "virus"], {s[0] for s in sent if s[1] == "virus"}),
                       (["--action", "relayed"], {s[0] for s in sent if s[2] == "relayed"}),
                       (["--rule", "virus"], {s[0] for s in sent if s[1] == "virus"}),
                       (["--rule", "file_size"], set()),
                       (["--id", sent[1][0]], {sent[1][0]}),
                       (["--subject", "log test 3"], {sent[3][0]}),
                       (["--from", "loguser@example.com", "--action", "quarantined"],
                        {s[0] for s in sent if s[4] == "loguser@example.com" and
                         s[2] == "quarantined"}),
                       (["--limit", "2"], {sent[-1][0], sent[-2][0]})):
        got = {r["id"] for r in json_lines(cli_ok(d, "-j", "log", *args), "log")}
        if got != want:
            errs.append("log %s: expected %r, got %r" % (" ".join(args), sorted(want),
                                                         sorted(got)))

    out = cli_ok(d, "-j", "stats", "--days", "1")
    objs = json_lines(out, "scanrelay -j stats --days 1")
    tot = [o for o in objs if o.get("type") == "total"]
    if len(tot) != 1:
        errs.append("stats: %d total lines: %r" % (len(tot), objs))
    else:
        t = tot[0]
        want = {"messages": len(sent), "bytes": sum(s[3] for s in sent),
                "clean": sum(1 for s in sent if s[1] == "clean"),
                "virus": sum(1 for s in sent if s[1] == "virus"), "spam": 0, "policy": 0,
                "quarantined": sum(1 for s in sent if s[2] == "quarantined"), "deferred": 0,
                "bounced": 0}
        for k, v in want.items():
            if t.get(k) != v:
                errs.append("stats --days 1 total %s = %r, expected %d" % (k, t.get(k), v))
        periods = [o for o in objs if o.get("type") == "period"]
        if sum(p.get("messages", 0) for p in periods) != len(sent):
            errs.append("stats periods sum to %d messages" % sum(p.get("messages", 0)
                                                               for p in periods))
    tv = [o for o in objs if o.get("type") == "virus"]
    if not (tv and tv[0]["name"].startswith(su.EICAR_NAME) and tv[0]["count"] == 3):
        errs.append("stats top viruses: expected %s... x3, got %r" % (su.EICAR_NAME, tv))
    ts = {o["name"]: o["count"] for o in objs if o.get("type") == "sender"}
    if ts.get("loguser@example.com") != 5 or ts.get("other@example.net") != 2:
        errs.append("stats top senders: %r" % ts)
    h.check(not errs, "\n  ".join(errs))


if __name__ == "__main__":
    h.run_tests(globals())
