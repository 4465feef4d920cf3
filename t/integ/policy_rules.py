#!/usr/bin/env python3
"""
policy_rules.py - policy rules (rule "NAME" { } sections, issue 10) through the daemon.

Real peers: scanrelayd (scan { enabled = yes }, the test signature set),
a RawSink downstream (exact bytes), an SMTP client injecting messages the
test builds. Each case goes to its own recipient, and each rule is scoped
to that recipient, so one daemon serves every case:

  * subject keywords in phrase mode: "code name is deep blue" matches,
    "name is deep blue code" does not; in all mode it does;
  * 未承諾広告 in an ISO-2022-JP subject (RFC 2047), a Shift_JIS body
    (base64, and mislabelled as ISO-2022-JP), an RFC 2231 file name; a
    half-width katakana subject matches a full-width keyword;
  * an exclusion (お疲れ様です) cancels the body rule;
  * report.pdf that is a PE inside a zip: quarantined by a true-type rule
    (reason policy, rule named); invoice.pdf.exe by a double-extension rule;
  * an approved sender (action deliver) skips a body rule that discards
    others; a blocked domain is rejected with the configured text;
  * scanrelayd -t names file:line of a bad rule; a broken rules file on
    reload keeps the old rule set;
  * rules in files included by a glob, in name order; a bad included rule
    is reported with the included file's name and line.

Run: SCANRELAY_BUILD=build python3 t/integ/policy_rules.py [test ...]
"""

import base64
import io
import os
import struct
import sys
import urllib.parse
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import scan_util as su  # noqa: E402

RULES = """
rule "approved" {
  sender = {"boss@partner.example"}
  action = deliver
}
rule "blocked" {
  sender = {"@spam.example", ".spam.example"}
  action = reject
  reject_text = "Mail from this domain is not accepted"
}
rule "phrase" {
  recipient = {"phrase@t.example"}
  subject = {"code name is deep blue", "Hello Wife"}
  match = phrase
  action = reject
}
rule "allwords" {
  recipient = {"all@t.example"}
  subject = {"code name is deep blue", "Hello Wife"}
  match = all
  action = reject
}
rule "jp-subject" {
  recipient = {"jp@t.example"}
  subject = {"未承諾広告", "セール"}
  action = reject
}
rule "jp-body" {
  recipient = {"jp@t.example"}
  body = {"未承諾広告"}
  exclude = {"お疲れ様です"}
  action = reject
}
rule "jp-name" {
  recipient = {"jp@t.example"}
  attachment_name = {"*未承諾広告*"}
  action = reject
}
rule "truetype" {
  attachment_true_type = {"application/x-dosexec", "application/vnd.microsoft.portable-executable"}
  action = quarantine
}
rule "double-ext" {
  attachment_name = {"*.pdf.exe", "*.doc.exe"}
  action = reject
}
rule "lottery" {
  body = {"/lottery\\\\s+winner/"}
  action = discard
}
"""


def pe_bytes():
    """A minimal PE32 header: libmagic calls it a Windows executable."""
    pe = bytearray(512)
    pe[0:2] = b"MZ"
    pe[0x3c:0x40] = struct.pack("<I", 0x80)
    pe[0x80:0x84] = b"PE\0\0"
    pe[0x84:0x86] = struct.pack("<H", 0x14c)
    pe[0x86:0x88] = struct.pack("<H", 1)
    pe[0x94:0x96] = struct.pack("<H", 0xe0)
    pe[0x96:0x98] = struct.pack("<H", 0x102)
    pe[0x98:0x9a] = struct.pack("<H", 0x10b)
    return bytes(pe)


def zip_of(name, data):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return b.getvalue()


def start(ctx, rules=RULES):
    rs = h.RawSink(ctx)
    d = su.scanning_daemon(ctx, rs.port, start=False)
    d.write_config(h.render_config(d.top, d.sections) + rules)
    d.start()
    return rs, d


CASES = []  # (message, sender, recipient, rule expected to match or None), for "rules test"


def expect_reject(d, msg, rule, rcpt, sender="sender@example.com", text=None):
    CASES.append((msg, sender, rcpt, rule))
    tx = su.send(d.port, msg, sender=sender, rcpts=(rcpt,))
    r = su.expect_final(tx, 554, "rule %s" % rule, "554 5.7.1")
    h.check("policy %s:" % rule in r.line(),
            "rule %s: the reply does not name it: %r" % (rule, r.line()))
    if text:
        h.check(text in r.line(), "rule %s: reply without %r: %r" % (rule, text, r.line()))
    return r


def expect_delivered(rs, d, msg, rcpt, n, sender="sender@example.com", what="", rule=None):
    CASES.append((msg, sender, rcpt, rule))
    tx = su.send(d.port, msg, sender=sender, rcpts=(rcpt,))
    su.expect_final(tx, 250, what or "delivered")
    got = rs.wait_txs(n)[n - 1].message
    h.check(got.endswith(msg), "%s: delivered bytes differ from the message sent" % what)


