//! Build, release and verify hooks: shell commands run in the new release directory. Build and
//! verify hooks run as root, from relctl; release hooks run the way the service runs, in a
//! transient unit of their own ([`run_in_unit`]).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::host::command::NOT_FOR_HOOKS;
use crate::plan::hook::{Hook, HookStage};
use crate::systemd::manager::Manager;
use serde::Serialize;

const TAIL_LINES: usize = 20;

/// Runs `hook` with `sh -c` in `cwd` as root, with `env` added to relctl's environment (less
/// [`NOT_FOR_HOOKS`]) and no terminal (stdin is /dev/null). stdout and stderr are captured
/// together, and each line is handed to `on_line` as the hook prints it ([`read_lines`]); a
/// failure is an error with the exit status, and the tail of the output is in the error (printed
/// by the caller). Returns what the hook printed.
pub fn run(hook: &Hook, cwd: &Path, env: &BTreeMap<String, String>, on_line: &mut dyn FnMut(&str)) -> Result<String> {
    let (reader, writer) = std::io::pipe().context("creating a pipe for hook output")?;
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(&hook.command).current_dir(cwd).stdin(Stdio::null());
    for var in NOT_FOR_HOOKS {
        cmd.env_remove(var);
    }
    cmd.envs(env).stdout(writer.try_clone()?).stderr(writer);
    let mut child =
        cmd.spawn().with_context(|| format!("{} hook `{}`: cannot start /bin/sh", hook.stage, hook.command))?;
    drop(cmd); // closes our copies of the pipe's write end
    let raw = read_lines(reader, on_line).context("reading hook output")?;
    let status = child.wait().context("waiting for hook")?;
    let output = String::from_utf8_lossy(&raw).into_owned();
    if !status.success() {
        let how = match status.code() {
            Some(code) => format!("exited with status {code}"),
            None => format!("was killed ({status})"),
        };
        return Err(HookFailed {
            stage: hook.stage,
            command: hook.command.clone(),
            how,
            tail: tail(&output, TAIL_LINES),
        }
        .into());
    }
    Ok(output)
}

/// Reads `from` to its end and returns all of it, handing each line to `on_line` as soon as it is
/// complete: without its newline, invalid UTF-8 as U+FFFD; a last line without a newline too,
/// at the end.
fn read_lines(from: impl Read, on_line: &mut dyn FnMut(&str)) -> std::io::Result<Vec<u8>> {
    let mut from = BufReader::new(from);
    let mut raw = Vec::new();
    loop {
        let start = raw.len();
        if from.read_until(b'\n', &mut raw)? == 0 {
            return Ok(raw);
        }
        let line = &raw[start..];
        on_line(&String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(line)));
    }
}

/// A release hook's transient unit: `<app>-hook-<build>-<8 hex digits>.service`, with the
/// service's settings (see [`service_unit_properties`]), the release as working directory, no
/// terminal, and a time limit.
#[derive(Debug, Clone, Serialize)]
pub struct HookUnit {
    pub unit: String,
    pub description: String,
    /// `Key=Value` settings for `systemd-run --property`, in order.
    pub properties: Vec<String>,
    /// Variables of relctl's own (never secrets: they show in the unit's properties).
    pub env: BTreeMap<String, String>,
    pub timeout: Duration,
}

/// A fresh hook unit name that says what it runs.
pub fn unit_name(app: &str, build: &str) -> String {
    format!("{app}-hook-{build}-{:08x}.service", fastrand::u32(..))
}

/// The unit files a release hook's settings come from: the service unit relctl is about to
/// install and the drop-ins systemd would apply to the build's service.
pub struct ServiceSources<'a> {
    /// The service's unit file (`<app>@.service`) and its rendered text.
    pub service: (&'a Path, &'a str),
    /// `<app>@<build>.service`
    pub service_unit: &'a str,
    /// Where the unit files and drop-ins live (`/etc/systemd/system`).
    pub unit_dir: &'a Path,
    /// relctl's own drop-in and its text as this release has it (none: the build has none).
    pub relctl_dropin: (&'a Path, Option<&'a str>),
    /// The service's `User=`.
    pub user: &'a str,
}

