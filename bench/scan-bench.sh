#!/bin/bash
# scan-bench.sh - scanning throughput: scanrelayd with scanning on, the same
# daemon with scanning off, and clamsmtp + clamd, on the same signature set,
# in one run; two mixes (clean 10 KB messages; messages with a 200 KB zip).
#
# usage: bench/scan-bench.sh
# Environment (all optional):
#   BENCH_MESSAGES      10 KB messages per run (default 3000)
#   BENCH_ZIP_MESSAGES  200 KB-zip messages per run (default 600)
#   BENCH_SESSIONS      parallel SMTP sessions (default 20)
#   BENCH_SIZE          payload bytes of the first mix (default 10240)
#   BENCH_CLAM_MESSAGES messages per clamsmtp run, each mix (default: a tenth
#                       of BENCH_MESSAGES, a third of BENCH_ZIP_MESSAGES;
#                       clamsmtp is slow, rates are rates)
#   BENCH_ROUNDS        rounds; the targets take turns in each round and the
#                       median rate of each is reported (default 3)
#   BENCH_SENDER        zip-mix sender: smtp-source (smtp-source -F FILE, the
#                       default) or python (the threaded Python sender below)
#   BENCH_STRICT        1: exit 3 when a bar is missed (default 0: report)
#   SCANRELAY_BUILD     build folder, relative to the source tree or absolute
#                       (default "build"; measure a Release/RelWithDebInfo build)
#   SCANRELAYD          the daemon binary (default $SCANRELAY_BUILD/proxy/scanrelayd)
#   SIGS                signature folder (default t/sigs of the source tree)
#   KEEP_TMP            keep the temporary folder (configs, logs)
#
# Targets, all relaying to one smtp-sink (-c: counts, no dump files):
#   scan-on   scanrelayd, scan { enabled = yes }, virus.database_directory =
#             a copy of SIGS
#   scan-off  scanrelayd, scan { enabled = no }
#   clamsmtp  clamsmtpd (package clamsmtp) -> clamd (package clamav-daemon)
#             with DatabaseDirectory = the same copy of SIGS; both private
#             instances (own configs, a unix socket and a loopback port in
#             the temp folder), started and stopped here by PID
#   direct    smtp-sink itself: the ceiling of the tools (reference only)
# Mix 1: smtp-source -s S -m N -l 10240 (one connection per message).
# Mix 2: one message with a ~200 KB zip attachment (text and binary members),
#        sent N times with S sessions, one connection per message: by
#        smtp-source -F FILE (Postfix 3.7 has it: sends a prepared message file),
#        or with BENCH_SENDER=python by a small threaded Python sender.
# clamsmtp is also measured at 5 sessions (reference only): clamsmtpd
# listens with a backlog of 5, so at 20 sessions the kernel drops SYNs and
# clients wait for the retransmission (1 s, 3 s...); the script prints the
# kernel's ListenOverflows count for every run.
# Before measuring, each scanning target must stop an EICAR message (so the
# comparison is between two scanners that really scan). Every run must
# deliver exactly what it sent (the sink's counter) with no error reply.
#
# Bars (issue 3): scan-on/scan-off >= 0.75, scan-on/clamsmtp >= 5, per mix.
# Exit status: 0 ran and nothing was lost; 1 a message was lost, a sender
# failed or a peer misbehaved; 2 a tool is missing; 3 (BENCH_STRICT=1) a bar
# was missed.
set -u

