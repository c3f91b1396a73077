//! `relctl exec`: one command run the way the service runs (as its user, in its release, with its
//! environment, secrets and sandbox) in a transient unit of its own,
//! `<app>-exec-<build>-<random>.service`.
//!
//! The transient unit's settings are derived, never listed by hand: they are the `[Service]`
//! settings of the files systemd runs `<app>@<build>.service` from, in the order systemd applies
//! them: its unit file (`FragmentPath`, the one relctl rendered from `units/app@.service.tera`) and
//! its drop-ins (`DropInPaths`: relctl's `50-relctl.conf`, which names the secrets file, and any of
//! the admin's, e.g. a `ReadWritePaths=`). Reading what systemd runs rather than rendering the
//! template again also keeps exec and the service alike when relctl.toml changed since the last
//! build. On the way, specifiers (`%i`, `%C`, `%t`, ...) are expanded to the build's values (a
//! transient unit's properties get no specifier expansion), paths through `current` are pinned to
//! the release `current` points at when exec starts, and the settings that only make sense for a
//! long-running service are left out ([`NOT_FOR_A_COMMAND`]).
//!
//! `systemd-run` starts the unit, rather than relctl calling `StartTransientUnit` over zbus: it
//! turns each `Key=Value` into its D-Bus property with systemd's own parser (the one `systemctl
//! set-property` uses), so every setting a unit file may hold is understood as written, by the
//! systemd release that runs it; it gives the command a pseudo terminal (`--pty`: raw mode, window
//! size, hang-up) or the caller's stdin, stdout and stderr (`--pipe`); and it waits for the unit to
//! end and exits with the command's status. Over zbus, relctl would keep a hand-written mapping of
//! some eighty settings to D-Bus types, and a terminal forwarder, in step with systemd.
//!
//! What else is on purpose:
//! - The service's runtime directory is shared (`XDG_RUNTIME_DIR` as the service has it), and a
//!   unit that declares a `RuntimeDirectory=` removes it when it stops, live service or not:
//!   `RuntimeDirectoryPreserve=yes` is the exec unit's last setting.
//! - `Type=oneshot`: no start timeout for a long interactive session, and a command killed by
//!   SIGTERM is a failure (a daemon-type unit counts it a clean exit, status 0).
//! - systemd expands `$VAR` in `ExecStart=` arguments: every `$` of the command line is given as
//!   `$$`. The command runs through `/bin/sh -c 'exec "$@"'`, so a bare name is looked up in the
//!   service's `PATH` as the release's start script does.
//! - `-e` values go to systemd in a file only root can read, the last `EnvironmentFile=`: they win
//!   over the release's environment and the secrets, and never show in the unit's properties.
//! - When relctl is interrupted, or systemd-run ends before the unit does, relctl stops the unit:
//!   nothing of exec's stays running. `--collect` has systemd unload it once it ended, whatever
//!   its result.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::error::Error;
use crate::plan::script::resolve_program;
use crate::plan::AppPlan;
use crate::release::id::ReleaseId;
use crate::release::layout::BuildLayout;
use crate::report::Report;
use crate::systemd::dbus::Systemd;
use crate::systemd::manager::Manager;
use crate::systemd::unit::UnitFiles;

/// Service settings that do not apply to one command run to its end: how a long-running service
/// starts, reports, restarts, times out and stops, and its standard input and output (the
/// command's are the caller's). Without `KillMode=`, stopping the command stops all of its
/// processes at once; without `SuccessExitStatus=`, its exit status comes back as it is.
pub const NOT_FOR_A_COMMAND: &[&str] = &[
    "Type",
    "ExitType",
    "NotifyAccess",
    "PIDFile",
    "BusName",
    "GuessMainPID",
    "RemainAfterExit",
    "ExecCondition",
    "ExecStartPre",
    "ExecStart",
    "ExecStartPost",
    "ExecReload",
    "ExecStop",
    "ExecStopPost",
    "Restart",
    "RestartSec",
    "RestartSteps",
    "RestartMaxDelaySec",
    "RestartMode",
    "RestartPreventExitStatus",
    "RestartForceExitStatus",
    "SuccessExitStatus",
    "TimeoutSec",
    "TimeoutStartSec",
    "TimeoutStopSec",
    "TimeoutAbortSec",
    "TimeoutStartFailureMode",
    "TimeoutStopFailureMode",
    "RuntimeMaxSec",
    "RuntimeRandomizedExtraSec",
    "WatchdogSec",
    "WatchdogSignal",
    "ReloadSignal",
    "KillMode",
    "Sockets",
    "NonBlocking",
    "FileDescriptorStoreMax",
    "FileDescriptorStorePreserve",
    "USBFunctionDescriptors",
    "USBFunctionStrings",
    "StandardInput",
    "StandardInputText",
    "StandardInputData",
    "StandardOutput",
    "StandardError",
    "TTYPath",
    "TTYReset",
    "TTYVHangup",
    "TTYVTDisallocate",
];

