#!/bin/bash
# Boot a throw-away systemd (PID 1 of its own pid/mount/uts/ipc/cgroup
# namespaces) for relctl's end-to-end tests.
#
# usage: boot.sh [--bind DIR]... [--net] [--disk DIR] [--unit UNIT [--keep UNIT]...]
#                [--log FILE] [--timeout SECS] [--watch PID]
#
#   --bind DIR     make host directory DIR visible (read-write) at the same
#                  path inside the sandbox.  Everything else the sandbox writes
#                  goes to a tmpfs-backed overlay and never reaches the host.
#   --net          give the sandbox a network namespace of its own (only "lo",
#                  up); a test joins it to others with a veth pair (see
#                  tests/e2e/common/lab.rs).  Without it the network is the host's.
#   --disk DIR     a disk that outlives the sandbox: the overlay's upper and work
#                  dirs live in host directory DIR (DIR/upper, DIR/work; made on
#                  first use, with a marker file) instead of a tmpfs, so a later
#                  boot.sh --disk DIR boots over what this one wrote, as a
#                  machine reboots over its disk.  /tmp, /run and /dev are
#                  fresh per boot all the same.  DIR must be empty or such a
#                  disk, and not "/".  Nothing removes it: the caller does.
#   --unit UNIT    a unit the boot starts too (systemd boots relctl-sandbox.target,
#                  which is basic.target and D-Bus, and then wants UNIT); e.g.
#                  multi-user.target starts what is enabled, as a real boot
#                  does.  With it, the
#                  services the host itself enables into multi-user.target
#                  (/etc/systemd/system/multi-user.target.wants: sshd, a
#                  database, ...) are masked too, but those named by --keep.
#   --keep UNIT    with --unit: leave this host-enabled unit enabled (e.g.
#                  nginx.service, which the tests configure on the disk)
#   --log FILE     where systemd's console output (and this script's setup
#                  messages) go; default: <state dir>/console.log
#   --timeout SECS how long to wait for systemd to come up (default 30)
#   --watch PID    kill the sandbox as soon as process PID is gone (the Rust
#                  helper passes the test binary's pid, so a crashed or
#                  interrupted test run cannot leave a sandbox behind)
#
# On success prints the host PID of the sandboxed systemd as the only line on
# stdout and exits 0.  Run commands inside with
#     nsenter -t PID -a CMD...
# and stop it with
#     tests/sandbox/kill.sh PID          (or kill -KILL PID; SIGTERM makes
#                                         systemd re-execute, not exit)
# Killing PID 1 tears down the whole pid namespace; every mount lives only in
# the sandbox's mount namespace, so nothing is left mounted on the host.  A
# watcher process started here removes the sandbox's cgroup and state dir
# once systemd is gone.
#
# On failure prints one "sandbox: ..." line to stderr, kills whatever it
# started and exits non-zero.
#
# Environment: RELCTL_SANDBOX_KEEP=1 keeps the state dir (and log) after the
# sandbox is gone.  See tests/sandbox/README.md.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TARGET=relctl-sandbox.target
TIMEOUT=30
LOG=
WATCH=
NET=
DISK=
UNIT=
KEEP=()
BINDS=()

STATE=
CG=
UPID=
PID=

say() { echo "sandbox: $*" >&2; }

cleanup_failed_boot() {
    # Kill what we started, remove the cgroup; keep the state dir (log).
    if [ -n "$PID" ]; then kill -KILL "$PID" 2>/dev/null; fi
    if [ -n "$UPID" ]; then
        kill -KILL "$UPID" 2>/dev/null
        for _ in $(seq 100); do
            [ -d "/proc/$UPID" ] && [ "$(awk '{print $3}' "/proc/$UPID/stat" 2>/dev/null)" != Z ] || break
            sleep 0.05
        done
    fi
    if [ -n "$CG" ] && [ -d "$CG" ]; then
        for _ in $(seq 50); do
            find "$CG" -depth -type d -exec rmdir {} + 2>/dev/null
            [ -d "$CG" ] || break
            sleep 0.1
        done
    fi
}

