#!/usr/bin/env python3
"""Build the virus corpus: RFC 5322 messages carrying the EICAR test string
in every wrapping the scanner must see through, an encrypted zip, zip bombs,
clean mail, and each file of Debian's clamav-testfiles as an attachment.

Usage: make-corpus.py OUTDIR

Nothing virus-like is stored in the repository: EICAR is assembled (in
corpus_archives.py, shared with the integration tests) and
the test files are read from /usr/share/clamav-testfiles. Python 3 stdlib
only (zipfile, tarfile, zlib, lzma, base64, quopri, binascii); the 7z
archive is written by hand (Copy coder), the encrypted zip too (PKWARE
ZipCrypto, which zipfile can read but not write).

OUTDIR/manifest.tsv lists every message: file, expected kind (virus,
encrypted, limit, clean), and a string the finding's location or name must
contain ("-" for none). Building is skipped when OUTDIR/.stamp matches this
script and corpus_archives.py, so tests may call it every run (the bombs
take a few seconds).
"""
import base64
import hashlib
import io
import os
import quopri
import struct
import sys
import time
import zipfile
import zlib

from corpus_archives import (EICAR, encrypted_zip, gzip_bomb, padded_forward, targz_of, uuencode,
                             zip_of, zip_of_zeros)

TESTFILES = "/usr/share/clamav-testfiles"
BOMB_SIZE = 1 << 30  # 1 GiB of zeros expanded
BOUNDARY = "=_scanrelay_corpus_7d1c"


def message(subject, parts, body_text="See attachment.\n"):
    """parts: list of (content_type, filename, encoding, payload bytes)."""
    out = [
        "From: Sender <sender@example.com>",
        "To: Rcpt <rcpt@example.org>",
        "Subject: %s" % subject,
        "Date: Mon, 01 Jan 2024 00:00:00 +0000",
        "Message-ID: <%s@corpus.scanrelay.test>" % hashlib.md5(subject.encode()).hexdigest(),
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="%s"' % BOUNDARY,
        "",
        "This is a multi-part message in MIME format.",
        "--" + BOUNDARY,
        "Content-Type: text/plain; charset=us-ascii",
        "Content-Transfer-Encoding: 7bit",
        "",
        body_text.rstrip("\n"),
    ]
    for ctype, name, enc, payload in parts:
        out.append("--" + BOUNDARY)
        out.append('Content-Type: %s; name="%s"' % (ctype, name))
        out.append('Content-Disposition: attachment; filename="%s"' % name)
        out.append("Content-Transfer-Encoding: %s" % enc)
        out.append("")
        if enc == "base64":
            out.append(base64.encodebytes(payload).decode().rstrip("\n"))
        elif enc == "quoted-printable":
            out.append(quopri.encodestring(payload).decode("ascii").rstrip("\n"))
        elif enc == "x-uuencode":
            out.append(uuencode(payload, name))
        else:
            out.append(payload.decode("latin-1").rstrip("\n"))
    out.append("--" + BOUNDARY + "--")
    out.append("")
    return "\r\n".join(out).encode("latin-1")


def single(subject, body):
    """A one-part text/plain message."""
    hdr = (
        "From: Sender <sender@example.com>\r\nTo: Rcpt <rcpt@example.org>\r\n"
        "Subject: %s\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
        "Content-Transfer-Encoding: 7bit\r\n\r\n" % subject
    )
    return hdr.encode() + body.replace(b"\n", b"\r\n")


def sevenz_of(name, data):
    """A 7z archive with one file, Copy coder (7z format, hand-written)."""
    def num(v):  # 7z NUMBER, small values only
        assert v < 0x4000
        return bytes([v]) if v < 0x80 else bytes([0x80 | (v >> 8), v & 0xFF])

    name16 = name.encode("utf-16-le") + b"\0\0"
    hdr = b"".join([
        b"\x01",                                   # kHeader
        b"\x04",                                   # kMainStreamsInfo
        b"\x06", num(0), num(1), b"\x09", num(len(data)), b"\x00",   # kPackInfo
        b"\x07", b"\x0b", num(1), b"\x00",         # kUnPackInfo, kFolder, 1, not external
        num(1), b"\x01", b"\x00",                  # 1 coder: id size 1, id 0x00 (Copy)
        b"\x0c", num(len(data)),                   # kCodersUnPackSize
        b"\x0a", b"\x01", struct.pack("<I", zlib.crc32(data)),  # kCRC, all defined
        b"\x00",                                   # kEnd (UnPackInfo)
        b"\x08", b"\x00",                          # kSubStreamsInfo: one stream, kEnd
        b"\x00",                                   # kEnd (MainStreamsInfo)
        b"\x05", num(1),                           # kFilesInfo, 1 file
        b"\x11", num(len(name16) + 1), b"\x00", name16,  # kName, not external
        b"\x00",                                   # kEnd (FilesInfo)
        b"\x00",                                   # kEnd (Header)
    ])
    start = struct.pack("<QQI", len(data), len(hdr), zlib.crc32(hdr))
    return (b"7z\xbc\xaf\x27\x1c\x00\x04" + struct.pack("<I", zlib.crc32(start)) + start
            + data + hdr)


