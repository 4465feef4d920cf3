#!/usr/bin/env python3
"""corpus-bench.py - relay rate on unique real messages, several variants in one run.

Sends every message of a corpus (the SpamAssassin public corpus in
../shared/corpora/, or any folder of RFC 5322 files) once per round through
scanrelayd to an smtp-sink, over SESSIONS parallel SMTP sessions that reuse
their connections, and prints the rate of each variant, round by round and
as medians, and each variant's ratio to the first one.

Unlike smtp-source, which sends one body over and over (libclamav's cache and
the engine's clean-part cache then answer every scan), every message here is
different, so the figures are those of a real mail stream.

A variant is LABEL=DAEMON[:CONFIG_SNIPPET]: a scanrelayd binary, and an
optional file whose text is appended to the generated configuration (rules,
spam settings, ...). Variants take turns within each round so that load
from elsewhere on the machine hits them alike.

    bench/corpus-bench.py ../shared/corpora/spamassassin-public.tar.xz \
        --variant old=/path/old/scanrelayd --variant new=build/proxy/scanrelayd

Options: --scan on|off|both (default both: each variant with scanning on and
off), --sessions N (20), --rounds N (3), --limit N (messages per round, all
by default), --sigs DIR (signature folder, t/sigs).

Nothing may be lost: every message must get a 2xx reply and the sink must
count exactly the number sent; otherwise the script exits 1.
"""

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def die(msg):
    print("corpus-bench: " + msg, file=sys.stderr)
    sys.exit(1)


