#!/bin/sh
# openwrt/tests/init_script.sh: /etc/init.d/mpbond under the rc.common stand-in
# (openwrt/tests/rc.common), in a scratch directory removed on exit:
#   - enable and disable make and remove /etc/rc.d/S95mpbond and K10mpbond in
#     an image root (IPKG_INSTROOT);
#   - start_service: one instance, stdout and stderr to logd, no RUST_LOG in
#     the environment (the agent reads log_level from the config);
#   - service_triggers: the reload trigger of the mpbond config, no interface
#     triggers (the agent follows netifd itself);
#   - reload_service: SIGHUP when running, `start` when stopped or disabled.
# Prints "all N checks passed" and exits 0, or names the failed check.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
INIT=$HERE/../mpbond/files/mpbond.init
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mpbond-init-test.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM
PASSED=0

fail() { echo "FAIL: $*" >&2; [ ! -f "$TMP/log" ] || sed 's/^/  log: /' "$TMP/log" >&2; exit 1; }
pass() { PASSED=$((PASSED + 1)); }

# run ACTION [VAR=VALUE...]: the init script's ACTION, its calls in $TMP/log.
run() {
	action=$1
	shift
	: >"$TMP/log"
	env RC_LOG="$TMP/log" IPKG_INSTROOT="$TMP/root" "$@" \
		sh "$HERE/rc.common" "$TMP/root/etc/init.d/mpbond" "$action"
}

has() { grep -qxF -- "$1" "$TMP/log"; }

mkdir -p "$TMP/root/etc/init.d" "$TMP/root/etc/rc.d"
cp "$INIT" "$TMP/root/etc/init.d/mpbond"

# enable / disable in an image root
# shellcheck disable=SC3044 # (the rc.common action, not the bash builtin)
run enable
[ "$(readlink "$TMP/root/etc/rc.d/S95mpbond")" = "../init.d/mpbond" ] || fail "enable: S95mpbond"
[ "$(readlink "$TMP/root/etc/rc.d/K10mpbond")" = "../init.d/mpbond" ] || fail "enable: K10mpbond"
run enabled || fail "enabled after enable"
pass
run disable
[ -z "$(ls "$TMP/root/etc/rc.d")" ] || fail "disable leaves $(ls "$TMP/root/etc/rc.d")"
if run enabled; then fail "enabled after disable"; fi
pass

# start_service
run start_service
has "procd_set_param command /usr/sbin/mpbond-agent --uci /etc/config/mpbond --dnsmasq-confdir /tmp/dnsmasq.cfg01411c.d" || fail "start: command, with the first dnsmasq instance's conf-dir"
has "procd_set_param stdout 1" || fail "start: stdout to logd (daemon.info)"
has "procd_set_param stderr 1" || fail "start: stderr to logd (daemon.err)"
[ "$(grep -c '^procd_open_instance' "$TMP/log")" = 1 ] || fail "start: one instance"
if grep -q "procd_set_param env" "$TMP/log"; then fail "start: no environment (RUST_LOG)"; fi
if grep -q "^unexpected" "$TMP/log"; then fail "start: reads only globals.enabled"; fi
pass
run start_service RC_ENABLED=0
if grep -q "^procd_open_instance" "$TMP/log"; then fail "disabled: no instance"; fi
pass

# the dnsmasq conf-dir, as OpenWrt's dnsmasq init script computes it
run start_service RC_DNSMASQ="main guest"
has "procd_set_param command /usr/sbin/mpbond-agent --uci /etc/config/mpbond --dnsmasq-confdir /tmp/dnsmasq.main.d" || fail "confdir: the first named instance's"
pass
run start_service RC_CONFDIR="/tmp/dnsmasq.d,*.conf"
has "procd_set_param command /usr/sbin/mpbond-agent --uci /etc/config/mpbond --dnsmasq-confdir /tmp/dnsmasq.d" || fail "confdir: option confdir, without its filter"
pass
run start_service RC_DNSMASQ=none
has "procd_set_param command /usr/sbin/mpbond-agent --uci /etc/config/mpbond" || fail "confdir: no dnsmasq, no flag"
pass

# service_triggers
run service_triggers
[ "$(grep -c '^procd_add_' "$TMP/log")" = 1 ] || fail "triggers: exactly one"
has "procd_add_reload_trigger mpbond" || fail "triggers: the reload trigger"
pass

# reload_service
run reload_service RC_RUNNING=1
has "procd_send_signal mpbond * HUP" || fail "reload while running: SIGHUP"
if has "start"; then fail "reload while running: no start"; fi
pass
run reload_service RC_RUNNING=0
has "start" || fail "reload while stopped: start"
if grep -q "^procd_send_signal" "$TMP/log"; then fail "reload while stopped: no signal"; fi
pass
run reload_service RC_RUNNING=1 RC_ENABLED=0
has "start" || fail "reload while disabled: start (which submits no instance)"
pass

echo "all $PASSED checks passed"
