#!/usr/bin/env python3
"""
sd_launch.py - what systemd does for scanrelayd.socket + scanrelayd.service,
for the tests: hold the listening socket, hand it to each new daemon.

    sd_launch.py --listen 127.0.0.1:PORT --log FILE -- /path/scanrelayd -f -c CONF

Binds and listens on the address once (backlog 1024, like the socket
unit's default Backlog=SOMAXCONN), then starts the command in a forked
child with the socket on descriptor 3, LISTEN_FDS=1, LISTEN_PID=<child's
pid> and LISTEN_FDNAMES, as systemd's socket activation does; the child's
stdout and stderr are appended to FILE. It never closes the socket, so
connections made while no daemon runs wait in the backlog.

Commands, one a line on stdin; each answer is one line on stdout:
    restart        SIGTERM, wait, start again  -> "restarted STATUS NEWPID"
    kill-restart   SIGKILL, wait, start again  -> "restarted STATUS NEWPID"
    stop           SIGTERM, wait, exit         -> "stopped STATUS"
STATUS is the old daemon's exit status (negative: killed by that signal).
At start it prints "started PID". EOF on stdin is "stop". Single-threaded,
so fork() is safe here.
"""
import argparse
import os
import signal
import socket
import sys


def start(sock, argv, log):
    pid = os.fork()
    if pid == 0:
        try:
            fd = sock.fileno()
            if fd != 3:
                os.dup2(fd, 3)
            os.set_inheritable(3, True)
            out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.dup2(out, 1)
            os.dup2(out, 2)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            env = dict(os.environ)
            env["LISTEN_FDS"] = "1"
            env["LISTEN_PID"] = str(os.getpid())
            env["LISTEN_FDNAMES"] = "scanrelayd.socket"
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    return pid


def stop(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("argv", nargs="+")
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    sock.listen(1024)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    pid = start(sock, a.argv, a.log)
    print("started %d" % pid, flush=True)
    try:
        for line in sys.stdin:
            cmd = line.strip()
            if cmd in ("restart", "kill-restart"):
                st = stop(pid, signal.SIGTERM if cmd == "restart" else signal.SIGKILL)
                pid = start(sock, a.argv, a.log)
                print("restarted %d %d" % (st, pid), flush=True)
            elif cmd == "stop":
                break
            else:
                print("error unknown command %r" % cmd, flush=True)
    finally:
        if pid:
            st = stop(pid, signal.SIGTERM)
            print("stopped %d" % st, flush=True)
            pid = 0


if __name__ == "__main__":
    main()
