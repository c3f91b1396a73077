//! `relctl -H [user@]host[:port] <command>`: the command runs on another host, like
//! `systemctl -H`, over the user's own OpenSSH client (its `~/.ssh/config`, agent, known hosts and
//! `ProxyJump`); nothing of relctl's listens on the host, which only needs sshd and relctl of the
//! same version.
//!
//! The manifest is read and checked here; it and the files it names — the sources (for `build`,
//! packed with the manifest's exclude rules) and the settings template — are shipped as a tar
//! stream into a temporary directory on the host, where relctl runs with that manifest (as root:
//! through `sudo -n` when the SSH user is not root). Its output streams back as it comes, its exit
//! code is relctl's, and the directory is removed afterwards. Paths that name the host's own
//! files — `root`, `secrets`, `htpasswd` — must be absolute: secrets never leave their host.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::error::{Outcome, UsageError};
use crate::manifest::Loaded;
use crate::report::Mode;
use crate::stage::CopySpec;

/// The relctl a host must run: the same as this one.
pub const VERSION: &str = concat!("relctl ", env!("CARGO_PKG_VERSION"));

/// Overrides the SSH client: a command line, e.g. `ssh -F /etc/relctl/ssh_config`.
pub const SSH_ENV: &str = "RELCTL_SSH";

