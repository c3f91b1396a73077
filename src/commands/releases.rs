use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use super::{command_line, lock_app};
use crate::cli::{GlobalArgs, RollbackArgs};
use crate::deploy;
use crate::error::Outcome;
use crate::manifest::Loaded;
use crate::plan;
use crate::report::{Mode, Report};
use crate::store;
use crate::systemd::Systemd;

#[derive(Debug, Serialize)]
struct Row {
    id: String,
    created: Option<String>,
    git: Option<String>,
    state: &'static str,
    reason: Option<String>,
}

pub fn list(loaded: &Loaded, build: &str, report: &Report) -> Result<Outcome> {
    let app = plan::app(loaded)?;
    loaded.build(build)?;
    let b = app.layout.build(build);
    let current = b.current_release();
    let releases = store::list(&b)?;
    let previous = current.as_deref().and_then(|c| store::previous(&releases, c)).map(|r| r.id.clone());
    let rows: Vec<Row> = releases
        .iter()
        .map(|r| {
            let meta = store::read_meta(&r.dir);
            Row {
                id: r.id.clone(),
                created: meta.as_ref().map(|m| m.created.clone()),
                git: meta.and_then(|m| m.git),
                state: if current.as_deref() == Some(r.id.as_str()) {
                    "current"
                } else if !r.complete {
                    "incomplete"
                } else if r.bad.is_some() {
                    "bad"
                } else if previous.as_deref() == Some(r.id.as_str()) {
                    "previous"
                } else {
                    ""
                },
                reason: r.bad.clone(),
            }
        })
        .collect();
    match report.mode {
        Mode::Json => report.json(&serde_json::json!({ "build": build, "current": current, "releases": rows })),
        Mode::Human => {
            let table: Vec<[String; 5]> = rows
                .iter()
                .map(|r| {
                    [
                        r.id.clone(),
                        r.created.clone().unwrap_or_else(|| "-".into()),
                        r.git.clone().unwrap_or_else(|| "-".into()),
                        if r.state.is_empty() { "-".into() } else { r.state.to_string() },
                        r.reason.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            crate::report::print_table(&["RELEASE", "CREATED", "GIT", "STATE", "WHY BAD"], &table);
        }
        Mode::Quiet => {}
    }
    Ok(Outcome::Ok)
}

pub fn rollback(loaded: &Loaded, args: &RollbackArgs, g: &GlobalArgs, report: &mut Report) -> Result<Outcome> {
    let app = plan::app(loaded)?;
    loaded.build(&args.build)?;
    let b = app.layout.build(&args.build);
    deploy::require_root(&format!("relctl rollback {}", args.build))?;
    let systemd = Systemd::connect()?;
    let _lock = lock_app(&app.layout.app, &command_line(), g, report)?;
    let t = Instant::now();
    let result = deploy::rollback(&app, &b, args.to.as_deref(), &systemd, report)?;
    report.step("rollback", t, format!("{} -> {} ({} marked bad)", result.from, result.to, result.from));
    report.say(format!("relctl: {} {} is live at release {}", app.layout.app, result.build, result.to));
    report.json(&serde_json::json!({ "result": result, "steps": report.steps() }));
    Ok(Outcome::Ok)
}
