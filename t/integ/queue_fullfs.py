#!/usr/bin/env python3
"""
queue_fullfs - the queue's file system fills up: 452, nothing lost,
nothing half-written, normal service when space returns.

The test mounts a small tmpfs (8 MB) as queue_directory itself (root
needed; when mount is not permitted it exits 77 and says so). The
downstream is away, so every message must enter the queue:
  - with queue.min_free_space = 1M, messages of about 100 KB are accepted
    until the floor is reached, then answered "452 4.3.1 Insufficient
    system storage"; tmp/ is empty, every deferred/ file loads, and
    `scanrelay queue` lists exactly the accepted ones; deleting one
    (`scanrelay queue delete ID`) makes room for one more; with the
    downstream back the queue drains, each accepted message arrives once,
    and new messages are relayed (250).
  - with min_free_space = 0 and the file system nearly full (a filler
    file), concurrent messages race for the last megabytes so that the
    write itself fails (ENOSPC after the free-space check): still 452 or
    250 for each, and the same no-leftover checks.
"""
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (IS_ROOT, Raw, Skip, SmtpSink, check, check_eq, fail, free_port,  # noqa: E402
                     run_tests)
from queue_util import (check_listing_empty, cli, cli_ok, dump_message_ids,  # noqa: E402
                        make_message, queue_daemon, queue_files, queue_listing, queued_id,
                        send_one, wait_queue_empty)

FS_SIZE = "8m"
INSUFFICIENT = "452 4.3.1 Insufficient system storage"


