//! Smoke test of the test sandbox itself (tests/sandbox/, tests/e2e/common/sandbox.rs): a real
//! systemd boots and answers on D-Bus, writes stay inside, bound directories are shared, the
//! host's /tmp survives, hardened and socket units start, two sandboxes coexist, and nothing is
//! left behind after the kill. Needs root; fails (never skips) without it.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use crate::common::sandbox::Sandbox;
use crate::common::scratch::scratch_dir;
use crate::common::{show, stdout};

/// The host's mount table (mount point, fs type, source), to check nothing leaks out. Leaves out
/// the network namespaces that the lab of other tests running at the same time mounts and
/// unmounts (`/run/netns/relctl-lab-*`, see `common::lab`).
fn host_mounts() -> BTreeSet<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-").unwrap_or(f.len());
            format!("{} {}", f[4], f[sep + 1..].join(" "))
        })
        .filter(|m| !m.starts_with("/run/netns/relctl-lab-"))
        .collect()
}

/// Host pids of all processes in the given pid namespace.
fn pidns_members(ns: &Path) -> Vec<u32> {
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if fs::read_link(e.path().join("ns/pid")).ok().as_deref() == Some(ns) {
            v.push(pid);
        }
    }
    v
}

#[test]
fn sandbox_smoke() {
    // Host state before.
    // Removed when the test ends, whether it passes or not.
    let marker_file = tempfile::Builder::new().prefix("relctl-sandbox-smoke-marker-").tempfile_in("/tmp").unwrap();
    let marker = marker_file.path().to_path_buf();
    fs::write(&marker, "must survive the sandbox").unwrap();
    let probe = Path::new("/etc/relctl-sandbox-probe");
    assert!(!probe.exists(), "{} exists on the host before the test; remove it", probe.display());
    let mounts_before = host_mounts();
    let shared = scratch_dir("sbx-smoke");
    fs::write(shared.join("from-host"), "hello from the host").unwrap();

    let mut sb = Sandbox::boot(&[&shared]);
    let pidns = fs::read_link(format!("/proc/{}/ns/pid", sb.pid)).unwrap();

    // systemd is up.
    let state = stdout(&sb.run("systemctl", &["is-system-running"]));
    assert!(
        state == "running" || state == "degraded",
        "is-system-running: {state}; failed: {}",
        stdout(&sb.run("systemctl", &["--failed", "--no-legend"]))
    );
    assert_eq!(sb.sh_ok("cat /proc/1/comm"), "systemd");
    assert_eq!(sb.sh_ok("systemd-detect-virt --container"), "container-other");

    // D-Bus: the system bus is up and systemd answers on it.
    let ping = sb.run(
        "busctl",
        &["call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1", "org.freedesktop.DBus.Peer", "Ping"],
    );
    assert!(ping.status.success(), "busctl Ping: {}", show(&ping));
    let st = sb.run(
        "busctl",
        &[
            "get-property",
            "org.freedesktop.systemd1",
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
            "SystemState",
        ],
    );
    assert!(st.status.success(), "busctl get-property: {}", show(&st));
    assert!(stdout(&st).starts_with("s \""), "SystemState: {}", show(&st));

    // Writes outside the bound directories stay inside.
    assert_eq!(sb.sh_ok("echo inside > /etc/relctl-sandbox-probe && cat /etc/relctl-sandbox-probe"), "inside");
    assert!(!probe.exists(), "{} written inside the sandbox appeared on the host", probe.display());

    // The bound directory is shared, both ways.
    let s = shared.display();
    assert_eq!(sb.sh_ok(&format!("cat {s}/from-host")), "hello from the host");
    sb.sh_ok(&format!("echo hello from the sandbox > {s}/from-sandbox"));
    assert_eq!(fs::read_to_string(shared.join("from-sandbox")).unwrap().trim(), "hello from the sandbox");

    // The sandbox's /tmp is its own: the host's marker is not visible, and its files don't leak.
    let m = marker.display();
    assert_eq!(sb.sh_ok(&format!("test -e {m} && echo visible || echo hidden")), "hidden");
    assert_eq!(sb.sh_ok("stat -f -c %T /tmp"), "tmpfs");
    sb.sh_ok("echo x > /tmp/relctl-sandbox-inside");
    assert!(!Path::new("/tmp/relctl-sandbox-inside").exists());

    // A plain service.
    sb.sh_ok(
        "printf '[Service]\\nExecStart=/bin/sleep 1000\\n' > /etc/systemd/system/probe.service \
         && systemctl daemon-reload && systemctl start probe.service",
    );
    assert!(sb.is_active("probe.service"), "probe.service: {}", sb.journal("probe.service", 20));

    // A transient one.
    sb.sh_ok("systemd-run --unit=probe-transient /bin/sleep 1000");
    assert!(sb.is_active("probe-transient.service"), "{}", sb.journal("probe-transient.service", 20));

    // A hardened service: the namespacing/sandboxing directives must work inside.
    sb.sh_ok("echo outside > /tmp/outside-file");
    sb.sh_ok(r#"cat > /etc/systemd/system/probe-hardened.service <<'EOF'
[Service]
ExecStart=/bin/sh -c 'id -un > /var/lib/probe/whoami; (touch /etc/probe-x 2>/dev/null && echo rw || echo ro) > /var/lib/probe/etc; (test -e /tmp/outside-file && echo shared || echo private) > /var/lib/probe/tmp; stat -c %%a /home /root > /var/lib/probe/home; exec sleep 1000'
User=nobody
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
NoNewPrivileges=yes
SystemCallFilter=@system-service
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
CapabilityBoundingSet=
StateDirectory=probe
EOF
systemctl daemon-reload && systemctl start probe-hardened.service"#,
    );
    assert!(sb.is_active("probe-hardened.service"), "probe-hardened: {}", sb.journal("probe-hardened.service", 30));
    // The ExecStart script writes its findings before exec'ing sleep; wait for them.
    let found = sb.sh_ok(
        "for i in $(seq 100); do [ -s /var/lib/probe/home ] && break; sleep 0.05; done; \
         cat /var/lib/probe/whoami /var/lib/probe/etc /var/lib/probe/tmp /var/lib/probe/home",
    );
    assert_eq!(
        found.split_whitespace().collect::<Vec<_>>(),
        ["nobody", "ro", "private", "0", "0"],
        "hardened unit saw: {found}"
    );
    let status =
        sb.sh_ok("grep -E '^(NoNewPrivs|Seccomp|CapBnd):' /proc/$(systemctl show -P MainPID probe-hardened)/status");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("Seccomp:\t2"), "{status}");
    assert!(status.contains("CapBnd:\t0000000000000000"), "{status}");

    // A socket unit with group and mode, and socket activation.
    sb.sh_ok(
        r#"cat > /etc/systemd/system/probe-sock.socket <<'EOF'
[Socket]
ListenStream=/opt/probe/x.sock
SocketGroup=www-data
SocketMode=0660
EOF
printf '[Service]\nExecStart=/bin/sleep 1000\n' > /etc/systemd/system/probe-sock.service
systemctl daemon-reload && systemctl start probe-sock.socket"#,
    );
    assert!(sb.is_active("probe-sock.socket"), "probe-sock.socket: {}", sb.journal("probe-sock.socket", 20));
    assert_eq!(sb.sh_ok("stat -c '%U %G %a %F' /opt/probe/x.sock"), "root www-data 660 socket");
    sb.sh("curl -s --max-time 1 --unix-socket /opt/probe/x.sock http://x/ >/dev/null 2>&1; sleep 0.2");
    assert!(sb.is_active("probe-sock.service"), "socket activation: {}", sb.journal("probe-sock.service", 20));
    assert!(!Path::new("/opt/probe/x.sock").exists(), "/opt/probe/x.sock appeared on the host");

    // Kill: the namespace dies, nothing stays mounted, the host's /tmp is intact.
    sb.kill();
    let left = pidns_members(&pidns);
    assert!(left.is_empty(), "processes left in the sandbox's pid namespace: {left:?}");
    assert_eq!(host_mounts(), mounts_before, "host mount table changed");
    assert_eq!(fs::read_to_string(&marker).unwrap(), "must survive the sandbox");
    assert!(!probe.exists());
    assert_eq!(fs::read_to_string(shared.join("from-sandbox")).unwrap().trim(), "hello from the sandbox");

    marker_file.close().unwrap();
    fs::remove_dir_all(&shared).unwrap();
}

