//! Subcommands: thin glue from parsed arguments to plans and the modules that act on them.

mod build;
mod control;
mod nginx;
mod releases;
mod status;

use std::path::Path;

use anyhow::Result;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::error::Outcome;
use crate::lock::{self, AppLock};
use crate::manifest::{self, Loaded};
use crate::report::{Mode, Report};

pub fn dispatch(cli: Cli) -> Result<Outcome> {
    let g = &cli.global;
    match cli.command {
        Command::Build(args) => build::run(&load(g)?, &args, g, &mut report(g)),
        Command::Start(a) => control::start(&load(g)?, &a.build, g, &mut report(g)),
        Command::Stop(a) => control::stop(&load(g)?, &a.build, g, &mut report(g)),
        Command::Restart(a) => control::restart(&load(g)?, a.build.as_deref(), g, &mut report(g)),
        Command::Reload(a) => control::reload(&load(g)?, &a.build, g, &mut report(g)),
        Command::Releases(a) => releases::list(&load(g)?, &a.build, &report(g)),
        Command::Rollback(a) => releases::rollback(&load(g)?, &a, g, &mut report(g)),
        Command::Status(a) => status::run(&load(g)?, a.build.as_deref(), &report(g)),
        Command::NginxSnippet(args) => nginx::run(&load(g)?, &args, &report(g)),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut crate::cli::command(), "relctl", &mut std::io::stdout());
            Ok(Outcome::Ok)
        }
    }
}

fn load(g: &GlobalArgs) -> Result<Loaded> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| Path::new("/").to_path_buf());
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

/// Takes the app's lock for a command that changes it; says who holds it while waiting.
fn lock_app(app: &str, command: &str, g: &GlobalArgs, report: &Report) -> Result<AppLock> {
    lock::acquire(Path::new(lock::LOCK_DIR), app, command, !g.no_wait, |msg| report.warn(msg))
}

/// The command line, for the lock's holder description.
fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}
