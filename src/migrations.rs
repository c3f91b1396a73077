//! Rollbacks and promotes that respect the database (`[schema]`): before a build goes to code
//! older than its database, the migrations applied now that this code does not know are found
//! (`[schema] list` run with the build's current code) and, as the user chose, the command is
//! refused naming them, they are unapplied first with the current code (`[schema] unapply`, after
//! the `pre_migrate` hooks), or the command goes ahead. Never silently.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::deploy::hooks::{self, HookUnit};
use crate::error::Error;
use crate::plan::hook::{Hook, HookStage};
use crate::plan::AppPlan;
use crate::release::id::ReleaseId;
use crate::release::layout::BuildLayout;
use crate::release::schema::{self, Migration, Schema};
use crate::report::Report;
use crate::systemd::dbus::Systemd;

/// What to do with migrations the older code does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Refuse, naming them (the default).
    Refuse,
    /// Unapply them first, with the current code (`--migrate`).
    Unapply,
    /// Go ahead: the older code works with them (`--schema-compatible`).
    Tolerate,
}

/// The move being checked, for messages: `rolling back to` / `promoting`.
pub struct Move<'a> {
    pub what: &'a str,
    /// The release the build goes to, and where its schema record is.
    pub target: &'a ReleaseId,
    pub target_dir: &'a std::path::Path,
}

/// Checks (and with `Mode::Unapply`, brings) `build`'s database to what `m.target`'s code knows;
/// `current` is the release the build runs now. Returns what it found or did, for the report, or
/// None without `[schema]`. A refusal is a usage error: nothing was touched.
pub fn prepare(
    app: &AppPlan,
    build: &BuildLayout,
    current: &ReleaseId,
    m: &Move,
    mode: Mode,
    systemd: &Systemd,
    report: &mut Report,
) -> Result<Option<String>> {
    let Some(commands) = &app.schema else { return Ok(None) };
    let t = Instant::now();
    let known = match schema::recorded(m.target_dir)? {
        Some(s) => s.known,
        None if mode == Mode::Tolerate => {
            return Ok(Some(format!(
                "release {} has no schema record; going ahead (--schema-compatible)",
                m.target
            )))
        }
        None => {
            return Err(Error::Usage(format!(
                "{} {}: it has no schema record (built before [schema], or adopted), so relctl cannot tell whether its code knows the migrations applied now; --schema-compatible goes ahead anyway; nothing was changed",
                m.what, m.target
            ))
            .into())
        }
    };
    let now = list(app, build, current, &commands.list, systemd, report)?;
    let unknown = schema::unknown_to(&now.applied, &known);
    if unknown.is_empty() {
        let detail = format!("release {} knows all {} applied migrations", m.target, now.applied.len());
        report.step("schema", t, &detail);
        return Ok(Some(detail));
    }
    let names = join(&unknown);
    let targets = schema::unapply_targets(&unknown, &known);
    let steps: Vec<String> = targets.iter().map(|(app, to)| unapply_command(&commands.unapply, app, to)).collect();
    match mode {
        Mode::Refuse => Err(Error::Usage(format!(
            "{} {}: its code does not know {} migration(s) applied now: {names}; --migrate unapplies them first with release {current}'s code ({}), --schema-compatible goes ahead leaving them (when that code works with them); nothing was changed",
            m.what,
            m.target,
            unknown.len(),
            steps.join("; ")
        ))
        .into()),
        Mode::Tolerate => {
            let detail = format!("going ahead with {} migration(s) release {} does not know: {names} (--schema-compatible)", unknown.len(), m.target);
            report.step("schema", t, &detail);
            Ok(Some(detail))
        }
        Mode::Unapply => {
            for hook in &app.pre_migrate {
                let t = Instant::now();
                run(app, build, current, hook, systemd, report)
                    .with_context(|| format!("nothing was unapplied; release {current} still serves"))?;
                report.step("hook:pre_migrate", t, &hook.command);
            }
            for (command, (app_label, to)) in steps.iter().zip(&targets) {
                let t = Instant::now();
                let hook = Hook { stage: HookStage::Schema, command: command.clone() };
                run(app, build, current, &hook, systemd, report).with_context(|| {
                    format!(
                        "unapplying {app_label}'s migrations after {to} with release {current}'s code failed (an irreversible migration refuses); release {current} still serves, and the migrations unapplied before it stay so: relctl exec {} -- {} shows the schema",
                        build.build, commands.list
                    )
                })?;
                report.step("unapply", t, command);
            }
            let after = list(app, build, current, &commands.list, systemd, report)?;
            let left = schema::unknown_to(&after.applied, &known);
            if !left.is_empty() {
                bail!(
                    "after unapplying, {} migration(s) release {} does not know are still applied: {}; release {current} still serves",
                    left.len(),
                    m.target,
                    join(&left)
                );
            }
            let detail = format!("unapplied {} migration(s) release {} does not know: {names}", unknown.len(), m.target);
            report.step("schema", t, &detail);
            Ok(Some(detail))
        }
    }
}

