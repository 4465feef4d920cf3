#!/bin/bash
# check-postfix-snippets.sh - check that the Postfix snippets in
# etc/postfix/ paste cleanly: each is appended to a stock main.cf/master.cf
# in a temporary config folder and postconf(1) must read the result without
# a single warning (unknown or unused parameter, bad master.cf line), and
# the settings scanrelay relies on must come out as intended.
#
# usage: etc/check-postfix-snippets.sh
# Needs postconf (package postfix); the Postfix service need not run.
# Exit status: 0 pass, 1 fail, 77 postconf missing (ctest SKIP_RETURN_CODE).
set -u

src=${SCANRELAY_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
pf=$src/etc/postfix
PATH=$PATH:/usr/sbin:/sbin
command -v postconf >/dev/null || { echo "check-postfix-snippets: no postconf, skipped"; exit 77; }

stock_main=''
stock_master=''
for f in /etc/postfix/main.cf.proto /usr/share/postfix/main.cf.dist; do
    [ -r "$f" ] && { stock_main=$f; break; }
done
for f in /etc/postfix/master.cf.proto /usr/share/postfix/master.cf.dist /etc/postfix/master.cf; do
    [ -r "$f" ] && { stock_master=$f; break; }
done
if [ -z "$stock_main" ] || [ -z "$stock_master" ]; then
    echo "check-postfix-snippets: no stock main.cf/master.cf found, skipped"
    exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/scanrelay-pf.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
failed() { echo "FAIL: $*" >&2; fail=1; }

# make NAME MAIN-SNIPPET MASTER-SNIPPET [drop-smtp-inet]
make_conf() {
    local d=$tmp/$1
    mkdir -p "$d"
    { cat "$stock_main"; echo; cat "$2"; } >"$d/main.cf"
    if [ "${4:-}" = drop-smtp-inet ]; then
        sed '/^smtp[[:space:]]\+inet/d' "$stock_master" >"$d/master.cf"
        grep -v '^#' "$3" >>"$d/master.cf"
    else
        { cat "$stock_master"; echo; cat "$3"; } >"$d/master.cf"
    fi
}
# postconf must be silent on stderr ("overriding earlier entry" aside: a
# snippet's line replacing a stock setting of the same name is intended).
quiet() { # name postconf-args...
    local name=$1 out
    shift
    out=$(postconf -c "$tmp/$name" "$@" 2>&1 >/dev/null | grep -v 'overriding earlier entry')
    [ -z "$out" ] || failed "$name: postconf $*: $out"
}
# expect NAME "OPTION PARAMETER" EXPECTED-LINE
expect() {
    local got q
    read -r -a q <<<"$2"
    got=$(postconf -c "$tmp/$1" "${q[@]}" 2>/dev/null)
    [ "$got" = "$3" ] || failed "$1: postconf $2 gave '$got', expected '$3'"
}

make_conf one "$pf/one-instance/main.cf" "$pf/one-instance/master.cf"
make_conf in "$pf/two-instance/input-main.cf" "$pf/two-instance/input-master.cf"
make_conf out "$pf/two-instance/output-main.cf" "$pf/two-instance/output-master.cf" drop-smtp-inet
# The recommended settings that ship commented out ("#name = value") must
# read cleanly too, once uncommented.
for n in one in; do
    case $n in
    one) main=$pf/one-instance/main.cf master=$pf/one-instance/master.cf ;;
    *) main=$pf/two-instance/input-main.cf master=$pf/two-instance/input-master.cf ;;
    esac
    sed -E 's/^#([a-z_0-9]+ = )/\1/' "$main" >"$tmp/$n-rec-main.cf"
    make_conf $n-rec "$tmp/$n-rec-main.cf" "$master"
    [ "$(grep -cE '^#[a-z_0-9]+ = ' "$main")" -ge 10 ] ||
        failed "$n: the recommended (commented) settings are missing"
done

for n in one in out one-rec in-rec; do
    quiet $n -n
    quiet $n -M
    quiet $n -P
done

for n in one in; do
    expect $n "-h content_filter" "scanrelay:[127.0.0.1]:10025"
    expect $n "-h receive_override_options" "no_address_mappings"
    expect $n "-h scanrelay_destination_recipient_limit" "1000"
    expect $n "-P scanrelay/unix/smtp_send_xforward_command" \
        "scanrelay/unix/smtp_send_xforward_command = yes"
    expect $n "-P scanrelay/unix/disable_mime_output_conversion" \
        "scanrelay/unix/disable_mime_output_conversion = yes"
    expect $n "-P scanrelay/unix/smtp_data_done_timeout" \
        "scanrelay/unix/smtp_data_done_timeout = 1200s"
done
for n in one in; do
    expect $n-rec "-h queue_run_delay" "60s"
    expect $n-rec "-h scanrelay_destination_concurrency_failed_cohort_limit" "10"
    expect $n-rec "-h postscreen_dnsbl_sites" "zen.spamhaus.org*3, bl.spamcop.net*1"
done
expect one "-P 127.0.0.1:10026/inet/content_filter" "127.0.0.1:10026/inet/content_filter ="
expect one "-P 127.0.0.1:10026/inet/receive_override_options" \
    "127.0.0.1:10026/inet/receive_override_options = no_unknown_recipient_checks,no_header_body_checks,no_milters"
expect one "-P 127.0.0.1:10026/inet/smtpd_authorized_xforward_hosts" \
    "127.0.0.1:10026/inet/smtpd_authorized_xforward_hosts = 127.0.0.0/8"
expect out "-h content_filter" ""
expect out "-h receive_override_options" "no_unknown_recipient_checks,no_header_body_checks,no_milters"
expect out "-h master_service_disable" ""
[ "$(postconf -c "$tmp/out" -M 2>/dev/null | grep -c '^127.0.0.1:10026 ')" = 1 ] ||
    failed "out: no 127.0.0.1:10026 smtpd in master.cf"
[ "$(postconf -c "$tmp/out" -M 2>/dev/null | grep -c '^smtp  *inet')" = 0 ] ||
    failed "out: the port 25 smtpd is still there"
[ "$(postconf -c "$tmp/in" -M 2>/dev/null | grep -c '10026')" = 0 ] ||
    failed "in: the input instance must not listen on 10026"

if [ $fail -eq 0 ]; then echo "check-postfix-snippets: PASS"; else echo "check-postfix-snippets: FAILED"; fi
exit $fail
