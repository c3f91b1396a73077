//! Planning `relctl rollback BUILD [--to ID]`: which release the build goes back to, resolved from
//! its releases before anything is touched (and checked again under the app's lock).

use anyhow::{Context, Result};
use serde::Serialize;

use crate::name::BuildName;
use crate::release::id::ReleaseId;
use crate::release::layout::BuildLayout;
use crate::release::store::{self, Release, ReleaseState};

/// What a rollback does: `to` takes over from `from`, the build's current release, which is then
/// marked bad.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollbackPlan {
    pub from: ReleaseId,
    pub to: ReleaseId,
    /// `--to` named it; else it is the newest good release older than `from`.
    pub chosen: bool,
}

/// Checks `--to` against the build's releases: a usage error (exit 2) names a release it does not
/// have, an incomplete one or the current one (see [`store::check_rollback_target`]).
pub fn check_target(build: &BuildLayout, to: &ReleaseId) -> Result<()> {
    store::check_rollback_target(&build.build, &store::list(build)?, to)?;
    Ok(())
}

/// Resolves the rollback of `build` from its releases on disk; `to` is `--to`.
pub fn plan(build: &BuildLayout, to: Option<&ReleaseId>) -> Result<RollbackPlan> {
    resolve(&build.build, &store::list(build)?, to)
}

/// Resolves the rollback of `build`, whose releases are `releases`: from its current release to
/// `to` (which must be a release it can go back to), or else to the newest good release older
/// than current. A build without a current release, or without a release to go back to, is an
/// error (exit 1).
pub fn resolve(build: &BuildName, releases: &[Release], to: Option<&ReleaseId>) -> Result<RollbackPlan> {
    let from = releases
        .iter()
        .find(|r| r.state == ReleaseState::Current)
        .map(|r| r.id.clone())
        .with_context(|| format!("build {build} has no current release: nothing to roll back"))?;
    let to = match to {
        Some(id) => {
            store::check_rollback_target(build, releases, id)?;
            return Ok(RollbackPlan { from, to: id.clone(), chosen: true });
        }
        None => {
            releases.iter().find(|r| r.state == ReleaseState::Previous).map(|r| r.id.clone()).with_context(|| {
                format!(
                    "build {build} has no good release older than {from} to roll back to (see relctl releases {build})"
                )
            })?
        }
    };
    Ok(RollbackPlan { from, to, chosen: false })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::layout::{AppLayout, UNIT_DIR};
    use crate::release::store::ReleaseMeta;
    use std::path::Path;

    fn r(n: u8) -> ReleaseId {
        ReleaseId::parse(&format!("20261123T13050{n}Z")).unwrap()
    }

    /// Build `dev` with complete releases r1..=r`n` and current at `current`.
    fn build(dir: &Path, n: u8, current: u8) -> BuildLayout {
        let app = AppLayout {
            app: "a".into(),
            component: "c".into(),
            root: dir.into(),
            unit_dir: UNIT_DIR.into(),
            socket_name: "s".into(),
        };
        let b = app.build(&"dev".parse().unwrap());
        for i in 1..=n {
            let release = b.release_dir(&r(i));
            std::fs::create_dir_all(&release).unwrap();
            let meta = ReleaseMeta {
                id: r(i),
                app: "a".into(),
                build: "dev".into(),
                created: "2026-11-23T13:05:00Z".parse().unwrap(),
                git: None,
                promoted_from: None,
                settings: None,
            };
            store::mark_complete(&release, &meta).unwrap();
        }
        crate::host::atomic::switch_symlink(&b.current, &crate::release::layout::release_target(&r(current))).unwrap();
        b
    }

    #[test]
    fn the_target_is_resolved_from_the_releases_before_anything_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let b = build(dir.path(), 3, 3);
        assert_eq!(plan(&b, None).unwrap(), RollbackPlan { from: r(3), to: r(2), chosen: false });
        assert_eq!(plan(&b, Some(&r(1))).unwrap(), RollbackPlan { from: r(3), to: r(1), chosen: true });
        // A --to the build cannot go back to is a usage error, found in the plan.
        let unknown = ReleaseId::parse("20000101T000000Z").unwrap();
        for bad in [&unknown, &r(3)] {
            let err = plan(&b, Some(bad)).unwrap_err();
            assert!(crate::error::is_usage(&err), "{err}");
            assert!(check_target(&b, bad).is_err_and(|e| crate::error::is_usage(&e)));
        }
        assert_eq!(
            plan(&b, Some(&unknown)).unwrap_err().to_string(),
            "build dev has no release 20000101T000000Z; its releases: 20261123T130501Z, 20261123T130502Z, 20261123T130503Z (see relctl releases dev)"
        );
        check_target(&b, &r(2)).unwrap();
    }

    #[test]
    fn nothing_to_go_back_to_is_an_error_but_not_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let b = build(dir.path(), 1, 1);
        let err = plan(&b, None).unwrap_err();
        assert!(!crate::error::is_usage(&err));
        assert_eq!(
            err.to_string(),
            "build dev has no good release older than 20261123T130501Z to roll back to (see relctl releases dev)"
        );
        let none = resolve(&b.build, &[], None).unwrap_err();
        assert_eq!(none.to_string(), "build dev has no current release: nothing to roll back");
    }
}