def load_corpus(path, limit):
    """The messages as SMTP DATA payloads: CRLF lines, dot-stuffed, ending CRLF.CRLF."""
    raw = []
    if os.path.isdir(path):
        for root, _dirs, files in os.walk(path):
            for f in sorted(files):
                with open(os.path.join(root, f), "rb") as fh:
                    raw.append(fh.read())
    else:
        # Read in archive order (seeking in an xz stream is quadratic), then sort.
        named = []
        with tarfile.open(path, "r|*") as tf:
            for m in tf:
                if m.isfile():
                    named.append((m.name, tf.extractfile(m).read()))
        raw = [data for _name, data in sorted(named)]
    msgs = []
    for data in raw:
        if data.startswith(b"From "):
            data = data.split(b"\n", 1)[1] if b"\n" in data else b""
        lines = data.replace(b"\r\n", b"\n").split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        out = [b"." + ln if ln.startswith(b".") else ln for ln in lines]
        if not out:
            continue
        msgs.append(b"\r\n".join(out) + b"\r\n.\r\n")
        if limit and len(msgs) >= limit:
            break
    return msgs


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_port(port, proc, what, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            die("%s exited with %d before listening" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    die("%s did not listen on %d" % (what, port))


class Session:
    """One SMTP client connection, reused for many messages."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.buf = b""
        self.reply()
        self.sock.sendall(b"EHLO bench.example\r\n")
        code, _ = self.reply()
        if code != 250:
            raise RuntimeError("EHLO got %d" % code)

    def reply(self):
        text = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise RuntimeError("connection closed")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            text.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), b"\n".join(text)

    def send(self, payload):
        # MAIL, RCPT and DATA pipelined (scanrelayd announces PIPELINING).
        self.sock.sendall(b"MAIL FROM:<bench@example.com>\r\nRCPT TO:<sink@example.org>\r\nDATA\r\n")
        for what in ("MAIL", "RCPT", "DATA"):
            code, text = self.reply()
            if (what == "DATA" and code != 354) or (what != "DATA" and code != 250):
                raise RuntimeError("%s got %s" % (what, text.decode(errors="replace")))
        self.sock.sendall(payload)
        code, text = self.reply()
        if code // 100 != 2:
            raise RuntimeError("end of data got %s" % text.decode(errors="replace"))

    def close(self):
        try:
            self.sock.sendall(b"QUIT\r\n")
            self.reply()
        except (OSError, RuntimeError):
            pass
        self.sock.close()


def blast(port, msgs, sessions):
    """Send every message once over `sessions` connections; seconds taken."""
    lock = threading.Lock()
    state = {"next": 0, "err": None}

    def worker():
        try:
            s = Session(port)
        except (OSError, RuntimeError) as e:
            state["err"] = "connect: %s" % e
            return
        try:
            while state["err"] is None:
                with lock:
                    i = state["next"]
                    state["next"] += 1
                if i >= len(msgs):
                    break
                s.send(msgs[i])
        except (OSError, RuntimeError) as e:
            state["err"] = str(e)
        finally:
            s.close()

    threads = [threading.Thread(target=worker) for _ in range(sessions)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t1 = time.monotonic()
    if state["err"]:
        raise RuntimeError(state["err"])
    return t1 - t0


class Sink:
    def __init__(self, tmp):
        (self.port,) = free_ports(1)
        self.out = open(os.path.join(tmp, "sink.out"), "w+")
        user = ["-u", "nobody"] if os.getuid() == 0 else []
        self.proc = subprocess.Popen(["smtp-sink"] + user + ["-c", "127.0.0.1:%d" % self.port, "1024"],
                                     stdout=self.out, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc, "smtp-sink")

    def count(self):
        self.out.flush()
        with open(self.out.name, "rb") as fh:
            data = fh.read().replace(b"\r", b"\n")
        marks = [ln for ln in data.split(b"\n") if b"mesg=" in ln]
        if not marks:
            return 0
        tail = marks[-1].split(b"mesg=")[1]
        digits = b"".join(bytes([c]) for c in tail if 48 <= c <= 57)
        return int(digits or b"0")

    def settle(self, want, timeout=60.0):
        end = time.monotonic() + timeout
        c = self.count()
        while c < want and time.monotonic() < end:
            time.sleep(0.05)
            c = self.count()
        return c

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Daemon:
    def __init__(self, label, binary, snippet, scan, sink_port, tmp, sigs):
        self.label = "%s, scan %s" % (label, "on" if scan else "off")
        d = tempfile.mkdtemp(prefix="d-", dir=tmp)
        (self.port,) = free_ports(1)
        for sub in ("state", "queue"):
            os.mkdir(os.path.join(d, sub))
        conf = os.path.join(d, "scanrelay.conf")
        with open(conf, "w") as fh:
            fh.write('listen = "127.0.0.1:%d"\nrelay = "127.0.0.1:%d"\n' % (self.port, sink_port))
            fh.write('state_directory = "%s/state"\nqueue_directory = "%s/queue"\n' % (d, d))
            fh.write('control_socket = "%s/control.sock"\n' % d)
            fh.write('virus {\n    database_directory = "%s"\n}\n' % sigs)
            fh.write("scan {\n    enabled = %s\n}\n" % ("yes" if scan else "no"))
            if snippet:
                with open(snippet) as sn:
                    fh.write(sn.read())
        self.log = open(os.path.join(d, "scanrelayd.log"), "w")
        self.proc = subprocess.Popen([binary, "-f", "-c", conf], stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc, self.label)

    def rss_peak_kb(self):
        try:
            with open("/proc/%d/status" % self.proc.pid) as fh:
                for ln in fh:
                    if ln.startswith("VmHWM:"):
                        return int(ln.split()[1])
        except OSError:
            pass
        return 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus")
    ap.add_argument("--variant", action="append", required=True, help="LABEL=DAEMON[:SNIPPET]")
    ap.add_argument("--scan", choices=("on", "off", "both"), default="both")
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--sigs", default=os.path.join(SRC, "t", "sigs"))
    args = ap.parse_args()

    msgs = load_corpus(args.corpus, args.limit)
    if not msgs:
        die("no messages in %s" % args.corpus)
    nbytes = sum(len(m) for m in msgs)
    tmp = tempfile.mkdtemp(prefix="corpus-bench.")
    sink = Sink(tmp)
    daemons = []
    try:
        scans = {"on": [True], "off": [False], "both": [True, False]}[args.scan]
        for scan in scans:
            for v in args.variant:
                label, _, rest = v.partition("=")
                binary, _, snippet = rest.partition(":")
                if not os.access(binary, os.X_OK):
                    die("%s is not an executable" % binary)
                daemons.append(Daemon(label, binary, snippet or None, scan, sink.port, tmp,
                                      os.path.abspath(args.sigs)))
        print("corpus-bench: %d unique messages (%.1f MB) from %s, %d sessions, %d rounds; %d CPUs, load %s"
              % (len(msgs), nbytes / 1e6, args.corpus, args.sessions, args.rounds, os.cpu_count(),
                 open("/proc/loadavg").read().split()[0]))
        warm = msgs[: min(200, len(msgs))]
        for d in daemons:
            blast(d.port, warm, args.sessions)
        rates = {d.label: [] for d in daemons}
        print("%-34s %9s %9s" % ("", "msg/s", "seconds"))
        lost = False
        for _ in range(args.rounds):
            for d in daemons:
                before = sink.count()
                secs = blast(d.port, msgs, args.sessions)
                got = sink.settle(before + len(msgs)) - before
                if got != len(msgs):
                    print("corpus-bench: FAIL: %s: sent %d, the sink received %d" % (d.label, len(msgs), got))
                    lost = True
                r = len(msgs) / secs
                rates[d.label].append(r)
                print("%-34s %9.1f %9.2f" % (d.label, r, secs))
        print()
        print("%-34s %9s %9s %11s" % ("median", "msg/s", "ratio", "peak RSS"))
        per_scan = len(args.variant)
        for i, d in enumerate(daemons):
            base = daemons[i - i % per_scan]
            med = statistics.median(rates[d.label])
            bmed = statistics.median(rates[base.label])
            print("%-34s %9.1f %9.3f %8d kB" % (d.label, med, med / bmed, d.rss_peak_kb()))
        if lost:
            sys.exit(1)
    except RuntimeError as e:
        die(str(e))
    finally:
        for d in daemons:
            d.stop()
        sink.stop()
        if os.environ.get("KEEP_TMP"):
            print("corpus-bench: kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
