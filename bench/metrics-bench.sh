#!/bin/bash
# metrics-bench.sh - does serving Prometheus scrapes slow the relay down?
# The relay rate of smtp-source -> scanrelayd -> smtp-sink with and without
# 50 GET /metrics per second, in one run (issue 13: less than 2 % apart).
#
# usage: bench/metrics-bench.sh
# Environment (all optional):
#   BENCH_MESSAGES  messages per measurement (default 5000)
#   BENCH_SESSIONS  parallel SMTP sessions of smtp-source (default 20)
#   BENCH_SIZE      payload bytes per message (default 10240)
#   BENCH_ROUNDS    rounds; each round measures without and with scrapes,
#                   taking turns; the medians are compared (default 5)
#   BENCH_SCRAPES   scrapes per second while scraping (default 50)
#   SCANRELAY_BUILD build folder, relative to the source tree or absolute
#                   (default "build": a release build is what to measure)
#
# What it does: one smtp-sink (counting only), one scanrelayd with
# metrics_listen on a free loopback port (scan { enabled = no }: the relay
# path, where the event loop that also answers /metrics is the bottleneck).
# Each round sends BENCH_MESSAGES twice: once quietly, once while a scraper
# (python3)
# GETs /metrics BENCH_SCRAPES times a second on a fixed schedule. It prints
# every rate, both medians, the change in percent and the scrapes served
# (each one checked to be a 200 with the message counter in it). On a busy
# machine the rates swing more than the 2 % to be shown, so it also
# measures the daemon's own CPU time per scrape (1000 scrapes back to back,
# utime + stime from /proc) and the share of the loop 50 a second take.
# The scraper is bench/metrics-scraper.py (one kept-alive connection).
# Exit status: 0 ok, 1 a message lost or a scrape failed, 2 a tool missing.
set -u