/// The setting that keeps the service's runtime directory when the exec unit stops.
const PRESERVE_RUNTIME_DIRECTORY: &str = "RuntimeDirectoryPreserve=yes";

/// The shell that runs the command: `exec "$@"` looks a bare name up in the unit's `PATH`.
const SHELL: [&str; 4] = ["/bin/sh", "-c", "exec \"$@\"", "relctl-exec"];

/// One `relctl exec`, resolved.
#[derive(Debug, Clone, Serialize)]
pub struct ExecPlan {
    /// `<app>-exec-<build>-<random>.service`
    pub unit: String,
    pub description: String,
    /// The service unit the settings come from.
    pub service_unit: String,
    pub release: ReleaseId,
    pub release_dir: PathBuf,
    /// `Key=Value` settings, in order, for `systemd-run --property`.
    pub properties: Vec<String>,
    /// The unit's command line, `$` given as `$$`.
    pub exec_start: Vec<String>,
    /// `-e` variables: may hold secrets, never printed.
    #[serde(skip)]
    pub env: BTreeMap<String, String>,
}

/// Resolves `relctl exec <build> -- <command>` of the `release` `current` points at: reads the
/// files systemd runs the build's service from (`files`) and derives the exec unit from them.
pub fn plan(
    app: &AppPlan,
    build: &BuildLayout,
    release: &ReleaseId,
    files: &UnitFiles,
    command: &[String],
    env: BTreeMap<String, String>,
) -> Result<ExecPlan> {
    let mut sources = Vec::new();
    let fragment = read(&files.fragment)?;
    if !fragment.contains(crate::release::layout::MARKER) {
        bail!(
            "{} (which systemd runs {} from) was not written by relctl (it has no \"{}\" line); relctl exec only runs commands with the settings of relctl's units",
            files.fragment.display(),
            build.service_unit,
            crate::release::layout::MARKER
        );
    }
    sources.push((files.fragment.clone(), fragment));
    for path in &files.drop_ins {
        sources.push((path.clone(), read(path)?));
    }
    let release_dir = build.release_dir(release);
    let specifiers = Specifiers { unit: &build.service_unit, user: &app.user };
    let main = app.layout.instance(&build.build, crate::release::layout::Slot::Main);
    let properties = service_properties(&sources, &specifiers, &[&main.link, &build.current], &release_dir)?;
    Ok(ExecPlan {
        unit: unit_name(&app.layout.app, &build.build),
        description: format!("relctl exec in {} {}, release {release}", app.layout.app, build.build),
        service_unit: build.service_unit.clone(),
        release: release.clone(),
        exec_start: exec_start(&release_dir, command),
        release_dir,
        properties,
        env,
    })
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("reading {}, a unit file systemd runs the service with", path.display()))
}

/// A fresh unit name that says what it runs: `<app>-exec-<build>-<8 hex digits>.service`.
pub fn unit_name(app: &str, build: &str) -> String {
    format!("{app}-exec-{build}-{:08x}.service", fastrand::u32(..))
}

