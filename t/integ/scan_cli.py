#!/usr/bin/env python3
"""
scan_cli.py - `scanrelay scan FILE|-` offline: verdicts, exit status (0
clean, 1 flagged, 2 error), where each finding was, -j JSON, limits, and
the 1 GiB zip bomb flagged in under a second.

The messages are built here (scan_util.py) around the test signature set
t/sigs; every file of Debian's clamav-testfiles is scanned as well.

Run: SCANRELAY_BUILD=build python3 t/integ/scan_cli.py [test ...]
"""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import scan_util as su  # noqa: E402
from scan_util import raw  # noqa: E402

VIRUS_CASES = None


def virus_cases():
    """(file name, message, expected finding location) with EICAR in each wrapping."""
    e = su.EICAR
    z5, z5name, z5loc = su.nested_zip(e, "eicar.com", 5)
    return [
        ("eicar-base64", su.mime_message([su.text_part(), su.attachment("eicar.com", e)]),
         "eicar.com"),
        ("eicar-qp", su.mime_message([su.text_part(), su.attachment(
            "eicar.txt", e + b"\r\n", "text/plain", "quoted-printable")]), "eicar.txt"),
        ("eicar-uu", su.mime_message([su.text_part(), su.attachment(
            "eicar.com", e, enc="x-uuencode")]), "eicar.com"),
        ("invoice-zip", su.mime_message([su.text_part(), su.attachment(
            "invoice.zip", su.zip_of([("readme.txt", su.TEXT), ("docs/a.exe", e)]),
            "application/zip")]), "invoice.zip/docs/a.exe"),
        ("targz", su.mime_message([su.text_part(), su.attachment(
            "files.tar.gz", su.targz_of([("files/readme.txt", su.TEXT), ("files/eicar.com", e)]),
            "application/gzip")]), "files.tar.gz/files/eicar.com"),
        ("zip5", su.mime_message([su.text_part(), su.attachment(z5name, z5, "application/zip")]),
         z5loc),
    ]


def write(ctx, name, data):
    p = ctx.path(name)
    with open(p, "wb") as f:
        f.write(data)
    return p


def findings_text(out):
    """The 'findings:' block of the text output: list of (location, rest)."""
    res, inblock = [], False
    for line in out.splitlines():
        if re.match(r"^\S", line):
            inblock = line.startswith("findings:")
            continue
        if inblock:
            m = re.match(r"^\s+(.*): (\S.*)$", line)
            if m:
                res.append((m.group(1), m.group(2)))
    return res


def test_virus_corpus_text(ctx):
    conf = su.write_conf(ctx)
    errs = []
    for name, msg, loc in virus_cases():
        p = write(ctx, name + ".eml", msg)
        rc, out, err, _ = su.cli(["scan", p], conf)
        f = findings_text(out)
        want = (loc, su.EICAR_NAME)
        if rc != 1:
            errs.append("%s: exit %d, expected 1:\n%s%s" % (name, rc, out, err))
        elif not any(l == loc and v.startswith(su.EICAR_NAME) for l, v in f):
            errs.append("%s: no finding line '  %s: %s...' in:\n%s" % (name, want[0], want[1], out))
    h.check(not errs, "\n".join(errs))


def test_finding_location_example(ctx):
    """The example of the issue: invoice.zip/docs/a.exe: Win.Test.EICAR..."""
    conf = su.write_conf(ctx)
    msg = su.mime_message([su.text_part(), su.attachment(
        "invoice.zip", su.zip_of([("docs/a.exe", su.EICAR)]), "application/zip")])
    rc, out, err, _ = su.cli(["scan", write(ctx, "invoice.eml", msg)], conf)
    h.check_eq(rc, 1, "exit status")
    h.check(re.search(r"(?m)^\s+invoice\.zip/docs/a\.exe: Win\.Test\.EICAR", out),
            "no 'invoice.zip/docs/a.exe: Win.Test.EICAR...' line in:\n%s" % out)


def test_clean_exit_zero(ctx):
    conf = su.write_conf(ctx)
    msgs = [su.text_message(b"hello\r\n"),
            su.mime_message([su.text_part(), su.attachment("report.zip", su.zip_of(
                [("a.txt", su.TEXT)]), "application/zip")])]
    for i, m in enumerate(msgs):
        rc, out, err, _ = su.cli(["scan", write(ctx, "clean%d.eml" % i, m)], conf)
        h.check(rc == 0, "clean message %d: exit %d\n%s%s" % (i, rc, out, err))
        h.check("X-Virus-Status: Clean" in out, "no X-Virus-Status: Clean in:\n%s" % out)
        h.check(not findings_text(out), "findings for a clean message:\n%s" % out)


