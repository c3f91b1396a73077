#!/bin/bash
# Stop a sandbox started by boot.sh.
#
# usage: kill.sh PID
#
#   SIGKILLs the sandbox's systemd (host PID as printed by boot.sh), waits until
#   it and its namespaces are gone, then removes its cgroup and state dir
#   (kept if RELCTL_SANDBOX_KEEP=1).  Refuses PIDs that are not a sandbox
#   started by boot.sh.  Exits 0 if the sandbox is (already) gone.
#
#   SIGTERM would not do: systemd as PID 1 treats it as "re-execute".
#   Killing PID 1 of a pid namespace kills every process in it; the sandbox's
#   mounts exist only in its own mount namespace, which dies with the last
#   process in it.
#
# internal: kill.sh --watch STATE_DIR [OWNER_PID]
#   started by boot.sh (setsid, in the background): waits until the sandbox's
#   systemd is gone (killing it first if OWNER_PID exits), then cleans up.
set -uo pipefail

say() { echo "sandbox: $*" >&2; }

# alive PID STARTTIME: process exists, is not a zombie, and is the same process
alive() {
    local st
    st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    st=${st##*) }              # strip "pid (comm) "
    set -- "$2" $st            # $2=state ... $20=starttime (field 22 of stat)
    [ "$2" != Z ] && [ "${21}" = "$1" ]
}

load_info() { # STATE_DIR
    local f=$1/info
    [ -f "$f" ] || return 1
    PID= PID_START= UPID= UPID_START= NSID= CG= STATE= LOG=
    # shellcheck disable=SC1090
    . "$f"
    [ -n "$PID" ] && [ -n "$STATE" ]
}

wait_gone() { # seconds
    local i
    for i in $(seq $(($1 * 20))); do
        if ! alive "$PID" "$PID_START" && ! alive "$UPID" "$UPID_START"; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}

cleanup() {
    local i
    if [ -n "$CG" ] && [ -d "$CG" ]; then
        for i in $(seq 100); do
            find "$CG" -depth -type d -exec rmdir {} + 2>/dev/null
            [ -d "$CG" ] || break
            sleep 0.05
        done
        [ ! -d "$CG" ] || say "warning: could not remove cgroup $CG"
    fi
    if [ "${RELCTL_SANDBOX_KEEP:-0}" != 1 ] && [ ! -e "$STATE/keep" ] && [ -d "$STATE" ]; then
        # mnt is only ever mounted inside the sandbox's mount namespace; rmdir
        # (not rm -r) so that we would notice if that were ever not the case.
        rm -f "$STATE/info" "$STATE/console.log"
        rmdir "$STATE/mnt" "$STATE" 2>/dev/null
    fi
}

# The whole script is one function, so bash has parsed all of it before running
# any of it (editing the file under a running instance is then harmless).
main() {
if [ "${1:-}" = --watch ]; then
    load_info "$2" || exit 1
    OWNER=${3:-}
    while alive "$PID" "$PID_START"; do
        if [ -n "$OWNER" ] && ! kill -0 "$OWNER" 2>/dev/null; then
            kill -KILL "$PID" 2>/dev/null
        fi
        sleep 0.5
    done
    wait_gone 30
    cleanup
    exit 0
fi

[ $# = 1 ] || { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
ARG=$1
case $ARG in ''|*[!0-9]*) say "kill.sh: not a pid: $ARG"; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { say "must run as root"; exit 1; }

# Which sandbox is it?  Its cgroup (host view) is .../relctl-sandbox.XXXXXX/...
if [ ! -e "/proc/$ARG" ]; then
    exit 0  # already gone; the watcher cleans up
fi
NAME=$(sed -n 's/^0::.*\/\(relctl-sandbox\.[A-Za-z0-9]\{6\}\)\(\/.*\)\{0,1\}$/\1/p' "/proc/$ARG/cgroup" 2>/dev/null)
if [ -z "$NAME" ] || ! load_info "/tmp/$NAME" || [ "$PID" != "$ARG" ]; then
    [ -e "/proc/$ARG" ] || exit 0
    say "kill.sh: pid $ARG is not the systemd of a relctl sandbox; not killing it"
    exit 1
fi
if [ "$(readlink "/proc/$PID/ns/pid" 2>/dev/null)" != "$NSID" ] && alive "$PID" "$PID_START"; then
    say "kill.sh: pid $PID is not in the sandbox's pid namespace; not killing it"
    exit 1
fi

kill -KILL "$PID" 2>/dev/null
if ! wait_gone 20; then
    say "kill.sh: sandbox $PID (unshare $UPID) still alive 20s after SIGKILL"
    exit 1
fi
cleanup
exit 0
}

main "$@"
exit
