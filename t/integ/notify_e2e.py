#!/usr/bin/env python3
"""
notify_e2e.py - notices (issue 12, items 1-4) end to end: real scanrelayd
(scanning on, the test signature set), smtp-sink downstream with dump
files; delivered notices parsed with Python's email package.

  * `scanrelayd -t` refuses an empty, placeholder, example or local-only
    notify.from with a clear message, and accepts a real one;
  * each notice kind (virus, encrypted archive, size limit) to the
    administrator, the recipients and the sender; no sender notice for
    outside, bulk (Precedence/List-Id/Auto-Submitted) or null senders; every
    notice has the null sender, From: notify.from, Auto-Submitted and the
    mark, X-Quarantine-ID for quarantined mail; template variables checked
    on the delivered bytes;
  * a Japanese template in ISO-2022-JP (and in UTF-8): decoded subject and
    body equal the template's text with its variables filled in;
  * a notice (with the infected original attached) sent back through
    scanrelay is relayed unscanned and makes no notice; its mark copied
    onto another message buys no bypass;
  * a burst of 1,000 infected messages with admin and recipient notices:
    the administrator gets one mail during the window and one summary
    (after a restart, which sends nothing twice), each recipient at most
    rate_limit, and the downstream receives nothing else.

Run: SCANRELAY_BUILD=build SCANRELAY_SRC=. python3 t/integ/notify_e2e.py [test ...]
"""

import email
import email.header
import email.policy
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import scan_util as su  # noqa: E402
from scan_util import raw  # noqa: E402

FROM = "postmaster@mail.scanrelay-ci.net"
ADMIN = "security@mail.scanrelay-ci.net"
LOCAL = "corp-ci.jp"
FAST_QUEUE = {"queue_run_delay": raw("1s"), "minimal_backoff_time": raw("1s"),
              "maximal_backoff_time": raw("2s"), "probe_interval": raw("1s"),
              "min_free_space": raw("1M")}
MARK_RE = re.compile(r"^v1 t=\d+ mac=[0-9a-f]{64}$")


def daemon(ctx, sink_port, notify, virus=None, scan=None, start=True, name="scanrelayd",
           **top):
    v = {"action": raw("discard")}
    v.update(virus or {})
    d = su.scanning_daemon(ctx, sink_port, virus=v, scan=scan, start=False, name=name,
                           local_domains=[LOCAL], **top)
    n = {"from": FROM, "admin": [ADMIN]}
    n.update(notify)
    d.sections["notify"] = n
    d.sections["queue"] = dict(FAST_QUEUE)
    d.write_config()
    if start:
        d.start()
    return d


def parse(dump):
    return email.message_from_bytes(dump.message, policy=email.policy.default)


def text_of(msg):
    part = msg.get_body(preferencelist=("plain",)) if msg.is_multipart() else msg
    return part.get_content()


def is_notice(dump):
    return dump.header("X-Scanrelay-Notice") is not None


def check_notice_headers(dump, what):
    h.check_eq(dump.sender, "", "%s: envelope sender" % what)
    h.check_eq(dump.header("From"), FROM, "%s: From:" % what)
    h.check_eq(dump.header("Auto-Submitted"), "auto-generated", "%s: Auto-Submitted" % what)
    h.check(MARK_RE.match(dump.header("X-Scanrelay-Notice") or ""),
            "%s: X-Scanrelay-Notice %r" % (what, dump.header("X-Scanrelay-Notice")))


def by_rcpt(dumps):
    out = {}
    for d in dumps:
        for r in d.recipients:
            out.setdefault(r, []).append(d)
    return out


# ---------------------------------------------------------------- -t

