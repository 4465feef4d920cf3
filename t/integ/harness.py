"""
harness.py - the integration-test library: real peers around scanrelayd.

Python 3 standard library only. What it provides:

  * run_tests(globals()) - runs every test_* function in a fresh Ctx, prints
    "PASS name" / "FAIL name: why", a final "N passed, N failed" line, and
    exits 1 on any failure (77 when every test skipped).
  * Ctx - one per test: a temp work dir (removed on success, kept on failure
    with its path printed, or always kept with SCANRELAY_KEEP=1), port
    allocation, and a cleanup stack that stops every process it started.
  * SmtpSink - Postfix's smtp-sink with a dump dir (-d DIR/%H%M%S.) and fault
    options; parse_dump() reads its one-file-per-message dumps.
  * RawSink - a tiny Python SMTP server for what smtp-sink cannot show: the
    exact wire bytes of DATA, every command line verbatim (XFORWARD, MAIL and
    RCPT parameters), chosen EHLO keywords, per-recipient replies.
  * Scanrelayd - writes a config, starts `scanrelayd -f -c CONF`, waits until
    the listen port is in LISTEN state, captures stderr, stops with SIGTERM
    and asserts a clean exit.
  * SmtpClient - a raw SMTP client for crafted dialogues (any bytes, any
    pipelining), and swaks() - a wrapper around the swaks tool.

smtp-sink dump format (Postfix 3.7, read from smtp-sink.c and checked here):
  - the file is created when MAIL is accepted; RSET, HELO/EHLO, or a
    disconnect before the final "." unlink it; a transaction that reached
    "." is kept even when "." itself is then refused with -f/-r (the dump is
    closed before the reply is sent).
  - optional -S start string, then "X-Client-Addr: a", "X-Client-Proto:
    SMTP|ESMTP", "X-Helo-Args: h" (if HELO/EHLO seen), "X-Mail-Args: <the
    text after 'MAIL FROM:'>", one "X-Rcpt-Args: ..." per accepted RCPT, then
    a three-line "Received: from h ([a])\\n\\tby host (smtp-sink) with P id
    ID;\\n\\tDATE\\n". XFORWARD/XCLIENT attributes do NOT show up there; with
    -v smtp-sink logs every command line on stderr ("smtp-sink: XFORWARD ...").
  - then the DATA bytes with every CR byte dropped (not only CRLF -> LF) and
    the first "." after each CRLF removed (dot-unstuffing), including the LF
    of the CRLF before the final ".", followed by one extra "\\n".
  - so the message as sent (ending in CRLF) maps to dump bytes
    msg.replace(b"\\r", b"") - see sink_view().
"""

import errno
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

BUILD = os.environ.get("SCANRELAY_BUILD") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "build")
SRC = os.environ.get("SCANRELAY_SRC") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DAEMON = os.path.join(BUILD, "proxy", "scanrelayd")
IS_ROOT = os.geteuid() == 0


# ---------------------------------------------------------------- assertions

class TestFailure(AssertionError):
    pass


class Skip(Exception):
    pass


def fail(msg):
    raise TestFailure(msg)


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def check_eq(got, want, what):
    if got != want:
        raise TestFailure("%s: expected %r, got %r" % (what, want, got))


def check_bytes(got, want, what):
    """Compare two byte strings; on mismatch say where they first differ."""
    if got == want:
        return
    n = min(len(got), len(want))
    i = 0
    while i < n and got[i] == want[i]:
        i += 1
    raise TestFailure(
        "%s: bytes differ (got %d bytes, expected %d), first difference at offset %d:\n"
        "  expected ...%r...\n  got      ...%r..."
        % (what, len(got), len(want), i, want[max(0, i - 40):i + 40],
           got[max(0, i - 40):i + 40]))


