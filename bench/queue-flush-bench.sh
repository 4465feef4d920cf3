#!/bin/bash
# queue-flush-bench.sh - how fast scanrelayd empties its deferred queue when
# the downstream comes back, compared with its live relay rate; and what a
# big queue costs at start-up (time until it listens, resident memory).
#
# usage: bench/queue-flush-bench.sh
# Environment (all optional):
#   BENCH_MESSAGES          messages for the live and the flush measurement
#                           (default 10000)
#   BENCH_SESSIONS          parallel smtp-source sessions (default 20)
#   BENCH_SIZE              payload bytes per message (default 10240)
#   BENCH_STARTUP_MESSAGES  queued messages for the start-up measurement
#                           (default 100000; 0 skips it)
#   BENCH_STARTUP_SIZE      their payload bytes (default 1024: start-up reads
#                           no message content, so the size does not matter)
#   BENCH_MAX_PARALLEL      queue { max_parallel } (default: the daemon's default)
#   BENCH_TRACE             1: print the sink's count every 0.5 s of the flush
#   SCANRELAY_BUILD         build folder, relative to the source tree or
#                           absolute (default build-rel; measure a Release or
#                           RelWithDebInfo build without sanitizers)
#
# What it does, in one run, on loopback, with scan { enabled = no }:
#  1. live: smtp-source -s S -m N -l SIZE -> scanrelayd -> smtp-sink (counting
#     with -c, no dump files), timed around smtp-source (scanrelayd answers
#     250 only after the sink did). A warm-up of 200 messages runs first.
#  2. custody: the sink is stopped; the same smtp-source load is sent, every
#     message must get 250 (smtp-source aborts otherwise) and be in deferred/.
#     The time of that is reported too (each message is fsync'd to disk).
#  3. flush: a fresh smtp-sink is started, `scanrelay flush` is run, and the
#     time from the flush until the sink counted N messages and deferred/ is
#     empty gives the flush rate. The issue-4 bar: flush >= 0.5 x live.
#     Automatic retries are set an hour away, so only the flush delivers.
#  4. start-up: the sink is stopped again, the queue is filled to
#     BENCH_STARTUP_MESSAGES by smtp-source (custody), scanrelayd is stopped
#     and started again; reported: the time from exec to listening, and
#     VmRSS/VmHWM with the full queue against a daemon started on an empty
#     queue (the difference per message is the index cost).
#
# Exit status: 0 measured and nothing lost; 1 a message was lost or a step
# failed; 2 a tool is missing. The ratio is printed, not enforced.
set -u

