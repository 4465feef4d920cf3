"""Archives and encodings the tests build with the Python standard library
only: shared by make-corpus.py (the virus corpus of the unit tests) and
t/integ/scan_util.py (the integration tests), so both build them alike.

Nothing virus-like is stored: EICAR is assembled here.
"""
import binascii
import io
import os
import struct
import tarfile
import zipfile
import zlib

# The EICAR test string, assembled so that this file itself is not flagged.
EICAR = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")


def uuencode(data, name):
    """uuencoded data as text lines joined by CR LF, with begin and end."""
    lines = ["begin 644 %s" % name]
    for i in range(0, len(data), 45):
        lines.append(binascii.b2a_uu(data[i:i + 45]).decode().rstrip("\n"))
    lines += ["`", "end"]
    return "\r\n".join(lines)


def zip_of(members, method=zipfile.ZIP_DEFLATED):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", method) as z:
        for name, data in members:
            z.writestr(name, data)
    return b.getvalue()


def targz_of(members):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w:gz") as t:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 1700000000
            t.addfile(ti, io.BytesIO(data))
    return b.getvalue()


def _crc_byte(crc, b):
    return zlib.crc32(bytes([b]), crc ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


class ZipCrypto:
    """PKWARE ZipCrypto (traditional zip encryption): zipfile reads it, cannot write it."""

    def __init__(self, password):
        self.k = [0x12345678, 0x23456789, 0x34567890]
        for c in password:
            self.update(c)

    def update(self, c):
        k = self.k
        k[0] = _crc_byte(k[0], c)
        k[1] = (k[1] + (k[0] & 0xFF)) & 0xFFFFFFFF
        k[1] = (k[1] * 134775813 + 1) & 0xFFFFFFFF
        k[2] = _crc_byte(k[2], k[1] >> 24)

    def encrypt(self, data):
        out = bytearray()
        for p in data:
            t = (self.k[2] | 2) & 0xFFFF
            out.append(p ^ (((t * (t ^ 1)) >> 8) & 0xFF))
            self.update(p)
        return bytes(out)


def encrypted_zip(members, password=b"infected"):
    """Stored members encrypted with PKWARE ZipCrypto (general flag bit 0)."""
    body, central = b"", b""
    for name, data in members:
        crc = zlib.crc32(data)
        zc = ZipCrypto(password)
        head = os.urandom(11) + bytes([crc >> 24])
        enc = zc.encrypt(head) + zc.encrypt(data)
        nm = name.encode()
        off = len(body)
        body += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 1, 0, 0, 0x21, crc, len(enc),
                            len(data), len(nm), 0) + nm + enc
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 1, 0, 0, 0x21, crc,
                               len(enc), len(data), len(nm), 0, 0, 0, 0, 0, off) + nm
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central),
                      len(body), 0)
    return body + central + end


def gzip_bomb(size):
    """A lone gzip stream of size zeros: no size declared anywhere that a reader
    trusts (the trailer's ISIZE is size mod 2^32)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    blk = bytes(1 << 20)
    out = [c.compress(blk) for _ in range(size >> 20)]
    out.append(c.flush())
    return b"".join(out)


def zip_of_zeros(name, size):
    """A zip whose one deflated member is size zeros (honest headers)."""
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open(name, "w", force_zip64=size >= 1 << 31) as f:
            blk = bytes(1 << 20)
            for _ in range(size >> 20):
                f.write(blk)
            f.write(bytes(size & ((1 << 20) - 1)))
    return b.getvalue()


def padded_forward(attachment, name, npad, enc="base64"):
    """Issue 14 defect 1: a message forwarding (message/rfc822, sent with
    Content-Transfer-Encoding enc: "base64", "quoted-printable" or None for
    as is) a message whose text part holds npad boundary-like lines
    ("--pad N") before the attachment (base64, application/zip). The lines
    push the attachment past the MIME parser's boundary budget (about 5,000
    lines with max_mime_parts = 1000), so it is never walked."""
    import base64
    import quopri
    crlf = "\r\n"
    inner = crlf.join([
        "From: Forwarder <fwd@example.net>",
        "To: Rcpt <rcpt@example.org>",
        "Subject: the files",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="inner_b"',
        "",
        "--inner_b",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "Figures below.",
    ] + ["--pad %d" % i for i in range(npad)] + [
        "--inner_b",
        'Content-Type: application/zip; name="%s"' % name,
        'Content-Disposition: attachment; filename="%s"' % name,
        "Content-Transfer-Encoding: base64",
        "",
        base64.encodebytes(attachment).decode().replace("\n", crlf).rstrip(crlf),
        "--inner_b--",
        "",
    ]).encode()
    if enc == "base64":
        body = base64.encodebytes(inner).replace(b"\n", b"\r\n")
    elif enc == "quoted-printable":
        body = quopri.encodestring(inner).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    else:
        body = inner
    head = crlf.join([
        "From: Sender <sender@example.com>",
        "To: Rcpt <rcpt@example.org>",
        "Subject: Fwd: the files",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="outer_b"',
        "",
        "--outer_b",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "Forwarded message attached.",
        "--outer_b",
        'Content-Type: message/rfc822; name="fwd.eml"',
        "Content-Disposition: attachment; filename=\"fwd.eml\"",
    ] + (["Content-Transfer-Encoding: %s" % enc] if enc else []) + ["", ""])
    return head.encode() + body + b"\r\n--outer_b--\r\n"