/// The `[Service]` settings of `sources` (unit file, then drop-ins: path and text), as the exec
/// unit's `Key=Value` properties: specifiers expanded, the release links (`links`: main's link,
/// and `current`, which units of earlier relctls ran on) pinned to `release_dir`,
/// [`NOT_FOR_A_COMMAND`] left out, [`PRESERVE_RUNTIME_DIRECTORY`] last.
pub fn service_properties(
    sources: &[(PathBuf, String)],
    specifiers: &Specifiers,
    links: &[&Path],
    release_dir: &Path,
) -> Result<Vec<String>> {
    let mut properties = Vec::new();
    for (path, text) in sources {
        for setting in service_section(text) {
            if NOT_FOR_A_COMMAND.contains(&setting.key.as_str()) {
                continue;
            }
            let what = format!("{}:{}: {}=", path.display(), setting.line, setting.key);
            let value = specifiers.expand(&setting.value).with_context(|| what.clone())?;
            let pinned = links.iter().fold(value, |v, link| pin(&v, link, release_dir));
            properties.push(format!("{}={}", setting.key, pinned));
        }
    }
    properties.push(PRESERVE_RUNTIME_DIRECTORY.to_string());
    Ok(properties)
}

/// One `Key=Value` line of a unit file.
#[derive(Debug, PartialEq, Eq)]
struct Setting {
    /// 1-based, where the setting starts.
    line: usize,
    key: String,
    value: String,
}

/// The settings of the `[Service]` sections of a unit file, in order, as systemd reads them:
/// `#` and `;` comment lines skipped, a line ending in `\` continued on the next (joined with a
/// space), keys and values trimmed.
fn service_section(text: &str) -> Vec<Setting> {
    let mut settings = Vec::new();
    let mut in_service = false;
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (start, mut joined) = match pending.take() {
            Some((start, before)) => (start, format!("{before} {line}")),
            None => (i + 1, line.to_string()),
        };
        if let Some(cut) = joined.strip_suffix('\\') {
            pending = Some((start, cut.to_string()));
            continue;
        }
        joined = joined.trim().to_string();
        if joined.starts_with('[') && joined.ends_with(']') {
            in_service = joined == "[Service]";
        } else if let (true, Some((key, value))) = (in_service, joined.split_once('=')) {
            settings.push(Setting { line: start, key: key.trim().to_string(), value: value.trim().to_string() });
        }
    }
    settings
}

/// What the specifiers of a system service unit stand for (systemd.unit(5), "Specifiers").
pub struct Specifiers<'a> {
    /// The service unit, e.g. `medctrl@development.service`.
    pub unit: &'a str,
    /// Its `User=` (and `Group=`: relctl's units run as the user's own group).
    pub user: &'a str,
}

impl Specifiers<'_> {
    /// `value` with its specifiers replaced. One that depends on the host or the running system
    /// (`%H`, `%m`, `%b`, ...) is an error: the service resolves it when it starts, the exec unit
    /// could not tell the same.
    fn expand(&self, value: &str) -> Result<String> {
        let name = self.unit.rsplit_once('.').map_or(self.unit, |(n, _)| n);
        let (prefix, instance) = name.split_once('@').unwrap_or((name, ""));
        // Unit names relctl makes hold no `\x..` escapes: unescaping is `-` -> `/`.
        let unescape = |s: &str| s.replace('-', "/");
        let last = |s: &str| s.rsplit_once('-').map_or(s.to_string(), |(_, l)| l.to_string());
        let mut out = String::with_capacity(value.len());
        let mut chars = value.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let Some(spec) = chars.next() else { bail!("a lone '%' at the end (write %% for a percent sign)") };
            let replacement = match spec {
                '%' => "%".to_string(),
                'i' => instance.to_string(),
                'I' => unescape(instance),
                'n' => self.unit.to_string(),
                'N' => name.to_string(),
                'p' => prefix.to_string(),
                'P' => unescape(prefix),
                'j' => last(prefix),
                'J' => unescape(&last(prefix)),
                'f' => format!("/{}", unescape(if instance.is_empty() { prefix } else { instance })),
                'u' | 'g' => self.user.to_string(),
                't' => "/run".into(),
                'S' => "/var/lib".into(),
                'C' => "/var/cache".into(),
                'L' => "/var/log".into(),
                'E' => "/etc".into(),
                'T' => "/tmp".into(),
                'V' => "/var/tmp".into(),
                other => bail!(
                    "relctl exec cannot expand the specifier %{other} (it supports %i %I %n %N %p %P %j %J %f %u %g %t %S %C %L %E %T %V and %%)"
                ),
            };
            out.push_str(&replacement);
        }
        Ok(out)
    }
}

