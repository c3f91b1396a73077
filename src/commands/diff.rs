//! `relctl diff BUILD`: the next build's plan compared with what is installed (`plan::diff`).

use anyhow::{Context, Result};

use crate::error::{self, Error};
use crate::manifest::Loaded;
use crate::name::BuildName;
use crate::plan;
use crate::plan::deps::KeyCommands;
use crate::plan::diff::{self, Current};
use crate::report::{Mode, Report};

/// Exits as diff(1) does: 0 nothing differs, 1 something does ([`Error::Differs`]), 2 usage
/// errors and any failure to compare ([`Error::CannotCompare`]), never 1 for a failure.
pub fn run(loaded: &Loaded, build: &BuildName, report: &Report) -> Result<()> {
    compare(loaded, build, report).map_err(|e| match error::find(&e) {
        Some(_) => e,
        None => Error::CannotCompare(error::one_line(&e)).into(),
    })
}

fn compare(loaded: &Loaded, build: &BuildName, report: &Report) -> Result<()> {
    let app = plan::app(loaded)?;
    loaded.build(build)?;
    plan::host::check_host(&app, &[])?;
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::Usage(format!(
            "relctl diff {build} needs root: it reads the build's secrets file and its release's settings and environment, which only root can read; run it with sudo"
        ))
        .into());
    }
    let plan = plan::build::build(&app, loaded, build, jiff::Timestamp::now(), KeyCommands::NotRun)?;
    let current = Current::of(&plan.build)?;
    if current.is_none() {
        report.warn(format!("relctl: build {build} has no release yet: every file of its release would be new"));
    }
    let relctl = std::env::current_exe().context("finding relctl's own path")?;
    let site = diff::site_file(&app, loaded, build, &relctl, crate::site::has_certificate)?;
    let d = diff::diff(&plan, current.as_ref(), site.as_ref())?;
    match report.mode {
        Mode::Json => report.json(&d),
        Mode::Human => crate::report::out(d.text()),
        Mode::Quiet => {}
    }
    Ok(d.outcome()?)
}
