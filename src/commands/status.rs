use anyhow::Result;
use serde::Serialize;

use crate::error::Outcome;
use crate::layout::Slot;
use crate::manifest::Loaded;
use crate::plan;
use crate::report::{Mode, Report};
use crate::store::ReleaseId;
use crate::systemd::{ActiveState, Systemd, UnitState};

#[derive(Debug, Serialize)]
struct BuildStatus {
    build: String,
    unit: String,
    state: ActiveState,
    sub_state: String,
    release: Option<ReleaseId>,
    since: Option<String>,
    main_pid: Option<u32>,
    route: Option<String>,
    socket: String,
    active: bool,
    /// The candidate instance (`<app>_next@<build>`), while a deploy runs one: its state and the
    /// release it runs.
    candidate: Option<Candidate>,
}

#[derive(Debug, Serialize)]
struct Candidate {
    unit: String,
    state: ActiveState,
    release: Option<String>,
}

pub fn run(loaded: &Loaded, only: Option<&str>, report: &Report) -> Result<Outcome> {
    let app = plan::app(loaded)?;
    if let Some(b) = only {
        loaded.build(b)?;
        if !app.builds.iter().any(|(name, _)| name == b) {
            return Err(crate::error::UsageError(format!(
                "build {b} of the family [builds.\"{}\"] does not exist on disk; relctl build {b} makes it",
                loaded.manifest.family_of(b).map_or("", |(pattern, _)| pattern)
            ))
            .into());
        }
    }
    let systemd = Systemd::connect()?;
    // Every build's service in one go: the app's loaded instances; the others are not loaded.
    let mut states = systemd.states(&app.layout.service_glob())?;
    let next_prefix = Slot::Next.unit_prefix(&app.layout.app);
    let mut candidates = systemd.states(&format!("{next_prefix}@*.service"))?;
    let mut rows = Vec::new();
    for (name, route) in app.builds.iter().filter(|(n, _)| only.is_none_or(|o| o == n)) {
        let b = app.layout.build(name);
        let unit = states.remove(&b.service_unit).unwrap_or_else(|| UnitState::not_loaded(&b.service_unit));
        let next = app.layout.instance(name, Slot::Next);
        let candidate =
            candidates.remove(&next.service_unit).filter(|c| c.active_state != ActiveState::Inactive).map(|c| {
                let release = std::fs::read_link(&next.link)
                    .ok()
                    .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()));
                Candidate { unit: c.unit, state: c.active_state, release }
            });
        rows.push(BuildStatus {
            build: name.clone(),
            state: unit.active_state.clone(),
            sub_state: unit.sub_state.clone(),
            release: b.current_release()?,
            since: (unit.active_since_us > 0 && unit.is_active()).then(|| since(unit.active_since_us)),
            main_pid: (unit.main_pid > 0).then_some(unit.main_pid),
            route: route.clone(),
            socket: b.socket.display().to_string(),
            active: unit.is_active(),
            unit: unit.unit,
            candidate,
        });
    }
    match report.mode {
        Mode::Json => report.json(&serde_json::json!({ "app": app.layout.app, "builds": rows })),
        Mode::Human => print_table(&rows),
        Mode::Quiet => {}
    }
    Ok(if rows.iter().all(|r| r.active) { Outcome::Ok } else { Outcome::NotActive })
}

fn since(us: u64) -> String {
    jiff::Timestamp::from_microsecond(us as i64).map(crate::report::utc).unwrap_or_default()
}

fn print_table(rows: &[BuildStatus]) {
    let dash = || "-".to_string();
    let table: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.build.clone(),
                format!("{} ({})", r.state, r.sub_state),
                r.release.as_ref().map_or_else(dash, |id| id.to_string()),
                r.since.clone().unwrap_or_else(dash),
                r.main_pid.map(|p| p.to_string()).unwrap_or_else(dash),
                r.route.clone().unwrap_or_else(dash),
                r.candidate
                    .as_ref()
                    .map_or_else(dash, |c| format!("{} ({})", c.release.as_deref().unwrap_or("-"), c.state)),
            ]
        })
        .collect();
    crate::report::print_table(&["BUILD", "STATE", "RELEASE", "SINCE", "PID", "ROUTE", "CANDIDATE"], &table);
}
