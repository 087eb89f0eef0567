#!/bin/sh
# Build every binary (the end-to-end tests run the debug daemons and tools)
# and run the whole workspace's tests, one at a time, as root. Exits non-zero
# if anything fails.
#
# Tests that need root, a network namespace or a tool are #[ignore = "needs ..."]
# so that a plain `cargo test` as a user leaves them out visibly ("ignored");
# this script runs them on purpose with --include-ignored, and they fail (never
# skip) when what they need is missing. Two ignored tests are not part of the
# suite and are skipped by name:
#   deb_package_installs_and_serves          needs the release .deb; .ci/run runs
#                                            it after `cargo deb`
#   direct_mptcp_with_fast_open_aggregates   a kernel diagnosis, run by hand
# The MIPS router VM tests (tests/tests/mips_vm.rs) are among them: setup.sh
# installs qemu and fetches the mipsel kernel and busybox, and they need the
# mipsel agent of this tree: this script builds it with cross/build.sh into
# target/ci-cross/bin/mipsel_24kc/ (where cross/ci.sh leaves it; a no-op when
# nothing changed; the first time it installs the nightly toolchain and zig).
# MPBOND_MIPS_AGENT names another binary and skips the build.
# Extra arguments go to the test harness (a name filter, --nocapture, ...).
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "tests/run.sh: run as root (the namespace tests are part of the suite)" >&2
    exit 1
fi
sh tests/setup.sh
# setup.sh may have just installed Rust with rustup.
PATH="$HOME/.cargo/bin:$PATH"
cargo build --workspace --bins
status=0
if [ -z "${MPBOND_MIPS_AGENT:-}" ]; then
    bash cross/build.sh --out "${CROSS_OUT:-target/ci-cross}/bin" mipsel_24kc || status=1
fi
cargo test --workspace --lib --bins --tests --no-fail-fast -- \
    --include-ignored --test-threads=1 \
    --skip deb_package_installs_and_serves \
    --skip direct_mptcp_with_fast_open_aggregates \
    "$@" || status=1
# Doc examples on their own and without --include-ignored: an ```ignore block
# is prose, not a test.
cargo test --workspace --doc --no-fail-fast -- "$@" || status=1
# The LuCI status page in headless Chromium (installs chromium and node deps).
bash luci-app/tests/run.sh || status=1
exit "$status"
