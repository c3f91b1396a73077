//! Subcommands: thin glue from parsed arguments to plans and the modules that act on them.

mod audit;
mod build;
mod control;
mod destroy;
mod diff;
mod exec;
mod history;
mod init;
mod logs;
mod maintenance;
mod nginx;
mod promote;
mod releases;
mod remote;
mod site;
mod status;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cli::{Cli, Command, GlobalArgs};
use crate::deploy::Deploy;
use crate::error::Error;
use crate::host::lock::{self, AppLock};
use crate::manifest::{self, Loaded};
use crate::name::BuildName;
use crate::plan::host;
use crate::plan::{self, AppPlan};
use crate::release::layout::BuildLayout;
use crate::report::{Mode, Report};
use crate::systemd::dbus::Systemd;

pub fn dispatch(cli: Cli) -> Result<()> {
    let g = &cli.global;
    let mut report = report(g);
    // The manifest, read once, for every command but init and completions: where the command runs
    // (its builds' hosts) and the command itself. An error is the command's to report.
    let manifest = match cli.command {
        Command::Init(_) | Command::Completions { .. } => None,
        _ => Some(load(g)),
    };
    let loaded_ok = manifest.as_ref().and_then(|m| m.as_ref().ok());
    match remote::place(&cli, loaded_ok)? {
        remote::Place::Here => {}
        place => return remote::run(&cli, place, manifest, &report),
    }
    let audit = loaded_ok.and_then(|l| audit::Pending::begin(&cli.command, l));
    let r = &mut report;
    let loaded = || manifest.expect("read for every command but init and completions");
    let result = run_here(cli.command, loaded, g, r);
    if let Some(pending) = audit {
        pending.finish(&result, r);
    }
    result
}

fn run_here(command: Command, loaded: impl FnOnce() -> Result<Loaded>, g: &GlobalArgs, r: &mut Report) -> Result<()> {
    match command {
        Command::Init(args) => init::run(&args, g, r),
        Command::Build(args) => build::run(&loaded()?, &args, g, r),
        Command::Diff(a) => diff::run(&loaded()?, &a.build, r),
        Command::Start(a) => control::start(&loaded()?, &a.build, g, r),
        Command::Stop(a) => control::stop(&loaded()?, &a.build, g, r),
        Command::Restart(a) => control::restart(&loaded()?, a.build.as_ref(), a.process.as_deref(), g, r),
        Command::Reload(a) => control::reload(&loaded()?, &a.build, g, r),
        Command::Releases(a) => releases::list(&loaded()?, &a.build, r),
        Command::Rollback(a) => releases::rollback(&loaded()?, &a, g, r),
        Command::Promote(a) => promote::run(&loaded()?, &a, g, r),
        Command::Destroy(args) => destroy::run(&loaded()?, &args, g, r),
        Command::Status(a) => status::run(&loaded()?, a.build.as_ref(), r),
        Command::History(a) => history::run(&loaded()?, &a, r),
        Command::Logs(a) => logs::run(&loaded()?, &a, r),
        Command::Maintenance(a) => maintenance::run(&loaded()?, &a, g, r),
        Command::NginxSnippet(args) => nginx::run(&loaded()?, &args, r),
        Command::Site(args) => site::run(&loaded()?, crate::site::Run::Site, args.dry_run, g, r),
        Command::Renew => site::run(&loaded()?, crate::site::Run::Renew, false, g, r),
        Command::Exec(args) => exec::run(&loaded()?, &args, g, r),
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics when a write fails (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut crate::cli::command(), "relctl", &mut script);
            crate::report::out_raw(&script);
            Ok(())
        }
    }
}

fn load(g: &GlobalArgs) -> Result<Loaded> {
    let cwd = std::env::current_dir().context("finding the current directory to look for relctl.toml")?;
    let path = manifest::locate(g.manifest.as_deref(), &cwd)?;
    manifest::load(&path)
}

fn report(g: &GlobalArgs) -> Report {
    let mode = if g.json {
        Mode::Json
    } else if g.quiet {
        Mode::Quiet
    } else {
        Mode::Human
    };
    Report::new(mode, g.verbose)
}

/// What every command that changes an app needs, in this order: the manifest's app resolved and
/// the build name checked (usage errors first, before anything is touched), root, a connection
/// to systemd, and the app's lock (held until the session is dropped; `exec` takes none).
pub struct Session {
    pub app: AppPlan,
    pub systemd: Systemd,
    _lock: Option<AppLock>,
    /// `--no-wait`, for the build's switch lock.
    no_wait: bool,
}

impl Session {
    /// For a command on one build (`relctl <verb> <build>`): also returns the build's paths.
    pub fn for_build(
        loaded: &Loaded,
        g: &GlobalArgs,
        report: &Report,
        verb: &str,
        build: &BuildName,
    ) -> Result<(Session, BuildLayout)> {
        Session::open_build(loaded, Some((g, report)), verb, build, false, &[], |_| Ok(())).map(|(s, b, ())| (s, b))
    }

    /// Like [`Session::for_build`], with `plan` run on the build once the usage and root checks
    /// passed, before the app's lock is taken: what the command resolves from the build as it is
    /// (rollback's target), so that nothing is touched when it cannot be.
    pub fn for_build_planned<T>(
        loaded: &Loaded,
        g: &GlobalArgs,
        report: &Report,
        verb: &str,
        build: &BuildName,
        plan: impl FnOnce(&BuildLayout) -> Result<T>,
    ) -> Result<(Session, BuildLayout, T)> {
        Session::open_build(loaded, Some((g, report)), verb, build, false, &[], plan)
    }

