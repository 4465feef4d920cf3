#!/bin/sh
# check-deb.sh - build the Debian package from the tree and check it.
#
# usage: t/package/check-deb.sh      (SCANRELAY_SRC: the source tree)
#
# 1. scripts/build-deb.sh builds scanrelay_*.deb (debhelper, no root).
# 2. dpkg --contents lists the programs, man pages, unit, sysusers/tmpfiles,
#    the example configuration under /etc/scanrelay, the starter signatures.
# 3. dpkg --root unpacks it into a scratch root with its own dpkg database
#    (unpack runs no postinst, so the host gets no user; the package has no
#    preinst, and scripts are not chrooted into a root without a shell):
#    the database records /etc/scanrelay/scanrelay.conf as a conffile
#    ("newconffile" until configure, which would run the postinst: its
#    .dpkg-new copy is moved into place here as configure does).
# 4. The unpacked scanrelayd -t accepts the unpacked example configuration
#    (its database_directory pointed at the unpacked starter signatures
#    when /var/lib/clamav holds no database).
# 5. lintian reports no error (E:) and no warning (W:).
# Takes about a minute (the build), up to three on a loaded machine.
# Exit 0 passed, 1 failed, 77 skipped (dpkg-deb, dh or lintian missing).
set -u
src=${SCANRELAY_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
for t in dpkg-deb dpkg-buildpackage dh lintian; do
    command -v "$t" >/dev/null || { echo "SKIP: $t missing (apt-get install dpkg-dev debhelper lintian)"; exit 77; }
done
fail=0
failed() { echo "FAIL: $*" >&2; fail=1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/scanrelay-check-deb.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# 1. Build (no debug-symbol package: not checked here, and it saves time).
start=$(date +%s)
deb=$(DEB_BUILD_OPTIONS=noddebs "$src/scripts/build-deb.sh" "$tmp/dist" | grep '/scanrelay_[^/]*\.deb$') ||
    { echo "FAIL: the package did not build" >&2; exit 1; }
echo "built $(basename "$deb") in $(($(date +%s) - start)) s"

# 2. Contents.
dpkg --contents "$deb" >"$tmp/contents" || failed "dpkg --contents"
for f in ./usr/sbin/scanrelayd ./usr/bin/scanrelay \
         ./usr/share/man/man8/scanrelayd.8.gz ./usr/share/man/man1/scanrelay.1.gz \
         ./usr/share/man/man5/scanrelay.conf.5.gz \
         ./lib/systemd/system/scanrelayd.service \
         ./usr/lib/sysusers.d/scanrelay.conf ./usr/lib/tmpfiles.d/scanrelay.conf \
         ./etc/scanrelay/scanrelay.conf ./usr/share/doc/scanrelay/copyright \
         ./usr/share/scanrelay/signatures/scanrelay-starter.ndb \
         ./usr/share/scanrelay/signatures/scanrelay-starter.hdb; do
    grep -q " $f\$" "$tmp/contents" || failed "dpkg --contents lacks $f"
done
dpkg-deb -f "$deb" Depends | grep -q 'libclamav' || failed "Depends lacks libclamav (shlibs:Depends)"
dpkg-deb -f "$deb" Depends | grep -q 'libsqlite3' || failed "Depends lacks libsqlite3"
dpkg-deb --ctrl-tarfile "$deb" | tar -t | grep -q preinst && failed "a preinst appeared: step 3 would run it on this host"
for s in postinst postrm; do
    dpkg-deb -I "$deb" $s >"$tmp/$s" 2>/dev/null || failed "no $s"
done
grep -q 'adduser --system' "$tmp/postinst" || failed "postinst does not create the user"
grep -Eq "systemctl (enable|start)|deb-systemd-invoke (start|restart)" "$tmp/postinst" &&
    failed "postinst enables or starts something"
grep -q 'rm -rf /var/lib/scanrelay /var/spool/scanrelay' "$tmp/postrm" || failed "postrm keeps state on purge"
awk '/"purge"/{p=1} p&&/rm -rf \/var\/lib\/scanrelay/{ok=1} END{exit !ok}' "$tmp/postrm" ||
    failed "postrm removes state outside purge"

# 3. Unpack into a scratch root with its own dpkg database.
root=$tmp/root
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
: >"$root/var/lib/dpkg/status"
: >"$root/var/lib/dpkg/available"
dpkg --root="$root" --force-depends --force-not-root --force-script-chrootless --log=/dev/null --unpack "$deb" \
    >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; failed "dpkg --root --unpack"; }
conff=$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Conffiles}' scanrelay 2>&1)
echo "$conff" | grep -Eq '^ */etc/scanrelay/scanrelay.conf ([0-9a-f]{32}|newconffile)$' ||
    failed "/etc/scanrelay/scanrelay.conf is not a conffile in the dpkg database: $conff"
[ -e "$root/etc/scanrelay/scanrelay.conf.dpkg-new" ] &&
    mv "$root/etc/scanrelay/scanrelay.conf.dpkg-new" "$root/etc/scanrelay/scanrelay.conf"
for f in usr/sbin/scanrelayd etc/scanrelay/scanrelay.conf lib/systemd/system/scanrelayd.service; do
    [ -e "$root/$f" ] || failed "$f not unpacked"
done

# 4. The unpacked daemon checks the unpacked configuration.
conf=$root/etc/scanrelay/scanrelay.conf
if ! ls /var/lib/clamav/*.c[vl]d /var/lib/clamav/*.[nh]db >/dev/null 2>&1; then
    sed "s|^\( *\)#database_directory = .*|\1database_directory = \"$root/usr/share/scanrelay/signatures\"|" \
        "$conf" >"$tmp/scanrelay.conf"
    grep -q "database_directory = \"$root" "$tmp/scanrelay.conf" || failed "cannot point database_directory"
    conf=$tmp/scanrelay.conf
fi
if "$root/usr/sbin/scanrelayd" -t -c "$conf" >"$tmp/t.out" 2>&1; then
    grep -q 'is ok' "$tmp/t.out" || failed "scanrelayd -t said: $(cat "$tmp/t.out")"
else
    failed "installed scanrelayd -t -c $conf: $(cat "$tmp/t.out")"
fi
cat "$tmp/t.out"

# 5. lintian.
lintian --no-cfg "$deb" >"$tmp/lintian" 2>&1
cat "$tmp/lintian"
if grep -Eq '^[EW]: ' "$tmp/lintian"; then
    failed "lintian reports errors or warnings"
fi

[ $fail -eq 0 ] && echo "check-deb: all passed ($(($(date +%s) - start)) s)"
exit $fail
