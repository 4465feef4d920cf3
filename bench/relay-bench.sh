#!/bin/bash
# relay-bench.sh - message rate of smtp-source -> smtp-sink, directly and
# through scanrelayd, in one run; and scanrelayd's peak memory.
#
# usage: bench/relay-bench.sh
# Environment (all optional):
#   BENCH_MESSAGES  messages per measurement (default 5000)
#   BENCH_SESSIONS  parallel SMTP sessions of smtp-source (default 20)
#   BENCH_SIZE      payload bytes per message (default 10240)
#   BENCH_REUSE     1: also measure with connection reuse (smtp-source -d),
#                   0: only one connection per message (default 1)
#   BENCH_ROUNDS    rounds of each measurement, direct and via taking turns;
#                   the medians are reported (default 3)
#   BENCH_LOG       1: also measure a second scanrelayd with the SQLite message
#                   log off (log { enabled = no }) and print the cost of the
#                   log as a ratio (default 1)
#   SCANRELAY_BUILD build folder, relative to the source tree or absolute
#                   (default "build"; a Release build is what to measure)
#   SCANRELAYD      the daemon binary (default $SCANRELAY_BUILD/proxy/scanrelayd)
#
# What it does: one smtp-sink (just counting, no dump files) on a free
# loopback port, one scanrelayd (scan { enabled = no }, so this measures the
# relay path: SMTP in, SMTP out, logging, message log) on another, relaying
# to the sink. smtp-source sends the same load first straight to the sink,
# then to scanrelayd; with BENCH_REUSE=1 the pair is repeated with -d.
# Each run is timed with date +%s.%N around smtp-source; each measurement is
# repeated BENCH_ROUNDS times, direct and via taking turns so that a burst of
# load from elsewhere hits both, and the median rate is reported. A message counts as
# delivered when the sink's counter shows it; scanrelayd answers 250 only
# after the sink did, so when smtp-source returns everything must be there.
#
# Exit status: 0 all messages arrived; 1 a message was lost, smtp-source
# failed or scanrelayd misbehaved; 2 a tool is missing.
set -u

