"""
queue_util.py - helpers for the deferred-queue tests (t/integ/queue_*.py).

Builds on harness.py (imported, never edited): a scanrelayd with a queue
section tuned for tests, the `scanrelay` command (queue listing parsed from
the postqueue -p layout and from -j), counting Message-IDs at smtp-sink
dumps, concurrent senders that record which messages got their 250, and
RFC 3464 DSN parsing.

Python 3 standard library only.
"""
import email
import email.policy
import json
import os
import random
import re
import socket
import subprocess
import threading
import time
from collections import Counter

from harness import (BUILD, Closed, Raw, Scanrelayd, SmtpClient, TestFailure,  # noqa: F401
                     check, check_eq, dot_stuff, fail, wait_for)

CLI = os.path.join(BUILD, "cli", "scanrelay")

# Fast retries for tests; each test overrides what it needs.
FAST_QUEUE = {
    "queue_run_delay": Raw("1s"),
    "minimal_backoff_time": Raw("1s"),
    "maximal_backoff_time": Raw("2s"),
    "probe_interval": Raw("1s"),
    "min_free_space": Raw("1M"),
}


def queue_daemon(ctx, relay_port=None, queue=None, start=True, name="scanrelayd", **overrides):
    """A Scanrelayd with a queue { } section (FAST_QUEUE updated with queue)."""
    q = dict(FAST_QUEUE)
    q.update(queue or {})
    if "queue_directory" in overrides and start:
        # the harness sets queue_dir before applying overrides: start by hand
        d = Scanrelayd(ctx, relay_port=relay_port, sections={"queue": q}, start=False, name=name,
                       **overrides)
        d.queue_dir = overrides["queue_directory"]
        d.start()
        return d
    d = Scanrelayd(ctx, relay_port=relay_port, sections={"queue": q}, start=start, name=name,
                   **overrides)
    if "queue_directory" in overrides:
        d.queue_dir = overrides["queue_directory"]
    return d


# ---------------------------------------------------------------- the command

def cli(d, *args, json_out=False, timeout=60):
    """scanrelay -c CONF [-j] ARGS... -> (status, stdout, stderr)."""
    if not os.path.exists(CLI):
        fail("scanrelay is not built: %s does not exist" % CLI)
    argv = [CLI, "-c", d.conf_path] + (["-j"] if json_out else []) + list(args)
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def cli_ok(d, *args, json_out=False, timeout=60):
    rc, out, err = cli(d, *args, json_out=json_out, timeout=timeout)
    if rc != 0:
        fail("scanrelay %s: exit status %d\nstdout: %s\nstderr: %s"
             % (" ".join(args), rc, out, err))
    return out


QHEADER = "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------"
_ENTRY_RE = re.compile(r"^([0-9A-Za-z]+)(!?)\s+(\d+)\s+"
                       r"((?:Sun|Mon|Tue|Wed|Thu|Fri|Sat) "
                       r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                       r"[ \d]\d \d\d:\d\d:\d\d)\s+(\S.*)$")
_TRAILER_RE = re.compile(r"^-- (\d+) Kbytes in (\d+) Requests?\.$")


class QueueListing:
    def __init__(self):
        self.empty = False
        self.entries = []          # dicts: id, held, size, arrival, sender, rcpts {addr: reason}
        self.kbytes = None
        self.requests = None

    def ids(self):
        return [e["id"] for e in self.entries]

    def by_id(self, qid):
        for e in self.entries:
            if e["id"] == qid:
                return e
        return None


def parse_queue_text(out):
    """
    Parse `scanrelay queue` (postqueue -p layout) strictly: header line,
    blocks "ID[!] size arrival sender" / "(reason)" / recipients (41
    columns in), each followed by one blank line, then the trailer.
    """
    lst = QueueListing()
    lines = out.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if lines == ["Mail queue is empty"]:
        lst.empty = True
        return lst
    if not lines:
        fail("scanrelay queue printed nothing")
    check_eq(lines[0], QHEADER, "postqueue -p header line")
    m = _TRAILER_RE.match(lines[-1])
    check(m is not None, "postqueue -p trailer '-- N Kbytes in M Requests.' expected, got %r"
          % lines[-1])
    lst.kbytes, lst.requests = int(m.group(1)), int(m.group(2))
    body = lines[1:-1]
    i = 0
    while i < len(body):
        m = _ENTRY_RE.match(body[i])
        check(m is not None, "queue listing line %d: expected 'ID size arrival sender', got %r"
              % (i + 2, body[i]))
        ent = {"id": m.group(1), "held": m.group(2) == "!", "size": int(m.group(3)),
               "arrival": m.group(4), "sender": m.group(5), "rcpts": {}}
        i += 1
        reason = None
        while i < len(body) and body[i] != "":
            line = body[i]
            rm = re.match(r"^\s*\((.*)\)$", line)
            if rm and not line.startswith(" " * 41 + "("):
                reason = rm.group(1)
            elif line.startswith(" " * 41) and line[41:42] != " ":
                ent["rcpts"][line[41:]] = reason
            elif rm:
                reason = rm.group(1)  # a long reason printed flush left
            else:
                fail("queue listing line %d: unexpected %r" % (i + 2, line))
            i += 1
        check(i < len(body), "queue listing: no blank line after message %s" % ent["id"])
        i += 1  # the blank line
        lst.entries.append(ent)
    check_eq(lst.requests, len(lst.entries), "trailer request count vs listed messages")
    return lst


