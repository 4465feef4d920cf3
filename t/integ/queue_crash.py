#!/usr/bin/env python3
"""
queue_crash - kill -9 of scanrelayd at random moments loses nothing.

Several concurrent senders push about QUEUE_CRASH_MESSAGES (default 1,000)
messages with unique Message-IDs through scanrelayd and record which got
a 250. Meanwhile, over QUEUE_CRASH_ROUNDS rounds (default 20, the bar of
issue 4), the downstream smtp-sink flaps (up, stopped, or restarted with
-r to answer 4xx at MAIL, RCPT or DATA) and scanrelayd is killed with
SIGKILL at a random moment and restarted. Some rounds bring the
downstream back and kill the daemon while it flushes its queue.

After each kill, before the restart: every message that got a 250 is at
smtp-sink or its queue file is in deferred/ (custody is never dropped).
At the end: downstream up, `scanrelay flush`, the queue drains, every
Message-ID that got a 250 arrived at least once (duplicates allowed,
losses not), tmp/ is empty, no queue file was ever unreadable, and the
daemon stops cleanly.

QUEUE_CRASH_SEED=N replays a run (the seed is printed).
"""
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Raw, SmtpSink, check, check_eq, fail, free_port, run_tests, wait_for  # noqa: E402
from queue_util import (QUEUED_RE, SenderPool, cli_ok, dump_message_ids, kill9,  # noqa: E402
                        queue_daemon, queue_files, wait_queue_empty)

ROUNDS = int(os.environ.get("QUEUE_CRASH_ROUNDS", "20"))
MESSAGES = int(os.environ.get("QUEUE_CRASH_MESSAGES", "1000"))
SENDERS = int(os.environ.get("QUEUE_CRASH_SENDERS", "4"))
SEED = int(os.environ.get("QUEUE_CRASH_SEED", str(int(time.time() * 1000) % 1000000)))


class Downstream:
    """smtp-sink on one port, switched between up, down and 4xx (-r CMD)."""

    def __init__(self, ctx, port):
        self.ctx = ctx
        self.port = port
        self.sink = None
        self.state = "down"
        self.dumpdir = ctx.mkdir("sink-dump", mode=0o777)
        self.changes = 0

    def set(self, state):
        if state == self.state:
            return
        if self.sink is not None:
            self.sink.stop()
            self.sink = None
        if state == "up":
            self.sink = SmtpSink(self.ctx, port=self.port, name="sink")
        elif state.startswith("4xx-"):
            self.sink = SmtpSink(self.ctx, port=self.port, name="sink",
                                 faults={"r": state[4:]})
        self.state = state
        self.changes += 1


STATES = ["up", "up", "down", "4xx-MAIL", "4xx-RCPT", "4xx-DATA"]


def check_custody(d, pool, what):
    """Every message that got a 250 is at the sink or in deferred/ (or hold/)."""
    with pool.lock:
        accepted = dict(pool.accepted)
    files = set(queue_files(d, "deferred")) | set(queue_files(d, "hold"))
    have = dump_message_ids(os.path.join(d.ctx.dir, "sink-dump"))
    lost = []
    for msgid, text in accepted.items():
        if have[msgid]:
            continue
        m = QUEUED_RE.search(text)
        if m and m.group(1) in files:
            continue
        lost.append((msgid, text))
    if lost:
        fail("%s: %d message(s) that got a 250 are neither at smtp-sink nor in the queue: %s"
             % (what, len(lost), lost[:5]))


def unreadable_files(log):
    return [l for l in log.splitlines()
            if "cannot read the queue file" in l or "malformed" in l]


