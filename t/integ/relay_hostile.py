#!/usr/bin/env python3
"""
relay_hostile - the daemon under hostile clients (issue 14): a real
scanrelayd, a real smtp-sink downstream, clients that mean harm.

  * connection flood: 2,000 simultaneous connections against
    max_connections = 40: exactly 40 get 220, the other 1,960 get
    421 4.3.2 and are closed; the daemon stays up, its RSS stays bounded,
    and the log says so once, then at most once a second with a count (the
    counts add up to 1,960) instead of one line per refusal; afterwards the
    descriptor count is back where it started and mail flows;
  * a client sending one byte per second, in a command line and in DATA:
    disconnected with 421 4.4.2 within smtpd_command_deadline (3 s here;
    in DATA that plus bytes / smtpd_min_data_rate), however the bytes keep
    coming (smtpd_timeout, an idle timeout, is 60 s here and never fires);
    a fast client of a 2 MB message is not affected;
  * a 1 MB header line (relayed as it came) and a 1 MB command line
    (500 5.5.2, the session goes on);
  * 5,000 recipients, pipelined: 1,000 accepted, 4,000 452 4.5.3, one
    message with 1,000 recipients at smtp-sink;
  * binary garbage before EHLO: error replies, then 421 and a close after
    max_errors; the next client is served;
  * 500 clients vanishing mid-DATA (five waves of 100, bodies spooled to
    files and in memory, half of them reset, half closed): nothing at
    smtp-sink, no file left, the descriptor count back to its starting
    value and RSS growth under 20 MB;
  * the padded, base64-encoded forwarded message carrying a zip with a
    300 MiB member (issue 14 defect 1) is not delivered as clean.

Deterministic on a loaded machine: every wait is for a condition, with a
generous bound. Run: SCANRELAY_BUILD=build python3 t/integ/relay_hostile.py [test ...]
"""
import os
import random
import re
import resource
import selectors
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import (Closed, Raw, Scanrelayd, SmtpClient, SmtpSink, check, check_eq,  # noqa: E402
                     leftover_files, run_tests, simple_message, wait_for)

# Under AddressSanitizer freed memory waits in a quarantine (256 MB by
# default) before it is reused: RSS would measure ASan, not the daemon.
# A small quarantine keeps use-after-free detection and makes RSS mean
# something. Set before any daemon starts (they inherit the environment).
import scan_util as su  # noqa: E402

if os.path.exists(h.DAEMON) and su.is_sanitized(h.DAEMON):
    os.environ["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") +
                                  ":quarantine_size_mb=2:thread_local_quarantine_size_kb=256:allocator_release_to_os_interval_ms=100"
                                  ).lstrip(":")


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def rss_mb(pid):
    return su.rss_kb(pid) / 1024.0


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        if hard != resource.RLIM_INFINITY and hard < n:
            raise h.Skip("RLIMIT_NOFILE hard limit %d < %d" % (hard, n))
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


def one_message(d, what):
    """A normal transaction on a new connection (mail still flows)."""
    c = SmtpClient(d.port)
    c.ehlo("fine.example")
    tx = c.transaction("fine@example.com", ["rcpt@example.org"], simple_message(what))
    check(tx.first_error is None and tx.final.code == 250, "%s: %r" % (what, tx))
    c.quit()


def settle(pred, timeout, what):
    return wait_for(pred, timeout, what, interval=0.2)


def tcp_conns(port, local):
    """TCP connections (from /proc/net/tcp) whose local (or remote) port is
    port, in states ESTABLISHED or CLOSE_WAIT: sockets someone still holds."""
    n = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            addr = fields[1] if local else fields[2]
            if int(addr.split(":")[1], 16) == port and fields[3] in ("01", "08"):
                n += 1
    return n


def quiet_fds(d, sink):
    """The daemon's descriptor count once no client session is open and its
    idle downstream connections are closed (relay_idle_time)."""
    settle(lambda: tcp_conns(d.port, local=True) == 0 and tcp_conns(sink.port, local=False) == 0,
           60, "client sessions and idle downstream connections closed")
    return fd_count(d.proc.pid)


# ---------------------------------------------------------------- flood

