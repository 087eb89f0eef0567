#!/bin/sh
# mpbond concentrator: the whole VPS set-up in one command, on Debian or Ubuntu.
#
#   install.sh [--deb FILE|URL | --binary FILE] [--client ID] [--host HOST] [--no-firewall]
#
#   curl -fsSL URL/install.sh | sh -s -- --deb URL/mpbond-concentrator_VERSION-1_amd64.deb
#   ./concentrator/install.sh --binary target/release/mpbond-concentrator   (source tree)
#   install.sh                                     (again: keeps all, prints the values)
#
# As root, it
#   1. checks the kernel: Linux >= 5.15 with MPTCP (no kernel change, no reboot);
#   2. installs the package (dpkg -i) or the binary (/usr/local/bin, with the unit and
#      the sysctl drop-in from packaging/ next to this script);
#   3. creates the system user `mpbond` and /etc/mpbond;
#   4. applies the sysctls (net.mptcp.enabled=1, TFO server bit) and the MPTCP limits
#      (subflows 8, add_addr_accepted 8) with `mpbond-concentrator setup`;
#   5. writes /etc/mpbond/concentrator.toml if it is missing, and adds the client (default
#      router1) with a fresh key if the config lacks it. It never replaces a key. With
#      --host it fills the config's empty `server_id = []` with HOST:PORT and, when HOST
#      is an IP address, its empty `public_address = []` with HOST;
#   6. opens the listening port (TCP, and UDP for the WAN probes) in ufw, firewalld or
#      an nft `inet filter` input chain,
#      whichever is active (it installs no firewall);
#   7. enables and starts (or reloads) mpbond-concentrator.service;
#   8. prints the values to enter in the router's LuCI page, and a uci block.
# Running it again changes nothing that is already right.
#
# Options (or the environment variable in brackets):
#   --deb FILE|URL   install this .deb                                   [MPBOND_DEB]
#   --binary FILE    install this binary to /usr/local/bin               [MPBOND_BINARY]
#   --client ID      the router's client id (default router1)            [MPBOND_CLIENT]
#   --host HOST      this VPS's address for routers (default: guessed)   [MPBOND_HOST]
#   --no-firewall    leave the firewall alone
# Without --deb or --binary an installed mpbond-concentrator is used.
#
# Test seams (defaults are the real thing): MPBOND_PROC_SYS (/proc/sys),
# MPBOND_KERNEL_RELEASE (uname -r), MPBOND_PACKAGING (packaging/ next to this script).
# systemctl is taken from PATH; on a VPS that is systemd's own.

set -eu

UNIT=mpbond-concentrator
CONF_DIR=/etc/mpbond
CONF=$CONF_DIR/concentrator.toml
SERVICE_USER=mpbond

DEB=${MPBOND_DEB:-}
BINARY=${MPBOND_BINARY:-}
CLIENT=${MPBOND_CLIENT:-router1}
HOST=${MPBOND_HOST:-}
FIREWALL=1
PROC_SYS=${MPBOND_PROC_SYS:-/proc/sys}
KERNEL_RELEASE=${MPBOND_KERNEL_RELEASE:-$(uname -r)}
PACKAGING=${MPBOND_PACKAGING:-$(dirname -- "$0")/packaging}

say() { printf '%s\n' "mpbond: $*"; }
warn() { printf '%s\n' "mpbond: warning: $*" >&2; }
die() {
    printf '%s\n' "mpbond: error: $*" >&2
    exit 1
}
usage() {
    sed -n '2,/^$/s/^# \{0,1\}//p' "$0" 2>/dev/null || true
    exit "$1"
}

while [ $# -gt 0 ]; do
    case $1 in
        --deb) DEB=${2:?--deb needs a file or URL}; shift 2 ;;
        --binary) BINARY=${2:?--binary needs a file}; shift 2 ;;
        --client) CLIENT=${2:?--client needs an id}; shift 2 ;;
        --host) HOST=${2:?--host needs an address}; shift 2 ;;
        --no-firewall) FIREWALL=0; shift ;;
        -h | --help) usage 0 ;;
        *) printf 'unknown option: %s\n' "$1" >&2; usage 2 ;;
    esac
done