src=$(cd "$(dirname "$0")/.." && pwd)
build=${SCANRELAY_BUILD:-build}
case $build in /*) ;; *) build=$src/$build ;; esac
daemon=${SCANRELAYD:-$build/proxy/scanrelayd}
N=${BENCH_MESSAGES:-5000}
S=${BENCH_SESSIONS:-20}
L=${BENCH_SIZE:-10240}
REUSE=${BENCH_REUSE:-1}
ROUNDS=${BENCH_ROUNDS:-3}
LOGCMP=${BENCH_LOG:-1}

die() { echo "relay-bench: $*" >&2; exit 2; }
PATH=$PATH:/usr/sbin:/sbin
for t in smtp-source smtp-sink python3; do
    command -v $t >/dev/null || die "$t not found (smtp-source and smtp-sink are in the postfix package)"
done
[ -x "$daemon" ] || die "no scanrelayd at $daemon (build it, or set SCANRELAY_BUILD / SCANRELAYD)"
case "$N$S$L$ROUNDS" in *[!0-9]*) die "BENCH_MESSAGES, BENCH_SESSIONS, BENCH_SIZE and BENCH_ROUNDS must be numbers" ;; esac
[ "$ROUNDS" -ge 1 ] || ROUNDS=1

# ---------------------------------------------------------------------------
# Is this a build worth measuring?
# ---------------------------------------------------------------------------
btype=unknown
cache=$(dirname "$(dirname "$daemon")")/CMakeCache.txt
if [ -r "$cache" ]; then
    btype=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$cache")
    if grep -q '^SCANRELAY_SANITIZE:BOOL=ON' "$cache"; then
        btype="$btype+sanitizers"
    fi
fi
if readelf -d "$daemon" 2>/dev/null | grep -q 'libasan' ||
    nm "$daemon" 2>/dev/null | grep -q '__asan_init'; then
    echo "relay-bench: WARNING: $daemon is an AddressSanitizer build: rates and" \
        "memory are not representative; use a Release build" >&2
    btype="$btype (ASan)"
elif [ "${btype%%+*}" != Release ]; then
    echo "relay-bench: note: build type '$btype'; a Release build" \
        "(cmake -DCMAKE_BUILD_TYPE=Release) is the one to quote" >&2
fi

# ---------------------------------------------------------------------------
# Set-up: temp folder, free ports, sink, daemon. Everything we start is
# stopped by its PID on exit.
# ---------------------------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/relay-bench.XXXXXX") || exit 2
sink_pid=
daemon_pid=
daemon2_pid=
# shellcheck disable=SC2317 # called through the trap
cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null
    [ -n "$daemon2_pid" ] && kill "$daemon2_pid" 2>/dev/null
    [ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null
    wait 2>/dev/null
    if [ -n "${KEEP_TMP:-}" ]; then echo "relay-bench: kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# Two free loopback ports (bound and released by the kernel's choice).
read -r sink_port relay_port relay2_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
')

wait_port() { # port pid what
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

sink_user=()
[ "$(id -u)" = 0 ] && sink_user=(-u nobody)
# -c: running counters "sess=N quit=N mesg=N", rewritten with \r.
smtp-sink "${sink_user[@]}" -c "127.0.0.1:$sink_port" 1024 >"$tmp/sink.out" 2>"$tmp/sink.err" &
sink_pid=$!
wait_port "$sink_port" "$sink_pid" || { cat "$tmp/sink.err" >&2; die "smtp-sink did not start"; }

mkdir -p "$tmp/state" "$tmp/queue" "$tmp/db"
printf 'Scanrelay.Bench.Marker:0:*:%s\n' \
    "$(printf 'scanrelay-bench-marker' | od -An -tx1 | tr -d ' \n')" >"$tmp/db/bench.ndb"
cat >"$tmp/scanrelay.conf" <<EOF
# relay-bench: relay path only (no scanning); everything else at defaults.
listen = "127.0.0.1:$relay_port"
relay = "127.0.0.1:$sink_port"
state_directory = "$tmp/state"
queue_directory = "$tmp/queue"
control_socket = "$tmp/control.sock"
virus {
    database_directory = "$tmp/db"
}
scan {
    enabled = no
}
EOF
"$daemon" -f -c "$tmp/scanrelay.conf" >"$tmp/scanrelayd.log" 2>&1 &
daemon_pid=$!
if ! wait_port "$relay_port" "$daemon_pid"; then
    echo "relay-bench: scanrelayd did not start; its log:" >&2
    tail -20 "$tmp/scanrelayd.log" >&2
    exit 1
fi

if [ "$LOGCMP" = 1 ]; then
    # The same daemon with the message log off, for the cost of the log.
    mkdir -p "$tmp/state2" "$tmp/queue2"
    sed -e "s|127.0.0.1:$relay_port|127.0.0.1:$relay2_port|" -e "s|$tmp/state\"|$tmp/state2\"|" \
        -e "s|$tmp/queue\"|$tmp/queue2\"|" -e "s|$tmp/control.sock|$tmp/control2.sock|" \
        "$tmp/scanrelay.conf" >"$tmp/scanrelay-nolog.conf"
    printf 'log {\n    enabled = no\n}\n' >>"$tmp/scanrelay-nolog.conf"
    "$daemon" -f -c "$tmp/scanrelay-nolog.conf" >"$tmp/scanrelayd-nolog.log" 2>&1 &
    daemon2_pid=$!
    wait_port "$relay2_port" "$daemon2_pid" || die "the second scanrelayd (log off) did not start"
fi

sink_count() {
    tr '\r' '\n' <"$tmp/sink.out" | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2
}
# Wait (up to 10 s) until the sink's counter reaches $1; print the count.
sink_settle() {
    local c
    for _ in $(seq 1 200); do
        c=$(sink_count); c=${c:-0}
        [ "$c" -ge "$1" ] && break
        sleep 0.05
    done
    echo "${c:-0}"
}

lost=0
declare -A rates
# run NAME PORT MESSAGES [smtp-source options...]
run() {
    local name=$1 port=$2 n=$3 before after got t0 t1 rc r
    shift 3
    before=$(sink_count); before=${before:-0}
    t0=$(date +%s.%N)
    smtp-source "$@" -s "$S" -l "$L" -m "$n" -f bench@example.com -t sink@example.org \
        "127.0.0.1:$port" >"$tmp/source.out" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    after=$(sink_settle $((before + n)))
    got=$((after - before))
    if [ $rc -ne 0 ]; then
        echo "relay-bench: FAIL: $name: smtp-source exit $rc:" >&2
        sed 's/^/    /' "$tmp/source.out" >&2
        lost=1
    fi
    if [ "$got" -ne "$n" ]; then
        echo "relay-bench: FAIL: $name: sent $n, the sink received $got" >&2
        lost=1
    fi
    [ "$name" = warm-up ] && return
    r=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }')
    rates[$name]="${rates[$name]:-} $r"
    printf '%-34s %9s %9.2f %7d/%d\n' "$name" "$r" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$got" "$n"
}

echo "relay-bench: $N messages of $L bytes, $S sessions, loopback;" \
    "scanrelayd build: $btype, scan disabled"
echo "relay-bench: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
warm=$((N / 10 > 200 ? 200 : N / 10 + 1))
run warm-up "$relay_port" "$warm"
printf '%-34s %9s %9s %9s\n' "" "msg/s" "seconds" "delivered"
[ "$LOGCMP" = 1 ] && run warm-up "$relay2_port" "$warm"
for _ in $(seq 1 "$ROUNDS"); do
    run "direct" "$sink_port" "$N"
    run "via scanrelayd" "$relay_port" "$N"
    [ "$LOGCMP" = 1 ] && run "via scanrelayd, message log off" "$relay2_port" "$N"
done
if [ "$REUSE" = 1 ]; then
    for _ in $(seq 1 "$ROUNDS"); do
        run "direct, reused connections (-d)" "$sink_port" "$N" -d
        run "via scanrelayd, reused (-d)" "$relay_port" "$N" -d
    done
fi

median() { # name
    # shellcheck disable=SC2086 # the list is split on purpose
    printf '%s\n' ${rates[$1]:-0} | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
declare -A rate
echo "median of $ROUNDS round(s):"
for name in "direct" "via scanrelayd" "via scanrelayd, message log off" "direct, reused connections (-d)" "via scanrelayd, reused (-d)"; do
    [ -n "${rates[$name]:-}" ] || continue
    rate[$name]=$(median "$name")
    printf '%-34s %9s msg/s\n' "$name" "${rate[$name]}"
done

ratio() { awk -v a="${rate[$1]:-0}" -v b="${rate[$2]:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo "ratio via/direct, one connection per message: $(ratio "via scanrelayd" direct)"
[ "$REUSE" = 1 ] &&
    echo "ratio via/direct, reused connections:         $(ratio "via scanrelayd, reused (-d)" "direct, reused connections (-d)")"
[ "$LOGCMP" = 1 ] &&
    echo "ratio message log on/off (1.00 = free):       $(ratio "via scanrelayd" "via scanrelayd, message log off")"

# Peak memory, read while the daemon still runs.
hwm=$(awk '/^VmHWM:/ { print $2 " " $3 }' "/proc/$daemon_pid/status" 2>/dev/null)
echo "scanrelayd peak RSS (VmHWM): ${hwm:-unknown}"

# The daemon's own account: one "status=sent" line per relayed message.
sent_lines=$(grep -c 'status=sent' "$tmp/scanrelayd.log")
total=$((warm + N * ROUNDS * (REUSE == 1 ? 2 : 1)))
rows=$(sqlite3 "$tmp/state/messages.db" 'select count(*) from msg' 2>/dev/null || echo "?")
echo "message log rows written by scanrelayd: $rows"
echo "scanrelayd log: $sent_lines status=sent lines for $total messages relayed," \
    "$(grep -ciE 'warn|error|fatal|panic' "$tmp/scanrelayd.log") warning/error lines"
queued=$(find "$tmp/queue" -type f | wc -l)
[ "$queued" -eq 0 ] ||
    echo "relay-bench: note: $queued file(s) in scanrelayd's queue folder after the run" >&2

# Clean stop: SIGTERM should end an idle daemon at once (reported, but not
# counted as a failure of the bench).
kill -TERM "$daemon_pid"
for _ in $(seq 1 100); do
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$daemon_pid" 2>/dev/null; then
    echo "relay-bench: WARNING: scanrelayd still running 10 s after SIGTERM" >&2
    kill -KILL "$daemon_pid"
else
    wait "$daemon_pid"
    rc=$?
    [ $rc -eq 0 ] || echo "relay-bench: WARNING: scanrelayd exited $rc after SIGTERM" >&2
fi
daemon_pid=

if [ $lost -ne 0 ]; then
    echo "relay-bench: FAILED; the last lines of scanrelayd's log:" >&2
    tail -15 "$tmp/scanrelayd.log" >&2
    exit 1
fi
echo "relay-bench: OK, nothing lost"
exit 0