/// Where a command runs: `[user@]host[:port]`, as typed after `-H`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Target, String> {
        let bad = |why: &str| format!("host \"{}\": {why}; expected [user@]host[:port]", s.escape_debug());
        let (user, rest) = match s.rsplit_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, s),
        };
        let (host, port) = match rest.strip_prefix('[') {
            Some(v6) => {
                let (h, after) = v6.split_once(']').ok_or_else(|| bad("an IPv6 address needs its closing ']'"))?;
                match after {
                    "" => (h, None),
                    p => (h, Some(p.strip_prefix(':').ok_or_else(|| bad("a port follows ':'"))?)),
                }
            }
            None => match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            },
        };
        if let Some(u) = user {
            let ok = u.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && u.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if !ok {
                return Err(bad("the user name is not one"));
            }
        }
        // Never an option to ssh: a host starts with a letter, a digit, or is an IPv6 address.
        let host_ok = host.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c))
            && (!host.contains(':') || rest.starts_with('['));
        if !host_ok {
            return Err(bad("the host name is not one"));
        }
        let port = match port {
            Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("the port is not 1 to 65535"))?),
            None => None,
        };
        Ok(Target { user: user.map(str::to_string), host: host.to_string(), port })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

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
                .ok_or_else(|| UsageError(format!("{SSH_ENV}=\"{line}\" is not a command line")))?,
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
    pub fn run(
        &self,
        dir: &str,
        args: &[String],
        revision: Option<&str>,
        output: &Output,
    ) -> Result<(Outcome, Vec<u8>)> {
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
            Some(code) => Ok((if code == 0 { Outcome::Ok } else { Outcome::Exited(code as u8) }, captured)),
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
const CLEANUP_TRAPS: &str = "trap 'rm -rf \"$d\"' EXIT; trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM";

/// Unpacks the tar stream on stdin into a new directory and prints its path; a failed or
/// interrupted unpacking leaves nothing behind.
fn ship_script() -> String {
    format!(
        "d=$(mktemp -d {REMOTE_DIR_PREFIX}XXXXXX) || exit 1; {CLEANUP_TRAPS}; tar -x -C \"$d\" || exit 1; trap - EXIT HUP INT TERM; echo \"$d\""
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
    let env = match revision {
        Some(r) => format!("env {}={} ", crate::git::SOURCE_REVISION_ENV, quoted(r)?),
        None => String::new(),
    };
    Ok(format!(
        "d={}; {CLEANUP_TRAPS}; cd / && if [ \"$(id -u)\" = 0 ]; then s=; else s='sudo -n'; fi; $s {env}{}; exit $?",
        quoted(dir)?,
        line.join(" "),
    ))
}

/// What goes to the host: the manifest, rewritten to name the shipped files, and those files.
pub struct Shipment {
    manifest: String,
    /// The sources, when the command builds a release.
    source: Option<CopySpec>,
    /// Files shipped one by one: (path in the shipment, local path).
    files: Vec<(PathBuf, PathBuf)>,
}

/// In the shipment: the sources, and a settings template that is not one of them.
const SHIPPED_SOURCE: &str = "src";
const SHIPPED_TEMPLATE: &str = "settings-template";

impl Shipment {
    /// The manifest as the host reads it: `source` is the shipped `src/`, the settings template
    /// the shipped one; `root`, `secrets` and `htpasswd` must be absolute (they are the host's).
    /// `source`: the sources to ship (for `build`), as `build` would copy them.
    pub fn new(loaded: &Loaded, source: Option<CopySpec>) -> Result<Shipment> {
        let refuse = |what: String| -> anyhow::Error {
            UsageError(format!(
                "{}: with -H, {what} must be an absolute path on the host (relctl does not ship it: it is the host's)",
                loaded.path.display()
            ))
            .into()
        };
        let text =
            std::fs::read_to_string(&loaded.path).with_context(|| format!("reading {}", loaded.path.display()))?;
        let mut table: toml::Table = text.parse().map_err(|e| UsageError(format!("{}: {e}", loaded.path.display())))?;
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
            files.push((shipped.clone(), local));
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
        let mut header = tar::Header::new_gnu();
        header.set_size(self.manifest.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "relctl.toml", self.manifest.as_bytes())?;
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_mode(0o755);
        dir.set_size(0);
        dir.set_cksum();
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
        for (name, local) in &self.files {
            let already = self.source.is_some() && name.starts_with(SHIPPED_SOURCE);
            if !already {
                tar.append_path_with_name(local, name).with_context(|| format!("packing {}", local.display()))?;
            }
        }
        tar.finish().context("finishing the tar stream")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_print_back() {
        for (text, user, host, port) in [
            ("web1", None, "web1", None),
            ("deploy@web1.example.com:2222", Some("deploy"), "web1.example.com", Some(2222)),
            ("root@10.0.0.5", Some("root"), "10.0.0.5", None),
            ("[fd00::5]:22", None, "fd00::5", Some(22)),
        ] {
            let t: Target = text.parse().unwrap();
            assert_eq!((t.user.as_deref(), t.host.as_str(), t.port), (user, host, port), "{text}");
            assert_eq!(t.to_string(), text);
        }
        for bad in ["", "-oProxyCommand=x", "web1:0", "web1:x", "a b", "@web1", "web1:22:33", "[fd00::5", "u;x@h"] {
            let err = bad.parse::<Target>().unwrap_err();
            assert!(err.contains("expected [user@]host[:port]"), "{bad}: {err}");
        }
    }

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
                "d=/var/tmp/relctl-remote.AbC123; trap 'rm -rf \"$d\"' EXIT; trap 'exit 129' HUP; trap 'exit 130' INT; \
                 trap 'exit 143' TERM; cd / && "
            ),
            "{script}"
        );
        assert!(
            script.ends_with(
                "$s env RELCTL_SOURCE_REVISION=abc relctl -f /var/tmp/relctl-remote.AbC123/relctl.toml build \"it's\"; exit $?"
            ),
            "{script}"
        );
        let ship = ship_script();
        assert!(ship.starts_with("d=$(mktemp -d /var/tmp/relctl-remote.XXXXXX) || exit 1; trap 'rm -rf \"$d\"' EXIT; "));
        assert!(ship
            .contains("trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM; tar -x -C \"$d\" || exit 1;"));
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
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("STARTED", tmp.path().join("started"))
            .process_group(0)
            .spawn()
            .unwrap();
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
}
