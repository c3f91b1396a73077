#!/bin/bash
# Stage 2 of the relctl test sandbox.  NOT meant to be run by hand: boot.sh
# starts it as PID 1 of fresh pid/mount/uts/ipc/cgroup namespaces
#
#     unshare --pid --fork --mount --uts --ipc --cgroup -- init.sh
#
# It builds a throw-away root filesystem and finally execs systemd in it:
#
#   <state>/mnt              tmpfs, exists only in this mount namespace
#   <state>/mnt/upper,work   overlay upper/work dirs (on that tmpfs), or with
#                            boot.sh --disk DIR: DIR/upper, DIR/work on the host
#   <state>/mnt/root         overlay lowerdir=/  -> the sandbox's "/"
#       /proc                fresh procfs of the new pid namespace, /proc/sys read-only
#       /sys                 host sysfs, read-only, with a fresh cgroup2 on /sys/fs/cgroup
#       /dev                 small tmpfs: null zero full random urandom tty, own devpts,
#                            shm, mqueue; /dev/console is a pty drained into the log
#       /run, /tmp           fresh tmpfs
#       <each --bind DIR>    bind mount of the host DIR at the same path
#
# Everything systemd writes lands in the tmpfs (or in the explicitly bound
# directories) and disappears with the mount namespace when PID 1 dies; with a
# disk it lands in DIR/upper instead and outlives the sandbox, for the next
# boot over the same disk (the sandbox itself does not see DIR: an empty
# tmpfs hides it).
#
# SAFETY: systemd-tmpfiles empties /tmp (and more) at boot.  This script must
# never exec systemd unless "/" is the overlay and /tmp, /run are private
# tmpfs mounts; verify_or_die below checks that right before the exec.
#
# Inputs (environment, set by boot.sh):
#   SBX_STATE   state directory on the host (holds the empty mount point "mnt")
#   SBX_LOG     log file (opened for appending; systemd's console goes there)
#   SBX_BINDS   newline separated list of absolute host directories to bind
#   SBX_TARGET  name of the unit systemd boots into
#   SBX_NET     "1" when the sandbox has a network namespace of its own
#   SBX_DISK    empty, or the host directory holding the overlay's upper/ and
#               work/ (boot.sh checked it is a sandbox disk, never "/")
#   SBX_UNIT    empty, or a unit SBX_TARGET wants too (multi-user.target: a
#               boot as a machine's); then the services the host enables into
#               multi-user.target are masked, but those in SBX_KEEP
#   SBX_KEEP    newline separated host-enabled units not to mask
#   SBX_DRY_RUN if "1": do everything except exec systemd, print the mount
#               table instead (used to test the mount steps)
set -euo pipefail

fail() {
    echo "sandbox-init: $*" >&2
    exit 1
}

# The whole script is one function, so bash has parsed all of it before running
# any of it (editing the file under a running instance is then harmless).
main() {

[ "$$" = 1 ] || fail "must run as PID 1 of a new pid namespace (got pid $$)"
: "${SBX_STATE:?}" "${SBX_LOG:?}" "${SBX_TARGET:?}"
SBX_BINDS=${SBX_BINDS:-}
SBX_DISK=${SBX_DISK:-}
SBX_UNIT=${SBX_UNIT:-}
SBX_KEEP=${SBX_KEEP:-}
SYSTEMD=/lib/systemd/systemd
[ -x "$SYSTEMD" ] || SYSTEMD=/usr/lib/systemd/systemd
[ -x "$SYSTEMD" ] || fail "systemd binary not found"

# Our own log fd; survives pivot_root.
exec 5>>"$SBX_LOG"

# 1. No mount event may propagate back to the host (unshare already does this;
#    be explicit, it is the foundation of everything below).
mount --make-rprivate / || fail "mount --make-rprivate / failed"

# 2. tmpfs + overlay with lowerdir=/ (upper and work on that tmpfs, or on the
#    disk).
M=$SBX_STATE/mnt
[ -d "$M" ] || fail "mount point $M missing"
mount -t tmpfs -o mode=0755,size=50% relctl-sandbox "$M" || fail "tmpfs on $M failed"
mkdir "$M/root"
if [ -n "$SBX_DISK" ]; then
    case $SBX_DISK in /?*) ;; *) fail "disk path not absolute: $SBX_DISK" ;; esac
    [ -e "$SBX_DISK/relctl-sandbox-disk" ] && [ -d "$SBX_DISK/upper" ] && [ -d "$SBX_DISK/work" ] \
        || fail "$SBX_DISK is not a sandbox disk (marker, upper/, work/)"
    UPPER=$SBX_DISK/upper WORK=$SBX_DISK/work