/// The `[Service]` settings a release hook of `release_dir` runs with: those of `src.service`,
/// then the drop-ins systemd would apply to `src.service_unit` from `src.unit_dir` (the
/// template's and the instance's, ordered by file name as systemd orders them), with relctl's own
/// drop-in as this release has it — so the hook gets the user, sandbox, `UMask=`, state directory
/// and environment files (the release's, and the secrets) the service will get, with `links`
/// pinned to `release_dir`. Then the hook's own: the release as working directory and
/// `TimeoutStartSec=`.
pub fn service_unit_properties(
    src: &ServiceSources,
    links: &[&Path],
    release_dir: &Path,
    timeout: Duration,
) -> Result<Vec<String>> {
    let (service_unit, unit_dir, user) = (src.service_unit, src.unit_dir, src.user);
    let service = src.service;
    let mut sources = vec![(service.0.to_path_buf(), service.1.to_string())];
    let template = match service_unit.split_once('@') {
        Some((prefix, _)) => format!("{prefix}@.service"),
        None => service_unit.to_string(),
    };
    let mut drop_ins: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in [unit_dir.join(format!("{template}.d")), unit_dir.join(format!("{service_unit}.d"))] {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading the drop-ins in {}", dir.display())),
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("reading the drop-ins in {}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".conf") {
                // The instance's drop-in of a name overrides the template's (systemd.unit(5)).
                drop_ins.insert(name, entry.path());
            }
        }
    }
    let (relctl_path, relctl_text) = src.relctl_dropin;
    drop_ins.retain(|_, p| p != relctl_path);
    if relctl_text.is_some() {
        if let Some(name) = relctl_path.file_name() {
            drop_ins.insert(name.to_string_lossy().into_owned(), relctl_path.to_path_buf());
        }
    }
    for path in drop_ins.into_values() {
        let text = match (path == relctl_path, relctl_text) {
            (true, Some(t)) => t.to_string(),
            _ => std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}, a drop-in of {service_unit}", path.display()))?,
        };
        sources.push((path, text));
    }
    let specifiers = crate::exec::Specifiers { unit: service_unit, user };
    let mut properties = crate::exec::service_properties(&sources, &specifiers, links, release_dir)?;
    properties.push(format!("WorkingDirectory={}", release_dir.display()));
    properties.push(format!("TimeoutStartSec={}", timeout.as_secs()));
    // What a hook leaves running is stopped with it, without the service's grace for requests.
    properties.push("TimeoutStopSec=10".into());
    Ok(properties)
}

/// Runs `hook` in its own transient unit (`spec`) with `systemd-run`, no terminal, and returns
/// what it printed; each line is handed to `on_line` as the hook prints it (`--pipe`: the unit
/// writes into relctl's pipe). It ends when the command does, when systemd stops it at its time
/// limit, or when relctl is interrupted (then relctl stops the unit): nothing of it stays
/// running, and a hook that is stopped or hangs fails naming the unit and the limit.
pub fn run_in_unit(
    hook: &Hook,
    spec: &HookUnit,
    systemd: &dyn Manager,
    on_line: &mut dyn FnMut(&str),
) -> Result<String> {
    let systemd_run = which::which("systemd-run").context(
        "release hooks run in a unit of their own through systemd-run, which is not installed (it comes with systemd)",
    )?;
    let mut args: Vec<String> = vec![
        format!("--unit={}", spec.unit),
        format!("--description={}", spec.description),
        "--quiet".into(),
        "--collect".into(),
        "--wait".into(),
        "--pipe".into(),
        "--service-type=oneshot".into(),
    ];
    args.extend(spec.properties.iter().map(|p| format!("--property={p}")));
    args.extend(spec.env.iter().map(|(k, v)| format!("--setenv={k}={v}")));
    args.push("--".into());
    // systemd expands `$VAR` in ExecStart= arguments: the command's own `$` are given as `$$`.
    args.extend(["/bin/sh".to_string(), "-c".into(), hook.command.replace('$', "$$")]);

    let caught = Arc::new(AtomicUsize::new(0));
    let mut registered = Vec::new();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        registered.push(
            signal_hook::flag::register_usize(sig, Arc::clone(&caught), sig as usize)
                .context("setting up relctl's signal handlers")?,
        );
    }
    let outcome = (|| -> Result<(std::process::ExitStatus, Vec<u8>, Duration)> {
        let (reader, writer) = std::io::pipe().context("creating a pipe for hook output")?;
        let mut cmd = Command::new(&systemd_run);
        cmd.args(&args).stdin(Stdio::null()).stdout(writer.try_clone()?).stderr(writer);
        let started = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("starting {}", systemd_run.display()))?;
        drop(cmd); // closes our copies of the pipe's write end

        // The reader hands the lines over to this thread, which watches for signals meanwhile; it
        // is not waited for when relctl gives up early.
        let (lines, arriving) = mpsc::channel::<String>();
        let output = std::thread::spawn(move || {
            read_lines(reader, &mut |line| {
                // Fails only once relctl gave up on the hook: the rest is not shown.
                lines.send(line.to_owned()).ok();
            })
        });
        let mut stopping = false;
        let status = loop {
            if let Some(status) = child.try_wait().context("waiting for systemd-run")? {
                break status;
            }
            if caught.load(Ordering::SeqCst) != 0 && !stopping {
                stopping = true;
                systemd.stop_if_running(&spec.unit)?;
            }
            match arriving.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => on_line(&line),
                Err(RecvTimeoutError::Timeout) => {}
                // The unit closed its output and is ending.
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let elapsed = started.elapsed();
        // systemd-run returns once the unit ended, unless it was killed itself.
        systemd.stop_if_running(&spec.unit)?;
        let raw = output.join().map_err(|_| anyhow::anyhow!("reading hook output: the reader panicked"))?;
        for line in arriving.try_iter() {
            on_line(&line);
        }
        Ok((status, raw.context("reading hook output")?, elapsed))
    })();
    for id in registered {
        signal_hook::low_level::unregister(id);
    }
    let (status, raw, elapsed) = outcome?;
    let output = String::from_utf8_lossy(&raw).into_owned();
    let interrupted = caught.load(Ordering::SeqCst);
    if status.success() && interrupted == 0 {
        return Ok(output);
    }
    let how = if interrupted != 0 {
        format!("was stopped: relctl was interrupted (signal {interrupted}); {} stopped", spec.unit)
    } else if elapsed >= spec.timeout {
        format!(
            "did not finish within {} s ([hooks] release_timeout_s): systemd stopped {} (a hook stopped by a signal, e.g. SIGSTOP from the running service, ends so too)",
            spec.timeout.as_secs(),
            spec.unit
        )
    } else {
        match status.code() {
            Some(code @ 200..=243) => format!(
                "could not be started by systemd (exit status {code}, see systemd.exec(5) \"Process exit codes\"; journalctl -u {})",
                spec.unit
            ),
            Some(code) => format!("exited with status {code} (unit {})", spec.unit),
            None => format!("was killed ({status}; unit {})", spec.unit),
        }
    };
    Err(HookFailed { stage: hook.stage, command: hook.command.clone(), how, tail: tail(&output, TAIL_LINES) }.into())
}