def test_rules(ctx):
    rs, d = start(ctx)
    n = 0

    # Phrase vs all.
    expect_reject(d, su.text_message(b"hi\n", subject="Re: code name is deep blue!"),
                  "phrase", "phrase@t.example")
    n += 1
    expect_delivered(rs, d, su.text_message(b"hi\n", subject="name is deep blue code"),
                     "phrase@t.example", n, what="phrase: words out of order")
    expect_reject(d, su.text_message(b"hi\n", subject="name is deep blue code"), "allwords",
                  "all@t.example")
    expect_reject(d, su.text_message(b"hi\n", subject="HELLO there, my wife"), "allwords",
                  "all@t.example")

    # Japanese: ISO-2022-JP subject, Shift_JIS body (and mislabelled), RFC 2231 name,
    # half-width katakana.
    kw = "未承諾広告"
    expect_reject(d, su.text_message(b"hi\n", subject=su.rfc2047(kw + "のお知らせ", "iso-2022-jp")),
                  "jp-subject", "jp@t.example")
    expect_reject(d, su.text_message(b"hi\n", subject=su.rfc2047("ｾｰﾙ開催", "utf-8")),
                  "jp-subject", "jp@t.example")
    sjis = ("【" + kw + "】今だけの特価です。\n").encode("cp932")
    expect_reject(d, su.mime_message([su.text_part(sjis, "shift_jis", "base64")]), "jp-body",
                  "jp@t.example")
    expect_reject(d, su.mime_message([su.text_part(sjis, "iso-2022-jp", "base64")]), "jp-body",
                  "jp@t.example")
    name = kw + ".txt"
    enc = "utf-8''" + urllib.parse.quote(name.encode("utf-8"), safe="")
    att = su.attachment(name, b"plain\n", "text/plain", "base64", name_param="name*=" + enc,
                        disp_param="filename*=" + enc)
    expect_reject(d, su.mime_message([su.text_part(b"hi\n"), att]), "jp-name", "jp@t.example")
    # Exclusion cancels the body rule.
    greet = ("お疲れ様です。" + kw + "の件です。\n").encode("cp932")
    msg = su.mime_message([su.text_part(greet, "shift_jis", "base64")])
    n += 1
    expect_delivered(rs, d, msg, "jp@t.example", n, what="exclusion")

    # True type inside a zip; double extension.
    z = zip_of("report.pdf", pe_bytes())
    msg = su.mime_message([su.text_part(b"see attached\n"),
                           su.attachment("report.zip", z, "application/zip")])
    CASES.append((msg, "sender@example.com", "x@t.example", "truetype"))
    tx = su.send(d.port, msg, rcpts=("x@t.example",))
    r = su.expect_final(tx, 250, "truetype", "250 2.7.0 Ok: quarantined as ")
    qid = su.reply_qid(r)
    line = d.wait_message_logs(lambda x: x.qid == qid, 1, 10)[0]
    h.check(line.get("rule") == "truetype" and line.get("result") == "policy", str(line))
    h.check("report.zip/report.pdf" in line.get("part", ""), "part not named: %s" % line)
    rc, out, err, _ = su.cli(["quarantine", "list"], conf=d.conf_path)
    h.check(rc == 0 and qid in out and "policy" in out and "truetype" in out,
            "quarantine list: %r %r" % (out[-500:], err[-300:]))
    msg = su.mime_message([su.text_part(b"invoice\n"),
                           su.attachment("invoice.pdf.exe", b"hello", "application/pdf")])
    expect_reject(d, msg, "double-ext", "x@t.example")

    # Approved sender skips a body rule; the others are discarded; blocked domain rejected.
    body = b"You are our lottery   winner!\n"
    n += 1
    expect_delivered(rs, d, su.text_message(body), "x@t.example", n,
                     sender="boss@partner.example", what="approved sender", rule="approved")
    CASES.append((su.text_message(body), "sender@example.com", "x@t.example", "lottery"))
    tx = su.send(d.port, su.text_message(body), rcpts=("x@t.example",))
    su.expect_final(tx, 250, "lottery", "250 2.7.0 Ok: discarded")
    expect_reject(d, su.text_message(b"hi\n"), "blocked", "x@t.example",
                  sender="Someone@Mail.Spam.Example",
                  text="Mail from this domain is not accepted")
    h.check_eq(len(rs.wait_txs(n)), n, "messages downstream")

    # The daemon's hit counts.
    rc, out, err, _ = su.cli(["rules"], conf=d.conf_path)
    h.check(rc == 0 and "phrase: 1 hits, action reject" in out and
            "truetype: 1 hits, action quarantine" in out and "jp-subject: 2 hits" in out,
            "scanrelay rules: %r %r" % (out, err))

    # "scanrelay rules test" agrees with the daemon on every case, without acting.
    for i, (msg, sender, rcpt, rule) in enumerate(CASES):
        path = ctx.path("case%d.eml" % i)
        with open(path, "wb") as f:
            f.write(msg)
        rc, out, err, _ = su.cli(["rules", "test", "-s", sender, "-R", rcpt, path],
                                 conf=d.conf_path)
        got = [ln.strip().split(":")[0] for ln in out.splitlines() if ln.startswith("  ")]
        if rule is None:
            h.check(rc == 0 and got == [], "rules test case %d: expected none, got %r %r"
                    % (i, out, err))
        else:
            h.check(rc == 1 and got == [rule], "rules test case %d: expected %s, got %r %r"
                    % (i, rule, out, err))