#[test]
fn two_sandboxes_in_parallel() {
    let dirs = [scratch_dir("sbx-par-a"), scratch_dir("sbx-par-b")];
    let handles: Vec<_> = dirs.iter().cloned().map(|d| std::thread::spawn(move || Sandbox::boot(&[&d]))).collect();
    let mut sbs: Vec<Sandbox> = handles.into_iter().map(|h| h.join().expect("boot panicked")).collect();
    assert_ne!(sbs[0].pid, sbs[1].pid);

    for (i, sb) in sbs.iter().enumerate() {
        sb.sh_ok(&format!("echo {i} > /etc/relctl-par-probe"));
        sb.sh_ok(
            "printf '[Service]\\nExecStart=/bin/sleep 1000\\n' > /etc/systemd/system/par.service \
             && systemctl daemon-reload && systemctl start par.service",
        );
    }
    for (i, sb) in sbs.iter().enumerate() {
        assert_eq!(sb.sh_ok("cat /etc/relctl-par-probe"), i.to_string(), "sandboxes share /etc");
        assert!(sb.is_active("par.service"), "{}", sb.journal("par.service", 20));
        // each has its own cgroup tree and only its own services
        assert_eq!(
            sb.sh_ok("systemctl show -P MainPID par.service | xargs -I{} cat /proc/{}/cgroup | grep ^0::"),
            "0::/system.slice/par.service"
        );
    }
    // Killing one leaves the other running.
    sbs[0].kill();
    let state = stdout(&sbs[1].run("systemctl", &["is-system-running"]));
    assert!(state == "running" || state == "degraded", "second sandbox after killing the first: {state}");
    assert!(sbs[1].is_active("par.service"));
    drop(sbs);
    for d in dirs {
        fs::remove_dir_all(d).unwrap();
    }
}
