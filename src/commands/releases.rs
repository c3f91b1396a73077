use std::time::Instant;

use anyhow::Result;

use super::Session;
use crate::cli::{GlobalArgs, RollbackArgs};
use crate::error::{Outcome, UsageError};
use crate::layout::BuildLayout;
use crate::manifest::Loaded;
use crate::plan;
use crate::report::{Mode, Report};
use crate::store::{self, ReleaseId, ReleaseState};

pub fn list(loaded: &Loaded, build: &str, report: &Report) -> Result<Outcome> {
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
                        r.created.clone().unwrap_or_else(dash),
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
    Ok(Outcome::Ok)
}

pub fn rollback(loaded: &Loaded, args: &RollbackArgs, g: &GlobalArgs, report: &mut Report) -> Result<Outcome> {
    let to = match &args.to {
        Some(id) => Some(ReleaseId::parse(id).map_err(|e| UsageError(format!("--to: {e}")))?),
        None => None,
    };
    if let Some(id) = &to {
        loaded.build(&args.build)?;
        resolve_to(&plan::app(loaded)?.layout.build(&args.build), id)?;
    }
    let (session, b) = Session::for_build(loaded, g, report, "rollback", &args.build)?;
    let t = Instant::now();
    let result = session.deploy(&b, report).rollback(to.as_ref())?;
    report.step("rollback", t, format!("{} -> {} ({} marked bad)", result.from, result.to, result.from));
    report.say(format!("relctl: {} {} is live at release {}", session.app.layout.app, result.build, result.to));
    report.json(&serde_json::json!({ "result": result, "steps": report.steps() }));
    Ok(Outcome::Ok)
}

/// Checks `rollback --to`'s release before the lock, so that one the build does not have (or
/// cannot go back to) is a usage error (exit 2), naming the build and its releases. The rollback
/// checks it again once it holds the lock.
fn resolve_to(build: &BuildLayout, id: &ReleaseId) -> Result<()> {
    let releases = store::list(build)?;
    let b = &build.build;
    let Some(r) = releases.iter().find(|r| r.id == *id) else {
        let known: Vec<String> = releases.iter().map(|r| r.id.to_string()).collect();
        let known = if known.is_empty() { "none yet".to_string() } else { known.join(", ") };
        return Err(UsageError(format!(
            "build {b} has no release {id}; its releases: {known} (see relctl releases {b})"
        ))
        .into());
    };
    match r.state {
        ReleaseState::Incomplete => Err(UsageError(format!(
            "release {id} of build {b} is incomplete (its build never finished); cannot roll back to it"
        ))
        .into()),
        ReleaseState::Current => Err(UsageError(format!("release {id} is already current for build {b}")).into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{AppLayout, UNIT_DIR};

    #[test]
    fn an_unknown_rollback_target_is_a_usage_error_naming_the_releases() {
        let tmp = tempfile::tempdir().unwrap();
        let app = AppLayout {
            app: "a".into(),
            component: "c".into(),
            root: tmp.path().into(),
            unit_dir: UNIT_DIR.into(),
            socket_name: "s".into(),
        };
        let b = app.build("dev");
        let id = |s: &str| ReleaseId::parse(s).unwrap();
        let unknown = id("20261123T130509Z");
        let err = resolve_to(&b, &unknown).unwrap_err();
        assert!(err.is::<UsageError>());
        assert_eq!(
            err.to_string(),
            "build dev has no release 20261123T130509Z; its releases: none yet (see relctl releases dev)"
        );
        for r in ["20261123T130501Z", "20261123T130502Z"] {
            let meta = store::ReleaseMeta {
                id: id(r),
                app: "a".into(),
                build: "dev".into(),
                created: "now".into(),
                git: None,
                promoted_from: None,
                settings: None,
            };
            std::fs::create_dir_all(b.release_dir(&id(r))).unwrap();
            store::mark_complete(&b.release_dir(&id(r)), &meta).unwrap();
        }
        crate::atomic::switch_symlink(&b.current, std::path::Path::new("releases/20261123T130502Z")).unwrap();
        let err = resolve_to(&b, &unknown).unwrap_err();
        assert!(err.is::<UsageError>());
        assert_eq!(
            err.to_string(),
            "build dev has no release 20261123T130509Z; its releases: 20261123T130501Z, 20261123T130502Z (see relctl releases dev)"
        );
        let err = resolve_to(&b, &id("20261123T130502Z")).unwrap_err();
        assert!(
            err.is::<UsageError>() && err.to_string() == "release 20261123T130502Z is already current for build dev"
        );
        resolve_to(&b, &id("20261123T130501Z")).unwrap();
    }
}
