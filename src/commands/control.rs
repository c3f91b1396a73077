use std::time::Instant;

use anyhow::Result;

use super::Session;
use crate::cli::GlobalArgs;
use crate::deploy::Verified;
use crate::manifest::Loaded;
use crate::name::BuildName;
use crate::report::Report;

pub fn start(loaded: &Loaded, build: &BuildName, g: &GlobalArgs, report: &mut Report) -> Result<()> {
    let (session, b) = Session::for_built(loaded, g, report, "start", build)?;
    let verified = session.deploy(&b, report).start()?;
    print_verified(build, verified, report)
}

pub fn stop(loaded: &Loaded, build: &BuildName, g: &GlobalArgs, report: &mut Report) -> Result<()> {
    let (session, b) = Session::for_build(loaded, g, report, "stop", build)?;
    let unit = session.deploy(&b, report).stop()?;
    report.json(&serde_json::json!({ "build": build, "unit": unit, "steps": report.steps() }));
    Ok(())
}

pub fn restart(
    loaded: &Loaded,
    build: Option<&BuildName>,
    process: Option<&str>,
    g: &GlobalArgs,
    report: &mut Report,
) -> Result<()> {
    let Some(build) = build else {
        let session = Session::for_app(loaded, g, report, "restart")?;
        let t = Instant::now();
        let target = session.app.layout.target();
        let waiting = report.waiting("restart", &target);
        let jobs = session.systemd.restart_target(&target, &format!("{}@", session.app.layout.app))?;
        drop(waiting);
        let units: Vec<String> = jobs.iter().map(|(u, r)| format!("{u}: {r}")).collect();
        report.step("restart", t, units.join(", "));
        report.json(&serde_json::json!({ "target": target, "jobs": jobs, "steps": report.steps() }));
        return Ok(());
    };
    if let Some(name) = process.filter(|n| !loaded.manifest.processes.contains_key(*n)) {
        let known: Vec<&str> = loaded.manifest.processes.keys().map(String::as_str).collect();
        return Err(crate::error::Error::Usage(format!(
            "--process {name}: {} declares no [processes.{name}] (it declares: {}); nothing was restarted",
            loaded.path.display(),
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        ))
        .into());
    }
    let (session, b) = Session::for_built(loaded, g, report, "restart", build)?;
    if let Some(name) = process {
        let units = session.deploy(&b, report).restart_process(name)?;
        report.json(&serde_json::json!({ "build": build, "process": name, "units": units, "steps": report.steps() }));
        return Ok(());
    }
    let verified = session.deploy(&b, report).restart()?;
    print_verified(build, verified, report)
}

pub fn reload(loaded: &Loaded, build: &BuildName, g: &GlobalArgs, report: &mut Report) -> Result<()> {
    let (session, b) = Session::for_built(loaded, g, report, "reload", build)?;
    let verified = session.deploy(&b, report).reload()?;
    print_verified(build, verified, report)
}

fn print_verified(build: &BuildName, v: Verified, report: &Report) -> Result<()> {
    report.json(&serde_json::json!({ "build": build, "unit": v.unit, "health": v.health, "steps": report.steps() }));
    Ok(())
}
