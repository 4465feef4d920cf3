#!/bin/sh
# Build the Debian package scanrelay_VERSION_ARCH.deb from this tree.
#   scripts/build-deb.sh [OUTDIR]      (default OUTDIR: dist/)
# The tree (without .git, build folders and dist/) is copied to a scratch
# folder and built there with debhelper (dpkg-buildpackage -b), so the
# working tree stays clean and uncommitted changes are packaged too. Needs
# the build dependencies of scripts/install-deps.sh plus debhelper; no root
# (Rules-Requires-Root: no). Prints the path of the .deb.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$src/dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)
command -v dpkg-buildpackage >/dev/null || { echo "build-deb.sh: dpkg-buildpackage missing (apt-get install dpkg-dev debhelper)" >&2; exit 1; }
command -v dh >/dev/null || { echo "build-deb.sh: dh missing (apt-get install debhelper)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/scanrelay-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/scanrelay"
# Everything but VCS data, build trees and earlier packages.
tar -C "$src" --exclude=./.git --exclude='./build*' --exclude=./dist --exclude=./run \
    -cf - . | tar -C "$work/scanrelay" -xf -
jobs=$(nproc 2>/dev/null || echo 2)
(cd "$work/scanrelay" &&
 DEB_BUILD_OPTIONS="nocheck parallel=$jobs ${DEB_BUILD_OPTIONS:-}" \
     dpkg-buildpackage -b -us -uc >"$work/build.log" 2>&1) || {
    tail -n 60 "$work/build.log" >&2
    echo "build-deb.sh: dpkg-buildpackage failed" >&2
    exit 1
}
for f in "$work"/*.deb; do
    cp "$f" "$out/"
    echo "$out/$(basename "$f")"
done
