//! Staging a release: the copy, its files, dependencies and hooks. Nothing live changes here.

use std::collections::BTreeMap;
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fs_err as fs;

use crate::deploy::hooks::{self, HookFailed};
use crate::deploy::{failpoint, Deploy};
use crate::host::atomic;
use crate::host::users::RunAs;
use crate::plan::build::BuildPlan;
use crate::plan::bytecode::{self, Bytecode};
use crate::plan::hook::{Hook, HookStage};
use crate::plan::processes;
use crate::plan::units::UnitFile;
use crate::release::deps::{self, DepPlan};
use crate::release::id::ReleaseId;
use crate::release::layout::Slot;
use crate::release::schema;
use crate::release::store::{self, ReleaseMeta};
use crate::release::{render, secret_key, stage};

impl Deploy<'_> {
    /// Copies the sources, writes the release's files and runs the hooks. Nothing live changes
    /// here; the caller removes the release if this fails.
    /// `unit_files`: the app's units as this build installs them (release hooks run with the
    /// service's settings).
    pub(super) fn stage(&mut self, plan: &BuildPlan, user: &RunAs, unit_files: &[UnitFile]) -> Result<()> {
        let t = Instant::now();
        let waiting = self.report.waiting("stage", format!("copying the sources to {}", plan.release_dir.display()));
        let stats = plan.copy.copy_into(&plan.release_dir)?;
        drop(waiting);
        failpoint("stage");
        let from = match plan.origin.promoted_from() {
            Some(p) => format!(" of {p}"),
            None => String::new(),
        };
        let detail =
            format!("{} files{from}, {} KiB -> {}", stats.files, stats.bytes / 1024, plan.release_dir.display());
        self.report.step("stage", t, detail);

        let t = Instant::now();
        let rendered = write_release_files(plan, user)?;
        // The sealed shape for the [deps] builds and build hooks; the release stays root's alone.
        self.seal(&plan.release_dir, user, stage::Seal::Staging)?;
        failpoint("render");
        self.report.step("render", t, rendered);

        for dep in &plan.deps {
            let t = Instant::now();
            let detail = self.ensure_dep(plan, dep)?;
            stage::link_beneath(&plan.release_dir, Path::new(dep.path.trim_end_matches('/')), &dep.entry)?;
            self.report.step("deps", t, detail);
        }

        let (build_hooks, release_hooks): (Vec<&Hook>, Vec<&Hook>) =
            plan.hooks.iter().partition(|h| h.stage == HookStage::Build);
        self.run_hooks(plan, &build_hooks)?;
        if let Some(bytecode) = &plan.bytecode {
            let t = Instant::now();
            let waiting = self.report.waiting("bytecode", format!("compiling with {}", bytecode.python));
            let (detail, failed) = compile_release(plan, bytecode)?;
            drop(waiting);
            self.report.step("bytecode", t, detail);
            if !failed.is_empty() {
                self.report.warn(format!(
                    "{} file(s) of the release do not compile; Python compiles them on import, as without bytecode: {}",
                    failed.len(),
                    bytecode::some_files(&failed)
                ));
            }
        }
        // What the deps and build hooks added is sealed too, and the release opens up.
        self.seal(&plan.release_dir, user, stage::Seal::Final)?;
        self.run_release_hooks(plan, &release_hooks, unit_files)?;
        let settings = plan.settings.as_ref().map(|f| f.path.clone());
        self.mark_complete(&plan.release, plan.origin.git_label(), plan.origin.promoted_from().cloned(), settings)
    }

    /// Makes a release private to the service's group, but for its `[static]` directory (with
    /// `Seal::Staging`, private to root still).
    pub(super) fn seal(&self, release_dir: &Path, user: &RunAs, how: stage::Seal) -> Result<()> {
        let public: Vec<_> = self.app.static_files.iter().map(|st| release_dir.join(&st.dir)).collect();
        stage::seal(release_dir, user.gid, &public, how)
    }

    /// Writes the release's `release.json`: from now on it is complete.
    pub(super) fn mark_complete(
        &self,
        release: &ReleaseId,
        git: Option<String>,
        promoted_from: Option<store::PromotedFrom>,
        settings: Option<String>,
    ) -> Result<()> {
        let meta = ReleaseMeta {
            id: release.clone(),
            app: self.app.layout.app.clone(),
            build: self.build.build.to_string(),
            created: jiff::Timestamp::now(),
            git,
            promoted_from,
            settings,
        };
        store::mark_complete(&self.build.release_dir(release), &meta)
    }

    /// Runs hooks in the new release, as root (`build`) or as the service user (`release`).
    pub(super) fn run_hooks(&mut self, plan: &BuildPlan, hooks: &[&Hook]) -> Result<()> {
        for hook in hooks {
            self.run_hook(hook, &plan.release_dir, &plan.hook_env())?;
        }
        Ok(())
    }

    /// Runs the release hooks the way the service runs: each in a transient unit with the
    /// settings of the service unit this build installs (user, sandbox, `UMask=`, state
    /// directory, the release's environment file and the secrets), pinned to the new release.
    pub(super) fn run_release_hooks(
        &mut self,
        plan: &BuildPlan,
        release_hooks: &[&Hook],
        unit_files: &[UnitFile],
    ) -> Result<()> {
        if release_hooks.is_empty() {
            return Ok(());
        }
        let l = &self.app.layout;
        let b = self.build;
        let service_path = l.unit_dir.join(l.service_template());
        let service = unit_files
            .iter()
            .find(|u| u.path == service_path)
            .with_context(|| format!("rendering {} for the release hooks", service_path.display()))?;
        let main = self.instance(Slot::Main);
        let timeout = Duration::from_secs(self.app.release_timeout_s);
        let sources = hooks::ServiceSources {
            service: (&service.path, &service.contents),
            service_unit: &b.service_unit,
            unit_dir: &l.unit_dir,
            relctl_dropin: (&plan.dropin_path, plan.dropin.as_ref().map(|d| d.contents.as_str())),
            user: &self.app.user,
        };
        let properties =
            hooks::service_unit_properties(&sources, &[&main.link, &b.current], &plan.release_dir, timeout)?;
        let env = [("RELCTL_RELEASE_DIR".to_string(), plan.release_dir.display().to_string())].into();
        for hook in release_hooks {
            let spec = hooks::HookUnit {
                unit: hooks::unit_name(&l.app, &b.build),
                description: format!("relctl release hook of {} {}, release {}", l.app, b.build, plan.release),
                properties: properties.clone(),
                env: BTreeMap::clone(&env),
                timeout,
            };
            self.report.verbose(format!("relctl: release hook in {}: {}", spec.unit, spec.properties.join(" ")));
            let t = Instant::now();
            let step = format!("hook:{}", hook.stage);
            let waiting = self.report.waiting(&step, &hook.command);
            let ran = hooks::run_in_unit(hook, &spec, self.systemd, &mut |line| self.report.verbose(line));
            let output = self.show_output(ran)?;
            drop(waiting);
            if hook.stage == HookStage::Schema {
                // What the release's code knows and the database has, recorded with it.
                let schema = schema::parse(&output).map_err(|e| {
                    anyhow::anyhow!("[schema] list `{}` printed something else than migrations: {e}", hook.command)
                })?;
                schema::record(&plan.release_dir, &schema)?;
                self.report.step(
                    "schema",
                    t,
                    format!(
                        "{} migrations known, {} applied (recorded with the release)",
                        schema.known.len(),
                        schema.applied.len()
                    ),
                );
                continue;
            }
            self.report.step(&step, t, &hook.command);
        }
        Ok(())
    }

    /// Runs one hook in `cwd` and reports it as a step.
    pub(super) fn run_hook(
        &mut self,
        hook: &Hook,
        cwd: &Path,
        env: &std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        let t = Instant::now();
        let step = format!("hook:{}", hook.stage);
        let waiting = self.report.waiting(&step, &hook.command);
        self.run_quietly(hook, cwd, env)?;
        drop(waiting);
        self.report.step(&step, t, &hook.command);
        Ok(())
    }

    /// Runs one command in `cwd`: its output streamed with -v, line by line as it comes; a
    /// failure prints the tail of it.
    pub(super) fn run_quietly(
        &mut self,
        hook: &Hook,
        cwd: &Path,
        env: &std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        let ran = hooks::run(hook, cwd, env, &mut |line| self.report.verbose(line));
        self.show_output(ran).map(drop)
    }

    /// The end of what a hook (or a dependency's build command) printed, whose lines were shown
    /// with -v as they came: when it failed, the tail of it is shown; when it succeeded, -v closes
    /// it with an empty line as relctl always did (none after a last line without a newline, which
    /// got relctl's).
    pub(super) fn show_output(&self, ran: Result<String>) -> Result<String> {
        let output = ran.inspect_err(|e| {
            if let Some(f) = e.downcast_ref::<HookFailed>() {
                self.report.warn(format!("--- last lines of `{}` ---\n{}\n---", f.command, f.tail));
            }
        })?;
        if closes_with_empty_line(&output) {
            self.report.verbose("");
        }
        Ok(output)
    }

    /// The dependency's entry, complete: reused when it is, else built at its final path (what a
    /// killed build left there is removed first). A failed build removes what it made.
    pub(super) fn ensure_dep(&mut self, plan: &BuildPlan, dep: &DepPlan) -> Result<String> {
        if dep.is_complete() {
            return Ok(format!("{}: reused {}", dep.name, dep.entry.display()));
        }
        let cleaned = deps::remove_half_built(dep)?;
        atomic::ensure_dir(&dep.entry)?;
        let built = (|| -> Result<()> {
            for command in &dep.build {
                let hook = Hook { stage: HookStage::Build, command: command.clone() };
                let mut env = plan.hook_env();
                env.insert("RELCTL_DEP_DIR".into(), dep.entry.display().to_string());
                let _waiting = self.report.waiting("deps", format!("{}: {command}", dep.name));
                self.run_quietly(&hook, &plan.release_dir, &env)?;
            }
            if let Some(python) = plan.bytecode.as_ref().and_then(|b| b.dep.as_ref()).filter(|p| p.name == dep.name) {
                let _waiting = self.report.waiting("deps", format!("{}: compiling its bytecode", dep.name));
                let failed = compile(&dep.entry.join(&python.python), &dep.entry, &bytecode_env(plan))?;
                if !failed.is_empty() {
                    self.report.verbose(format!(
                        "relctl: {} file(s) of {} do not compile (left to Python): {}",
                        failed.len(),
                        dep.entry.display(),
                        bytecode::some_files(&failed)
                    ));
                }
            }
            failpoint("deps");
            deps::mark_complete(dep)
        })();
        if let Err(e) = built {
            return Err(match fs::remove_dir_all(&dep.entry) {
                Ok(()) => e.context(format!("building [deps.{}] into {} (removed)", dep.name, dep.entry.display())),
                Err(r) => e.context(format!(
                    "building [deps.{}] into {} (could not remove it: {r}; the next build does)",
                    dep.name,
                    dep.entry.display()
                )),
            });
        }
        let half = if cleaned { ", after removing what an interrupted build left" } else { "" };
        Ok(format!("{}: built {} (keyed by {}){half}", dep.name, dep.entry.display(), dep.keyed_by.join(", ")))
    }
}