def test_bad_rules(ctx):
    rs, d = start(ctx)
    good = open(d.conf_path).read()
    bad = good + 'rule "broken" {\n  subject = {"/unbalanced(/"}\n}\n'
    badline = good.count("\n") + 1
    conf2 = ctx.path("bad.conf")
    with open(conf2, "w") as f:
        f.write(bad)
    rc, out = h.run_daemon_check(conf2)
    h.check(rc != 0 and ("bad.conf:%d:" % badline) in out and "broken" in out,
            "scanrelayd -t on a bad regex: rc %d, %r" % (rc, out))
    for extra, line in (('rule "k" {\n  subjekt = {"x"}\n}\n', badline + 1),
                        ('rule "e" {\n  subject = {"x"}\n  expires = "2026-13-45"\n}\n', badline)):
        with open(conf2, "w") as f:
            f.write(good + extra)
        rc, out = h.run_daemon_check(conf2)
        h.check(rc != 0 and "bad.conf:%d:" % line in out, "-t: rc %d, %r" % (rc, out))

    # Reload with the broken file: the old set stays.
    mark = d.log_mark()
    d.write_config(bad)
    d.signal(1)
    d.wait_log(r"keeping the old configuration", 10, mark)
    h.check(":%d:" % badline in d.log_since(mark), "reload error without file:line")
    expect_reject(d, su.text_message(b"hi\n", subject="code name is deep blue"), "phrase",
                  "phrase@t.example")
    # A good file with a new rule takes effect.
    mark = d.log_mark()
    d.write_config(good + 'rule "new" {\n  subject = {"brand new"}\n  action = reject\n}\n')
    d.signal(1)
    d.wait_log(r"reloaded", 10, mark)
    expect_reject(d, su.text_message(b"hi\n", subject="a Brand New thing"), "new", "x@t.example")


def test_include(ctx):
    """Rules in files included by a glob (in name order); errors name the included file."""
    rdir = ctx.mkdir("rules.d")
    with open(os.path.join(rdir, "20-b.conf"), "w") as f:
        f.write('# second\nrule "inc-b" {\n  subject = {"alpha"}\n  action = discard\n}\n')
    with open(os.path.join(rdir, "10-a.conf"), "w") as f:
        f.write('rule "inc-a" {\n  subject = {"alpha bravo"}\n  match = all\n  action = reject\n}\n')
    rs, d = start(ctx, 'include = "rules.d/*.conf"\n')
    # inc-a (reject) comes first and is stronger: the reply names it.
    expect_reject(d, su.text_message(b"hi\n", subject="Bravo, Alpha"), "inc-a", "x@t.example")
    tx = su.send(d.port, su.text_message(b"hi\n", subject="alpha"), rcpts=("x@t.example",))
    su.expect_final(tx, 250, "inc-b", "250 2.7.0 Ok: discarded")
    bad = os.path.join(rdir, "20-b.conf")
    with open(bad, "w") as f:
        f.write('\n\nrule "inc-b" {\n  subject = {"/al(pha/"}\n}\n')
    rc, out = h.run_daemon_check(d.conf_path)
    h.check(rc != 0 and (bad + ":3:") in out, "-t with a bad included rule: %d %r" % (rc, out))
    mark = d.log_mark()
    d.signal(1)
    d.wait_log(r"keeping the old configuration", 10, mark)
    h.check((bad + ":3:") in d.log_since(mark), "reload error does not name the included file")
    tx = su.send(d.port, su.text_message(b"hi\n", subject="alpha"), rcpts=("x@t.example",))
    su.expect_final(tx, 250, "inc-b after a bad reload", "250 2.7.0 Ok: discarded")
    with open(d.conf_path, "a") as f:
        f.write('include = "missing.conf"\n')
    rc, out = h.run_daemon_check(d.conf_path)
    h.check(rc != 0 and "missing.conf: no such file" in out, "-t, missing include: %r" % out)


if __name__ == "__main__":
    sys.exit(h.run_tests(globals()))
