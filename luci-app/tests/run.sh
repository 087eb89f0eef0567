#!/usr/bin/env bash
# The LuCI tests in one command:   bash luci-app/tests/run.sh
#
# Installs what is missing (Debian's chromium, node/npm, python3, shellcheck and
# busybox via apt; playwright-core via `npm ci` from the committed lock file; no
# browser download), then runs every *.test.mjs with node's test runner:
#   status.test.mjs    view/mpbond/status.js in headless Chromium (screenshots in out/)
#   settings.test.mjs  view/mpbond/settings.js against the agent's UCI option table
#   rpcd.test.mjs      the rpcd plugin under sh and busybox sh
#   package.test.mjs   ACL, menu, Makefile and the luci-app ipk (cross/package-luci.sh)
# Exits non-zero on any failure; the last line is "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")"
export DEBIAN_FRONTEND=noninteractive

need=()
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v python3 >/dev/null || need+=(python3)
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v busybox >/dev/null || need+=(busybox)
if [ "${#need[@]}" -gt 0 ]; then
	echo "installing: ${need[*]}"
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -f node_modules/playwright-core/package.json ] || npm ci --no-audit --no-fund --loglevel=error

mkdir -p out
# A fresh status capture from the agent in the namespace test bed, when this
# runs as root next to built binaries (tests/run.sh builds them first);
# otherwise the committed capture in fixtures/ is served.
demo=../../target/debug/mpbond-demo
if [ -z "${MPBOND_STATUS_DIR:-}" ] && [ "$(id -u)" = 0 ] && [ -x "$demo" ]; then
	if "$demo" --capture-status out/captured >out/capture.log 2>&1; then
		export MPBOND_STATUS_DIR="$PWD/out/captured"
	else
		echo "status capture failed (see out/capture.log):"; tail -5 out/capture.log; exit 1
	fi
fi
echo "status documents: ${MPBOND_STATUS_DIR:-$PWD/fixtures} ($([ -n "${MPBOND_STATUS_DIR:-}" ] && echo fresh capture || echo committed capture))"
rc=0
node --test --test-reporter=spec --test-reporter-destination=stdout \
	--test-reporter=tap --test-reporter-destination=out/results.tap \
	status.test.mjs settings.test.mjs rpcd.test.mjs package.test.mjs || rc=$?

pass=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' out/results.tap | tail -1)
fail=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' out/results.tap | tail -1)
[ -n "$pass" ] || { pass=0; fail=1; rc=1; }
echo "screenshot: $(pwd)/out/status.png"
echo "${pass} passed, ${fail:-0} failed"
exit "$rc"
