//! `relctl -H [user@]host[:port] <command>`: the command runs on another host, like
//! `systemctl -H`, over the user's own OpenSSH client (its `~/.ssh/config`, agent, known hosts and
//! `ProxyJump`); nothing of relctl's listens on the host, which only needs sshd and relctl of the
//! same version.
//!
//! The manifest is read and checked here; it and the files it names — the sources (for `build`,
//! packed with the manifest's exclude rules, links kept as links as `build` keeps them) and the
//! settings template (its contents, a 0600 file, never a link that would resolve on the host) —
//! are shipped as a tar stream into a temporary directory on the host, unpacked there by root and
//! owned by root, where relctl runs with that manifest (as root: through `sudo -n` when the SSH
//! user is not root, for the unpacking and the removal too). Its output streams back as it comes, its exit
//! code is relctl's, and the directory is removed afterwards. Paths that name the host's own
//! files — `root`, `secrets`, `htpasswd` — must be absolute: secrets never leave their host.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::error::Error;
use crate::host::trust::{self, Trust};
use crate::manifest::target::Target;
use crate::manifest::Loaded;
use crate::release::stage::CopySpec;
use crate::report::Mode;

/// The relctl a host must run: the same as this one.
pub const VERSION: &str = concat!("relctl ", env!("CARGO_PKG_VERSION"));

/// Overrides the SSH client: a command line, e.g. `ssh -F /etc/relctl/ssh_config`.
pub const SSH_ENV: &str = "RELCTL_SSH";

/// The arguments relctl was given, for the host: without `-H`/`--host` and `-f`/`--manifest` (the
/// host gets the shipped manifest), everything after `--` as it is.
pub fn forwarded_args(raw: &[OsString]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut it = raw.iter().map(|a| a.to_str().map(str::to_string)).peekable();
    while let Some(arg) = it.next() {
        let arg = arg.context("arguments for -H must be UTF-8")?;
        if arg == "--" {
            out.push(arg);
            for rest in it.by_ref() {
                out.push(rest.context("arguments for -H must be UTF-8")?);
            }
            break;
        }
        let takes_value = ["--host", "--manifest", "--hosts", "--serial"].contains(&arg.as_str());
        let joined = ["--host=", "--manifest=", "--hosts=", "--serial="].iter().any(|p| arg.starts_with(p));
        if takes_value {
            it.next();
        } else if joined {
            continue;
        } else if let Some((kept, value_follows)) = without_host_or_manifest(&arg) {
            // `-H web1`, `-Hweb1`, `-qH web1`, `-qfx.toml`: the other flags of the cluster stay.
            if kept != "-" {
                out.push(kept.to_string());
            }
            if value_follows {
                it.next();
            }
        } else {
            out.push(arg);
        }
    }
    Ok(out)
}

/// A cluster of short options (`-qH`, `-vfx.toml`) that ends in `-H` or `-f`: the cluster
/// without it, and whether its value is the next argument.
fn without_host_or_manifest(arg: &str) -> Option<(&str, bool)> {
    let flags = arg.strip_prefix('-').filter(|f| !f.starts_with('-'))?;
    // The short options that take no value; any other ends the cluster (its value follows).
    let at = flags.find(|c| !matches!(c, 'q' | 'v' | 'F'))?;
    let rest = flags[at..].strip_prefix(['H', 'f'])?;
    Some((&arg[..=at], rest.is_empty()))
}

/// One host, reached over SSH.
pub struct Remote {
    target: Target,
    ssh: Vec<String>,
}