def wait_for(pred, timeout, what, interval=0.05):
    """Poll pred() until it returns a true value; fail after timeout seconds."""
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            fail("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(interval)


# ---------------------------------------------------------------- ports

_given_ports = set()


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    for _ in range(200):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _given_ports:
            _given_ports.add(port)
            return port
    fail("no free port")


def _listening_ports():
    """Ports in LISTEN state on IPv4/IPv6 (from /proc/net/tcp*)."""
    ports = set()
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(f) as fh:
                next(fh)
                for line in fh:
                    parts = line.split()
                    if parts[3] == "0A":
                        ports.add(int(parts[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


def wait_listening(port, timeout=10.0, proc=None, what="server"):
    """
    Wait until something listens on port. Uses /proc/net/tcp so that no
    probe connection is made (a probe would take a connection slot and
    leave log lines). Fails early when proc has exited.
    """
    deadline = time.time() + timeout
    have_proc = os.path.exists("/proc/net/tcp")
    while True:
        if proc is not None and proc.poll() is not None:
            fail("%s exited with status %s before listening on port %d"
                 % (what, proc.returncode, port))
        if have_proc:
            if port in _listening_ports():
                return
        else:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                return
            except OSError:
                pass
        if time.time() > deadline:
            fail("%s not listening on port %d after %.0fs" % (what, port, timeout))
        time.sleep(0.05)


def port_refuses(port):
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return False
    except ConnectionRefusedError:
        return True


# ---------------------------------------------------------------- test context

class Ctx:
    """One test's work dir, processes and cleanup."""

    def __init__(self, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="scanrelay-integ-%s-" % name)
        os.chmod(self.dir, 0o755)  # smtp-sink runs as nobody and must reach its dump dir
        self._cleanups = []
        self.failed = False

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def mkdir(self, *parts, mode=0o755):
        p = self.path(*parts)
        os.makedirs(p, exist_ok=True)
        os.chmod(p, mode)
        return p

    def at_exit(self, fn):
        self._cleanups.append(fn)

    def cleanup(self):
        """Run cleanups in reverse order; return a list of failure messages."""
        errs = []
        while self._cleanups:
            fn = self._cleanups.pop()
            try:
                fn()
            except Exception as e:  # keep cleaning up
                errs.append("cleanup: %s" % e)
        return errs

    def finish(self, ok):
        keep = (not ok) or os.environ.get("SCANRELAY_KEEP")
        if keep:
            print("  work dir kept: %s" % self.dir, flush=True)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def start_process(ctx, argv, name, env=None, cwd=None):
    """Start argv with stdout+stderr to DIR/name.log; killed at cleanup if still running."""
    logpath = ctx.path("%s.log" % name)
    logf = open(logpath, "ab")
    p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         env=env, cwd=cwd or ctx.dir, start_new_session=True)
    logf.close()
    p.logpath = logpath

    def kill():
        if p.poll() is None:
            p.kill()
            p.wait(10)
    ctx.at_exit(kill)
    return p


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


# ---------------------------------------------------------------- smtp-sink

class Dump:
    """One parsed smtp-sink dump file."""

    def __init__(self, path, raw):
        self.path = path
        self.raw = raw
        self.headers = []          # (name, value) of the smtp-sink generated records
        self.client_addr = None
        self.client_proto = None
        self.helo = None
        self.mail_args = None      # text after "MAIL FROM:" as received
        self.rcpt_args = []        # texts after "RCPT TO:", in order
        self.received = None       # the three-line Received header (text)
        self.message = b""         # the message as stored: CRs dropped, unstuffed
        self.complete = False      # ended with the extra "\n" after the Received header

    @property
    def sender(self):
        return split_args(self.mail_args)[0]

    @property
    def mail_params(self):
        return split_args(self.mail_args)[1]

    @property
    def recipients(self):
        return [split_args(a)[0] for a in self.rcpt_args]

    def rcpt_params(self, i=0):
        return split_args(self.rcpt_args[i])[1]

    def header(self, name):
        """First header of the relayed message with that name (unfolded text), or None."""
        hdr = self.message.split(b"\n\n", 1)[0].decode("utf-8", "replace")
        m = re.search(r"(?im)^%s:[ \t]*(.*(?:\n[ \t].*)*)" % re.escape(name), hdr)
        return re.sub(r"\n[ \t]+", " ", m.group(1)) if m else None


def split_args(args):
    """'<a@b> K=V X' -> ('a@b', {'K': 'V', 'X': None}). Keyword names uppercased."""
    if args is None:
        return None, {}
    m = re.match(r"\s*<([^>]*)>\s*(.*)$", args)
    if m:
        addr, rest = m.group(1), m.group(2)
    else:
        parts = args.split(None, 1)
        addr, rest = (parts[0] if parts else ""), (parts[1] if len(parts) > 1 else "")
    params = {}
    for tok in rest.split():
        k, eq, v = tok.partition("=")
        params[k.upper()] = v if eq else None
    return addr, params


def parse_dump(raw, path="?", start_string=b""):
    """Parse smtp-sink dump bytes (see the format notes at the top)."""
    d = Dump(path, raw)
    buf = raw
    if start_string:
        if not buf.startswith(start_string):
            raise ValueError("%s: does not start with the -S string" % path)
        buf = buf[len(start_string):]
    pos = 0
    while True:
        nl = buf.find(b"\n", pos)
        if nl < 0:
            return d  # incomplete (transaction still open)
        line = buf[pos:nl].decode("utf-8", "replace")
        pos = nl + 1
        name, _, value = line.partition(": ")
        if name == "Received":
            # two continuation lines, each starting with a TAB
            rec = [line]
            for _ in range(2):
                nl = buf.find(b"\n", pos)
                if nl < 0 or buf[pos:pos + 1] != b"\t":
                    return d
                rec.append(buf[pos:nl].decode("utf-8", "replace"))
                pos = nl + 1
            d.received = "\n".join(rec)
            break
        d.headers.append((name, value))
        if name == "X-Client-Addr":
            d.client_addr = value
        elif name == "X-Client-Proto":
            d.client_proto = value
        elif name == "X-Helo-Args":
            d.helo = value
        elif name == "X-Mail-Args":
            d.mail_args = value
        elif name == "X-Rcpt-Args":
            d.rcpt_args.append(value)
        else:
            raise ValueError("%s: unexpected smtp-sink record %r" % (path, line))
    body = buf[pos:]
    if body.endswith(b"\n"):
        d.complete = True
        d.message = body[:-1]
    else:
        d.message = body
    return d


def sink_view(msg):
    """
    What smtp-sink stores for a message sent as msg (unstuffed bytes): SMTP
    completes a last line without CRLF, and smtp-sink drops every CR.
    """
    if not msg.endswith(b"\r\n"):
        msg += b"\r\n"
    return msg.replace(b"\r", b"")


class SmtpSink:
    """
    smtp-sink on a free port with a dump dir. faults: dict of option letter
    -> command list, e.g. {"f": "RCPT"} (5xx), {"r": "MAIL"} (4xx),
    {"q": "DATA"} (drop), {"Q": "."} (421 + drop), {"B": "554 5.7.9 text"}
    (hard reply text), {"b": "..."} (soft reply text).
    """

    def __init__(self, ctx, faults=None, verbose=False, hostname=None, extra=(), name="sink",
                 port=None):
        self.ctx = ctx
        self.name = name
        self.port = port or free_port()
        self.dumpdir = ctx.mkdir(name + "-dump", mode=0o777)
        argv = ["smtp-sink"]
        if IS_ROOT:
            argv += ["-u", "nobody"]
        if verbose:
            argv.append("-v")
        if hostname:
            argv += ["-h", hostname]
        for opt, val in (faults or {}).items():
            argv += ["-" + opt, val]
        argv += list(extra)
        argv += ["-d", os.path.join(self.dumpdir, "%H%M%S."), "127.0.0.1:%d" % self.port, "256"]
        self.argv = argv
        self.proc = start_process(ctx, argv, name)
        wait_listening(self.port, 10, self.proc, "smtp-sink")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def log(self):
        return read_text(self.proc.logpath)

    def files(self):
        return sorted(os.listdir(self.dumpdir))

    def dumps(self, complete_only=True):
        out = []
        for f in self.files():
            p = os.path.join(self.dumpdir, f)
            try:
                with open(p, "rb") as fh:
                    raw = fh.read()
            except FileNotFoundError:
                continue  # unlinked (aborted transaction) meanwhile
            d = parse_dump(raw, p)
            if d.complete or not complete_only:
                out.append(d)
        out.sort(key=lambda d: os.stat(d.path).st_mtime_ns if os.path.exists(d.path) else 0)
        return out

    def wait_dumps(self, n, timeout=30):
        """Wait until at least n complete dumps exist; return them all."""
        def enough():
            ds = self.dumps()
            return ds if len(ds) >= n else None
        return wait_for(enough, timeout, "%d message(s) at smtp-sink (%s)" % (n, self.dumpdir),
                        interval=0.1)

    def commands(self):
        """With verbose=True: the command lines smtp-sink received, in order."""
        out = []
        for line in self.log().splitlines():
            m = re.match(r"smtp-sink: (.*)$", line)
            if m:
                out.append(m.group(1))
        return out


# ---------------------------------------------------------------- RawSink

DEFAULT_RAW_EHLO = ["PIPELINING", "SIZE 104857600", "8BITMIME", "SMTPUTF8",
                    "ENHANCEDSTATUSCODES", "DSN",
                    "XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE"]


class RawTx:
    def __init__(self):
        self.xforward = []     # XFORWARD lines seen since the last transaction
        self.mail = None       # the MAIL command line, verbatim
        self.rcpts = []        # accepted RCPT lines
        self.refused = []      # refused RCPT lines
        self.wire = None       # DATA bytes as on the wire (stuffed), CRLF before "." included
        self.final = None      # our reply to "."

    @property
    def message(self):
        """Unstuffed message bytes."""
        if self.wire is None:
            return None
        return unstuff(self.wire)


def unstuff(wire):
    out = []
    for line in wire.split(b"\r\n"):
        out.append(line[1:] if line.startswith(b".") else line)
    return b"\r\n".join(out)


def dot_stuff(msg):
    """SMTP DATA payload for msg: CRLF-completed, leading dots doubled, plus '.CRLF'."""
    if not msg.endswith(b"\r\n"):
        msg += b"\r\n"
    if msg.startswith(b"."):
        msg = b"." + msg
    return msg.replace(b"\r\n.", b"\r\n..") + b".\r\n"


class RawSink:
    """
    A minimal threaded SMTP server that records everything verbatim.
    policy(verb, line, tx) may return a reply line (str) to override the
    default 2xx/354 reply; verb is 'CONNECT', 'EHLO', 'MAIL', 'RCPT', 'DATA',
    '.', 'XFORWARD', ...
    """

    def __init__(self, ctx, ehlo=None, policy=None, hostname="rawsink"):
        self.ctx = ctx
        self.ehlo = DEFAULT_RAW_EHLO if ehlo is None else ehlo
        self.policy = policy
        self.hostname = hostname
        self.port = free_port()
        self.lock = threading.Lock()
        self.sessions = []     # list of lists of command lines
        self.txs = []          # completed transactions (reached ".")
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", self.port))
        self.srv.listen(64)
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        ctx.at_exit(self.stop)

    def stop(self):
        self.stopping = True
        try:
            self.srv.close()
        except OSError:
            pass

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _reply(self, verb, line, tx, default):
        if self.policy:
            r = self.policy(verb, line, tx)
            if r is not None:
                return r
        return default

    def _serve(self, c):
        cmds = []
        with self.lock:
            self.sessions.append(cmds)
        buf = b""
        tx = RawTx()

        def send(s):
            c.sendall(s.encode() + b"\r\n" if isinstance(s, str) else s)

        def readline():
            nonlocal buf
            while b"\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return None
                buf += d
            line, buf = buf.split(b"\r\n", 1)
            return line

        try:
            c.settimeout(120)
            r = self._reply("CONNECT", "", tx, "220 %s ESMTP" % self.hostname)
            send(r)
            if r.startswith("421"):
                return
            while True:
                raw = readline()
                if raw is None:
                    return
                line = raw.decode("utf-8", "surrogateescape")
                with self.lock:
                    cmds.append(line)
                verb = line.split(" ", 1)[0].split(":", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    tx = RawTx()
                    if verb == "EHLO":
                        lines = [self.hostname] + list(self.ehlo)
                        out = "".join("250%s%s\r\n" % ("-" if i < len(lines) - 1 else " ", l)
                                      for i, l in enumerate(lines))
                        send(self._reply(verb, line, tx, out.rstrip("\r\n")))
                    else:
                        send(self._reply(verb, line, tx, "250 %s" % self.hostname))
                elif verb == "XFORWARD":
                    tx.xforward.append(line)
                    send(self._reply(verb, line, tx, "250 2.0.0 Ok"))
                elif verb == "MAIL":
                    r = self._reply(verb, line, tx, "250 2.1.0 Ok")
                    if r.startswith("2"):
                        tx.mail = line
                    send(r)
                elif verb == "RCPT":
                    r = self._reply(verb, line, tx, "250 2.1.5 Ok")
                    (tx.rcpts if r.startswith("2") else tx.refused).append(line)
                    send(r)
                elif verb == "DATA":
                    r = self._reply(verb, line, tx, "354 End data with <CR><LF>.<CR><LF>")
                    send(r)
                    if not r.startswith("354"):
                        continue
                    # read up to CRLF.CRLF; the data starts right after our 354
                    data = b"\r\n" + buf
                    buf = b""
                    while True:
                        i = data.find(b"\r\n.\r\n")
                        if i >= 0:
                            break
                        d = c.recv(1 << 20)
                        if not d:
                            return
                        data += d
                    tx.wire = data[2:i + 2]
                    buf = data[i + 5:]
                    r = self._reply(".", "", tx, "250 2.0.0 Ok: queued as RAW%d" % len(self.txs))
                    tx.final = r
                    with self.lock:
                        self.txs.append(tx)
                    send(r)
                    tx = RawTx()
                elif verb == "RSET":
                    tx = RawTx()
                    send(self._reply(verb, line, tx, "250 2.0.0 Ok"))
                elif verb == "QUIT":
                    send(self._reply(verb, line, tx, "221 2.0.0 Bye"))
                    return
                elif verb == "NOOP":
                    send(self._reply(verb, line, tx, "250 2.0.0 Ok"))
                else:
                    send(self._reply(verb, line, tx, "502 5.5.2 Error: command not recognized"))
        except OSError:
            return
        finally:
            try:
                c.close()
            except OSError:
                pass

    def all_commands(self):
        with self.lock:
            return [l for s in self.sessions for l in s]

    def wait_txs(self, n, timeout=30):
        return wait_for(lambda: list(self.txs) if len(self.txs) >= n else None, timeout,
                        "%d transaction(s) at the raw sink" % n)


# ---------------------------------------------------------------- scanrelayd

class Raw(str):
    """A config value written without quotes (sizes, durations, booleans)."""


def conf_value(v):
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join('"%s"' % x for x in v) + "}"
    return '"%s"' % v


def render_config(top, sections):
    lines = ["# written by t/integ/harness.py"]
    for k, v in top.items():
        if v is not None:
            lines.append("%s = %s" % (k, conf_value(v)))
    for name, kv in sections.items():
        lines.append("%s {" % name)
        for k, v in kv.items():
            lines.append("    %s = %s" % (k, conf_value(v)))
        lines.append("}")
    return "\n".join(lines) + "\n"


class LogLine:
    """A parsed per-message log line: qid and key=value fields."""

    def __init__(self, line, qid, fields):
        self.line = line
        self.qid = qid
        self.fields = fields

    def __getitem__(self, k):
        return self.fields[k]

    def get(self, k, d=None):
        return self.fields.get(k, d)

    def __repr__(self):
        return self.line


_LOG_RE = re.compile(r"scanrelayd\[(\d+)\]: ([0-9A-Za-z]+): (from=<.*)$")


def parse_log_line(line):
    m = _LOG_RE.search(line)
    if not m:
        return None
    qid, rest = m.group(2), m.group(3)
    fields = {}
    i = rest.find(", status=")
    if i >= 0:
        fields["status_text"] = rest[i + len(", status="):]
        st = fields["status_text"]
        fields["status"] = st.split(" ", 1)[0]
        p = st.find("(")
        fields["status_reply"] = st[p + 1:st.rfind(")")] if p >= 0 else ""
        rest = rest[:i]
    for fm in re.finditer(r"(?:^|, )(\w+)=(<[^>]*>|[^,]*(?:\([^)]*\))?)", rest):
        k, v = fm.group(1), fm.group(2)
        if v.startswith("<") and v.endswith(">"):
            v = v[1:-1]
        fields.setdefault(k, v)
    return LogLine(line, qid, fields)


class Scanrelayd:
    """scanrelayd -f -c CONF in ctx.dir. Keyword overrides go into the config."""

    def __init__(self, ctx, relay_port=None, sections=None, start=True, name="scanrelayd",
                 **overrides):
        if not os.path.exists(DAEMON):
            fail("scanrelayd is not built: %s does not exist" % DAEMON)
        self.ctx = ctx
        self.name = name
        self.port = free_port()
        self.relay_port = relay_port if relay_port is not None else free_port()
        self.state_dir = ctx.mkdir(name + "-state")
        self.queue_dir = ctx.mkdir(name + "-queue")
        self.conf_path = ctx.path(name + ".conf")
        self.top = {
            "listen": "127.0.0.1:%d" % self.port,
            "relay": "127.0.0.1:%d" % self.relay_port,
            "state_directory": self.state_dir,
            "queue_directory": self.queue_dir,
            "control_socket": ctx.path(name + "-control.sock"),
            "max_message_size": Raw("30M"),
            "max_recipients": 1000,
            "max_connections": 100,
            "max_command_length": 2048,
            "smtpd_timeout": Raw("60s"),
            "relay_timeout": Raw("30s"),
            "relay_connect_timeout": Raw("5s"),
            "relay_idle_time": Raw("2s"),
            "shutdown_timeout": Raw("20s"),
            "xforward_networks": ["127.0.0.0/8"],
            "debug": Raw("no"),
        }
        self.top.update(overrides)
        self.sections = {"scan": {"enabled": Raw("no")}}
        for k, v in (sections or {}).items():
            self.sections.setdefault(k, {}).update(v)
        self.write_config()
        self.proc = None
        self.logpath = ctx.path(name + ".log")
        self._log_offset = 0
        if start:
            self.start()

    def write_config(self, text=None):
        with open(self.conf_path, "w") as f:
            f.write(text if text is not None else render_config(self.top, self.sections))

    def start(self):
        self.proc = start_process(self.ctx, [DAEMON, "-f", "-c", self.conf_path], self.name)
        self.ctx.at_exit(self._cleanup_stop)
        wait_listening(self.port, 15, self.proc, "scanrelayd")

    def _cleanup_stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        self.check_log_sane()

    def stop(self, timeout=30, expect_rc=0):
        """SIGTERM, wait, and assert a clean exit (status 0, no sanitizer report)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            fail("scanrelayd did not exit within %ds of SIGTERM" % timeout)
        if expect_rc is not None and rc != expect_rc:
            fail("scanrelayd exited with status %d after SIGTERM (expected %d); log tail:\n%s"
                 % (rc, expect_rc, "\n".join(self.log().splitlines()[-15:])))
        self.check_log_sane()
        return rc

    def check_log_sane(self):
        text = self.log()
        for bad in ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer",
                    "panic:"):
            if bad in text:
                i = text.find(bad)
                fail("scanrelayd log shows %r:\n%s" % (bad, text[max(0, i - 200):i + 1500]))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def log(self):
        return read_text(self.logpath)

    def log_mark(self):
        """Remember the current end of the log; log_since() returns what came after."""
        self._log_offset = len(self.log())
        return self._log_offset

    def log_since(self, mark=None):
        return self.log()[self._log_offset if mark is None else mark:]

    def wait_log(self, regex, timeout=10, since=0):
        r = re.compile(regex)
        return wait_for(lambda: r.search(self.log()[since:]), timeout,
                        "log line matching %r in %s" % (regex, self.logpath))

    def message_logs(self, since=0):
        out = []
        for line in self.log()[since:].splitlines():
            p = parse_log_line(line)
            if p:
                out.append(p)
        return out

    def wait_message_logs(self, pred, n=1, timeout=10, since=0):
        return wait_for(lambda: (lambda l: l if len(l) >= n else None)(
            [x for x in self.message_logs(since) if pred(x)]), timeout,
            "%d per-message log line(s) in %s" % (n, self.logpath))

    def spool_files(self):
        """Regular files under the queue dir and state dir (relative paths)."""
        out = set()
        for base in (self.queue_dir, self.state_dir):
            for root, _, files in os.walk(base):
                for f in files:
                    out.add(os.path.relpath(os.path.join(root, f), self.ctx.dir))
        return out


DB_FILE_RE = re.compile(r"\.(db|sqlite3?|db-wal|db-shm|db-journal|sqlite-wal|sqlite-shm)$")


def leftover_files(before, after):
    """New regular files, ignoring SQLite database files (the message log)."""
    return sorted(f for f in after - before if not DB_FILE_RE.search(f))


def run_daemon_check(conf_path, timeout=30):
    """scanrelayd -t -c CONF -> (status, combined output)."""
    p = subprocess.run([DAEMON, "-t", "-c", conf_path], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


# ---------------------------------------------------------------- SMTP client

class Reply:
    def __init__(self, code, lines):
        self.code = code
        self.lines = lines        # texts after "NNN-" / "NNN "

    @property
    def text(self):
        return self.lines[0] if self.lines else ""

    @property
    def enhanced(self):
        m = re.match(r"([245]\.\d{1,3}\.\d{1,3})\b", self.text)
        return m.group(1) if m else None

    def line(self):
        return ("%d %s" % (self.code, self.text)).rstrip()

    def __repr__(self):
        return "<Reply %s>" % " / ".join("%d %s" % (self.code, l) for l in self.lines)

    def __str__(self):
        return self.line()


class Closed(Exception):
    pass


class SmtpClient:
    """A raw SMTP client: any bytes, explicit reply reading."""

    def __init__(self, port, host="127.0.0.1", timeout=30, read_greeting=True):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout)
        self.buf = b""
        self.extensions = {}
        self.greeting = self.read_reply() if read_greeting else None

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _readline(self, timeout):
        deadline = time.time() + (timeout if timeout is not None else self.timeout)
        while b"\n" not in self.buf:
            left = deadline - time.time()
            if left <= 0:
                raise TestFailure("timed out waiting for a reply line (have %r)" % self.buf)
            self.sock.settimeout(left)
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                d = b""
            if not d:
                raise Closed("connection closed by server (partial %r)" % self.buf)
            self.buf += d
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def read_reply(self, timeout=None):
        lines = []
        code = None
        while True:
            l = self._readline(timeout)
            m = re.match(r"(\d{3})([ -]?)(.*)$", l)
            if not m:
                raise TestFailure("malformed reply line %r" % l)
            code = int(m.group(1))
            lines.append(m.group(3))
            if m.group(2) != "-":
                return Reply(code, lines)

    def cmd(self, line, timeout=None):
        self.send(line + "\r\n")
        return self.read_reply(timeout)

    def ehlo(self, name="client.example.com"):
        r = self.cmd("EHLO " + name)
        self.extensions = {}
        for l in r.lines[1:]:
            k, _, v = l.partition(" ")
            self.extensions[k.upper()] = v
        return r

    def data(self, msg, timeout=None):
        """DATA + message (stuffed here). Returns (354-or-error reply, final reply or None)."""
        r = self.cmd("DATA")
        if r.code != 354:
            return r, None
        self.send(dot_stuff(msg))
        return r, self.read_reply(timeout)

    def transaction(self, sender, rcpts, msg, mail_params="", rcpt_params="", timeout=None):
        """
        One transaction without pipelining. Returns a Tx with .mail, .rcpts,
        .data (354 reply), .final, and .first_error (the first reply >= 400
        among them, or None).
        """
        tx = Tx()
        tx.mail = self.cmd("MAIL FROM:<%s>%s" % (sender, (" " + mail_params) if mail_params else ""))
        if tx.mail.code >= 400:
            tx.first_error = tx.mail
            return tx
        for r in rcpts:
            rr = self.cmd("RCPT TO:<%s>%s" % (r, (" " + rcpt_params) if rcpt_params else ""))
            tx.rcpts.append(rr)
        if not any(r.code < 400 for r in tx.rcpts):
            tx.first_error = next((r for r in tx.rcpts if r.code >= 400), None)
            self.cmd("RSET")
            return tx
        tx.data, tx.final = self.data(msg, timeout)
        for r in [tx.mail] + tx.rcpts + [tx.data, tx.final]:
            if r is not None and r.code >= 400:
                tx.first_error = r
                break
        return tx

    def quit(self):
        try:
            r = self.cmd("QUIT", timeout=10)
        except (Closed, OSError):
            r = None
        self.close()
        return r

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def closed_by_peer(self, timeout=5):
        """True when the server closes the connection within timeout (data is read and dropped)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            r, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.time()))
            if not r:
                return False
            try:
                d = self.sock.recv(65536)
            except (ConnectionResetError, OSError):
                return True
            if not d:
                return True
            self.buf += d
        return False


class Tx:
    def __init__(self):
        self.mail = None
        self.rcpts = []
        self.data = None
        self.final = None
        self.first_error = None

    def __repr__(self):
        return "<Tx mail=%r rcpts=%r data=%r final=%r>" % (self.mail, self.rcpts, self.data,
                                                          self.final)


def simple_message(subject="test", body="Hello.\r\n", msgid=None, extra=""):
    msgid = msgid or "<%s.%d@integ.example>" % (time.time(), os.getpid())
    return ("From: <sender@example.com>\r\nTo: <rcpt@example.org>\r\nSubject: %s\r\n"
            "Message-ID: %s\r\n%s\r\n%s" % (subject, msgid, extra, body)).encode()


# ---------------------------------------------------------------- swaks

def swaks(port, *args, timeout=120):
    """Run swaks against 127.0.0.1:port; returns (status, output text)."""
    argv = ["swaks", "--server", "127.0.0.1", "--port", str(port), "--hide-informational"] + list(args)
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def swaks_replies(output):
    """Server reply lines from swaks output ('<-  250 ...', '<~ ', '<** ')."""
    out = []
    for line in output.splitlines():
        m = re.match(r"\s*<(?:-|~|\*\*)\s+(\d{3}[ -].*)$", line)
        if m:
            out.append(m.group(1))
    return out


# ---------------------------------------------------------------- Postfix

POSTFIX_DEFAULT_MAIN_CF = "/etc/postfix/main.cf"


def run_tty(argv, timeout=60):
    """
    Run a Postfix command with stderr on a pseudo-terminal: Postfix commands
    print their fatal errors to stderr only when it is a tty (otherwise to
    syslog, which a test machine may not have). Returns (status, output).
    """
    import pty
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
        os.close(slave)
        slave = None
        out = b""
        deadline = time.time() + timeout
        while True:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    d = os.read(master, 65536)
                except OSError:
                    d = b""
                if not d:
                    if p.poll() is not None:
                        break
                else:
                    out += d
            elif p.poll() is not None:
                break
            if time.time() > deadline:
                p.kill()
                break
        rc = p.wait(10)
        return rc, out.decode("utf-8", "replace").replace("\r\n", "\n")
    finally:
        os.close(master)
        if slave is not None:
            os.close(slave)


def _postconf_get(param):
    p = subprocess.run(["postconf", "-h", param], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL)
    return p.stdout.decode().strip() if p.returncode == 0 else ""


def _split_list(v):
    return [x for x in re.split(r"[\s,]+", v) if x]


def allow_config_dir(confdir):
    """
    List confdir in alternate_config_directories of the default main.cf
    (Postfix refuses other config dirs for some commands). Appends only; a
    missing default main.cf is created with a minimal content. Returns a
    function that takes our entry out again.
    """
    if not os.path.exists(POSTFIX_DEFAULT_MAIN_CF):
        os.makedirs(os.path.dirname(POSTFIX_DEFAULT_MAIN_CF), exist_ok=True)
        with open(POSTFIX_DEFAULT_MAIN_CF, "w") as f:
            f.write("# minimal default main.cf written by scanrelay's t/integ/harness.py\n"
                    "compatibility_level = 3.6\n")
    cur = _split_list(_postconf_get("alternate_config_directories"))
    if confdir not in cur:
        subprocess.run(["postconf", "-e", "alternate_config_directories = %s"
                        % ", ".join(cur + [confdir])], check=True)

    def undo():
        now = _split_list(_postconf_get("alternate_config_directories"))
        if confdir in now:
            rest = [x for x in now if x != confdir]
            if rest:
                subprocess.run(["postconf", "-e", "alternate_config_directories = %s"
                                % ", ".join(rest)], check=False)
            else:
                subprocess.run(["postconf", "-X", "alternate_config_directories"], check=False)
    return undo


# Services of a private instance; chroot off ("n") so nothing needs copying.
_PF_MASTER_BASE = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    """
    A private Postfix instance in ctx.dir/postfix-*: a front smtpd on
    front_port whose mail goes through content_filter scan:[127.0.0.1]:filter_port
    (scanrelayd), a re-injection smtpd on reinject_port (no filter, XFORWARD
    allowed from 127.0.0.0/8), and relayhost [127.0.0.1]:relay_port.
    """

    def __init__(self, ctx, filter_port, relay_port, front_port=None, reinject_port=None,
                 extra_main=None):
        if shutil.which("postfix") is None:
            raise Skip("postfix is not installed (scripts/install-deps.sh installs it)")
        if not IS_ROOT:
            raise Skip("a private Postfix instance needs root")
        self.ctx = ctx
        self.conf = ctx.mkdir("postfix-conf")
        self.queue = ctx.mkdir("postfix-queue")
        self.data = ctx.mkdir("postfix-data", mode=0o700)
        shutil.chown(self.data, "postfix")
        self.logdir = ctx.mkdir("postfix-log")
        self.logfile = os.path.join(self.logdir, "postfix.log")
        self.front_port = front_port or free_port()
        self.reinject_port = reinject_port or free_port()
        self.filter_port = filter_port
        self.relay_port = relay_port
        main = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": self.data,
            "myhostname": "pf-integ.example",
            "mydomain": "example",
            "myorigin": "$myhostname",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "relay_domains": "",
            "relayhost": "[127.0.0.1]:%d" % relay_port,
            "content_filter": "scan:[127.0.0.1]:%d" % filter_port,
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "smtp_dns_support_level": "disabled",
            "smtp_host_lookup": "native",
            "smtpd_peername_lookup": "no",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "queue_run_delay": "2s",
            "minimal_backoff_time": "2s",
            "maximal_backoff_time": "4s",
            "maillog_file": self.logfile,
            "maillog_file_prefixes": "/var, /dev/stdout, %s" % self.logdir,
            "biff": "no",
            "message_size_limit": "52428800",
        }
        main.update(extra_main or {})
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            for k, v in main.items():
                f.write("%s = %s\n" % (k, v))
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write("127.0.0.1:%d inet n - n - - smtpd\n"
                    "  -o syslog_name=postfix/front\n" % self.front_port)
            f.write("127.0.0.1:%d inet n - n - 10 smtpd\n"
                    "  -o syslog_name=postfix/reinject\n"
                    "  -o content_filter=\n"
                    "  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters\n"
                    "  -o smtpd_authorized_xforward_hosts=127.0.0.0/8\n"
                    "  -o mynetworks=127.0.0.0/8\n"
                    "  -o smtpd_relay_restrictions=permit_mynetworks,reject\n" % self.reinject_port)
            f.write("scan      unix  -       -       n       -       10      smtp\n"
                    "  -o syslog_name=postfix/scan\n"
                    "  -o smtp_send_xforward_command=yes\n"
                    "  -o disable_mime_output_conversion=yes\n")
            f.write(_PF_MASTER_BASE)
        ctx.at_exit(allow_config_dir(self.conf))
        rc, out = run_tty(["postfix", "-c", self.conf, "check"])
        if rc != 0:
            fail("postfix -c %s check failed (%d):\n%s" % (self.conf, rc, out))
        ctx.at_exit(self.stop)
        rc, out = run_tty(["postfix", "-c", self.conf, "start"])
        if rc != 0:
            fail("postfix -c %s start failed (%d):\n%s\n%s" % (self.conf, rc, out,
                                                               read_text(self.logfile)))
        self.started = True
        wait_listening(self.front_port, 20, what="postfix front smtpd")
        wait_listening(self.reinject_port, 20, what="postfix re-injection smtpd")

    def stop(self):
        if getattr(self, "started", False):
            self.started = False
            rc, out = run_tty(["postfix", "-c", self.conf, "stop"])
            # master exits asynchronously; wait for its pid file lock to go
            pidfile = os.path.join(self.queue, "pid", "master.pid")
            deadline = time.time() + 15
            while time.time() < deadline:
                try:
                    with open(pidfile) as f:
                        pid = int(f.read().strip() or 0)
                    os.kill(pid, 0)
                except (OSError, ValueError):
                    break
                time.sleep(0.1)
            if rc != 0:
                fail("postfix stop failed (%d): %s" % (rc, out))

    def log(self):
        return read_text(self.logfile)

    def flush(self):
        return run_tty(["postqueue", "-c", self.conf, "-f"])

    def queue_listing(self):
        return run_tty(["postqueue", "-c", self.conf, "-p"])[1]


# ---------------------------------------------------------------- runner

def run_tests(namespace, only=None):
    """Run every test_* function of namespace in definition order."""
    tests = [(n, f) for n, f in namespace.items() if n.startswith("test_") and callable(f)]
    sel = only or (sys.argv[1:] if len(sys.argv) > 1 else None)
    if sel:
        tests = [(n, f) for n, f in tests if n in sel or n[5:] in sel]
    passed = failed = skipped = 0
    for name, fn in tests:
        ctx = Ctx(name[5:])
        t0 = time.time()
        ok = True
        why = None
        try:
            fn(ctx)
        except Skip as e:
            ok = None
            why = str(e)
        except Exception as e:
            ok = False
            why = "%s: %s" % (type(e).__name__, e) if not isinstance(e, TestFailure) else str(e)
            if not isinstance(e, TestFailure):
                traceback.print_exc()
        errs = ctx.cleanup()
        if errs and ok is not False:
            ok = False
            why = "; ".join(errs)
        dt = time.time() - t0
        if ok is None:
            skipped += 1
            print("SKIP %s: %s" % (name, why), flush=True)
            ctx.finish(True)
        elif ok:
            passed += 1
            print("PASS %s (%.1fs)" % (name, dt), flush=True)
            ctx.finish(True)
        else:
            failed += 1
            print("FAIL %s (%.1fs): %s" % (name, dt, why), flush=True)
            ctx.finish(False)
    print("%d passed, %d failed%s" % (passed, failed,
                                      (", %d skipped" % skipped) if skipped else ""), flush=True)
    if failed:
        sys.exit(1)
    if skipped and not passed:
        sys.exit(77)
    sys.exit(0)
