use std::time::Instant;

use anyhow::Result;

use crate::deploy;
use crate::error::Outcome;
use crate::manifest::Loaded;
use crate::plan;
use crate::report::Report;
use crate::systemd::{JobKind, Systemd};

pub fn start(loaded: &Loaded, build: &str, report: &mut Report) -> Result<Outcome> {
    let app = plan::app(loaded)?;
    loaded.build(build)?;
    let b = app.layout.build(build);
    let systemd = Systemd::connect()?;
    let t = Instant::now();
    systemd.run_job(JobKind::Start, &b.socket_unit)?;
    systemd.run_job(JobKind::Start, &b.service_unit)?;
    report.step("start", t, format!("{} and {} done", b.socket_unit, b.service_unit));
    finish(&app, &b, &systemd, report)
}

pub fn stop(loaded: &Loaded, build: &str, report: &mut Report) -> Result<Outcome> {
    let app = plan::app(loaded)?;
    loaded.build(build)?;
    let b = app.layout.build(build);
    let systemd = Systemd::connect()?;
    let t = Instant::now();
    systemd.run_job(JobKind::Stop, &b.service_unit)?;
    systemd.run_job(JobKind::Stop, &b.socket_unit)?;
    report.step("stop", t, format!("{} and {} stopped", b.service_unit, b.socket_unit));
    let state = systemd.unit_state(&b.service_unit)?;
    report.json(&serde_json::json!({ "build": build, "unit": state, "steps": report.steps() }));
    Ok(Outcome::Ok)
}

pub fn restart(loaded: &Loaded, build: Option<&str>, report: &mut Report) -> Result<Outcome> {
    let app = plan::app(loaded)?;
    if let Some(build) = build {
        loaded.build(build)?;
    }
    let systemd = Systemd::connect()?;
    let t = Instant::now();
    let Some(build) = build else {
        let target = app.layout.target();
        let jobs = systemd.restart_target(&target, &format!("{}@", app.layout.app))?;
        let units: Vec<String> = jobs.iter().map(|(u, r)| format!("{u}: {r}")).collect();
        report.step("restart", t, units.join(", "));
        report.json(&serde_json::json!({ "target": target, "jobs": jobs, "steps": report.steps() }));
        return Ok(Outcome::Ok);
    };
    let b = app.layout.build(build);
    systemd.run_job(JobKind::Start, &b.socket_unit)?;
    systemd.run_job(JobKind::Restart, &b.service_unit)?;
    report.step("restart", t, format!("{} done", b.service_unit));
    finish(&app, &b, &systemd, report)
}

fn finish(app: &plan::AppPlan, b: &crate::layout::BuildLayout, systemd: &Systemd, report: &mut Report) -> Result<Outcome> {
    let (unit, health) = deploy::verify(app, b, systemd, report)?;
    report.json(&serde_json::json!({ "build": b.build, "unit": unit, "health": health, "steps": report.steps() }));
    Ok(Outcome::Ok)
}