impl Remote {
    pub fn new(target: Target) -> Result<Remote> {
        let ssh = match std::env::var(SSH_ENV) {
            Ok(line) => shlex::split(&line)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| Error::Usage(format!("{SSH_ENV}=\"{line}\" is not a command line")))?,
            Err(_) => vec!["ssh".to_string()],
        };
        Ok(Remote { target, ssh })
    }

    /// `ssh [-t] [-p port] -o ConnectTimeout=10 [user@]host -- <script>`.
    fn ssh(&self, tty: bool, script: &str) -> Command {
        let mut c = Command::new(&self.ssh[0]);
        c.args(&self.ssh[1..]);
        if tty {
            c.arg("-t");
        }
        if let Some(p) = self.target.port {
            c.arg("-p").arg(p.to_string());
        }
        c.args(["-o", "ConnectTimeout=10"]);
        let dest = match &self.target.user {
            Some(u) => format!("{u}@{}", self.target.host),
            None => self.target.host.clone(),
        };
        c.arg(dest).arg("--").arg(script);
        c
    }

    /// The host runs relctl of this version; the error says how to get there.
    pub fn check_version(&self) -> Result<()> {
        let out = self
            .ssh(false, "relctl --version")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {} to reach {}", self.ssh[0], self.target))?;
        let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let err = String::from_utf8_lossy(&out.stderr);
        let install = format!(
            "install {VERSION} there: cargo deb && scp target/debian/relctl_{v}-1_*.deb {h}: && ssh {h} sudo dpkg -i relctl_{v}-1_*.deb (or cargo install --path . on it)",
            v = env!("CARGO_PKG_VERSION"),
            h = self.target
        );
        match out.status.code() {
            Some(0) if said == VERSION => Ok(()),
            Some(0) => bail!("{} runs {said}, this is {VERSION}; {install}", self.target),
            Some(127) => bail!("relctl is not installed on {} (or not on its PATH); {install}", self.target),
            Some(255) => bail!(
                "cannot reach {} over SSH: {}",
                self.target,
                err.lines().rfind(|l| !l.trim().is_empty()).map_or_else(
                    || format!("ssh exited 255 without a message (try: ssh -v {})", self.target),
                    |l| l.trim().to_string()
                )
            ),
            _ => bail!("relctl --version failed on {} ({}): {}", self.target, out.status, err.trim()),
        }
    }

    /// Ships `shipment` into a new temporary directory on the host; returns its path there.
    pub fn ship(&self, shipment: &Shipment) -> Result<String> {
        // Unpacked as root (through sudo -n when the SSH user is not root), owned by root, no
        // setuid bits, nothing group- or world-writable: the host's relctl runs as root and uses
        // only a manifest and template that only root can change, in directories only root can.
        let mut child = self
            .ssh(false, &ship_script())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {} to reach {}", self.ssh[0], self.target))?;
        let stdin = child.stdin.take().context("ssh's stdin")?;
        let packed = shipment.pack(stdin);
        let out = child.wait_with_output().context("waiting for ssh")?;
        packed.with_context(|| format!("shipping the manifest and sources to {}", self.target))?;
        if !out.status.success() {
            bail!(
                "shipping the manifest and sources to {} failed ({}): {}",
                self.target,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !dir.starts_with(REMOTE_DIR_PREFIX) {
            bail!("{} answered {dir:?} instead of the directory it unpacked into", self.target);
        }
        Ok(dir)
    }

    /// Runs relctl on the host with the shipped manifest and `args`, its output going to `output`;
    /// the shipped directory is removed afterwards. Returns relctl's exit status there and, with
    /// [`Output::Captured`], its stdout.
    pub fn run(&self, dir: &str, args: &[String], revision: Option<&str>, output: &Output) -> Result<(u8, Vec<u8>)> {
        let script = run_script(dir, args, revision)?;
        let tty =
            matches!(output, Output::Inherit) && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
        let mut cmd = self.ssh(tty, &script);
        let reach = || format!("running {} to reach {}", self.ssh[0], self.target);
        let (status, captured) = match output {
            Output::Inherit => (cmd.status().with_context(reach)?, Vec::new()),
            Output::Prefixed(prefix) | Output::ErrorsOnly(prefix) | Output::Captured(prefix) => {
                cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
                let mut child = cmd.spawn().with_context(reach)?;
                let (mut out, err) =
                    (child.stdout.take().context("ssh's stdout")?, child.stderr.take().context("ssh's stderr")?);
                let captured = std::thread::scope(|s| -> Result<Vec<u8>> {
                    let errors = s.spawn(|| prefix_lines(err, prefix, false));
                    let mut captured = Vec::new();
                    let reading = match output.host_stdout() {
                        HostStdout::Kept => std::io::Read::read_to_end(&mut out, &mut captured).map(drop),
                        HostStdout::Dropped => std::io::copy(&mut out, &mut std::io::sink()).map(drop),
                        HostStdout::Prefixed => Ok(prefix_lines(out, prefix, true)?),
                    };
                    reading.context("reading the host's output")?;
                    errors.join().map_err(|_| anyhow::anyhow!("the thread relaying the host's stderr panicked"))??;
                    Ok(captured)
                })?;
                (child.wait().context("waiting for ssh")?, captured)
            }
        };
        match status.code() {
            Some(255) => bail!("lost the connection to {} (ssh exited 255)", self.target),
            Some(code) => Ok((code as u8, captured)),
            None => bail!("ssh to {} was killed ({status})", self.target),
        }
    }

    /// A quick command on the host, its stdout trimmed (None when it fails).
    pub fn query(&self, script: &str) -> Option<String> {
        let out = self.ssh(false, script).stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub fn target(&self) -> &Target {
        &self.target
    }
}

/// Where the output of relctl on a host goes.
pub enum Output {
    /// Straight to ours (one host; a terminal when we have one). Like `ssh host relctl ...`: the
    /// host's relctl escapes what it relays, and `exec` passes the terminal through on purpose.
    Inherit,
    /// Ours, each line behind `<prefix> | ` (several hosts).
    Prefixed(String),
    /// Only the host's stderr (its errors), each line behind `<prefix> | `; its stdout (the
    /// progress lines) is read and dropped (several hosts with `-q`).
    ErrorsOnly(String),
    /// stdout kept for us (a `--json` document), stderr prefixed.
    Captured(String),
}

/// What becomes of the stdout of relctl on a host (its stderr is always shown, prefixed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostStdout {
    Prefixed,
    Dropped,
    Kept,
}

impl Output {
    /// How each of several hosts' output shows in `mode`: prefixed; only errors with `-q`;
    /// captured with `--json` (the host's document goes into ours).
    pub fn for_hosts(mode: Mode, prefix: String) -> Output {
        match mode {
            Mode::Human => Output::Prefixed(prefix),
            Mode::Quiet => Output::ErrorsOnly(prefix),
            Mode::Json => Output::Captured(prefix),
        }
    }

    fn host_stdout(&self) -> HostStdout {
        match self {
            Output::Inherit | Output::Prefixed(_) => HostStdout::Prefixed,
            Output::ErrorsOnly(_) => HostStdout::Dropped,
            Output::Captured(_) => HostStdout::Kept,
        }
    }
}

/// Copies lines from `from` to our stdout (or stderr), each behind `<prefix> | `.
fn prefix_lines(from: impl std::io::Read, prefix: &str, stdout: bool) -> Result<()> {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(from);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).context("reading the host's output")? == 0 {
            return Ok(());
        }
        let text = prefixed(prefix, &line);
        if stdout {
            crate::report::out(text);
        } else {
            crate::report::err(text);
        }
    }
}

