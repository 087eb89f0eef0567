#!/bin/sh
# cross/package-luci.sh [OUTDIR]
#
# Builds luci-app-mpbond_<version>_all.ipk, the LuCI status and settings pages,
# with no SDK, the way luci.mk lays it out: luci-app/htdocs/ under /www and
# luci-app/root/ under /, Architecture "all", and luci.mk's postinst (drop the
# LuCI caches, make rpcd reload its ACLs and plugins), plus a postrm that
# reloads rpcd again after a removal. Then it rebuilds the
# Packages index of OUTDIR, so put it next to the agent's ipk from package.sh:
#
#   cross/package.sh mipsel_24kc target/cross/mipsel_24kc/mpbond-agent target/feed
#   cross/package-luci.sh target/feed
#
# OUTDIR defaults to target/ipk/all. Environment: VERSION, SOURCE_DATE_EPOCH.
set -eu

[ $# -le 1 ] || { echo "usage: $0 [OUTDIR]" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUTDIR=${1:-$ROOT/target/ipk/all}
APP=$ROOT/luci-app

# shellcheck source=cross/ipk.sh
. "$ROOT/cross/ipk.sh"
ipk_defaults

mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mpbond-luci-ipk.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM

# --- data: htdocs -> /www, root -> / (files 0644, the rpcd plugin 0755) ---------
DATA=$WORK/data
install -d -m 0755 "$DATA/www"
(cd "$APP/htdocs" && find . -type f) | while read -r f; do
	install -D -m 0644 "$APP/htdocs/$f" "$DATA/www/$f"
done
(cd "$APP/root" && find . -type f) | while read -r f; do
	install -D -m 0644 "$APP/root/$f" "$DATA/$f"
done
chmod 0755 "$DATA/usr/libexec/rpcd/mpbond"
find "$DATA" -type d -exec chmod 0755 {} +
ipk_tar "$DATA" "$WORK/data.tar.gz"
INSTALLED_SIZE=$(ipk_installed_size "$WORK/data.tar.gz")

# --- control ------------------------------------------------------------------
CONTROL=$WORK/control
install -d -m 0755 "$CONTROL"
cat >"$CONTROL/control" <<CTRL
Package: luci-app-mpbond
Version: $VERSION
Depends: libc, mpbond, luci-base
Source: luci-app
SourceName: luci-app-mpbond
License: Apache-2.0
Section: luci
SourceDateEpoch: $SOURCE_DATE_EPOCH
URL: https://example.invalid/mpbond
Maintainer: mpbond developers <mpbond@example.invalid>
Architecture: all
Installed-Size: $INSTALLED_SIZE
Description:  LuCI support for mpbond multi-WAN bonding.
 Status (WANs, concentrator, connections, live rates) and settings pages.
CTRL
# luci.mk's default postinst, as the SDK would generate it.
cat >"$CONTROL/postinst" <<'SCRIPT'
#!/bin/sh
[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0
[ -n "${IPKG_INSTROOT}" ] && exit 0
rm -f /tmp/luci-indexcache.*
rm -rf /tmp/luci-modulecache/
killall -HUP rpcd 2>/dev/null
exit 0
SCRIPT
# After removal rpcd must drop the mpbond plugin and the ACL, or the mpbond
# object stays listed until rpcd restarts: reload it, as on install.
cat >"$CONTROL/postrm" <<'SCRIPT'
#!/bin/sh
[ -n "${IPKG_INSTROOT}" ] && exit 0
rm -f /tmp/luci-indexcache.*
rm -rf /tmp/luci-modulecache/
/etc/init.d/rpcd reload 2>/dev/null
exit 0
SCRIPT
chmod 0644 "$CONTROL/control"
chmod 0755 "$CONTROL/postinst" "$CONTROL/postrm"
ipk_tar "$CONTROL" "$WORK/control.tar.gz"

IPK=luci-app-mpbond_${VERSION}_all.ipk
ipk_pack "$WORK" "$OUTDIR" "$IPK"
ipk_index "$OUTDIR"
echo "$OUTDIR/$IPK"