def test_json(ctx):
    conf = su.write_conf(ctx)
    for name, msg, loc in virus_cases():
        p = write(ctx, name + ".eml", msg)
        rc, obj, err, _ = su.scan_json(p, conf)
        h.check_eq(rc, 1, "%s exit status" % name)
        h.check_eq(obj.get("verdict"), "virus", "%s verdict" % name)
        h.check((obj.get("virus") or "").startswith(su.EICAR_NAME), "%s virus: %r" % (name, obj))
        h.check_eq((obj.get("rule"), obj.get("checker")), ("virus", "virus"),
                   "%s deciding rule and checker" % name)
        vf = [f for f in obj.get("findings", []) if f.get("kind") == "virus"]
        h.check(vf and all((f.get("checker"), f.get("rule")) == ("virus", "virus") for f in vf),
                "%s: virus findings without checker/rule virus: %r" % (name, obj.get("findings")))
        locs = [f.get("location") for f in obj.get("findings", [])]
        h.check(loc in locs, "%s: finding locations %r, expected %r" % (name, locs, loc))
        h.check(any(x.startswith("X-Virus-Status: Infected (") for x in obj.get("headers", [])),
                "%s headers: %r" % (name, obj.get("headers")))
        h.check(obj.get("parts"), "%s: no parts listed" % name)
    rc, obj, err, _ = su.scan_json(write(ctx, "clean.eml", su.text_message(b"hi\r\n")), conf)
    h.check_eq(rc, 0, "clean exit status")
    h.check_eq(obj.get("verdict"), "clean", "clean verdict")
    h.check_eq(obj.get("findings"), [], "clean findings")


def test_stdin(ctx):
    conf = su.write_conf(ctx)
    msg = su.mime_message([su.text_part(), su.attachment("eicar.com", su.EICAR)])
    rc, out, err, _ = su.cli(["scan", "-"], conf, stdin=msg)
    h.check(rc == 1, "stdin: exit %d\n%s%s" % (rc, out, err))
    h.check(any(l == "eicar.com" for l, _ in findings_text(out)), out)
    rc, out, err, _ = su.cli(["scan", "-"], conf, stdin=su.text_message(b"hi\r\n"))
    h.check(rc == 0, "clean on stdin: exit %d\n%s%s" % (rc, out, err))


def test_errors_exit_two(ctx):
    conf = su.write_conf(ctx)
    msg = write(ctx, "m.eml", su.text_message(b"hi\r\n"))
    broken = ctx.mkdir("broken-db")
    with open(os.path.join(broken, "x.ndb"), "w") as f:
        f.write("garbage\n")
    cases = [
        ("missing file", ["scan", ctx.path("no-such.eml")], conf),
        ("a directory", ["scan", ctx.dir], conf),
        ("missing database directory", ["scan", "-d", ctx.path("no-such-db"), msg], conf),
        ("empty database directory", ["scan", "-d", ctx.mkdir("empty-db"), msg], conf),
        ("broken database", ["scan", "-d", broken, msg], conf),
        ("no file argument", ["scan"], conf),
    ]
    errs = []
    for what, args, c in cases:
        rc, out, err, _ = su.cli(args, c)
        if rc != 2:
            errs.append("%s: exit %d, expected 2: %s%s" % (what, rc, out, err))
        if "AddressSanitizer" in err or "runtime error" in err:
            errs.append("%s: sanitizer report:\n%s" % (what, err))
    h.check(not errs, "\n".join(errs))


def test_testfiles_flagged(ctx):
    files = su.need_testfiles()
    conf = su.write_conf(ctx)
    errs, names = [], {}
    for fn in files:
        with open(os.path.join(su.TESTFILES, fn), "rb") as f:
            data = f.read()
        p = write(ctx, "tf.eml", su.mime_message([su.text_part(), su.attachment(fn, data)]))
        rc, obj, err, _ = su.scan_json(p, conf)
        if rc != 1 or obj.get("verdict") == "clean":
            errs.append("%s: exit %d verdict %s" % (fn, rc, obj.get("verdict")))
            continue
        locs = [f.get("location") or "" for f in obj.get("findings", [])]
        if not any(l.startswith(fn) for l in locs):
            errs.append("%s: findings do not start at the attachment name: %r" % (fn, locs))
        names[obj.get("verdict")] = names.get(obj.get("verdict"), 0) + 1
    print("  %d clamav-testfiles: %r" % (len(files), names))
    h.check(not errs, "\n".join(errs))


def test_libclamav_limit_not_silent(ctx):
    """
    clam_cache_emax.tgz nests clam.exe nine tar.gz deep; clamscan finds it.
    With archive_depth_limit raised to 20, nothing of ours stops at depth 9:
    then either the virus is found or a limit is reported; a clean verdict
    means libclamav's own recursion limit (virus.max_recursion) cut the scan
    short silently.
    """
    su.need_testfiles()
    with open(os.path.join(su.TESTFILES, "clam_cache_emax.tgz"), "rb") as f:
        data = f.read()
    p = write(ctx, "emax.eml", su.mime_message([su.text_part(), su.attachment(
        "clam_cache_emax.tgz", data, "application/gzip")]))
    conf = su.write_conf(ctx, scan={"archive_depth_limit": 20})
    rc, obj, err, _ = su.scan_json(p, conf)
    h.check(rc == 1 and obj.get("verdict") != "clean",
            "clam_cache_emax.tgz with archive_depth_limit = 20: exit %d, verdict %s (clamscan "
            "-d t/sigs finds Win.Test.ClamExe in it; archive_depth %s, %s files)"
            % (rc, obj.get("verdict"), obj.get("archive_depth"), obj.get("archive_files")))


