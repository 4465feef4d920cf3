#!/bin/sh
# Run one libFuzzer target for a while, with its corpus and the dictionary.
#   fuzz/run.sh TARGET SECONDS        (TARGET: smtpd_proto smtp_cmd smtp_reply
#                                      mime rfc2047 archive queue_file config scan)
#   fuzz/run.sh list                  the targets
# Builds the clang tree build-fuzz/ (-DSCANRELAY_FUZZ=ON, ASan + UBSan +
# coverage) when needed, fuzzes from fuzz/corpus/TARGET into a scratch
# folder (the tree's corpus is never written while fuzzing), then merges
# what found new coverage back into fuzz/corpus/TARGET (libFuzzer's
# -merge=1: only inputs that add coverage, smallest first). A crash is left
# in fuzz/crashes/TARGET/ as a reproducer (replayed by ctest from then on).
# Prints executions, exec/s and coverage (cov = edges, ft = features).
# Environment: FUZZ_JOBS (build jobs, 2), FUZZ_NICE (nice level, 19),
# FUZZ_NO_MERGE=1 (leave the corpus alone), FUZZ_ARGS (more libFuzzer flags).
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TARGETS="smtpd_proto smtp_cmd smtp_reply mime rfc2047 archive queue_file config scan"

if [ "${1:-}" = list ]; then
    echo "$TARGETS"
    exit 0
fi
if [ $# -ne 2 ]; then
    echo "usage: fuzz/run.sh TARGET SECONDS  (targets: $TARGETS)" >&2
    exit 2
fi
T=$1
SECS=$2
case " $TARGETS " in
*" $T "*) ;;
*) echo "run.sh: unknown target $T (targets: $TARGETS)" >&2; exit 2 ;;
esac

# Build (clang with libFuzzer: Debian's clang-14 and libclang-rt-14-dev).
CC_FUZZ=${CC_FUZZ:-$(command -v clang || command -v clang-14 || true)}
if [ -z "$CC_FUZZ" ]; then
    echo "run.sh: clang not found (apt-get install clang-14 libclang-rt-14-dev)" >&2
    exit 2
fi
B=build-fuzz
if [ ! -f "$B/CMakeCache.txt" ]; then
    CC=$CC_FUZZ cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSCANRELAY_FUZZ=ON \
        -DBUILD_TESTING=OFF >/dev/null
fi
nice -n "${FUZZ_NICE:-19}" cmake --build "$B" -j "${FUZZ_JOBS:-2}" --target "fuzz_$T" >/dev/null
BIN=$ROOT/$B/fuzz/fuzz_$T

# Per-target flags (fuzz/TARGET.options: one libFuzzer flag a line).
OPTS="-dict=$ROOT/fuzz/smtp_mime.dict -max_total_time=$SECS -print_final_stats=1"
OPTS="$OPTS -timeout=25 -rss_limit_mb=2560"
if [ -f "fuzz/$T.options" ]; then
    OPTS="$OPTS $(grep -v '^#' "fuzz/$T.options" | tr '\n' ' ')"
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sr-fuzz-run.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM
mkdir -p "$WORK/corpus" "fuzz/corpus/$T" "fuzz/crashes/$T"
cp "fuzz/corpus/$T"/* "$WORK/corpus/" 2>/dev/null || true

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
if [ -f t/lsan.supp ]; then
    export LSAN_OPTIONS="suppressions=$ROOT/t/lsan.supp"
fi
echo "run.sh: fuzzing $T for ${SECS}s ($(ls "$WORK/corpus" | wc -l) seeds)"
set +e
# shellcheck disable=SC2086
nice -n "${FUZZ_NICE:-19}" "$BIN" $OPTS ${FUZZ_ARGS:-} \
    -artifact_prefix="$ROOT/fuzz/crashes/$T/" "$WORK/corpus" 2>"$WORK/log"
RC=$?
set -e
cp "$WORK/log" "$ROOT/$B/fuzz-$T.log"
grep -E 'INITED|DONE|ERROR|SUMMARY|invariant broken|transcript differs|Test unit written' \
    "$WORK/log" | head -40
grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' \
    "$WORK/log" || true

# Merge: the tree's corpus and the new inputs, minimized together by
# libFuzzer (-merge=1 -use_counters=0: the smallest inputs that keep every
# covered edge; hit-count variety is found again by the next run), then
# the tree's folder holds that set, so it stays small. Not after a crash
# (the run was cut short).
if [ "${FUZZ_NO_MERGE:-0}" != 1 ] && [ $RC -eq 0 ]; then
    before="$(ls "fuzz/corpus/$T" | wc -l) inputs, $(du -sb "fuzz/corpus/$T" | cut -f1) bytes"
    mkdir "$WORK/merged"
    # shellcheck disable=SC2046
    if nice -n "${FUZZ_NICE:-19}" "$BIN" -merge=1 -use_counters=0 $(grep -v '^#' "fuzz/$T.options" 2>/dev/null) \
        "$WORK/merged" "fuzz/corpus/$T" "$WORK/corpus" \
        >"$WORK/merge.log" 2>&1 && [ -n "$(ls "$WORK/merged")" ]; then
        rm -f "fuzz/corpus/$T"/*
        cp "$WORK/merged"/* "fuzz/corpus/$T/"
    else
        echo "run.sh: merge failed, corpus left alone (see $B/fuzz-$T-merge.log)"
        cp "$WORK/merge.log" "$ROOT/$B/fuzz-$T-merge.log"
    fi
    after="$(ls "fuzz/corpus/$T" | wc -l) inputs, $(du -sb "fuzz/corpus/$T" | cut -f1) bytes"
    echo "run.sh: corpus fuzz/corpus/$T: $before -> $after"
fi
echo "run.sh: log in $B/fuzz-$T.log; exit $RC"
exit $RC
