#!/usr/bin/env python3
"""
backup_restore.py - `scanrelay backup DIR` while the daemon runs, and a
restore of that backup into a fresh state folder (issue 13, item 9).

  * a daemon (scanning on, virus.action = quarantine) has quarantined
    messages (held, released, deleted) and logged a clean one; while a
    thread keeps quarantining more, `scanrelay backup DIR` copies the
    quarantine index, the store and the message log;
  * DIR is copied into a fresh state folder and a second daemon started on
    it: `quarantine list --state all` there shows every entry the first
    listed before the backup, with the same fields, only entries the first
    had, and each listed message's bytes (show --raw) equal the original's;
    `scanrelay log` has the messages logged before the backup;
  * `quarantine release` of a held entry on the restored node delivers it
    to that node's downstream (X-Quarantine-Released + the original bytes);
  * backup into a folder that is not empty is refused (status 2).

Run: SCANRELAY_BUILD=build SCANRELAY_SRC=. python3 t/integ/backup_restore.py [test ...]
"""
import json
import os
import shutil
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import quarantine_e2e as qe  # noqa: E402
import scan_util as su  # noqa: E402

FIELDS = ("id", "time", "sender", "recipients", "subject", "size", "reason", "virus", "state")


def listing(d):
    return {o["id"]: o for o in qe.qlist(d, "--state", "all")}


def raw_bytes(d, qid):
    rc, out, err = qe.cli_bytes(d, "quarantine", "show", qid, "--raw")
    h.check(rc == 0, "quarantine show %s --raw on %s: %d %s" % (qid, d.name, rc, err))
    return out


def test_backup_restore_release(ctx):
    rs = h.RawSink(ctx)
    d = qe.qdaemon(ctx, rs.port)
    sent = {}
    for i in range(4):
        m = qe.eicar_mail("backup me %d" % i, tag=str(i))
        sent[qe.quarantine_one(d, m, what="message %d" % i)] = m
    ids = sorted(sent)
    qe.cli_ok(d, "quarantine", "delete", ids[0])
    qe.release(d, ids[1])
    qe.wait_rs(rs, 1)
    tx = su.send(d.port, qe.clean_mail("clean before the backup"))
    su.expect_final(tx, 250, "clean message")
    qe.wait_rs(rs, 2)
    before = listing(d)
    h.check_eq(sorted(before), ids, "entries before the backup")
    h.check_eq(before[ids[0]]["state"], "deleted", "state of the deleted entry")
    h.check_eq(before[ids[1]]["state"], "released", "state of the released entry")

    # The message log is written in batches: wait until it has the 5 messages.
    def logged():
        rc, out, err = qe.cli(d, "-j", "log")
        return out if rc == 0 and len([x for x in out.splitlines() if x.strip()]) >= 5 else None
    h.wait_for(logged, 30, "5 rows in the message log")

    # Back up while more mail is being quarantined.
    stop = threading.Event()
    during = []
    errors = []

    def keep_sending():
        n = 0
        while not stop.is_set() and n < 200:
            m = qe.eicar_mail("during the backup %d" % n, tag="d%d" % n)
            try:
                tx = su.send(d.port, m)
            except Exception as e:  # reported by the main thread through `during`
                errors.append("send during the backup: %s" % e)
                return
            r = tx.final
            if r is not None and r.code == 250:
                during.append(su.reply_qid(r))
            else:
                errors.append("send during the backup: %s" % su.final_line(tx))
                return
            n += 1
    t = threading.Thread(target=keep_sending)
    t.start()
    h.wait_for(lambda: len(during) >= 2 or errors, 60, "quarantines under way")
    h.check(not errors, "; ".join(errors))
    bdir = ctx.path("backup")
    rc, out, err, _ = su.cli(["-j", "backup", bdir], d.conf_path)
    stop.set()
    t.join(120)
    h.check(not errors, "; ".join(errors))
    print("  backup: %s (%d quarantined while it ran)" % (out.strip(), len(during)), flush=True)
    h.check(rc == 0, "scanrelay backup: status %d\nstdout: %s\nstderr: %s" % (rc, out, err))
    report = json.loads(out)
    h.check(report["quarantine_index"] and report["message_log"], "backup report: %r" % report)
    live = listing(d)

    # Refused: a backup into a folder that is not empty.
    rc2, out2, err2, _ = su.cli(["backup", bdir], d.conf_path)
    h.check(rc2 == 2 and "not empty" in err2,
            "backup into a non-empty folder: expected status 2 and 'not empty', got %d %r"
            % (rc2, err2))

    # Restore into a fresh state folder and start a node on it.
    fresh = ctx.path("fresh-state")
    shutil.copytree(bdir, fresh)
    rs2 = h.RawSink(ctx)
    d2 = qe.qdaemon(ctx, rs2.port, name="restored", state_directory=fresh)
    d2.state_dir = fresh
    restored = listing(d2)
    for qid, o in before.items():
        h.check(qid in restored, "entry %s (%s) missing after the restore" % (qid, o["subject"]))
        for f in FIELDS:
            h.check_eq(restored[qid][f], o[f], "restored entry %s: %s" % (qid, f))
    extra = set(restored) - set(live)
    h.check(not extra, "restored entries the original never had: %r" % sorted(extra))
    for qid, o in restored.items():
        if o["state"] != "deleted":
            h.check_eq(raw_bytes(d2, qid), raw_bytes(d, qid), "bytes of restored entry %s" % qid)
    print("  restored %d entries (%d before the backup, %d more from during it)"
          % (len(restored), len(before), len(restored) - len(before)), flush=True)

    rc, out, err = qe.cli(d2, "-j", "log")
    h.check(rc == 0, "scanrelay log on the restored node: %d %s" % (rc, err))
    rows = [json.loads(x) for x in out.splitlines() if x.strip()]
    h.check(len(rows) >= 5, "the restored message log has %d rows, expected >= 5" % len(rows))

    # Release from the restored node: delivered to its downstream.
    held = ids[2]
    qe.release(d2, held)
    rtx = qe.wait_rs(rs2, 1)[0]
    qe.split_released(rtx.message, sent[held], "message released from the restored node")
    h.check_eq(listing(d2)[held]["state"], "released", "state on the restored node")
    h.check_eq(listing(d)[held]["state"], "held", "state on the original node")
    d2.stop()
    d.stop()


if __name__ == "__main__":
    h.run_tests(globals())