/// One line from a host as relctl shows it: behind `<prefix> | `, its control characters escaped.
fn prefixed(prefix: &str, line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    format!("{prefix} | {}\n", crate::report::terminal_safe(text.trim_end_matches(['\n', '\r'])))
}

/// Where a shipment is unpacked on the host: a new directory named so.
const REMOTE_DIR_PREFIX: &str = "/var/tmp/relctl-remote.";

/// The shell on the host removes the shipped directory when it ends, also by SIGHUP (the
/// connection dropped), SIGINT or SIGTERM. A trapped signal that arrives while relctl runs is acted
/// on when relctl has ended (the shell waits for it first): relctl never loses its files.
const CLEANUP_TRAPS: &str =
    "trap '$s rm -rf \"$d\"' EXIT; trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM";

/// `$s` runs a command as root: nothing as root, `sudo -n` for another SSH user.
const AS_ROOT: &str = "if [ \"$(id -u)\" = 0 ]; then s=; else s='sudo -n'; fi";

/// Unpacks the tar stream on stdin into a new directory and prints its path; a failed or
/// interrupted unpacking leaves nothing behind.
fn ship_script() -> String {
    format!(
        "umask 022; {AS_ROOT}; d=$($s mktemp -d {REMOTE_DIR_PREFIX}XXXXXX) || exit 1; {CLEANUP_TRAPS}; $s tar -x --no-same-owner --no-same-permissions -C \"$d\" || exit 1; trap - EXIT HUP INT TERM; echo \"$d\""
    )
}