[ -z "$DEB" ] || [ -z "$BINARY" ] || die "give --deb or --binary, not both"
case $CLIENT in
    '' | *[!A-Za-z0-9._-]*) die "client id '$CLIENT': use 1-32 of A-Z a-z 0-9 . _ -" ;;
esac
[ "${#CLIENT}" -le 32 ] || die "client id '$CLIENT' is longer than 32 characters"
case $HOST in
    *[!A-Za-z0-9.:-]*) die "host '$HOST': give an IP address or a DNS name" ;;
esac
[ "$(id -u)" = 0 ] || die "run as root (sudo sh install.sh ...)"

# 1. Kernel: MPTCP since 5.6, the features mpbond uses since 5.15, Fast Open on MPTCP
# since 6.2. Checked before anything changes.
check_kernel() {
    major=${KERNEL_RELEASE%%.*}
    minor=${KERNEL_RELEASE#*.}
    minor=${minor%%[!0-9]*}
    case $major$minor in
        '' | *[!0-9]*) die "cannot read the kernel version from '$KERNEL_RELEASE'" ;;
    esac
    if [ ! -e "$PROC_SYS/net/mptcp/enabled" ]; then
        die "this kernel (Linux $KERNEL_RELEASE) has no MPTCP: $PROC_SYS/net/mptcp/enabled is missing. mpbond needs Linux >= 5.15 built with CONFIG_MPTCP (stock Debian 12+ and Ubuntu 22.04+ kernels are). Nothing was changed."
    fi
    if [ "$major" -lt 5 ] || { [ "$major" -eq 5 ] && [ "$minor" -lt 15 ]; }; then
        die "Linux $KERNEL_RELEASE is older than 5.15, whose MPTCP mpbond needs. Use a newer distribution kernel (Debian 12, Ubuntu 22.04 or later). Nothing was changed."
    fi
    if [ "$major" -lt 6 ] || { [ "$major" -eq 6 ] && [ "$minor" -lt 2 ]; }; then
        warn "Linux $KERNEL_RELEASE has MPTCP but no TCP Fast Open on MPTCP (Linux 6.2+). Bonding works; routers notice and connect without Fast Open, so each new connection waits one more round trip to this VPS before its data flows."
    fi
    say "kernel: Linux $KERNEL_RELEASE with MPTCP"
}

# 2. The binary, the unit and the sysctl drop-in.
fetch_deb() {
    case $DEB in
        http://* | https://*) ;;
        *) return 0 ;;
    esac
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    file="$tmp/mpbond-concentrator.deb"
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL -o "$file" "$DEB" || die "cannot download $DEB"
    elif command -v wget >/dev/null 2>&1; then
        wget -qO "$file" "$DEB" || die "cannot download $DEB"
    else
        die "neither curl nor wget is installed to download $DEB"
    fi
    DEB=$file
}

RESTART=0
install_files() {
    if [ -n "$DEB" ]; then
        fetch_deb
        [ -f "$DEB" ] || die "no such package: $DEB"
        DEBIAN_FRONTEND=noninteractive dpkg -i "$DEB" || die "dpkg -i $DEB failed"
        BIN=/usr/bin/mpbond-concentrator
        SYSCTL_FILE=/usr/lib/sysctl.d/99-mpbond.conf
        TEMPLATE=/usr/share/mpbond-concentrator/concentrator.toml
        say "installed $(dpkg-deb -f "$DEB" Package) $(dpkg-deb -f "$DEB" Version)"
    elif [ -n "$BINARY" ]; then
        [ -f "$BINARY" ] || die "no such binary: $BINARY"
        for f in mpbond-concentrator.service 99-mpbond.conf concentrator.toml; do
            [ -f "$PACKAGING/$f" ] || die "--binary needs $PACKAGING/$f (run install.sh from the source tree, or set MPBOND_PACKAGING)"
        done
        "$BINARY" --version >/dev/null 2>&1 || die "$BINARY does not run here"
        BIN=/usr/local/bin/mpbond-concentrator
        SYSCTL_FILE=/etc/sysctl.d/99-mpbond.conf
        TEMPLATE=$PACKAGING/concentrator.toml
        if ! cmp -s "$BINARY" "$BIN"; then
            install -D -m 0755 "$BINARY" "$BIN.new" && mv -f "$BIN.new" "$BIN"
            RESTART=1
            say "installed $BIN ($("$BIN" --version))"
        fi
        unit=/etc/systemd/system/$UNIT.service
        sed "s|/usr/bin/mpbond-concentrator|$BIN|g" "$PACKAGING/$UNIT.service" >"$unit.new"
        if cmp -s "$unit.new" "$unit"; then rm -f "$unit.new"; else
            chmod 0644 "$unit.new" && mv -f "$unit.new" "$unit"
            RESTART=1
            say "installed $unit"
        fi
        install -D -m 0644 "$PACKAGING/99-mpbond.conf" "$SYSCTL_FILE"
    else
        for BIN in /usr/bin/mpbond-concentrator /usr/local/bin/mpbond-concentrator; do
            [ -x "$BIN" ] && break
        done
        [ -x "$BIN" ] || die "mpbond-concentrator is not installed: give --deb FILE|URL or --binary FILE"
        if [ "$BIN" = /usr/bin/mpbond-concentrator ]; then
            SYSCTL_FILE=/usr/lib/sysctl.d/99-mpbond.conf
            TEMPLATE=/usr/share/mpbond-concentrator/concentrator.toml
        else
            SYSCTL_FILE=/etc/sysctl.d/99-mpbond.conf
            TEMPLATE=$PACKAGING/concentrator.toml
        fi
    fi
}

