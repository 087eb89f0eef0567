#!/bin/bash
# The benchmark suite of issue 5 in one command. Needs root (network namespaces).
#
#   bash tests/bench/run.sh            # the full run: 3 interleaved runs per comparison
#   bash tests/bench/run.sh --short    # CI: small transfers, one run
#   bash tests/bench/run.sh --cases 1,2 --json results.json
#
# It builds our binaries with the release profile (MPBOND_BENCH_PROFILE=bench-fast
# for a quicker, non-LTO build), makes sure shadowsocks-rust's sslocal and
# ssserver are there (MPBOND_SS_BIN names a directory that has them; otherwise
# they are installed with cargo into target/ss), builds the mipsel sslocal for
# case 15 (the MIPS router VM) with cross/peer.sh when that case runs and
# target/ss-mipsel/sslocal is missing, and runs mpbond-bench.
# Results: the table on stdout, JSON in target/bench/results-<mode>.json unless --json.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
    echo "tests/bench/run.sh: needs root (network namespaces)" >&2
    exit 2
fi
sh tests/setup.sh
# setup.sh may have just installed Rust with rustup.
PATH="$HOME/.cargo/bin:$PATH"
target="${CARGO_TARGET_DIR:-target}"
profile="${MPBOND_BENCH_PROFILE:-release}"
cargo build --profile "$profile" -p mpbond-agent -p mpbond-concentrator -p mpbond-tests --bins
bin_dir="$target/$profile"

# The peer: shadowsocks-rust with redir and the 2022 ciphers.
ss_bin="${MPBOND_SS_BIN:-}"
if [ -z "$ss_bin" ]; then
    if command -v sslocal >/dev/null && command -v ssserver >/dev/null; then
        ss_bin="$(dirname "$(command -v sslocal)")"
    else
        ss_bin="$target/ss/bin"
    fi
fi
if [ ! -x "$ss_bin/sslocal" ] || [ ! -x "$ss_bin/ssserver" ]; then
    root="$(dirname "$ss_bin")"
    echo "tests/bench/run.sh: installing shadowsocks-rust into $root" >&2
    cargo install shadowsocks-rust --locked --features local-redir,aead-cipher-2022 --root "$root"
fi

mode=full
json=""
cases=all
prev=""
for a in "$@"; do
    case "$a" in
        --short) mode=short ;;
        --json|--json=*) json=given ;;
        --cases=*) cases="${a#--cases=}" ;;
    esac
    if [ "$prev" = --cases ]; then cases="$a"; fi
    prev="$a"
done

# Case 15's peer runs in the MIPS VM: shadowsocks-rust's sslocal cross-built for
# mipsel (the toolchain of cross/build.sh, which CI's cross/ci.sh has installed).
if { [ "$cases" = all ] || grep -qw 15 <<<"${cases//,/ }"; } && [ -z "${MPBOND_MIPS_PEER:-}" ] \
    && [ ! -x target/ss-mipsel/sslocal ]; then
    echo "tests/bench/run.sh: building the mipsel sslocal for case 15 (cross/peer.sh)" >&2
    bash cross/peer.sh
fi
extra=()
if [ -z "$json" ]; then
    mkdir -p "$target/bench"
    extra=(--json "$target/bench/results-$mode.json")
fi
exec "$bin_dir/mpbond-bench" --bin-dir "$bin_dir" --ss-bin "$ss_bin" "${extra[@]}" "$@"
