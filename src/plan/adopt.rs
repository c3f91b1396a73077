//! Planning `relctl build <BUILD> --adopt`: what is done with a hand-made setup of the build.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::manifest::Loaded;
use crate::plan::build::BuildPlan;
use crate::plan::script::start_script;
use crate::plan::settings::{service_environment, template_context, Environment};
use crate::plan::units;
use crate::plan::AppPlan;
use crate::release::handmade;
use crate::release::id::ReleaseId;
use crate::release::layout::BuildLayout;

/// What `relctl build <BUILD> --adopt` does with a hand-made setup of the build, besides the
/// build itself.
#[derive(Debug, Clone, Serialize)]
pub struct AdoptPlan {
    pub found: handmade::Found,
    /// Where the hand-made unit files are copied before relctl's replace them.
    pub backup_dir: PathBuf,
    /// The release the hand-made files become (`<time>-adopted`, older than the new release).
    pub release: ReleaseId,
    pub release_dir: PathBuf,
    /// Its `.relctl/environment`, as a release built from the manifest has.
    pub environment: Environment,
    /// Its `.relctl/start`: the manifest's `[service] exec`, run in the adopted files.
    pub start_script: String,
    /// The build's drop-in, recorded with it as with any release.
    #[serde(skip)]
    pub dropin: Option<String>,
    /// The build's dependencies (`[deps]`: path in the release, entry), linked into the adopted
    /// files where they lack that path (the guide's `venv/` where the manifest says `.venv`).
    pub deps: Vec<(String, PathBuf)>,
    /// What the start script needs to exist in the adopted files: the working directory, and the
    /// program when it is a path in the release.
    pub needs: Vec<PathBuf>,
}

/// Where `build --adopt` backs up hand-made unit files.
pub const BACKUP_DIR: &str = "/var/backups/relctl";

/// Looks for a hand-made setup of the build `plan` makes (see [`handmade::detect`]).
pub fn find_hand_made(app: &AppPlan, build: &BuildLayout) -> Result<handmade::Found> {
    handmade::detect(&units::paths(app), build, &app.layout.socket_name)
}

/// Plans taking over `found` in the build `plan` makes: the adopted release's id (a second
/// before `plan`'s), its environment and start script as if relctl had built it, and the backup.
pub fn adopt(loaded: &Loaded, plan: &BuildPlan, found: handmade::Found, now: jiff::Timestamp) -> Result<AdoptPlan> {
    let m = &loaded.manifest;
    let at = now - jiff::SignedDuration::from_secs(1);
    let release = ReleaseId::adopted(at);
    let build = &plan.build;
    let release_dir = build.release_dir(&release);
    let decl = loaded.build(&build.build)?;
    let ctx = template_context(&plan.app, m, &decl, build, &release, &release_dir, &plan.secrets);
    let environment = service_environment(m, &ctx, build, &release)?;
    let start_script = start_script(
        &release_dir,
        m.service.workdir.as_deref(),
        &m.service.exec,
        &format!("release {release} (adopted, hand-made) of {} {}", m.app, build.build),
    );
    let stamp = now.strftime("%Y%m%dT%H%M%SZ");
    let backup_dir = Path::new(BACKUP_DIR).join(format!("{}-{}-{stamp}", m.app, build.build));
    let dropin = plan.dropin.as_ref().map(|d| d.contents.clone());
    let deps = plan.deps.iter().map(|d| (d.path.trim_end_matches('/').to_string(), d.entry.clone())).collect();
    let mut needs = vec![match &m.service.workdir {
        Some(w) => release_dir.join(w.trim_end_matches('/')),
        None => release_dir.clone(),
    }];
    let exec = m.service.exec.trim();
    let program = crate::plan::script::resolve_program(&release_dir, exec.split_whitespace().next().unwrap_or(exec));
    if program.starts_with(&release_dir.display().to_string()) {
        needs.push(PathBuf::from(program));
    }
    Ok(AdoptPlan { found, backup_dir, release, release_dir, environment, start_script, dropin, deps, needs })
}

impl AdoptPlan {
    /// The adoption as text for `--dry-run --adopt`.
    pub fn describe(&self, build: &BuildLayout) -> String {
        let mut s = format!("{:<12} {}\n", "adopt", self.found.describe());
        let mut line = |k: &str, v: String| s.push_str(&format!("{k:<12} {v}\n"));
        if !self.found.unit_files.is_empty() {
            line(
                "backup",
                format!("hand-made unit files copied to {}, then replaced by relctl's", self.backup_dir.display()),
            );
        }
        line(
            "adopted",
            format!(
                "once {} stopped (the new release serves meanwhile): {} moved into {} (a release `relctl rollback {} --to {}` returns to; start: {})",
                build.service_unit,
                if self.found.entries.is_empty() { "nothing".to_string() } else { self.found.entries.join(", ") },
                self.release_dir.display(),
                build.build,
                self.release,
                self.start_script.lines().last().unwrap_or("")
            ),
        );
        line(
            "public",
            format!(
                "{} replaced by relctl's symlink to the candidate's socket, re-made at once if the hand-made server removes it as it stops",
                build.socket.display()
            ),
        );
        s
    }
}
