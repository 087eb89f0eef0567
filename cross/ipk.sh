# shellcheck shell=sh
# cross/ipk.sh: shell functions shared by package.sh and package-luci.sh, sourced.
#
# They make what OpenWrt's scripts/ipkg-build and ipkg-make-index.sh make: an
# .ipk that is a gzip'd GNU tar of ./debian-binary ("2.0"), ./data.tar.gz and
# ./control.tar.gz, in that order, every member owned by 0:0 with a fixed mtime
# (so the same inputs give the same bytes); and a Packages index of a feed.
#
# The caller sets ROOT (the repository) and may set VERSION and SOURCE_DATE_EPOCH.

# ipk_defaults: fill in VERSION (workspace version + "-r1") and the mtime.
ipk_defaults() {
	if [ -z "${VERSION:-}" ]; then
		cargo_version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$ROOT/Cargo.toml")
		VERSION="${cargo_version:?no version in Cargo.toml}-r1"
	fi
	if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
		SOURCE_DATE_EPOCH=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)
	fi
	MTIME="@$SOURCE_DATE_EPOCH"
}

# ipk_tar DIR OUT.tar.gz: deterministic GNU tar of "." in DIR.
ipk_tar() {
	(cd "$1" && tar --format=gnu --numeric-owner --owner=0 --group=0 --sort=name \
		--mtime="$MTIME" -cf - .) | gzip -n >"$2"
}

# ipk_installed_size DATA.tar.gz: the uncompressed size, as ipkg-build counts it.
ipk_installed_size() {
	gzip -dc "$1" | wc -c | tr -d ' '
}

# ipk_pack WORK OUTDIR NAME: WORK holds data.tar.gz and control.tar.gz; writes
# OUTDIR/NAME and prints its path.
ipk_pack() {
	echo "2.0" >"$1/debian-binary"
	chmod 0644 "$1/debian-binary" "$1/data.tar.gz" "$1/control.tar.gz"
	(cd "$1" && tar --format=gnu --numeric-owner --owner=0 --group=0 \
		--mtime="$MTIME" -cf - ./debian-binary ./data.tar.gz ./control.tar.gz) \
		| gzip -n >"$2/$3.tmp"
	chmod 0644 "$2/$3.tmp"
	mv "$2/$3.tmp" "$2/$3"
}

# ipk_index OUTDIR: rebuild Packages and Packages.gz from every .ipk in OUTDIR.
# Each entry is the package's control file with Filename, Size and SHA256sum
# inserted before Description; entries are separated by a blank line. Both
# files (and the .ipks, see ipk_pack) are mode 0644 whatever the umask, so a
# plain web server can serve the directory as an opkg `src` feed.
ipk_index() {
	index=$(mktemp "${TMPDIR:-/tmp}/mpbond-index.XXXXXX")
	for pkg in $(cd "$1" && find . -maxdepth 1 -name '*.ipk' | sed 's|^\./||' | LC_ALL=C sort); do
		size=$(wc -c <"$1/$pkg" | tr -d ' ')
		sum=$(sha256sum "$1/$pkg" | cut -d' ' -f1)
		tar -xzOf "$1/$pkg" ./control.tar.gz | tar -xzOf - ./control \
			| awk -v f="$pkg" -v s="$size" -v h="$sum" '
				/^Description:/ { print "Filename: " f; print "Size: " s; print "SHA256sum: " h }
				{ print }' >>"$index"
		echo "" >>"$index"
	done
	cp "$index" "$1/Packages"
	gzip -nc "$index" >"$1/Packages.gz"
	chmod 0644 "$1/Packages" "$1/Packages.gz"
	rm -f "$index"
}