def test_japanese_names_decoded(ctx):
    conf = su.write_conf(ctx)
    name = "請求書_ウイルス.com"
    msg = su.mime_message([su.text_part(), su.attachment(
        name, su.EICAR, name_param='name="%s"' % su.rfc2047(name, "iso-2022-jp"),
        disp_param="filename*=%s" % su.rfc2231(name, "shift_jis"))],
        subject=su.rfc2047("請求書", "iso-2022-jp"))
    p = write(ctx, "jp.eml", msg)
    rc, obj, err, _ = su.scan_json(p, conf)
    h.check_eq(rc, 1, "exit status")
    names = [x.get("filename") for x in obj.get("parts", [])]
    h.check(name in names, "decoded file names %r, expected %r" % (names, name))
    h.check(name in [f.get("location") for f in obj.get("findings", [])],
            "finding locations %r" % obj.get("findings"))
    rc, out, err, _ = su.cli(["scan", p], conf)
    h.check(name in out, "text output does not show %s:\n%s" % (name, out))


# ---------------------------------------------------------------- bombs

def bomb_case(ctx, label, path, ctype, data, conf, bar=1.0):
    p = write(ctx, "bomb.eml", su.mime_message([su.text_part(), su.attachment(
        os.path.basename(path), data, ctype)], subject=label))
    rc, obj, err, dt = su.scan_json(p, conf)
    print("  %s: exit %d, verdict %s, limits %r, %.3fs wall (%s expanded)"
          % (label, rc, obj.get("verdict"), obj.get("limits"), dt, obj.get("expanded_bytes")))
    h.check(rc == 1, "%s: exit %d, expected 1 (flagged)" % (label, rc))
    h.check(obj.get("verdict") == "limit" and obj.get("limits"),
            "%s: verdict %r limits %r, expected a limit hit" % (label, obj.get("verdict"),
                                                               obj.get("limits")))
    h.check(dt < bar, "%s: scanrelay scan took %.2fs wall (bar: < %.1fs)" % (label, dt, bar))


def test_zip_bomb_under_a_second(ctx):
    conf = su.write_conf(ctx)
    path = su.zip_bomb_file(ctx.path("bomb.zip"))
    with open(path, "rb") as f:
        data = f.read()
    bomb_case(ctx, "1 GiB zip bomb", path, "application/zip", data, conf)
    path = su.zip_bomb_file(ctx.path("bomb32.zip"), zip64=False)
    with open(path, "rb") as f:
        data = f.read()
    bomb_case(ctx, "1 GiB zip bomb without zip64 fields", path, "application/zip", data, conf)


def test_hidden_bombs_under_a_second(ctx):
    conf = su.write_conf(ctx)
    liar = su.lying_zip_bomb_file(ctx.path("liar.zip"))
    with open(liar, "rb") as f:
        data = f.read()
    bomb_case(ctx, "1 GiB zip bomb claiming 1000 bytes", liar, "application/zip", data, conf)
    bomb_case(ctx, "1 GiB gzip bomb", "zeros.gz", "application/gzip", su.gzip_bomb(), conf)
    conf2 = su.write_conf(ctx, "noratio.conf", scan={"compression_ratio_limit": 0})
    bomb_case(ctx, "1 GiB zip bomb claiming 1000 bytes, no ratio rule", liar,
              "application/zip", data, conf2)


def test_limits_and_actions_reported(ctx):
    """Each limit names itself, its value and threshold, and its own action."""
    many = su.zip_of([("f%d.txt" % i, su.TEXT) for i in range(10)])
    deep, dname, _ = su.nested_zip(su.TEXT, "t.txt", 4)
    cases = [("archive_files", "reject", {"archive_files_limit": 3},
              su.attachment("many.zip", many, "application/zip")),
             ("archive_depth", "strip", {"archive_depth_limit": 2},
              su.attachment(dname, deep, "application/zip"))]
    for limit, action, sc, part in cases:
        sc = dict(sc)
        sc[limit + "_action"] = raw(action)
        conf = su.write_conf(ctx, limit + ".conf", scan=sc)
        p = write(ctx, limit + ".eml", su.mime_message([su.text_part(), part]))
        rc, obj, err, _ = su.scan_json(p, conf)
        h.check_eq(rc, 1, "%s exit status" % limit)
        h.check(limit in (obj.get("limits") or []), "%s: limits %r" % (limit, obj.get("limits")))
        f = [x for x in obj.get("findings", []) if x.get("name") == limit]
        h.check(f and f[0].get("action") == action and f[0].get("value", 0) > f[0].get("limit", 0),
                "%s finding: %r" % (limit, f))
        h.check_eq(obj.get("action"), action, "%s message action" % limit)


if __name__ == "__main__":
    h.run_tests(globals())
