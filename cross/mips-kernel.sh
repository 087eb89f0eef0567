#!/usr/bin/env bash
# cross/mips-kernel.sh [--out DIR]
#
# Builds a current mipsel Malta kernel for the MIPS router VM (tests/src/vm, bench
# case 15) with everything the guest needs built in, so the VM boots it with no
# modules: `MPBOND_MIPS_KERNEL=DIR/vmlinux cargo run ... mpbond-bench -- --case 15`.
# The VM's default stays Debian bookworm's 6.1 Malta kernel; this one exists to
# measure what a router on a kernel whose MPTCP honours SO_RCVLOWAT (Linux >= 6.7,
# 6.6.45 by backport, so OpenWrt 24.10) pays (issue 17).
#
# Source: Debian's `linux-source-$KSERIES` (default 6.12, from bookworm-backports,
# arch all), fetched with `apt-get download` under a private apt configuration in
# DIR/apt (the system's sources, lists and cache are left alone; apt checks Debian's
# signatures with the host's keys, so a host that is not Debian needs the
# `debian-archive-keyring` package). Compiler: Debian's
# `gcc-mipsel-linux-gnu` (`apt-get install gcc-mipsel-linux-gnu flex bison bc`).
#
# Configuration: `malta_defconfig` (32-bit little-endian, MIPS32r2) with every
# `=m` dropped and modules off, then the guest's needs as `=y`: virtio-net
# (the VM's NICs), devtmpfs, initramfs, MPTCP, nf_tables with nat/redirect/
# masquerade/ct/socket/tproxy, inet/tcp/mptcp sock_diag, BBR, fq, TUN. Timer and
# paging are set as Debian's 4kc-malta kernel has them (4 KiB pages, HZ=250,
# periodic tick, voluntary preemption; SMP, on the VM's one CPU) so that the kernel
# version is what differs.
#
# Cache: DIR/vmlinux-<version>-<hash> (the hash covers the source package's file
# name and the resulting .config, kept next to it as vmlinux-...config), DIR/vmlinux
# a symlink to the newest. A second run with the same inputs only configures (a few
# seconds; about 20 s when the source tree was deleted). A first run takes 20-30 min on 2 shared cores (it runs `nice`) and
# leaves about 2 GB (the source in DIR/src-*, the objects in DIR/build-*; delete
# them once the image is built); it is not part of CI.
#
# Environment: KSERIES (default 6.12), JOBS (default nproc).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
KSERIES=${KSERIES:-6.12}
JOBS=${JOBS:-$(nproc)}
OUT=$ROOT/target/mips-kernel
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

for tool in mipsel-linux-gnu-gcc flex bison bc make; do
	command -v "$tool" >/dev/null || {
		echo "mips-kernel: $tool is missing: apt-get install gcc-mipsel-linux-gnu flex bison bc make" >&2
		exit 1
	}
done

