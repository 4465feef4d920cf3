#!/bin/bash
# msglog-bench.sh - a message log of 1,000,000 rows, then timed queries:
# through the library (msglog-bench, median of 5 runs) and end to end
# through the scanrelay command (process start, read-only open, output).
#
# usage: bench/msglog-bench.sh
# Environment (all optional):
#   BENCH_ROWS       rows to log (default 1000000)
#   BENCH_DIR        state directory to build the log in (default a new
#                    folder under /dev/shm when present, else /tmp); an
#                    existing messages.db there is reused when BENCH_ROWS=0
#   SCANRELAY_BUILD  build folder, relative to the source tree or absolute
#                    (default "build"; measure a Release build)
#   BENCH_KEEP       1: keep the folder afterwards (default 0)
#
# The rows go through msglog_append and the writer thread (batched
# transactions), the daemon's own path, so the append rate printed first is
# the writer's sustained rate. Rows: 30 days ending now, skewed senders
# (50,000 addresses), 20,000 recipients, 1% Japanese subjects, 1% viruses,
# 3% spam. Bars (issue 5): a sender query under 100 ms, the other queries
# well under a second. Exit status: 0 bars met, 1 a bar missed, 2 setup error.
set -u

src=$(cd "$(dirname "$0")/.." && pwd)
build=${SCANRELAY_BUILD:-build}
case $build in /*) ;; *) build=$src/$build ;; esac
ROWS=${BENCH_ROWS:-1000000}
if [ -z "${BENCH_DIR:-}" ]; then
    base=/tmp
    [ -w /dev/shm ] && base=/dev/shm
    BENCH_DIR=$(mktemp -d "$base/msglog-bench.XXXXXX") || exit 2
fi
mkdir -p "$BENCH_DIR" || exit 2
cleanup() { [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$BENCH_DIR"; }
trap cleanup EXIT

cmake --build "$build" --target msglog-bench scanrelay >/dev/null || exit 2
bench=$build/quarantine/msglog-bench
cli=$build/cli/scanrelay
conf=$BENCH_DIR/scanrelay.conf
echo "state_directory = \"$BENCH_DIR\"" >"$conf"

echo "== library ($ROWS rows appended, state directory $BENCH_DIR)"
out=$("$bench" log "$BENCH_DIR" "$ROWS" 2>/dev/null) || exit 2
echo "$out"

echo "== scanrelay command (wall time of the whole process, median of 5)"
fail=0
median() { sort -n | sed -n 3p; }
run() { # name bar_ms args...
    local name=$1 bar=$2
    shift 2
    local t
    t=$(for i in 1 2 3 4 5; do
        a=$(date +%s%N)
        "$cli" -c "$conf" "$@" >/dev/null 2>&1
        b=$(date +%s%N)
        echo $(((b - a) / 1000000))
    done | median)
    local rows
    rows=$("$cli" -c "$conf" -j "$@" 2>/dev/null | wc -l)
    printf '%-52s %6s ms  (%s lines, bar %s ms)\n' "$name" "$t" "$rows" "$bar"
    [ "$t" -le "$bar" ] || fail=1
}
run "scanrelay log --from <sender>" 100 log --from user5000@sender53.example.com --limit 0
run "scanrelay log --from <heavy sender> (100 newest)" 100 log --from user3@sender3.example.com
run "scanrelay log --to <recipient>" 500 log --to rcpt1234@example.org --limit 0
run "scanrelay log --id QID" 500 log --id 0600000007A120
run "scanrelay log --subject 'invoice payment 12*'" 500 log --subject 'invoice payment 12*' --limit 0
run "scanrelay log --subject '日本語*'" 500 log --subject '日本語*'
run "scanrelay log --subject '*no such subject*'" 900 log --subject '*no such subject*'
run "scanrelay log --since 1h" 500 log --since 1h --limit 0
run "scanrelay stats --days 7 --by hour" 500 stats --days 7 --by hour
run "scanrelay stats --days 30" 500 stats --days 30

# The library's sender query (in-process) against the 100 ms bar, too.
lib_ms=$(echo "$out" | awk '/^sender, all rows/ {print $4}')
if [ -n "$lib_ms" ] && awk "BEGIN {exit !($lib_ms > 100)}"; then fail=1; fi
[ $fail = 0 ] && echo "bars met" || echo "BAR MISSED"
exit $fail
