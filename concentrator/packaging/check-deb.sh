#!/bin/sh
# Check the mpbond-concentrator .deb that `cargo deb -p mpbond-concentrator` built:
# control fields, the files and their modes, the maintainer scripts, that nothing is a
# conffile (the live config is generated: it holds keys), and that the unit verifies.
#
#   concentrator/packaging/check-deb.sh [target/debian/mpbond-concentrator_*.deb]
#
# Exit 0 if all is well; otherwise it prints each problem and exits 1. Changes nothing
# outside a temporary directory it removes.

set -eu

deb=${1:-}
if [ -z "$deb" ]; then
    # The newest package under the target dir.
    for candidate in "${CARGO_TARGET_DIR:-$(dirname -- "$0")/../../target}"/debian/mpbond-concentrator_*.deb; do
        # shellcheck disable=SC3013 # -nt: dash, bash and busybox sh all have it
        if [ -f "$candidate" ] && { [ -z "$deb" ] || [ "$candidate" -nt "$deb" ]; }; then
            deb=$candidate
        fi
    done
fi
[ -f "$deb" ] || { echo "check-deb: no .deb given or found" >&2; exit 2; }

problems=0
fail() {
    echo "check-deb: FAIL: $*" >&2
    problems=$((problems + 1))
}
ok() { echo "check-deb: ok: $*"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Control fields.
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = mpbond-concentrator ] || fail "Package is '$(field Package)'"
[ -n "$(field Version)" ] || fail "no Version"
[ "$(field Section)" = net ] || fail "Section is '$(field Section)'"
case $(field Depends) in
    *libc6*) ;;
    *) fail "Depends lacks libc6: '$(field Depends)'" ;;
esac
case $(field Depends) in
    *adduser*) ok "Depends: $(field Depends)" ;;
    *) fail "Depends lacks adduser: '$(field Depends)'" ;;
esac
ok "$(field Package) $(field Version) $(field Architecture), $(wc -c <"$deb") bytes"

# Files and modes: "mode path" lines from dpkg-deb -c.
dpkg-deb -c "$deb" | awk '{ print $1, $6 }' | sed 's| \./| /|' >"$tmp/files"
want() {
    if grep -qx -- "$1 $2" "$tmp/files"; then ok "$2 ($1)"; else fail "missing $2 with mode $1"; fi
}
want -rwxr-xr-x /usr/bin/mpbond-concentrator
want -rw-r--r-- /usr/lib/systemd/system/mpbond-concentrator.service
want -rw-r--r-- /usr/lib/sysctl.d/99-mpbond.conf
want -rw-r--r-- /usr/share/mpbond-concentrator/concentrator.toml
want -rwxr-xr-x /usr/share/mpbond-concentrator/install.sh
want -rw-r--r-- /usr/share/doc/mpbond-concentrator/copyright
want -rw-r--r-- /usr/share/doc/mpbond-concentrator/examples/concentrator.toml
if grep -q ' /etc/' "$tmp/files"; then
    fail "ships files under /etc: $(grep ' /etc/' "$tmp/files" | tr '\n' ' ')"
fi

# Control area: maintainer scripts with the systemd parts, no conffiles.
dpkg-deb -e "$deb" "$tmp/control"
[ ! -s "$tmp/control/conffiles" ] || fail "conffiles: $(cat "$tmp/control/conffiles")"
grep -q 'adduser --system' "$tmp/control/postinst" || fail "postinst does not create the user"
grep -q 'deb-systemd-helper enable mpbond-concentrator.service' "$tmp/control/postinst" ||
    fail "postinst does not enable the unit"
grep -q 'deb-systemd-invoke' "$tmp/control/postinst" || fail "postinst does not start the unit"
grep -q 'rm -f /etc/mpbond/concentrator.toml' "$tmp/control/postrm" || fail "postrm keeps keys on purge"
if grep -q '#DEBHELPER#' "$tmp/control/postinst" "$tmp/control/postrm"; then
    fail "#DEBHELPER# left unexpanded"
fi
for script in postinst postrm prerm; do
    [ ! -f "$tmp/control/$script" ] || sh -n "$tmp/control/$script" || fail "$script: syntax"
done

# The payload: the binary runs, its copyright names the licence, the unit verifies.
dpkg-deb -x "$deb" "$tmp/root"
"$tmp/root/usr/bin/mpbond-concentrator" --version >/dev/null || fail "the binary does not run"
grep -q 'Apache' "$tmp/root/usr/share/doc/mpbond-concentrator/copyright" || fail "copyright lacks the licence"
grep -q 'net.mptcp.enabled = 1' "$tmp/root/usr/lib/sysctl.d/99-mpbond.conf" || fail "sysctl drop-in"
"$tmp/root/usr/bin/mpbond-concentrator" check-config "$tmp/root/usr/share/mpbond-concentrator/concentrator.toml" >/dev/null 2>&1 ||
    fail "the config template is invalid"
if command -v systemd-analyze >/dev/null 2>&1; then
    sed "s|/usr/bin/mpbond-concentrator|$tmp/root/usr/bin/mpbond-concentrator|g" \
        "$tmp/root/usr/lib/systemd/system/mpbond-concentrator.service" >"$tmp/mpbond-concentrator.service"
    if out=$(systemd-analyze verify "$tmp/mpbond-concentrator.service" 2>&1) && [ -z "$out" ]; then
        ok "systemd-analyze verify"
    else
        fail "systemd-analyze verify: $out"
    fi
fi

if [ "$problems" -gt 0 ]; then
    echo "check-deb: $problems problem(s) in $deb" >&2
    exit 1
fi
echo "check-deb: $deb is good"
