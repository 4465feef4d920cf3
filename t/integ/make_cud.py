#!/usr/bin/env python3
"""Build a small ClamAV database container (.cud) for tests.

A .cud is ClamAV's unsigned container: the 512-byte ASCII header of a .cvd
("ClamAV-VDB:build time:version:sigs:flevel:md5:dsig:builder:stime", blank
padded) followed by a tar of the database files and a NAME.info listing
each file's size and SHA-256 (libclamav checks the .info against the tar
and the header against the .info). A .cvd or .cld needs ClamAV's digital
signature (of the .cvd, or of the .info inside a .cld), which a test
cannot make, so libclamav refuses a home-made one; the .cud is the same
format without that check.

    make_cud.py OUT.cud VERSION STIME NAME.ndb=LINE [NAME.hdb=LINE ...]
"""
import hashlib
import io
import sys
import tarfile
import time


def header(version, nsigs, stime):
    t = time.strftime("%d %b %Y %H-%M +0000", time.gmtime(stime))
    return "ClamAV-VDB:%s:%d:%d:90:%s:X:scanrelay-test:%d" % (t, version, nsigs, "0" * 32, stime)


def make_cud(path, version, stime, files):
    """files: {name: bytes}; every non-empty line is one signature."""
    nsigs = sum(len([l for l in d.splitlines() if l.strip()]) for d in files.values())
    hdr = header(version, nsigs, stime)
    base = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    info = hdr + "\n" + "".join("%s:%d:%s\n" % (n, len(d), hashlib.sha256(d).hexdigest())
                                for n, d in sorted(files.items()))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in [(base + ".info", info.encode())] + sorted(files.items()):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = stime
            t.addfile(ti, io.BytesIO(data))
    with open(path, "wb") as f:
        f.write(hdr.encode().ljust(512, b" ") + buf.getvalue())
    return nsigs


if __name__ == "__main__":
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    files = {}
    for a in sys.argv[4:]:
        n, line = a.split("=", 1)
        files[n] = files.get(n, b"") + line.encode() + b"\n"
    make_cud(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), files)
