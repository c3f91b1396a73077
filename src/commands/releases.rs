use std::time::Instant;

use anyhow::Result;

use super::Session;
use crate::cli::{GlobalArgs, RollbackArgs};
use crate::error::Error;
use crate::manifest::Loaded;
use crate::name::BuildName;
use crate::plan;
use crate::plan::rollback;
use crate::release::id::ReleaseId;
use crate::release::store;
use crate::report::{Mode, Report};

pub fn list(loaded: &Loaded, build: &BuildName, report: &Report) -> Result<()> {
    let app = plan::app(loaded)?;
    loaded.build(build)?;
    let b = app.layout.build(build);
    let current = b.current_release()?;
    let releases = store::list(&b)?;
    match report.mode {
        Mode::Json => report.json(&serde_json::json!({ "build": build, "current": current, "releases": releases })),
        Mode::Human => {
            let dash = || "-".to_string();
            let table: Vec<[String; 6]> = releases
                .iter()
                .map(|r| {
                    [
                        r.id.to_string(),
                        r.created.map_or_else(dash, crate::report::utc),
                        r.git.clone().unwrap_or_else(dash),
                        r.state.as_str().to_string(),
                        r.promoted_from.as_ref().map_or_else(dash, |p| format!("promoted from {p}")),
                        r.reason.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            crate::report::print_table(&["RELEASE", "CREATED", "GIT", "STATE", "ORIGIN", "WHY BAD"], &table);
        }
        Mode::Quiet => {}
    }
    Ok(())
}

pub fn rollback(loaded: &Loaded, args: &RollbackArgs, g: &GlobalArgs, report: &mut Report) -> Result<()> {
    let to = match &args.to {
        Some(id) => Some(ReleaseId::parse(id).map_err(|e| Error::Usage(format!("--to: {e}")))?),
        None => None,
    };
    // A release the build cannot go back to is a usage error, like every other, before root.
    if let Some(id) = &to {
        loaded.build(&args.build)?;
        rollback::check_target(&plan::app(loaded)?.layout.build(&args.build), id)?;
    }
    // The target is resolved before the lock: nothing is touched when there is none.
    let (session, b, target) =
        Session::for_build_planned(loaded, g, report, "rollback", &args.build, |b| rollback::plan(b, to.as_ref()))?;
    // The database first: refused (nothing changed), unapplied, or tolerated, as asked.
    let schema =
        crate::migrations::Move { what: "rolling back to", target: &target.to, target_dir: &b.release_dir(&target.to) };
    crate::migrations::prepare(
        &session.app,
        &b,
        &target.from,
        &schema,
        super::schema_mode(&args.schema),
        &session.systemd,
        report,
    )?;
    let t = Instant::now();
    let result = session.deploy(&b, report).rollback(&target)?;
    report.step("rollback", t, format!("{} -> {} ({} marked bad)", result.from, result.to, result.from));
    report.say(format!("relctl: {} {} is live at release {}", session.app.layout.app, result.build, result.to));
    report.json(&serde_json::json!({ "result": result, "steps": report.steps() }));
    Ok(())
}
