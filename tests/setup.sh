#!/bin/sh
# Prepare a Debian/Ubuntu host for mpbond's namespace test bed. Idempotent.
# Installs the tools the test bed runs, checks that the kernel has MPTCP,
# and says how to get Rust if cargo is missing. Needs root.
set -eu

# dnsmasq-base is the resolver binary alone: the `dnsmasq` package would also start a
# system resolver service outside the test namespaces. dnsutils brings dig.
PACKAGES="iproute2 nftables iperf3 tcpdump procps kmod curl ca-certificates gcc libc6-dev shellcheck python3 dnsmasq-base dnsutils"

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (the test bed creates network namespaces)" >&2
    exit 1
fi

missing=""
for pkg in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    echo "setup.sh: installing$missing"
    apt-get update -qq
    # shellcheck disable=SC2086 # word splitting is intended
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
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
echo "setup.sh: ready (MPTCP enabled, $(ip -V))"