# The source package, fetched once with a private apt configuration.
APT=$OUT/apt
DEBS=$OUT/debs
mkdir -p "$APT/lists/partial" "$DEBS"
newest_deb() {
	find "$DEBS" -maxdepth 1 -name "linux-source-${KSERIES}_*_all.deb" | sort -V | tail -n 1
}
deb=$(newest_deb)
if [ -z "$deb" ]; then
	echo "deb http://deb.debian.org/debian bookworm-backports main" >"$APT/sources.list"
	opts=(-o "Dir::Etc::SourceList=$APT/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$APT/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=)
	apt-get "${opts[@]}" update || {
		echo "mips-kernel: apt-get update of bookworm-backports failed (a host that is not Debian needs debian-archive-keyring for its signatures)" >&2
		exit 1
	}
	(cd "$DEBS" && apt-get "${opts[@]}" download "linux-source-$KSERIES")
	deb=$(newest_deb)
	[ -n "$deb" ] || { echo "mips-kernel: no linux-source-$KSERIES in bookworm-backports (a host that is not Debian needs debian-archive-keyring)" >&2; exit 1; }
fi
version=$(basename "$deb" | sed -E 's/^linux-source-[^_]+_([^_]+)_all\.deb$/\1/; s/[^A-Za-z0-9.+-]/_/g')

SRC=$OUT/src-$version
if [ ! -f "$SRC/.unpacked" ]; then
	rm -rf "$SRC" "$OUT/unpack"
	mkdir -p "$OUT/unpack" "$SRC"
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$OUT/unpack" --wildcards '*.tar.xz'
	tar -xf "$OUT"/unpack/usr/src/linux-source-"$KSERIES".tar.xz -C "$SRC" --strip-components=1
	rm -rf "$OUT/unpack"
	touch "$SRC/.unpacked"
fi

BUILD=$OUT/build-$version
mkdir -p "$BUILD"
k=(make -C "$SRC" O="$BUILD" ARCH=mips CROSS_COMPILE=mipsel-linux-gnu- -j"$JOBS")
"${k[@]}" malta_defconfig >/dev/null
# No modules: drop every `=m` so that turning modules off does not build them in.
sed -i '/=m$/d' "$BUILD/.config"
enable=(
	# As Debian's 4kc-malta: 4 KiB pages, 250 Hz periodic tick, voluntary preemption.
	PAGE_SIZE_4KB HZ_250 HZ_PERIODIC PREEMPT_VOLUNTARY
	# Boot: the initramfs (an uncompressed cpio), devtmpfs, the serial console.
	BLK_DEV_INITRD DEVTMPFS DEVTMPFS_MOUNT TMPFS PROC_FS SYSFS SERIAL_8250 SERIAL_8250_CONSOLE
	# The NICs: virtio-net over (legacy) PCI.
	NETDEVICES NET_CORE VIRTIO_MENU VIRTIO VIRTIO_PCI VIRTIO_PCI_LEGACY VIRTIO_NET TUN
	# Sockets: MPTCP, sock_diag for TCP and MPTCP, BBR, fq.
	INET IPV6 MPTCP MPTCP_IPV6 INET_DIAG INET_TCP_DIAG INET_UDP_DIAG INET_MPTCP_DIAG
	TCP_CONG_ADVANCED TCP_CONG_CUBIC TCP_CONG_BBR DEFAULT_CUBIC NET_SCHED NET_SCH_FQ
	NET_SCH_FQ_CODEL IP_ADVANCED_ROUTER IP_MULTIPLE_TABLES IPV6_MULTIPLE_TABLES
	# nf_tables and what the agent's ruleset uses.
	NETFILTER NETFILTER_ADVANCED NF_CONNTRACK NF_NAT NF_TABLES NF_TABLES_INET
	NF_TABLES_IPV4 NF_TABLES_IPV6 NFT_NAT NFT_CT NFT_REDIR NFT_MASQ NFT_SOCKET
	NFT_TPROXY NFT_REJECT NFT_FIB_INET NFT_FIB_IPV4 NFT_FIB_IPV6 NFT_LIMIT NFT_LOG
	NF_SOCKET_IPV4 NF_SOCKET_IPV6 NF_TPROXY_IPV4 NF_TPROXY_IPV6 CRYPTO_CRC32C LIBCRC32C
)
disable=(MODULES NO_HZ NO_HZ_IDLE PAGE_SIZE_16KB HZ_100 PREEMPT_NONE DEBUG_INFO
	DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT)
cfg=("$SRC/scripts/config" --file "$BUILD/.config")
for o in "${enable[@]}"; do cfg+=(-e "$o"); done
for o in "${disable[@]}"; do cfg+=(-d "$o"); done
"${cfg[@]}"
"${k[@]}" olddefconfig >/dev/null
missing=()
for o in "${enable[@]}"; do
	grep -qx "CONFIG_$o=y" "$BUILD/.config" || missing+=("$o")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "mips-kernel: not built in after olddefconfig: ${missing[*]}" >&2
	exit 1
fi
hash=$( (basename "$deb"; grep '^CONFIG_' "$BUILD/.config") | sha256sum | cut -c1-12)
image=$OUT/vmlinux-$version-$hash
if [ -f "$image" ]; then
	ln -sfn "$(basename "$image")" "$OUT/vmlinux"
	echo "$image"
	exit 0
fi
nice -n 10 "${k[@]}" vmlinux
cp "$BUILD/vmlinux" "$image.tmp"
cp "$BUILD/.config" "$image.config"
mv "$image.tmp" "$image"
ln -sfn "$(basename "$image")" "$OUT/vmlinux"
echo "$image"