# 3. The service user; the config directory is root's, readable by the service.
ensure_user() {
    if ! getent passwd "$SERVICE_USER" >/dev/null; then
        if command -v adduser >/dev/null 2>&1; then
            adduser --system --group --no-create-home --home /nonexistent --quiet "$SERVICE_USER"
        else
            useradd --system --user-group --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin "$SERVICE_USER"
        fi
        say "created system user $SERVICE_USER"
    fi
    install -d -m 0750 -o root -g "$SERVICE_USER" "$CONF_DIR"
}

# 4. Kernel settings, now and (drop-in, and the unit's ExecStartPre) after a reboot.
apply_sysctls() {
    sysctl -q -p "$SYSCTL_FILE" || die "cannot apply $SYSCTL_FILE"
    out=$("$BIN" setup 2>&1) || die "mpbond-concentrator setup failed: $out"
    printf '%s\n' "$out" | sed 's/^/mpbond: /'
}

# 5. The config and the client. A key, once written, is never replaced.
ensure_config() {
    if [ ! -e "$CONF" ]; then
        [ -f "$TEMPLATE" ] || die "no config template at $TEMPLATE"
        install -m 0600 -o "$SERVICE_USER" -g "$SERVICE_USER" "$TEMPLATE" "$CONF"
        say "wrote $CONF"
    fi
    # The service runs as $SERVICE_USER and must read the keys; nobody else may.
    chown "$SERVICE_USER:$SERVICE_USER" "$CONF"
    chmod 0600 "$CONF"
    "$BIN" check-config "$CONF" >/dev/null || die "$CONF is not valid (see above); fix it and run again"
    if "$BIN" show-client "$CLIENT" --config "$CONF" --host localhost >/dev/null 2>&1; then
        say "client $CLIENT is already in $CONF: keeping its key"
    else
        "$BIN" add-client "$CLIENT" --config "$CONF" --no-reload >/dev/null ||
            die "cannot add client $CLIENT to $CONF"
        say "added client $CLIENT with a new key to $CONF"
    fi
}

# 5b. What routers dial: the server id, and the public address behind a 1:1 NAT. Only
# the template's empty lists are filled; anything written by hand stays.
is_ip_literal() {
    case $1 in
        *:*) return 0 ;;
        *[!0-9.]* | '') return 1 ;;
        *.*.*.*) return 0 ;;
        *) return 1 ;;
    esac
}

ensure_identity() {
    [ -n "$HOST" ] || return 0
    port=$(listen_ports | head -n 1)
    if grep -q '^server_id = \[\]$' "$CONF"; then
        sed -i "s|^server_id = \[\]\$|server_id = [\"$HOST:${port:-4850}\"]|" "$CONF"
        say "server_id $HOST:${port:-4850} set in $CONF"
    fi
    if is_ip_literal "$HOST" && grep -q '^public_address = \[\]$' "$CONF"; then
        sed -i "s|^public_address = \[\]\$|public_address = [\"$HOST\"]|" "$CONF"
        say "public_address $HOST set in $CONF (refused as a destination)"
    fi
    "$BIN" check-config "$CONF" >/dev/null || die "$CONF is not valid after setting server_id/public_address"
}

