#!/bin/sh
# Build every binary (the end-to-end tests run the debug daemons and tools)
# and run the whole workspace's tests, one at a time. Exits non-zero if
# anything fails. Needs root for the namespace tests (they skip otherwise).
set -eu
cd "$(dirname "$0")/.."
sh tests/setup.sh
# setup.sh may have just installed Rust with rustup.
PATH="$HOME/.cargo/bin:$PATH"
cargo build --workspace --bins
cargo test --workspace --no-fail-fast -- --test-threads=1 "$@"
# The LuCI status page in headless Chromium (installs chromium and node deps).
bash luci-app/tests/run.sh