/// The host's side of [`Remote::run`]: relctl (through `sudo -n` unless the SSH user is root)
/// with the manifest shipped into `dir` and `args`; `dir` is removed when the shell ends, however
/// it ends ([`CLEANUP_TRAPS`]); relctl's exit status is the shell's.
fn run_script(dir: &str, args: &[String], revision: Option<&str>) -> Result<String> {
    let quoted = |s: &str| shlex::try_quote(s).map(|q| q.into_owned()).context("an argument with a NUL byte");
    let mut line = vec!["relctl".to_string(), "-f".into(), quoted(&format!("{dir}/relctl.toml"))?];
    for a in args {
        line.push(quoted(a)?);
    }
    // Who runs this, for the host's audit record (sudo passes neither on by itself).
    let mut env = format!(
        "env {}={} {}=\"$SSH_CONNECTION\" ",
        crate::audit::ORIGIN_ENV,
        quoted(&crate::audit::origin())?,
        crate::audit::SSH_ENV
    );
    if let Some(r) = revision {
        env.push_str(&format!("{}={} ", crate::release::git::SOURCE_REVISION_ENV, quoted(r)?));
    }
    Ok(format!("d={}; {AS_ROOT}; {CLEANUP_TRAPS}; cd / && $s {env}{}; exit $?", quoted(dir)?, line.join(" "),))
}

/// What goes to the host: the manifest, rewritten to name the shipped files, and those files.
pub struct Shipment {
    manifest: String,
    /// The sources, when the command builds a release.
    source: Option<CopySpec>,
    /// Files shipped one by one, as regular files with their contents (never as links, which
    /// would resolve on the host): (path in the shipment, contents).
    files: Vec<(PathBuf, Vec<u8>)>,
}

/// The mode of a file shipped one by one (the host's relctl, root, reads it).
const SHIPPED_FILE_MODE: u32 = 0o600;

/// In the shipment: the sources, and a settings template that is not one of them.
const SHIPPED_SOURCE: &str = "src";
const SHIPPED_TEMPLATE: &str = "settings-template";

impl Shipment {
    /// The manifest as the host reads it: `source` is the shipped `src/`, the settings template
    /// the shipped one; `root`, `secrets` and `htpasswd` must be absolute (they are the host's).
    /// `source`: the sources to ship (for `build`), as `build` would copy them.
    pub fn new(loaded: &Loaded, source: Option<CopySpec>) -> Result<Shipment> {
        let refuse = |what: String| -> anyhow::Error {
            Error::Usage(format!(
                "{}: with -H, {what} must be an absolute path on the host (relctl does not ship it: it is the host's)",
                loaded.path.display()
            ))
            .into()
        };
        // The text relctl read and checked, not the file again (it may have changed since).
        let mut table: toml::Table =
            loaded.manifest.text.parse().map_err(|e| Error::Usage(format!("{}: {e}", loaded.path.display())))?;
        let m = &loaded.manifest;
        if m.root.as_ref().is_some_and(|r| r.is_relative()) {
            return Err(refuse("root".into()));
        }
        for (name, b) in &m.builds {
            if b.secrets.as_ref().is_some_and(|p| p.is_relative()) {
                return Err(refuse(format!("[builds.{name}] secrets")));
            }
            if b.htpasswd.as_ref().is_some_and(|p| p.is_relative()) {
                return Err(refuse(format!("[builds.{name}] htpasswd")));
            }
        }
        let local_source = std::fs::canonicalize(loaded.resolve(&m.source)).ok();
        table.insert("source".into(), SHIPPED_SOURCE.into());
        // On the host, a build runs there: its `hosts` would roll again from there.
        if let Some(toml::Value::Table(builds)) = table.get_mut("builds") {
            for (_, b) in builds.iter_mut() {
                if let toml::Value::Table(b) = b {
                    b.remove("hosts");
                }
            }
        }
        let mut files = Vec::new();
        if let Some(settings) = m.settings.as_ref().filter(|s| !s.template.starts_with("builtin:")) {
            let local = loaded.resolve(Path::new(&settings.template));
            let inside = std::fs::canonicalize(&local)
                .ok()
                .and_then(|c| local_source.as_ref().and_then(|s| c.strip_prefix(s).ok().map(Path::to_path_buf)));
            let shipped = match inside {
                Some(rel) => Path::new(SHIPPED_SOURCE).join(rel),
                None => PathBuf::from(SHIPPED_TEMPLATE),
            };
            // Its contents, read as `build` reads them (as root: only a template only root can
            // change), not the link it may be.
            let what = "[settings] template";
            let contents = trust::read_to_string(&local, what, Trust::current())
                .map_err(|e| e.into_usage(|e| format!("{what} {}: {e}", local.display())))?;
            files.push((shipped.clone(), contents.into_bytes()));
            if let Some(toml::Value::Table(s)) = table.get_mut("settings") {
                s.insert("template".into(), shipped.display().to_string().into());
            }
        }
        Ok(Shipment { manifest: toml::to_string(&table).context("writing the manifest for the host")?, source, files })
    }