/// `value` with the path `link` (`<root>/<build>/current`) replaced by `release_dir` wherever it
/// is a whole path or a path's leading part.
fn pin(value: &str, link: &Path, release_dir: &Path) -> String {
    let link = link.display().to_string();
    let release = release_dir.display().to_string();
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find(&link) {
        let after = &rest[at + link.len()..];
        out.push_str(&rest[..at]);
        let whole = after.chars().next().is_none_or(|c| c == '/' || c.is_whitespace());
        out.push_str(if whole { &release } else { &link });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The exec unit's command line: `command` through [`SHELL`], its program resolved against the
/// release like `[service] exec`, every `$` given as `$$`.
fn exec_start(release_dir: &Path, command: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = SHELL.iter().map(|s| s.to_string()).collect();
    if let Some((program, args)) = command.split_first() {
        argv.push(resolve_program(release_dir, program));
        argv.extend(args.iter().cloned());
    }
    argv.into_iter().map(|a| a.replace('$', "$$")).collect()
}

/// The `-e KEY=VALUE` and `-e KEY` arguments as variables; `lookup` gives the value of a bare
/// `KEY` (relctl's environment). Usage errors name the argument.
pub fn env_args(args: &[String], lookup: impl Fn(&str) -> Option<String>) -> Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for arg in args {
        let key = arg.split_once('=').map_or(arg.as_str(), |(k, _)| k);
        let valid = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(Error::Usage(format!(
                "-e {arg}: \"{key}\" is not a variable name (letters, digits and '_', not starting with a digit)"
            ))
            .into());
        }
        let value = match arg.split_once('=') {
            Some((_, v)) => v.to_string(),
            None => lookup(key).ok_or_else(|| {
                Error::Usage(format!(
                    "-e {key}: {key} is not set in relctl's environment (give its value: -e {key}=VALUE)"
                ))
            })?,
        };
        if value.contains(['\n', '\r']) {
            return Err(
                Error::Usage(format!("-e {key}: the value has a line break, which relctl does not pass")).into()
            );
        }
        env.insert(key.to_string(), value);
    }
    Ok(env)
}

/// Runs the plan with systemd-run, passing the terminal or stdin/stdout/stderr through, and
/// returns the command's exit status.
pub fn run(plan: &ExecPlan, systemd: &Systemd, report: &Report) -> Result<u8> {
    let systemd_run = which::which("systemd-run")
        .context("relctl exec runs the command with systemd-run, which is not installed (it comes with systemd)")?;
    let env_file = env_file(&plan.unit, &plan.env)?;
    let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let mut args: Vec<String> = vec![
        format!("--unit={}", plan.unit),
        format!("--description={}", plan.description),
        "--quiet".into(),
        "--collect".into(),
        "--service-type=oneshot".into(),
        if terminal { "--pty" } else { "--pipe" }.into(),
    ];
    let env_setting = env_file.as_ref().map(|f| format!("EnvironmentFile={}", f.path().display()));
    args.extend(plan.properties.iter().chain(&env_setting).map(|p| format!("--property={p}")));
    args.push("--".into());
    args.extend(plan.exec_start.iter().cloned());
    report.verbose(format!("relctl: {} {}", systemd_run.display(), args.join(" ")));

    // Until the unit ended, an interrupt is relctl's to act on (stop the unit), not a reason to
    // leave the command running on its own.
    let caught = Arc::new(AtomicUsize::new(0));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register_usize(sig, Arc::clone(&caught), sig as usize)
            .context("setting up relctl's signal handlers")?;
    }
    let mut child = Command::new(&systemd_run)
        .args(&args)
        .spawn()
        .with_context(|| format!("starting {}", systemd_run.display()))?;
    let mut stopping = false;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for systemd-run")? {
            break status;
        }
        let sig = caught.load(Ordering::SeqCst);
        if sig != 0 && !stopping {
            stopping = true;
            report.warn(format!("relctl: {}: stopping {}", signal_name(sig), plan.unit));
            if let Err(e) = systemd.stop_if_running(&plan.unit) {
                report.warn(format!("relctl: {e:#}"));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // systemd-run returns once the unit ended, unless it was killed itself.
    if systemd.stop_if_running(&plan.unit)? {
        report.warn(format!("relctl: systemd-run ended ({status}) before {}; stopped it", plan.unit));
    }
    if let Some(f) = env_file {
        f.close().context("removing the -e environment file")?;
    }
    let interrupted = caught.load(Ordering::SeqCst);
    if interrupted != 0 {
        // Stopped on relctl's interrupt: exit as a shell reports a command a signal ended.
        return Ok(u8::try_from(128 + interrupted).unwrap_or(u8::MAX));
    }
    let code = match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
        (Some(code), _) => u8::try_from(code).unwrap_or(u8::MAX),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(u8::MAX),
        (None, None) => u8::MAX,
    };
    if let Some(note) = exit_note(code, &plan.unit) {
        report.warn(note);
    }
    Ok(code)
}

