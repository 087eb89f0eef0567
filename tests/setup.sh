#!/bin/sh
# Prepare a Debian/Ubuntu host for mpbond's namespace test bed. Idempotent.
# Installs the tools the test bed runs, checks that the kernel has MPTCP,
# and says how to get Rust if cargo is missing. Needs root.
set -eu

# mptcpize runs curl over MPTCP in the SOCKS5 test (concentrator/tests/socks.rs).
# dnsmasq-base is the resolver binary alone: the `dnsmasq` package would also start a
# system resolver service outside the test namespaces (it is also the DHCP server of
# tests/tests/udp.rs). dnsutils brings dig; busybox brings udhcpc, the DHCP client.
PACKAGES="iproute2 nftables iperf3 tcpdump procps kmod curl ca-certificates gcc libc6-dev shellcheck python3 mptcpize dnsmasq-base dnsutils busybox qemu-system-mips"

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (the test bed creates network namespaces)" >&2
    exit 1
fi

missing=""
for pkg in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
# The MIPS router VM (tests/tests/mips_vm.rs, bench case 15) boots Debian's mipsel
# Malta kernel with busybox-static:mipsel: both come from the mipsel architecture.
new_arch=""
if ! dpkg --print-foreign-architectures | grep -qx mipsel; then
    echo "setup.sh: adding the mipsel architecture to dpkg"
    dpkg --add-architecture mipsel
    new_arch=mipsel
fi
if [ -n "$missing" ] || [ -n "$new_arch" ]; then
    echo "setup.sh: installing$missing"
    apt-get update -qq
    if [ -n "$missing" ]; then
        # shellcheck disable=SC2086 # word splitting is intended
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
    fi
fi

if [ ! -e /proc/sys/net/mptcp/enabled ]; then
    modprobe mptcp 2>/dev/null || true
fi
if [ ! -e /proc/sys/net/mptcp/enabled ]; then
    echo "setup.sh: this kernel has no MPTCP (CONFIG_MPTCP); the test bed needs Linux >= 5.15 with MPTCP" >&2
    exit 1
fi
if ! ip mptcp limits show >/dev/null 2>&1; then
    echo "setup.sh: 'ip mptcp' does not work; install a newer iproute2" >&2
    exit 1
fi
for mod in sch_tbf nf_tables nft_redir nft_masq veth; do
    modprobe "$mod" 2>/dev/null || true
done

PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null 2>&1; then
    echo "setup.sh: cargo not found; installing Rust with rustup (minimal profile)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "setup.sh: cargo is still missing; install Rust from https://rustup.rs" >&2
    exit 1
fi
# The VM's packages, downloaded once into the cache the tests use (target/mips-vm/debs);
# the tests unpack them and build the initramfs themselves.
VM_DEBS="$(dirname "$0")/../target/mips-vm/debs"
if ! ls "$VM_DEBS"/linux-image-*_mipsel.deb >/dev/null 2>&1 || ! ls "$VM_DEBS"/busybox-static_*_mipsel.deb >/dev/null 2>&1; then
    mkdir -p "$VM_DEBS"
    image=$(apt-cache depends linux-image-4kc-malta:mipsel | sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n 1)
    if [ -z "$image" ]; then
        echo "setup.sh: no linux-image-4kc-malta:mipsel in the apt sources" >&2
        exit 1
    fi
    echo "setup.sh: downloading $image and busybox-static:mipsel into $VM_DEBS"
    (cd "$VM_DEBS" && apt-get download -q "$image" busybox-static:mipsel)
fi
echo "setup.sh: ready (MPTCP enabled, $(ip -V))"
