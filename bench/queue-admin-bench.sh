#!/bin/bash
# queue-admin-bench.sh - do `scanrelay queue hold ALL` and `release ALL` on a
# big deferred queue stall the sessions that relay at the same time?
#
# usage: bench/queue-admin-bench.sh
# Environment (all optional):
#   BENCH_QUEUED     messages in the deferred queue (default 100000)
#   BENCH_QSIZE      their payload bytes (default 2048)
#   BENCH_SESSIONS   parallel relaying sessions (default 20)
#   BENCH_SIZE       payload bytes of the relayed messages, +-25% (default 10240)
#   BENCH_WARMUP     seconds of load before the baseline (default 3)
#   BENCH_BASELINE   seconds of the baseline window (default 20)
#   BENCH_AFTER      seconds of load after release ALL (default 5)
#   BENCH_MAX_PARALLEL  queue { max_parallel } (default: the daemon's, 10);
#                    1 shows how much of the release window is the delivery
#                    of the released mail rather than the verb
#   SCANRELAY_BUILD  build folder, relative to the source tree or absolute
#                    (default build; measure a build without sanitizers)
#   SCANRELAY_FILL   the queue-fill program (default: SCANRELAY_BUILD's; set
#                    it to measure an older daemon whose tree has none)
#
# What it does, on loopback, with scan { enabled = no }:
#  1. fills a queue folder (under a fresh temp folder, removed at the end)
#     with BENCH_QUEUED unique messages through the queue file API
#     (queue-fill: queue_file_create, as custody writes them), each due an
#     hour from now, so the daemon holds them without trying them;
#  2. starts smtp-sink (counting, no dump files) and scanrelayd on that
#     queue (start-up time is reported);
#  3. queue-admin-load.py: BENCH_SESSIONS SMTP sessions relay unique
#     messages (counter and nonce in Message-ID, Subject and body, varied
#     sizes) through scanrelayd; after the warm-up it measures the relay
#     rate of the baseline window, then runs `scanrelay queue hold ALL`
#     followed by `scanrelay queue release ALL` and measures the relay rate
#     from the start of the hold to the end of the release; it prints both
#     rates, their ratio (issue 9's bar: >= 0.8) and the time of each verb.
#     After release ALL the queued messages are due and go to the sink
#     (max_parallel at a time) while the load goes on; the load stops
#     BENCH_AFTER seconds later.
#  4. checks: the verbs answered OK with one line per message; every
#     relayed message got 250; after the daemon stops, every queued
#     message is either at the sink or still in deferred/ (none lost).
#
# Exit status: 0 measured and nothing lost; 1 a step failed or a message
# was lost; 2 a tool is missing. The ratio is printed, not enforced.
set -u

