use anyhow::Result;
use serde::Serialize;

use crate::error::Error;
use crate::manifest::Loaded;
use crate::name::BuildName;
use crate::plan;
use crate::release::id::ReleaseId;
use crate::release::layout::{self, Slot};
use crate::report::{Mode, Report};
use crate::systemd::dbus::Systemd;
use crate::systemd::unit::{ActiveState, UnitState};

#[derive(Debug, Serialize)]
struct BuildStatus {
    build: BuildName,
    unit: String,
    state: ActiveState,
    sub_state: String,
    release: Option<ReleaseId>,
    #[serde(with = "crate::time::serde_rfc3339_option")]
    since: Option<jiff::Timestamp>,
    main_pid: Option<u32>,
    route: Option<String>,
    socket: String,
    active: bool,
    /// The build's other instance, while it runs (a deploy's candidate, or the one that served
    /// until a `systemctl start|restart` of main took the build back): its state and release.
    other: Option<Other>,
}

#[derive(Debug, Serialize)]
struct Other {
    unit: String,
    state: ActiveState,
    release: Option<ReleaseId>,
}

pub fn run(loaded: &Loaded, only: Option<&BuildName>, report: &Report) -> Result<()> {
    let app = plan::app(loaded)?;
    if let Some(b) = only {
        loaded.build(b)?;
        if !app.builds.iter().any(|(name, _)| name == b) {
            return Err(crate::error::Error::Usage(format!(
                "build {b} of the family [builds.\"{}\"] does not exist on disk; relctl build {b} makes it",
                loaded.manifest.family_of(b).map_or("", |(pattern, _)| pattern)
            ))
            .into());
        }
    }
    let systemd = Systemd::connect()?;
    // Every build's instances in two calls: the app's loaded units; the others are not loaded.
    let mut mains = systemd.states(&app.layout.service_glob())?;
    let mut nexts = systemd.states(&format!("{}@*.service", Slot::Next.unit_prefix(&app.layout.app)))?;
    let mut rows = Vec::new();
    for (name, route) in app.builds.iter().filter(|(n, _)| only.is_none_or(|o| o == n)) {
        let b = app.layout.build(name);
        let [main, next] = app.layout.instances(name);
        let main_state = mains.remove(&main.service_unit).unwrap_or_else(|| UnitState::not_loaded(&main.service_unit));
        let next_state = nexts.remove(&next.service_unit).unwrap_or_else(|| UnitState::not_loaded(&next.service_unit));
        // The instance that serves, if one does; else main is the build.
        let up = |slot| Ok(if slot == Slot::Next { &next_state } else { &main_state }.active_state.is_up());
        let next_serves = b.serving(up)? == Some(Slot::Next);
        let (unit, release, other, other_link) = if next_serves {
            (next_state, layout::link_release(&next.link)?, main_state, &main.link)
        } else {
            (main_state, b.current_release()?, next_state, &next.link)
        };
        let other = match other.active_state {
            ActiveState::Inactive => None,
            _ => {
                Some(Other { release: layout::link_release(other_link)?, unit: other.unit, state: other.active_state })
            }
        };
        rows.push(BuildStatus {
            build: name.clone(),
            state: unit.active_state.clone(),
            sub_state: unit.sub_state.clone(),
            release,
            since: (unit.active_since_us > 0 && unit.is_active())
                .then(|| jiff::Timestamp::from_microsecond(unit.active_since_us as i64).ok())
                .flatten(),
            main_pid: (unit.main_pid > 0).then_some(unit.main_pid),
            route: route.as_ref().map(|r| r.as_written().to_string()),
            socket: b.socket.display().to_string(),
            active: unit.is_active(),
            unit: unit.unit,
            other,
        });
    }
    match report.mode {
        Mode::Json => report.json(&serde_json::json!({ "app": app.layout.app, "builds": rows })),
        Mode::Human => print_table(&rows),
        Mode::Quiet => {}
    }
    if rows.iter().all(|r| r.active) {
        Ok(())
    } else {
        Err(Error::NotActive.into())
    }
}

fn print_table(rows: &[BuildStatus]) {
    let dash = || "-".to_string();
    let table: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.build.to_string(),
                format!("{} ({})", r.state, r.sub_state),
                r.release.as_ref().map_or_else(dash, |id| id.to_string()),
                r.since.map_or_else(dash, crate::report::utc),
                r.main_pid.map(|p| p.to_string()).unwrap_or_else(dash),
                r.route.clone().unwrap_or_else(dash),
                r.unit.clone(),
                r.other.as_ref().map_or_else(dash, |c| {
                    format!("{}: {} ({})", c.unit, c.release.as_ref().map_or_else(dash, |id| id.to_string()), c.state)
                }),
            ]
        })
        .collect();
    crate::report::print_table(&["BUILD", "STATE", "RELEASE", "SINCE", "PID", "ROUTE", "SERVED BY", "OTHER"], &table);
}