else
    mkdir "$M/upper" "$M/work"
    UPPER=$M/upper WORK=$M/work
fi
mount -t overlay relctl-sandbox-root \
    -o "lowerdir=/,upperdir=$UPPER,workdir=$WORK" "$M/root" \
    || fail "overlay mount failed (lowerdir=/, upper $UPPER)"
R=$M/root

# 3. API file systems.
# /proc: a fresh instance for the new pid namespace.  Kernel tunables are not
# namespaced, so make /proc/sys and /proc/sysrq-trigger read-only.
mount -t proc -o nosuid,nodev,noexec proc "$R/proc" || fail "mounting /proc failed"
for p in sys sysrq-trigger; do
    [ -e "$R/proc/$p" ] || continue
    mount --bind "$R/proc/$p" "$R/proc/$p" || fail "bind of /proc/$p failed"
    mount -o remount,bind,ro "$R/proc/$p" || fail "read-only /proc/$p failed"
done

# /sys: the host's, read-only (no sysfs writes to the host's kernel objects),
# minus the host's cgroup mounts, plus a cgroup2 rooted at our cgroup namespace
# (boot.sh put us into a dedicated cgroup before unshare --cgroup).
mount --rbind /sys "$R/sys" || fail "bind of /sys failed"
if mountpoint -q "$R/sys/fs/cgroup"; then
    umount -R "$R/sys/fs/cgroup" || fail "could not unmount the host cgroup mounts in the sandbox"
fi
findmnt -Rrn -o TARGET "$R/sys" | while read -r t; do
    mount -o remount,bind,ro "$t" || fail "read-only remount of $t failed"
done
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$R/sys/fs/cgroup" \
    || fail "mounting cgroup2 on /sys/fs/cgroup failed"

# /dev: a minimal private one.  The host's /dev is deliberately not bound:
# it would give systemd the host's console (/dev/console -> serial port) and
# /dev/kmsg, plus every block device.
mount -t tmpfs -o mode=0755,nosuid,size=4m relctl-sandbox-dev "$R/dev" || fail "tmpfs on /dev failed"
for n in null zero full random urandom tty; do
    : >"$R/dev/$n"
    mount --bind "/dev/$n" "$R/dev/$n" || fail "bind of /dev/$n failed"
done
mkdir -m 0755 "$R/dev/pts" "$R/dev/mqueue" "$R/dev/net"
mkdir -m 1777 "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts "$R/dev/pts" \
    || fail "devpts mount failed"
ln -s pts/ptmx "$R/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$R/dev/shm" || fail "tmpfs on /dev/shm failed"
mount -t mqueue -o nosuid,nodev,noexec mqueue "$R/dev/mqueue" || fail "mqueue mount failed"
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"
ln -s /proc/self/fd/2 "$R/dev/stderr"
# /dev/console: placeholder; step 8 binds a pty of the sandbox's own devpts
# over it (systemd only writes its console output to a real tty).
: >"$R/dev/console"
chmod 0600 "$R/dev/console"

# /run and /tmp: fresh tmpfs.  /tmp MUST be private (systemd-tmpfiles-setup
# empties it); the overlay would already absorb that, but belt and braces.
mount -t tmpfs -o mode=0755,nosuid,nodev,size=20% relctl-sandbox-run "$R/run" || fail "tmpfs on /run failed"
mount -t tmpfs -o mode=1777,nosuid,nodev,size=50% relctl-sandbox-tmp "$R/tmp" || fail "tmpfs on /tmp failed"