    /// Writes the shipment as a tar stream.
    fn pack(&self, out: impl std::io::Write) -> Result<()> {
        let mut tar = tar::Builder::new(out);
        tar.follow_symlinks(false);
        let mut manifest = header(tar::EntryType::Regular, self.manifest.len(), 0o644);
        tar.append_data(&mut manifest, "relctl.toml", self.manifest.as_bytes())?;
        let mut dir = header(tar::EntryType::Directory, 0, 0o755);
        tar.append_data(&mut dir, SHIPPED_SOURCE, std::io::empty())?;
        if let Some(spec) = &self.source {
            spec.walk(|entry, rel| {
                let ft = entry.file_type();
                if ft.is_dir() || ft.is_file() || ft.is_symlink() {
                    tar.append_path_with_name(entry.path(), Path::new(SHIPPED_SOURCE).join(rel))
                        .with_context(|| format!("packing {}", entry.path().display()))?;
                }
                Ok(())
            })?;
        }
        // After the sources: a template that is one of them is shipped as what was read, even
        // where the sources hold a link or leave it out.
        for (name, contents) in &self.files {
            let mut file = header(tar::EntryType::Regular, contents.len(), SHIPPED_FILE_MODE);
            tar.append_data(&mut file, name, contents.as_slice())
                .with_context(|| format!("packing {}", name.display()))?;
        }
        tar.finish().context("finishing the tar stream")?;
        Ok(())
    }
}