die() {
    local msg=$*
    # keep the log for post-mortem; tell the watcher (if any) not to delete it
    if [ -n "$STATE" ] && [ -d "$STATE" ]; then : >"$STATE/keep"; fi
    cleanup_failed_boot
    if [ -n "$STATE" ] && [ -d "$STATE" ]; then
        msg="$msg (log: $LOG)"
    fi
    say "$msg"
    exit 1
}

usage() {
    sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

# The whole script is one function, so bash has parsed all of it before running
# any of it (editing the file under a running instance is then harmless).
main() {
while [ $# -gt 0 ]; do
    case $1 in
        --bind) [ $# -ge 2 ] || usage; BINDS+=("$2"); shift 2 ;;
        --bind=*) BINDS+=("${1#--bind=}"); shift ;;
        --net) NET=--net; shift ;;
        --disk) [ $# -ge 2 ] || usage; DISK=$2; shift 2 ;;
        --disk=*) DISK=${1#--disk=}; shift ;;
        --unit) [ $# -ge 2 ] || usage; UNIT=$2; shift 2 ;;
        --unit=*) UNIT=${1#--unit=}; shift ;;
        --keep) [ $# -ge 2 ] || usage; KEEP+=("$2"); shift 2 ;;
        --keep=*) KEEP+=("${1#--keep=}"); shift ;;
        --log) [ $# -ge 2 ] || usage; LOG=$2; shift 2 ;;
        --log=*) LOG=${1#--log=}; shift ;;
        --timeout) [ $# -ge 2 ] || usage; TIMEOUT=$2; shift 2 ;;
        --timeout=*) TIMEOUT=${1#--timeout=}; shift ;;
        --watch) [ $# -ge 2 ] || usage; WATCH=$2; shift 2 ;;
        --watch=*) WATCH=${1#--watch=}; shift ;;
        -h|--help) usage ;;
        *) say "unknown argument: $1"; usage ;;
    esac
done

# ---- preflight --------------------------------------------------------------
[ "$(id -u)" = 0 ] || die "must run as root (uid is $(id -u)); the sandbox needs real root for mount/pid namespaces"
case $TIMEOUT in ''|*[!0-9]*) die "--timeout must be a number of seconds, got '$TIMEOUT'" ;; esac
case $WATCH in *[!0-9]*) die "--watch must be a pid, got '$WATCH'" ;; esac
for tool in unshare nsenter pivot_root mount umount findmnt mountpoint stat timeout setsid awk realpath systemctl; do
    command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' not found in PATH"
done
SYSTEMD=/lib/systemd/systemd
[ -x "$SYSTEMD" ] || SYSTEMD=/usr/lib/systemd/systemd
[ -x "$SYSTEMD" ] || die "systemd is not installed (no /lib/systemd/systemd)"
if ! grep -qw overlay /proc/filesystems; then
    modprobe overlay >/dev/null 2>&1
    grep -qw overlay /proc/filesystems || die "kernel has no overlay filesystem support"
fi

# Bind dirs: canonical, absolute, existing directories, never "/".
RBINDS=()
for d in "${BINDS[@]}"; do
    case $d in *$'\n'*) die "--bind path contains a newline" ;; esac
    r=$(realpath -e -- "$d" 2>/dev/null) || die "--bind $d: no such directory"
    [ -d "$r" ] || die "--bind $d: not a directory"
    [ "$r" != / ] || die "--bind /: refusing to share the host root read-write"
    RBINDS+=("$r")
done