src=$(cd "$(dirname "$0")/.." && pwd)
build=${SCANRELAY_BUILD:-build-rel}
case $build in /*) ;; *) build=$src/$build ;; esac
daemon=$build/proxy/scanrelayd
cli=$build/cli/scanrelay
N=${BENCH_MESSAGES:-10000}
S=${BENCH_SESSIONS:-20}
L=${BENCH_SIZE:-10240}
SN=${BENCH_STARTUP_MESSAGES:-100000}
SL=${BENCH_STARTUP_SIZE:-1024}
MP=${BENCH_MAX_PARALLEL:-}

die() { echo "queue-flush-bench: $*" >&2; exit 2; }
PATH=$PATH:/usr/sbin:/sbin
for t in smtp-source smtp-sink python3 ss; do
    command -v $t >/dev/null || die "$t not found"
done
[ -x "$daemon" ] || die "no scanrelayd at $daemon (build it, or set SCANRELAY_BUILD)"
[ -x "$cli" ] || die "no scanrelay at $cli (build it, or set SCANRELAY_BUILD)"
case "$N$S$L$SN$SL$MP" in *[!0-9]*) die "BENCH_* values must be numbers" ;; esac

btype=unknown
cache=$build/CMakeCache.txt
if [ -r "$cache" ]; then
    btype=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$cache")
    grep -q '^SCANRELAY_SANITIZE:BOOL=ON' "$cache" && btype="$btype+sanitizers"
fi
if nm "$daemon" 2>/dev/null | grep -q '__asan_init'; then
    echo "queue-flush-bench: WARNING: AddressSanitizer build: figures are not representative" >&2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/queue-flush-bench.XXXXXX") || exit 2
chmod 755 "$tmp"
sink_pid=
daemon_pid=
# shellcheck disable=SC2317 # called through the trap
cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null
    [ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null
    wait 2>/dev/null
    if [ -n "${KEEP_TMP:-}" ]; then echo "queue-flush-bench: kept $tmp" >&2; else rm -rf "$tmp"; fi
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
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.1f", n / (b - a) }'; }

# Listening? (no probe connection: it would show up in the daemon's log)
listening() { [ -n "$(ss -ltnH "sport = :$1" 2>/dev/null)" ]; }
wait_listen() { # port pid seconds
    local i
    for i in $(seq 1 $(($3 * 1000))); do
        listening "$1" && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.001
    done
    return 1
}

sink_user=()
[ "$(id -u)" = 0 ] && sink_user=(-u nobody)
sink_n=0
start_sink() {
    sink_n=$((sink_n + 1))
    smtp-sink "${sink_user[@]}" -c "127.0.0.1:$sink_port" 1024 >"$tmp/sink$sink_n.out" 2>"$tmp/sink$sink_n.err" &
    sink_pid=$!
    wait_listen "$sink_port" "$sink_pid" 10 || { cat "$tmp/sink$sink_n.err" >&2; echo "smtp-sink did not start" >&2; exit 1; }
}
stop_sink() {
    kill "$sink_pid" 2>/dev/null
    wait "$sink_pid" 2>/dev/null
    sink_pid=
}
sink_count() {
    local c
    c=$(tr '\r' '\n' <"$tmp/sink$sink_n.out" | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2)
    echo "${c:-0}"
}

mkdir -p "$tmp/state" "$tmp/queue"
cat >"$tmp/scanrelay.conf" <<EOF
# queue-flush-bench: relay path only (no scanning); retries only on flush.
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
start_daemon() {
    local t0 t1
    t0=$(now)
    "$daemon" -f -c "$tmp/scanrelay.conf" >>"$tmp/scanrelayd.log" 2>&1 &
    daemon_pid=$!
    if ! wait_listen "$relay_port" "$daemon_pid" 120; then
        echo "queue-flush-bench: scanrelayd did not start; its log:" >&2
        tail -20 "$tmp/scanrelayd.log" >&2
        exit 1
    fi
    t1=$(now)
    startup_time=$(elapsed "$t0" "$t1")
}
stop_daemon() {
    kill -TERM "$daemon_pid"
    for _ in $(seq 1 300); do
        kill -0 "$daemon_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$daemon_pid" 2>/dev/null; then
        echo "queue-flush-bench: WARNING: scanrelayd still running 30 s after SIGTERM" >&2
        kill -KILL "$daemon_pid"
    fi
    wait "$daemon_pid" 2>/dev/null
    daemon_pid=
}
mem() { # VmRSS VmHWM in kB
    awk '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 } END { print r, h }' "/proc/$daemon_pid/status"
}
cpu_ticks() { # utime + stime of the daemon, in clock ticks
    awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$daemon_pid/stat"
}
us_per_msg() { # ticks_before ticks_after messages
    awk -v a="$1" -v b="$2" -v n="$3" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.0f", (b - a) / hz * 1e6 / n }'
}
deferred_count() { find "$tmp/queue/deferred" -type f | wc -l; }

# source PORT N SIZE -> runs smtp-source, fails the bench on an error
source_run() {
    smtp-source -s "$S" -l "$3" -m "$2" -f bench@example.com -t sink@example.org \
        "127.0.0.1:$1" >"$tmp/source.out" 2>&1 || {
        echo "queue-flush-bench: FAIL: smtp-source exit $? sending $2 to port $1:" >&2
        sed 's/^/    /' "$tmp/source.out" | head -20 >&2
        tail -5 "$tmp/scanrelayd.log" >&2
        exit 1
    }
}

echo "queue-flush-bench: $N messages of $L bytes, $S sessions, loopback; build $btype;" \
    "$(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
fail=0

# Baseline memory: an empty queue.
start_daemon
read -r rss_empty hwm_empty < <(mem)
startup_empty=$startup_time

# 1. live relay rate
start_sink
source_run "$relay_port" 200 "$L"
before=$(sink_count)
c0=$(cpu_ticks)
t0=$(now)
source_run "$relay_port" "$N" "$L"
t1=$(now)
c1=$(cpu_ticks)
cpu_live=$(us_per_msg "$c0" "$c1" "$N")
got=$(( $(sink_count) - before ))
live=$(rate "$N" "$t0" "$t1")
[ "$got" -eq "$N" ] || { echo "queue-flush-bench: FAIL: live: sent $N, sink counted $got" >&2; fail=1; }
printf '%-40s %9s msg/s  (%s s, %d/%d at the sink)\n' "live relay" "$live" "$(elapsed "$t0" "$t1")" "$got" "$N"

# 2. custody while the downstream is away
stop_sink
t0=$(now)
source_run "$relay_port" "$N" "$L"
t1=$(now)
q=$(deferred_count)
printf '%-40s %9s msg/s  (%s s, %d files in deferred/)\n' "custody (downstream away)" \
    "$(rate "$N" "$t0" "$t1")" "$(elapsed "$t0" "$t1")" "$q"
[ "$q" -eq "$N" ] || { echo "queue-flush-bench: FAIL: $q queue files for $N messages" >&2; fail=1; }

# 3. flush
start_sink
c0=$(cpu_ticks)
t0=$(now)
"$cli" -c "$tmp/scanrelay.conf" flush >"$tmp/flush.out" 2>&1 || {
    echo "queue-flush-bench: FAIL: scanrelay flush:" >&2; cat "$tmp/flush.out" >&2; exit 1; }
deadline=$(( $(date +%s) + 600 ))
trace=
last_trace=$t0
while :; do
    c=$(sink_count)
    if [ -n "${BENCH_TRACE:-}" ]; then
        tn=$(now)
        if awk -v a="$last_trace" -v b="$tn" 'BEGIN { exit !(b - a >= 0.5) }'; then
            trace="$trace $(elapsed "$t0" "$tn")s:$c"
            last_trace=$tn
        fi
    fi
    if [ "$c" -ge "$q" ] && [ "$(deferred_count)" -eq 0 ]; then break; fi
    if [ "$(date +%s)" -gt "$deadline" ]; then
        echo "queue-flush-bench: FAIL: flush: $c of $q at the sink after 600 s" >&2
        fail=1
        break
    fi
    sleep 0.02
done
t1=$(now)
c1=$(cpu_ticks)
cpu_flush=$(us_per_msg "$c0" "$c1" "$q")
flush=$(rate "$q" "$t0" "$t1")
printf '%-40s %9s msg/s  (%s s, %d/%d at the sink)\n' "flush of the queue" "$flush" \
    "$(elapsed "$t0" "$t1")" "$(sink_count)" "$q"
[ -n "$trace" ] && echo "  flush progress (time since flush: messages at the sink):$trace"
ratio=$(awk -v a="$flush" -v b="$live" 'BEGIN { printf "%.2f", a / b }')
verdict=$(awk -v r="$ratio" 'BEGIN { print (r >= 0.5) ? "meets" : "BELOW" }')
echo "ratio flush/live: $ratio ($verdict the issue-4 bar of 0.5)"
echo "scanrelayd CPU time per message (less sensitive to a busy machine):" \
    "live $cpu_live us, flush $cpu_flush us"

# 4. start-up with a big queue
if [ "$SN" -gt 0 ]; then
    stop_sink
    echo "filling the queue to $SN messages of $SL bytes (downstream away) ..."
    t0=$(now)
    source_run "$relay_port" "$SN" "$SL"
    t1=$(now)
    q=$(deferred_count)
    printf '%-40s %9s msg/s  (%s s, %d files in deferred/)\n' "custody, small messages" \
        "$(rate "$SN" "$t0" "$t1")" "$(elapsed "$t0" "$t1")" "$q"
    [ "$q" -eq "$SN" ] || { echo "queue-flush-bench: FAIL: $q queue files for $SN messages" >&2; fail=1; }
    stop_daemon
    sync
    start_daemon
    sleep 1  # let the start-up scheduling settle before reading memory
    read -r rss_full hwm_full < <(mem)
    echo "start-up with $q queued messages: listening after $startup_time s" \
        "(empty queue: $startup_empty s)"
    echo "scanrelayd memory: empty queue VmRSS $rss_empty kB (VmHWM $hwm_empty kB);" \
        "with $q queued VmRSS $rss_full kB (VmHWM $hwm_full kB)"
    awk -v a="$rss_empty" -v b="$rss_full" -v h="$hwm_full" -v n="$q" 'BEGIN {
        printf "index cost: %.0f bytes per queued message (VmRSS), %.0f (VmHWM)\n",
            (b - a) * 1024 / n, (h - a) * 1024 / n }'
    grep -m1 'message(s) in the deferred queue' "$tmp/scanrelayd.log" | sed 's/^/  log: /'
    t0=$(now)
    trailer=$("$cli" -c "$tmp/scanrelay.conf" queue | tail -1)
    t1=$(now)
    echo "scanrelay queue with $q messages: $(elapsed "$t0" "$t1") s ($trailer)"
fi
stop_daemon
if grep -qiE 'panic|fatal|sanitizer' "$tmp/scanrelayd.log"; then
    echo "queue-flush-bench: scanrelayd log shows trouble:" >&2
    grep -iE 'panic|fatal|sanitizer' "$tmp/scanrelayd.log" | head -5 >&2
    fail=1
fi
[ $fail -eq 0 ] && echo "queue-flush-bench: OK, nothing lost" || echo "queue-flush-bench: FAILED" >&2
exit $fail