def test_kill9_rounds(ctx):
    rnd = random.Random(SEED)
    print("  seed %d, %d rounds, %d messages, %d senders" % (SEED, ROUNDS, MESSAGES, SENDERS),
          flush=True)
    relay_port = free_port()
    down = Downstream(ctx, relay_port)
    d = queue_daemon(ctx, relay_port=relay_port,
                     queue={"queue_run_delay": Raw("1s"), "minimal_backoff_time": Raw("1s"),
                            "maximal_backoff_time": Raw("2s"), "probe_interval": Raw("1s")},
                     relay_connect_timeout=Raw("2s"), relay_timeout=Raw("10s"))
    per_round = max(1, MESSAGES // max(1, ROUNDS))
    # Spread each round's messages over about 1.5s so that the kill lands while they flow.
    pace = max(0.0, 1.5 / max(1.0, per_round / SENDERS))
    pool = SenderPool(d.port, nthreads=SENDERS, size=(2000, 60000), tag="crash", timeout=20,
                      pace=pace)
    ctx.at_exit(pool.stop)
    kills = 0
    t_start = time.time()
    dot_kills = 0
    flush_kills = 0
    for r in range(ROUNDS):
        down.set(rnd.choice(STATES))
        n = per_round if r < ROUNDS - 1 else MESSAGES - per_round * (ROUNDS - 1)
        killed = threading.Event()
        if rnd.random() < 0.5:
            # Kill in the custody window: right after a client sent its final "."
            # (the daemon relays it or writes the queue file), after 0-3 ms.
            delay = rnd.uniform(0, 0.003)

            def kill_now(delay=delay):
                time.sleep(delay)
                kill9(d)
                killed.set()
            pool.arm(rnd.randint(1, max(1, n - 1)), kill_now)
            mode = "dot"
        else:
            mode = "timer"
        pool.release(n)
        # Flap the downstream once, maybe, then (timer mode) kill at a random moment.
        t_kill = rnd.uniform(0.05, 1.5)
        if rnd.random() < 0.5:
            t_flap = rnd.uniform(0, t_kill)
            time.sleep(t_flap)
            down.set(rnd.choice(STATES))
            time.sleep(t_kill - t_flap)
        else:
            time.sleep(t_kill)
        if mode == "dot":
            if not killed.wait(20):
                fail("round %d: the armed kill did not fire" % (r + 1))
            dot_kills += 1
        else:
            kill9(d)
        kills += 1
        check_custody(d, pool, "round %d, after kill -9 while receiving" % (r + 1))
        time.sleep(rnd.uniform(0, 0.3))
        if rnd.random() < 0.3:
            down.set(rnd.choice(STATES))
        d.start()
        if not pool.wait_idle(30):
            fail("round %d: the senders did not finish their messages within 30s" % (r + 1))
        # Half the rounds: the downstream comes back and the daemon dies while it
        # delivers from its queue (recovery flush or a flush command).
        if rnd.random() < 0.5 and (queue_files(d, "deferred")):
            down.set("up")
            if rnd.random() < 0.5:
                cli_ok(d, "flush")
                time.sleep(rnd.uniform(0.0, 0.3))
            else:
                time.sleep(rnd.uniform(0.5, 1.5))  # the probe (every 1s) finds it back
            left = len(queue_files(d, "deferred"))
            kill9(d)
            kills += 1
            if left:
                flush_kills += 1
            check_custody(d, pool, "round %d, after kill -9 while flushing" % (r + 1))
            d.start()
    pool.stop()
    with pool.lock:
        accepted = dict(pool.accepted)
        refused = dict(pool.refused)
    print("  %d rounds in %.0fs: %d kills (%d right after a final '.', %d while the queue "
          "was being delivered), %d downstream changes; %d messages got 250, %d transactions "
          "cut between '.' and the reply, not accepted: %r"
          % (ROUNDS, time.time() - t_start, kills, dot_kills, flush_kills, down.changes,
             len(accepted), pool.broken_after_dot, refused), flush=True)
    check(len(accepted) >= MESSAGES // 2,
          "only %d of %d messages got a 250: the test did not exercise much" % (len(accepted),
                                                                               MESSAGES))

    # The end: downstream up, flush, the queue drains.
    down.set("up")
    cli_ok(d, "flush")
    wait_queue_empty(d, 180)

    def all_there():
        c = dump_message_ids(down.dumpdir)
        return c if all(c[m] >= 1 for m in accepted) else None
    try:
        wait_for(all_there, 30, "every accepted message at smtp-sink", interval=0.5)
    except Exception:
        pass
    c = dump_message_ids(down.dumpdir)
    lost = sorted(m for m in accepted if c[m] == 0)
    dups = sum(1 for m in accepted if c[m] > 1)
    print("  delivered: %d distinct accepted messages, %d duplicates, %d lost"
          % (sum(1 for m in accepted if c[m]), dups, len(lost)), flush=True)
    check(not lost, "%d message(s) got a 250 and never arrived: %s"
          % (len(lost), [(m, accepted[m]) for m in lost[:10]]))
    check_eq(queue_files(d, "tmp"), [], "files left in tmp/")
    bad = unreadable_files(d.log())
    check(not bad, "unreadable queue files after a crash: %s" % bad[:5])
    d.stop()


def test_startup_removes_unfinished(ctx):
    """Files in tmp/ were never acknowledged: start-up removes them; the rest is
    scheduled (next attempt = the file's mtime) and delivered."""
    relay_port = free_port()
    d = queue_daemon(ctx, relay_port=relay_port,
                     queue={"queue_run_delay": Raw("1s"), "minimal_backoff_time": Raw("1h"),
                            "maximal_backoff_time": Raw("2h"), "probe_interval": Raw("1h")})
    pool = SenderPool(d.port, nthreads=2, size=5000, tag="startup")
    ctx.at_exit(pool.stop)
    pool.release(10)
    check(pool.wait_idle(30), "senders did not finish")
    pool.stop()
    check_eq(len(pool.accepted), 10, "messages accepted during the outage")
    kill9(d)
    deferred = queue_files(d, "deferred")
    check_eq(len(deferred), 10, "files in deferred/")
    # Half-written leftovers: a cut copy of a real queue file under a fresh ID, junk.
    with open(os.path.join(d.queue_dir, "deferred", deferred[0]), "rb") as f:
        data = f.read()
    cut_id = deferred[0][:-1] + ("0" if deferred[0][-1] != "0" else "1")
    with open(os.path.join(d.queue_dir, "tmp", cut_id), "wb") as f:
        f.write(data[:len(data) // 2])
    with open(os.path.join(d.queue_dir, "tmp", "junk"), "wb") as f:
        f.write(b"scanrelay-queue 1\n")
    # Due now: the run after start-up delivers them (no probe, no flush).
    for q in deferred:
        os.utime(os.path.join(d.queue_dir, "deferred", q), (time.time() - 5, time.time() - 5))
    mark = len(d.log())
    sink = SmtpSink(ctx, port=relay_port)
    d.start()
    d.wait_log(r"queue: removed 2 unfinished queue file", timeout=10, since=mark)
    check_eq(queue_files(d, "tmp"), [], "tmp/ after start-up")
    wait_queue_empty(d, 30)
    time.sleep(0.5)
    c = dump_message_ids(sink.dumpdir)
    check_eq(sorted(m for m in pool.accepted if c[m] != 1), [],
             "messages not delivered exactly once after the restart")
    d.stop()


if __name__ == "__main__":
    run_tests(globals())
