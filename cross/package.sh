#!/bin/sh
# cross/package.sh ARCH BINARY [OUTDIR]
#
# Turns a cross-built mpbond-agent binary into an installable OpenWrt .ipk, with
# no SDK, and (re)writes the Packages and Packages.gz index of OUTDIR for a
# custom feed.
#
#   ARCH     OpenWrt package architecture: mipsel_24kc, mips_24kc,
#            aarch64_cortex-a53, arm_cortex-a7_neon-vfpv4, x86_64, ...
#   BINARY   the mpbond-agent ELF for that architecture (checked against ARCH)
#   OUTDIR   where the .ipk and the index go (default: target/ipk/ARCH)
#
# The .ipk is what OpenWrt's scripts/ipkg-build makes: a gzip'd GNU tar holding
# ./debian-binary ("2.0"), ./data.tar.gz and ./control.tar.gz, in that order;
# every member owned by 0:0 with a fixed mtime (SOURCE_DATE_EPOCH, else the
# last commit's time, else 0), so the same inputs give the same bytes.
# Installed-Size is the size of the uncompressed data tar, as ipkg-build counts.
#
# Environment: VERSION (default: the workspace version + "-r1"),
# SOURCE_DATE_EPOCH. Needs: sh, tar (GNU), gzip, sha256sum, od, find.
set -eu

usage() {
	echo "usage: $0 ARCH BINARY [OUTDIR]" >&2
	exit 2
}

if [ $# -lt 2 ] || [ $# -gt 3 ]; then usage; fi
ARCH=$1
BINARY=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUTDIR=${3:-$ROOT/target/ipk/$ARCH}
FILES=$ROOT/openwrt/mpbond/files

case "$ARCH" in
	*[!A-Za-z0-9_.+-]*|"") echo "$0: bad ARCH '$ARCH'" >&2; exit 2 ;;
esac
[ -f "$BINARY" ] || { echo "$0: no such binary: $BINARY" >&2; exit 1; }

# The ELF header must match ARCH: class (byte 4), data/endianness (byte 5) and
# e_machine (bytes 18-19), so an x86_64 build never ships as mipsel.
elf_byte() { od -An -tu1 -j "$1" -N 1 "$BINARY" | tr -d ' '; }
[ "$(od -An -c -j 1 -N 3 "$BINARY" | tr -d ' ')" = "ELF" ] \
	|| { echo "$0: $BINARY is not an ELF file" >&2; exit 1; }
class=$(elf_byte 4)
data=$(elf_byte 5)
if [ "$data" = 1 ]; then
	machine=$(( $(elf_byte 18) + 256 * $(elf_byte 19) ))
else
	machine=$(( 256 * $(elf_byte 18) + $(elf_byte 19) ))
fi
case "$ARCH" in
	mipsel_*)   want="1 1 8" ;;     # ELFCLASS32, little-endian, EM_MIPS
	mips_*)     want="1 2 8" ;;     # ELFCLASS32, big-endian, EM_MIPS
	aarch64_*)  want="2 1 183" ;;   # ELFCLASS64, EM_AARCH64
	arm_*)      want="1 1 40" ;;    # ELFCLASS32, EM_ARM
	x86_64)     want="2 1 62" ;;    # ELFCLASS64, EM_X86_64
	i386_*)     want="1 1 3" ;;     # EM_386
	*)          want="" ;;
esac
got="$class $data $machine"
if [ -z "$want" ]; then
	echo "$0: warning: no ELF check for ARCH $ARCH (ELF class/data/machine: $got)" >&2
elif [ "$want" != "$got" ]; then
	echo "$0: $BINARY is ELF class/data/machine '$got', not '$want' as $ARCH needs" >&2
	exit 1
fi

# shellcheck source=cross/ipk.sh
. "$ROOT/cross/ipk.sh"
ipk_defaults

mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mpbond-ipk.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM

# --- data: the files, with their modes -------------------------------------
DATA=$WORK/data
install -d -m 0755 "$DATA/usr/sbin" "$DATA/etc/config" "$DATA/etc/init.d" "$DATA/etc/uci-defaults"
install -m 0755 "$BINARY" "$DATA/usr/sbin/mpbond-agent"
install -m 0600 "$FILES/mpbond.config" "$DATA/etc/config/mpbond"
install -m 0755 "$FILES/mpbond.init" "$DATA/etc/init.d/mpbond"
install -m 0755 "$FILES/mpbond.uci-defaults" "$DATA/etc/uci-defaults/99-mpbond"

ipk_tar "$DATA" "$WORK/data.tar.gz"
INSTALLED_SIZE=$(ipk_installed_size "$WORK/data.tar.gz")

# --- control ------------------------------------------------------------------
CONTROL=$WORK/control
install -d -m 0755 "$CONTROL"
cat >"$CONTROL/control" <<EOF
Package: mpbond
Version: $VERSION
Depends: kmod-nft-core, kmod-nft-nat, kmod-nf-nat
Conflicts: mwan3
Source: openwrt/mpbond
SourceName: mpbond
License: Apache-2.0
LicenseFiles: LICENSE
Section: net
SourceDateEpoch: $SOURCE_DATE_EPOCH
URL: https://example.invalid/mpbond
Maintainer: mpbond developers <mpbond@example.invalid>
Architecture: $ARCH
Installed-Size: $INSTALLED_SIZE
Description:  Multi-WAN bonding over MPTCP (router agent).
 LAN TCP connections are redirected to a local transparent listener and
 carried, one MPTCP connection each, over every WAN to a concentrator on a VPS.
EOF
echo "/etc/config/mpbond" >"$CONTROL/conffiles"

# What the SDK's default_postinst/default_prerm do for this package, spelled out.
# In an image build (IPKG_INSTROOT set) enable the service through the image's
# own rc.common, as default_postinst does, so /etc/rc.d/S95mpbond and K10mpbond
# exist on the first boot (the uci-defaults script runs at that boot, before
# S95). On a live router run the uci-defaults script once, enable (not on
# upgrade) and start at once.
cat >"$CONTROL/postinst" <<'EOF'
#!/bin/sh
[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0
if [ -n "${IPKG_INSTROOT}" ]; then
	mkdir -p "${IPKG_INSTROOT}/etc/rc.d"
	/bin/sh "${IPKG_INSTROOT}/etc/rc.common" "${IPKG_INSTROOT}/etc/init.d/mpbond" enable
	exit 0
fi
[ -d /tmp/.uci ] || mkdir -p /tmp/.uci
if [ -f /etc/uci-defaults/99-mpbond ]; then
	( cd /etc/uci-defaults && . ./99-mpbond ) && rm -f /etc/uci-defaults/99-mpbond
fi
[ "${PKG_UPGRADE}" = "1" ] || /etc/init.d/mpbond enable
/etc/init.d/mpbond start
exit 0
EOF
cat >"$CONTROL/prerm" <<'EOF'
#!/bin/sh
[ -n "${IPKG_INSTROOT}" ] && exit 0
/etc/init.d/mpbond stop
[ "${PKG_UPGRADE}" = "1" ] || /etc/init.d/mpbond disable
exit 0
EOF
chmod 0644 "$CONTROL/control" "$CONTROL/conffiles"
chmod 0755 "$CONTROL/postinst" "$CONTROL/prerm"
ipk_tar "$CONTROL" "$WORK/control.tar.gz"

# --- the ipk and the feed index -------------------------------------------------
IPK=mpbond_${VERSION}_${ARCH}.ipk
ipk_pack "$WORK" "$OUTDIR" "$IPK"
ipk_index "$OUTDIR"
echo "$OUTDIR/$IPK"
