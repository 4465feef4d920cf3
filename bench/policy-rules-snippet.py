#!/usr/bin/env python3
"""policy-rules-snippet.py - the rule set of issue 10's speed bar, as a config snippet.

Prints rule "NAME" { } sections with 500 keyword entries (subject and body
lists, any/all/phrase, some Japanese), 50 /regex/ entries, 100 sender-list
entries and 20 attachment rules. Every action is tag (a header), so that
corpus-bench.py's "every message relayed" check holds whatever matches.

    bench/policy-rules-snippet.py > /tmp/rules.conf
    bench/corpus-bench.py --scan on --variant norules=build/proxy/scanrelayd \\
        --variant rules=build/proxy/scanrelayd:/tmp/rules.conf \\
        ../shared/corpora/spamassassin-public.tar.xz
"""
import random

rnd = random.Random(10)
# Words of an administrator's spam lists: each rare in ordinary mail.
WORDS = ("viagra casino lottery mortgage pills refinance bitcoin jackpot sweepstakes "
         "inheritance beneficiary cialis replica rolex diploma payday unclaimed "
         "未承諾広告 当選 出会い 副業 高収入").split()
# Words common in all mail: only inside all/phrase entries with a rare word.
COMMON = "free money offer winner credit loan cheap discount prize claim urgent".split()


def kw(mode):
    w = [rnd.choice(WORDS)]
    if mode != "any":
        w += [rnd.choice(COMMON) for _ in range(rnd.choice((1, 2)))]
        rnd.shuffle(w)
    if rnd.random() < 0.5:  # many entries that never match, like a real list
        w.append("zz%05d" % rnd.randrange(100000))
        if mode == "any":
            w = w[1:]
    return " ".join(w)


def q(items):
    return "{" + ", ".join('"%s"' % i for i in items) + "}"


out = []
# 500 keyword entries in 10 rules of 50 (subject and body, the three modes).
for i in range(10):
    key = "subject" if i % 2 == 0 else "body"
    mode = ("any", "all", "phrase")[i % 3]
    out.append('rule "kw%d" {\n  %s = %s\n  match = %s\n  action = tag\n'
               '  tag_header = "X-Policy: kw%d"\n}\n' % (i, key, q(kw(mode) for _ in range(50)), mode, i))
# 50 regexes in 5 rules of 10.
for i in range(5):
    res = ["/%s\\\\s+%s\\\\d{%d}/" % (rnd.choice(COMMON), rnd.choice(WORDS), rnd.randrange(1, 4))
           for _ in range(10)]
    out.append('rule "re%d" {\n  body = %s\n  action = tag\n  tag_header = "X-Policy: re%d"\n}\n'
               % (i, q(res), i))
# 100 sender entries.
senders = (["user%d@example%d.com" % (j, j) for j in range(40)] +
           ["@domain%d.example" % j for j in range(30)] +
           [".sub%d.example" % j for j in range(20)] +
           ["*@glob%d.example" % j for j in range(10)])
out.append('rule "senders" {\n  sender = %s\n  action = tag\n  tag_header = "X-Policy: senders"\n}\n'
           % q(senders))
# 20 attachment rules.
exts = ["exe", "scr", "pif", "com", "bat", "cmd", "js", "vbs", "jar", "hta"]
for i in range(20):
    if i < 10:
        cond = 'attachment_name = {"*.%s", "*.*.%s"}' % (exts[i], exts[i])
    elif i < 15:
        cond = 'attachment_true_type = {"application/vnd.microsoft.portable-executable%s"}' % (
            "" if i == 10 else "-x%d" % i)
    else:
        cond = 'attachment_type = {"application/x-type%d*"}' % i
    out.append('rule "att%d" {\n  %s\n  action = tag\n  tag_header = "X-Policy: att%d"\n}\n'
               % (i, cond, i))
print("".join(out), end="")
