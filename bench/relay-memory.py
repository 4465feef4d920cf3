#!/usr/bin/env python3
"""Memory bench for the relay spine (issue 2 bars), measured in one run:

  1. One 50 MB message relayed to smtp-sink: the rise of scanrelayd's peak
     RSS (VmHWM) over the run, i.e. what a big body costs in memory.
  2. 1,000 idle SMTP connections (greeted, then silent): scanrelayd's RSS
     with them open, and the increase over the idle daemon.

Usage: SCANRELAY_BUILD=build python3 bench/relay-memory.py
Needs smtp-sink (package postfix). Prints the figures; exits 1 if the 50 MB
message did not arrive intact.
"""
import os, resource, shutil, signal, smtplib, socket, subprocess, sys, tempfile, time

BUILD = os.environ.get("SCANRELAY_BUILD", "build")
DAEMON = os.path.join(BUILD, "proxy", "scanrelayd")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d never opened" % port)


def status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])  # kB
    return 0


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = tempfile.mkdtemp(prefix="sr-mem-")
    os.chmod(work, 0o755)  # smtp-sink runs as nobody
    lport, rport = free_port(), free_port()
    dump = os.path.join(work, "dump")
    os.mkdir(dump)
    shutil.chown(dump, "nobody")
    conf = os.path.join(work, "sr.conf")
    with open(conf, "w") as f:
        f.write('listen = "127.0.0.1:%d"\nrelay = "127.0.0.1:%d"\n' % (lport, rport))
        f.write('state_directory = "state"\nqueue_directory = "queue"\n')
        f.write('control_socket = "ctl.sock"\nmax_connections = 1100\n')
        f.write("max_message_size = 60M\nscan {\n  enabled = no\n}\n")
    sink = subprocess.Popen(["smtp-sink", "-u", "nobody", "-d", dump + "/%H%M%S.",
                             "127.0.0.1:%d" % rport, "100"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = open(os.path.join(work, "daemon.log"), "w")
    d = subprocess.Popen([DAEMON, "-f", "-c", conf], stdout=log, stderr=log)
    ok = True
    try:
        wait_port(lport)
        wait_port(rport)
        time.sleep(0.2)

        # 1. A 50 MB message.
        hwm_before = status(d.pid, "VmHWM")
        line = b"x" * 76 + b"\r\n"
        body = b"Subject: 50 MB\r\nMessage-ID: <mem50@bench>\r\n\r\n" + line * (50 * 1024 * 1024 // len(line))
        smtp = smtplib.SMTP("127.0.0.1", lport, timeout=300)
        reply = smtp.sendmail("a@example.com", ["b@example.org"], body)
        smtp.quit()
        time.sleep(0.5)
        hwm_after = status(d.pid, "VmHWM")
        arrived = [f for f in os.listdir(dump)]
        sizes = [os.path.getsize(os.path.join(dump, f)) for f in arrived]
        # smtp-sink stores lines with LF only.
        if not sizes or max(sizes) < len(body.replace(b"\r\n", b"\n")):
            print("FAIL: the 50 MB message did not arrive (files: %s)" % sizes)
            ok = False

        # 2. 1,000 idle connections.
        base_rss = status(d.pid, "VmRSS")
        conns = []
        for _ in range(1000):
            s = socket.create_connection(("127.0.0.1", lport))
            conns.append(s)
        for s in conns:
            s.recv(512)  # the greeting: the session exists
        time.sleep(0.5)
        rss_1000 = status(d.pid, "VmRSS")
        for s in conns:
            s.close()
        time.sleep(0.5)

        print("idle daemon RSS:                 %6.1f MB" % (base_rss / 1024))
        print("with 1,000 idle connections:     %6.1f MB (+%.1f MB, %.1f kB per connection)"
              % (rss_1000 / 1024, (rss_1000 - base_rss) / 1024, (rss_1000 - base_rss) / 1000))
        print("peak RSS rise for a 50 MB message: %5.1f MB (peak before %.1f MB, after %.1f MB)"
              % ((hwm_after - hwm_before) / 1024, hwm_before / 1024, hwm_after / 1024))
    finally:
        d.send_signal(signal.SIGTERM)
        d.wait(30)
        sink.terminate()
        sink.wait()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("kept", work)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