def first_lines(socks, timeout):
    """Read the first reply line of every socket (or note its close)."""
    sel = selectors.DefaultSelector()
    bufs = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        bufs[s] = b""
    out = {}
    deadline = time.monotonic() + timeout
    while len(out) < len(socks) and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except (ConnectionResetError, BlockingIOError, OSError):
                data = None
            if data is None or data == b"":
                out[s] = bufs[s].split(b"\r\n")[0].decode("latin-1") or "(closed)"
                sel.unregister(s)
                continue
            bufs[s] += data
            if b"\r\n" in bufs[s]:
                out[s] = bufs[s].split(b"\r\n")[0].decode("latin-1")
                sel.unregister(s)
    sel.close()
    return out


def test_connection_flood(ctx):
    n_total, max_conn = 2000, 40
    raise_nofile(n_total + 500)
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port, max_connections=max_conn)
    pid = d.proc.pid
    one_message(d, "warm-up")
    fd0 = quiet_fds(d, sink)
    rss0 = rss_mb(pid)
    mark = d.log_mark()

    t0 = time.monotonic()
    socks = []
    try:
        for i in range(n_total):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(30)
            s.connect(("127.0.0.1", d.port))
            socks.append(s)
        t_open = time.monotonic() - t0
        lines = first_lines(socks, 120)
        check_eq(len(lines), n_total, "connections that got a first line or were closed")
        kinds = {}
        for l in lines.values():
            k = l[:9] if l.startswith("421") else l[:3]
            kinds[k] = kinds.get(k, 0) + 1
        print("  %d connections opened in %.1fs: %r" % (n_total, t_open, kinds))
        check_eq(kinds.get("220", 0), max_conn, "connections greeted (max_connections)")
        check_eq(kinds.get("421 4.3.2", 0), n_total - max_conn, "connections refused with 421 4.3.2")
        check(d.alive(), "scanrelayd died under the flood")
        rss1 = rss_mb(pid)
        print("  RSS %.1f MB -> %.1f MB during the flood" % (rss0, rss1))
        check(rss1 - rss0 < 20, "RSS grew by %.1f MB under the flood" % (rss1 - rss0))

        # The log: one line, then counts at most once a second, adding up.
        refused_re = re.compile(r"too many connections \(max_connections = %d\)"
                                r"(?:, refusing a client|: (\d+) more client\(s\) refused)" % max_conn)

        def counted():
            ms = refused_re.findall(d.log_since(mark))
            total = sum(1 if not m else int(m) for m in ms)
            return (len(ms), total) if total >= n_total - max_conn else None
        nlines, total = settle(counted, 30, "the refusals counted in the log")
        t_flood = time.monotonic() - t0
        print("  %d log lines for %d refusals over %.1fs" % (nlines, total, t_flood))
        check_eq(total, n_total - max_conn, "refusals counted in the log")
        check(nlines <= t_flood + 2, "%d 'too many connections' lines in %.1fs: more than one "
              "a second" % (nlines, t_flood))
        # the greeted ones are still served
        greeted = [s for s, l in lines.items() if l.startswith("220")]
        for s in greeted[:3]:
            s.setblocking(True)
            s.sendall(b"NOOP\r\n")
            check(s.recv(100).startswith(b"250"), "NOOP on a greeted connection")
    finally:
        for s in socks:
            s.close()
    settle(lambda: fd_count(pid) <= fd0, 60, "the daemon's descriptors back to %d" % fd0)
    check_eq(quiet_fds(d, sink), fd0, "the daemon's descriptors after the flood")
    one_message(d, "after the flood")
    sink.wait_dumps(2)
    d.stop()


# ---------------------------------------------------------------- slow clients

DEADLINE = 3


def slow_daemon(ctx, sink):
    return Scanrelayd(ctx, relay_port=sink.port, smtpd_timeout=Raw("60s"),
                      smtpd_command_deadline=Raw("%ds" % DEADLINE), smtpd_min_data_rate=1000)


