#!/usr/bin/env bash
# cross/ci.sh: the cross-build part of CI (issue 4). Run as root on a fresh
# Debian machine from a clean clone; it installs what it needs.
#
#   1. builds the mipsel_24kc agent (cross/build.sh) and its .ipk (cross/package.sh);
#   2. runs the MIPS binary under qemu-user: --version, check-config on the
#      shipped /etc/config/mpbond, and check-config on a broken copy, which
#      must fail and name the bad option;
#   3. opens the .ipk and checks its structure, control fields, conffiles and
#      the architecture of the binary inside.
#
# Prints one PASS/FAIL line per check and exits non-zero if any failed.
# Environment: CROSS_OUT (default target/ci-cross), CROSS_TARGET_DIR (see build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export DEBIAN_FRONTEND=noninteractive CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
PATH="$HOME/.cargo/bin:$PATH"

ARCH=mipsel_24kc
QEMU=qemu-mipsel-static
OUT=${CROSS_OUT:-$ROOT/target/ci-cross}
START=$(date +%s)
FAILED=0

pass() { echo "PASS: $*"; }
fail() {
	echo "FAIL: $*"
	FAILED=$((FAILED + 1))
}
# check NAME COMMAND...: PASS if the command succeeds.
check() {
	local name=$1
	shift
	if "$@"; then pass "$name"; else fail "$name"; fi
}

# --- tools ------------------------------------------------------------------------
need=""
command -v "$QEMU" >/dev/null 2>&1 || need="$need qemu-user-static"
command -v file >/dev/null 2>&1 || need="$need file"
if [ -n "$need" ]; then
	echo "ci.sh: installing$need"
	apt-get update -qq
	# shellcheck disable=SC2086 # word splitting is intended
	apt-get install -y -qq $need >/dev/null
fi

# --- build --------------------------------------------------------------------------
rm -rf "$OUT"
if bash cross/build.sh --out "$OUT/bin" "$ARCH"; then
	pass "build $ARCH mpbond-agent"
else
	fail "build $ARCH mpbond-agent"
	exit 1
fi
BIN=$OUT/bin/$ARCH/mpbond-agent

if IPK=$(sh cross/package.sh "$ARCH" "$BIN" "$OUT/ipk"); then
	pass "package.sh $ARCH -> $(basename "$IPK") ($(wc -c <"$IPK") bytes)"
else
	fail "package.sh $ARCH"
	exit 1
fi

# --- the binary under qemu --------------------------------------------------------------
desc=$(file -b "$BIN")
echo "file: $desc"
check "binary is a static MIPS32 little-endian ELF" \
	grep -q 'ELF 32-bit LSB executable, MIPS, MIPS32.*statically linked' <<<"$desc"

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
if out=$(timeout 120 "$QEMU" "$BIN" --version 2>&1) && [ "$out" = "mpbond-agent $version" ]; then
	pass "qemu: --version prints '$out'"
else
	fail "qemu: --version printed '${out:-}', want 'mpbond-agent $version'"
fi

SHIPPED=openwrt/mpbond/files/mpbond.config
if out=$(timeout 120 "$QEMU" "$BIN" check-config --uci "$SHIPPED" 2>&1) && [ "$out" = "config OK" ]; then
	pass "qemu: check-config --uci $SHIPPED: $out"
else
	fail "qemu: check-config --uci $SHIPPED: ${out:-}"
fi

# The same file with a bad key: check-config must refuse it (exit 2) and name
# the section and option, so the check above could fail.
BROKEN=$OUT/broken.config
sed "s/^\([[:space:]]*option key \).*/\1'not-hex'/" "$SHIPPED" >"$BROKEN"
rc=0
out=$(timeout 120 "$QEMU" "$BIN" check-config --uci "$BROKEN" 2>&1) || rc=$?
if [ "$rc" = 2 ] && grep -q 'globals.*key' <<<"$out"; then
	pass "qemu: check-config refuses a bad key (exit 2): $out"
else
	fail "qemu: check-config on a bad key: exit $rc, '$out'"
fi

# --- the ipk --------------------------------------------------------------------------
X=$OUT/ipk-x
mkdir -p "$X/control" "$X/data"
members=$(tar -tzf "$IPK" | tr '\n' ' ')
check "ipk: outer gzip tar holds debian-binary, data.tar.gz, control.tar.gz ($members)" \
	test "$members" = "./debian-binary ./data.tar.gz ./control.tar.gz "
tar -xzf "$IPK" -C "$X"
check "ipk: debian-binary is 2.0" test "$(cat "$X/debian-binary")" = "2.0"
tar -xzf "$X/control.tar.gz" -C "$X/control"
tar -xzf "$X/data.tar.gz" -C "$X/data"

field() { sed -n "s/^$1: //p" "$X/control/control"; }
check "control: Package: mpbond" test "$(field Package)" = mpbond
check "control: Version: $(field Version)" grep -qx "$version-r[0-9]*" <<<"$(field Version)"
check "control: Architecture: $ARCH" test "$(field Architecture)" = "$ARCH"
check "control: Depends: $(field Depends)" grep -qw kmod-nft-nat <<<"$(field Depends)"
check "control: Installed-Size is the data size" \
	test "$(field Installed-Size)" = "$(gzip -dc "$X/data.tar.gz" | wc -c | tr -d ' ')"
check "conffiles lists /etc/config/mpbond" grep -qx /etc/config/mpbond "$X/control/conffiles"
check "postinst and prerm are executable" test -x "$X/control/postinst" -a -x "$X/control/prerm"
for f in usr/sbin/mpbond-agent etc/config/mpbond etc/init.d/mpbond etc/uci-defaults/99-mpbond; do
	check "data: /$f" test -f "$X/data/$f"
done
check "data: /etc/config/mpbond is the shipped config" cmp -s "$X/data/etc/config/mpbond" "$SHIPPED"
inner=$(file -b "$X/data/usr/sbin/mpbond-agent")
check "data: mpbond-agent is a MIPS32 little-endian ELF ($inner)" \
	grep -q 'ELF 32-bit LSB executable, MIPS, MIPS32' <<<"$inner"
check "data: mpbond-agent is the built binary" cmp -s "$X/data/usr/sbin/mpbond-agent" "$BIN"

minutes=$(awk -v s=$(($(date +%s) - START)) 'BEGIN { printf "%.1f", s / 60 }')
if [ "$FAILED" -gt 0 ]; then
	echo "cross/ci.sh: $FAILED check(s) FAILED ($minutes min)"
	exit 1
fi
echo "cross/ci.sh: all checks passed ($minutes min; agent $(wc -c <"$BIN") bytes, ipk $(wc -c <"$IPK") bytes)"
