//! The releases of one build: `<root>/<build>/releases/<id>/`, each with relctl's metadata in
//! `.relctl/` (release.json once complete, `bad` once rejected). The store owns release ids and
//! decides each release's state.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use fs_err as fs;
use serde::{Deserialize, Serialize};

use crate::host::atomic;
use crate::release::git::GitRevision;
use crate::release::id::ReleaseId;
use crate::release::layout::BuildLayout;

/// Written last when a release is complete (staged, rendered, hooks passed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseMeta {
    pub id: ReleaseId,
    pub app: String,
    pub build: String,
    /// When it was completed: RFC 3339 on disk (`2026-11-23T13:05:01Z`; relctl wrote
    /// `2026-11-23 13:05:01 UTC` before, which still reads).
    #[serde(with = "crate::time::serde_rfc3339")]
    pub created: jiff::Timestamp,
    /// The git label of the source (`abc1234[-dirty]`).
    pub git: Option<String>,
    /// The release of another build whose files this one is a copy of (`relctl promote`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_from: Option<PromotedFrom>,
    /// The rendered `[settings]` file, relative to the release: the one file of the release that
    /// is the build's own (promote leaves it out of the copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<String>,
}

/// `<build>@<release>`: where a promoted release's files come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotedFrom {
    pub build: String,
    pub release: ReleaseId,
}

impl fmt::Display for PromotedFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.build, self.release)
    }
}

/// Where a release stands, as `relctl releases` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseState {
    /// What `current` points at.
    Current,
    /// What `rollback` without `--to` returns to: the newest good release older than current.
    Previous,
    /// Failed verification or was rolled back from.
    Bad,
    /// Its build never finished; the next build removes it.
    Incomplete,
    /// Complete and not rejected.
    Good,
}

impl ReleaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseState::Current => "current",
            ReleaseState::Previous => "previous",
            ReleaseState::Bad => "bad",
            ReleaseState::Incomplete => "incomplete",
            ReleaseState::Good => "good",
        }
    }
}

/// One release directory, as found on disk.
#[derive(Debug, Clone, Serialize)]
pub struct Release {
    pub id: ReleaseId,
    #[serde(skip)]
    pub dir: PathBuf,
    pub state: ReleaseState,
    /// Why it is bad.
    pub reason: Option<String>,
    #[serde(with = "crate::time::serde_rfc3339_option")]
    pub created: Option<jiff::Timestamp>,
    pub git: Option<String>,
    pub promoted_from: Option<PromotedFrom>,
    /// When it last passed the gate and probation as the build's live release.
    #[serde(with = "crate::time::serde_rfc3339_option")]
    pub verified: Option<jiff::Timestamp>,
    /// Why `rollback` cannot run it (an adopted release whose files the manifest's `exec`
    /// cannot start); it is then also bad, with this reason.
    pub not_a_rollback_target: Option<String>,
}

impl Release {
    fn is_good(&self) -> bool {
        matches!(self.state, ReleaseState::Good | ReleaseState::Previous)
    }
}

/// Whether the build whose releases are `releases` can roll back to `id` (`rollback --to`): a
/// usage error (exit 2) names a release it does not have, with the ones it has, an incomplete one
/// and the current one. Checked before the lock, and again under it.
pub fn check_rollback_target(build: &str, releases: &[Release], id: &ReleaseId) -> Result<(), crate::error::Error> {
    use crate::error::Error;
    let Some(r) = releases.iter().find(|r| r.id == *id) else {
        let known: Vec<String> = releases.iter().map(|r| r.id.to_string()).collect();
        let known = if known.is_empty() { "none yet".to_string() } else { known.join(", ") };
        return Err(Error::Usage(format!(
            "build {build} has no release {id}; its releases: {known} (see relctl releases {build})"
        )));
    };
    if let Some(why) = &r.not_a_rollback_target {
        return Err(Error::Usage(format!("release {id} of build {build} is not a rollback target: {why}")));
    }
    match r.state {
        ReleaseState::Incomplete => Err(Error::Usage(format!(
            "release {id} of build {build} is incomplete (its build never finished); cannot roll back to it"
        ))),
        ReleaseState::Current => Err(Error::Usage(format!("release {id} is already current for build {build}"))),
        _ => Ok(()),
    }
}