src=$(cd "$(dirname "$0")/.." && pwd)
build=${SCANRELAY_BUILD:-build}
case $build in /*) ;; *) build=$src/$build ;; esac
daemon=${SCANRELAYD:-$build/proxy/scanrelayd}
sigs=${SIGS:-$src/t/sigs}
N=${BENCH_MESSAGES:-3000}
NZ=${BENCH_ZIP_MESSAGES:-600}
NC=${BENCH_CLAM_MESSAGES:-}
SENDER=${BENCH_SENDER:-smtp-source}
S=${BENCH_SESSIONS:-20}
L=${BENCH_SIZE:-10240}
ROUNDS=${BENCH_ROUNDS:-3}
STRICT=${BENCH_STRICT:-0}

die() { echo "scan-bench: $*" >&2; exit 2; }
PATH=$PATH:/usr/sbin:/sbin
for t in smtp-source smtp-sink python3 clamd clamsmtpd; do
    command -v $t >/dev/null ||
        die "$t not found (postfix: smtp-source/smtp-sink; clamav-daemon: clamd; clamsmtp: clamsmtpd; scripts/install-deps.sh)"
done
[ -x "$daemon" ] || die "no scanrelayd at $daemon (build it, or set SCANRELAY_BUILD / SCANRELAYD)"
[ -d "$sigs" ] || die "no signature folder $sigs"
case "$N$NZ$S$L$ROUNDS$NC" in *[!0-9]*) die "BENCH_* counts must be numbers" ;; esac
[ "$ROUNDS" -ge 1 ] || ROUNDS=1

btype=unknown
cache=$(dirname "$(dirname "$daemon")")/CMakeCache.txt
if [ -r "$cache" ]; then
    btype=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$cache")
    grep -q '^SCANRELAY_SANITIZE:BOOL=ON' "$cache" && btype="$btype+sanitizers"
fi
if readelf -d "$daemon" 2>/dev/null | grep -q libasan; then
    echo "scan-bench: WARNING: $daemon is an AddressSanitizer build: the rates mean" \
        "little; use a Release or RelWithDebInfo build" >&2
    btype="$btype (ASan)"
fi

# ---------------------------------------------------------------------------
# Set-up. Everything started here is stopped by its PID on exit.
# ---------------------------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/scan-bench.XXXXXX") || exit 2
chmod 755 "$tmp"
pids=()
# shellcheck disable=SC2317 # called through the trap
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    if [ -n "${KEEP_TMP:-}" ]; then echo "scan-bench: kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

read -r sink_port on_port off_port clam_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
')

wait_port() { # port pid
    for _ in $(seq 1 400); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# The signature set, one copy shared by scanrelayd and clamd.
mkdir -p "$tmp/db" "$tmp/state-on" "$tmp/queue-on" "$tmp/state-off" "$tmp/queue-off" \
    "$tmp/clamsmtp-tmp" "$tmp/clamd-tmp"
cp "$sigs"/*.ndb "$sigs"/*.hdb "$tmp/db/" 2>/dev/null
ls "$tmp/db"/*.[nh]db >/dev/null 2>&1 || die "no .ndb/.hdb files in $sigs"
chmod 755 "$tmp/db" "$tmp/clamsmtp-tmp" "$tmp/clamd-tmp"
chmod 644 "$tmp/db"/*
nsigs=$(cat "$tmp/db"/*.[nh]db | grep -cv '^\s*$')

sink_user=()
[ "$(id -u)" = 0 ] && sink_user=(-u nobody)
smtp-sink "${sink_user[@]}" -c "127.0.0.1:$sink_port" 1024 >"$tmp/sink.out" 2>"$tmp/sink.err" &
pids+=("$!")
wait_port "$sink_port" $! || { cat "$tmp/sink.err" >&2; die "smtp-sink did not start"; }

start_relay() { # name port enabled
    cat >"$tmp/$1.conf" <<EOF
listen = "127.0.0.1:$2"
relay = "127.0.0.1:$sink_port"
state_directory = "$tmp/state-$1"
queue_directory = "$tmp/queue-$1"
control_socket = "$tmp/control-$1.sock"
max_connections = 200
virus {
    database_directory = "$tmp/db"
    action = reject
}
scan {
    enabled = $3
}
EOF
    "$daemon" -f -c "$tmp/$1.conf" >"$tmp/scanrelayd-$1.log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    if ! wait_port "$2" "$pid"; then
        echo "scan-bench: scanrelayd ($1) did not start; its log:" >&2
        tail -20 "$tmp/scanrelayd-$1.log" >&2
        exit 1
    fi
    eval "pid_$1=$pid"
}
start_relay on "$on_port" yes
start_relay off "$off_port" no

# clamd: private instance on a unix socket in $tmp.
cat >"$tmp/clamd.conf" <<EOF
LocalSocket $tmp/clamd.sock
DatabaseDirectory $tmp/db
TemporaryDirectory $tmp/clamd-tmp
Foreground yes
LogFile $tmp/clamd.log
LogTime yes
PidFile $tmp/clamd.pid
MaxThreads 20
MaxConnectionQueueLength 100
EOF
clamd -c "$tmp/clamd.conf" >"$tmp/clamd.out" 2>&1 &
clamd_pid=$!
pids+=("$clamd_pid")
clamd_ping() {
    python3 - "$tmp/clamd.sock" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
try:
    s.connect(sys.argv[1]); s.sendall(b"zPING\0")
    sys.exit(0 if s.recv(64).startswith(b"PONG") else 1)
except OSError:
    sys.exit(1)
EOF
}
for _ in $(seq 1 600); do
    clamd_ping && break
    kill -0 $clamd_pid 2>/dev/null || break
    sleep 0.1
done
clamd_ping || { tail -20 "$tmp/clamd.out" "$tmp/clamd.log" >&2; echo "scan-bench: clamd did not start" >&2; exit 1; }

# clamsmtpd: private instance; -d 1 keeps it in the foreground. No User when
# run as root (clamsmtpd refuses User: root).
cat >"$tmp/clamsmtpd.conf" <<EOF
OutAddress: 127.0.0.1:$sink_port
Listen: 127.0.0.1:$clam_port
ClamAddress: $tmp/clamd.sock
TempDirectory: $tmp/clamsmtp-tmp
MaxConnections: 200
TimeOut: 180
Action: drop
EOF
[ "$(id -u)" = 0 ] || echo "User: $(id -un)" >>"$tmp/clamsmtpd.conf"
clamsmtpd -d 1 -f "$tmp/clamsmtpd.conf" -p "$tmp/clamsmtpd.pid" >"$tmp/clamsmtpd.log" 2>&1 &
clamsmtp_pid=$!
pids+=("$clamsmtp_pid")
wait_port "$clam_port" $clamsmtp_pid ||
    { tail -20 "$tmp/clamsmtpd.log" >&2; echo "scan-bench: clamsmtpd did not start" >&2; exit 1; }

# ---------------------------------------------------------------------------
# The Python sender (mix 2, and the EICAR checks) and the zip message.
# ---------------------------------------------------------------------------
cat >"$tmp/send.py" <<'EOF'
"""send.py PORT FILE COUNT THREADS: send FILE COUNT times, one connection per
message, THREADS at a time. Prints "sent=N errors=E seconds=T" and the first
error replies; exit 1 on any error."""
import socket, sys, threading, time

port, path, count, nthreads = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
msg = open(path, "rb").read()
if not msg.endswith(b"\r\n"):
    msg += b"\r\n"
payload = (b"." + msg if msg.startswith(b".") else msg).replace(b"\r\n.", b"\r\n..") + b".\r\n"
lock = threading.Lock()
state = {"next": 0, "sent": 0, "errors": 0, "first": []}

def reply(f):
    lines = []
    while True:
        l = f.readline()
        if not l:
            raise OSError("connection closed")
        lines.append(l.decode("latin-1").rstrip())
        if len(l) < 4 or l[3:4] != b"-":
            return int(lines[-1][:3]), lines[-1]

def one():
    s = socket.create_connection(("127.0.0.1", port), 120)
    f = s.makefile("rb")
    try:
        for cmd, want in ((None, 220), (b"EHLO bench.example\r\n", 250),
                          (b"MAIL FROM:<bench@example.com>\r\n", 250),
                          (b"RCPT TO:<sink@example.org>\r\n", 250), (b"DATA\r\n", 354),
                          (payload, 250), (b"QUIT\r\n", 221)):
            if cmd is not None:
                s.sendall(cmd)
            code, text = reply(f)
            if code != want:
                return "%s -> %s" % ((cmd or b"connect")[:20], text)
        return None
    finally:
        f.close()
        s.close()

def worker():
    while True:
        with lock:
            if state["next"] >= count:
                return
            state["next"] += 1
        try:
            err = one()
        except OSError as e:
            err = "error: %s" % e
        with lock:
            if err:
                state["errors"] += 1
                if len(state["first"]) < 5:
                    state["first"].append(err)
            else:
                state["sent"] += 1

t0 = time.time()
ts = [threading.Thread(target=worker) for _ in range(nthreads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
dt = time.time() - t0
print("sent=%d errors=%d seconds=%.3f" % (state["sent"], state["errors"], dt))
for e in state["first"]:
    print("  " + e)
sys.exit(1 if state["errors"] else 0)
EOF

python3 - "$tmp" <<'EOF'
import base64, io, os, random, sys, zipfile
tmp = sys.argv[1]
rnd = random.Random(20240101)
words = ["invoice", "quarter", "figures", "meeting", "budget", "report", "scan", "relay",
         "attached", "please", "review", "the", "and", "of", "to", "for"]
members = []
for i in range(3):   # text that compresses about 4:1
    txt = " ".join(rnd.choice(words) for _ in range(30000)).encode()
    members.append(("docs/part%d.txt" % i, txt[:150000]))
for i in range(3):   # data that does not compress
    members.append(("data/blob%d.bin" % i, bytes(rnd.getrandbits(8) for _ in range(52000))))
b = io.BytesIO()
with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
    for n, d in members:
        z.writestr(n, d)
zdata = b.getvalue()
B = "=_scan_bench_b0undary"
def msg(parts):
    out = ("From: Bench <bench@example.com>\r\nTo: Sink <sink@example.org>\r\n"
           "Subject: scan bench\r\nMessage-ID: <scan-bench@example.com>\r\nMIME-Version: 1.0\r\n"
           "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n" % B)
    for hdr, body in parts:
        out += "--%s\r\n%s\r\n\r\n%s\r\n" % (B, hdr, body)
    return (out + "--%s--\r\n" % B).encode()
text = ("Content-Type: text/plain; charset=us-ascii", "Hello,\r\nthe figures are attached.")
att = ("Content-Type: application/zip; name=\"figures.zip\"\r\n"
       "Content-Disposition: attachment; filename=\"figures.zip\"\r\n"
       "Content-Transfer-Encoding: base64",
       base64.encodebytes(zdata).decode().replace("\n", "\r\n").rstrip())
m = msg([text, att])
open(os.path.join(tmp, "zip200k.eml"), "wb").write(m)
open(os.path.join(tmp, "zip200k.lf"), "wb").write(m.replace(b"\r\n", b"\n"))
eicar = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
open(os.path.join(tmp, "eicar.eml"), "wb").write(msg([text, (
    "Content-Type: application/octet-stream; name=\"eicar.com\"\r\n"
    "Content-Transfer-Encoding: base64", base64.b64encode(eicar).decode())]))
print("zip attachment: %d bytes (%d bytes expanded), message %d bytes"
      % (len(zdata), sum(len(d) for _, d in members),
         os.path.getsize(os.path.join(tmp, "zip200k.eml"))), file=sys.stderr)
EOF

sink_count() {
    tr '\r' '\n' <"$tmp/sink.out" | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2
}
sink_settle() { # wait (up to 20 s) for the counter to reach $1; print it
    local c
    for _ in $(seq 1 400); do
        c=$(sink_count); c=${c:-0}
        [ "$c" -ge "$1" ] && break
        sleep 0.05
    done
    echo "${c:-0}"
}

# Each scanner must stop EICAR: nothing arrives at the sink.
eicar_check() { # name port
    local before after
    before=$(sink_count); before=${before:-0}
    python3 "$tmp/send.py" "$2" "$tmp/eicar.eml" 1 1 >"$tmp/eicar-$1.out" 2>&1
    sleep 1
    after=$(sink_count); after=${after:-0}
    if [ "$after" != "$before" ]; then
        echo "scan-bench: FAIL: $1 let an EICAR message through ($(cat "$tmp/eicar-$1.out"))" >&2
        exit 1
    fi
    echo "scan-bench: $1 stops EICAR ($(sed -n '1p;2s/^ */: /p' "$tmp/eicar-$1.out" | tr -d '\n'))"
}
eicar_check scan-on "$on_port"
eicar_check clamsmtp "$clam_port"