def queue_listing(d):
    return parse_queue_text(cli_ok(d, "queue"))


def queue_json(d):
    out = cli_ok(d, "queue", json_out=True)
    objs = []
    for n, line in enumerate(out.splitlines()):
        try:
            objs.append(json.loads(line))
        except ValueError as e:
            fail("scanrelay -j queue line %d is not JSON (%s): %r" % (n + 1, e, line))
    return objs


def queue_files(d, sub):
    p = os.path.join(d.queue_dir, sub)
    try:
        return sorted(os.listdir(p))
    except FileNotFoundError:
        return []


def queue_count(d):
    return len(queue_files(d, "deferred")) + len(queue_files(d, "hold"))


def wait_queue_empty(d, timeout=60):
    """Wait until deferred/ and hold/ hold no file."""
    wait_for(lambda: queue_count(d) == 0, timeout,
             "the deferred queue to drain (%d left)" % queue_count(d), interval=0.2)


def check_listing_empty(d):
    """`scanrelay queue` on an empty queue prints exactly 'Mail queue is empty'."""
    rc, out, err = cli(d, "queue")
    check(rc == 0 and out == "Mail queue is empty\n",
          "scanrelay queue on an empty queue: expected 'Mail queue is empty' and status 0, "
          "got status %d, stdout %r, stderr %r" % (rc, out, err.strip()))


def kill9(d):
    """SIGKILL the daemon and reap it."""
    if d.proc is not None and d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait(10)


# ---------------------------------------------------------------- messages

def make_message(msgid, subject="queue test", size=0, sender="sender@example.com",
                 rcpt="rcpt@example.org"):
    """A message with the given Message-ID, padded with body lines to about size bytes."""
    head = ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: %s\r\n"
            "Date: Thu, 01 Jan 2025 00:00:00 +0000\r\n\r\n" % (sender, rcpt, subject, msgid))
    body = "Hello from the queue tests.\r\n"
    line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n"
    while len(head) + len(body) + len(END_LINE) < size:
        body += line
    return (head + body + END_LINE).encode()


# The last line of every test message: a dump that ends with it is complete
# (a dump cut by a stopped smtp-sink may still end with a newline).
END_LINE = "-- end of queue test message --\r\n"


def send_one(port, sender, rcpts, msg, timeout=60, mail_params=""):
    """
    One transaction on a new connection. Returns the final reply (harness
    Reply) or the first error reply; raises OSError/Closed when the
    connection fails.
    """
    c = SmtpClient(port, timeout=timeout)
    try:
        r = c.ehlo("queue-test.example")
        if r.code != 250:
            return r
        tx = c.transaction(sender, list(rcpts), msg, mail_params=mail_params, timeout=timeout)
        return tx.first_error or tx.final
    finally:
        try:
            c.quit()
        except Exception:
            c.close()


QUEUED_RE = re.compile(r"queued as ([0-9A-Za-z]+)")


def queued_id(reply):
    m = QUEUED_RE.search(reply.text)
    return m.group(1) if m else None


def send_queued(d, msgid, sender="sender@example.com", rcpts=("rcpt@example.org",), size=0):
    """Send one message while the downstream is away; expect 250 + deferred; return the ID."""
    r = send_one(d.port, sender, rcpts, make_message(msgid, size=size, sender=sender or "x@y",
                                                     rcpt=rcpts[0]))
    check(r.code == 250 and "deferred" in r.text,
          "message %s during the outage: expected '250 ... queued as ID (deferred: ...)', got %r"
          % (msgid, r))
    qid = queued_id(r)
    check(qid is not None, "no queue ID in %r" % r)
    return qid


