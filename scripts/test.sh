#!/bin/sh
# Install what is needed, build, and run the whole test suite.
#   scripts/test.sh            (as root: installs Debian packages first)
# Two builds: build-asan (AddressSanitizer + UBSan, every test runs here)
# and build (release, warnings as errors) so both stay clean.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" -eq 0 ]; then
    scripts/install-deps.sh
fi
JOBS=$(nproc 2>/dev/null || echo 2)

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSCANRELAY_WERROR=ON >/dev/null
cmake --build build -j "$JOBS"

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSCANRELAY_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$JOBS"

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
if [ -f t/lsan.supp ]; then
    export LSAN_OPTIONS="suppressions=$(pwd)/t/lsan.supp"
fi
ctest --test-dir build-asan --output-on-failure "$@"