def trickle(c, data, t_start, limit):
    """
    Send data one byte per second until the server answers or closes.
    Returns (reply line or None, seconds since t_start at the answer).
    Pacing waits on the socket itself: a reply ends the wait at once.
    """
    c.sock.setblocking(True)
    for i in range(len(data)):
        try:
            c.sock.sendall(data[i:i + 1])
        except (BrokenPipeError, ConnectionResetError):
            break
        c.sock.settimeout(1.0)
        try:
            got = c.sock.recv(4096)
        except socket.timeout:
            got = None
        except ConnectionResetError:
            got = b""
        if got is not None:
            return got.split(b"\r\n")[0].decode("latin-1") or None, time.monotonic() - t_start
        if time.monotonic() - t_start > limit:
            break
    c.sock.settimeout(10)
    try:
        got = c.sock.recv(4096)
    except (socket.timeout, ConnectionResetError):
        got = b""
    return got.split(b"\r\n")[0].decode("latin-1") or None, time.monotonic() - t_start


def check_cut(c, line, took, limit, what):
    print("  %s: %r after %.1fs (deadline %ds)" % (what, line, took, limit))
    check(line is not None and line.startswith("421 4.4.2"), "%s: answer %r" % (what, line))
    check(limit - 0.5 <= took <= limit + 3, "%s: cut after %.1fs, deadline %ds" % (what, took, limit))
    check(c.closed_by_peer(10), "%s: not closed after the 421" % what)


def test_slow_command_line(ctx):
    sink = SmtpSink(ctx)
    d = slow_daemon(ctx, sink)
    c = SmtpClient(d.port)
    c.ehlo("slow.example")
    t0 = time.monotonic()  # the deadline counts from the end of EHLO
    line, took = trickle(c, b"MAIL FROM:<slow@example.com> BODY=8BITMIME\r\n", t0, 20)
    check_cut(c, line, took, DEADLINE, "one byte per second in a command line")
    d.wait_log(r"deadline exceeded in a command from 127\.0\.0\.1", 10)
    # an idle client, too: the deadline is not longer than the idle time
    c = SmtpClient(d.port)
    t0 = time.monotonic()
    try:
        r = c.read_reply(timeout=20)
    except Closed:
        r = None
    check(r is not None and r.code == 421, "idle client after the greeting: %r" % r)
    took = time.monotonic() - t0
    check(DEADLINE - 0.5 <= took <= DEADLINE + 3, "idle client cut after %.1fs" % took)
    check(d.alive(), "scanrelayd died")
    one_message(d, "after slow clients")
    d.stop()


def test_slow_data(ctx):
    sink = SmtpSink(ctx)
    d = slow_daemon(ctx, sink)
    before = d.spool_files()
    c = SmtpClient(d.port)
    c.ehlo("slow.example")
    check_eq(c.cmd("MAIL FROM:<slow@example.com>").code, 250, "MAIL")
    check_eq(c.cmd("RCPT TO:<rcpt@example.org>").code, 250, "RCPT")
    check_eq(c.cmd("DATA").code, 354, "DATA")
    t0 = time.monotonic()
    body = b"Subject: slow\r\n\r\n" + b"x" * 100 + b"\r\n.\r\n"
    line, took = trickle(c, body, t0, 20)
    # bytes / 1000 per second adds a few ms to the deadline
    check_cut(c, line, took, DEADLINE, "one byte per second in DATA")
    d.wait_log(r"deadline exceeded in DATA from 127\.0\.0\.1", 10)
    # a fast client is not hurt by the deadline: 2 MB in one go
    c = SmtpClient(d.port, timeout=60)
    c.ehlo("fast.example")
    big = simple_message("fast", body="".join("line %07d of a fast message\r\n" % i
                                               for i in range(70000)))
    tx = c.transaction("fast@example.com", ["rcpt@example.org"], big, timeout=60)
    check(tx.first_error is None and tx.final.code == 250, "a fast 2 MB message: %r" % tx)
    c.quit()
    sink.wait_dumps(1)
    check_eq([x.sender for x in sink.dumps()], ["fast@example.com"], "messages at smtp-sink")
    check_eq(leftover_files(before, d.spool_files()), [], "files left behind")
    d.stop()


# ---------------------------------------------------------------- big lines, many recipients