# A unit name: letters, digits and :-_.@ only (it ends up in a unit file and a
# symlink name), with a unit type's suffix.
valid_unit() {
    case $1 in
        ''|*[!A-Za-z0-9:_.@-]*|.*|*/*) return 1 ;;
        *.target|*.service|*.socket|*.timer|*.path|*.mount) return 0 ;;
        *) return 1 ;;
    esac
}
if [ -n "$UNIT" ]; then
    valid_unit "$UNIT" || die "--unit $UNIT: not a unit name (e.g. multi-user.target)"
fi
for k in "${KEEP[@]}"; do
    [ -n "$UNIT" ] || die "--keep $k: only with --unit (the default boot starts nothing the host enables)"
    valid_unit "$k" || die "--keep $k: not a unit name (e.g. nginx.service)"
done

# The disk: a host directory, never "/", empty (first use) or one this script made.
if [ -n "$DISK" ]; then
    case $DISK in *$'\n'*) die "--disk path contains a newline" ;; esac
    r=$(realpath -e -- "$DISK" 2>/dev/null) || die "--disk $DISK: no such directory"
    [ -d "$r" ] || die "--disk $DISK: not a directory"
    [ "$r" != / ] || die "--disk /: refusing to write the sandbox's disk into the host root"
    for b in "${RBINDS[@]}"; do
        [ "$r" != "$b" ] || die "--disk $DISK is also --bind: the sandbox would see its own disk"
    done
    if [ -e "$r/relctl-sandbox-disk" ]; then
        [ -d "$r/upper" ] && [ -d "$r/work" ] || die "--disk $DISK: a sandbox disk without upper/ and work/"
    elif [ -z "$(ls -A -- "$r")" ]; then
        mkdir -m 0755 "$r/upper" "$r/work" || die "--disk $DISK: cannot create upper/ and work/"
        echo "a relctl test sandbox's disk (tests/sandbox/boot.sh --disk): the overlay's upper and work dirs" \
            >"$r/relctl-sandbox-disk" || die "--disk $DISK: cannot write its marker"
    else
        die "--disk $DISK: neither empty nor a sandbox disk (no relctl-sandbox-disk marker); refusing to use it"
    fi
    DISK=$r
fi

# The sandbox gets its own cgroup (child of ours in the host's cgroup2
# hierarchy) before unshare --cgroup, so its systemd sees that as "/" and two
# sandboxes never collide.
CG2ROOT=$(findmnt -rn -t cgroup2 -o TARGET | head -n1)
[ -n "$CG2ROOT" ] || die "no cgroup2 hierarchy is mounted on the host (tried findmnt -t cgroup2); mount one, e.g. 'mount -t cgroup2 none /sys/fs/cgroup/unified'"
OWNCG=$(sed -n 's/^0:://p' /proc/self/cgroup)
OWNCG=${OWNCG%/}
[ -d "$CG2ROOT$OWNCG" ] || die "cannot find own cgroup $OWNCG below $CG2ROOT"

# ---- start ------------------------------------------------------------------
if [ -n "$LOG" ]; then LOG=$(realpath -m -- "$LOG"); fi
STATE=$(mktemp -d /tmp/relctl-sandbox.XXXXXX) || die "mktemp failed"
NAME=${STATE##*/}
mkdir "$STATE/mnt" || die "cannot create $STATE/mnt"
[ -n "$LOG" ] || LOG=$STATE/console.log
: >>"$LOG" || die "cannot write log file $LOG"
CG=$CG2ROOT$OWNCG/$NAME
mkdir "$CG" || die "cannot create cgroup $CG"

printf -v BINDLIST '%s\n' "${RBINDS[@]}"
[ ${#RBINDS[@]} -gt 0 ] || BINDLIST=
printf -v KEEPLIST '%s\n' "${KEEP[@]}"
[ ${#KEEP[@]} -gt 0 ] || KEEPLIST=
(
    echo "$BASHPID" >"$CG/cgroup.procs" || { echo "sandbox-init: cannot join cgroup $CG"; exit 97; }
    exec env SBX_STATE="$STATE" SBX_LOG="$LOG" SBX_TARGET="$TARGET" SBX_BINDS="$BINDLIST" SBX_NET="${NET:+1}" \
        SBX_DISK="$DISK" SBX_UNIT="$UNIT" SBX_KEEP="$KEEPLIST" \
        unshare --pid --fork --mount --uts --ipc --cgroup $NET --propagation private --kill-child \
        -- "$HERE/init.sh"
) </dev/null >>"$LOG" 2>&1 &
UPID=$!
disown "$UPID"  # no "Killed ..." job report from bash if we have to kill it

# Reason for an early death, from the log.
why() {
    local l
    l=$(grep -E '^(sandbox-init|unshare|mount|umount|pivot_root):' "$LOG" | tail -n1)
    [ -n "$l" ] || l=$(grep -v '^[[:space:]]*$' "$LOG" | tail -n1)
    case $l in
        unshare:*) echo "unshare failed: ${l#unshare: }" ;;
        sandbox-init:*) echo "setup failed: ${l#sandbox-init: }" ;;
        "") echo "setup failed (no output)" ;;
        *) echo "setup failed: $l" ;;
    esac
}
proc_alive() { # pid -> running and not a zombie
    local s
    s=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$s" ] && [ "$s" != Z ]
}

