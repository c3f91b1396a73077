//! Subcommands: thin glue from parsed arguments to plans and the modules that act on them.

mod build;
mod control;
mod nginx;
mod status;

use std::path::Path;

use anyhow::Result;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::error::Outcome;
use crate::manifest::{self, Loaded};
use crate::report::{Mode, Report};

pub fn dispatch(cli: Cli) -> Result<Outcome> {
    let g = &cli.global;
    match cli.command {
        Command::Build(args) => build::run(&load(g)?, &args, &mut report(g)),
        Command::Start(a) => control::start(&load(g)?, &a.build, &mut report(g)),
        Command::Stop(a) => control::stop(&load(g)?, &a.build, &mut report(g)),
        Command::Restart(a) => control::restart(&load(g)?, a.build.as_deref(), &mut report(g)),
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