# ---------------------------------------------------------------- smtp-sink dumps

_MSGID_RE = re.compile(rb"(?im)^Message-ID:[ \t]*(<[^>\r\n]*>)")


def dump_message_ids(dumpdir):
    """
    Counter of Message-IDs over the complete smtp-sink dumps in dumpdir: the
    first Message-ID header of each message that ends with END_LINE (made by
    make_message), so a dump cut short by a stopped smtp-sink never counts,
    nor does a DSN.
    """
    cnt = Counter()
    for f in os.listdir(dumpdir):
        p = os.path.join(dumpdir, f)
        try:
            with open(p, "rb") as fh:
                raw = fh.read()
        except (FileNotFoundError, IsADirectoryError):
            continue
        if not raw.endswith(END_LINE.replace("\r", "").encode() + b"\n"):
            continue  # open or cut transaction (or not one of our test messages)
        # The message starts after smtp-sink's three-line Received record.
        i = raw.find(b"\nReceived: from ")
        j = raw.find(b"\n", raw.find(b"\n\t", raw.find(b"\n\t", i + 1) + 1) + 1) if i >= 0 else -1
        msg = raw[j + 1:] if j >= 0 else raw
        hdr = msg.split(b"\n\n", 1)[0]
        m = _MSGID_RE.search(hdr)
        if m:
            cnt[m.group(1).decode("ascii", "replace")] += 1
    return cnt


# ---------------------------------------------------------------- DSNs

class Dsn:
    """An RFC 3464 report parsed from message bytes."""

    def __init__(self, raw):
        self.raw = raw
        self.msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        self.content_type = self.msg.get_content_type()
        self.report_type = self.msg.get_param("report-type")
        self.human = ""
        self.per_message = {}
        self.per_rcpt = []
        self.returned = None
        if not self.msg.is_multipart():
            return
        for part in self.msg.get_payload():
            ct = part.get_content_type()
            if ct == "message/delivery-status":
                blocks = part.get_payload()
                if isinstance(blocks, str):  # some parsers keep it as text
                    blocks = [email.message_from_string(b.strip() + "\n")
                              for b in re.split(r"\r?\n\r?\n", blocks) if b.strip()]
                if blocks:
                    self.per_message = dict((k.lower(), v) for k, v in blocks[0].items())
                    for b in blocks[1:]:
                        self.per_rcpt.append(dict((k.lower(), v) for k, v in b.items()))
            elif ct == "text/plain" and not self.human:
                pl = part.get_payload(decode=True) or b""
                self.human = pl.decode("utf-8", "replace")
            elif ct in ("message/rfc822", "text/rfc822-headers", "message/global",
                        "message/global-headers"):
                self.returned = part

    def rcpt(self, addr):
        for r in self.per_rcpt:
            if addr.lower() in (r.get("final-recipient") or "").lower():
                return r
        return None


def check_dsn(raw, sender_of_dsn_dump, failed_rcpt, what, expect_status=None):
    """Assert the RFC 3464 shape; return the Dsn."""
    dsn = Dsn(raw)
    check_eq(sender_of_dsn_dump, "", "%s: envelope sender of the DSN (MAIL FROM)" % what)
    check_eq(dsn.content_type, "multipart/report", "%s: DSN Content-Type" % what)
    check_eq(dsn.report_type, "delivery-status", "%s: DSN report-type" % what)
    frm = dsn.msg.get("From", "")
    check("MAILER-DAEMON" in frm.upper(), "%s: DSN From: should be MAILER-DAEMON, got %r"
          % (what, frm))
    r = dsn.rcpt(failed_rcpt)
    check(r is not None, "%s: no per-recipient block with Final-Recipient %s in %r"
          % (what, failed_rcpt, dsn.per_rcpt))
    fr = re.sub(r"\s+", " ", r.get("final-recipient", "")).strip()
    check(re.match(r"(?i)^rfc822; ?<?%s>?$" % re.escape(failed_rcpt), fr) is not None,
          "%s: Final-Recipient: expected 'rfc822; %s', got %r" % (what, failed_rcpt, fr))
    check_eq((r.get("action") or "").strip().lower(), "failed", "%s: Action" % what)
    st = (r.get("status") or "").strip()
    check(re.match(r"^5\.\d+\.\d+$", st) is not None or (expect_status and st == expect_status),
          "%s: Status should be 5.X.Y%s, got %r"
          % (what, (" or %s" % expect_status) if expect_status else "", st))
    if expect_status:
        check_eq(st, expect_status, "%s: Status" % what)
    return dsn


