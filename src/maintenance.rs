//! `relctl maintenance on|off BUILD`: a build's route taken offline with a proper page. While the
//! flag `<build_dir>/.relctl-maintenance` exists, the nginx snippet answers the route with 503,
//! `Retry-After` and `<build_dir>/.relctl-maintenance.html` (the app's `[maintenance] page` from
//! its current release, or relctl's own), while the health check's path and the static files still
//! reach the app. nginx tests for the flag on every request: no reload, and it survives one.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::host::atomic;
use crate::release::layout::BuildLayout;

/// What the flag file records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Maintenance {
    #[serde(with = "crate::time::serde_rfc3339")]
    pub since: jiff::Timestamp,
    /// The page served: `[maintenance] page` of the release, or relctl's own.
    pub page: String,
}

/// The build's maintenance, if it is in maintenance. A flag relctl cannot read (written by hand)
/// still means maintenance: nginx only tests that it exists.
pub fn state(build: &BuildLayout) -> Result<Option<Maintenance>> {
    let Some(bytes) = atomic::read_if_exists(&build.maintenance_flag())? else { return Ok(None) };
    Ok(Some(serde_json::from_slice(&bytes).unwrap_or(Maintenance {
        since: jiff::Timestamp::UNIX_EPOCH,
        page: "unknown (the flag file was not written by relctl)".into(),
    })))
}

/// relctl's own page, for an app that ships none.
pub fn default_page(app: &str, build: &str, retry_after_s: u64) -> String {
    let minutes = retry_after_s.div_ceil(60);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>Down for maintenance</title></head>\n<body>\n<h1>Down for maintenance</h1>\n<p>{app} ({build}) is down for maintenance and will be back shortly. Please try again in {minutes} minute{}.</p>\n</body>\n</html>\n",
        if minutes == 1 { "" } else { "s" }
    )
}

/// Puts the build in maintenance: the page (`page` of the release in `release_dir`, read as root
/// beneath it, never through a link, or `default`) is written where nginx serves it from, 0644,
/// then the flag. Returns what the flag records.
pub fn on(build: &BuildLayout, release_page: Option<(&Path, &Path)>, default: &str) -> Result<Maintenance> {
    let (text, page) = match release_page {
        Some((release_dir, page)) => {
            let text = crate::release::stage::read_beneath(release_dir, page)
                .context("reading the maintenance page ([maintenance] page)")?;
            (text, release_dir.join(page).display().to_string())
        }
        None => (default.as_bytes().to_vec(), "relctl's own".to_string()),
    };
    atomic::write(&build.maintenance_page(), &text, 0o644, None)?;
    // Whole seconds: what the flag file's RFC 3339 time keeps.
    let since = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).context("reading the clock")?;
    let m = Maintenance { since, page };
    let json = serde_json::to_vec(&m).context("serializing the maintenance flag")?;
    atomic::write(&build.maintenance_flag(), &json, 0o644, None)?;
    Ok(m)
}

/// Ends the build's maintenance; returns whether it was in maintenance.
pub fn off(build: &BuildLayout) -> Result<bool> {
    atomic::remove_if_exists(&build.maintenance_flag())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_writes_the_page_then_the_flag_and_off_removes_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let layout = crate::release::layout::AppLayout {
            app: "shop".into(),
            component: "web".into(),
            root: dir.path().to_path_buf(),
            unit_dir: dir.path().join("units"),
            socket_name: "gunicorn.sock".into(),
        };
        let b = layout.build(&"production".parse().unwrap());
        std::fs::create_dir_all(&b.build_dir).unwrap();
        assert_eq!(state(&b).unwrap(), None);
        let page = default_page("shop", "production", 300);
        assert!(page.contains("shop (production) is down for maintenance") && page.contains("in 5 minutes"), "{page}");
        let m = on(&b, None, &page).unwrap();
        assert_eq!(state(&b).unwrap(), Some(m));
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!((mode(&b.maintenance_flag()), mode(&b.maintenance_page())), (0o644, 0o644));
        assert_eq!(std::fs::read_to_string(b.maintenance_page()).unwrap(), page);
        std::fs::write(dir.path().join("503.html"), "<h1>Back soon</h1>").unwrap();
        assert!(on(&b, Some((dir.path(), Path::new("503.html"))), &page).unwrap().page.ends_with("503.html"));
        assert_eq!(std::fs::read_to_string(b.maintenance_page()).unwrap(), "<h1>Back soon</h1>");
        // A page that is a link (to what only root may read) is refused, and nothing changes.
        std::os::unix::fs::symlink("/etc/shadow", dir.path().join("leak.html")).unwrap();
        let err = on(&b, Some((dir.path(), Path::new("leak.html"))), &page).unwrap_err();
        assert!(format!("{err:#}").contains("is a symlink"), "{err:#}");
        assert_eq!(std::fs::read_to_string(b.maintenance_page()).unwrap(), "<h1>Back soon</h1>");
        assert!(off(&b).unwrap() && !off(&b).unwrap());
        assert_eq!(state(&b).unwrap(), None);
        assert!(b.maintenance_page().exists(), "the page stays for the next time");
    }
}