def test_check_refuses_bad_from(ctx):
    cases = [
        ("", "it is empty"),
        ("NotificationRecipients", "not a plain address"),
        ("NotificationRecipients@%s" % LOCAL, "placeholder"),
        ("root@localhost", "local-only"),
        ("postmaster@example.com", "example"),
        ("postmaster@example.co.jp", "example"),
        ("root@gateway.local", "local-only"),
    ]
    for i, (frm, why) in enumerate(cases):
        d = daemon(ctx, h.free_port(), {"from": frm}, start=False, name="t%d" % i)
        p = subprocess.run([h.DAEMON, "-t", "-c", d.conf_path], capture_output=True, text=True,
                           timeout=120)
        h.check(p.returncode == 1, "-t with from=%r: exit %d, expected 1; %s"
                % (frm, p.returncode, p.stderr))
        h.check("notify: from:" in p.stderr and why in p.stderr,
                "-t with from=%r: message %r lacks 'notify: from:' and %r" % (frm, p.stderr, why))
    d = daemon(ctx, h.free_port(), {}, start=False, name="tok")
    p = subprocess.run([h.DAEMON, "-t", "-c", d.conf_path], capture_output=True, text=True,
                       timeout=120)
    h.check_eq(p.returncode, 0, "-t with a real from (%s)" % p.stderr)
    # Spam never notifies the sender; an unknown kind is named.
    for i, (notify, why) in enumerate([({"sender_kinds": ["virus", "spam"]}, "spam"),
                                       ({"admin_kinds": ["virsu"]}, "unknown notice kind")]):
        d = daemon(ctx, h.free_port(), notify, start=False, name="tk%d" % i)
        p = subprocess.run([h.DAEMON, "-t", "-c", d.conf_path], capture_output=True, text=True,
                           timeout=120)
        h.check(p.returncode == 1 and why in p.stderr, "-t with %r: %d %r"
                % (notify, p.returncode, p.stderr))
    # Notices off (no notify section): nothing to check.
    d = su.scanning_daemon(ctx, h.free_port(), start=False, name="toff")
    p = subprocess.run([h.DAEMON, "-t", "-c", d.conf_path], capture_output=True, text=True,
                       timeout=120)
    h.check_eq(p.returncode, 0, "-t without notify (%s)" % p.stderr)
    # The daemon itself refuses to start too.
    d = daemon(ctx, h.free_port(), {"from": "root@localhost"}, start=False, name="tstart")
    p = subprocess.run([h.DAEMON, "-f", "-c", d.conf_path], capture_output=True, text=True,
                       timeout=120)
    h.check(p.returncode != 0 and "local-only" in p.stderr,
            "scanrelayd started with from=root@localhost: %d %r" % (p.returncode, p.stderr))


# ---------------------------------------------------------------- kinds

VARS_TMPL = ("Subject: K=%kind% Q=%queue_id% S=%subject%\n\n"
             "date=%date%\nqid=%queue_id%\nsender=%sender%\nrcpts=%recipients%\n"
             "subject=%subject%\npart=%part%\nname=%name%\naction=%action%\n"
             "score=%score%\nquarantine=%quarantine_id%\nhost=%hostname%\npct=100%%\n")


def write_templates(ctx, lang, files):
    base = ctx.mkdir("templates")
    os.makedirs(os.path.join(base, lang), exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(base, lang, name + ".txt"), "w", encoding="utf-8") as f:
            f.write(text)
    return base


