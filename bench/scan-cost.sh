#!/bin/bash
# scan-cost.sh - the CPU cost of scanning one message, one thread, no
# SMTP: BENCH_COUNT different messages of each mix through scan_message()
# with one engine, twice. The first round sees each message for the first
# time (what a real mail stream mostly is); the second repeats them (what
# bench/scan-bench.sh measures, since it sends one message over and over:
# libclamav's cache and the engine's clean cache answer). Mixes as in
# scan-bench.sh: a clean 10 KB text message; a ~200 KB zip (3 text and 3
# random members), each message with members of its own.
#
# usage: bench/scan-cost.sh
# Environment (all optional):
#   BENCH_COUNT      messages per mix (default 300)
#   SCANRELAY_BUILD  build folder, relative to the source tree or absolute
#                    (default "build"; measure a Release/RelWithDebInfo build)
#   SIGS             signature folder (default t/sigs)
# Prints milliseconds per message per round, and repeated/first-seen.
# Exit status: 0 ran (every message clean), 1 a message was flagged, 2 setup.
set -u

src=$(cd "$(dirname "$0")/.." && pwd)
build=${SCANRELAY_BUILD:-build}
case $build in /*) ;; *) build=$src/$build ;; esac
COUNT=${BENCH_COUNT:-300}
sigs=${SIGS:-$src/t/sigs}
case $COUNT in '' | *[!0-9]*) echo "scan-cost: BENCH_COUNT must be a number" >&2; exit 2 ;; esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/scan-cost.XXXXXX") || exit 2
trap '[ -n "${KEEP_TMP:-}" ] || rm -rf "$tmp"' EXIT
cmake --build "$build" --target scan-cost >/dev/null || exit 2

python3 - "$tmp" "$COUNT" <<'PY' || exit 2
import base64, io, os, random, sys, zipfile
tmp, count = sys.argv[1], int(sys.argv[2])
words = ["invoice", "quarter", "figures", "meeting", "budget", "report", "scan", "relay",
         "attached", "please", "review", "the", "and", "of", "to", "for"]
B = "=_scan_cost_b0undary"
os.makedirs(os.path.join(tmp, "zip")); os.makedirs(os.path.join(tmp, "10k"))
for k in range(count):
    rnd = random.Random(k)
    members = []
    for i in range(3):
        txt = " ".join(rnd.choice(words) for _ in range(30000)).encode()
        members.append(("docs/part%d.txt" % i, txt[:150000]))
    for i in range(3):
        members.append(("data/blob%d.bin" % i, rnd.randbytes(52000)))
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in members:
            z.writestr(n, d)
    att = base64.encodebytes(b.getvalue()).decode().replace("\n", "\r\n").rstrip()
    m = ("From: Bench <bench@example.com>\r\nTo: Sink <sink@example.org>\r\n"
         "Subject: scan cost %d\r\nMIME-Version: 1.0\r\n"
         "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n"
         "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nHello,\r\nthe figures.\r\n"
         "--%s\r\nContent-Type: application/zip; name=\"figures.zip\"\r\n"
         "Content-Transfer-Encoding: base64\r\n\r\n%s\r\n--%s--\r\n" % (k, B, B, B, att, B))
    open(os.path.join(tmp, "zip", "%05d.eml" % k), "w").write(m)
    body = "".join(" ".join(rnd.choice(words) for _ in range(12)) + "\r\n"
                   for _ in range(140))[:10240]
    open(os.path.join(tmp, "10k", "%05d.eml" % k), "w").write(
        "From: a@example.com\r\nTo: b@example.org\r\nSubject: cost %d\r\n\r\n%s" % (k, body))
PY
cat >"$tmp/scanrelay.conf" <<EOC
virus {
    database_directory = "$sigs"
}
EOC

rc=0
for mix in 10k zip; do
    out=$("$build/scan/scan-cost" "$tmp/scanrelay.conf" 2 "$tmp/$mix"/*.eml) || exit 2
    echo "$out" | sed "s/^/  $mix /"
    grep -q " 0 flagged" <<<"$(echo "$out" | head -1)" || rc=1
    first=$(echo "$out" | sed -n '1s/.*: \([0-9.]*\) ms.*/\1/p')
    again=$(echo "$out" | sed -n '2s/.*: \([0-9.]*\) ms.*/\1/p')
    python3 -c "print('  %s: repeated / first seen = %.2f' % ('$mix', $again / $first))"
done
exit $rc
