#!/bin/sh
# openwrt/tests/uci_defaults.sh: runs mpbond.uci-defaults against a fake root.
#
# The fake root provides what the script uses from OpenWrt: lib/functions.sh
# (config_load, config_get, config_foreach over shell-variable fixtures, named as
# the real functions.sh names its variables), a `uci` on PATH that keeps
# `set`s in a flat file, and etc/init.d/mpbond that records `enable`.
# It checks which wan sections are created, their device, idempotency, that a
# user's wan section is left alone, and the fallback without a "wan" zone.
# Prints "ok N" per check; exits non-zero on the first failure.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
SCRIPT=$HERE/../mpbond/files/mpbond.uci-defaults
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mpbond-ucidef.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM
n=0

fail() { echo "FAIL: $*" >&2; echo "--- uci state:" >&2; cat "$TMP/root/state" >&2; exit 1; }
ok() { n=$((n + 1)); echo "ok $n $1"; }

setup() { # FIREWALL_FIXTURE NETWORK_FIXTURE [INITIAL_STATE]
	rm -rf "$TMP/root"
	mkdir -p "$TMP/root/lib" "$TMP/root/bin" "$TMP/root/etc/init.d" "$TMP/root/fixtures"
	printf '%s\n' "$1" >"$TMP/root/fixtures/firewall"
	printf '%s\n' "$2" >"$TMP/root/fixtures/network"
	printf '%s' "${3:-}" >"$TMP/root/state"
	cat >"$TMP/root/lib/functions.sh" <<'SH'
# Fake: a fixture line is "TYPE NAME opt=value opt=value ..." (values without spaces,
# lists joined with ','); config_get joins lists with spaces as the real one does.
config_load() {
	CONFIG_SECTIONS=""
	while read -r type name rest; do
		[ -n "$type" ] || continue
		CONFIG_SECTIONS="$CONFIG_SECTIONS $name"
		eval "CONFIG_${name}_TYPE=\$type"
		for kv in $rest; do
			eval "CONFIG_${name}_${kv%%=*}=\"\$(echo \"\${kv#*=}\" | tr ',' ' ')\""
		done
	done <"$IPKG_INSTROOT/fixtures/$1"
}
config_get() {
	local var=$1 section=$2 option=$3 default=${4:-}
	eval "$var=\${CONFIG_${section}_${option}:-\$default}"
}
config_foreach() {
	local fn=$1 type=$2 s t
	for s in $CONFIG_SECTIONS; do
		eval "t=\$CONFIG_${s}_TYPE"
		[ "$t" = "$type" ] && "$fn" "$s"
	done
	return 0
}
SH
	cat >"$TMP/root/bin/uci" <<'SH'
#!/bin/sh
# Fake uci: state is "key=value" lines in $IPKG_INSTROOT/state.
state=$IPKG_INSTROOT/state
[ "$1" = "-q" ] && shift
case "$1" in
	show) grep "^$2[.=]" "$state" || true ;;
	get) line=$(grep "^$2=" "$state") || exit 1; v=${line#*=}; v=${v#\'}; echo "${v%\'}" ;;
	set) echo "$2" >>"$state" ;;
	batch) while read -r cmd kv; do [ "$cmd" = set ] && echo "$kv" >>"$state"; done ;;
	commit) echo "# committed $2" >>"$state" ;;
	*) echo "fake uci: $*" >&2; exit 2 ;;
esac
SH
	cat >"$TMP/root/etc/init.d/mpbond" <<'SH'
#!/bin/sh
echo "$1" >>"$IPKG_INSTROOT/init-calls"
SH
	chmod +x "$TMP/root/bin/uci" "$TMP/root/etc/init.d/mpbond"
}

run() {
	# As default_postinst does: sourced in a subshell, from the uci-defaults directory.
	(cd "$TMP/root" && PATH="$TMP/root/bin:$PATH" IPKG_INSTROOT="$TMP/root" \
		sh -c '. "$1"' sh "$SCRIPT") || fail "the script failed"
}

has() { grep -qx "$1" "$TMP/root/state" || fail "missing: $1"; }
hasnt() { ! grep -q "$1" "$TMP/root/state" || fail "unexpected: $1"; }

FIREWALL='zone z_lan name=lan network=lan
zone z_wan name=wan network=wan,wan6,wwan,wanb,wan2'
NETWORK='interface loopback proto=static device=lo
interface lan proto=static device=br-lan
interface wan proto=dhcp device=eth1
interface wan6 proto=dhcpv6 device=@wan
interface wwan proto=qmi device=/dev/cdc-wdm0
interface wanb proto=pppoe device=eth2
interface wan2 proto=dhcp ifname=eth3
interface vpn proto=wireguard'

setup "$FIREWALL" "$NETWORK"
run
has "mpbond.wan=wan"
has "mpbond.wan.interface='wan'"
has "mpbond.wan.mode='on'"
has "mpbond.wan.device=eth1"
ok "dhcp WAN gets its device"
has "mpbond.wanb.device=pppoe-wanb"
ok "pppoe WAN gets pppoe-IFACE"
has "mpbond.wwan.interface='wwan'"
hasnt "mpbond.wwan.device"
ok "qmi WAN has no device (known at runtime only)"
has "mpbond.wan2.interface='wan2'"
has "mpbond.wan2.device=eth3"
ok "the pre-21.02 ifname option is used when there is no device"
hasnt "mpbond.wan6"
hasnt "mpbond.lan"
hasnt "mpbond.loopback"
hasnt "mpbond.vpn"
ok "dhcpv6 companion, LAN, loopback and other protos are skipped"
has "# committed mpbond"
grep -qx enable "$TMP/root/init-calls" || fail "service not enabled"
ok "committed and enabled"

before=$(grep -c . "$TMP/root/state")
run
[ "$(grep -c . "$TMP/root/state")" = "$before" ] || fail "second run changed the config"
ok "idempotent"

setup "$FIREWALL" "$NETWORK" "mpbond.mine=wan
mpbond.mine.interface='wan'
"
run
[ "$(grep -c '=wan$' "$TMP/root/state")" = 1 ] || fail "added to a user's sections"
hasnt "# committed"
grep -qx enable "$TMP/root/init-calls" || fail "service not enabled"
ok "a user's wan section is left alone"

setup 'zone z_lan name=lan network=lan' "$NETWORK"
run
has "mpbond.wan.device=eth1"
has "mpbond.wanb.device=pppoe-wanb"
hasnt "mpbond.lan"
hasnt "mpbond.wan6"
ok "without a wan zone: every eligible interface but lan and loopback"

echo "all $n checks passed"