def mount_tmpfs(ctx, name="queue-fs", size=FS_SIZE):
    """Mount a tmpfs of the given size at ctx.dir/name; unmounted at cleanup."""
    mnt = ctx.mkdir(name, mode=0o755)
    why = None
    if not IS_ROOT:
        why = "not running as root"
    else:
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % size, "tmpfs", mnt],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if p.returncode != 0:
            why = p.stdout.decode("utf-8", "replace").strip() or "status %d" % p.returncode
    if why:
        raise Skip("cannot mount a tmpfs for the queue (%s); this test needs root and "
                   "permission to mount (e.g. CAP_SYS_ADMIN in a container)" % why)

    def umount():
        p = subprocess.run(["umount", mnt], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if p.returncode != 0:
            subprocess.run(["umount", "-l", mnt])
            raise AssertionError("umount %s: %s" % (mnt, p.stdout.decode().strip()))
    ctx.at_exit(umount)
    return mnt


def fs_free(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def check_queue_consistent(d, accepted, what):
    """tmp/ empty; deferred/ holds exactly the accepted IDs and every file loads."""
    check_eq(queue_files(d, "tmp"), [], "%s: files in tmp/" % what)
    check_eq(sorted(queue_files(d, "deferred")), sorted(accepted.values()),
             "%s: files in deferred/ (accepted queue IDs)" % what)
    rc, out, err = cli(d, "queue")
    check(rc == 0 and err == "", "%s: scanrelay queue status %d, stderr %r" % (what, rc, err))
    lst = queue_listing(d)
    check_eq(sorted(lst.ids()), sorted(accepted.values()),
             "%s: queue IDs listed by scanrelay queue" % what)


def send_until_full(d, size, limit, tag):
    accepted = {}
    refused = []
    for i in range(limit):
        msgid = "<%s-%04d.%d@queue-integ.example>" % (tag, i, os.getpid())
        r = send_one(d.port, "sender@example.com", ["rcpt@example.org"],
                     make_message(msgid, size=size))
        if r.code == 250:
            check("deferred" in r.text and queued_id(r), "%s: 250 without custody: %r"
                  % (msgid, r))
            check(not refused, "%s accepted after an earlier 452 with no space freed: %r"
                  % (msgid, r))
            accepted[msgid] = queued_id(r)
        else:
            check_eq(r.line(), INSUFFICIENT, "reply when the queue file system is full")
            refused.append(msgid)
            if len(refused) >= 3:
                break
    return accepted, refused


def test_floor_then_recover(ctx):
    mnt = mount_tmpfs(ctx)
    relay_port = free_port()
    d = queue_daemon(ctx, relay_port=relay_port, queue_directory=mnt,
                     queue={"min_free_space": Raw("1M"), "probe_interval": Raw("1h"),
                            "queue_run_delay": Raw("1h"), "minimal_backoff_time": Raw("1h"),
                            "maximal_backoff_time": Raw("2h")})
    size = 100 * 1024
    accepted, refused = send_until_full(d, size, 200, "floor")
    check(refused, "the 8 MB queue never filled up: %d messages of 100 KB accepted"
          % len(accepted))
    check(len(accepted) >= 40, "only %d messages of 100 KB fit in 8 MB with a 1 MB floor"
          % len(accepted))
    free = fs_free(mnt)
    check(free >= 1024 * 1024 - 4096,
          "free space %d bytes: the 1M floor (min_free_space) was not kept" % free)
    print("  %d accepted, then 452; %d KB left free" % (len(accepted), free // 1024), flush=True)
    check_queue_consistent(d, accepted, "at the floor")
    log = d.log()
    check("cannot enter the deferred queue" in log,
          "no log line about the failed custody")

    # Delete one: room for one more.
    victim_msgid, victim = sorted(accepted.items(), key=lambda kv: kv[1])[0]
    out = cli_ok(d, "queue", "delete", victim)
    check("deleted" in out, "scanrelay queue delete output: %r" % out)
    del accepted[victim_msgid]
    check(victim not in queue_files(d, "deferred"), "%s still in deferred/ after delete" % victim)
    msgid = "<floor-after-delete.%d@queue-integ.example>" % os.getpid()
    r = send_one(d.port, "sender@example.com", ["rcpt@example.org"], make_message(msgid, size=size))
    check(r.code == 250 and "deferred" in r.text,
          "after deleting one message, the next one should fit: got %r" % r)
    accepted[msgid] = queued_id(r)
    check_queue_consistent(d, accepted, "after delete + one more")

    # The downstream comes back: the queue drains, service is normal.
    sink = SmtpSink(ctx, port=relay_port)
    cli_ok(d, "flush")
    wait_queue_empty(d, 120)
    time.sleep(1)
    c = dump_message_ids(sink.dumpdir)
    check_eq(sorted(m for m in accepted if c[m] != 1), [],
             "accepted messages not delivered exactly once")
    check_eq(c[victim_msgid], 0, "the deleted message was delivered")
    for i in range(5):
        msgid = "<floor-normal-%d.%d@queue-integ.example>" % (i, os.getpid())
        r = send_one(d.port, "sender@example.com", ["rcpt@example.org"],
                     make_message(msgid, size=size))
        check(r.code == 250 and "relayed" in r.text,
              "normal service after the queue drained: expected 250 (relayed), got %r" % r)
    check_eq(queue_files(d, "tmp"), [], "files in tmp/ at the end")
    check_listing_empty(d)
    d.stop()


def test_enospc_while_writing(ctx):
    mnt = mount_tmpfs(ctx)
    relay_port = free_port()
    d = queue_daemon(ctx, relay_port=relay_port, queue_directory=mnt,
                     queue={"min_free_space": Raw("0"), "probe_interval": Raw("1h"),
                            "queue_run_delay": Raw("1h"), "minimal_backoff_time": Raw("1h"),
                            "maximal_backoff_time": Raw("2h")})
    accepted = {}
    replies = []
    lock = threading.Lock()
    rounds = 0
    # Fill all but ~900 KB, then race 6 x 600 KB: the free-space check passes for
    # the two written at once by the queue's two worker threads; only one fits.
    for rnd in range(4):
        free = fs_free(mnt)
        filler = os.path.join(mnt, "filler")
        with open(filler, "ab") as f:
            f.write(b"\0" * max(0, free - 900 * 1024))
        rounds += 1

        def one(i):
            msgid = "<enospc-%d-%d.%d@queue-integ.example>" % (rnd, i, os.getpid())
            try:
                r = send_one(d.port, "sender@example.com", ["rcpt@example.org"],
                             make_message(msgid, size=600 * 1024))
            except Exception as e:  # noqa: BLE001
                r = e
            with lock:
                replies.append((msgid, r))
                if not isinstance(r, Exception) and r.code == 250:
                    accepted[msgid] = queued_id(r)
        ts = [threading.Thread(target=one, args=(i,)) for i in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        os.unlink(filler)
    bad = [(m, r) for m, r in replies
           if isinstance(r, Exception) or not (
               (r.code == 250 and "deferred" in r.text) or r.line() == INSUFFICIENT)]
    check(not bad, "replies other than 250 (deferred) or %r: %r" % (INSUFFICIENT, bad[:5]))
    n452 = sum(1 for m, r in replies if not isinstance(r, Exception) and r.code == 452)
    print("  %d accepted, %d answered 452" % (len(accepted), n452), flush=True)
    check(n452 > 0, "the file system never filled up (no 452 in %d messages)" % len(replies))
    check(accepted, "nothing was accepted")
    check_queue_consistent(d, accepted, "after the ENOSPC races")
    sink = SmtpSink(ctx, port=relay_port)
    cli_ok(d, "flush")
    wait_queue_empty(d, 120)
    time.sleep(1)
    c = dump_message_ids(sink.dumpdir)
    check_eq(sorted(m for m in accepted if c[m] != 1), [],
             "accepted messages not delivered exactly once")
    d.stop()


def fill_up(mnt):
    """Fill the file system to the last byte with a filler file; return its path."""
    filler = os.path.join(mnt, "filler")
    with open(filler, "wb", buffering=0) as f:
        chunk = b"\0" * 65536
        while True:
            try:
                f.write(chunk)
            except OSError:
                break
        while True:
            try:
                f.write(b"\0")
            except OSError:
                break
    return filler


def test_partial_bounce_dsn_needs_space(ctx):
    """
    First attempt: one recipient accepted, one refused with 5xx. The 250 to the
    upstream also promises the DSN for the refused recipient, so that DSN must be
    on disk first, as on the custody path (where the DSN is written before the
    queue file and both come before the 250). With the queue's file system full
    the DSN cannot be written: the answer must then be a 4xx (452 4.3.1), a
    duplicate for the accepted recipient being the price (the upstream retries),
    never a 250 with the DSN dropped.
    (harness.RawSink: smtp-sink cannot refuse one recipient and accept another.)
    """
    from harness import RawSink
    mnt = mount_tmpfs(ctx)
    bad = "bad@example.org"

    def policy(verb, line, tx):
        if verb == "RCPT" and bad in line:
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % bad
        return None
    raw = RawSink(ctx, policy=policy)
    d = queue_daemon(ctx, relay_port=raw.port, queue_directory=mnt,
                     queue={"min_free_space": Raw("0")})
    filler = fill_up(mnt)
    mid = "<partial-full.%d@queue-integ.example>" % os.getpid()
    r = send_one(d.port, "sender@example.com", ["good@example.org", bad],
                 make_message(mid, rcpt="good@example.org"))
    time.sleep(1)
    dsn_dropped = "cannot queue the non-delivery notification" in d.log()
    os.unlink(filler)
    if r.code == 250:
        fail("one recipient refused with 5xx and no space for its DSN: the upstream got %r%s; "
             "the DSN for %s is lost (expected %r before any 250)"
             % (r.line(), " and the log says 'cannot queue the non-delivery notification'"
                if dsn_dropped else "", bad, INSUFFICIENT))
    check(400 <= r.code < 500, "expected a 4xx, got %r" % r)
    d.stop()


def test_retry_bounce_dsn_needs_space(ctx):
    """A 5xx on a retry with no space for the DSN: the message stays queued (its
    recipient not marked bounced) and is bounced properly once space is back."""
    mnt = mount_tmpfs(ctx)
    relay_port = free_port()
    d = queue_daemon(ctx, relay_port=relay_port, queue_directory=mnt,
                     queue={"min_free_space": Raw("0"), "probe_interval": Raw("1h"),
                            "queue_run_delay": Raw("1h"), "minimal_backoff_time": Raw("1h"),
                            "maximal_backoff_time": Raw("2h")})
    mid = "<retry-full.%d@queue-integ.example>" % os.getpid()
    r = send_one(d.port, "sender@example.com", ["rcpt@example.org"], make_message(mid))
    check(r.code == 250 and "deferred" in r.text, "during the outage: %r" % r)
    qid = queued_id(r)
    filler = fill_up(mnt)
    # -f . : smtp-sink refuses at the end of data but keeps the dump, so the DSN
    # shows up later.
    sink = SmtpSink(ctx, port=relay_port, faults={"f": ".", "B": "554 5.7.1 no (integ)"})
    mark = d.log_mark()
    cli_ok(d, "flush")
    d.wait_log(r"%s: to=<rcpt@example\.org>, .*status=bounced" % qid, timeout=10, since=mark)
    time.sleep(1)
    check_eq(queue_files(d, "deferred"), [qid],
             "deferred/ after a 5xx with no space for the DSN (the message must stay)")
    lst = queue_listing(d)
    check_eq(list(lst.by_id(qid)["rcpts"]), ["rcpt@example.org"],
             "recipients still to handle (not marked bounced without a DSN)")
    os.unlink(filler)
    cli_ok(d, "flush")
    dsn_id = d.wait_log(r"%s: sender non-delivery notification: (\w+)" % qid, timeout=10,
                        since=mark).group(1)
    wait_queue_empty(d, 20)
    time.sleep(0.5)
    dumps = [x for x in sink.dumps() if x.sender == ""]
    check_eq(len(dumps), 1, "DSNs at smtp-sink (dumps with MAIL FROM:<>)")
    check_eq(dumps[0].recipients, ["sender@example.com"], "DSN recipient")
    check(dsn_id, "no DSN id")
    d.stop()


if __name__ == "__main__":
    run_tests(globals())