# ---------------------------------------------------------------- concurrent senders

class SenderPool:
    """
    N threads that send messages with unique Message-IDs to port, one
    transaction per connection. The main thread hands out work with
    release(n). A message whose connection is refused before the greeting
    is retried (it was never handed over); one whose transaction broke or
    got a non-250 answer is given up (the upstream would retry it; nothing
    was promised). accepted: Message-ID -> queue ID text of the 250.
    """

    def __init__(self, port, nthreads=4, size=2048, tag="crash", timeout=20, pace=0.0):
        self.port = port
        self.pace = pace                 # pause per thread between messages
        self.size = size
        self.tag = tag
        self.timeout = timeout
        self.lock = threading.Lock()
        self.cv = threading.Condition(self.lock)
        self.budget = 0
        self.next = 0
        self.accepted = {}
        self.refused = Counter()     # reply code (or "conn") -> count
        self.inflight = 0
        self.stopping = False
        self.trigger = None              # (countdown, fn): fn() after the countdown-th "."
        self.broken_after_dot = 0        # transactions cut between "." and its reply
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(nthreads)]
        for t in self.threads:
            t.start()

    def arm(self, countdown, fn):
        """Call fn() in the sender thread right after the countdown-th next final "."
        is sent, before its reply is read (e.g. to kill the daemon in the custody window)."""
        with self.lock:
            self.trigger = [max(1, countdown), fn]

    def _dot_sent(self):
        fn = None
        with self.lock:
            if self.trigger is not None:
                self.trigger[0] -= 1
                if self.trigger[0] <= 0:
                    fn = self.trigger[1]
                    self.trigger = None
        if fn is not None:
            fn()

    def release(self, n):
        with self.cv:
            self.budget += n
            self.cv.notify_all()

    def idle(self):
        with self.lock:
            return self.budget == 0 and self.inflight == 0

    def wait_idle(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.idle():
                return True
            time.sleep(0.05)
        return False

    def stop(self):
        with self.cv:
            self.stopping = True
            self.cv.notify_all()
        for t in self.threads:
            t.join(self.timeout + 10)

    def _run(self):
        while True:
            with self.cv:
                while self.budget == 0 and not self.stopping:
                    self.cv.wait(0.5)
                if self.stopping:
                    return
                self.budget -= 1
                self.inflight += 1
                self.next += 1
                n = self.next
            try:
                self._send(n)
                if self.pace:
                    time.sleep(self.pace)
            finally:
                with self.lock:
                    self.inflight -= 1

    def _send(self, n):
        msgid = "<%s-%06d.%d@queue-integ.example>" % (self.tag, n, os.getpid())
        size = random.randint(*self.size) if isinstance(self.size, tuple) else self.size
        msg = make_message(msgid, subject="%s %d" % (self.tag, n), size=size)
        deadline = time.time() + 60
        while not self.stopping:
            try:
                c = SmtpClient(self.port, timeout=self.timeout)
            except (OSError, Closed, TestFailure):
                if time.time() > deadline:
                    with self.lock:
                        self.refused["conn"] += 1
                    return
                time.sleep(0.05)  # daemon restarting: not handed over yet
                continue
            try:
                if c.greeting.code != 220:
                    with self.lock:
                        self.refused[c.greeting.code] += 1
                    return
                r = c.ehlo("sender.example")
                if r.code != 250:
                    with self.lock:
                        self.refused[r.code] += 1
                    return
                r = c.cmd("MAIL FROM:<sender@example.com>")
                if r.code == 250:
                    r = c.cmd("RCPT TO:<rcpt@example.org>")
                if r.code == 250:
                    r = c.cmd("DATA")
                if r.code == 354:
                    c.send(dot_stuff(msg))
                    self._dot_sent()
                    try:
                        r = c.read_reply(self.timeout)
                    except (OSError, Closed, TestFailure):
                        with self.lock:
                            self.broken_after_dot += 1
                        raise
                with self.lock:
                    if r is not None and r.code == 250:
                        self.accepted[msgid] = r.text
                    else:
                        self.refused[r.code if r is not None else "none"] += 1
                try:
                    c.cmd("QUIT", timeout=2)
                except Exception:
                    pass
            except (OSError, Closed, TestFailure):
                with self.lock:
                    self.refused["broken"] += 1
            finally:
                c.close()
            return