fn join(ms: &[Migration]) -> String {
    ms.iter().map(Migration::to_string).collect::<Vec<_>>().join(", ")
}

/// `[schema] unapply` for one app: `{app}` and `{to}` replaced, shell-quoted.
fn unapply_command(template: &str, app: &str, to: &str) -> String {
    let q = |s: &str| shlex::try_quote(s).map(|c| c.into_owned()).unwrap_or_else(|_| "''".into());
    template.replace("{app}", &q(app)).replace("{to}", &q(to))
}

/// `[schema] list` run with `release`'s code, parsed.
fn list(
    app: &AppPlan,
    build: &BuildLayout,
    release: &ReleaseId,
    command: &str,
    systemd: &Systemd,
    report: &mut Report,
) -> Result<Schema> {
    let hook = Hook { stage: HookStage::Schema, command: command.to_string() };
    let output = run(app, build, release, &hook, systemd, report)?;
    schema::parse(&output)
        .map_err(|e| anyhow::anyhow!("[schema] list `{command}` printed something else than migrations: {e}"))
}

/// Runs `hook` with `release`'s code the way release hooks run: as the service (the settings of
/// the unit files systemd runs the build's service from), in the release, in a unit of its own.
fn run(
    app: &AppPlan,
    build: &BuildLayout,
    release: &ReleaseId,
    hook: &Hook,
    systemd: &Systemd,
    report: &mut Report,
) -> Result<String> {
    let files = systemd.unit_files(&build.service_unit)?;
    let plan = crate::exec::plan(app, build, release, &files, &[], Default::default())?;
    let mut properties = plan.properties;
    properties.push(format!("WorkingDirectory={}", plan.release_dir.display()));
    let spec = HookUnit {
        unit: hooks::unit_name(&app.layout.app, &build.build),
        description: format!("relctl {} of {} {}, release {release}", hook.stage, app.layout.app, build.build),
        properties,
        env: [("RELCTL_RELEASE_DIR".to_string(), plan.release_dir.display().to_string())].into(),
        timeout: Duration::from_secs(app.release_timeout_s),
    };
    let ran = hooks::run_in_unit(hook, &spec, systemd, &mut |line| report.verbose(line));
    if let Err(e) = &ran {
        if let Some(f) = e.downcast_ref::<hooks::HookFailed>() {
            report.warn(format!("--- last lines of `{}` ---\n{}\n---", f.command, f.tail));
        }
    }
    ran
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unapply_commands_name_the_app_and_the_migration_quoted() {
        let t = ".venv/bin/python manage.py migrate --noinput {app} {to}";
        assert_eq!(unapply_command(t, "notes", "zero"), ".venv/bin/python manage.py migrate --noinput notes zero");
        assert_eq!(
            unapply_command(t, "a b", "0001_x;y"),
            ".venv/bin/python manage.py migrate --noinput 'a b' '0001_x;y'"
        );
    }
}