/// relctl's own directory inside a release.
pub const META_DIR: &str = ".relctl";
const META_FILE: &str = "release.json";
const BAD_FILE: &str = "bad";
const NOT_A_TARGET_FILE: &str = "not-a-rollback-target";
const DROPIN_FILE: &str = "dropin.conf";
const VERIFIED_FILE: &str = "verified";

/// relctl's own files inside a release: metadata, environment, start script, drop-in copy.
pub fn meta_dir(release_dir: &Path) -> PathBuf {
    release_dir.join(META_DIR)
}

/// The copy of the build's drop-in kept with a release.
pub fn dropin_copy(release_dir: &Path) -> PathBuf {
    meta_dir(release_dir).join(DROPIN_FILE)
}

/// The release's `.relctl/environment`, which the units read (`EnvironmentFile=`).
pub fn environment_file(release_dir: &Path) -> PathBuf {
    meta_dir(release_dir).join("environment")
}

/// relctl's copy of a file of the release that may hold secrets (`environment`, `settings`),
/// with each secret value as `<secret>`: what `relctl diff` shows of the release's file.
pub fn masked_copy(release_dir: &Path, name: &str) -> PathBuf {
    meta_dir(release_dir).join(format!("{name}.masked"))
}

/// The service's environment as recorded with a release.
pub fn environment(release_dir: &Path) -> Result<std::collections::BTreeMap<String, String>> {
    let file = environment_file(release_dir);
    let text = fs::read_to_string(&file)?;
    crate::release::render::parse_env_file(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
}

/// The build's drop-in as recorded with a release (None: the release needs none).
pub fn recorded_dropin(release_dir: &Path) -> Result<Option<String>> {
    atomic::read_string_if_exists(&dropin_copy(release_dir))
}

/// A release id not taken yet in this build (two builds in the same second get the next second).
pub fn new_id(build: &BuildLayout, now: jiff::Timestamp, git: Option<&GitRevision>) -> Result<ReleaseId> {
    let mut t = now;
    loop {
        let id = ReleaseId::new(t, git);
        let dir = build.release_dir(&id);
        if !dir.try_exists().with_context(|| format!("checking {}", dir.display()))? {
            return Ok(id);
        }
        t += jiff::SignedDuration::from_secs(1);
    }
}

/// Marks a release complete.
pub fn mark_complete(release_dir: &Path, meta: &ReleaseMeta) -> Result<()> {
    let json = serde_json::to_vec_pretty(meta).context("serializing release metadata")?;
    atomic::ensure_dir(&meta_dir(release_dir))?;
    atomic::write(&meta_dir(release_dir).join(META_FILE), &json, 0o644, None).map(|_| ())
}

/// Records that a release passed the gate and probation as its build's live release, and when
/// (in RFC 3339).
pub fn mark_verified(release_dir: &Path, at: jiff::Timestamp) -> Result<()> {
    let text = format!("{}\n", crate::time::rfc3339(at));
    atomic::write(&meta_dir(release_dir).join(VERIFIED_FILE), text.as_bytes(), 0o644, None).map(|_| ())
}

/// When the release last passed verification, if it ever did; an error names a file that holds
/// no time.
pub fn verified(release_dir: &Path) -> Result<Option<jiff::Timestamp>> {
    let file = meta_dir(release_dir).join(VERIFIED_FILE);
    match atomic::read_string_if_exists(&file)? {
        Some(text) => crate::time::parse(&text).map(Some).map_err(|e| anyhow::anyhow!("{}: {e}", file.display())),
        None => Ok(None),
    }
}

/// The release's `release.json`: None while it is incomplete; an error naming the file when it
/// cannot be read.
pub fn read_meta(release_dir: &Path) -> Result<Option<ReleaseMeta>> {
    meta_of(release_dir)?.transpose().map_err(anyhow::Error::msg)
}

/// The release's `release.json`: None while it is incomplete, `Some(Err(why))` when it is there
/// but cannot be parsed.
fn meta_of(release_dir: &Path) -> Result<Option<Result<ReleaseMeta, String>>> {
    let file = meta_dir(release_dir).join(META_FILE);
    Ok(atomic::read_if_exists(&file)?
        .map(|bytes| serde_json::from_slice(&bytes).map_err(|e| format!("{} is corrupt ({e})", file.display()))))
}

/// Why the release is bad, if it was marked so.
pub fn bad_reason(release_dir: &Path) -> Result<Option<String>> {
    Ok(atomic::read_string_if_exists(&meta_dir(release_dir).join(BAD_FILE))?.map(|s| s.trim().to_string()))
}

/// Why the release cannot be rolled back to, if it was marked so ([`mark_not_a_rollback_target`]).
pub fn not_a_rollback_target(release_dir: &Path) -> Result<Option<String>> {
    Ok(atomic::read_string_if_exists(&meta_dir(release_dir).join(NOT_A_TARGET_FILE))?.map(|s| s.trim().to_string()))
}

/// Marks a release as one `rollback` refuses, with the reason (at adoption: files the manifest's
/// `exec` cannot start).
pub fn mark_not_a_rollback_target(release_dir: &Path, reason: &str) -> Result<()> {
    atomic::ensure_dir(&meta_dir(release_dir))?;
    let file = meta_dir(release_dir).join(NOT_A_TARGET_FILE);
    atomic::write(&file, format!("{reason}\n").as_bytes(), 0o644, None).map(|_| ())
}

/// Marks a release bad, with the reason.
pub fn mark_bad(release_dir: &Path, reason: &str) -> Result<()> {
    atomic::ensure_dir(&meta_dir(release_dir))?;
    atomic::write(&meta_dir(release_dir).join(BAD_FILE), format!("{reason}\n").as_bytes(), 0o644, None).map(|_| ())
}

/// Every release of the build, oldest first, each with its state. Directories in `releases/`
/// whose names are not release ids are not relctl's and are left out.
pub fn list(build: &BuildLayout) -> Result<Vec<Release>> {
    let current = build.current_release()?;
    let mut out = Vec::new();
    let entries = match fs::read_dir(&build.releases_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(id) = ReleaseId::parse(&entry.file_name().to_string_lossy()) else { continue };
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let dir = entry.path();
        // One being staged is root's alone (0700): to anyone else it is incomplete.
        if nix::unistd::access(&dir, nix::unistd::AccessFlags::X_OK) == Err(nix::errno::Errno::EACCES) {
            let (reason, created, git, promoted_from, verified, not_a_rollback_target) = Default::default();
            let state = ReleaseState::Incomplete;
            out.push(Release { id, dir, state, reason, created, git, promoted_from, verified, not_a_rollback_target });
            continue;
        }
        // Complete once release.json exists; one that cannot be read is bad, naming the file.
        let written = meta_of(&dir)?;
        let complete = written.is_some();
        let (meta, corrupt) = match written {
            Some(Ok(m)) => (Some(m), None),
            Some(Err(why)) => (None, Some(why)),
            None => (None, None),
        };
        let not_a_rollback_target = not_a_rollback_target(&dir)?;
        let bad =
            bad_reason(&dir)?.or_else(|| not_a_rollback_target.as_ref().map(|w| format!("not a rollback target: {w}")));
        let reason = corrupt.or(bad);
        let state = if current.as_ref() == Some(&id) {
            ReleaseState::Current
        } else if !complete {
            ReleaseState::Incomplete
        } else if reason.is_some() {
            ReleaseState::Bad
        } else {
            ReleaseState::Good
        };
        let (created, git, promoted_from) = meta.map(|m| (Some(m.created), m.git, m.promoted_from)).unwrap_or_default();
        let verified = verified(&dir)?;
        out.push(Release { id, dir, state, reason, created, git, promoted_from, verified, not_a_rollback_target });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    if let Some(c) = &current {
        if let Some(p) = out.iter_mut().rev().find(|r| r.is_good() && r.id < *c) {
            p.state = ReleaseState::Previous;
        }
    }
    Ok(out)
}

/// Removes releases a crashed or failed build left half-made (never the current one).
pub fn remove_incomplete(build: &BuildLayout) -> Result<Vec<ReleaseId>> {
    let mut removed = Vec::new();
    for r in list(build)?.into_iter().filter(|r| r.state == ReleaseState::Incomplete) {
        remove(&r.dir)?;
        removed.push(r.id);
    }
    Ok(removed)
}

/// Keeps the newest `keep` releases, plus the current one; removes the rest.
pub fn prune(build: &BuildLayout, keep: usize) -> Result<Vec<ReleaseId>> {
    let releases = list(build)?;
    let excess = releases.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for r in releases.into_iter().take(excess).filter(|r| r.state != ReleaseState::Current) {
        remove(&r.dir)?;
        removed.push(r.id);
    }
    Ok(removed)
}

pub fn remove(dir: &Path) -> Result<()> {
    fs::remove_dir_all(dir).map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::layout::{AppLayout, UNIT_DIR};
    use std::os::unix::process::CommandExt;

    fn id(s: &str) -> ReleaseId {
        ReleaseId::parse(s).unwrap()
    }

    /// A build with releases `r<n>` at 13:05:0<n>; `complete` says which finished.
    fn build_with(dir: &Path, releases: &[(u8, bool)], current: u8) -> BuildLayout {
        let b = layout(dir);
        for (n, complete) in releases {
            let dir = b.release_dir(&r(*n));
            fs::create_dir_all(&dir).unwrap();
            if *complete {
                let meta = ReleaseMeta {
                    id: r(*n),
                    app: "a".into(),
                    build: "dev".into(),
                    created: "2026-11-23T13:05:00Z".parse().unwrap(),
                    git: None,
                    promoted_from: None,
                    settings: None,
                };
                mark_complete(&dir, &meta).unwrap();
            }
        }
        atomic::switch_symlink(&b.current, &Path::new("releases").join(r(current).as_str())).unwrap();
        b
    }

    #[test]
    fn a_release_being_staged_is_incomplete_to_other_users() {
        const AS_NOBODY: &str = "RELCTL_TEST_LIST_AS_NOBODY";
        let name = "release::store::tests::a_release_being_staged_is_incomplete_to_other_users";
        if let Ok(dir) = std::env::var(AS_NOBODY) {
            let b = layout(Path::new(&dir));
            assert_eq!(states(&b), [(r(1), ReleaseState::Current), (r(2), ReleaseState::Incomplete)]);
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let b = build_with(dir.path(), &[(1, true)], 1);
        drop(crate::release::stage::create_private_dir(&b.release_dir(&r(2))).unwrap());
        fs::create_dir(b.release_dir(&r(2)).join(META_DIR)).unwrap();
        // `relctl releases` without root, in a child running this test as nobody.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--test-threads=1"])
            .env(AS_NOBODY, dir.path())
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Build `dev` of an app whose root is `dir`.
    fn layout(dir: &Path) -> BuildLayout {
        let app = AppLayout {
            app: "a".into(),
            component: "c".into(),
            root: dir.into(),
            unit_dir: UNIT_DIR.into(),
            socket_name: "s".into(),
        };
        app.build(&"dev".parse().unwrap())
    }

    fn r(n: u8) -> ReleaseId {
        id(&format!("20261123T13050{n}Z"))
    }

    fn states(b: &BuildLayout) -> Vec<(ReleaseId, ReleaseState)> {
        list(b).unwrap().into_iter().map(|r| (r.id, r.state)).collect()
    }

    #[test]
    fn release_ids_sort_by_time_and_name_the_revision() {
        let t: jiff::Timestamp = "2026-11-23T13:05:01Z".parse().unwrap();
        assert_eq!(ReleaseId::new(t, None).as_str(), "20261123T130501Z");
        let g = GitRevision { short: "abc1234".into(), dirty: true };
        assert_eq!(ReleaseId::new(t, Some(&g)).as_str(), "20261123T130501Z-abc1234-dirty");
        let later: jiff::Timestamp = "2026-11-23T13:05:02Z".parse().unwrap();
        assert!(ReleaseId::new(t, Some(&g)) < ReleaseId::new(later, None));
        assert_eq!(ReleaseId::adopted(t).as_str(), "20261123T130501Z-adopted");
        assert!(ReleaseId::adopted(t) < ReleaseId::new(later, Some(&g)));
    }

    #[test]
    fn release_ids_from_users_are_checked() {
        for ok in [
            "20261123T130501Z",
            "20261123T130501Z-abc1234",
            "20261123T130501Z-abc1234-dirty",
            "20261123T130501Z-adopted",
        ] {
            assert_eq!(id(ok).as_str(), ok);
        }
        for bad in [
            "",
            "../../etc",
            "20261123T130501Z/..",
            "20261123-130501",
            "20261123T130501Z-",
            "20261123T130501Z-XYZ1",
            "20261123T130501Z-adopted-dirty",
        ] {
            let err = ReleaseId::parse(bad).unwrap_err();
            assert!(err.contains("is not a release id") && err.contains(crate::release::id::ID_SHAPE), "{bad}: {err}");
        }
    }

    #[test]
    fn an_unknown_rollback_target_is_a_usage_error_naming_the_releases() {
        let dir = tempfile::tempdir().unwrap();
        let unknown = id("20261123T130509Z");
        let none = layout(dir.path());
        let err = check_rollback_target("dev", &list(&none).unwrap(), &unknown).unwrap_err();
        assert_eq!(
            err.to_string(),
            "build dev has no release 20261123T130509Z; its releases: none yet (see relctl releases dev)"
        );
        let b = build_with(dir.path(), &[(1, true), (2, true), (3, false)], 2);
        let releases = list(&b).unwrap();
        let err = check_rollback_target("dev", &releases, &unknown).unwrap_err();
        assert_eq!(
            err.to_string(),
            "build dev has no release 20261123T130509Z; its releases: 20261123T130501Z, 20261123T130502Z, 20261123T130503Z (see relctl releases dev)"
        );
        let err = check_rollback_target("dev", &releases, &r(2)).unwrap_err();
        assert_eq!(err.to_string(), "release 20261123T130502Z is already current for build dev");
        let err = check_rollback_target("dev", &releases, &r(3)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "release 20261123T130503Z of build dev is incomplete (its build never finished); cannot roll back to it"
        );
        check_rollback_target("dev", &releases, &r(1)).unwrap();
        // An adopted release the manifest's exec cannot start: bad with the reason, skipped by a
        // plain rollback, refused by --to.
        mark_not_a_rollback_target(&b.release_dir(&r(1)), "the hand-made files lack /x/.venv/bin/python").unwrap();
        let releases = list(&b).unwrap();
        assert_eq!(releases[0].state, ReleaseState::Bad);
        assert_eq!(
            releases[0].reason.as_deref(),
            Some("not a rollback target: the hand-made files lack /x/.venv/bin/python")
        );
        let err = check_rollback_target("dev", &releases, &r(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "release 20261123T130501Z of build dev is not a rollback target: the hand-made files lack /x/.venv/bin/python"
        );
        assert!(crate::plan::rollback::resolve(&"dev".parse().unwrap(), &releases, None).is_err(), "no previous left");
    }

    #[test]
    fn an_existing_release_json_and_verified_file_still_read_and_times_are_written_rfc3339() {
        let dir = tempfile::tempdir().unwrap();
        let b = build_with(dir.path(), &[(1, false), (2, true)], 2);
        let old = b.release_dir(&r(1));
        fs::create_dir_all(meta_dir(&old)).unwrap();
        // As relctl wrote them before times were typed.
        let json = r#"{
  "id": "20261123T130501Z",
  "app": "a",
  "build": "dev",
  "created": "2026-11-23 13:05:01 UTC",
  "git": "abc1234"
}"#;
        fs::write(meta_dir(&old).join(META_FILE), json).unwrap();
        fs::write(meta_dir(&old).join(VERIFIED_FILE), "2026-11-23 13:07:00 UTC\n").unwrap();
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let meta = read_meta(&old).unwrap().unwrap();
        assert_eq!(meta.created, at("2026-11-23T13:05:01Z"));
        let releases = list(&b).unwrap();
        assert_eq!(releases[0].state, ReleaseState::Previous);
        assert_eq!(releases[0].created, Some(at("2026-11-23T13:05:01Z")));
        assert_eq!(releases[0].verified, Some(at("2026-11-23T13:07:00Z")));
        // Written back, and in --json: RFC 3339.
        let written = serde_json::to_value(&meta).unwrap();
        assert_eq!(written["created"], "2026-11-23T13:05:01Z");
        assert_eq!(serde_json::from_value::<ReleaseMeta>(written).unwrap().created, meta.created);
        let shown = serde_json::to_value(&releases[0]).unwrap();
        assert_eq!(
            (&shown["created"], &shown["verified"]),
            (&"2026-11-23T13:05:01Z".into(), &"2026-11-23T13:07:00Z".into())
        );
        assert_eq!(serde_json::to_value(&releases[1]).unwrap()["verified"], serde_json::Value::Null);
        mark_verified(&old, at("2026-11-23T13:09:00.5Z")).unwrap();
        assert_eq!(fs::read_to_string(meta_dir(&old).join(VERIFIED_FILE)).unwrap(), "2026-11-23T13:09:00Z\n");
        fs::write(meta_dir(&old).join(VERIFIED_FILE), "2026-11-23 13:10:00 UTC\n").unwrap();
        assert_eq!(verified(&old).unwrap(), Some(at("2026-11-23T13:10:00Z")), "as an earlier relctl wrote it");
        fs::write(meta_dir(&old).join(VERIFIED_FILE), "yesterday\n").unwrap();
        assert!(verified(&old)
            .unwrap_err()
            .to_string()
            .ends_with("verified: \"yesterday\" is not a time (expected RFC 3339, e.g. 2026-12-03T08:05:06Z)"));
    }

    #[test]
    fn states_current_previous_bad_incomplete_good() {
        let dir = tempfile::tempdir().unwrap();
        let b = build_with(dir.path(), &[(1, true), (2, true), (3, true), (4, false), (5, true)], 5);
        mark_bad(&b.release_dir(&r(3)), "health check failed").unwrap();
        use ReleaseState::*;
        assert_eq!(states(&b), [(r(1), Good), (r(2), Previous), (r(3), Bad), (r(4), Incomplete), (r(5), Current)]);
        assert_eq!(list(&b).unwrap()[2].reason.as_deref(), Some("health check failed"));
    }

    #[test]
    fn a_corrupt_release_json_reads_as_bad_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let b = build_with(dir.path(), &[(1, true), (2, true)], 2);
        let file = meta_dir(&b.release_dir(&r(1))).join(META_FILE);
        fs::write(&file, "{not json").unwrap();
        let releases = list(&b).unwrap();
        assert_eq!(releases[0].state, ReleaseState::Bad);
        let reason = releases[0].reason.as_deref().unwrap();
        assert!(reason.starts_with(&format!("{} is corrupt", file.display())), "{reason}");
    }

    #[test]
    fn prune_keeps_the_newest_and_always_the_current() {
        let dir = tempfile::tempdir().unwrap();
        let b = build_with(dir.path(), &[(1, true), (2, true), (3, true), (4, true)], 1);
        assert_eq!(prune(&b, 2).unwrap(), [r(2)]);
        assert_eq!(states(&b).into_iter().map(|(id, _)| id).collect::<Vec<_>>(), [r(1), r(3), r(4)]);
    }

    #[test]
    fn incomplete_releases_are_removed_but_never_the_current_one_nor_foreign_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let b = build_with(dir.path(), &[(1, true), (2, false), (3, false)], 3);
        fs::create_dir_all(b.releases_dir.join("not-a-release")).unwrap();
        assert_eq!(remove_incomplete(&b).unwrap(), [r(2)]);
        assert_eq!(states(&b), [(r(1), ReleaseState::Previous), (r(3), ReleaseState::Current)]);
        assert!(b.releases_dir.join("not-a-release").is_dir(), "not relctl's: left alone");
    }
}