src=$(cd "$(dirname "$0")/.." && pwd)
build=${SCANRELAY_BUILD:-build}
case $build in /*) ;; *) build=$src/$build ;; esac
daemon=$build/proxy/scanrelayd
N=${BENCH_MESSAGES:-5000}
S=${BENCH_SESSIONS:-20}
L=${BENCH_SIZE:-10240}
ROUNDS=${BENCH_ROUNDS:-5}
RATE=${BENCH_SCRAPES:-50}

die() { echo "metrics-bench: $*" >&2; exit 2; }
PATH=$PATH:/usr/sbin:/sbin
for t in smtp-source smtp-sink python3; do
    command -v $t >/dev/null || die "$t not found (smtp-source and smtp-sink are in the postfix package)"
done
[ -x "$daemon" ] || die "no scanrelayd at $daemon (build it, or set SCANRELAY_BUILD)"
if nm "$daemon" 2>/dev/null | grep -q '__asan_init'; then
    echo "metrics-bench: WARNING: $daemon is an AddressSanitizer build; use a release build" >&2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/metrics-bench.XXXXXX") || exit 2
sink_pid= daemon_pid= scraper_pid=
# shellcheck disable=SC2317 # called through the trap
cleanup() {
    for p in $scraper_pid $daemon_pid $sink_pid; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

read -r sink_port relay_port metrics_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
')
wait_port() { # port pid
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

sink_user=()
[ "$(id -u)" = 0 ] && sink_user=(-u nobody)
smtp-sink "${sink_user[@]}" -c "127.0.0.1:$sink_port" 1024 >"$tmp/sink.out" 2>"$tmp/sink.err" &
sink_pid=$!
wait_port "$sink_port" "$sink_pid" || die "smtp-sink did not start"

mkdir -p "$tmp/state" "$tmp/queue"
cat >"$tmp/scanrelay.conf" <<EOF
listen = "127.0.0.1:$relay_port"
relay = "127.0.0.1:$sink_port"
state_directory = "$tmp/state"
queue_directory = "$tmp/queue"
control_socket = "$tmp/control.sock"
metrics_listen = "127.0.0.1:$metrics_port"
scan {
    enabled = no
}
EOF
"$daemon" -f -c "$tmp/scanrelay.conf" >"$tmp/scanrelayd.log" 2>&1 &
daemon_pid=$!
wait_port "$relay_port" "$daemon_pid" || { tail -20 "$tmp/scanrelayd.log" >&2; die "scanrelayd did not start"; }

scraper=$src/bench/metrics-scraper.py

sink_count() { tr '\r' '\n' <"$tmp/sink.out" | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2; }
sink_settle() {
    local c
    for _ in $(seq 1 200); do
        c=$(sink_count); c=${c:-0}
        [ "$c" -ge "$1" ] && break
        sleep 0.05
    done
    echo "${c:-0}"
}

fail=0 scrapes_ok=0 scrapes_bad=0
declare -A rates
run() { # name scrape(0/1) messages
    local name=$1 scrape=$2 n=$3 before after t0 t1 r sdur
    before=$(sink_count); before=${before:-0}
    if [ "$scrape" = 1 ]; then
        python3 "$scraper" "$metrics_port" "$RATE" >"$tmp/scraper.out" &
        scraper_pid=$!
    fi
    t0=$(date +%s.%N)
    smtp-source -s "$S" -l "$L" -m "$n" -f bench@example.com -t sink@example.org \
        "127.0.0.1:$relay_port" >"$tmp/source.out" 2>&1 || { echo "metrics-bench: smtp-source failed" >&2; fail=1; }
    t1=$(date +%s.%N)
    if [ "$scrape" = 1 ]; then
        kill "$scraper_pid"; wait "$scraper_pid"; scraper_pid=
        read -r o b <"$tmp/scraper.out"
        scrapes_ok=$((scrapes_ok + o)); scrapes_bad=$((scrapes_bad + b))
        sdur=$(awk -v a="$t0" -v b="$t1" -v o="$o" 'BEGIN { printf "%.1f", o / (b - a) }')
    fi
    after=$(sink_settle $((before + n)))
    [ $((after - before)) -eq "$n" ] || { echo "metrics-bench: $name: sent $n, sink got $((after - before))" >&2; fail=1; }
    [ "$name" = warm-up ] && return
    r=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }')
    rates[$name]="${rates[$name]:-} $r"
    printf '%-28s %9s msg/s%s\n' "$name" "$r" "${sdur:+   ($sdur scrapes/s served)}"
}

echo "metrics-bench: $N messages of $L bytes, $S sessions, $RATE scrapes/s; $(nproc) CPUs," \
    "load average $(cut -d' ' -f1-3 /proc/loadavg)"
run warm-up 0 $((N / 10 + 1))
for i in $(seq 1 "$ROUNDS"); do
    if [ $((i % 2)) = 1 ]; then run "without scrapes" 0 "$N"; run "with scrapes" 1 "$N"
    else run "with scrapes" 1 "$N"; run "without scrapes" 0 "$N"; fi
done
median() {
    # shellcheck disable=SC2086
    printf '%s\n' ${rates[$1]} | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
a=$(median "without scrapes")
b=$(median "with scrapes")
echo "median without scrapes: $a msg/s"
echo "median with $RATE scrapes/s: $b msg/s"
echo "change: $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%+.2f %%", (b - a) / a * 100 }')"
echo "scrapes: $scrapes_ok served, $scrapes_bad failed"

# The daemon's own cost of a scrape, independent of the machine's load: its
# CPU time (utime + stime from /proc) across 1000 back-to-back scrapes.
cpu() { awk '{ print $14 + $15 }' "/proc/$daemon_pid/stat"; }
c0=$(cpu)
python3 "$scraper" "$metrics_port" n=1000 >"$tmp/scraper.out"
c1=$(cpu)
read -r o b <"$tmp/scraper.out"
[ "$b" -eq 0 ] || fail=1
bytes=$(python3 -c "import urllib.request; print(len(urllib.request.urlopen('http://127.0.0.1:$metrics_port/metrics').read()))")
awk -v c=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v n="$o" -v r="$RATE" -v bytes="$bytes" \
    'BEGIN { us = c / hz / n * 1e6; printf "daemon CPU per scrape: %.0f us (page of %d bytes, %d scrapes); at %d scrapes/s: %.2f %% of the event loop\n", us, bytes, n, r, us * r / 1e4 }'

[ "$scrapes_bad" -eq 0 ] || fail=1
exit $fail