/// Compiles the release's own modules with the service's interpreter (a dependency's entry is
/// compiled when it is built). A file that does not compile is a warning, not a failure: Python
/// compiles it in memory on import as it did without this (and a module the app imports fails its
/// gate), and a file the app never imports (a template, an example for another Python) must not
/// stop a deploy. An interpreter that cannot run at all is an error: the service could not either.
/// Returns the step's detail and the files that did not compile.
fn compile_release(plan: &BuildPlan, bytecode: &Bytecode) -> Result<(String, Vec<String>)> {
    let python = crate::plan::script::resolve_program(&plan.release_dir, &bytecode.python);
    if python.contains('/') && !Path::new(&python).exists() {
        return Ok((format!("skipped: no {} in the release", bytecode.python), Vec::new()));
    }
    let failed = compile(Path::new(&python), &plan.release_dir, &bytecode_env(plan))?;
    Ok((format!("{} -m compileall {}", bytecode.python, plan.release_dir.display()), failed))
}

/// What the interpreter compiles with: the service's own `PYTHON*` variables (`PYTHONOPTIMIZE`
/// names the bytecode it reads), a plain `PATH`, nothing of relctl's environment.
fn bytecode_env(plan: &BuildPlan) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = plan
        .environment
        .vars()
        .iter()
        .filter(|(k, _)| k.starts_with("PYTHON"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.insert("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    env.insert("LANG".into(), "C.UTF-8".into());
    env
}

/// Runs `python -m compileall` on `dir`; the files it could not compile.
fn compile(python: &Path, dir: &Path, env: &BTreeMap<String, String>) -> Result<Vec<String>> {
    let out = std::process::Command::new(python)
        .args(bytecode::compileall_args(dir))
        .current_dir(dir)
        .env_clear()
        .envs(env)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("compiling the bytecode of {}: cannot run {}", dir.display(), python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failed = bytecode::failed_files(&stdout);
    if !out.status.success() && failed.is_empty() {
        anyhow::bail!(
            "compiling the bytecode of {} with {} failed ({}): {}",
            dir.display(),
            python.display(),
            out.status,
            hooks::tail(&format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)), 10)
        );
    }
    Ok(failed)
}

/// Whether -v closes a hook's streamed output with an empty line: relctl printed a hook's whole
/// output and a newline before it streamed the lines, and the bytes stay the same.
fn closes_with_empty_line(output: &str) -> bool {
    output.is_empty() || output.ends_with('\n')
}

/// The release's `.relctl/environment` (0600 root: it may hold secrets, and systemd reads it as
/// root) and `.relctl/start`, which the units run it by.
pub(super) fn write_start(
    release_dir: &Path,
    environment: &std::collections::BTreeMap<String, String>,
    start: &str,
) -> Result<()> {
    let meta = store::meta_dir(release_dir);
    atomic::ensure_dir(&meta)?;
    fs::set_permissions(&meta, std::fs::Permissions::from_mode(0o755))?;
    // 0600 root: it may hold values rendered from secrets; systemd reads it as root.
    let env = render::env_file(environment)
        .with_context(|| format!("writing the environment of {}", release_dir.display()))?;
    atomic::write(&store::environment_file(release_dir), env.as_bytes(), 0o600, None)?;
    atomic::write(&meta.join("start"), start.as_bytes(), 0o755, None)?;
    Ok(())
}

/// The build's directories, and its state directory owned by the service user.
pub(super) fn setup_dirs(plan: &BuildPlan, user: &RunAs) -> Result<()> {
    let b = &plan.build;
    for dir in [&plan.app.layout.root, &b.build_dir, &b.releases_dir] {
        atomic::ensure_dir(dir)?;
    }
    // Before the release hooks, which run with the service's environment files.
    secret_key::ensure(&b.secret_key_file())?;
    // The state directory is systemd's (StateDirectory=, StateDirectoryMode=0700); release hooks
    // (migrations) run before the first start, so it must exist and belong to the service user
    // already. It and the cache directory are not for other users: one that an earlier relctl let
    // everyone into (systemd's default 0755, which systemd keeps for a directory that exists) loses
    // the bits for others; a group an admin gave access on purpose (a drop-in's 0750) keeps them.
    let new = !b.state_dir.exists();
    atomic::ensure_dir(&b.state_dir)?;
    chown(&b.state_dir, Some(user.uid), Some(user.gid)).with_context(|| format!("chown {}", b.state_dir.display()))?;
    for dir in [&b.state_dir, &b.cache_dir] {
        let mode = match fs::symlink_metadata(dir) {
            Ok(m) if m.is_dir() => m.mode() & 0o7777,
            _ => continue,
        };
        let narrowed = if new && dir == &b.state_dir { 0o700 } else { mode & !0o007 };
        if narrowed != mode {
            fs::set_permissions(dir, std::fs::Permissions::from_mode(narrowed))?;
        }
    }
    Ok(())
}

/// Writes what the release carries of its configuration: environment file, start script, the
/// build's drop-in as of this release, and the settings file (0640 root:<user>).
pub(super) fn write_release_files(plan: &BuildPlan, user: &RunAs) -> Result<String> {
    write_start(&plan.release_dir, plan.environment.vars(), &plan.start_script)?;
    // What `relctl diff` shows of the environment and settings: each secret as `<secret>`.
    let masked = store::masked_copy(&plan.release_dir, "environment");
    atomic::write(&masked, plan.environment.shown_file()?.as_bytes(), 0o640, None)?;
    if let Some(shown) = plan.settings.as_ref().and_then(|s| s.shown.as_ref()) {
        atomic::write(&store::masked_copy(&plan.release_dir, "settings"), shown.as_bytes(), 0o640, None)?;
    }
    if let Some(d) = &plan.dropin {
        atomic::write(&store::dropin_copy(&plan.release_dir), d.contents.as_bytes(), 0o644, None)?;
    }
    for script in plan.scripts() {
        atomic::write(&plan.release_dir.join(&script.path), script.contents.as_bytes(), 0o755, None)?;
    }
    processes::record(&plan.release_dir, &plan.processes)?;
    if let Some(conf) = &plan.gunicorn_conf {
        atomic::write(&plan.release_dir.join(crate::plan::asgi::CONF), conf.as_bytes(), 0o644, None)?;
    }
    let mut wrote = "environment, start script".to_string();
    if !plan.processes.is_empty() {
        wrote.push_str(&format!(
            ", {} process and {} timer script(s)",
            plan.processes.processes.len(),
            plan.processes.timers.len()
        ));
    }
    let Some(settings) = &plan.settings else {
        return Ok(wrote);
    };
    // Beneath the release through file descriptors: the source may hold symlinks on the way.
    stage::write_beneath(&plan.release_dir, Path::new(&settings.path), settings.contents.as_bytes(), 0o640, user.gid)?;
    Ok(format!("{} from {} (0640 root:{}), {wrote}", settings.path, settings.template, user.user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_verbose_output_is_what_it_was_byte_for_byte() {
        for command in ["true", "echo a", "printf 'a\\nb'", "printf 'a\\n\\n'", "echo x; echo y >&2; printf z"] {
            let hook = Hook { stage: HookStage::Build, command: command.into() };
            let mut streamed = String::new();
            let env = std::collections::BTreeMap::new();
            let output =
                hooks::run(&hook, Path::new("/"), &env, &mut |l| streamed.push_str(&format!("{l}\n"))).unwrap();
            if closes_with_empty_line(&output) {
                streamed.push('\n');
            }
            assert_eq!(streamed, format!("{output}\n"), "{command}");
        }
    }

    #[test]
    fn the_environment_file_is_written_for_root_alone() {
        let dir = tempfile::tempdir().unwrap();
        let env = std::collections::BTreeMap::from([("DB_PASSWORD".to_string(), "s3cret".to_string())]);
        write_start(dir.path(), &env, "#!/bin/sh\n").unwrap();
        let meta = std::fs::metadata(store::environment_file(dir.path())).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o600));
        assert_eq!(store::environment(dir.path()).unwrap(), env, "root reads it back");
        assert_eq!(std::fs::metadata(store::meta_dir(dir.path()).join("start")).unwrap().mode() & 0o7777, 0o755);
    }
}
