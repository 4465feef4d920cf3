#!/usr/bin/env python3
"""make-corpus.py - generate the MIME test corpus for t/unit/test_mime.c.

Usage: make-corpus.py [OUTDIR]   (default: the directory of this script)

Standard library only; the output is deterministic (same bytes on every run),
so the generated .eml files can be checked in and regenerated at will.
Messages use CRLF line ends, as they arrive over SMTP, except lf-only.eml.

Attachment payloads are payload(n, seed): byte i is (i * seed + 11) & 0xff.
test_mime.c computes the same bytes to check the decoded content.
"""
import base64
import binascii
import os
import quopri
import sys

CRLF = b"\r\n"


def payload(n, seed):
    return bytes(((i * seed + 11) & 0xFF) for i in range(n))


def b64lines(data, width=76):
    enc = base64.b64encode(data)
    return CRLF.join(enc[i:i + width] for i in range(0, len(enc), width))


def uuencode(data, name, mode="644"):
    out = [("begin %s %s" % (mode, name)).encode()]
    for i in range(0, len(data), 45):
        out.append(binascii.b2a_uu(data[i:i + 45]).rstrip(b"\n"))
    out.append(b"`")
    out.append(b"end")
    return CRLF.join(out)


def crc_xmodem(data, crc=0):
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def binhex(name, data, ftype=b"TEXT", creator=b"ttxt"):
    """BinHex 4.0 (RFC 1741): header, data fork, empty resource fork, RLE, 6-bit."""
    nm = name.encode()
    hdr = bytes([len(nm)]) + nm + b"\0" + ftype + creator + b"\0\0"
    hdr += len(data).to_bytes(4, "big") + (0).to_bytes(4, "big")
    raw = hdr + crc_xmodem(hdr + b"\0\0").to_bytes(2, "big")
    raw += data + crc_xmodem(data + b"\0\0").to_bytes(2, "big")
    raw += (0).to_bytes(2, "big")
    rle, i = bytearray(), 0
    while i < len(raw):
        b, n = raw[i], 1
        while i + n < len(raw) and raw[i + n] == b and n < 255:
            n += 1
        if b == 0x90:
            rle += b"\x90\x00"
            n = 1
        elif n >= 3:
            rle += bytes([b, 0x90, n])
        else:
            rle += bytes([b]) * n
        i += n
    alpha = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr"
    bits, acc, out = 0, 0, bytearray(b":")
    for b in rle:
        acc = (acc << 8) | b
        bits += 8
        while bits >= 6:
            bits -= 6
            out.append(alpha[(acc >> bits) & 63])
    if bits:
        out.append(alpha[(acc << (6 - bits)) & 63])
    out += b":"
    lines = [bytes(out[i:i + 64]) for i in range(0, len(out), 64)]
    return b"(This file must be converted with BinHex 4.0)" + CRLF + CRLF.join(lines)


def ew_b(text, charset):
    """RFC 2047 B encoded word."""
    raw = text.encode(charset)
    return ("=?%s?B?%s?=" % (charset, base64.b64encode(raw).decode())).encode()


def ew_q(text, charset):
    """RFC 2047 Q encoded word (every non-alnum byte as =XX)."""
    raw = text.encode(charset)
    q = "".join(chr(c) if (chr(c).isalnum() and c < 128) else "=%02X" % c for c in raw)
    return ("=?%s?Q?%s?=" % (charset, q)).encode()


def pct(raw):
    """RFC 2231 percent encoding."""
    return "".join(chr(c) if (chr(c).isalnum() and c < 128) or chr(c) in ".-_" else "%%%02X" % c
                   for c in raw)


def msg(headers, body):
    return CRLF.join(h if isinstance(h, bytes) else h.encode() for h in headers) + CRLF + CRLF + body


def multipart(boundary, parts, close=True, preamble=b"This is a multi-part message in MIME format."):
    out = preamble + CRLF
    for p in parts:
        out += b"--" + boundary + CRLF + p + CRLF
    if close:
        out += b"--" + boundary + b"--" + CRLF
    return out