def test_huge_lines(ctx):
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port)
    pid = d.proc.pid
    rss0 = rss_mb(pid)
    c = SmtpClient(d.port, timeout=60)
    c.ehlo("huge.example")
    # a 1 MB command line: 500, and the session goes on
    r = c.cmd("NOOP " + "n" * (1 << 20))
    check_eq((r.code, r.enhanced), (500, "5.5.2"), "1 MB command line (%r)" % r)
    check_eq(c.cmd("NOOP").code, 250, "NOOP after the long line")
    # a 1 MB header line: relayed as it came
    long_value = "v" * (1 << 20)
    msg = simple_message("huge header", extra="X-Huge: %s\r\n" % long_value)
    tx = c.transaction("huge@example.com", ["rcpt@example.org"], msg, timeout=120)
    check(tx.first_error is None and tx.final.code == 250, "1 MB header line: %r" % tx)
    c.quit()
    dumps = sink.wait_dumps(1, timeout=60)
    check(dumps[0].header("X-Huge") == long_value, "the 1 MB header did not arrive intact")
    check(d.alive(), "scanrelayd died")
    rss1 = rss_mb(pid)
    print("  RSS %.1f MB -> %.1f MB" % (rss0, rss1))
    check(rss1 - rss0 < 20, "RSS grew by %.1f MB" % (rss1 - rss0))
    d.stop()


def test_5000_recipients(ctx):
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port, max_recipients=1000)
    c = SmtpClient(d.port, timeout=60)
    c.ehlo("many.example")
    check_eq(c.cmd("MAIL FROM:<many@example.com>").code, 250, "MAIL")
    c.send("".join("RCPT TO:<r%d@example.org>\r\n" % i for i in range(5000)))
    codes = {}
    for i in range(5000):
        r = c.read_reply(timeout=60)
        k = "%d %s" % (r.code, r.enhanced)
        codes[k] = codes.get(k, 0) + 1
    print("  RCPT replies: %r" % codes)
    check_eq(codes, {"250 2.1.5": 1000, "452 4.5.3": 4000}, "RCPT replies")
    r, final = c.data(simple_message("5000 recipients"), timeout=60)
    check_eq(r.code, 354, "DATA")
    check(final is not None and final.code == 250, "end of DATA: %r" % final)
    c.quit()
    dumps = sink.wait_dumps(1, timeout=60)
    check_eq(len(dumps[0].recipients), 1000, "recipients at smtp-sink")
    check(d.alive(), "scanrelayd died")
    d.stop()


def read_all_replies(c, timeout=30):
    replies = []
    while True:
        try:
            replies.append(c.read_reply(timeout=timeout))
        except Closed:
            return replies


