#!/bin/sh
# Build mpbond in release mode and run the namespace demo.
# Arguments go to mpbond-demo, e.g. --wans 40,60 --bytes 100000000,
# or --unshaped --compare-direct. Needs root.
set -eu
cd "$(dirname "$0")/.."
sh tests/setup.sh
# setup.sh may have just installed Rust with rustup.
PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --workspace
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/mpbond-demo" "$@"
