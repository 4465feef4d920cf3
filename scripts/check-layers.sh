#!/bin/sh
# check-layers.sh - the folder rule and "no circle of calls" (ARCHITECTURE.md).
#
#   scripts/check-layers.sh [-v]
#
# 1. Includes: lib/ includes no header of queue/, scan/, quarantine/,
#    proxy/; scan/, queue/ and quarantine/ include no header of proxy/.
#    (A header belongs to the folder it lives in; #include "x.h" lines are
#    matched against the folders' header names.)
# 2. Calls: for each folder, the non-static functions defined in each .c
#    and, for each .c, which of them (defined in another file of the same
#    folder) it calls, comments stripped. Prints the call graph of proxy/
#    (all folders with -v) and fails on a circle (tsort finds it) or on a
#    call into proxy/scanrelayd.c (the daemon's main: leaves never call
#    up into it).
# Exit 0 clean, 1 with the violations printed. Needs cc (comment
# stripping with -fpreprocessed), awk, tsort.
set -u
cd "$(dirname "$0")/.."
verbose=0
[ "${1:-}" = "-v" ] && verbose=1
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

headers() { for h in "$1"/*.h; do [ -e "$h" ] && basename "$h"; done; }

# --- 1. includes ---------------------------------------------------------
check_includes() { # folder forbidden-folder...
    from=$1
    shift
    for other in "$@"; do
        for h in $(headers "$other"); do
            hits=$(grep -n "^[[:space:]]*#[[:space:]]*include[[:space:]]*\"$h\"" "$from"/*.c "$from"/*.h 2>/dev/null)
            if [ -n "$hits" ]; then
                echo "layer: $from/ includes $other/$h:"
                echo "$hits" | sed 's/^/    /'
                fail=1
            fi
        done
    done
}
check_includes lib queue scan quarantine proxy
check_includes scan proxy
check_includes queue proxy
check_includes quarantine proxy

# --- 2. calls within each folder -------------------------------------------
strip() { cc -fpreprocessed -dD -E -P "$1" 2>/dev/null | grep -v '^#'; }

for dir in lib queue scan quarantine proxy; do
    : >"$tmp/defs"
    for f in "$dir"/*.c; do
        # A definition: "name(" at the start of a line whose previous line
        # (the return type) does not start with "static".
        strip "$f" | awk -v file="$(basename "$f")" '
            /^[A-Za-z_][A-Za-z0-9_]*\(/ && prev !~ /^static/ && prev !~ /;[[:space:]]*$/ {
                n = $0; sub(/\(.*/, "", n); print n, file
            }
            { prev = $0 }' >>"$tmp/defs"
    done
    : >"$tmp/edges"
    for f in "$dir"/*.c; do
        b=$(basename "$f")
        strip "$f" >"$tmp/src"
        while read -r fn deffile; do
            [ "$deffile" = "$b" ] && continue
            if grep -q "\\b$fn[[:space:]]*(" "$tmp/src"; then
                echo "$b $deffile $fn" >>"$tmp/edges"
            fi
        done <"$tmp/defs"
    done
    if [ "$dir" = proxy ] || [ $verbose = 1 ]; then
        echo "calls among $dir/ files (caller -> callee: functions):"
        awk '{ k = $1 " -> " $2; f[k] = f[k] (f[k] ? ", " : "") $3 }
             END { for (k in f) print "    " k ": " f[k] }' "$tmp/edges" | sort
    fi
    if [ "$dir" = proxy ]; then
        up=$(awk '$2 == "scanrelayd.c"' "$tmp/edges")
        if [ -n "$up" ]; then
            echo "layer: calls up into proxy/scanrelayd.c:"
            echo "$up" | sed 's/^/    /'
            fail=1
        fi
    fi
    # tsort prints the files of a circle on stderr.
    awk '{ print $1, $2 }' "$tmp/edges" | sort -u >"$tmp/pairs"
    if ! tsort "$tmp/pairs" >/dev/null 2>"$tmp/tsort"; then
        echo "circle of calls among $dir/ files:"
        sed 's/^/    /' "$tmp/tsort"
        fail=1
    fi
done

if [ $fail = 0 ]; then
    echo "check-layers: ok (includes follow the folder rule; no circle of calls; nothing calls scanrelayd.c)"
fi
exit $fail
