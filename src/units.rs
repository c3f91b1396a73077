//! The app's unit files, rendered from relctl's templates in `units/` (compiled into the binary):
//! `<app>@.service`, `<app>@.socket`, `<app>.target`. Rendered only where they are written.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::plan::AppPlan;
use crate::render;

/// A file relctl writes for systemd.
#[derive(Debug, Clone, Serialize)]
pub struct UnitFile {
    pub path: PathBuf,
    pub contents: String,
}

const SERVICE_TEMPLATE: &str = include_str!("../units/app@.service.tera");
const SOCKET_TEMPLATE: &str = include_str!("../units/app@.socket.tera");
const TARGET_TEMPLATE: &str = include_str!("../units/app.target.tera");

/// What the unit templates see.
#[derive(Debug, Serialize)]
struct UnitContext<'a> {
    app: &'a str,
    component: &'a str,
    root: &'a Path,
    user: &'a str,
    socket_name: &'a str,
    socket_group: &'a str,
    timeout_start_s: u64,
}

/// The paths of the app's unit files, in the order they are written.
pub fn paths(app: &AppPlan) -> [PathBuf; 3] {
    let l = &app.layout;
    [l.service_template(), l.socket_template(), l.target()].map(|name| l.unit_dir.join(name))
}

/// Renders the app's three unit files.
pub fn render(app: &AppPlan) -> Result<Vec<UnitFile>> {
    let l = &app.layout;
    let ctx = UnitContext {
        app: &l.app,
        component: &l.component,
        root: &l.root,
        user: &app.user,
        socket_name: &l.socket_name,
        socket_group: &app.socket_group,
        // systemd must not give up on a start before the health gate does.
        timeout_start_s: app.health.as_ref().map_or(90, |h| h.timeout_s.max(90)),
    };
    let templates = [
        ("units/app@.service.tera", SERVICE_TEMPLATE),
        ("units/app@.socket.tera", SOCKET_TEMPLATE),
        ("units/app.target.tera", TARGET_TEMPLATE),
    ];
    paths(app)
        .into_iter()
        .zip(templates)
        .map(|(path, (name, source))| Ok(UnitFile { path, contents: render::render_value(name, source, &ctx)? }))
        .collect()
}