# 6. The firewall, if one is active. The ports are the listeners' in the config.
listen_ports() {
    "$BIN" check-config "$CONF" | sed -n 's/.*listening on //p' | tr ',' '\n' |
        sed -n 's/.*:\([0-9][0-9]*\)$/\1/p' | sort -u
}

open_port() {
    port=$1
    found=0
    if command -v ufw >/dev/null 2>&1 && ufw status 2>/dev/null | grep -q '^Status: active'; then
        ufw allow "$port/tcp" comment mpbond >/dev/null || die "ufw allow $port/tcp failed"
        ufw allow "$port/udp" comment mpbond >/dev/null || die "ufw allow $port/udp failed"
        say "ufw: TCP and UDP $port allowed"
        found=1
    fi
    if command -v firewall-cmd >/dev/null 2>&1 && firewall-cmd --state >/dev/null 2>&1; then
        { firewall-cmd --quiet --permanent --add-port="$port/tcp" &&
            firewall-cmd --quiet --add-port="$port/tcp" &&
            firewall-cmd --quiet --permanent --add-port="$port/udp" &&
            firewall-cmd --quiet --add-port="$port/udp"; } || die "firewall-cmd --add-port=$port/tcp,udp failed"
        say "firewalld: TCP and UDP $port allowed (runtime and permanent)"
        found=1
    fi
    if command -v nft >/dev/null 2>&1 && nft list chain inet filter input >/dev/null 2>&1; then
        if nft list chain inet filter input | grep -q "tcp dport $port accept comment \"mpbond\""; then
            say "nftables: TCP $port already accepted in inet filter input"
        else
            nft insert rule inet filter input tcp dport "$port" accept comment '"mpbond"' ||
                die "cannot add the nft rule"
            say "nftables: TCP $port accepted in inet filter input (running ruleset; to keep it after a reboot add 'tcp dport $port accept' to the input chain in /etc/nftables.conf)"
        fi
        # The WAN probe datagrams (docs/PROTOCOL.md, "Probe datagrams").
        if nft list chain inet filter input | grep -q "udp dport $port accept comment \"mpbond\""; then
            say "nftables: UDP $port already accepted in inet filter input"
        else
            nft insert rule inet filter input udp dport "$port" accept comment '"mpbond"' ||
                die "cannot add the nft rule"
            say "nftables: UDP $port accepted in inet filter input (add 'udp dport $port accept' to /etc/nftables.conf too)"
        fi
        found=1
    fi
    if [ "$found" = 0 ]; then
        say "no active firewall (ufw, firewalld, nft inet filter input): nothing to open for TCP $port"
    fi
}

open_firewall() {
    if [ "$FIREWALL" = 0 ]; then
        say "firewall left alone (--no-firewall): allow TCP and UDP $(listen_ports | tr '\n' ' ')yourself"
        return
    fi
    for port in $(listen_ports); do open_port "$port"; done
    say "if your provider has a cloud firewall (security group), allow TCP and UDP $(listen_ports | tr '\n' ' ')there too"
}

# 7. The service. A new binary or unit restarts it; otherwise a reload (SIGHUP) picks up
# a new client without dropping connections, and a stopped service is started.
start_service() {
    systemctl daemon-reload
    systemctl enable --quiet "$UNIT"
    if [ "$RESTART" = 1 ]; then
        systemctl restart "$UNIT" || true
    else
        systemctl reload-or-restart "$UNIT" || true
    fi
    systemctl is-active --quiet "$UNIT" ||
        die "$UNIT did not start; see: journalctl -u $UNIT"
    say "$UNIT is running and enabled at boot"
}

check_kernel
install_files
ensure_user
apply_sysctls
ensure_config
ensure_identity
open_firewall
start_service
# 8. The values for the router.
"$BIN" show-client "$CLIENT" --config "$CONF" ${HOST:+--host "$HOST"}
