"""
scan_util.py - helpers for the scan integration tests (scan_*.py).

Python 3 standard library only; builds on harness.py (imported, not
changed). What it provides:

  * SIGS, TESTFILES, CLI, EICAR - the signature set the tests own
    (t/sigs: EICAR as an .ndb body signature, clam.exe's MD5 as .hdb),
    Debian's clamav-testfiles, the scanrelay command, the EICAR string.
  * From t/corpus/virus/corpus_archives.py, shared with the unit tests'
    corpus: EICAR, zip_of(), targz_of(), encrypted_zip(), gzip_bomb(),
    uuencode() (here as bytes).
  * copy_sigs(ctx) - a private copy of t/sigs (reload tests change it).
  * scanning_daemon(ctx, relay_port, virus={}, scan={}, **top) - a
    Scanrelayd with scanning on (harness.py's default is off) and the
    test signature set.
  * Message builders: mime_message(), attachment(), text_message(),
    nested_zip(), zip_bomb_file(), lying_zip_bomb_file(), rfc2047().
  * send() / send_many() - one transaction per call on a fresh connection.
  * added_headers(msg) - split the two header lines scanrelayd prepends
    from the rest of a delivered message, and check their form.
  * control() - one request on the daemon's control socket (the protocol
    of lib/ctl.h), cli() - run `scanrelay`, rss_kb()/hwm_kb() - memory of
    a process from /proc.
"""

import base64
import binascii
import json
import os
import quopri
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import zipfile

import harness as h

sys.path.insert(0, os.path.join(h.SRC, "t", "corpus", "virus"))
import corpus_archives as ca  # noqa: E402
from corpus_archives import EICAR, encrypted_zip, targz_of, zip_of  # noqa: E402,F401

SIGS = os.path.join(h.SRC, "t", "sigs")
TESTFILES = "/usr/share/clamav-testfiles"
CLI = os.path.join(h.BUILD, "cli", "scanrelay")
EICAR_NAME = "Win.Test.EICAR"      # libclamav appends ".UNOFFICIAL"
CLAMEXE_NAME = "Win.Test.ClamExe"
BOUNDARY = "=_scanrelay_integ_b0undary"
TEXT = b"Hello,\r\nthe quarterly figures are attached.\r\n" * 3

SCANNED_RE = re.compile(r"^X-Virus-Scanned: scanrelay \S+ \(ClamAV [0-9][0-9A-Za-z.~+-]*/(\d+)\)$")
STATUS_RE = re.compile(r"^X-Virus-Status: (Clean|Unchecked|Infected \((.+)\))$")


def need_testfiles():
    if not os.path.isdir(TESTFILES) or not os.listdir(TESTFILES):
        h.fail("%s is missing: install clamav-testfiles (scripts/install-deps.sh)" % TESTFILES)
    return sorted(f for f in os.listdir(TESTFILES) if os.path.isfile(os.path.join(TESTFILES, f)))


def sig_count(dbdir):
    """Signatures in a folder of .ndb/.hdb files (one per non-empty line)."""
    n = 0
    for f in os.listdir(dbdir):
        if f.endswith((".ndb", ".hdb")):
            with open(os.path.join(dbdir, f), "rb") as fh:
                n += sum(1 for l in fh if l.strip() and not l.startswith(b"#"))
    return n


def copy_sigs(ctx, name="sigs"):
    dst = ctx.path(name)
    shutil.copytree(SIGS, dst)
    return dst


def ndb_line(name, data):
    """An .ndb body signature (any target, any offset) for the bytes data."""
    return "%s:0:*:%s\n" % (name, binascii.hexlify(data).decode())


# ---------------------------------------------------------------- daemon

def scanning_daemon(ctx, relay_port, virus=None, scan=None, start=True, name="scanrelayd",
                    dbdir=None, **top):
    v = {"database_directory": dbdir or SIGS}
    v.update(virus or {})
    s = {"enabled": h.Raw("yes")}
    s.update(scan or {})
    return h.Scanrelayd(ctx, relay_port=relay_port, sections={"virus": v, "scan": s},
                        start=start, name=name, **top)


def raw(v):
    """Config values for actions, sizes, durations: written without quotes."""
    return h.Raw(v)


# ---------------------------------------------------------------- messages

def uuencode(data, name):
    return ca.uuencode(data, name).encode()


def encode_body(data, enc, name="file"):
    if enc == "base64":
        return base64.encodebytes(data).replace(b"\n", b"\r\n").rstrip(b"\r\n")
    if enc == "quoted-printable":
        return quopri.encodestring(data).replace(b"\n", b"\r\n").rstrip(b"\r\n")
    if enc in ("x-uuencode", "uuencode"):
        return uuencode(data, name)
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n").rstrip(b"\r\n")