/// A tar header for an entry made here (not from a local file): root's, with this mode.
fn header(kind: tar::EntryType, size: usize, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size as u64);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lines_show_escaped_behind_their_prefix() {
        assert_eq!(prefixed("web1", b"  build  1.00s  ok\r\n"), "web1 |   build  1.00s  ok\n");
        assert_eq!(
            prefixed("web1", b"\x1b]52;c;Zm9v\x07\x1b[1A\rcaf\xc3\xa9 \xff\n"),
            "web1 | \\u{1b}]52;c;Zm9v\\u{7}\\u{1b}[1A\\rcafé \u{fffd}\n"
        );
    }

    #[test]
    fn with_q_the_hosts_progress_is_dropped_and_their_errors_shown() {
        let stdout = |mode| Output::for_hosts(mode, "web1".into()).host_stdout();
        assert_eq!(stdout(Mode::Human), HostStdout::Prefixed);
        assert_eq!(stdout(Mode::Quiet), HostStdout::Dropped);
        assert_eq!(stdout(Mode::Json), HostStdout::Kept);
        // stderr (errors) is relayed in every mode: each variant carries the prefix for it.
        for mode in [Mode::Human, Mode::Quiet, Mode::Json] {
            let (Output::Prefixed(p) | Output::ErrorsOnly(p) | Output::Captured(p)) =
                Output::for_hosts(mode, "web1".into())
            else {
                panic!("several hosts' output is never inherited")
            };
            assert_eq!(p, "web1");
        }
    }

    #[test]
    fn the_host_scripts_remove_their_directory_on_hup_int_term_and_exit() {
        let script =
            run_script("/var/tmp/relctl-remote.AbC123", &["build".into(), "it's".into()], Some("abc")).unwrap();
        assert!(
            script.starts_with(
                "d=/var/tmp/relctl-remote.AbC123; if [ \"$(id -u)\" = 0 ]; then s=; else s='sudo -n'; fi; \
                 trap '$s rm -rf \"$d\"' EXIT; trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM; cd / && "
            ),
            "{script}"
        );
        let origin = crate::audit::origin();
        assert!(
            script.ends_with(&format!(
                "$s env RELCTL_ORIGIN={origin} RELCTL_SSH_CONNECTION=\"$SSH_CONNECTION\" RELCTL_SOURCE_REVISION=abc relctl -f /var/tmp/relctl-remote.AbC123/relctl.toml build \"it's\"; exit $?"
            )),
            "{script}"
        );
        let ship = ship_script();
        assert!(
            ship.starts_with(
                "umask 022; if [ \"$(id -u)\" = 0 ]; then s=; else s='sudo -n'; fi; \
                 d=$($s mktemp -d /var/tmp/relctl-remote.XXXXXX) || exit 1; trap '$s rm -rf \"$d\"' EXIT; "
            ),
            "{ship}"
        );
        assert!(
            ship.contains(
                "trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM; \
                 $s tar -x --no-same-owner --no-same-permissions -C \"$d\" || exit 1;"
            ),
            "{ship}"
        );
        assert!(ship.ends_with("trap - EXIT HUP INT TERM; echo \"$d\""), "{ship}");
    }

    /// The run script in /bin/sh, with `relctl` a stand-in running `relctl_body` (and `id -u`
    /// answering 0), started in its own process group; returns the shipped directory and the shell.
    fn run_with_stand_in(relctl_body: &str) -> (tempfile::TempDir, PathBuf, std::process::Child) {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        let shipped = tmp.path().join("relctl-remote.x");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&shipped).unwrap();
        std::fs::write(shipped.join("relctl.toml"), "").unwrap();
        for (name, body) in [("relctl", relctl_body), ("id", "echo 0")] {
            std::fs::write(bin.join(name), format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let script = run_script(shipped.to_str().unwrap(), &["status".into()], None).unwrap();
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(script)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("STARTED", tmp.path().join("started"))
            .process_group(0);
        // sshd starts the session's shell with every signal at its default; a test run under
        // `nohup` ignores SIGHUP, which the shell could then neither trap nor pass on.
        // SAFETY: between fork and exec, only signal(2), which is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                use nix::sys::signal::{signal, SigHandler, Signal};
                for sig in [Signal::SIGHUP, Signal::SIGINT, Signal::SIGTERM] {
                    signal(sig, SigHandler::SigDfl).map_err(std::io::Error::from)?;
                }
                Ok(())
            });
        }
        let child = command.spawn().unwrap();
        let t = std::time::Instant::now();
        while !tmp.path().join("started").exists() {
            assert!(t.elapsed() < std::time::Duration::from_secs(10), "the stand-in relctl did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        (tmp, shipped, child)
    }

    #[test]
    fn a_hangup_of_the_session_removes_the_shipped_directory() {
        use nix::sys::signal::{killpg, Signal};
        // The connection drops: SIGHUP to the session's process group, relctl included.
        let (_tmp, shipped, mut child) = run_with_stand_in("touch \"$STARTED\"; exec sleep 30");
        killpg(nix::unistd::Pid::from_raw(child.id() as i32), Signal::SIGHUP).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(129), "{status}");
        assert!(!shipped.exists(), "{} is left behind", shipped.display());
    }

    #[test]
    fn the_shell_keeps_the_directory_while_relctl_runs_and_passes_on_its_status() {
        use nix::sys::signal::{kill, Signal};
        // Only the shell is signalled; relctl carries on (a deploy is never left half done) and
        // still reads its manifest: the directory goes when it has ended.
        let (_tmp, shipped, mut child) = run_with_stand_in("touch \"$STARTED\"; sleep 1; cat \"$2\" && exit 3");
        kill(nix::unistd::Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(shipped.exists(), "removed while relctl still ran");
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(143), "{status}");
        assert!(!shipped.exists(), "{} is left behind", shipped.display());
        // Not signalled: relctl's own status.
        let (_tmp, shipped, mut child) = run_with_stand_in("touch \"$STARTED\"; exit 3");
        assert_eq!(child.wait().unwrap().code(), Some(3));
        assert!(!shipped.exists(), "{} is left behind", shipped.display());
    }

    #[test]
    fn forwarded_args_leave_out_host_and_manifest() {
        let raw = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let f = |a: &[&str]| forwarded_args(&raw(a)).unwrap();
        assert_eq!(f(&["-H", "web1", "-f", "x.toml", "--json", "status"]), ["--json", "status"]);
        assert_eq!(f(&["--host=web1", "build", "--manifest", "m", "production"]), ["build", "production"]);
        assert_eq!(f(&["-Hweb1", "exec", "p", "--", "sh", "-H", "-f"]), ["exec", "p", "--", "sh", "-H", "-f"]);
        assert_eq!(f(&["--hosts", "a,b", "--serial=2", "build", "p", "--serial", "3"]), ["build", "p"]);
        // A cluster keeps its other flags: -q reaches the host, -H does not.
        assert_eq!(f(&["-qH", "web1", "build", "p"]), ["-q", "build", "p"]);
        assert_eq!(f(&["-qHweb1", "-vfm.toml", "status"]), ["-q", "-v", "status"]);
        assert_eq!(f(&["-q", "logs", "p", "-Fn", "5", "-qf", "m.toml"]), ["-q", "logs", "p", "-Fn", "5", "-q"]);
    }

    /// The entries of a packed shipment: (name, kind, mode, uid, contents or link target).
    fn unpacked(shipment: &Shipment) -> Vec<(String, tar::EntryType, u32, u64, String)> {
        let mut bytes = Vec::new();
        shipment.pack(&mut bytes).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut out = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut e = entry.unwrap();
            let h = e.header().clone();
            let name = e.path().unwrap().display().to_string();
            let body = match h.entry_type() {
                tar::EntryType::Symlink => format!("-> {}", e.link_name().unwrap().unwrap().display()),
                _ => {
                    let mut t = String::new();
                    std::io::Read::read_to_string(&mut e, &mut t).unwrap();
                    t
                }
            };
            out.push((name, h.entry_type(), h.mode().unwrap(), h.uid().unwrap(), body));
        }
        out
    }

    #[test]
    fn a_settings_template_is_shipped_as_its_contents_never_as_a_link() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let app = tmp.path().join("app");
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir_all(&app).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("real.tera"), "BUILD = \"{{ build }}\"\n").unwrap();
        // The template is a link out of the sources (on the host it would resolve in /var/tmp).
        symlink(elsewhere.join("real.tera"), app.join("settings.tera")).unwrap();
        // A link in the sources stays a link, as `build` copies it.
        symlink("/etc/hostname", app.join("hostname-link")).unwrap();
        std::fs::write(app.join("main.py"), "print(1)\n").unwrap();
        std::fs::write(
            app.join("relctl.toml"),
            "app = \"medctrl\"\n[settings]\ntemplate = \"settings.tera\"\npath = \"s.py\"\n[service]\nexec = \"true\"\n[builds.development]\n",
        )
        .unwrap();
        let loaded = crate::manifest::load(&app.join("relctl.toml")).unwrap();
        let source = crate::plan::build::source_copy(&loaded).unwrap();
        let shipment = Shipment::new(&loaded, Some(source)).unwrap();
        let entries = unpacked(&shipment);
        let find = |name: &str| entries.iter().rfind(|e| e.0 == name).cloned();
        let template = find(SHIPPED_TEMPLATE).expect("the template is shipped");
        assert_eq!(template.1, tar::EntryType::Regular, "{template:?}");
        assert_eq!((template.2, template.3), (0o600, 0));
        assert_eq!(template.4, "BUILD = \"{{ build }}\"\n");
        let link = find("src/hostname-link").unwrap();
        assert_eq!((link.1, link.4.as_str()), (tar::EntryType::Symlink, "-> /etc/hostname"));
        assert!(shipment.manifest.contains("template = \"settings-template\""), "{}", shipment.manifest);

        // A template in the sources that links to another file of theirs: the shipped manifest
        // names the file the link points at, shipped as a regular file.
        std::fs::write(app.join("real-in-src.tera"), "X = 1\n").unwrap();
        std::fs::remove_file(app.join("settings.tera")).unwrap();
        symlink("real-in-src.tera", app.join("settings.tera")).unwrap();
        let shipment = Shipment::new(&loaded, None).unwrap();
        let entries = unpacked(&shipment);
        let shipped = entries.iter().find(|e| e.0 == "src/real-in-src.tera").unwrap();
        assert_eq!((shipped.1, shipped.2, shipped.4.as_str()), (tar::EntryType::Regular, 0o600, "X = 1\n"));
        assert!(!entries.iter().any(|e| e.1 == tar::EntryType::Symlink), "{entries:?}");

        // What is shipped is the manifest relctl read and checked once, not the file as it is now.
        std::fs::write(app.join("relctl.toml"), "app = \"changed\"\n").unwrap();
        let shipment = Shipment::new(&loaded, None).unwrap();
        assert!(shipment.manifest.contains("app = \"medctrl\""), "{}", shipment.manifest);
    }

    #[test]
    fn the_host_unpacks_a_shipment_root_only_so_its_relctl_uses_it_as_root() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let app = tmp.path().join("app");
        std::fs::create_dir_all(app.join("deploy")).unwrap();
        std::fs::write(app.join("deploy/settings.tera"), "X = 1\n").unwrap();
        std::fs::write(app.join("deploy/other.py"), "Y = 1\n").unwrap();
        std::fs::write(
            app.join("relctl.toml"),
            "app = \"medctrl\"\n[settings]\ntemplate = \"deploy/settings.tera\"\npath = \"s.py\"\n[service]\nexec = \"true\"\n[builds.development]\n",
        )
        .unwrap();
        let loaded = crate::manifest::load(&app.join("relctl.toml")).unwrap();
        let shipment = Shipment::new(&loaded, Some(crate::plan::build::source_copy(&loaded).unwrap())).unwrap();
        // The sources as a checkout made with umask 002 has them (packed as they are when shipped).
        std::fs::set_permissions(app.join("deploy"), std::fs::Permissions::from_mode(0o775)).unwrap();
        std::fs::set_permissions(app.join("deploy/other.py"), std::fs::Permissions::from_mode(0o4775)).unwrap();
        // ssh that runs the script here: `<ssh> -o ConnectTimeout=10 host -- <script>`.
        let ssh = tmp.path().join("ssh");
        std::fs::write(&ssh, "#!/bin/sh\nwhile [ \"$1\" != -- ]; do shift; done; shift; exec sh -c \"$1\"\n").unwrap();
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
        let remote = Remote { target: "h1".parse().unwrap(), ssh: vec![ssh.display().to_string()] };
        let dir = PathBuf::from(remote.ship(&shipment).unwrap());
        let unpacked = scopeguard(&dir);
        let meta = |p: &str| std::fs::symlink_metadata(dir.join(p)).unwrap();
        assert_eq!((meta(".").uid(), meta(".").mode() & 0o7777), (0, 0o700));
        assert_eq!((meta("src/deploy").uid(), meta("src/deploy").mode() & 0o7777), (0, 0o755));
        assert_eq!(
            (meta("src/deploy/settings.tera").uid(), meta("src/deploy/settings.tera").mode() & 0o7777),
            (0, 0o600)
        );
        assert_eq!(meta("src/deploy/other.py").mode() & 0o7777, 0o755, "no setuid, not group-writable");
        // As the host's relctl reads them, as root.
        let host = crate::manifest::load_as(&dir.join("relctl.toml"), Trust::RootOnly).unwrap();
        let template = host.resolve(Path::new(&host.manifest.settings.as_ref().unwrap().template));
        assert_eq!(trust::read_to_string(&template, "[settings] template", Trust::RootOnly).unwrap(), "X = 1\n");
        drop(unpacked);
    }

    /// Removes the unpacked directory when the test ends, passed or not.
    fn scopeguard(dir: &Path) -> impl Drop + '_ {
        struct Remove<'a>(&'a Path);
        impl Drop for Remove<'_> {
            fn drop(&mut self) {
                if let Err(e) = std::fs::remove_dir_all(self.0) {
                    eprintln!("removing {}: {e}", self.0.display());
                }
            }
        }
        Remove(dir)
    }
}