lost=0
declare -A rates
port_of() { case $1 in scan-on) echo "$on_port" ;; scan-off) echo "$off_port" ;;
    clamsmtp) echo "$clam_port" ;; direct) echo "$sink_port" ;; esac; }

overflows() { # the kernel's count of connections dropped at a full listen queue
    awk '/^TcpExt:/ { if (!h) { split($0, k); h = 1 } else { split($0, v);
        for (i in k) if (k[i] == "ListenOverflows") print v[i] } }' /proc/net/netstat
}
# run MIX TARGET COUNT [SESSIONS]
run() {
    local mix=$1 target=$2 n=$3 s=${4:-$S} port before after got t0 t1 rc r o0 o1
    port=$(port_of "${target%-s*}")
    before=$(sink_count); before=${before:-0}
    o0=$(overflows)
    t0=$(date +%s.%N)
    if [ "$mix" = 10k ]; then
        smtp-source -s "$s" -l "$L" -m "$n" -f bench@example.com -t sink@example.org \
            "127.0.0.1:$port" >"$tmp/source.out" 2>&1
    elif [ "$SENDER" = python ]; then
        python3 "$tmp/send.py" "$port" "$tmp/zip200k.eml" "$n" "$s" >"$tmp/source.out" 2>&1
    else
        smtp-source -s "$s" -F "$tmp/zip200k.lf" -m "$n" -f bench@example.com \
            -t sink@example.org "127.0.0.1:$port" >"$tmp/source.out" 2>&1
    fi
    rc=$?
    t1=$(date +%s.%N)
    o1=$(overflows)
    after=$(sink_settle $((before + n)))
    got=$((after - before))
    if [ $rc -ne 0 ]; then
        echo "scan-bench: FAIL: $mix $target: sender exit $rc:" >&2
        sed 's/^/    /' "$tmp/source.out" | head -8 >&2
        lost=1
    fi
    if [ "$got" -ne "$n" ]; then
        echo "scan-bench: FAIL: $mix $target: sent $n, the sink received $got" >&2
        lost=1
    fi
    r=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }')
    rates[$mix/$target]="${rates[$mix/$target]:-} $r"
    printf '  %-4s %-11s %9s msg/s %8.2f s %7d/%d delivered %6s listen overflows\n' \
        "$mix" "$target" "$r" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
        "$got" "$n" "$((${o1:-0} - ${o0:-0}))"
}
median() {
    # shellcheck disable=SC2086 # split on purpose
    printf '%s\n' ${rates[$1]:-0} | sort -n |
        awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo "scan-bench: scanrelayd build: $btype ($daemon); signatures: $nsigs from $sigs"
echo "scan-bench: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg);" \
    "$S sessions; mix 10k: $N x smtp-source -l $L; mix zip: $NZ x $(stat -c %s "$tmp/zip200k.eml") bytes" \
    "($SENDER); $ROUNDS round(s)"
# warm-up: a few of each, not measured
for t in scan-on scan-off clamsmtp; do
    p=$(port_of $t)
    smtp-source -s 4 -l "$L" -m 40 -f bench@example.com -t sink@example.org "127.0.0.1:$p" \
        >/dev/null 2>&1 || { echo "scan-bench: FAIL: warm-up of $t failed" >&2; exit 1; }
done
sink_settle 0 >/dev/null
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round:"
    for t in direct scan-on scan-off; do run 10k $t "$N"; done
    run 10k clamsmtp "${NC:-$((N / 10))}"
    run 10k clamsmtp-s5 "${NC:-$((N / 10))}" 5
    for t in direct scan-on scan-off; do run zip $t "$NZ"; done
    run zip clamsmtp "${NC:-$((NZ / 3))}"
    run zip clamsmtp-s5 "${NC:-$((NZ / 3))}" 5
done

declare -A rate
echo
echo "median rates (msg/s) over $ROUNDS round(s):"
printf '  %-5s %10s %10s %10s %10s %12s\n' mix direct scan-on scan-off clamsmtp "clamsmtp-s5"
for mix in 10k zip; do
    for t in direct scan-on scan-off clamsmtp clamsmtp-s5; do rate[$mix/$t]=$(median "$mix/$t"); done
    printf '  %-5s %10s %10s %10s %10s %12s\n' "$mix" "${rate[$mix/direct]}" "${rate[$mix/scan-on]}" \
        "${rate[$mix/scan-off]}" "${rate[$mix/clamsmtp]}" "${rate[$mix/clamsmtp-s5]}"
done
missed=0
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "0" }'; }
bar() { # label value min
    local ok
    ok=$(awk -v v="$2" -v m="$3" 'BEGIN { print (v >= m) ? "met" : "MISSED" }')
    [ "$ok" = met ] || missed=1
    printf '  %-40s %7s   (bar >= %s: %s)\n' "$1" "$2" "$3" "$ok"
}
echo "ratios:"
for mix in 10k zip; do
    bar "$mix: scan-on / scan-off" "$(ratio "${rate[$mix/scan-on]}" "${rate[$mix/scan-off]}")" 0.75
    bar "$mix: scan-on / clamsmtp+clamd" "$(ratio "${rate[$mix/scan-on]}" "${rate[$mix/clamsmtp]}")" 5
    printf '  %-40s %7s   (reference: clamsmtp at 5 sessions, below its listen backlog)\n' \
        "$mix: scan-on / clamsmtp+clamd at -s 5" \
        "$(ratio "${rate[$mix/scan-on]}" "${rate[$mix/clamsmtp-s5]}")"
done

# Peak memory and the daemons' own accounts.
for t in on off; do
    pid_var=pid_$t
    hwm=$(awk '/^VmHWM:/ { print $2 " " $3 }' "/proc/${!pid_var}/status" 2>/dev/null)
    echo "scanrelayd scan-$t: peak RSS ${hwm:-unknown};" \
        "$(grep -c 'status=sent' "$tmp/scanrelayd-$t.log") status=sent lines," \
        "$(grep -ciE 'warning|error|fatal' "$tmp/scanrelayd-$t.log") warning/error lines"
done
hwm=$(awk '/^VmHWM:/ { print $2 " " $3 }' "/proc/$clamd_pid/status" 2>/dev/null)
echo "clamd: peak RSS ${hwm:-unknown}; $(grep -c 'FOUND' "$tmp/clamd.log" 2>/dev/null) FOUND lines"

if [ $lost -ne 0 ]; then
    echo "scan-bench: FAILED (messages lost or a sender failed); logs in $tmp" >&2
    KEEP_TMP=1
    exit 1
fi
if [ $missed -ne 0 ]; then
    echo "scan-bench: a bar was missed"
    [ "$STRICT" = 1 ] && exit 3
fi
echo "scan-bench: OK, nothing lost"
exit 0