def attachment(name, data, ctype="application/octet-stream", enc="base64", name_param=None,
               disp_param=None):
    """One MIME part (bytes, CRLF). name_param/disp_param: verbatim parameter text."""
    np = name_param if name_param is not None else 'name="%s"' % name
    dp = disp_param if disp_param is not None else 'filename="%s"' % name
    hdr = ("Content-Type: %s; %s\r\nContent-Disposition: attachment; %s\r\n"
           "Content-Transfer-Encoding: %s\r\n\r\n" % (ctype, np, dp, enc)).encode("utf-8")
    return hdr + encode_body(data, enc, name)


def text_part(text=TEXT, charset="us-ascii", enc="7bit"):
    return ("Content-Type: text/plain; charset=%s\r\nContent-Transfer-Encoding: %s\r\n\r\n"
            % (charset, enc)).encode() + encode_body(text, enc)


def mime_message(parts, subject="test", boundary=BOUNDARY, extra_headers=""):
    """multipart/mixed from part byte strings (each headers + body, CRLF)."""
    out = [("From: Sender <sender@example.com>\r\nTo: Rcpt <rcpt@example.org>\r\n"
            "Subject: %s\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
            "Message-ID: <%d.%f@integ.scanrelay.test>\r\n%sMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n"
            "This is a multi-part message in MIME format.\r\n"
            % (subject, os.getpid(), time.time(), extra_headers, boundary)).encode()]
    for p in parts:
        out.append(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n")
    out.append(b"--" + boundary.encode() + b"--\r\n")
    return b"".join(out)


def text_message(body, subject="test", extra_headers=""):
    """A one-part text/plain message; body bytes with LF or CRLF line ends."""
    body = body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return (("From: Sender <sender@example.com>\r\nTo: Rcpt <rcpt@example.org>\r\n"
             "Subject: %s\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
             "Message-ID: <%d.%f@integ.scanrelay.test>\r\n%sMIME-Version: 1.0\r\n"
             "Content-Type: text/plain; charset=us-ascii\r\n\r\n")
            % (subject, os.getpid(), time.time(), extra_headers)).encode() + body


def nested_zip(data, name, depth):
    """data as name inside depth zips: level0.zip/docs/level1.zip/.../docs/name."""
    path = name
    for i in range(depth):
        data = zip_of([("readme.txt", TEXT), ("docs/" + name, data)])
        name = "level%d.zip" % (depth - 1 - i)
    loc = "/docs/".join("level%d.zip" % i for i in range(depth)) + "/docs/" + path
    return data, name, loc


def zip_bomb_file(path, size=1 << 30, member="zeros.bin", zip64=True):
    """A zip with one member of size zero bytes, written in 1 MiB chunks (zip64 by default)."""
    if os.path.exists(path):
        return path
    blk = bytes(1 << 20)
    with zipfile.ZipFile(path + ".tmp", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open(member, "w", force_zip64=zip64) as f:
            for _ in range(size >> 20):
                f.write(blk)
    os.rename(path + ".tmp", path)
    return path


def lying_zip_bomb_file(path, size=1 << 30, claimed=1000, member="zeros.bin"):
    """
    Like zip_bomb_file but the local and central headers claim the member
    expands to `claimed` bytes: a reader that trusts them is fooled, one that
    counts what it inflates is not.
    """
    if os.path.exists(path):
        return path
    blk = bytes(1 << 20)
    with zipfile.ZipFile(path + ".tmp", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open(member, "w") as f:
            for _ in range(size >> 20):
                f.write(blk)
    with open(path + ".tmp", "r+b") as f:
        data = bytearray(f.read())
        h.check(data[:4] == b"PK\x03\x04", "zip: no local header first")
        h.check(struct.unpack_from("<I", data, 22)[0] == size, "zip: local size field")
        struct.pack_into("<I", data, 22, claimed)
        c = data.rfind(b"PK\x01\x02")
        h.check(struct.unpack_from("<I", data, c + 24)[0] == size, "zip: central size field")
        struct.pack_into("<I", data, c + 24, claimed)
        f.seek(0)
        f.write(data)
    os.rename(path + ".tmp", path)
    return path


def gzip_bomb(size=1 << 30):
    return ca.gzip_bomb(size)


def rfc2047(text, charset, enc="B"):
    raw = text.encode(charset)
    if enc == "B":
        return "=?%s?B?%s?=" % (charset, base64.b64encode(raw).decode())
    q = "".join(chr(b) if (0x21 <= b < 0x7F and chr(b) not in "=?_ ") else "=%02X" % b
                for b in raw)
    return "=?%s?Q?%s?=" % (charset, q)


def rfc2231(text, charset):
    raw = text.encode(charset)
    return "%s''%s" % (charset, "".join(
        chr(b) if (chr(b).isalnum() or chr(b) in ".-_") else "%%%02X" % b for b in raw))


# ---------------------------------------------------------------- SMTP

def send(port, msg, sender="sender@example.com", rcpts=("rcpt@example.org",), timeout=120):
    """One transaction on a fresh connection; returns harness Tx (.final is the verdict)."""
    c = h.SmtpClient(port, timeout=timeout)
    try:
        c.ehlo()
        tx = c.transaction(sender, list(rcpts), msg, timeout=timeout)
    finally:
        c.quit()
    return tx


def final_line(tx):
    r = tx.final if tx.final is not None else tx.first_error
    return r.line() if r is not None else "(no reply)"


def expect_final(tx, code, what, prefix=None):
    r = tx.final
    h.check(r is not None, "%s: no reply to the end of DATA: %r" % (what, tx))
    h.check(r.code == code and (prefix is None or r.line().startswith(prefix)),
            "%s: expected %s%s, got %r" % (what, code, (" " + repr(prefix)) if prefix else "",
                                            r.line()))
    return r


QID_RE = re.compile(r" as ([0-9A-Za-z]+)\b")


def reply_qid(reply):
    m = QID_RE.search(reply.line())
    return m.group(1) if m else None


# ---------------------------------------------------------------- delivered messages

def added_headers(delivered, original=None, crlf=True):
    """
    delivered: the message as the downstream stored it. Checks that it
    starts with exactly X-Virus-Scanned and X-Virus-Status (in that order,
    one line each) and, when original is given, that the rest is
    byte-identical to it. Returns (scanned_value, status_value, rest).
    """
    nl = b"\r\n" if crlf else b"\n"
    lines = delivered.split(nl, 2)
    h.check(len(lines) == 3, "delivered message too short: %r" % delivered[:200])
    l1, l2, rest = (lines[0].decode("utf-8", "replace"), lines[1].decode("utf-8", "replace"),
                    lines[2])
    h.check(SCANNED_RE.match(l1), "first line is not the X-Virus-Scanned header of SPEC.md: %r"
            % l1)
    h.check(STATUS_RE.match(l2), "second line is not an X-Virus-Status header: %r" % l2)
    if original is not None:
        h.check_bytes(rest, original, "delivered message after removing the two added headers")
    return l1, l2, rest


def parse_log_part(line):
    """The part= field of a per-message log line (up to ', action=')."""
    m = re.search(r", part=(.*?), action=", line)
    return m.group(1) if m else None


# ---------------------------------------------------------------- control socket, CLI

def control(sock_path, request, timeout=30):
    """One request on the control socket -> (ok, final text, data lines)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock_path)
    try:
        s.sendall(request.encode() + b"\n")
        buf = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            buf += d
            if re.search(rb"(^|\n)(OK|ERR)[^\n]*\n", buf):
                break
    finally:
        s.close()
    data, final, ok = [], None, None
    for line in buf.decode("utf-8", "replace").splitlines():
        if line.startswith("* "):
            data.append(line[2:])
        elif line == "OK" or line.startswith("OK "):
            ok, final = True, line[3:]
        elif line.startswith("ERR"):
            ok, final = False, line[4:]
    if ok is None:
        h.fail("control socket %s: no final line in answer %r" % (sock_path, buf))
    return ok, final, data


def cli(args, conf=None, stdin=None, timeout=120):
    """Run scanrelay [-c conf] args -> (status, stdout, stderr, wall seconds)."""
    if not os.path.exists(CLI):
        h.fail("scanrelay is not built: %s does not exist" % CLI)
    argv = [CLI] + (["-c", conf] if conf else []) + list(args)
    t0 = time.monotonic()
    p = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    dt = time.monotonic() - t0
    return (p.returncode, p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"), dt)


def scan_json(path, conf, extra=()):
    rc, out, err, dt = cli(["-j", "scan"] + list(extra) + [path], conf)
    try:
        obj = json.loads(out)
    except ValueError as e:
        h.fail("scanrelay -j scan %s: output is not one JSON object (%s): %r / stderr %r"
               % (path, e, out[:500], err[:500]))
    return rc, obj, err, dt


def write_conf(ctx, name="scan.conf", virus=None, scan=None, top=None):
    v = {"database_directory": SIGS}
    v.update(virus or {})
    s = {}
    s.update(scan or {})
    t = {"state_directory": ctx.mkdir("cli-state"), "queue_directory": ctx.mkdir("cli-queue")}
    t.update(top or {})
    p = ctx.path(name)
    with open(p, "w") as f:
        f.write(h.render_config(t, {"virus": v, "scan": s}))
    return p


# ---------------------------------------------------------------- /proc

def _status_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def rss_kb(pid):
    return _status_kb(pid, "VmRSS")


def hwm_kb(pid):
    return _status_kb(pid, "VmHWM")


def reset_hwm(pid):
    """Reset the peak RSS (VmHWM) of pid to its current RSS; False when not allowed."""
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def is_sanitized(binary):
    """True when binary was built with AddressSanitizer."""
    try:
        out = subprocess.run(["ldd", binary], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL).stdout
        return b"libasan" in out
    except OSError:
        return False
