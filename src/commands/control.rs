use std::time::Instant;

use anyhow::Result;

use super::{command_line, lock_app};
use crate::cli::GlobalArgs;
use crate::deploy;
use crate::error::Outcome;
use crate::layout::BuildLayout;
use crate::lock::AppLock;
use crate::manifest::Loaded;
use crate::plan::{self, AppPlan};
use crate::report::Report;
use crate::systemd::{JobKind, Systemd};

/// Resolves the app (and the build, when given: refused before anything else if invalid),
/// connects to systemd and takes the app's lock.
fn prepare(
    loaded: &Loaded,
    build: Option<&str>,
    g: &GlobalArgs,
    report: &Report,
) -> Result<(AppPlan, Option<BuildLayout>, Systemd, AppLock)> {
    let app = plan::app(loaded)?;
    if let Some(b) = build {
        loaded.build(b)?;
    }
    let systemd = Systemd::connect()?;
    let lock = lock_app(&app.layout.app, &command_line(), g, report)?;
    let b = build.map(|b| app.layout.build(b));
    Ok((app, b, systemd, lock))
}

pub fn start(loaded: &Loaded, build: &str, g: &GlobalArgs, report: &mut Report) -> Result<Outcome> {
    let (app, b, systemd, _lock) = prepare(loaded, Some(build), g, report)?;
    let b = b.unwrap();
    let t = Instant::now();
    systemd.run_job(JobKind::Start, &b.socket_unit)?;
    systemd.run_job(JobKind::Start, &b.service_unit)?;
    report.step("start", t, format!("{} and {} done", b.socket_unit, b.service_unit));
    finish(&app, &b, &systemd, report)
}

pub fn stop(loaded: &Loaded, build: &str, g: &GlobalArgs, report: &mut Report) -> Result<Outcome> {
    let (_app, b, systemd, _lock) = prepare(loaded, Some(build), g, report)?;
    let b = b.unwrap();
    let t = Instant::now();
    systemd.run_job(JobKind::Stop, &b.service_unit)?;
    systemd.run_job(JobKind::Stop, &b.socket_unit)?;
    report.step("stop", t, format!("{} and {} stopped", b.service_unit, b.socket_unit));
    let state = systemd.unit_state(&b.service_unit)?;
    report.json(&serde_json::json!({ "build": build, "unit": state, "steps": report.steps() }));
    Ok(Outcome::Ok)
}

pub fn restart(loaded: &Loaded, build: Option<&str>, g: &GlobalArgs, report: &mut Report) -> Result<Outcome> {
    let (app, b, systemd, _lock) = prepare(loaded, build, g, report)?;
    let t = Instant::now();
    let Some(b) = b else {
        let target = app.layout.target();
        let jobs = systemd.restart_target(&target, &format!("{}@", app.layout.app))?;
        let units: Vec<String> = jobs.iter().map(|(u, r)| format!("{u}: {r}")).collect();
        report.step("restart", t, units.join(", "));
        report.json(&serde_json::json!({ "target": target, "jobs": jobs, "steps": report.steps() }));
        return Ok(Outcome::Ok);
    };
    systemd.run_job(JobKind::Start, &b.socket_unit)?;
    systemd.run_job(JobKind::Restart, &b.service_unit)?;
    report.step("restart", t, format!("{} done", b.service_unit));
    finish(&app, &b, &systemd, report)
}

pub fn reload(loaded: &Loaded, build: &str, g: &GlobalArgs, report: &mut Report) -> Result<Outcome> {
    let (app, b, systemd, _lock) = prepare(loaded, Some(build), g, report)?;
    let b = b.unwrap();
    let t = Instant::now();
    systemd.run_job(JobKind::Reload, &b.service_unit)?;
    report.step("reload", t, format!("{} done", b.service_unit));
    finish(&app, &b, &systemd, report)
}

fn finish(app: &AppPlan, b: &BuildLayout, systemd: &Systemd, report: &mut Report) -> Result<Outcome> {
    let (unit, health) = deploy::verify(app, b, systemd, report)?;
    report.json(&serde_json::json!({ "build": b.build, "unit": unit, "health": health, "steps": report.steps() }));
    Ok(Outcome::Ok)
}
