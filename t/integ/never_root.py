#!/usr/bin/env python3
"""
never_root.py - scanrelayd started as root drops to its user before it
reads any mail (issue 13, item 8).

  * user = "nobody", with state, queue and control-socket folders that do
    not exist yet: the daemon listens, /proc/PID/status shows every uid and
    gid (real, effective, saved, fs) of every thread as nobody/nogroup and
    no supplementary group but nogroup, the folders and the SQLite files are
    nobody's, and mail still flows: a clean message is relayed, an EICAR one
    quarantined and released through the control socket;
  * a user named in the file that does not exist: the daemon refuses to
    start (non-zero exit naming the user, nothing listening), and
    `scanrelayd -t` fails too;
  * `scanrelayd -t` warns about a state folder the user does not own;
  * the default user "scanrelay" missing (a machine without the package,
    like CI): a loud warning, and the daemon runs as root as before.

Needs root (skipped otherwise).
Run: SCANRELAY_BUILD=build SCANRELAY_SRC=. python3 t/integ/never_root.py [test ...]
"""
import os
import pwd
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import quarantine_e2e as qe  # noqa: E402
import scan_util as su  # noqa: E402


def need_root():
    if not h.IS_ROOT:
        raise h.Skip("needs root (the daemon must start as root to drop privileges)")


def ids(pid, task=None):
    """Uid, Gid (4 numbers each) and Groups of a process or one of its threads."""
    path = "/proc/%d/status" % pid if task is None else "/proc/%d/task/%s/status" % (pid, task)
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "Groups"):
                out[k] = [int(x) for x in v.split()]
    return out


def owner(path):
    return os.stat(path).st_uid


def test_drops_to_nobody(ctx):
    need_root()
    nobody = pwd.getpwnam("nobody")
    fresh = ctx.path("fresh")  # none of these exist: the daemon makes them, owned by nobody
    state, queue, sock = (os.path.join(fresh, "state"), os.path.join(fresh, "queue"),
                          os.path.join(fresh, "run", "control.sock"))
    rs = h.RawSink(ctx)
    d = qe.qdaemon(ctx, rs.port, user="nobody", state_directory=state, queue_directory=queue,
                   control_socket=sock)
    d.state_dir, d.queue_dir = state, queue
    d.wait_log(r"running as user nobody \(uid %d, gid %d\)" % (nobody.pw_uid, nobody.pw_gid))
    # Bound before the drop, so listening comes early: wait for the rest.
    d.wait_log(r"daemon started", timeout=60)
    pid = d.proc.pid
    tasks = os.listdir("/proc/%d/task" % pid)
    h.check(len(tasks) > 1, "expected scan and writer threads, found %d task(s)" % len(tasks))
    for t in tasks:
        got = ids(pid, t)
        h.check_eq(got["Uid"], [nobody.pw_uid] * 4, "thread %s: Uid (real, effective, saved, fs)" % t)
        h.check_eq(got["Gid"], [nobody.pw_gid] * 4, "thread %s: Gid (real, effective, saved, fs)" % t)
        h.check(set(got["Groups"]) <= {nobody.pw_gid},
                "thread %s: supplementary groups %r (root's kept?)" % (t, got["Groups"]))
    for p in (state, queue, os.path.dirname(sock), sock):
        h.check_eq(owner(p), nobody.pw_uid, "owner of %s" % p)

    # Mail flows: relayed, quarantined, released.
    msg = qe.clean_mail("clean, as nobody")
    tx = su.send(d.port, msg)
    su.expect_final(tx, 250, "clean message through a daemon running as nobody")
    rtx = qe.wait_rs(rs, 1)[0]
    h.check(b"clean, as nobody" in rtx.message, "the clean message did not arrive")
    evil = qe.eicar_mail("eicar, as nobody")
    qid = qe.quarantine_one(d, evil, what="EICAR message as nobody")
    h.check_eq([o["id"] for o in qe.qlist(d)], [qid], "quarantine list")
    for root, _, files in os.walk(state):
        for f in files:
            h.check_eq(owner(os.path.join(root, f)), nobody.pw_uid,
                       "owner of %s" % os.path.join(root, f))
    qe.release(d, qid)
    rtx = qe.wait_rs(rs, 2)[1]
    qe.split_released(rtx.message, evil, "message released by a daemon running as nobody")
    d.stop()


def test_named_user_missing(ctx):
    need_root()
    name = "sr-no-such-user"
    try:
        pwd.getpwnam(name)
        raise h.Skip("user %s exists" % name)
    except KeyError:
        pass
    d = h.Scanrelayd(ctx, start=False, user=name)
    try:
        p = subprocess.run([h.DAEMON, "-f", "-c", d.conf_path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
    except subprocess.TimeoutExpired:
        h.fail("scanrelayd with a missing user is still running after 60 s")
    out = p.stdout.decode("utf-8", "replace")
    print("  exit %d: %s" % (p.returncode, out.strip().splitlines()[-1] if out.strip() else ""))
    h.check(p.returncode > 0, "scanrelayd exited %d with a missing user:\n%s" % (p.returncode, out))
    h.check("'%s' does not exist" % name in out, "the error does not name the user:\n%s" % out)
    h.check(h.port_refuses(d.port), "something listens on the daemon's port")
    rc, tout = h.run_daemon_check(d.conf_path)
    h.check(rc == 1, "scanrelayd -t exited %d with a missing user:\n%s" % (rc, tout))
    h.check(name in tout, "scanrelayd -t does not name the user:\n%s" % tout)


def test_check_warns_ownership(ctx):
    need_root()
    nobody = pwd.getpwnam("nobody")
    run = ctx.mkdir("run", mode=0o750)
    d = h.Scanrelayd(ctx, start=False, user="nobody", control_socket=os.path.join(run, "c.sock"))
    os.chown(run, nobody.pw_uid, nobody.pw_gid)
    os.chown(d.queue_dir, nobody.pw_uid, nobody.pw_gid)  # state_dir stays root's
    rc, out = h.run_daemon_check(d.conf_path)
    h.check(rc == 0, "scanrelayd -t exited %d:\n%s" % (rc, out))
    h.check("warning: state_directory %s is owned by root, not by nobody" % d.state_dir in out,
            "scanrelayd -t does not warn about the root-owned state folder:\n%s" % out)
    h.check("queue_directory" not in out, "scanrelayd -t warns about the queue folder, which "
            "nobody owns:\n%s" % out)
    os.chown(d.state_dir, nobody.pw_uid, nobody.pw_gid)
    rc, out = h.run_daemon_check(d.conf_path)
    h.check(rc == 0 and "warning" not in out, "scanrelayd -t still warns (%d):\n%s" % (rc, out))


def test_default_user_missing_stays_root(ctx):
    need_root()
    try:
        pwd.getpwnam("scanrelay")
        raise h.Skip("the user scanrelay exists here: the default drops to it")
    except KeyError:
        pass
    sink = h.SmtpSink(ctx)
    d = h.Scanrelayd(ctx, relay_port=sink.port)
    d.wait_log(r"running as root: the user 'scanrelay' does not exist")
    h.check_eq(ids(d.proc.pid)["Uid"], [0] * 4, "Uid of a daemon without its user")
    tx = su.send(d.port, qe.clean_mail("as root"))
    su.expect_final(tx, 250, "clean message through a daemon running as root")
    sink.wait_dumps(1)
    d.stop()


if __name__ == "__main__":
    h.run_tests(globals())