def test_garbage_before_ehlo(ctx):
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port, max_errors=20)
    rnd = random.Random(14)

    def junk_line():
        n = rnd.choice((1, 5, 100, 1000, 5000))  # 5000: over max_command_length
        return bytes(rnd.choice([b for b in range(256) if b != 10]) for _ in range(n)) + b"\n"

    # Exactly max_errors lines of binary junk: one error reply each, then
    # 421 and a close (nothing left unread, so no RST eats the replies).
    c = SmtpClient(d.port, timeout=30)
    c.send(b"".join(junk_line() for _ in range(20)))
    replies = read_all_replies(c)
    codes = [r.code for r in replies]
    print("  20 junk lines: replies %r" % codes)
    check_eq(len(replies), 21, "replies to 20 junk lines (20 errors and the 421)")
    check(set(codes[:20]) <= {500, 502}, "error replies to junk: %r" % codes)
    check_eq((replies[-1].code, replies[-1].enhanced), (421, "4.7.0"), "the last reply")

    # 64 KB of junk in one go: the session is closed (replies lost to the
    # reset are fine), the daemon goes on.
    junk = bytes(rnd.getrandbits(8) for _ in range(64 * 1024))
    c = SmtpClient(d.port, timeout=30)
    try:
        c.send(junk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    replies = read_all_replies(c)
    check(set(r.code for r in replies) <= {500, 502, 421}, "replies to 64 KB of junk: %r"
          % sorted(set(r.code for r in replies)))
    check(len(replies) <= 21, "%d replies to 64 KB of junk: more than max_errors + 1"
          % len(replies))
    check(d.alive(), "scanrelayd died")
    one_message(d, "after garbage")
    d.stop()


# ---------------------------------------------------------------- vanishing clients

def vanish_wave(d, n, size, rst):
    conns = []
    for i in range(n):
        c = SmtpClient(d.port, timeout=60)
        conns.append(c)
    for i, c in enumerate(conns):
        c.send("EHLO vanish.example\r\nMAIL FROM:<vanish%d@example.com>\r\n"
               "RCPT TO:<rcpt@example.org>\r\nDATA\r\n" % i)
    for c in conns:
        for _ in range(4):  # EHLO, MAIL, RCPT, DATA (the EHLO reply is one multi-line reply)
            c.read_reply(timeout=60)
    chunk = b"Subject: vanishing\r\n\r\n" + (b"v" * 98 + b"\r\n") * (size // 100)
    for c in conns:
        c.send(chunk)
    for i, c in enumerate(conns):
        if rst:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                              b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()


def test_500_clients_vanish_mid_data(ctx):
    raise_nofile(2000)
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port, max_connections=200,
                   body_memory_limit=Raw("64k"))
    pid = d.proc.pid
    one_message(d, "warm-up")
    sink.wait_dumps(1)
    before = d.spool_files()
    fd0 = quiet_fds(d, sink)
    rss0 = rss_mb(pid)
    mark = d.log_mark()
    t0 = time.monotonic()
    for wave in range(5):
        # bodies of 300 KB (spooled to an unnamed file) and 30 KB (in memory)
        vanish_wave(d, 100, 300 * 1024 if wave % 2 == 0 else 30 * 1024, rst=wave % 2 == 0)
    settle(lambda: d.log_since(mark).count("lost connection after DATA") >= 500, 120,
           "500 'lost connection after DATA' lines")
    settle(lambda: fd_count(pid) <= fd0, 60, "the daemon's descriptors back to %d" % fd0)
    print("  500 clients in %.1fs; fds %d -> %d" % (time.monotonic() - t0, fd0, fd_count(pid)))
    check_eq(quiet_fds(d, sink), fd0, "the daemon's descriptors")
    rss = [rss_mb(pid)]

    def rss_ok():
        rss.append(rss_mb(pid))
        return rss[-1] - rss0 < 20
    settle_ok = True
    try:
        settle(rss_ok, 20, "RSS growth under 20 MB")
    except h.TestFailure:
        settle_ok = False
    print("  RSS %.1f MB -> %.1f MB (peak seen %.1f MB)" % (rss0, rss[-1], max(rss)))
    check(settle_ok, "RSS grew by %.1f MB after 500 vanished clients" % (rss[-1] - rss0))
    check(d.alive(), "scanrelayd died")
    check_eq(sink.files()[1:], [], "dump files of vanished messages at smtp-sink")
    check_eq(leftover_files(before, d.spool_files()), [], "files left in state/queue dirs")
    one_message(d, "after 500 vanished clients")
    d.stop()


# ---------------------------------------------------------------- hostile content

def test_padded_encoded_forward_not_clean(ctx):
    """Issue 14 defect 1 through the daemon: not delivered as clean."""
    db = su.copy_sigs(ctx)
    sink = SmtpSink(ctx)
    d = su.scanning_daemon(ctx, sink.port, dbdir=db)
    d.wait_log(r"scanning with ClamAV", 60)
    z300 = su.ca.zip_of_zeros("big.bin", 300 << 20)
    mark = d.log_mark()
    for enc in ("base64", "quoted-printable"):
        msg = su.ca.padded_forward(z300, "big.zip", 6000, enc)
        tx = su.send(d.port, msg)
        final = su.final_line(tx)
        print("  padded %s forward: %s" % (enc, final))
        logs = d.wait_message_logs(lambda x: x.get("from") == "sender@example.com",
                                   n=1 if enc == "base64" else 2, timeout=120, since=mark)
        line = logs[-1]
        check(line.get("result") != "clean", "the padded %s forward was scanned clean: %r"
              % (enc, line))
        check(line.get("action") != "relayed", "the padded %s forward was relayed: %r"
              % (enc, line))
    check_eq(sink.files(), [], "messages at smtp-sink")
    d.stop()


if __name__ == "__main__":
    run_tests(globals())
