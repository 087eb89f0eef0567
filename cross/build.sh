#!/usr/bin/env bash
# cross/build.sh [--out DIR] [--no-install] [ARCH...]
#
# Builds static, size-optimised, stripped mpbond binaries for OpenWrt
# architectures with cargo-zigbuild (zig from PyPI as the C toolchain and linker):
#
#   ARCH (OpenWrt)             Rust target                        std
#   mipsel_24kc                mipsel-unknown-linux-musl          nightly -Zbuild-std
#   mips_24kc                  mips-unknown-linux-musl            nightly -Zbuild-std
#   arm_cortex-a7_neon-vfpv4   armv7-unknown-linux-musleabihf     nightly -Zbuild-std
#   aarch64_cortex-a53         aarch64-unknown-linux-musl         prebuilt (rustup)
#   x86_64                     x86_64-unknown-linux-musl          prebuilt (rustup)
#
# No ARCH builds all five. Every ARCH gets mpbond-agent; x86_64 and
# aarch64_cortex-a53 also get mpbond-concentrator (the VPS side). Output:
#
#   DIR/<ARCH>/mpbond-agent [mpbond-concentrator]
#   DIR/sizes.json          {"<ARCH>": {"<binary>": <bytes>, ...}, ...}
#
# DIR defaults to target/cross. Cargo builds in $CROSS_TARGET_DIR (default
# target/cross-build), never in the host build's target dir. The workspace's
# release profile applies (fat LTO, one codegen unit, panic=abort, strip), with
# opt-level "z" for the agent ("s" for the concentrator), no unwind tables
# (panic=abort needs none), and non-PIC code on mips/mipsel (the binaries are
# static, not PIE); the build-std targets also build std with optimize_for_size.
#
# On a fresh Debian machine it installs what it needs, idempotently (skip with
# --no-install): zig (`pip install ziglang`, in a venv under the cross target
# dir where the system Python refuses pip), cargo-zigbuild (crates.io), the
# rustup targets, and a nightly toolchain with rust-src for -Zbuild-std and
# llvm-tools (llvm-objcopy drops the MIPS .pdr section the linker keeps).
#
# Environment: CROSS_TARGET_DIR, NIGHTLY (default "nightly", e.g.
# "nightly-2026-05-15" to pin), CARGO_ZIGBUILD_VERSION (cargo install --version).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

ALL_ARCHES="mipsel_24kc mips_24kc aarch64_cortex-a53 arm_cortex-a7_neon-vfpv4 x86_64"
NIGHTLY=${NIGHTLY:-nightly}

usage() {
	echo "usage: $0 [--out DIR] [--no-install] [ARCH...]" >&2
	echo "  ARCH: $ALL_ARCHES" >&2
	exit 2
}

# ARCH -> Rust target triple.
triple_of() {
	case "$1" in
		mipsel_24kc) echo mipsel-unknown-linux-musl ;;
		mips_24kc) echo mips-unknown-linux-musl ;;
		aarch64_cortex-a53) echo aarch64-unknown-linux-musl ;;
		arm_cortex-a7_neon-vfpv4) echo armv7-unknown-linux-musleabihf ;;
		x86_64) echo x86_64-unknown-linux-musl ;;
		*) return 1 ;;
	esac
}

# The 32-bit router targets get std rebuilt with nightly -Zbuild-std: mips and
# mipsel have no prebuilt std (tier 3), and on armv7 a size-optimised std makes a
# smaller binary than rustup's prebuilt one.
needs_build_std() {
	case "$1" in
		mips-unknown-linux-musl | mipsel-unknown-linux-musl | armv7-unknown-linux-musleabihf) return 0 ;;
		*) return 1 ;;
	esac
}

# Binaries per ARCH: the concentrator only where VPSes run.
binaries_of() {
	case "$1" in
		x86_64 | aarch64_cortex-a53) echo "mpbond-agent mpbond-concentrator" ;;
		*) echo "mpbond-agent" ;;
	esac
}

