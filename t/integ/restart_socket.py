#!/usr/bin/env python3
"""
restart_socket - restarts that refuse nothing (issue 13, item 1, test A).

sd_launch.py plays systemd: it binds the listening socket once and hands
it to each scanrelayd it starts (LISTEN_FDS/LISTEN_PID, as
scanrelayd.socket does). Several client sessions send mail continuously
and reuse their connections the way Postfix's connection cache does: a
reused connection is first probed with RSET, and one found closed there
is dropped and a new one opened (that is not an error: nothing was
handed over). Meanwhile the daemon is restarted RESTART_SOCKET_ROUNDS
times (default 10) with SIGTERM. The bar: no connection refused, no
4xx/5xx reply anywhere (greeting, EHLO, RSET, MAIL, RCPT, DATA, "."), no
connection lost in a transaction, every restart a clean exit, and every
message that got its 250 arrives at the downstream smtp-sink.
"""
import os
import random
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (DAEMON, Closed, Scanrelayd, SmtpClient, SmtpSink, TestFailure,  # noqa: E402
                     check, check_eq, run_tests, wait_for)
from queue_util import dump_message_ids, make_message  # noqa: E402

ROUNDS = int(os.environ.get("RESTART_SOCKET_ROUNDS", "10"))
CLIENTS = int(os.environ.get("RESTART_SOCKET_CLIENTS", "6"))
PER_ROUND = int(os.environ.get("RESTART_SOCKET_PER_ROUND", "25"))  # messages between restarts
LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sd_launch.py")


class Launcher:
    """sd_launch.py around the daemon d (its config, port and log)."""

    def __init__(self, ctx, d):
        self.d = d
        self.proc = subprocess.Popen(
            [sys.executable, LAUNCHER, "--listen", "127.0.0.1:%d" % d.port, "--log", d.logpath,
             "--", DAEMON, "-f", "-c", d.conf_path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True, text=True)
        ctx.at_exit(self.kill)
        line = self.proc.stdout.readline()
        check(line.startswith("started "), "sd_launch: %r" % line)

    def command(self, cmd):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().split()

    def restart(self, how="restart"):
        words = self.command(how)
        check(len(words) == 3 and words[0] == "restarted", "sd_launch said %r" % words)
        return int(words[1])

    def stop(self):
        words = self.command("stop")
        self.proc.wait(30)
        check(len(words) == 2 and words[0] == "stopped", "sd_launch said %r" % words)
        return int(words[1])

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)


class TracingClient(SmtpClient):
    """SmtpClient that remembers the last command line it sent (for fault reports)."""

    last = "(greeting)"

    def send(self, data):
        b = data.encode("utf-8") if isinstance(data, str) else data
        self.last = b[:12].decode("ascii", "replace") if len(b) < 200 else "(message body)"
        super().send(data)


class Clients:
    """CLIENTS threads sending mail over reused connections; they record every fault."""

    def __init__(self, port, n):
        self.port = port
        self.lock = threading.Lock()
        self.accepted = {}
        self.errors = []
        self.stale = 0       # cached connections found closed by the RSET probe
        self.connections = 0
        self.stopping = False
        self.seq = 0
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(n)]
        for t in self.threads:
            t.start()

    def count(self):
        with self.lock:
            return len(self.accepted)

    def error(self, what):
        with self.lock:
            self.errors.append(what)

    def run(self, me):
        rnd = random.Random(me)
        c = None
        while not self.stopping:
            step = "connect"
            try:
                if c is None:
                    try:
                        c = TracingClient(self.port, timeout=60)
                    except ConnectionRefusedError as e:
                        self.error("connection refused: %s" % e)
                        time.sleep(0.1)
                        continue
                    with self.lock:
                        self.connections += 1
                    if c.greeting.code != 220:
                        self.error("greeting %r" % c.greeting)
                        c.close()
                        c = None
                        continue
                    step = "EHLO"
                    r = c.ehlo("client%d.example" % me)
                    if r.code != 250:
                        self.error("EHLO %r" % r)
                        c.close()
                        c = None
                        continue
                else:
                    # Reuse, as Postfix does: RSET first; closed means "open a new one".
                    try:
                        r = c.cmd("RSET", timeout=60)
                    except (Closed, OSError):
                        with self.lock:
                            self.stale += 1
                        c.close()
                        c = None
                        continue
                    if r.code != 250:
                        self.error("RSET on a reused connection: %r" % r)
                        c.close()
                        c = None
                        continue
                with self.lock:
                    self.seq += 1
                    n = self.seq
                msgid = "<restart-%06d.%d@restart-integ.example>" % (n, os.getpid())
                step = "transaction"
                tx = c.transaction("sender@example.com", ["rcpt@example.org"],
                                   make_message(msgid, size=2048), timeout=60)
                if tx.first_error is not None:
                    self.error("transaction: %r" % tx.first_error)
                    c.close()
                    c = None
                    continue
                with self.lock:
                    self.accepted[msgid] = tx.final.text
                if rnd.random() < 0.15:
                    c.quit()
                    c = None
            except (Closed, OSError, TestFailure) as e:
                self.error("%s (after %r): %s" % (step, c.last if c else None, e))
                if c is not None:
                    c.close()
                c = None
        if c is not None:
            c.quit()

    def stop(self):
        self.stopping = True
        for t in self.threads:
            t.join(90)


