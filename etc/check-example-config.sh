#!/bin/bash
# check-example-config.sh - check that etc/scanrelay.conf matches lib/config.c
# and that scanrelayd accepts it.
#
# usage: etc/check-example-config.sh [SCANRELAYD]
#   SCANRELAYD  the daemon binary; default ${SCANRELAY_BUILD:-build}/proxy/scanrelayd
#               (SCANRELAY_BUILD relative to the source tree or absolute).
#   SCANRELAY_SRC  the source tree; default: the folder above this script.
#
# Checks:
#   1. Every key of lib/config.c appears in the example, in the same section,
#      exactly once, commented out ("#key = value"), and the example has no
#      key config.c lacks.
#   2. Each commented value equals config.c's default (sizes, durations,
#      numbers, actions, booleans, strings and lists compared by value).
#   3. doc/scanrelay.conf.5 has a paragraph for every key.
#   4. "scanrelayd -t" accepts the example as shipped and with every key
#      uncommented. Only the path keys (and user, set to nobody) are pointed at a temporary folder (a
#      test signature database, state, queue, socket), so the check needs no
#      installed ClamAV database and no /var/lib/scanrelay.
#   5. "scanrelayd -t" rejects the example with one unknown key (so a -t
#      that checks nothing cannot pass).
# Exit status: 0 all passed, 1 a check failed (each failure is printed).
set -u

