#!/usr/bin/env bash
# cross/peer.sh [--out DIR]
#
# Builds the benchmark peer for the MIPS router VM (bench case 15): shadowsocks-rust's
# `sslocal` for mipsel-unknown-linux-musl, static, with the toolchain of
# cross/build.sh (nightly -Zbuild-std, cargo-zigbuild, zig from PyPI; run
# `cross/build.sh mipsel_24kc` once first, or let this script install the same
# tools through it). The result is cached: DIR/sslocal (DIR defaults to
# target/ss-mipsel), and a second run does nothing.
#
# Source: the shadowsocks-rust crate of version $SS_VERSION (default 1.25.0, the one
# the x86 bench installs), from cargo's own download cache when it is there,
# otherwise from crates.io's static download address. It is built with its own
# Cargo.lock (`--locked`) and its own release profile (fat LTO, one codegen unit,
# panic=abort), as upstream ships it, with only the features the bench needs:
# local, local-redir, local-tunnel (the mode case 15 uses), aead-cipher
# (chacha20-ietf-poly1305), aead-cipher-2022 (2022-blake3-aes-256-gcm) and
# multi-threaded (the default runtime). `none` needs no feature.
#
# Environment: SS_VERSION, NIGHTLY (default "nightly"), SS_MIPSEL_TARGET_DIR
# (cargo's target dir, default DIR/build).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export CARGO_INCREMENTAL=0

SS_VERSION=${SS_VERSION:-1.25.0}
NIGHTLY=${NIGHTLY:-nightly}
TRIPLE=mipsel-unknown-linux-musl
FEATURES=local,local-redir,local-tunnel,aead-cipher,aead-cipher-2022,multi-threaded

OUT=$ROOT/target/ss-mipsel
while [ $# -gt 0 ]; do
	case "$1" in
		--out)
			[ $# -ge 2 ] || { echo "usage: $0 [--out DIR]" >&2; exit 2; }
			OUT=$2
			shift 2
			;;
		*)
			echo "usage: $0 [--out DIR]" >&2
			exit 2
			;;
	esac
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
log() { echo "peer.sh: $*" >&2; }

if [ -x "$OUT/sslocal" ]; then
	log "$OUT/sslocal is there (remove it to rebuild)"
	exit 0
fi

# --- tools: the same as cross/build.sh ------------------------------------------

ensure_tools() {
	local venv=$ROOT/target/cross-build/tools/venv
	[ -x "$venv/bin/python3" ] && PATH="$venv/bin:$PATH"
	if ! command -v cargo-zigbuild >/dev/null 2>&1 \
		|| ! { command -v zig >/dev/null 2>&1 || python3 -m ziglang version >/dev/null 2>&1; } \
		|| ! rustup component list --toolchain "$NIGHTLY" --installed 2>/dev/null | grep -q '^rust-src'; then
		log "installing the cross toolchain: cross/build.sh mipsel_24kc"
		"$ROOT/cross/build.sh" mipsel_24kc
		[ -x "$venv/bin/python3" ] && PATH="$venv/bin:$PATH"
	fi
}

# --- source -----------------------------------------------------------------------

fetch_source() {
	local src=$OUT/src/shadowsocks-rust-$SS_VERSION crate
	if [ -f "$src/Cargo.lock" ]; then
		echo "$src"
		return
	fi
	mkdir -p "$OUT/src"
	crate=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"shadowsocks-rust-$SS_VERSION.crate" 2>/dev/null | head -n1 || true)
	if [ -z "$crate" ]; then
		crate=$OUT/src/shadowsocks-rust-$SS_VERSION.crate
		log "downloading shadowsocks-rust $SS_VERSION from crates.io"
		curl -fsSL -o "$crate" "https://static.crates.io/crates/shadowsocks-rust/shadowsocks-rust-$SS_VERSION.crate"
	fi
	tar -xzf "$crate" -C "$OUT/src"
	# The unpacked crate lives under this repository's workspace: make it its own root.
	grep -q '^\[workspace\]' "$src/Cargo.toml" || printf '\n[workspace]\n' >>"$src/Cargo.toml"
	echo "$src"
}

ensure_tools
SRC=$(fetch_source)
TARGET_DIR=${SS_MIPSEL_TARGET_DIR:-$OUT/build}
OBJCOPY=$(rustup run "$NIGHTLY" rustc --print sysroot)/lib/rustlib/$(rustup run "$NIGHTLY" rustc -vV | sed -n 's/^host: //p')/bin/llvm-objcopy

# The same flags as cross/build.sh gives the mipsel agent: static, non-PIC, no
# unwind tables, zig's musl crt objects.
log "building sslocal $SS_VERSION for $TRIPLE (features $FEATURES)"
env CARGO_TARGET_MIPSEL_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C target-feature=+crt-static -C force-unwind-tables=no -C relocation-model=static -C link-self-contained=no" \
	CARGO_TARGET_DIR="$TARGET_DIR" \
	cargo "+$NIGHTLY" zigbuild --manifest-path "$SRC/Cargo.toml" --locked --release \
	--no-default-features --features "$FEATURES" --bin sslocal --target "$TRIPLE" \
	-Zbuild-std=std,panic_abort
install -m 0755 "$TARGET_DIR/$TRIPLE/release/sslocal" "$OUT/sslocal.tmp"
if [ -x "$OBJCOPY" ]; then "$OBJCOPY" -R .pdr -R .comment "$OUT/sslocal.tmp"; fi
mv "$OUT/sslocal.tmp" "$OUT/sslocal"
log "$OUT/sslocal: $(wc -c <"$OUT/sslocal") bytes"