def test_each_kind(ctx):
    tdir = write_templates(ctx, "en", {n: VARS_TMPL for n in ("admin", "recipient", "sender")})
    sink = h.SmtpSink(ctx)
    d = daemon(ctx, sink.port, {"admin_kinds": ["virus", "encrypted", "limit", "quarantine"],
                                "recipient_kinds": ["virus", "encrypted", "limit"],
                                "sender_kinds": ["virus", "encrypted", "limit"],
                                "template_directory": tdir, "rate_limit": 100,
                                "window": raw("1h")},
               virus={"action": raw("quarantine")},
               scan={"encrypted_action": raw("discard"), "message_size_limit": raw("200k"),
                     "message_size_action": raw("discard")},
               hostname="gw.scanrelay-ci.net")
    snd = "alice@%s" % LOCAL
    r1, r2 = "bob@%s" % LOCAL, "carol@%s" % LOCAL
    subj = "Invoice 請求書 7"
    m = su.mime_message([su.text_part(), su.attachment("invoice.exe", su.EICAR + b"\r\n")],
                        subject=su.rfc2047(subj, "utf-8"))
    tx = su.send(d.port, m, sender=snd, rcpts=(r1, r2))
    r = su.expect_final(tx, 250, "virus", "250 2.7.0 Ok: quarantined as ")
    vq = su.reply_qid(r)
    # admin (1, opens the window) + r1 + r2 + sender
    dumps = sink.wait_dumps(4, timeout=60)
    h.check_eq(len(dumps), 4, "notices after the virus")
    got = by_rcpt(dumps)
    for who in (ADMIN, r1, r2, snd):
        h.check(who in got and len(got[who]) == 1, "one notice to %s: %r" % (who, list(got)))
        dm = got[who][0]
        check_notice_headers(dm, "virus notice to " + who)
        h.check_eq(dm.header("X-Quarantine-ID"), vq, "X-Quarantine-ID of the notice to " + who)
        msg = parse(dm)
        h.check_eq(str(msg["Subject"]), "K=virus Q=%s S=%s" % (vq, subj), "decoded subject")
        body = text_of(msg)
        fields = dict(line.split("=", 1) for line in body.strip().splitlines())
        want = {"qid": vq, "sender": snd, "rcpts": "%s, %s" % (r1, r2), "subject": subj,
                "part": "invoice.exe", "action": "quarantined", "quarantine": vq,
                "host": "gw.scanrelay-ci.net", "pct": "100%", "score": ""}
        for k, v in want.items():
            h.check_eq(fields.get(k), v, "template variable %s in the notice to %s" % (k, who))
        h.check(fields["name"].startswith(su.EICAR_NAME), "name=%r" % fields["name"])
        h.check(re.match(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$", fields["date"]),
                "date=%r" % fields["date"])

    # Encrypted archive and size limit: recipient and sender notices (the
    # admin window is open: folded in, not mailed now).
    before = len(sink.dumps())
    enc = su.mime_message([su.text_part(), su.attachment("secret.zip", su.encrypted_zip([("doc.txt", b"secret figures\n")]))],
                          subject="enc")
    su.expect_final(su.send(d.port, enc, sender=snd, rcpts=(r1,)), 250, "encrypted", "250 2.7.0")
    big = su.text_message(b"x" * 76 + b"\r\n" * 1, subject="big")
    big = big + (b"y" * 76 + b"\r\n") * 3000
    su.expect_final(su.send(d.port, big, sender=snd, rcpts=(r2,)), 250, "limit", "250 2.7.0")
    dumps = sink.wait_dumps(before + 4, timeout=60)
    new = dumps[before:]
    h.check_eq(len(new), 4, "notices after encrypted + limit")
    kinds = sorted((dm.recipients[0], str(parse(dm)["Subject"]).split()[0]) for dm in new)
    h.check_eq(kinds, sorted([(r1, "K=encrypted"), (snd, "K=encrypted"), (r2, "K=limit"),
                              (snd, "K=limit")]), "encrypted and limit notices")

    # Senders who never get a notice: outside local_domains, bulk, list, auto, null.
    before = len(sink.dumps())
    outs = [("mallory@outside-ci.org", b""), (snd, b"Precedence: bulk\r\n"),
            (snd, b"List-Id: <x.lists.corp-ci.jp>\r\n"), (snd, b"Auto-Submitted: auto-replied\r\n"),
            ("", b"")]
    for s, extra in outs:
        m = su.mime_message([su.text_part(), su.attachment("a.exe", su.EICAR + b"\r\n")],
                            subject="no sender notice", extra_headers=extra.decode())
        su.expect_final(su.send(d.port, m, sender=s, rcpts=(r1,)), 250, "virus", "250 2.7.0")
    dumps = sink.wait_dumps(before + len(outs), timeout=60)
    new = dumps[before:]
    h.check_eq(sorted(x.recipients[0] for x in new), [r1] * len(outs),
               "only recipient notices for outside/bulk/list/auto/null senders")

    # sender_outside_local = yes (on reload): the outside sender is told too.
    d.sections["notify"]["sender_outside_local"] = raw("yes")
    d.write_config()
    d.signal(__import__("signal").SIGHUP)
    h.wait_for(lambda: "reloaded" in d.log(), 30, "the reload")
    before = len(sink.dumps())
    m = su.mime_message([su.text_part(), su.attachment("a.exe", su.EICAR + b"\r\n")],
                        subject="outside")
    su.expect_final(su.send(d.port, m, sender="mallory@outside-ci.org", rcpts=(r1,)), 250,
                    "virus", "250 2.7.0")
    new = sink.wait_dumps(before + 2, timeout=60)[before:]
    h.check_eq(sorted(x.recipients[0] for x in new), sorted([r1, "mallory@outside-ci.org"]),
               "notices with sender_outside_local = yes")
    d.stop()


# ---------------------------------------------------------------- Japanese

JA_TMPL = ("Subject: 【警告】ウイルス %name% を含むメールを止めました\n\n"
           "件名: %subject%\n送信者: %sender%\n処理: %action%\n"
           "このメッセージは自動送信です。返信しないでください。\n")


def ja_case(ctx, charset, name):
    tdir = write_templates(ctx, "ja", {"recipient": JA_TMPL})
    sink = h.SmtpSink(ctx, name="sink-" + name)
    d = daemon(ctx, sink.port, {"admin": [], "recipient_kinds": ["virus"], "language": "ja",
                                "charset": charset, "template_directory": tdir}, name=name)
    subj = "日本語の件名 テスト"
    m = su.mime_message([su.text_part(), su.attachment("a.exe", su.EICAR + b"\r\n")],
                        subject=su.rfc2047(subj, "iso-2022-jp"))
    su.expect_final(su.send(d.port, m, sender="a@%s" % LOCAL, rcpts=("r@%s" % LOCAL,)), 250,
                    "virus", "250 2.7.0 Ok: discarded")
    dm = sink.wait_dumps(1, timeout=60)[0]
    raw_hdr = dm.message.split(b"\n\n", 1)[0].decode("ascii")  # 7-bit on the wire
    msg = parse(dm)
    h.check(msg.get_content_charset() == charset, "%s: charset %r" % (name,
                                                                      msg.get_content_charset()))
    h.check(("=?%s?B?" % charset.upper()) in raw_hdr.upper(), "%s: Subject not encoded in %s: %s"
            % (name, charset, raw_hdr))
    h.check(all(b < 0x80 for b in dm.message), "%s: 8-bit bytes in the notice" % name)
    virus = re.search(r"Infected \((.+)\)|", "")  # placeholder to keep names together
    del virus
    body = text_of(msg)
    m2 = re.search(r"ウイルス (\S+) を", str(msg["Subject"]))
    h.check(m2, "%s: subject %r" % (name, str(msg["Subject"])))
    vname = m2.group(1)
    want = JA_TMPL.replace("%name%", vname).replace("%subject%", subj) \
        .replace("%sender%", "a@%s" % LOCAL).replace("%action%", "discarded")
    want_subj, want_body = want.split("\n\n", 1)
    h.check_eq(str(msg["Subject"]), want_subj[len("Subject: "):], "%s: decoded subject" % name)
    h.check_eq(body.replace("\r\n", "\n"), want_body, "%s: decoded body" % name)
    d.stop()


def test_japanese_iso2022jp(ctx):
    ja_case(ctx, "iso-2022-jp", "jis")


def test_japanese_utf8(ctx):
    ja_case(ctx, "utf-8", "utf8")


def test_shipped_templates(ctx):
    """The templates in etc/templates render (English and Japanese)."""
    for lang in ("en", "ja"):
        sink = h.SmtpSink(ctx, name="sink-" + lang)
        d = daemon(ctx, sink.port, {"recipient_kinds": ["virus"], "language": lang,
                                    "template_directory": os.path.join(h.SRC, "etc",
                                                                       "templates")},
                   name="d" + lang)
        m = su.mime_message([su.text_part(), su.attachment("a.exe", su.EICAR + b"\r\n")],
                            subject="shipped")
        su.expect_final(su.send(d.port, m, sender="a@%s" % LOCAL, rcpts=("r@%s" % LOCAL,)),
                        250, "virus", "250 2.7.0")
        dumps = sink.wait_dumps(2, timeout=60)
        for dm in dumps:
            msg = parse(dm)
            body = text_of(msg)
            h.check("%" not in body.replace("100%", ""), "%s: unexpanded variable: %s"
                    % (lang, body))
            h.check("shipped" in str(msg["Subject"]) or dm.recipients == [ADMIN],
                    "%s: subject %r" % (lang, str(msg["Subject"])))
        h.check("built-in" not in d.log(), "%s: a shipped template was not found:\n%s"
                % (lang, d.log()))
        d.stop()


# ---------------------------------------------------------------- loops

def test_notice_comes_back(ctx):
    sink = h.SmtpSink(ctx)
    d = daemon(ctx, sink.port, {"attach": "message"})
    m = su.mime_message([su.text_part(), su.attachment("a.exe", su.EICAR + b"\r\n")],
                        subject="loop test")
    su.expect_final(su.send(d.port, m, sender="a@%s" % LOCAL, rcpts=("r@%s" % LOCAL,)), 250,
                    "virus", "250 2.7.0 Ok: discarded")
    notice = sink.wait_dumps(1, timeout=60)[0]
    h.check_eq(notice.recipients, [ADMIN], "the admin notice")
    msg = parse(notice)
    att = [p for p in msg.iter_attachments() if p.get_content_type() == "message/rfc822"]
    h.check(len(att) == 1, "original attached as message/rfc822")
    h.check(m.replace(b"\r\n", b"\n") in notice.message,
            "the original (with the virus) attached whole")

    # Back through scanrelay, as a content_filter setup does: relayed as it is.
    wire = notice.message.replace(b"\n", b"\r\n")
    mark = d.log_mark() if hasattr(d, "log_mark") else None
    tx = su.send(d.port, wire, sender="", rcpts=(ADMIN,))
    su.expect_final(tx, 250, "the notice coming back", "250 2.0.0 Ok: queued as")
    dumps = sink.wait_dumps(2, timeout=60)
    back = dumps[1]
    h.check_eq(back.message, notice.message, "the notice relayed byte for byte (unscanned)")
    h.check(back.header("X-Virus-Scanned") is None, "the notice was scanned")
    del mark
    # Its mark on another message (another body): scanned and stopped.
    hdr, body = wire.split(b"\r\n\r\n", 1)
    forged = hdr + b"\r\n\r\n" + body.replace(b"loop test", b"loop tesT")
    tx = su.send(d.port, forged, sender="", rcpts=(ADMIN,))
    su.expect_final(tx, 250, "a forged notice", "250 2.7.0 Ok: discarded")
    forged2 = (b"From: <a@corp-ci.jp>\r\nSubject: bypass?\r\n" + b"\r\n".join(
        l for l in hdr.split(b"\r\n") if l.startswith((b"X-Scanrelay-Notice", b"Message-ID")))
        + b"\r\n\r\n" + su.EICAR + b"\r\n")
    tx = su.send(d.port, forged2, sender="a@%s" % LOCAL, rcpts=(ADMIN,))
    su.expect_final(tx, 250, "a copied mark", "250 2.7.0 Ok: discarded")
    # Nothing else arrived: no notice about the notice (the window is open:
    # the two stopped forgeries are folded into it, not mailed).
    d.stop()
    h.check_eq(len(sink.dumps()), 2, "messages downstream (notice + notice relayed back)")
    log = d.log()
    h.check("result=notice" in log, "log line with result=notice:\n%s" % log[-2000:])


# ---------------------------------------------------------------- flood

N_BURST = 1000
N_RCPT = 3
RATE = 5


def test_burst_1000(ctx):
    sink = h.SmtpSink(ctx)
    notify = {"recipient_kinds": ["virus"], "rate_limit": RATE, "window": raw("1h")}
    d = daemon(ctx, sink.port, notify, scan={"max_pending": 5000})
    msgfile = ctx.path("eicar.eml")
    with open(msgfile, "wb") as f:
        f.write(su.mime_message([su.text_part(), su.attachment("a.exe", su.EICAR + b"\r\n")],
                                subject="burst").replace(b"\r\n", b"\n"))
    p = subprocess.run(["smtp-source", "-s", "10", "-m", str(N_BURST), "-r", str(N_RCPT),
                        "-F", msgfile, "-f", "worm@outside-ci.org", "-t", "u@%s" % LOCAL,
                        "127.0.0.1:%d" % d.port], capture_output=True, text=True, timeout=600)
    h.check_eq(p.returncode, 0, "smtp-source exit status: %s" % p.stderr[-500:])
    want = 1 + N_RCPT * RATE
    sink.wait_dumps(want, timeout=120)
    d.stop()  # saves the open window
    dumps = sink.dumps()
    got = by_rcpt(dumps)
    h.check_eq(len(got.get(ADMIN, [])), 1, "admin mails during the window")
    rcpts = sorted(a for a in got if a != ADMIN)
    h.check_eq(len(rcpts), N_RCPT, "recipients notified (smtp-source -r %d): %r"
               % (N_RCPT, rcpts))
    for a in rcpts:
        h.check_eq(len(got[a]), RATE, "notices to recipient %s" % a)
    h.check_eq(len(dumps), want, "messages downstream (no virus, no loop)")
    for dm in dumps:
        check_notice_headers(dm, "burst notice")

    # Restart with the window already over: the summary, once.
    d.sections["notify"]["window"] = raw("1s")
    d.write_config()
    d.start()
    dumps = sink.wait_dumps(want + 1, timeout=60)
    summary = dumps[-1]
    h.check_eq(summary.recipients, [ADMIN], "the summary's recipient")
    sm = parse(summary)
    body = text_of(sm)
    h.check("%d more messages" % (N_BURST - 1) in str(sm["Subject"]),
            "summary subject %r" % str(sm["Subject"]))
    held = N_BURST * N_RCPT - N_RCPT * RATE
    h.check("held back by the rate limit: %d" % held in body, "summary body:\n%s" % body)
    h.check(su.EICAR_NAME in body, "top names in the summary:\n%s" % body)
    d.stop()
    d.start()  # a second restart sends nothing
    su.expect_final(su.send(d.port, su.text_message(b"clean\r\n"), sender="a@%s" % LOCAL,
                            rcpts=("x@%s" % LOCAL,)), 250, "clean")
    dumps = sink.wait_dumps(want + 2, timeout=60)
    d.stop()
    h.check_eq(len(sink.dumps()), want + 2, "downstream after a second restart (+1 clean mail)")


if __name__ == "__main__":
    h.run_tests(globals())