src=${SCANRELAY_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
build=${SCANRELAY_BUILD:-build}
case $build in /*) ;; *) build=$src/$build ;; esac
daemon=${1:-$build/proxy/scanrelayd}
example=$src/etc/scanrelay.conf
configc=$src/lib/config.c

fail=0
failed() { echo "FAIL: $*" >&2; fail=1; }
note() { echo "check-example-config: $*"; }

for f in "$example" "$configc"; do
    [ -r "$f" ] || { echo "FAIL: cannot read $f" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/scanrelay-conf.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

# ---------------------------------------------------------------------------
# Keys and defaults from config.c: "section key type default" per line
# (section "-" for the top level). Arrays are "static cfg_opt_t NAME_opts[]";
# NAME is the section name, "top" the top level.
# ---------------------------------------------------------------------------
awk '
    /^static cfg_opt_t [a-z_]+_opts\[\] *= *\{/ {
        sec = $3; sub(/_opts\[\].*/, "", sec); if (sec == "top") sec = "-"; inarr = 1; next
    }
    inarr && /^};/ { inarr = 0; next }
    inarr && /^[ \t]*(CFG_STR|CFG_STR_LIST|CFG_BOOL|CFG_INT|SIZE|DUR|COUNT|ACTION)\("/ {
        line = $0
        sub(/^[ \t]*/, "", line)
        type = line; sub(/\(.*/, "", type)
        rest = line; sub(/^[A-Z_]+\("/, "", rest)
        key = rest; sub(/".*/, "", key)
        def = rest; sub(/^[a-z_0-9]+", */, "", def)
        sub(/\),? *$/, "", def)            # closing paren of the macro
        sub(/, *CFGF_[A-Z_|]+.*$/, "", def) # flags and callback
        printf "%s %s %s %s\n", sec, key, type, def
    }
' "$configc" >"$tmp/keys.c"

# Keys in the example: "section key value" per line, commented or not, plus
# "!active" for keys that are not commented out.
awk '
    BEGIN { sec = "-" }
    /^[ \t]*[a-z_]+[ \t]*\{[ \t]*(#.*)?$/ { s = $0; gsub(/[ \t{]/, "", s); sub(/#.*/, "", s); sec = s; next }
    /^[ \t]*#?[a-z_]+[ \t]+"[^"]*"[ \t]*\{[ \t]*$/ { s = $0; sub(/^[ \t]*#?/, "", s); sub(/[ \t].*/, "", s); sec = s; next }
    /^[ \t]*#?\}[ \t]*$/ { sec = "-"; next }
    /^[ \t]*#?[a-z_]+[ \t]*=/ {
        line = $0
        active = (line !~ /^[ \t]*#/)
        sub(/^[ \t]*#?/, "", line)
        key = line; sub(/[ \t]*=.*/, "", key)
        val = line; sub(/^[a-z_]+[ \t]*=[ \t]*/, "", val); sub(/[ \t]+$/, "", val)
        printf "%s %s %s %s\n", sec, key, (active ? "!active" : "commented"), val
    }
' "$example" >"$tmp/keys.ex"

nc=$(wc -l <"$tmp/keys.c")
if [ "$nc" -lt 10 ]; then
    failed "found only $nc keys in $configc: has its layout changed? (update this script)"
    exit 1
fi

# size/duration/number in the example -> integer, or "bad"
to_int() { # kind value
    local v=$1 n sfx
    v=${v#\"}; v=${v%\"}
    n=${v%%[!0-9]*}; sfx=${v#"$n"}
    [ -n "$n" ] || { echo bad; return; }
    case $2:$sfx in
        *:) echo $((10#$n)) ;;
        size:k|size:K) echo $((10#$n * 1024)) ;;
        size:M) echo $((10#$n * 1048576)) ;;
        size:G) echo $((10#$n * 1073741824)) ;;
        size:b|size:B) echo $((10#$n)) ;;
        dur:s) echo $((10#$n)) ;;
        dur:m|dur:min) echo $((10#$n * 60)) ;;
        dur:h) echo $((10#$n * 3600)) ;;
        dur:d) echo $((10#$n * 86400)) ;;
        dur:w) echo $((10#$n * 604800)) ;;
        *) echo bad ;;
    esac
}
# C constant expression of config.c (100 * M, 10L * 1024 * M) -> integer
c_int() {
    local e
    e=$(printf '%s' "$1" | sed -E 's/\bK\b/1024/g; s/\bM\b/1048576/g; s/([0-9])[LU]+\b/\1/g')
    case $e in *[!0-9\ \*+\(\)-]*) echo bad; return ;; esac
    echo $((e))
}
norm_list() { # {"a", "b"} or "{a, b}" -> a,b
    printf '%s' "$1" | tr -d '"{} \t'
}

# ---------------------------------------------------------------------------
# 1 and 2: same keys, same sections, same defaults.
# ---------------------------------------------------------------------------
while read -r sec key type def; do
    where="$key"; [ "$sec" = - ] || where="$sec { $key }"
    hits=$(awk -v s="$sec" -v k="$key" '$1 == s && $2 == k' "$tmp/keys.ex")
    n=$(printf '%s' "$hits" | grep -c .)
    if [ "$n" -eq 0 ]; then
        failed "$where: in lib/config.c but not in etc/scanrelay.conf"
        continue
    elif [ "$n" -gt 1 ]; then
        failed "$where: appears $n times in etc/scanrelay.conf"
    fi
    state=$(printf '%s\n' "$hits" | head -1 | cut -d' ' -f3)
    val=$(printf '%s\n' "$hits" | head -1 | cut -d' ' -f4-)
    [ "$state" = commented ] || failed "$where: not commented out in the example"
    case $type in
        SIZE) want=$(c_int "$def"); got=$(to_int "$val" size) ;;
        DUR) want=$(c_int "$def"); got=$(to_int "$val" dur) ;;
        COUNT | CFG_INT) want=$(c_int "$def"); got=$(to_int "$val" count) ;;
        ACTION)
            want=$(printf "%s" "${def#SR_ACTION_}" | tr -d "\"" | tr "[:upper:]" "[:lower:]")
            got=${val//\"/}; [ "$got" = pass ] && got=deliver ;;
        CFG_BOOL)
            case $def in cfg_true) want=yes ;; *) want=no ;; esac
            case ${val//\"/} in yes | true | on) got=yes ;; no | false | off) got=no ;; *) got="$val" ;; esac ;;
        CFG_STR_LIST) want=$(norm_list "$def"); got=$(norm_list "$val") ;;
        CFG_STR)
            if [ "$def" = NULL ]; then
                continue # resolved at load time (a path below /var or /run)
            fi
            want=${def//\"/}; got=${val//\"/} ;;
        *) failed "$where: unknown type $type"; continue ;;
    esac
    if [ "$want" = bad ] || [ "$got" = bad ] || [ "$want" != "$got" ]; then
        failed "$where: example says '$val', config.c default is '$def'"
    fi
done <"$tmp/keys.c"

while read -r sec key _; do
    if ! awk -v s="$sec" -v k="$key" '$1 == s && $2 == k { f = 1 } END { exit !f }' "$tmp/keys.c"; then
        where="$key"; [ "$sec" = - ] || where="$sec { $key }"
        failed "$where: in etc/scanrelay.conf but not in lib/config.c"
    fi
done <"$tmp/keys.ex"
note "$nc keys of lib/config.c compared with etc/scanrelay.conf"

# The manual page documents every key (".BR key ..." heading a paragraph).
man5=$src/doc/scanrelay.conf.5
if [ -r "$man5" ]; then
    while read -r sec key _; do
        if ! grep -qE "^\.BR $key \"" "$man5"; then
            w=$key
            [ "$sec" = - ] || w="$sec { $key }"
            failed "$w: not documented in doc/scanrelay.conf.5"
        fi
    done <"$tmp/keys.c"
fi

# ---------------------------------------------------------------------------
# 3 and 4: scanrelayd -t.
# ---------------------------------------------------------------------------
if [ ! -x "$daemon" ]; then
    failed "no daemon binary at $daemon (set SCANRELAY_BUILD or pass the path)"
    exit 1
fi

# A signature database of one body signature (a marker string, not EICAR, so
# that virus scanners leave this script alone).
mkdir -p "$tmp/db" "$tmp/state" "$tmp/queue" "$tmp/run"
hex=$(printf 'scanrelay-check-example-config-marker' | od -An -tx1 | tr -d ' \n')
printf 'Scanrelay.Test.Marker:0:*:%s\n' "$hex" >"$tmp/db/scanrelay-test.ndb"

# Point the path keys at the temporary folder, uncommenting them if needed,
# and user at "nobody" (every Debian system has it; "scanrelay" exists only
# where the package is installed, and started as root -t refuses a named
# user that does not exist).
hermetic() {
    sed -E \
        -e "s|^([[:space:]]*)#?(database_directory[[:space:]]*=).*|\\1\\2 \"$tmp/db\"|" \
        -e "s|^([[:space:]]*)#?(state_directory[[:space:]]*=).*|\\1\\2 \"$tmp/state\"|" \
        -e "s|^([[:space:]]*)#?(queue_directory[[:space:]]*=).*|\\1\\2 \"$tmp/queue\"|" \
        -e "s|^([[:space:]]*)#?(control_socket[[:space:]]*=).*|\\1\\2 \"$tmp/run/control.sock\"|" \
        -e "s|^([[:space:]]*)#?(user[[:space:]]*=).*|\\1\\2 \"nobody\"|"
}
# Titled sections (rule "NAME" { }) ship commented out, braces included.
uncomment_all() {
    sed -E -e 's/^([[:space:]]*)#([a-z_]+[[:space:]]*=)/\1\2/' \
        -e 's/^([[:space:]]*)#([a-z_]+[[:space:]]+"[^"]*"[[:space:]]*\{[[:space:]]*)$/\1\2/' \
        -e 's/^([[:space:]]*)#(\}[[:space:]]*)$/\1\2/'
}

hermetic <"$example" >"$tmp/shipped.conf"
uncomment_all <"$example" | hermetic >"$tmp/all.conf"
{
    cat "$tmp/all.conf"
    echo 'no_such_key_for_the_check = 1'
} >"$tmp/bad.conf"

nact=$(grep -cE '^[[:space:]]*[a-z_]+[[:space:]]*=' "$tmp/all.conf")
[ "$nact" -eq "$nc" ] || failed "uncommenting gave $nact active keys, config.c has $nc"

run_t() { # name file expect(0|1)
    local out rc
    out=$(cd "$tmp" && timeout 120 "$daemon" -t -c "$2" 2>&1)
    rc=$?
    if [ "$3" = 0 ] && [ $rc -ne 0 ]; then
        failed "scanrelayd -t refused the example ($1), exit $rc:"
        printf '%s\n' "$out" | sed 's/^/    /' >&2
    elif [ "$3" = 1 ] && [ $rc -eq 0 ]; then
        failed "scanrelayd -t accepted an unknown key ($1):"
        printf '%s\n' "$out" | sed 's/^/    /' >&2
    elif [ "$3" = 1 ] && ! printf '%s' "$out" | grep -q 'no_such_key_for_the_check'; then
        failed "scanrelayd -t refused the unknown key without naming it ($1): $out"
    else
        note "scanrelayd -t, $1: exit $rc as expected${out:+: $(printf '%s' "$out" | head -3 | tr '\n' ' ')}"
    fi
}
run_t "as shipped" "$tmp/shipped.conf" 0
run_t "every key uncommented" "$tmp/all.conf" 0
run_t "unknown key added" "$tmp/bad.conf" 1

if [ $fail -eq 0 ]; then
    note "PASS"
else
    note "FAILED"
fi
exit $fail
