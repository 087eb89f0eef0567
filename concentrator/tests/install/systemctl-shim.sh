#!/bin/sh
# A stand-in for systemctl, for concentrator/tests/install.rs: the test machine has no
# systemd as PID 1. install.rs copies it as `systemctl` into a directory it puts first in
# PATH, inside the test's network and mount namespaces, so install.sh and `add-client`
# run it instead of systemd's. On a real VPS neither ever sees it.
#
# It logs each call to $MPBOND_SHIM_STATE/calls and carries out what the unit file says,
# read from /etc/systemd/system or /lib/systemd/system:
#   start    ExecStartPre= lines as root (prefixes -+!@: stripped; "-" ignores failure),
#            then ExecStart= in the background as User= (setpriv, no capabilities), with
#            Environment=; it returns once the daemon listens on a TCP socket.
#   reload   ExecReload= with $MAINPID set.
#   stop     SIGTERM, and waits for the daemon to exit.
#   is-active, restart, reload-or-restart, enable, disable, daemon-reload.
# The sandboxing directives are not applied; `systemd-analyze verify` checks the unit.

set -eu

state=${MPBOND_SHIM_STATE:?MPBOND_SHIM_STATE is not set}
printf '%s\n' "$*" >>"$state/calls"

words=
for arg in "$@"; do
    case $arg in
        -*) ;;
        *) words="$words $arg" ;;
    esac
done
# shellcheck disable=SC2086 # split the words on purpose
set -- $words
cmd=${1:-}
unit=${2:-}
unit=${unit%.service}
pidfile=$state/$unit.pid
log=$state/$unit.log

unit_file() {
    for dir in /etc/systemd/system /lib/systemd/system /usr/lib/systemd/system; do
        if [ -f "$dir/$unit.service" ]; then
            printf '%s\n' "$dir/$unit.service"
            return 0
        fi
    done
    echo "systemctl shim: no unit $unit" >&2
    return 1
}

# Values of a directive, one per line.
directive() {
    sed -n "s/^$1=//p" "$(unit_file)"
}

running() {
    [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

start() {
    running && return 0
    user=$(directive User)
    for assignment in $(directive Environment); do
        export "${assignment?}"
    done
    pre=$(directive ExecStartPre)
    while IFS= read -r line; do
        [ -n "$line" ] || continue
        ignore=0
        while :; do
            case $line in
                -*) ignore=1; line=${line#?} ;;
                [+!@:]*) line=${line#?} ;;
                *) break ;;
            esac
        done
        if ! sh -c "$line" >>"$log" 2>&1 && [ "$ignore" = 0 ]; then
            echo "systemctl shim: ExecStartPre failed: $line" >&2
            return 1
        fi
    done <<EOF
$pre
EOF
    exec_start=$(directive ExecStart)
    setsid setpriv --reuid="$user" --regid="$user" --init-groups --inh-caps=-all \
        -- sh -c "exec $exec_start" </dev/null >>"$log" 2>&1 &
    pid=$!
    echo "$pid" >"$pidfile"
    # Ready once it listens (systemd would wait for READY=1), bounded at 20 s.
    tries=0
    while ! ss -Hltnp 2>/dev/null | grep -q "pid=$pid,"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "systemctl shim: $unit exited at start; log: $log" >&2
            return 1
        fi
        tries=$((tries + 1))
        if [ "$tries" -gt 400 ]; then
            echo "systemctl shim: $unit did not listen within 20 s" >&2
            return 1
        fi
        sleep 0.05
    done
}

stop() {
    running || return 0
    pid=$(cat "$pidfile")
    kill -TERM "$pid"
    tries=0
    while kill -0 "$pid" 2>/dev/null; do
        tries=$((tries + 1))
        if [ "$tries" -gt 600 ]; then
            kill -KILL "$pid"
            break
        fi
        sleep 0.05
    done
    rm -f "$pidfile"
}

reload() {
    running || { echo "systemctl shim: $unit is not active" >&2; return 1; }
    MAINPID=$(cat "$pidfile") sh -c "$(directive ExecReload)"
}

case $cmd in
    daemon-reload | enable | disable) ;;
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    reload) reload ;;
    reload-or-restart) if running; then reload; else start; fi ;;
    is-active) running ;;
    *) echo "systemctl shim: unsupported: $*" >&2; exit 1 ;;
esac
