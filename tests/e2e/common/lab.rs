//! Several hosts on one network, for `relctl -H`: each host a sandbox ([`Sandbox::boot_with`])
//! with a network namespace of its own, running the real sshd (Debian's openssh-server) with a
//! test key and this relctl in /usr/local/bin; a lab network namespace holds a bridge that joins
//! them (veth pairs, 10.77.0.1x/24) and is where relctl runs as the controller, with an ssh config
//! naming the hosts `h1`, `h2`, ... (DESIGN.md §5). The lab namespace is deleted on drop; the
//! hosts' sandboxes go with their `Sandbox`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use super::env::{binds, RELCTL};
use super::sandbox::Sandbox;
use super::scratch::{replace, scratch_dir, variant};
use super::show;

pub struct LabHost {
    /// `h1`, `h2`, ...: its name in the lab's ssh config and its hostname.
    pub name: String,
    pub addr: String,
    pub sb: Sandbox,
}

pub struct Lab {
    pub netns: String,
    pub hosts: Vec<LabHost>,
    pub ssh_config: PathBuf,
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("lab: {program}: {e}"));
    assert!(out.status.success(), "lab: {program} {args:?}: {}", show(&out));
}

impl Lab {
    /// Boots `n` hosts joined by a bridge, each serving ssh.
    pub fn boot(name: &str, n: usize) -> Lab {
        static LABS: AtomicUsize = AtomicUsize::new(0);
        let netns = format!("relctl-lab-{}-{}", std::process::id(), LABS.fetch_add(1, Ordering::Relaxed));
        let dir = scratch_dir(name);
        let key = dir.join("key");
        run("ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()]);
        run("ip", &["netns", "add", &netns]);
        let mut lab = Lab { netns, hosts: Vec::new(), ssh_config: dir.join("ssh_config") };
        let ns = lab.netns.clone();
        run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        run("ip", &["-n", &ns, "link", "add", "br0", "type", "bridge"]);
        run("ip", &["-n", &ns, "addr", "add", "10.77.0.1/24", "dev", "br0"]);
        run("ip", &["-n", &ns, "link", "set", "br0", "up"]);
        let public_key = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let mut config = String::new();
        for i in 1..=n {
            let name = format!("h{i}");
            let addr = format!("10.77.0.{}", 10 + i);
            let sb = Sandbox::boot_with(&binds(), true);
            let (veth, peer) = (format!("v{i}"), format!("v{i}p"));
            run("ip", &["-n", &ns, "link", "add", &veth, "type", "veth", "peer", "name", &peer]);
            run("ip", &["-n", &ns, "link", "set", &veth, "master", "br0", "up"]);
            run("ip", &["-n", &ns, "link", "set", &peer, "netns", &sb.pid.to_string()]);
            sb.sh_ok(&format!(
                "ip link set {peer} name eth0 && ip addr add {addr}/24 dev eth0 && ip link set eth0 up && hostname {name}
mkdir -p /root/.ssh && chmod 700 /root/.ssh && printf '%s' '{public_key}' > /root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys && systemctl start ssh
systemctl start systemd-user-sessions  # removes /run/nologin: users besides root may log in
install -m 0755 {RELCTL} /usr/local/bin/relctl"
            ));
            config.push_str(&format!("Host {name}\n  HostName {addr}\n"));
            lab.hosts.push(LabHost { name, addr, sb });
        }
        config.push_str(&format!(
            "Host *\n  User root\n  IdentityFile {}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  BatchMode yes\n",
            key.display()
        ));
        std::fs::write(&lab.ssh_config, config).unwrap();
        lab
    }

    /// A command run in the lab's network namespace (the controller's place), with relctl's ssh
    /// using the lab's config.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns, program]);
        c.env("RELCTL_SSH", format!("ssh -F {}", self.ssh_config.display()));
        c
    }

    /// relctl, as the controller, with `manifest`.
    pub fn relctl(&self, manifest: &Path, args: &[&str]) -> Output {
        self.command(RELCTL).arg("-f").arg(manifest).args(args).output().unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = Command::new("ip").args(["netns", "del", &self.netns]).output();
        if !out.is_ok_and(|o| o.status.success()) {
            eprintln!("lab: could not delete network namespace {}", self.netns);
        }
    }
}

/// Django, gunicorn and their dependencies as wheels, for hosts without a way to PyPI (downloaded
/// once per test process).
pub fn wheelhouse() -> &'static PathBuf {
    static WHEELS: OnceLock<PathBuf> = OnceLock::new();
    WHEELS.get_or_init(|| {
        let dir = scratch_dir("wheels");
        let venv = dir.join("venv");
        let wheels = dir.join("wheels");
        let out = Command::new("/usr/bin/python3").arg("-m").arg("venv").arg(&venv).output().unwrap();
        assert!(out.status.success(), "python3 -m venv: {}", show(&out));
        let requirements = format!("{}/examples/medctrl/requirements.txt", env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(venv.join("bin/pip"))
            .args(["download", "-q", "--disable-pip-version-check", "-d"])
            .arg(&wheels)
            .args(["-r", &requirements])
            .output()
            .unwrap();
        assert!(out.status.success(), "pip download: {}", show(&out));
        wheels
    })
}

/// The example, installing its dependencies from the [`wheelhouse`].
pub fn offline_example(name: &str) -> PathBuf {
    let wheels = wheelhouse();
    variant(name, |app| {
        replace(
            &app.join("relctl.toml"),
            "-q -r requirements.txt",
            &format!("-q --no-index --find-links {} -r requirements.txt", wheels.display()),
        )
    })
}