/// A hook that failed; `tail` is the end of what it printed.
#[derive(Debug)]
pub struct HookFailed {
    pub stage: HookStage,
    pub command: String,
    pub how: String,
    pub tail: String,
}

impl std::fmt::Display for HookFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} hook `{}` {}", self.stage, self.command, self.how)
    }
}

impl std::error::Error for HookFailed {}

pub(super) fn tail(output: &str, n: usize) -> String {
    let lines: Vec<&str> = output.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(cmd: &str) -> Hook {
        Hook { stage: HookStage::Build, command: cmd.into() }
    }

    #[test]
    fn release_hooks_get_the_services_settings_its_drop_ins_and_this_releases_secrets() {
        let text = "app = \"medctrl\"\ncomponent = \"backend\"\n[service]\nexec = \"x\"\n[builds.development]\n";
        let loaded = crate::manifest::Loaded {
            path: "/srv/relctl.toml".into(),
            dir: "/srv".into(),
            manifest: crate::manifest::parse(text).unwrap(),
        };
        let app = crate::plan::app(&loaded).unwrap();
        let unit = crate::plan::units::render(&app).unwrap().swap_remove(0);
        let units = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| {
            let p = units.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        // The admin's drop-ins (the template's and the instance's) and relctl's from an earlier
        // release, which named another secrets file.
        write("medctrl@.service.d/10-admin.conf", "[Service]\nReadWritePaths=/srv/media\n");
        write("medctrl@development.service.d/60-admin.conf", "[Service]\nEnvironment=ADMIN=%i\n");
        write("medctrl@development.service.d/50-relctl.conf", "[Service]\nEnvironmentFile=/old/secrets.env\n");
        write("medctrl@development.service.d/notes.txt", "[Service]\nUser=root\n");
        let dropin = units.path().join("medctrl@development.service.d/50-relctl.conf");
        let b = app.layout.build(&"development".parse().unwrap());
        let main = app.layout.instance("development", crate::release::layout::Slot::Main);
        let release = Path::new("/opt/medctrl/backend/development/releases/20261123T130501Z");
        let src = ServiceSources {
            service: (&unit.path, &unit.contents),
            service_unit: &b.service_unit,
            unit_dir: units.path(),
            relctl_dropin: (&dropin, Some("[Service]\nEnvironmentFile=/etc/relctl/new.env\n")),
            user: &app.user,
        };
        let p = service_unit_properties(&src, &[&main.link, &b.current], release, Duration::from_secs(900)).unwrap();
        let at = |want: &str| p.iter().position(|x| x == want).unwrap_or_else(|| panic!("no {want:?} in {p:#?}"));
        at("User=medctrl");
        at("UMask=0077");
        at("StateDirectory=medctrl/backend/development");
        at("PrivateTmp=yes");
        let env = at(&format!("EnvironmentFile={}/.relctl/environment", release.display()));
        let (admin, secrets, admin2) = (
            at("ReadWritePaths=/srv/media"),
            at("EnvironmentFile=/etc/relctl/new.env"),
            at("Environment=ADMIN=development"),
        );
        assert!(env < admin && admin < secrets && secrets < admin2, "systemd's order: {p:#?}");
        assert!(!p.iter().any(|x| x.contains("/old/secrets.env") || x == "User=root"), "{p:#?}");
        assert_eq!(
            &p[p.len() - 3..],
            [
                format!("WorkingDirectory={}", release.display()),
                "TimeoutStartSec=900".into(),
                "TimeoutStopSec=10".into()
            ]
        );

        // A build without secrets: relctl's old drop-in is not applied.
        let src = ServiceSources { relctl_dropin: (&dropin, None), ..src };
        let p = service_unit_properties(&src, &[&main.link], release, Duration::from_secs(5)).unwrap();
        assert!(!p.iter().any(|x| x.contains("secrets.env") || x.contains("new.env")), "{p:#?}");
    }

    #[test]
    fn runs_in_cwd_with_env_and_captures_both_streams() {
        let env = [("RELCTL_BUILD".to_string(), "development".to_string())].into();
        let r = run(&hook("pwd; echo $RELCTL_BUILD; echo err >&2"), Path::new("/usr"), &env, &mut |_| {}).unwrap();
        assert_eq!(r, "/usr\ndevelopment\nerr\n");
    }

    #[test]
    fn hooks_get_no_ssh_agent_and_no_terminal() {
        // No other test reads SSH_AUTH_SOCK.
        std::env::set_var("SSH_AUTH_SOCK", "/tmp/ssh-agent.sock");
        let r = run(
            &hook("echo \"agent=${SSH_AUTH_SOCK-none}\"; readlink /proc/self/fd/0"),
            Path::new("/"),
            &BTreeMap::new(),
            &mut |_| {},
        );
        assert_eq!(r.unwrap(), "agent=none\n/dev/null\n");
    }

    #[test]
    fn failure_reports_status_and_tail() {
        let mut seen = Vec::new();
        let err = run(&hook("seq 1 30; exit 7"), Path::new("/"), &BTreeMap::new(), &mut |l| seen.push(l.to_string()))
            .unwrap_err();
        let failed = err.downcast_ref::<HookFailed>().unwrap();
        assert_eq!(err.to_string(), "build hook `seq 1 30; exit 7` exited with status 7");
        assert_eq!(failed.tail, (11..=30).map(|i| i.to_string()).collect::<Vec<_>>().join("\n"));
        assert_eq!(seen, (1..=30).map(|i| i.to_string()).collect::<Vec<_>>(), "every line was handed over");
    }

    #[test]
    fn lines_are_handed_over_as_the_hook_prints_them() {
        let started = Instant::now();
        let mut seen: Vec<(String, Duration)> = Vec::new();
        let out = run(&hook("echo a; sleep 1; echo b >&2"), Path::new("/"), &BTreeMap::new(), &mut |l| {
            seen.push((l.to_string(), started.elapsed()))
        })
        .unwrap();
        let ended = started.elapsed();
        assert_eq!(out, "a\nb\n");
        let lines: Vec<&str> = seen.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(lines, ["a", "b"]);
        let a = seen[0].1;
        assert!(a + Duration::from_millis(700) < ended, "`a` came at {a:?}, before the hook ended at {ended:?}");
    }

    #[test]
    fn lines_keep_what_the_output_holds() {
        let mut seen = Vec::new();
        let raw = read_lines(&b"one\n\nt\xffo\r\nlast"[..], &mut |l| seen.push(l.to_string())).unwrap();
        assert_eq!(raw, b"one\n\nt\xffo\r\nlast", "all of it, as it came");
        assert_eq!(seen, ["one", "", "t\u{fffd}o\r", "last"], "a last line without a newline too");
        let mut seen = Vec::new();
        assert_eq!(read_lines(&b""[..], &mut |l| seen.push(l.to_string())).unwrap(), b"");
        assert!(seen.is_empty());
    }
}