/// The `-e` variables in a file only root reads (systemd reads it as root when the command
/// starts), removed when dropped; none without variables.
fn env_file(unit: &str, env: &BTreeMap<String, String>) -> Result<Option<tempfile::NamedTempFile>> {
    if env.is_empty() {
        return Ok(None);
    }
    let dir = Path::new(crate::host::lock::LOCK_DIR);
    crate::host::lock::private_dir(dir)?;
    let mut file = tempfile::Builder::new()
        .prefix(&format!("{unit}-"))
        .suffix(".env")
        .tempfile_in(dir)
        .with_context(|| format!("creating the -e environment file in {}", dir.display()))?;
    file.write_all(crate::release::render::env_file(env)?.as_bytes())
        .and_then(|()| file.flush())
        .with_context(|| format!("writing {}", file.path().display()))?;
    Ok(Some(file))
}

fn signal_name(sig: usize) -> String {
    i32::try_from(sig)
        .ok()
        .and_then(|s| nix::sys::signal::Signal::try_from(s).ok())
        .map_or_else(|| format!("signal {sig}"), |s| s.as_str().to_string())
}

/// A line on an exit status that may not be the command's own: systemd-run reports 255 for a
/// command killed by a signal, and systemd exits 200 to 243 when it cannot set a unit's process up
/// (systemd.exec(5), "Process exit codes").
fn exit_note(code: u8, unit: &str) -> Option<String> {
    match code {
        200..=243 => Some(format!(
            "relctl: exit status {code} is systemd's for a command it could not start (see systemd.exec(5), \"Process exit codes\"), unless the command exited {code} itself; see journalctl -u {unit}"
        )),
        255 => Some(format!(
            "relctl: exit status 255: the command was killed by a signal, or exited 255; see journalctl -u {unit}"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{self, Loaded};

    const EXAMPLE: &str = "app = \"medctrl\"\ncomponent = \"backend\"\n[service]\nexec = \"x\"\n[builds.development]\n";
    const RELEASE: &str = "/opt/medctrl/backend/development/releases/20261123T130501Z";

    fn app(extra: &str) -> AppPlan {
        let text = format!("{EXAMPLE}{extra}");
        let loaded =
            Loaded { path: "/srv/relctl.toml".into(), dir: "/srv".into(), manifest: manifest::parse(&text).unwrap() };
        crate::plan::app(&loaded).unwrap()
    }

    /// The exec unit's properties for the example's development build, from its rendered service
    /// unit and `drop_ins`.
    fn properties(app: &AppPlan, drop_ins: &[&str]) -> Result<Vec<String>> {
        let unit = crate::plan::units::render(app).unwrap().swap_remove(0);
        let mut sources = vec![(unit.path, unit.contents)];
        for (i, d) in drop_ins.iter().enumerate() {
            sources.push((
                PathBuf::from(format!("/etc/systemd/system/medctrl@development.service.d/{i}.conf")),
                d.to_string(),
            ));
        }
        let b = app.layout.build(&"development".parse().unwrap());
        let specifiers = Specifiers { unit: &b.service_unit, user: &app.user };
        let main = app.layout.instance("development", crate::release::layout::Slot::Main);
        service_properties(&sources, &specifiers, &[&main.link, &b.current], Path::new(RELEASE))
    }

    #[test]
    fn the_exec_unit_carries_the_services_settings_expanded_and_pinned_to_the_release() {
        let p = properties(&app("[hardening]\nip_address_allow = [\"localhost\"]\n"), &[]).unwrap();
        let has = |want: &str| p.iter().any(|x| x == want);
        for want in [
            "User=medctrl",
            "Group=medctrl",
            &format!("WorkingDirectory={RELEASE}"),
            &format!("EnvironmentFile={RELEASE}/.relctl/environment"),
            "StateDirectory=medctrl/backend/development",
            "CacheDirectory=medctrl/backend/development",
            "RuntimeDirectory=medctrl/backend/development",
            "Environment=HOME=/var/cache/medctrl/backend/development XDG_RUNTIME_DIR=/run/medctrl/backend/development",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "CapabilityBoundingSet=",
            "SystemCallFilter=@system-service",
            "SystemCallFilter=~@privileged @resources",
            "IPAddressDeny=any",
            "IPAddressAllow=localhost",
            "UMask=0077",
        ] {
            assert!(has(want), "missing {want:?} in {p:#?}");
        }
        assert_eq!(p.last().map(String::as_str), Some(PRESERVE_RUNTIME_DIRECTORY), "preserving comes last");
        for gone in ["Type=", "NotifyAccess=", "ExecStart", "ExecReload=", "Restart", "Timeout", "KillMode="] {
            assert!(!p.iter().any(|x| x.starts_with(gone)), "{gone} kept: {p:#?}");
        }
        assert!(!p.iter().any(|x| x.contains('%') || x.contains("/current") || x.contains(".relctl-main")), "{p:#?}");
        // Every hardening line of the service is there, in the service's order.
        let unit = crate::plan::units::render(&app("[hardening]\nip_address_allow = [\"localhost\"]\n"))
            .unwrap()
            .swap_remove(0)
            .contents;
        let hardening: Vec<&str> = unit
            .lines()
            .skip_while(|l| !l.starts_with("NoNewPrivileges"))
            .take_while(|l| !l.starts_with('['))
            .filter(|l| l.contains('='))
            .collect();
        let kept: Vec<&str> = p.iter().map(String::as_str).skip_while(|l| !l.starts_with("NoNewPrivileges")).collect();
        assert_eq!(&kept[..kept.len() - 1], hardening.as_slice());
    }

    #[test]
    fn the_manifests_hardening_and_drop_ins_come_along_in_systemds_order() {
        for open in ["", "[hardening]\nip_address_allow = [\"any\"]\n"] {
            let relaxed = properties(&app(open), &[]).unwrap();
            assert!(!relaxed.iter().any(|p| p.starts_with("IPAddress")), "{open}: {relaxed:#?}");
        }
        let p = properties(
            &app(""),
            &[
                "# relctl's\n[Service]\nEnvironmentFile=/srv/secrets/development.env\n",
                "[Unit]\nDescription=ignored\n[Service]\nReadWritePaths=/srv/media/%i\\\n  /srv/%p-%%\nRestart=always\nEnvironment=X=1\n",
            ],
        )
        .unwrap();
        let tail: Vec<&str> = p.iter().rev().take(4).rev().map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "EnvironmentFile=/srv/secrets/development.env",
                "ReadWritePaths=/srv/media/development /srv/medctrl-%",
                "Environment=X=1",
                PRESERVE_RUNTIME_DIRECTORY
            ]
        );
        let err = properties(&app(""), &["[Service]\nEnvironment=HOST=%H\n"]).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.starts_with("/etc/systemd/system/medctrl@development.service.d/0.conf:2: Environment=: relctl exec cannot expand the specifier %H"), "{msg}");
    }

    #[test]
    fn specifiers_expand_to_the_builds_values() {
        let s = Specifiers { unit: "med-ctrl@my-build.service", user: "medctrl" };
        assert_eq!(
            s.expand("%i %I %n %N %p %P %j %f %u %%i").unwrap(),
            "my-build my/build med-ctrl@my-build.service med-ctrl@my-build med-ctrl med/ctrl ctrl /my/build medctrl %i"
        );
        assert_eq!(s.expand("%t %S %C %L %E %T %V").unwrap(), "/run /var/lib /var/cache /var/log /etc /tmp /var/tmp");
        assert!(s.expand("50%").is_err() && s.expand("%m").is_err());
    }

    #[test]
    fn current_is_pinned_only_as_a_whole_path() {
        let link = Path::new("/opt/a/c/dev/current");
        let rel = Path::new("/opt/a/c/dev/releases/r1");
        assert_eq!(pin("/opt/a/c/dev/current", link, rel), "/opt/a/c/dev/releases/r1");
        assert_eq!(pin("-/opt/a/c/dev/current/.relctl/env /x", link, rel), "-/opt/a/c/dev/releases/r1/.relctl/env /x");
        assert_eq!(
            pin("/opt/a/c/dev/current2 /opt/a/c/dev/current", link, rel),
            "/opt/a/c/dev/current2 /opt/a/c/dev/releases/r1"
        );
    }

    #[test]
    fn unit_files_are_read_as_systemd_reads_them() {
        let text = "[Service]\n  # c\n; c\nA = 1 \nB=x\\\n# inside\n  y\n[Install]\nC=2\n[Service]\nD=\n";
        let settings = service_section(text);
        let got: Vec<(usize, &str, &str)> =
            settings.iter().map(|s| (s.line, s.key.as_str(), s.value.as_str())).collect();
        assert_eq!(got, [(4, "A", "1"), (5, "B", "x y"), (11, "D", "")]);
    }

    #[test]
    fn the_command_resolves_like_the_services_exec_and_keeps_its_dollars() {
        let argv = exec_start(Path::new("/r"), &[".venv/bin/python".into(), "API/manage.py".into(), "$HOME".into()]);
        assert_eq!(
            argv,
            ["/bin/sh", "-c", "exec \"$$@\"", "relctl-exec", "/r/.venv/bin/python", "API/manage.py", "$$HOME"]
        );
        assert_eq!(exec_start(Path::new("/r"), &["./run".into()])[4], "/r/run");
        assert_eq!(exec_start(Path::new("/r"), &["id".into()])[4], "id");
    }

    #[test]
    fn env_arguments_are_checked() {
        let lookup = |k: &str| (k == "FROM_ENV").then(|| "v a=l".to_string());
        let args = |a: &[&str]| env_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>(), lookup);
        let env = args(&["A=1", "B=x=y z", "FROM_ENV", "_E="]).unwrap();
        assert_eq!(
            env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            ["A=1", "B=x=y z", "FROM_ENV=v a=l", "_E="]
        );
        for (bad, msg) in [
            (&["NOPE"][..], "-e NOPE: NOPE is not set in relctl's environment"),
            (&["1A=x"], "\"1A\" is not a variable name"),
            (&["1A"], "-e 1A: \"1A\" is not a variable name"),
            (&["=x"], "\"\" is not a variable name"),
            (&["A-B=x"], "\"A-B\" is not a variable name"),
            (&["A=x\ny"], "-e A: the value has a line break"),
        ] {
            let err = args(bad).unwrap_err();
            assert!(crate::error::is_usage(&err) && err.to_string().contains(msg), "{bad:?}: {err}");
        }
    }

    #[test]
    fn unit_names_say_what_they_run_and_differ() {
        let (a, b) = (unit_name("medctrl", "development"), unit_name("medctrl", "development"));
        assert!(a.starts_with("medctrl-exec-development-") && a.ends_with(".service") && a.len() == 41, "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn exit_statuses_that_may_not_be_the_commands_are_explained() {
        assert!(exit_note(0, "u").is_none() && exit_note(7, "u").is_none() && exit_note(199, "u").is_none());
        assert!(exit_note(200, "u").unwrap().contains("journalctl -u u"));
        assert!(exit_note(255, "u").unwrap().contains("killed by a signal"));
    }
}