def part(headers, body):
    return CRLF.join(h if isinstance(h, bytes) else h.encode() for h in headers) + CRLF + CRLF + body


BASE = ["From: Sender <sender@example.org>", "To: rcpt@example.net",
        "Date: Mon, 01 Jan 2024 00:00:00 +0000", "MIME-Version: 1.0"]
SEIKYU = "請求書"  # "invoice"


def corpus():
    c = {}

    # Subject and name in ISO-2022-JP, RFC 2047 B (subject and name= param).
    att = part(["Content-Type: application/zip; name=\"" + ew_b(SEIKYU + ".zip", "ISO-2022-JP").decode() + "\"",
                "Content-Transfer-Encoding: base64",
                "Content-Disposition: attachment"],
               b64lines(payload(1000, 7)))
    text = part(["Content-Type: text/plain; charset=ISO-2022-JP", "Content-Transfer-Encoding: 7bit"],
                "ご確認ください".encode("iso-2022-jp"))
    c["jp-iso2022-b.eml"] = msg(BASE + [b"Subject: " + ew_b("請求書の送付", "ISO-2022-JP"),
                                        "Message-ID: <jp1@example.org>",
                                        "Content-Type: multipart/mixed; boundary=\"=_jp1\""],
                                multipart(b"=_jp1", [text, att]))

    # Subject Shift_JIS Q; file name RFC 2231 in Shift_JIS (filename*=).
    att = part(["Content-Type: application/zip",
                "Content-Transfer-Encoding: base64",
                "Content-Disposition: attachment; filename*=Shift_JIS''" + pct((SEIKYU + ".zip").encode("shift_jis"))],
               b64lines(payload(1000, 7)))
    c["jp-sjis-q.eml"] = msg(BASE + [b"Subject: " + ew_q("請求書の送付", "Shift_JIS"),
                                     "Content-Type: multipart/mixed; boundary=sjis"],
                             multipart(b"sjis", [text, att]))

    # RFC 2231 with continuations, ISO-2022-JP (escape sequences split over sections),
    # and an EUC-JP RFC 2047 Q name on a second attachment.
    raw = (SEIKYU + "_2024年.zip").encode("iso-2022-jp")
    p = pct(raw)
    cut = len(p) // 2
    while p[cut - 1] == "%" or p[cut - 2] == "%":
        cut += 1
    att1 = part(["Content-Type: application/octet-stream",
                 "Content-Transfer-Encoding: base64",
                 "Content-Disposition: attachment;",
                 " filename*0*=ISO-2022-JP''" + p[:cut] + ";",
                 " filename*1*=" + p[cut:]],
                b64lines(payload(300, 13)))
    att2 = part(["Content-Type: application/octet-stream; name=\"" + ew_q(SEIKYU + ".zip", "EUC-JP").decode() + "\"",
                 "Content-Transfer-Encoding: base64"],
                b64lines(payload(200, 5)))
    c["jp-2231-cont.eml"] = msg(BASE + [b"Subject: " + ew_b("請求書", "EUC-JP"),
                                        "Content-Type: multipart/mixed; boundary=cont"],
                                multipart(b"cont", [att1, att2]))

    # Broken subjects: raw Shift_JIS bytes; and an encoded word carrying raw 8-bit.
    c["jp-raw-sjis.eml"] = msg(BASE + [b"Subject: " + "請求書の送付".encode("shift_jis"),
                                       "Content-Type: text/plain; charset=Shift_JIS"],
                               "本文".encode("shift_jis") + CRLF)
    c["jp-ew-raw8bit.eml"] = msg(BASE + [b"Subject: =?Shift_JIS?Q?" + "請求書".encode("shift_jis") + b"?=",
                                         "Content-Type: text/plain"],
                                 b"body" + CRLF)

    # base64, quoted-printable, x-uuencode CTE, and a uuencoded block inside text/plain.
    qp_body = b"caf\xc3\xa9 = ok\n" * 3 + b"x" * 100 + b"\n"
    parts = [
        part(["Content-Type: text/plain; charset=us-ascii"],
             b"See attached." + CRLF + CRLF + uuencode(payload(100, 3), "inline.bin") + CRLF + CRLF + b"Bye."),
        part(["Content-Type: application/octet-stream; name=b64.bin",
              "Content-Transfer-Encoding: base64"], b64lines(payload(5000, 31))),
        part(["Content-Type: text/plain; charset=utf-8; name=qp.txt",
              "Content-Transfer-Encoding: quoted-printable"], quopri.encodestring(qp_body).replace(b"\n", b"\r\n")),
        part(["Content-Type: application/octet-stream; name=uu.bin",
              "Content-Transfer-Encoding: x-uuencode"], uuencode(payload(500, 17), "uu.bin")),
        part(["Content-Type: application/octet-stream",
              "Content-Disposition: attachment; filename=\"plain.bin\""], b"0123456789"),
    ]
    c["encodings.eml"] = msg(BASE + ["Subject: encodings",
                                     "Content-Type: multipart/mixed; boundary=\"enc\""],
                             multipart(b"enc", parts))

    # message/rfc822 three deep; the innermost carries invoice.zip.
    inner3 = msg(["From: c@example.org", "Subject: level 3", "MIME-Version: 1.0",
                  "Content-Type: multipart/mixed; boundary=L3"],
                 multipart(b"L3", [part(["Content-Type: text/plain"], b"level 3 text"),
                                   part(["Content-Type: application/zip; name=invoice.zip",
                                         "Content-Transfer-Encoding: base64"], b64lines(payload(600, 9)))]))
    inner2 = msg(["From: b@example.org", "Subject: level 2", "MIME-Version: 1.0",
                  "Content-Type: multipart/mixed; boundary=L2"],
                 multipart(b"L2", [part(["Content-Type: text/plain"], b"level 2 text"),
                                   part(["Content-Type: message/rfc822; name=third.eml"], inner3)]))
    inner1 = msg(["From: a@example.org", "Subject: level 1", "MIME-Version: 1.0",
                  "Content-Type: multipart/mixed; boundary=L1"],
                 multipart(b"L1", [part(["Content-Type: text/plain"], b"level 1 text"),
                                   part(["Content-Type: message/rfc822"], inner2)]))
    c["nested3.eml"] = msg(BASE + ["Subject: Fwd: level 0",
                                   "Content-Type: multipart/mixed; boundary=L0"],
                           multipart(b"L0", [part(["Content-Type: text/plain"], b"level 0 text"),
                                             part(["Content-Type: message/rfc822",
                                                   "Content-Disposition: attachment; filename=forwarded.eml"],
                                                  inner1)]))

    # A base64-encoded message/rfc822 (GMime leaves it a leaf; mime.c walks into it).
    enc_inner = msg(["From: x@example.org", "Subject: encoded inner", "MIME-Version: 1.0",
                     "Content-Type: multipart/mixed; boundary=EI"],
                    multipart(b"EI", [part(["Content-Type: text/plain"], b"inner text"),
                                      part(["Content-Type: application/zip; name=inner.zip",
                                            "Content-Transfer-Encoding: base64"], b64lines(payload(333, 7)))]))
    c["encoded-rfc822.eml"] = msg(BASE + ["Subject: encoded message",
                                          "Content-Type: multipart/mixed; boundary=ER"],
                                  multipart(b"ER", [part(["Content-Type: text/plain"], b"see attached"),
                                                    part(["Content-Type: message/rfc822; name=\"fwd.eml\"",
                                                          "Content-Transfer-Encoding: base64"],
                                                         b64lines(enc_inner))]))

    # Missing closing boundary: both parts still found.
    c["missing-boundary.eml"] = msg(BASE + ["Subject: no end",
                                            "Content-Type: multipart/mixed; boundary=open"],
                                    multipart(b"open", [part(["Content-Type: text/plain"], b"first"),
                                                        part(["Content-Type: application/octet-stream; name=last.bin",
                                                              "Content-Transfer-Encoding: base64"],
                                                             b64lines(payload(120, 3)))], close=False))

    # Bad base64: valid data, then junk characters, then a truncated quantum.
    good = base64.b64encode(payload(90, 5))
    c["bad-base64.eml"] = msg(BASE + ["Subject: bad base64",
                                      "Content-Type: multipart/mixed; boundary=bad"],
                              multipart(b"bad", [part(["Content-Type: application/octet-stream; name=bad.bin",
                                                       "Content-Transfer-Encoding: base64"],
                                                      good + CRLF + b"!!**##" + CRLF + b"QUJD" + CRLF + b"QU")]))

    # A header 100 KB long (one folded field) in front of an attachment.
    long_val = CRLF.join(b" " + b"x" * 98 for _ in range(1024))
    c["long-header.eml"] = msg(BASE + [b"X-Long:" + long_val, "Subject: long header",
                                       "Content-Type: multipart/mixed; boundary=lh"],
                               multipart(b"lh", [part(["Content-Type: application/octet-stream; name=after.bin",
                                                       "X-Part-Long: " + "y" * 102400,
                                                       "Content-Transfer-Encoding: base64"],
                                                      b64lines(payload(64, 3)))]))

    # MIME depth 50: multiparts nested 50 deep, a leaf at the bottom.
    body = part(["Content-Type: application/octet-stream; name=deep.bin"], b"deep")
    for d in range(49, 0, -1):
        b = ("d%d" % d).encode()
        body = part(["Content-Type: multipart/mixed; boundary=" + b.decode()], multipart(b, [body], preamble=b""))
    c["depth50.eml"] = msg(BASE + ["Subject: depth 50",
                                   "Content-Type: multipart/mixed; boundary=d0"],
                           multipart(b"d0", [body], preamble=b""))

    # 5000 leaf parts.
    parts = [part(["Content-Type: text/plain; name=p%d.txt" % i], ("part %d" % i).encode()) for i in range(5000)]
    c["parts5000.eml"] = msg(BASE + ["Subject: many parts",
                                     "Content-Type: multipart/mixed; boundary=many"],
                             multipart(b"many", parts))

    # No MIME at all.
    c["nomime.eml"] = msg(["From: old@example.org", "To: rcpt@example.net", "Subject: plain old mail"],
                          b"Just text." + CRLF + b"Two lines." + CRLF)

    # 8-bit garbage in headers and body (deterministic LCG).
    x, junk = 12345, bytearray()
    for _ in range(4000):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        junk.append((x >> 16) & 0xFF)
    c["garbage8bit.eml"] = msg(BASE + [b"Subject: \xff\xfe\x80garbage\x9b", b"X-Junk: " + bytes(junk[:200]).replace(b"\n", b"").replace(b"\r", b""),
                                       "Content-Type: multipart/mixed; boundary=junk"],
                               multipart(b"junk", [part([b"Content-Type: application/octet-stream; name=\xe9\xff.bin"], bytes(junk)),
                                                   part(["Content-Type: text/plain"], b"after junk")]))

    # Single-part message whose only body is an attachment (strip replaces the body).
    c["single-attach.eml"] = msg(BASE + ["Subject: single", "Content-Type: application/zip; name=only.zip",
                                         "Content-Transfer-Encoding: base64",
                                         "Content-Disposition: attachment; filename=only.zip"],
                                 b64lines(payload(400, 11)) + CRLF)

    # BinHex 4.0 attachment (GMime has no BinHex decoder; mime.c does it).
    bh_data = payload(700, 3) + b"\x90\x90\x90" + b"A" * 40
    c["binhex.eml"] = msg(BASE + ["Subject: binhex", "Content-Type: multipart/mixed; boundary=bh"],
                          multipart(b"bh", [part(["Content-Type: application/mac-binhex40; name=\"mac.bin.hqx\""],
                                                 binhex("mac.bin", bh_data))]))

    # LF-only line ends (a spool written by a local tool).
    c["lf-only.eml"] = c["encodings.eml"].replace(b"\r\n", b"\n")

    return c


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    os.makedirs(out, exist_ok=True)
    for name, data in sorted(corpus().items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