OUT=$ROOT/target/cross
INSTALL=1
ARCHES=()
while [ $# -gt 0 ]; do
	case "$1" in
		--out)
			[ $# -ge 2 ] || usage
			OUT=$2
			shift 2
			;;
		--no-install)
			INSTALL=0
			shift
			;;
		-h | --help) usage ;;
		-*) usage ;;
		*)
			triple_of "$1" >/dev/null || {
				echo "$0: unknown ARCH '$1' (known: $ALL_ARCHES)" >&2
				exit 2
			}
			ARCHES+=("$1")
			shift
			;;
	esac
done
if [ ${#ARCHES[@]} -eq 0 ]; then
	read -r -a ARCHES <<<"$ALL_ARCHES"
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
TARGET_DIR=${CROSS_TARGET_DIR:-$ROOT/target/cross-build}
mkdir -p "$TARGET_DIR"
TARGET_DIR=$(cd "$TARGET_DIR" && pwd)

log() { echo "build.sh: $*" >&2; }

# --- tools --------------------------------------------------------------------

OBJCOPY=llvm-objcopy # set by ensure_rust: the nightly's llvm-tools

# zig from PyPI. cargo-zigbuild finds it as `zig` on PATH or `python3 -m ziglang`.
ensure_zig() {
	if command -v zig >/dev/null 2>&1 || python3 -m ziglang version >/dev/null 2>&1; then
		return
	fi
	local venv=$TARGET_DIR/tools/venv
	if [ -x "$venv/bin/python3" ] && "$venv/bin/python3" -m ziglang version >/dev/null 2>&1; then
		PATH="$venv/bin:$PATH"
		return
	fi
	[ "$INSTALL" = 1 ] || { log "zig not found (pip install ziglang)"; exit 1; }
	if ! command -v python3 >/dev/null 2>&1; then
		log "installing python3"
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3
	fi
	log "installing zig: pip install ziglang"
	if python3 -m pip --version >/dev/null 2>&1 && python3 -m pip install -q ziglang 2>/dev/null \
		&& python3 -m ziglang version >/dev/null 2>&1; then
		return
	fi
	# Debian's python refuses pip outside a venv (PEP 668): use one of our own.
	if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip
	fi
	rm -rf "$venv"
	python3 -m venv "$venv"
	"$venv/bin/python3" -m pip install -q ziglang
	PATH="$venv/bin:$PATH"
}

ensure_zigbuild() {
	command -v cargo-zigbuild >/dev/null 2>&1 && return
	[ "$INSTALL" = 1 ] || { log "cargo-zigbuild not found"; exit 1; }
	log "installing cargo-zigbuild from crates.io"
	cargo install cargo-zigbuild --locked ${CARGO_ZIGBUILD_VERSION:+--version "$CARGO_ZIGBUILD_VERSION"}
}

# rustup targets for the prebuilt-std triples, nightly + rust-src + llvm-tools
# for the rest.
ensure_rust() {
	local triple prebuilt=() nightly=0 have
	command -v rustup >/dev/null 2>&1 || { log "rustup not found: install Rust from https://rustup.rs"; exit 1; }
	for arch in "${ARCHES[@]}"; do
		triple=$(triple_of "$arch")
		if needs_build_std "$triple"; then nightly=1; else prebuilt+=("$triple"); fi
	done
	if [ ${#prebuilt[@]} -gt 0 ]; then
		have=$(rustup target list --installed)
		for triple in "${prebuilt[@]}"; do
			grep -qx "$triple" <<<"$have" && continue
			[ "$INSTALL" = 1 ] || { log "rust target $triple missing"; exit 1; }
			rustup target add "$triple"
		done
	fi
	if [ "$nightly" = 1 ]; then
		if ! rustup run "$NIGHTLY" rustc --version >/dev/null 2>&1; then
			[ "$INSTALL" = 1 ] || { log "toolchain $NIGHTLY missing"; exit 1; }
			rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src
		fi
		local comp
		for comp in rust-src llvm-tools; do
			rustup component list --toolchain "$NIGHTLY" --installed | grep -q "^$comp" && continue
			[ "$INSTALL" = 1 ] || { log "$comp missing for $NIGHTLY"; exit 1; }
			rustup component add "$comp" --toolchain "$NIGHTLY"
		done
		OBJCOPY=$(rustup run "$NIGHTLY" rustc --print sysroot)/lib/rustlib/$(rustup run "$NIGHTLY" rustc -vV | sed -n 's/^host: //p')/bin/llvm-objcopy
	fi
}

# --- build ----------------------------------------------------------------------

# build ARCH PACKAGE: one package per cargo run, so features are not unified
# across the agent and the concentrator (each binary carries only its own).
build_one() {
	local arch=$1 pkg=$2 triple env_name
	triple=$(triple_of "$arch")
	env_name=CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<<"$triple")_RUSTFLAGS
	local cmd=(cargo)
	local flags=()
	# Tier 3 musl targets default to dynamic linking (OpenWrt's own musl);
	# ask for a static binary everywhere.
	# panic=abort needs no unwind tables: leaving them out saves ~5 % of the file.
	local rustflags="-C target-feature=+crt-static -C force-unwind-tables=no"
	# A static MIPS executable needs no position-independent code: without it, calls
	# are `jal` instead of GOT loads through $gp and $t9 (~11 % of the file).
	case "$triple" in
		mips*) rustflags="$rustflags -C relocation-model=static" ;;
	esac
	# The router agent is built for size (`z`, ~6 % smaller than the profile's `s`).
	# Its per-byte work is in the kernel (recv/send out of MPTCP, splice elsewhere), and
	# in the MIPS guest opt-level 3 did not cut its user time (docs/PERFORMANCE.md,
	# issue 17, seventh round). The concentrator keeps `s`.
	local opt_level=s
	if [ "$pkg" = mpbond-agent ]; then opt_level=z; fi
	if needs_build_std "$triple"; then
		cmd+=("+$NIGHTLY")
		flags+=("-Zbuild-std=std,panic_abort" "-Zbuild-std-features=optimize_for_size")
		# A built std has no self-contained crt1.o etc.: zig supplies them with its musl.
		rustflags="$rustflags -C link-self-contained=no"
	fi
	log "$arch: $pkg ($triple)"
	env "$env_name=$rustflags" CARGO_TARGET_DIR="$TARGET_DIR" CARGO_PROFILE_RELEASE_OPT_LEVEL=$opt_level \
		"${cmd[@]}" zigbuild --manifest-path "$ROOT/Cargo.toml" --locked --release \
		-p "$pkg" --bin "$pkg" --target "$triple" "${flags[@]}"
	install -d "$OUT/$arch"
	install -m 0755 "$TARGET_DIR/$triple/release/$pkg" "$OUT/$arch/$pkg"
	# The linker's --strip-all keeps MIPS .pdr (procedure descriptors, ~6 % of the
	# file, not loaded at run time).
	case "$triple" in
		mips*) "$OBJCOPY" -R .pdr -R .comment "$OUT/$arch/$pkg" ;;
	esac
}

ensure_rust
ensure_zig
ensure_zigbuild

for arch in "${ARCHES[@]}"; do
	for pkg in $(binaries_of "$arch"); do
		build_one "$arch" "$pkg"
	done
done

# --- sizes ----------------------------------------------------------------------

# sizes.json covers every ARCH directory in OUT, so building one ARCH at a
# time accumulates the table.
json="{"
sep=""
table=$(printf '%-26s %-20s %10s %9s\n' ARCH BINARY BYTES KiB)
for dir in "$OUT"/*/; do
	arch=$(basename "$dir")
	triple_of "$arch" >/dev/null || continue
	entry=""
	esep=""
	for pkg in mpbond-agent mpbond-concentrator; do
		[ -f "$dir$pkg" ] || continue
		bytes=$(wc -c <"$dir$pkg" | tr -d ' ')
		entry="$entry$esep\"$pkg\": $bytes"
		esep=", "
		table+=$'\n'$(printf '%-26s %-20s %10d %9.1f' "$arch" "$pkg" "$bytes" "$(awk -v b="$bytes" 'BEGIN { print b / 1024 }')")
	done
	[ -n "$entry" ] || continue
	json="$json$sep"$'\n'"  \"$arch\": {$entry}"
	sep=","
done
json="$json"$'\n'"}"
echo "$json" >"$OUT/sizes.json"
echo "$table"
log "binaries in $OUT, sizes in $OUT/sizes.json"
