#!/usr/bin/env python3
"""Write the seed inputs of every fuzz target into fuzz/corpus/TARGET/.

Usage: fuzz/make-seeds.py

Seeds come from the tests' own material: the MIME corpus (t/corpus/mime),
the archive builders shared with the tests (t/corpus/virus/corpus_archives.py),
the example configuration (etc/scanrelay.conf), and dialogues, replies and
queue files written here in the formats the unit tests use. Each seed is
named by the SHA-1 of its bytes, as libFuzzer names corpus files, so
running this again adds nothing twice. Nothing virus-like is written: the
scan seeds carry the harmless marker that fuzz/sigs/fuzz.ndb detects
instead of EICAR. Large corpus messages (over 64 KB) are left out: the
corpus stays small, and run.sh's merge keeps only what adds coverage.
"""
import base64
import gzip
import hashlib
import io
import os
import sys
import tarfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SRC, "t", "corpus", "virus"))
from corpus_archives import encrypted_zip, targz_of, uuencode, zip_of  # noqa: E402

MARKER = b"SCANRELAY-FUZZ-MARKER-7f3a"  # fuzz/sigs/fuzz.ndb, not a virus
MAX_SEED = 64 * 1024


def put(target, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def mime_files():
    d = os.path.join(SRC, "t", "corpus", "mime")
    for n in sorted(os.listdir(d)):
        p = os.path.join(d, n)
        if n.endswith(".eml") and os.path.getsize(p) <= MAX_SEED:
            with open(p, "rb") as f:
                yield f.read()


# --- SMTP ---------------------------------------------------------------------
DIALOGUES = [
    "QUIT\r\n",
    "EHLO client.test\r\nQUIT\r\n",
    "HELO client.test\r\nHELO\r\nEHLO\r\nQUIT\r\n",
    "EHLO c\nNOOP\nQUIT\n",
    "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\none\n.\nMAIL FROM:<evil@x>\r\n"
    "two\r\n.\nthree\n.\r\nfour\r\n.\r\nQUIT\r\n",
    "EHLO client.test\r\nMAIL FROM:<a@x.test> SIZE=100\r\nRCPT TO:<b@y.test>\r\n"
    "RCPT TO:<c@y.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c@y.test\r\nDATA\r\n"
    "Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n",
    "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@y>\r\nDATA\r\none\r\n.\r\n"
    "MAIL FROM:<a@x>\r\nRCPT TO:<c@y>\r\nDATA\r\ntwo\r\n.\r\nQUIT\r\n",
    "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n"
    "..x\r\n...\r\n..\r\na.b\r\n. \r\n.\rz\r\nend.\r\n.line\r\n\r\n.\r\nQUIT\r\n",
    "EHLO c\r\nMAIL FROM:<a@x> BODY=8BITMIME RET=HDRS ENVID=QQ314159 SMTPUTF8\r\n"
    "RCPT TO:<b@y> NOTIFY=NEVER\r\nRSET\r\nMAIL FROM:<a@x> SIZE=999999999\r\n"
    "MAIL FROM:<a@x> SIZE\r\nMAIL FROM:<a@x> FOO=BAR\r\nQUIT\r\n",
    "EHLO c\r\nXFORWARD NAME=spike.porcupine.org ADDR=168.100.189.2 PROTO=ESMTP\r\n"
    "XFORWARD HELO=spike.porcupine.org SOURCE=REMOTE IDENT=[UNAVAILABLE]\r\n"
    "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n",
    "EHLO c\r\nMAIL FROM:<a@x>\r\nDATA\r\nRCPT TO:<>\r\nRCPT TO:<@r1,@r2:b@y>\r\n"
    "VRFY x\r\nEXPN y\r\nHELP\r\nBDAT 10 LAST\r\nSTARTTLS\r\nAUTH PLAIN\r\nETRN x\r\n"
    "FOO\r\nNO\0OP\r\n\r\nQUIT\r\n",
    "EHLO c\r\n" + "NOOP " + "x" * 600 + "\r\nNOOP\r\nQUIT\r\n",
    "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b1@y>\r\nRCPT TO:<b2@y>\r\nRCPT TO:<b3@y>\r\n"
    "RCPT TO:<b4@y>\r\nDATA\r\n" + "0123456789" * 20 + "\r\n.\r\nQUIT\r\n",
    "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\nEHLO c\r\nQUIT\r\n",
]
REPLIES = [
    "220 mx.example.test ESMTP Postfix\r\n",
    "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n"
    "250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n250 XFORWARD NAME ADDR PROTO HELO\r\n",
    "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n",
    "250 2.0.0 Ok: queued as 4Xyz\r\n221 2.0.0 Bye\r\n",
    "451 4.3.0 Error: queue file write error\r\n",
    "550-5.1.1 <b@y>: Recipient address rejected:\r\n550 5.1.1 User unknown\r\n",
    "250-a\n250 b\n421 4.4.2 timeout\n",
    "250-first\r\n251 mismatched\r\n",
    "600 bad\r\n2x0 bad\r\n250\r\n",
    "554 5.7.1 " + "x" * 1100 + "\r\n",
    "250-" + "y" * 300 + "\r\n" + "250-" + "z" * 300 + "\r\n" + "250 end\r\n",
]


def smtp():
    for i, d in enumerate(DIALOGUES):
        for opt in (0x00, 0x01, 0x08):
            put("smtpd_proto", bytes([opt]) + d.encode("latin-1"))
    for d in DIALOGUES:
        for line in d.replace("\r\n", "\n").split("\n"):
            if line:
                put("smtp_cmd", line.encode("latin-1"))
    for r in REPLIES:
        put("smtp_reply", r)


# --- MIME and headers ----------------------------------------------------------
SUBJECTS = [
    "=?UTF-8?B?6KuL5rGC5pu4?=",
    "=?ISO-2022-JP?B?GyRCMEJGfiQ3JEYkJCReJDkbKEI=?=",
    "=?shift_jis?Q?=90=BF=8B=81=8F=91?=",
    "=?EUC-JP?B?pKKkpKSm?= =?EUC-JP?B?pKikqg==?=\r\n =?EUC-JP?B?pKukrQ==?=",
    "=?iso-8859-1?q?caf=E9_cr=E8me?= plain =?utf-8*en?Q?x_y?=",
    "raw \xe8\xab\x8b\xe6\xb1\x82 utf-8 and =?bogus?X?zz?= =?utf-8?B?=?=",
    "=?UTF-8?B?44GC?==?UTF-8?B?44GE?=",
]
NAMES = [
    "=?UTF-8?B?6KuL5rGC5pu4LnppcA==?=",
    "UTF-8''%E8%AB%8B%E6%B1%82.zip",
    "iso-2022-jp'ja'%1B%24B0BF~%1B%28B.txt",
    "invoice.pdf.exe",
]


def headers():
    for s in SUBJECTS:
        put("rfc2047", s.encode("latin-1"))
        for n in NAMES:
            put("rfc2047", s.encode("latin-1") + b"\0" + n.encode("latin-1"))
    for m in mime_files():
        for line in m.split(b"\n"):
            if line.lower().startswith(b"subject:"):
                put("rfc2047", line[8:].strip())
    for m in mime_files():
        put("mime", m)


# --- archives and whole messages --------------------------------------------------
def cpio_newc(members):
    out = b""
    for i, (name, data) in enumerate(members + [("TRAILER!!!", b"")]):
        nb = name.encode() + b"\0"
        hdr = b"070701" + b"".join(b"%08X" % v for v in (
            i + 1, 0o100644, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0))
        out += hdr + nb
        out += b"\0" * ((4 - len(out) % 4) % 4) + data
        out += b"\0" * ((4 - len(out) % 4) % 4)
    return out


def archives():
    text = b"hello, this is a harmless attachment\n" * 4
    inner = zip_of([("docs/a.txt", text), ("b.bin", MARKER)])
    arcs = [
        zip_of([("a.txt", text)]),
        zip_of([("a.txt", text)], method=zipfile.ZIP_STORED),
        inner,
        zip_of([("inner.zip", inner), ("c.txt", text)]),
        zip_of([("l2.zip", zip_of([("l3.zip", zip_of([("l4.zip", inner)]))]))]),
        targz_of([("dir/a.txt", text), ("m.bin", MARKER)]),
        encrypted_zip([("secret.txt", text)]),
        gzip.compress(b"\0" * 200000),
        gzip.compress(text),
        cpio_newc([("a.txt", text), ("d/b.bin", MARKER)]),
    ]
    tb = io.BytesIO()
    with tarfile.open(fileobj=tb, mode="w") as t:
        ti = tarfile.TarInfo("plain.txt")
        ti.size = len(text)
        t.addfile(ti, io.BytesIO(text))
    arcs.append(tb.getvalue())
    for a in arcs:
        put("archive", a)
    return arcs


def message(subject, parts):
    b = "=_fuzz_b"
    out = [b"From: Sender <sender@example.com>", b"To: <rcpt@example.org>",
           b"Subject: " + subject, b"Message-ID: <seed@fuzz.test>", b"MIME-Version: 1.0",
           b'Content-Type: multipart/mixed; boundary="' + b.encode() + b'"', b"",
           b"--" + b.encode(), b"Content-Type: text/plain", b"", b"See attachment."]
    for ctype, name, enc, payload in parts:
        out += [b"--" + b.encode(), b"Content-Type: " + ctype + b'; name="' + name + b'"',
                b'Content-Disposition: attachment; filename="' + name + b'"',
                b"Content-Transfer-Encoding: " + enc, b""]
        if enc == b"base64":
            out.append(base64.encodebytes(payload).rstrip(b"\n"))
        elif enc == b"x-uuencode":
            out.append(uuencode(payload, name.decode()).encode())
        else:
            out.append(payload.rstrip(b"\n"))
    out += [b"--" + b.encode() + b"--", b""]
    return b"\r\n".join(out)


def scan(arcs):
    put("scan", message(b"marker inline", [(b"text/plain", b"m.txt", b"7bit", MARKER)]))
    put("scan", message(b"marker uu", [(b"text/plain", b"m.txt", b"x-uuencode", MARKER)]))
    names = [b"a.zip", b"a.zip", b"in.zip", b"nest.zip", b"deep.zip", b"a.tar.gz",
             b"enc.zip", b"zeros.gz", b"a.gz", b"a.cpio", b"a.tar"]
    for n, a in zip(names, arcs):
        put("scan", message(b"=?UTF-8?B?6KuL5rGC5pu4?= " + n,
                            [(b"application/octet-stream", n, b"base64", a)]))
    fwd = message(b"inner", [(b"application/zip", b"in.zip", b"base64", arcs[2])])
    put("scan", message(b"forwarded", [(b"message/rfc822", b"fwd.eml", b"base64", fwd)]))
    for m in mime_files():
        if len(m) <= 16 * 1024:
            put("scan", m)


# --- queue files and configuration -------------------------------------------------
def xtext(s):
    return "=" + "".join(c if 33 <= ord(c) <= 126 and c not in "+=" else "+%02X" % ord(c)
                         for c in s)


def queue_file(sender, rcpts, content, extra=(), states=None, meta=(0, 0, 0)):
    lines = ["scanrelay-queue 1", "arrival 1700000000", "sender " + xtext(sender)]
    lines += list(extra)
    lines.append("meta %010d %020d %020d" % meta)
    for i, (addr, notify, orcpt) in enumerate(rcpts):
        st = states[i] if states else ("P", "")
        slot = st[1].ljust(250)
        lines.append("rcpt %s %03d %s %s %d %s" % (st[0], len(st[1]), slot, xtext(addr), notify,
                                                   xtext(orcpt) if orcpt else "-"))
    lines += ["size %d" % len(content), "content"]
    return ("\n".join(lines) + "\n").encode() + content


def queue_and_config():
    body = b"Subject: hi\r\n\r\nbody\r\n"
    put("queue_file", queue_file("a@x.test", [("b@y.test", 0, None)], body))
    put("queue_file", queue_file("", [("b@y.test", 6, "rfc822;b@y.test"),
                                      ("c d@y.test", 1, None)], body,
                                 extra=["envid =QQ+2B1", "ret HDRS", "body 8BITMIME", "smtputf8",
                                        "xforward NAME =spike.example", "xforward ADDR =192.0.2.1"],
                                 states=[("T", "451 4.4.1 down"), ("D", "250 ok")],
                                 meta=(3, 1700000100, 1700000400)))
    put("queue_file", queue_file("a@x", [("b@y", 0, None)], b""))
    put("queue_file", queue_file("a@x", [("b@y", 0, None)], body)[:-5])  # truncated

    with open(os.path.join(SRC, "etc", "scanrelay.conf"), "rb") as f:
        example = f.read()
    put("config", example)
    uncommented = b"\n".join(l.replace(b"#", b"", 1) if l.lstrip().startswith(b"#") and
                             b"=" in l else l for l in example.split(b"\n"))
    put("config", uncommented)
    put("config", b"")
    put("config", b'listen = {"127.0.0.1:10025", "[::1]:10025"}\nrelay = "127.0.0.1:10026"\n'
                  b"max_message_size = 30M\nsmtpd_timeout = 5min\n"
                  b'xforward_networks = {"127.0.0.0/8", "::1/128"}\n'
                  b"virus {\n action = quarantine\n max_scan_time = 2m\n}\n"
                  b"scan {\n file_size_limit = 10M\n file_size_action = reject\n"
                  b" archive_depth_limit = 5\n encrypted_action = tag\n error_action = deliver\n}\n"
                  b"queue {\n maximal_queue_lifetime = 5d\n min_free_space = 1G\n}\n")
    put("config", b"max_message_size = -1\nscan { timeout = 1w2d }\nbogus = 1\n")


def main():
    smtp()
    headers()
    queue_and_config()
    scan(archives())


if __name__ == "__main__":
    main()