# Wait for the namespace's PID 1 (unshare's child) to become systemd.
for _ in $(seq 200); do
    proc_alive "$UPID" || die "$(why)"
    if [ -z "$PID" ]; then
        PID=$(awk '{print $1}' "/proc/$UPID/task/$UPID/children" 2>/dev/null)
    fi
    if [ -n "$PID" ] && [ "$(cat "/proc/$PID/comm" 2>/dev/null)" = systemd ]; then
        break
    fi
    sleep 0.05
done
[ -n "$PID" ] && proc_alive "$PID" || die "$(why)"
[ "$(cat "/proc/$PID/comm" 2>/dev/null)" = systemd ] \
    || die "setup did not exec systemd within 10s: $(why)"

# unshare itself does not belong into the sandbox's cgroup tree.
echo "$UPID" >"$CG2ROOT$OWNCG/cgroup.procs" 2>/dev/null

NSID=$(readlink "/proc/$PID/ns/pid")
cat >"$STATE/info" <<EOF
PID=$PID
PID_START=$(awk '{print $22}' "/proc/$PID/stat")
UPID=$UPID
UPID_START=$(awk '{print $22}' "/proc/$UPID/stat")
NSID='$NSID'
CG='$CG'
STATE='$STATE'
LOG='$LOG'
EOF

# From here on the watcher owns cleanup (cgroup, state dir) once systemd dies.
setsid "$HERE/kill.sh" --watch "$STATE" ${WATCH:+"$WATCH"} </dev/null >/dev/null 2>&1 &

# ---- wait for systemd --------------------------------------------------------
in_sbx() {
    nsenter -t "$PID" -a env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        SYSTEMD_COLORS=0 SYSTEMD_PAGER= LANG=C.UTF-8 "$@"
}
deadline=$((SECONDS + TIMEOUT))
state=
while :; do
    proc_alive "$PID" || die "systemd died during boot: $(why)"
    left=$((deadline - SECONDS))
    [ "$left" -gt 0 ] || break
    state=$(timeout "$left" nsenter -t "$PID" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        systemctl is-system-running --wait 2>/dev/null)
    state=${state##*$'\n'}
    case $state in
        running|degraded) break ;;
        maintenance|stopping) break ;;
    esac
    sleep 0.1
done

failed_units() {
    in_sbx systemctl list-units --failed --plain --no-legend --no-pager 2>/dev/null \
        | awk '{printf "%s%s", sep, $1; sep=" "}'
}
case $state in
    running|degraded) ;;
    *) # timed out inside --wait: ask for the current state
        state=$(in_sbx systemctl is-system-running 2>/dev/null)
        state=${state##*$'\n'} ;;
esac
case $state in
    running) ;;
    degraded) say "warning: sandbox $PID is degraded; failed units: $(failed_units)" ;;
    *)
        f=$(failed_units)
        jobs=$(in_sbx systemctl list-jobs --plain --no-legend --no-pager 2>/dev/null | awk '{printf "%s%s", sep, $2; sep=" "}')
        die "systemd did not reach running within ${TIMEOUT}s: ${state:-no answer}; failed units: ${f:-none}; pending jobs: ${jobs:-none}"
        ;;
esac

echo "$PID"
exit 0
}

main "$@"
exit