src=$(cd "$(dirname "$0")/.." && pwd)
build=${SCANRELAY_BUILD:-build}
case $build in /*) ;; *) build=$src/$build ;; esac
daemon=$build/proxy/scanrelayd
cli=$build/cli/scanrelay
fill=${SCANRELAY_FILL:-$build/queue/queue-fill}
Q=${BENCH_QUEUED:-100000}
QL=${BENCH_QSIZE:-2048}
S=${BENCH_SESSIONS:-20}
L=${BENCH_SIZE:-10240}
W=${BENCH_WARMUP:-3}
B=${BENCH_BASELINE:-20}
MP=${BENCH_MAX_PARALLEL:-}
A=${BENCH_AFTER:-5}

die() { echo "queue-admin-bench: $*" >&2; exit 2; }
PATH=$PATH:/usr/sbin:/sbin
for t in smtp-sink python3 ss; do
    command -v $t >/dev/null || die "$t not found"
done
[ -x "$daemon" ] || die "no scanrelayd at $daemon (build it, or set SCANRELAY_BUILD)"
[ -x "$cli" ] || die "no scanrelay at $cli (build it, or set SCANRELAY_BUILD)"
if [ -z "${SCANRELAY_FILL:-}" ] && { [ ! -x "$fill" ] || [ "$src/bench/queue-fill.c" -nt "$fill" ]; }; then
    cmake --build "$build" --target queue-fill >/dev/null || die "cannot build queue-fill"
fi
if nm "$daemon" 2>/dev/null | grep -q '__asan_init'; then
    echo "queue-admin-bench: WARNING: AddressSanitizer build: figures are not representative" >&2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/queue-admin-bench.XXXXXX") || exit 2
chmod 755 "$tmp"
sink_pid=
daemon_pid=
# shellcheck disable=SC2317 # called through the trap
cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null
    [ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null
    wait 2>/dev/null
    if [ -n "${KEEP_TMP:-}" ]; then echo "queue-admin-bench: kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

read -r sink_port relay_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
')

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
listening() { [ -n "$(ss -ltnH "sport = :$1" 2>/dev/null)" ]; }
wait_listen() { # port pid seconds
    local i
    for i in $(seq 1 $(($3 * 100))); do
        listening "$1" && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.01
    done
    return 1
}

mkdir -p "$tmp/state" "$tmp/queue"
echo "queue-admin-bench: filling the queue with $Q messages of ${QL} bytes..."
"$fill" "$tmp/queue" "$Q" "$QL" 3600 || { echo "queue-admin-bench: FAIL: queue-fill" >&2; exit 1; }

sink_user=()
[ "$(id -u)" = 0 ] && sink_user=(-u nobody)
smtp-sink "${sink_user[@]}" -c "127.0.0.1:$sink_port" 1024 >"$tmp/sink.out" 2>"$tmp/sink.err" &
sink_pid=$!
wait_listen "$sink_port" "$sink_pid" 10 || { cat "$tmp/sink.err" >&2; echo "smtp-sink did not start" >&2; exit 1; }
sink_count() {
    local c
    c=$(tr '\r' '\n' <"$tmp/sink.out" | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2)
    echo "${c:-0}"
}

cat >"$tmp/scanrelay.conf" <<EOF
# queue-admin-bench: relay path only (no scanning); queued messages not due.
listen = "127.0.0.1:$relay_port"
relay = "127.0.0.1:$sink_port"
state_directory = "$tmp/state"
queue_directory = "$tmp/queue"
control_socket = "$tmp/control.sock"
relay_connect_timeout = 5s
scan {
    enabled = no
}
queue {
    queue_run_delay = 1h
    minimal_backoff_time = 1h
    maximal_backoff_time = 2h
    probe_interval = 1h
    min_free_space = 10M
${MP:+    max_parallel = $MP}
}
EOF
t0=$(now)
"$daemon" -f -c "$tmp/scanrelay.conf" >>"$tmp/scanrelayd.log" 2>&1 &
daemon_pid=$!
if ! wait_listen "$relay_port" "$daemon_pid" 300; then
    echo "queue-admin-bench: scanrelayd did not start; its log:" >&2
    tail -20 "$tmp/scanrelayd.log" >&2
    exit 1
fi
echo "queue-admin-bench: scanrelayd listening after $(elapsed "$t0" "$(now)") s on a queue of $Q"

fail=0
python3 "$src/bench/queue-admin-load.py" "$relay_port" "$S" "$L" "$cli" "$tmp/scanrelay.conf" \
    "$W" "$B" "$A" | tee "$tmp/load.out" || fail=1
grep -q "hold_summary=$Q messages held$" "$tmp/load.out" || { echo "queue-admin-bench: FAIL: hold ALL did not hold $Q messages" >&2; fail=1; }
grep -q "release_summary=$Q messages released$" "$tmp/load.out" || { echo "queue-admin-bench: FAIL: release ALL did not release $Q messages" >&2; fail=1; }

# Stop, then account for every queued message: at the sink or still queued.
kill -TERM "$daemon_pid"
for _ in $(seq 1 600); do
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$daemon_pid" 2>/dev/null && { echo "queue-admin-bench: WARNING: scanrelayd still running after 60 s" >&2; kill -KILL "$daemon_pid"; }
wait "$daemon_pid" 2>/dev/null
daemon_pid=
sleep 0.5 # the sink's counter line is written when a session ends
kill "$sink_pid" 2>/dev/null
wait "$sink_pid" 2>/dev/null
sink_pid=
sent=$(sed -n 's/^sent=\([0-9]*\).*/\1/p' "$tmp/load.out")
left=$(find "$tmp/queue/deferred" "$tmp/queue/hold" -type f | wc -l)
got=$(sink_count)
echo "queue-admin-bench: sink got $got (relayed $sent + queued delivered), still queued $left"
if [ "$got" -lt $((sent + Q - left)) ]; then
    echo "queue-admin-bench: FAIL: lost messages: sink $got < relayed $sent + queued $Q - left $left" >&2
    fail=1
fi
if [ "$fail" -ne 0 ]; then
    tail -20 "$tmp/scanrelayd.log" >&2
    exit 1
fi
exit 0
