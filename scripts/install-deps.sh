#!/bin/sh
# Install every Debian 12 package scanrelay needs to build, run and test.
# Run as root. Safe to run again.
set -eu
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: run me as root (apt-get)" >&2
    exit 1
fi
PKGS="build-essential cmake pkg-config python3
      libevent-dev libconfuse-dev libsystemd-dev libcmocka-dev
      libclamav-dev libgmime-3.0-dev libarchive-dev zlib1g-dev libsqlite3-dev
      libpcre2-dev libmagic-dev
      postfix swaks clamav clamav-testfiles clamsmtp clamav-daemon
      procps iproute2 sqlite3 prometheus
      debhelper lintian"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# Packaged daemons are not ours to run: tests start private instances.
# (prometheus is installed for its promtool only.)
for s in postfix clamav-daemon clamav-freshclam clamsmtp prometheus; do
    if command -v systemctl >/dev/null 2>&1; then
        systemctl stop "$s" >/dev/null 2>&1 || true
    fi
done
pkill -x clamsmtpd >/dev/null 2>&1 || true
exit 0