    /// For `relctl build <BUILD> --adopt`: like [`Session::for_build`], with the hand-made unit
    /// files in `adopting` allowed (the build replaces them).
    pub fn for_adoption(
        loaded: &Loaded,
        g: &GlobalArgs,
        report: &Report,
        build: &BuildName,
        adopting: &[PathBuf],
    ) -> Result<(Session, BuildLayout)> {
        Session::open_build(loaded, Some((g, report)), "build", build, false, adopting, |_| Ok(()))
            .map(|(s, b, ())| (s, b))
    }

    /// Like [`Session::for_build`], for a command that needs a release to run (start, restart,
    /// reload): a build that was never built is refused before anything is touched.
    pub fn for_built(
        loaded: &Loaded,
        g: &GlobalArgs,
        report: &Report,
        verb: &str,
        build: &BuildName,
    ) -> Result<(Session, BuildLayout)> {
        Session::open_build(loaded, Some((g, report)), verb, build, true, &[], |_| Ok(())).map(|(s, b, ())| (s, b))
    }

    /// Like [`Session::for_built`], without the app's lock, for a command that changes nothing
    /// of the app's and may run for as long as its user likes (`exec`): it must not hold up
    /// deploys.
    pub fn for_built_unlocked(loaded: &Loaded, verb: &str, build: &BuildName) -> Result<(Session, BuildLayout)> {
        Session::open_build(loaded, None, verb, build, true, &[], |_| Ok(())).map(|(s, b, ())| (s, b))
    }

    /// `lock`: take the app's lock, with these flags and this report for the waiting message.
    /// `plan` runs after the usage and root checks, before systemd and the lock.
    fn open_build<T>(
        loaded: &Loaded,
        lock: Option<(&GlobalArgs, &Report)>,
        verb: &str,
        build: &BuildName,
        must_be_built: bool,
        adopting: &[PathBuf],
        plan: impl FnOnce(&BuildLayout) -> Result<T>,
    ) -> Result<(Session, BuildLayout, T)> {
        let app = plan::app(loaded)?;
        loaded.build(build)?;
        let layout = app.layout.build(build);
        if must_be_built {
            require_release(&layout)?;
        }
        preflight(&app, &format!("relctl {verb} {build}"), adopting)?;
        let planned = plan(&layout)?;
        Ok((Session::open(app, lock)?, layout, planned))
    }

    /// For a command on the whole app (`relctl <verb>`).
    pub fn for_app(loaded: &Loaded, g: &GlobalArgs, report: &Report, verb: &str) -> Result<Session> {
        let app = plan::app(loaded)?;
        preflight(&app, &format!("relctl {verb}"), &[])?;
        Session::open(app, Some((g, report)))
    }

    /// After [`preflight`]: systemd, and the app's lock.
    fn open(app: AppPlan, lock: Option<(&GlobalArgs, &Report)>) -> Result<Session> {
        let systemd = Systemd::connect()?;
        let no_wait = lock.is_some_and(|(g, _)| g.no_wait);
        let lock = match lock {
            Some((g, report)) => {
                let holder = std::env::args().collect::<Vec<_>>().join(" ");
                let dir = Path::new(lock::LOCK_DIR);
                let wait = (!g.no_wait).then_some(lock::APP_LOCK_WAIT);
                // Shown from when another relctl turns out to hold the lock until it is taken.
                let waiting = std::cell::RefCell::new(None);
                let locked = lock::acquire(dir, &app.layout.app, &holder, wait, |msg| {
                    report.warn(msg);
                    waiting.replace(Some(report.waiting("lock", msg.trim_start_matches("relctl: "))));
                });
                drop(waiting);
                Some(locked?)
            }
            None => None,
        };
        Ok(Session { app, systemd, _lock: lock, no_wait })
    }

    /// The deploy actions on `build` of this session's app.
    pub fn deploy<'a>(&'a self, build: &'a BuildLayout, report: &'a mut Report) -> Deploy<'a> {
        Deploy::new(&self.app, build, &self.systemd, report).no_wait(self.no_wait)
    }
}

/// What a session checks before anything is touched: the host (usage errors first), then root.
fn preflight(app: &AppPlan, what: &str, adopting: &[PathBuf]) -> Result<()> {
    host::check_host(app, adopting)?;
    require_root(what)
}

/// The build has a current release whose directory exists.
fn require_release(layout: &BuildLayout) -> Result<()> {
    let build = &layout.build;
    match layout.current_release()? {
        None => Err(Error::Usage(format!(
            "build {build} has no release yet ({} does not exist); run: relctl build {build}",
            layout.current.display()
        ))
        .into()),
        Some(id) if !layout.release_dir(&id).is_dir() => Err(Error::Usage(format!(
            "build {build}'s current release {id} is missing ({} was removed); run relctl build {build}, or relctl rollback {build} to go back to an earlier release",
            layout.release_dir(&id).display()
        ))
        .into()),
        Some(_) => Ok(()),
    }
}

/// relctl writes /opt and /etc/systemd/system and asks systemd to start units: it needs root.
fn require_root(what: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "{what} needs root (it changes files under /opt and /etc/systemd/system and asks systemd to start and stop units); run it with sudo"
        );
    }
    Ok(())
}

/// `--migrate` / `--schema-compatible` of rollback and promote.
fn schema_mode(args: &crate::cli::SchemaArgs) -> crate::migrations::Mode {
    match (args.migrate, args.schema_compatible) {
        (true, _) => crate::migrations::Mode::Unapply,
        (false, true) => crate::migrations::Mode::Tolerate,
        (false, false) => crate::migrations::Mode::Refuse,
    }
}
