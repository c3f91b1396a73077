use std::time::Instant;

use anyhow::Result;

use super::Session;
use crate::cli::{GlobalArgs, MaintenanceArgs, OnOff};
use crate::error::Error;
use crate::maintenance;
use crate::manifest::Loaded;
use crate::report::Report;

pub fn run(loaded: &Loaded, args: &MaintenanceArgs, g: &GlobalArgs, report: &mut Report) -> Result<()> {
    let m = &loaded.manifest.maintenance;
    let build = &args.build;
    let (session, b) = Session::for_built(loaded, g, report, "maintenance", build)?;
    let t = Instant::now();
    let routed = loaded.build(build)?.route.is_some();
    let state = match args.state {
        OnOff::On => {
            let page = match (&m.page, b.current_release()?) {
                (Some(p), Some(id)) => {
                    let path = b.release_dir(&id).join(p);
                    if std::fs::symlink_metadata(&path).is_err() {
                        return Err(Error::Usage(format!(
                            "[maintenance] page {p}: build {build}'s current release {id} has no such file ({}); nothing was changed",
                            path.display()
                        ))
                        .into());
                    }
                    Some((b.release_dir(&id), std::path::PathBuf::from(p)))
                }
                _ => None,
            };
            let default = maintenance::default_page(&session.app.layout.app, build, m.retry_after_s);
            let on = maintenance::on(&b, page.as_ref().map(|(r, p)| (r.as_path(), p.as_path())), &default)?;
            report.step(
                "maintenance",
                t,
                format!(
                    "on: {} answers 503 with {} ({} page), Retry-After {}",
                    if routed { "its route" } else { "nothing (the build has no route)" },
                    b.maintenance_page().display(),
                    on.page,
                    m.retry_after_s
                ),
            );
            Some(on)
        }
        OnOff::Off => {
            let was = maintenance::off(&b)?;
            report.step(
                "maintenance",
                t,
                if was { "off: the route reaches the app again" } else { "off (it was not on)" },
            );
            None
        }
    };
    report.json(&serde_json::json!({ "build": build, "maintenance": state, "steps": report.steps() }));
    Ok(())
}