def test_restarts_refuse_nothing(ctx):
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port, start=False)
    launcher = Launcher(ctx, d)
    clients = Clients(d.port, CLIENTS)
    statuses = []
    t0 = time.time()
    try:
        for i in range(ROUNDS + 1):
            target = clients.count() + PER_ROUND
            wait_for(lambda: clients.count() >= target or clients.errors, 120,
                     "%d messages accepted before restart %d" % (target, i + 1))
            if clients.errors:
                break
            if i < ROUNDS:
                statuses.append(launcher.restart())
    finally:
        clients.stop()
    took = time.time() - t0
    st = launcher.stop()
    d.check_log_sane()
    print("  %d messages over %d connections, %d restarts in %.1f s; %d cached connections "
          "found closed by the RSET probe" % (clients.count(), clients.connections,
                                               len(statuses), took, clients.stale), flush=True)
    check(not clients.errors, "%d fault(s) seen by the clients, first: %s"
          % (len(clients.errors), clients.errors[:5]))
    check_eq(len(statuses), ROUNDS, "restarts done")
    check(all(s == 0 for s in statuses + [st]), "daemon exit statuses %r" % (statuses + [st]))
    check("(socket activation)" in d.log(), "the daemon did not say it took the passed socket")
    got = wait_for(lambda: (lambda g: g if all(g[m] for m in clients.accepted) else None)(
        dump_message_ids(sink.dumpdir)), 30, "every accepted message at the sink")
    check_eq(sum(1 for m in clients.accepted if got[m]), len(clients.accepted),
             "accepted messages at the sink")


def test_crash_restart_refuses_nothing(ctx):
    """SIGKILL (a crash that systemd restarts): new connections wait for the next process."""
    sink = SmtpSink(ctx)
    d = Scanrelayd(ctx, relay_port=sink.port, start=False)
    launcher = Launcher(ctx, d)
    lock = threading.Lock()
    # lost: accepted by the daemon that was killed before it greeted (the crash's own loss)
    stats = {"greeted": 0, "refused": 0, "lost": 0, "bad": []}
    stopping = []

    def connector():
        while not stopping:
            try:
                c = SmtpClient(d.port, timeout=60)
            except ConnectionRefusedError:
                with lock:
                    stats["refused"] += 1
                continue
            except (Closed, OSError):
                with lock:
                    stats["lost"] += 1
                continue
            with lock:
                if c.greeting.code == 220:
                    stats["greeted"] += 1
                else:
                    stats["bad"].append(repr(c.greeting))
            c.quit()

    threads = [threading.Thread(target=connector, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(3):
            target = stats["greeted"] + 20
            wait_for(lambda: stats["greeted"] >= target, 60, "greetings before crash %d" % i)
            check_eq(launcher.restart("kill-restart"), -signal.SIGKILL, "status of the killed daemon")
        target = stats["greeted"] + 20
        wait_for(lambda: stats["greeted"] >= target, 60, "greetings after the last crash")
    finally:
        stopping.append(1)
        for t in threads:
            t.join(90)
    check_eq(launcher.stop(), 0, "exit status of the last daemon")
    print("  %d connections greeted across 3 crashes, %d lost by a killed daemon"
          % (stats["greeted"], stats["lost"]), flush=True)
    check_eq(stats["refused"], 0, "connections refused across the crashes")
    check(not stats["bad"], "connections that failed otherwise: %s" % stats["bad"][:5])


def test_check_socket_unit(ctx):
    """scanrelayd -t compares the socket unit's ListenStream= with listen."""
    d = Scanrelayd(ctx, start=False)
    good = ctx.path("good.socket")
    with open(good, "w") as f:
        f.write("[Socket]\nListenStream=127.0.0.1:%d\n" % d.port)
    bad = ctx.path("bad.socket")
    with open(bad, "w") as f:
        f.write("[Socket]\nListenStream=127.0.0.1:1\n")
    for unit, want in ((good, False), (bad, True)):
        p = subprocess.run([DAEMON, "-t", "-c", d.conf_path, "-s", unit],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        check_eq(p.returncode, 0, "scanrelayd -t -s %s status (%s)" % (unit, p.stdout))
        # Only the socket unit's warnings count here (-t also warns about the
        # user to drop to, which does not exist on a test machine).
        unit_warning = any("warning" in ln and ("ListenStream" in ln or "socket unit" in ln)
                           for ln in p.stdout.splitlines())
        check_eq(unit_warning, want, "a warning for %s: %r" % (unit, p.stdout))
    env = dict(os.environ, SCANRELAY_SOCKET_UNIT=bad)
    p = subprocess.run([DAEMON, "-t", "-c", d.conf_path], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    check("ListenStream=127.0.0.1:1 is not in listen" in p.stdout,
          "SCANRELAY_SOCKET_UNIT is honoured: %r" % p.stdout)
    p = subprocess.run([DAEMON, "-t", "-c", d.conf_path, "-s", ctx.path("none.socket")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    check_eq(p.returncode, 1, "scanrelayd -t -s MISSING status (%s)" % p.stdout)


if __name__ == "__main__":
    run_tests(globals())