def zip_bomb():
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("zeros.bin", "w") as f:
            blk = bytes(1 << 20)
            for _ in range(BOMB_SIZE >> 20):
                f.write(blk)
    return b.getvalue()


def lying_zip(name, declared, size):
    """One deflated member of size zeros whose headers declare `declared` bytes."""
    data = bytes(size)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    comp = c.compress(data) + c.flush()
    crc = zlib.crc32(data)
    nm = name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(comp), declared,
                        len(nm), 0) + nm
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(comp),
                          declared, len(nm), 0, 0, 0, 0, 0, 0) + nm
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(comp), 0)
    return local + comp + central + end


def build(outdir):
    os.makedirs(outdir, exist_ok=True)
    manifest = []

    def put(fname, kind, where, data):
        with open(os.path.join(outdir, fname), "wb") as f:
            f.write(data)
        manifest.append((fname, kind, where))

    text = b"Hello,\nthe quarterly figures are attached.\n" * 4
    put("clean.eml", "clean", "-", message("clean", [("text/plain", "notes.txt", "base64", text)]))
    put("clean-zip.eml", "clean", "-",
        message("clean zip", [("application/zip", "report.zip", "base64",
                               zip_of([("a.txt", text), ("b/c.txt", text * 10)]))]))
    put("eicar-inline.eml", "virus", "EICAR", single("eicar inline", b"Test:\n" + EICAR + b"\n"))
    put("eicar-base64.eml", "virus", "eicar.com",
        message("eicar base64", [("application/octet-stream", "eicar.com", "base64", EICAR)]))
    put("eicar-qp.eml", "virus", "eicar.txt",
        message("eicar qp", [("text/plain", "eicar.txt", "quoted-printable", EICAR + b"\n")]))
    put("eicar-uuencode.eml", "virus", "eicar.com",
        message("eicar x-uuencode", [("application/octet-stream", "eicar.com", "x-uuencode",
                                      EICAR)]))
    put("eicar-uuencode-inline.eml", "virus", "EICAR",
        single("eicar uuencoded in the body", b"Here:\n\n" +
               uuencode(EICAR, "eicar.com").replace("\r\n", "\n").encode() + b"\n"))
    put("eicar-zip.eml", "virus", "invoice.zip/docs/eicar.com",
        message("eicar zip", [("application/zip", "invoice.zip", "base64",
                               zip_of([("readme.txt", text), ("docs/eicar.com", EICAR)]))]))
    # Found by fuzz/mime: no blank line after the zip part's headers. GMime
    # reads the rest as broken header lines; a lenient reader (Python's email,
    # some clients) decodes the zip. It must be scanned.
    put("eicar-zip-noblank.eml", "virus", "invoice.zip/docs/eicar.com",
        message("eicar zip, no blank line after the part headers", [
            ("application/zip", "invoice.zip", "base64",
             zip_of([("readme.txt", text), ("docs/eicar.com", EICAR)]))]).replace(
                 b"Content-Transfer-Encoding: base64\r\n\r\n",
                 b"Content-Transfer-Encoding: base64\r\n", 1))
    put("eicar-targz.eml", "virus", "eicar.com",
        message("eicar tar.gz", [("application/gzip", "files.tar.gz", "base64",
                                  targz_of([("files/readme.txt", text),
                                            ("files/eicar.com", EICAR)]))]))
    put("eicar-7z.eml", "virus", "eicar.com",
        message("eicar 7z", [("application/x-7z-compressed", "files.7z", "base64",
                              sevenz_of("eicar.com", EICAR))]))
    data, name = EICAR, "eicar.com"
    for i in range(5):
        data = zip_of([("readme.txt", text), ("docs/" + name, data)])
        name = "level%d.zip" % (4 - i)
    put("eicar-zip5.eml", "virus", "level0.zip/docs/level1.zip/docs/level2.zip/docs/level3.zip"
        "/docs/level4.zip/docs/eicar.com",
        message("eicar zip in zip five deep", [("application/zip", "level0.zip", "base64",
                                                 data)]))
    put("encrypted-zip.eml", "encrypted", "secret.zip/payload.exe",
        message("encrypted zip", [("application/zip", "secret.zip", "base64",
                                   encrypted_zip([("payload.exe", EICAR + b" padding" * 8)]))]))
    put("zipbomb.eml", "limit", "bomb.zip/zeros.bin",
        message("zip bomb", [("application/zip", "bomb.zip", "base64", zip_bomb())]))
    # Declares 100,000 bytes (more than its ~65 KB of deflate data: not
    # impossible), expands to 64 MiB: caught when expanded (by libclamav).
    put("ziplie.eml", "limit", "lying.zip/notes.txt",
        message("zip member larger than declared", [
            ("application/zip", "lying.zip", "base64",
             lying_zip("notes.txt", 100000, 64 << 20))]))
    put("gzbomb.eml", "limit", "zeros.gz",
        message("gzip bomb", [("application/gzip", "zeros.gz", "base64", gzip_bomb(BOMB_SIZE))]))

    # Issue 14 defect 1: a zip with a 300 MiB member in a forwarded message
    # padded with 6,000 boundary-like lines, sent base64 or QP encoded: the
    # zip is past the MIME parser's budget, never walked, and the limit must
    # reach the verdict (it was lost, the message scanned clean). Unpadded
    # it is walked and its member's declared size is the finding.
    z300 = zip_of_zeros("big.bin", 300 << 20)
    put("fwd-padded-b64.eml", "limit", "message", padded_forward(z300, "big.zip", 6000))
    put("fwd-padded-qp.eml", "limit", "message",
        padded_forward(z300, "big.zip", 6000, "quoted-printable"))
    put("fwd-padded-plain.eml", "limit", "message", padded_forward(z300, "big.zip", 6000, None))
    put("fwd-b64.eml", "limit", "big.zip/big.bin", padded_forward(z300, "big.zip", 10))

    # Benchmark material: a ~200 KB zip of mixed text, and the same zip in a zip.
    rnd = hashlib.sha256(b"scanrelay").digest()
    words = [rnd.hex()[i:i + 6] for i in range(0, 60, 6)]
    blob = bytearray()
    state = 1
    while len(blob) < 600 * 1024:
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        blob += (words[state % 10] + (" " if state & 16 else "\n")).encode()
        if state % 7 == 0:
            blob += os.urandom(24).hex().encode()
    z200 = zip_of([("data/part%d.txt" % i, bytes(blob[i * 100000:(i + 1) * 100000]))
                   for i in range(6)])
    put("clean-zip200k.eml", "clean", "-",
        message("200k zip", [("application/zip", "data.zip", "base64", z200)]))
    put("clean-zipzip.eml", "clean", "-",
        message("zip in zip", [("application/zip", "outer.zip", "base64",
                                zip_of([("inner.zip", z200)], zipfile.ZIP_STORED))]))

    # Every file of clamav-testfiles, attached.
    if os.path.isdir(TESTFILES):
        for fn in sorted(os.listdir(TESTFILES)):
            p = os.path.join(TESTFILES, fn)
            if not os.path.isfile(p):
                continue
            with open(p, "rb") as f:
                payload = f.read()
            put("testfile-%s.eml" % fn, "virus", fn,
                message("clamav testfile %s" % fn,
                        [("application/octet-stream", fn, "base64", payload)]))

    with open(os.path.join(outdir, "manifest.tsv"), "w") as f:
        for row in manifest:
            f.write("\t".join(row) + "\n")


def main():
    if len(sys.argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    outdir = sys.argv[1]
    me = b"".join(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), f), "rb").read()
                  for f in ("make-corpus.py", "corpus_archives.py"))
    stamp = hashlib.sha256(me).hexdigest() + " " + str(len(os.listdir(TESTFILES))
                                                        if os.path.isdir(TESTFILES) else 0)
    sp = os.path.join(outdir, ".stamp")
    if os.path.exists(sp) and open(sp).read() == stamp:
        return 0
    t0 = time.time()
    build(outdir)
    with open(sp, "w") as f:
        f.write(stamp)
    sys.stderr.write("corpus built in %s in %.1fs\n" % (outdir, time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
