#!/usr/bin/env python3
"""
queue_custody - the downstream is down: scanrelayd takes custody.

200 messages with unique Message-IDs are sent while nothing listens on
the relay port: each gets "250 2.0.0 Ok: queued as ID (deferred: ...)",
`scanrelay queue` lists all of them in the postqueue -p layout (and -j as
one JSON object per line); then smtp-sink comes up and `scanrelay flush`
(or, in the second test, the daemon's own probe) delivers each exactly
once, counted by Message-ID at the smtp-sink dumps, and the queue is
empty afterwards.
"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Raw, RawSink, SmtpSink, check, check_eq, fail, free_port, run_tests, wait_for  # noqa: E402
from queue_util import (check_listing_empty, cli, cli_ok, kill9, dump_message_ids, make_message, queue_daemon,  # noqa: E402
                        queue_files, queue_json, queue_listing, queued_id, send_one,
                        wait_queue_empty)

N = 200
SENDERS = 4


def queue_many(d, n, tag):
    """Send n messages with unique Message-IDs from SENDERS threads; return {msgid: qid}."""
    out = {}
    errs = []
    lock = threading.Lock()
    todo = list(range(n))

    def worker():
        while True:
            with lock:
                if not todo or errs:
                    return
                i = todo.pop(0)
            msgid = "<%s-%04d.%d@queue-integ.example>" % (tag, i, os.getpid())
            try:
                r = send_one(d.port, "sender@example.com", ["rcpt@example.org"],
                             make_message(msgid, subject="%s %d" % (tag, i), size=1500))
            except Exception as e:  # noqa: BLE001
                with lock:
                    errs.append("%s: %s" % (msgid, e))
                return
            with lock:
                if r.code != 250 or "deferred" not in r.text or queued_id(r) is None:
                    errs.append("%s: expected '250 2.0.0 Ok: queued as ID (deferred: ...)', "
                                "got %r" % (msgid, r))
                else:
                    out[msgid] = queued_id(r)

    ts = [threading.Thread(target=worker) for _ in range(SENDERS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    if errs:
        fail("while the downstream is down: %s" % "; ".join(errs[:5]))
    check_eq(len(out), n, "messages accepted during the outage")
    check_eq(len(set(out.values())), n, "distinct queue IDs")
    return out


def check_listing(d, queued):
    lst = queue_listing(d)
    check(not lst.empty, "scanrelay queue says the queue is empty with %d messages queued"
          % len(queued))
    check_eq(len(lst.entries), len(queued), "messages listed by scanrelay queue")
    check_eq(sorted(lst.ids()), sorted(queued.values()), "queue IDs listed")
    check_eq(lst.ids(), sorted(lst.ids()), "listing order (queue ID = arrival order)")
    total = 0
    for e in lst.entries:
        check(not e["held"], "%s listed as held" % e["id"])
        check_eq(e["sender"], "sender@example.com", "%s: sender column" % e["id"])
        check_eq(list(e["rcpts"]), ["rcpt@example.org"], "%s: recipients" % e["id"])
        reason = e["rcpts"]["rcpt@example.org"]
        check(reason is not None and "connect" in reason.lower(),
              "%s: the delay reason should tell of the failed connection, got %r"
              % (e["id"], reason))
        check(e["size"] >= 1500, "%s: size %d below the message size" % (e["id"], e["size"]))
        total += e["size"]
    check_eq(lst.kbytes, total // 1024, "trailer Kbytes (sum of sizes / 1024)")
    check_eq(lst.requests, len(queued), "trailer request count")

    objs = queue_json(d)
    check_eq(len(objs), len(queued), "JSON lines from scanrelay -j queue")
    ids = set()
    for o in objs:
        for k in ("queue_name", "queue_id", "arrival_time", "message_size", "sender",
                  "recipients"):
            check(k in o, "JSON entry lacks %r: %r" % (k, o))
        check_eq(o["queue_name"], "deferred", "%s: queue_name" % o["queue_id"])
        check(isinstance(o["arrival_time"], int) and abs(o["arrival_time"] - time.time()) < 600,
              "%s: arrival_time %r is not a recent epoch time" % (o["queue_id"], o["arrival_time"]))
        check(isinstance(o["message_size"], int) and o["message_size"] >= 1500,
              "%s: message_size %r" % (o["queue_id"], o["message_size"]))
        check_eq(o["sender"], "sender@example.com", "%s: JSON sender" % o["queue_id"])
        check_eq(len(o["recipients"]), 1, "%s: JSON recipients" % o["queue_id"])
        r = o["recipients"][0]
        check_eq(r.get("address"), "rcpt@example.org", "%s: JSON recipient address" % o["queue_id"])
        check("connect" in (r.get("delay_reason") or "").lower(),
              "%s: JSON delay_reason %r" % (o["queue_id"], r.get("delay_reason")))
        ids.add(o["queue_id"])
    check_eq(sorted(ids), sorted(queued.values()), "queue IDs in the JSON listing")


def check_delivered_once(sink, queued, settle=2.0):
    def all_there():
        c = dump_message_ids(sink.dumpdir)
        return c if all(c[m] >= 1 for m in queued) else None
    wait_for(all_there, 60, "all %d queued messages at smtp-sink" % len(queued), interval=0.3)
    time.sleep(settle)  # late duplicates would show up now
    c = dump_message_ids(sink.dumpdir)
    missing = [m for m in queued if c[m] == 0]
    dup = dict((m, c[m]) for m in queued if c[m] > 1)
    check(not missing, "%d message(s) never arrived: %s" % (len(missing), missing[:5]))
    check(not dup, "%d message(s) delivered more than once: %s" % (len(dup), list(dup.items())[:5]))


def test_down_then_flush(ctx):
    relay_port = free_port()
    # No automatic retries during this test: only `scanrelay flush` delivers.
    d = queue_daemon(ctx, relay_port=relay_port,
                     queue={"queue_run_delay": Raw("1h"), "minimal_backoff_time": Raw("1h"),
                            "maximal_backoff_time": Raw("2h"), "probe_interval": Raw("1h")})
    queued = queue_many(d, N, "custody")
    check_eq(len(queue_files(d, "deferred")), N, "files in deferred/")
    check_eq(queue_files(d, "tmp"), [], "files in tmp/")
    check_listing(d, queued)

    sink = SmtpSink(ctx, port=relay_port)
    time.sleep(1.5)
    check_eq(len(dump_message_ids(sink.dumpdir)), 0,
             "messages delivered before scanrelay flush (no retry is due for an hour)")
    out = cli_ok(d, "flush")
    check("scheduled" in out, "scanrelay flush output: %r" % out)
    wait_queue_empty(d, 120)
    check_delivered_once(sink, queued)
    check_eq(queue_files(d, "tmp"), [], "files in tmp/ after the flush")
    log = d.log()
    for msgid, qid in queued.items():
        check("%s: removed" % qid in log, "no '%s: removed' log line" % qid)
        check("%s: to=<rcpt@example.org>, relay=" % qid in log and "status=sent" in log,
              "no delivery log line for %s" % qid)
    check_listing_empty(d)
    d.stop()


def test_automatic_recovery(ctx):
    relay_port = free_port()
    # Runs and backoffs far away: only the probe (every second) notices the recovery,
    # which must flush the whole queue at once.
    d = queue_daemon(ctx, relay_port=relay_port,
                     queue={"queue_run_delay": Raw("1h"), "minimal_backoff_time": Raw("1h"),
                            "maximal_backoff_time": Raw("2h"), "probe_interval": Raw("1s")})
    queued = queue_many(d, N, "recover")
    time.sleep(2.5)  # a few probes fail meanwhile
    check_eq(len(queue_files(d, "deferred")), N, "files in deferred/ while down")
    mark = d.log_mark()
    t0 = time.time()
    sink = SmtpSink(ctx, port=relay_port)
    wait_queue_empty(d, 60)
    dt = time.time() - t0
    check_delivered_once(sink, queued)
    check(dt < 20, "the queue took %.1fs to drain after the downstream came back" % dt)
    check("restored" in d.log_since(mark),
          "no 'connection to ... restored' log line after the downstream came back")
    d.stop()


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def test_no_busy_loop_while_down(ctx):
    relay_port = free_port()
    d = queue_daemon(ctx, relay_port=relay_port, queue={"probe_interval": Raw("1s"),
                                                        "queue_run_delay": Raw("1s")})
    queue_many(d, 50, "idle")
    time.sleep(1)
    c0 = cpu_seconds(d.proc.pid)
    time.sleep(5)
    used = cpu_seconds(d.proc.pid) - c0
    check(used < 0.5, "scanrelayd used %.2fs of CPU in 5s with the downstream away and 50 "
          "messages queued (a busy loop?)" % used)
    d.stop()


def test_per_recipient_custody(ctx):
    """
    Per-recipient outcomes survive retries and a crash (harness.RawSink: smtp-sink
    cannot answer per recipient). Three recipients: the first attempt delivers to
    one, two get 4xx and stay queued; the retry delivers to one more (marked done
    in the queue file); after kill -9 and a restart only the last one gets it.
    """
    deferring = {"b@example.org", "c@example.org"}

    def policy(verb, line, tx):
        if verb == "RCPT":
            for a in list(deferring):
                if "<%s>" % a in line:
                    return "450 4.2.0 <%s>: Recipient address rejected: try later (integ)" % a
        return None
    raw = RawSink(ctx, policy=policy)
    d = queue_daemon(ctx, relay_port=raw.port,
                     queue={"queue_run_delay": Raw("1h"), "minimal_backoff_time": Raw("1h"),
                            "maximal_backoff_time": Raw("2h"), "probe_interval": Raw("1h")})
    mid = "<percpt.%d@queue-integ.example>" % os.getpid()
    rcpts = ["a@example.org", "b@example.org", "c@example.org"]
    r = send_one(d.port, "sender@example.com", rcpts, make_message(mid, rcpt=rcpts[0]))
    check_eq(r.code, 250, "one recipient accepted, two 4xx: reply")
    qid = queued_id(r)

    def delivered():
        return [[l.split(":", 1)[1].strip() for l in t.rcpts] for t in raw.txs if t.rcpts]
    wait_for(lambda: delivered(), 10, "the first delivery")
    lst = queue_listing(d)
    check_eq(lst.ids(), [qid], "queued messages")
    check_eq(sorted(lst.by_id(qid)["rcpts"]), ["b@example.org", "c@example.org"],
             "recipients still queued after the first attempt")
    check("try later" in (lst.by_id(qid)["rcpts"]["b@example.org"] or ""),
          "delay reason of a deferred recipient: %r" % lst.by_id(qid)["rcpts"])

    deferring.discard("b@example.org")
    mark = d.log_mark()
    cli_ok(d, "flush")
    wait_for(lambda: len(delivered()) >= 2, 10, "the second delivery")
    d.wait_log(r"%s: to=<c@example\.org>, .*status=deferred" % qid, timeout=10, since=mark)
    time.sleep(0.3)
    kill9(d)
    lst = queue_listing(d)
    check_eq(list(lst.by_id(qid)["rcpts"]), ["c@example.org"],
             "recipients still queued after the retry (read from the file after kill -9)")
    d.start()
    deferring.clear()
    cli_ok(d, "flush")
    wait_queue_empty(d, 20)
    time.sleep(0.5)
    check_eq(delivered(), [["<a@example.org>"], ["<b@example.org>"], ["<c@example.org>"]],
             "recipients of the first delivery, the retry, and the retry after the crash")
    d.stop()


def test_control_socket_mode(ctx):
    import stat
    d = queue_daemon(ctx)
    st = os.stat(d.top["control_socket"])
    check(stat.S_ISSOCK(st.st_mode), "control_socket is not a unix socket")
    check_eq(oct(st.st_mode & 0o777), oct(0o660), "control socket mode")
    d.stop()


def test_listing_without_daemon(ctx):
    relay_port = free_port()
    d = queue_daemon(ctx, relay_port=relay_port, queue={"probe_interval": Raw("1h")})
    queued = queue_many(d, 5, "offline")
    d.stop()
    check_listing(d, queued)  # from the files
    rc, out, err = cli(d, "flush")
    check(rc != 0, "scanrelay flush without a daemon exited 0")
    check("not running" in err, "scanrelay flush without a daemon should say it is not running: "
          "%r" % err)
    rc, out, err = cli(d, "queue", "hold", list(queued.values())[0])
    check(rc != 0 and "not running" in err,
          "scanrelay queue hold without a daemon: status %d, stderr %r" % (rc, err))
    # A restart picks them up again; flushing delivers them.
    d.start()
    sink = SmtpSink(ctx, port=relay_port)
    cli_ok(d, "flush")
    wait_queue_empty(d, 30)
    check_delivered_once(sink, queued, settle=1.0)
    check_listing_empty(d)
    d.stop()


if __name__ == "__main__":
    run_tests(globals())