# 4. Shared host directories, bound at the same path.  Sources are resolved
# here, before pivot_root, i.e. against the host's view (the tmpfs above sits
# on $R/tmp, not on /tmp, so host dirs below /tmp are still reachable).
# Parents before children so nested binds layer correctly.
BOUND=()
if [ -n "$SBX_BINDS" ]; then
    while IFS= read -r d; do
        [ -n "$d" ] || continue
        case $d in
            /*) ;;
            *) fail "bind path not absolute: $d" ;;
        esac
        [ "$d" != / ] || fail "refusing to bind /"
        [ -d "$d" ] || fail "bind source is not a directory: $d"
        mkdir -p "$R$d" || fail "cannot create bind target $d in the sandbox"
        mount --bind "$d" "$R$d" || fail "bind of $d failed"
        BOUND+=("$d")
    done < <(printf '%s\n' "$SBX_BINDS" | awk 'NF { print length($0) "\t" $0 }' | sort -n -s | cut -f2-)
fi

# The disk is not the sandbox's to see (through the overlay's lower layer, or a
# bind of a directory above it): writing there would change the overlay's
# upper layer behind its back.
if [ -n "$SBX_DISK" ]; then
    mkdir -p "$R$SBX_DISK" || fail "cannot create the disk's mount point in the sandbox"
    mount -t tmpfs -o ro,mode=0755,size=4k relctl-sandbox-disk-hidden "$R$SBX_DISK" \
        || fail "hiding the disk $SBX_DISK from the sandbox failed"
fi

# 5. Configuration inside the overlay / the sandbox's /run (never the host's).
# No fstab: nothing to mount, nothing to remount.
: >"$R/etc/fstab"

# Never let tmpfiles "D /tmp" recurse through /tmp (there may be bind mounts
# below it); /tmp is a fresh tmpfs anyway.
mkdir -p "$R/run/tmpfiles.d"
echo 'd /tmp 1777 root root -' >"$R/run/tmpfiles.d/tmp.conf"

U=$R/run/systemd/system
mkdir -p "$U"
MASK=(
    # kernel / hardware / host-global state
    systemd-sysctl.service systemd-modules-load.service kmod-static-nodes.service
    systemd-binfmt.service proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount
    systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket
    systemd-udev-trigger.service systemd-udev-settle.service systemd-hwdb-update.service
    systemd-random-seed.service systemd-pstore.service systemd-timesyncd.service
    systemd-networkd.service systemd-networkd.socket systemd-networkd-wait-online.service
    systemd-resolved.service systemd-logind.service
    systemd-remount-fs.service systemd-fsck-root.service systemd-fsck@.service
    systemd-firstboot.service systemd-machine-id-commit.service systemd-repart.service
    systemd-pcrphase.service systemd-pcrphase-sysinit.service systemd-boot-update.service
    systemd-journald-audit.socket
    dev-hugepages.mount dev-mqueue.mount sys-fs-fuse-connections.mount
    sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount
    tmp.mount swap.target
    # terminals
    getty@.service serial-getty@.service console-getty.service container-getty@.service
    getty.target getty-static.service
    # periodic host maintenance that would touch host block devices etc.
    e2scrub_all.service e2scrub_reap.service fstrim.service
    # slow or pointless here
    ldconfig.service systemd-journal-catalog-update.service systemd-update-done.service
)
# Every timer the host (or the distro) enables: apt-daily, fstrim, e2scrub,
# man-db, tmpfiles-clean, ...  Units a test installs itself are not affected.
for w in /etc/systemd/system/timers.target.wants /lib/systemd/system/timers.target.wants \
    /usr/lib/systemd/system/timers.target.wants; do
    [ -d "$w" ] || continue
    for t in "$w"/*.timer; do
        [ -e "$t" ] || [ -L "$t" ] || continue
        MASK+=("$(basename "$t")")
    done
done
# Booting a unit that starts what is enabled (multi-user.target): the services
# the host enables there are the host's (sshd on the shared network, a
# database, ...), not the sandbox's, but those the caller keeps (--keep).  Read
# from the host's /etc (not yet pivoted): what a test enabled on its disk stays.
if [ -n "${SBX_UNIT:-}" ]; then
    for t in /etc/systemd/system/multi-user.target.wants/*.service; do
        [ -e "$t" ] || [ -L "$t" ] || continue
        u=$(basename "$t")
        printf '%s\n' "$SBX_KEEP" | grep -qxF -- "$u" && continue
        MASK+=("$u")
    done
fi
for u in "${MASK[@]}"; do
    ln -sfn /dev/null "$U/$u"
done

cat >"$U/$SBX_TARGET" <<EOF
[Unit]
Description=relctl test sandbox
Requires=basic.target dbus.socket
Wants=dbus.service${SBX_UNIT:+ $SBX_UNIT}
After=basic.target dbus.socket dbus.service${SBX_UNIT:+ $SBX_UNIT}
AllowIsolate=yes
EOF

# 6. Switch root.
cd "$R"
pivot_root . . || fail "pivot_root failed"
umount -l . || fail "detaching the old root failed"
cd /

# A network namespace of its own (boot.sh --net) starts with "lo" down.
if [ "${SBX_NET:-}" = 1 ]; then
    ip link set lo up || fail "bringing up lo in the sandbox's network namespace failed"
fi

# 7. Last line of defence, right before systemd gets to run its tmpfiles.
fstype() { stat -f -c %T "$1"; }
verify_or_die() {
    [ "$(fstype /)" = overlayfs ] || fail "ABORT: / is $(fstype /), not the overlay"
    [ "$(fstype /tmp)" = tmpfs ] || fail "ABORT: /tmp is $(fstype /tmp), not a private tmpfs"
    [ "$(fstype /run)" = tmpfs ] || fail "ABORT: /run is $(fstype /run), not a private tmpfs"
    [ "$(fstype /sys/fs/cgroup)" = cgroup2fs ] || fail "ABORT: /sys/fs/cgroup is not cgroup2"
    [ "$(fstype /proc)" = proc ] || fail "ABORT: /proc is not procfs"
    local u
    for u in "${MASK[@]}"; do
        [ "$(readlink "/run/systemd/system/$u")" = /dev/null ] || fail "ABORT: unit mask of $u missing"
    done
    if [ -n "$SBX_DISK" ]; then
        grep -q " / / .* - overlay relctl-sandbox-root .*upperdir=$SBX_DISK/upper" /proc/self/mountinfo \
            || fail "ABORT: / is not the overlay with its upper layer on the disk $SBX_DISK"
        [ "$(fstype "$SBX_DISK")" = tmpfs ] || fail "ABORT: the disk $SBX_DISK is not hidden from the sandbox"
    fi
    # the host's root must be gone (pivot_root + detach worked)
    ! grep -q " $M " /proc/self/mountinfo || fail "ABORT: old root still attached"
    local d
    for d in "${BOUND[@]}"; do
        mountpoint -q "$d" || fail "ABORT: $d is not a bind mount"
    done
}
verify_or_die

if [ "${SBX_DRY_RUN:-0}" = 1 ]; then
    echo "sandbox-init: DRY RUN, not starting systemd"
    findmnt -o TARGET,SOURCE,FSTYPE,OPTIONS
    for p in / /tmp /var/tmp /run /dev /sys /sys/fs/cgroup /proc /proc/sys "${BOUND[@]}"; do
        echo "fs $p: $(fstype "$p")"
    done
    echo "cgroup: $(cat /proc/self/cgroup)"
    echo "tmp: $(ls -A /tmp | head -5 | tr '\n' ' ')"
    exit 0
fi

# 8. Console: script(1) allocates a pty from the sandbox's devpts (the first
# one of a fresh instance is /dev/pts/0), keeps it open with a sleep and
# appends everything written to it to the log; bind it over /dev/console.
# script and its sleep become children of PID 1 and die with the sandbox.
# /dev/pts/0 appears before script(1) unlocks it (unlockpt), and opening a
# locked pty answers EIO: wait until it opens.
if command -v script >/dev/null 2>&1; then
    script -q -f -a -E never -c 'stty cols 200 -onlcr 2>/dev/null; exec sleep infinity' /proc/self/fd/5 \
        </dev/null >/dev/null 2>&1 &
    for _ in $(seq 100); do
        { : >/dev/pts/0; } 2>/dev/null && break
        sleep 0.02
    done
fi
if [ -e /dev/pts/0 ] && mount --bind /dev/pts/0 /dev/console; then
    exec </dev/null >/dev/console 2>&1
else
    echo "sandbox-init: warning: no console pty (script(1) missing?); systemd's console output is lost" >&5
    exec </dev/null >/dev/null 2>&1
fi
exec 5>&-
exec env -i container=relctl-sandbox \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    "$SYSTEMD" --system --unit="$SBX_TARGET" --show-status=yes --log-color=no
}

main "$@"
exit
