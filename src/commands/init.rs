use anyhow::{Context, Result};

use crate::cli::{GlobalArgs, InitArgs};
use crate::error::Error;
use crate::project::init::{self, FIRST_BUILD};
use crate::report::Report;

pub fn run(args: &InitArgs, g: &GlobalArgs, report: &Report) -> Result<()> {
    if let Some(m) = &g.manifest {
        return Err(Error::Usage(format!(
            "-f/--manifest {} does not apply to init: it writes relctl.toml in the project's directory; run relctl init DIR",
            m.display()
        ))
        .into());
    }
    let cwd = std::env::current_dir().context("finding the current directory")?;
    let given = args.dir.as_deref().unwrap_or(&cwd);
    let dir = std::fs::canonicalize(cwd.join(given))
        .ok()
        .filter(|d| d.is_dir())
        .ok_or_else(|| Error::Usage(format!("{} is not a directory", given.display())))?;
    let plan = init::plan(&dir, args.app.as_deref())?;
    let conf = init::write(&plan)?;
    // As root, relctl uses only a manifest only root can change: say so now, in a checkout of
    // one's own, rather than at the first `sudo relctl build`.
    let refused = match crate::host::trust::check(&plan.path, "manifest", crate::host::trust::Trust::RootOnly) {
        Err(crate::host::trust::Error::NotRootOnly(e)) => Some(e),
        _ => None,
    };
    let command = match refused {
        Some(_) => format!("relctl build {FIRST_BUILD} --dry-run"),
        None => format!("sudo relctl build {FIRST_BUILD}"),
    };
    let next =
        if dir == cwd { command } else { format!("cd {} && {command}", shlex::try_quote(&dir.to_string_lossy())?) };
    if let Some(e) = &refused {
        report.warn(format!(
            "  note: sudo relctl will refuse this manifest where it is ({e}); plan without sudo ({next}) and deploy from a copy only root can change, e.g. in /srv (docs/units-and-hardening.md: \"Trust and permissions\")"
        ));
    }
    for path in std::iter::once(plan.path.as_path()).chain(conf) {
        report.say(format!("relctl: wrote {}", path.display()));
    }
    for line in &plan.found {
        report.say(format!("  found: {line}"));
    }
    for note in &plan.notes {
        report.warn(format!("  note: {note}"));
    }
    if plan.project.django.is_some() || plan.project.python_app.is_some() {
        report.say(format!("next: check it, then run: {next}"));
    } else {
        report.say(format!(
            "no Django, Flask, FastAPI or Starlette app found: the file is a generic starter; fill in [service] exec and what else you need, then run: {next}"
        ));
    }
    report.json(&serde_json::json!({ "written": plan.path, "also_written": Vec::from_iter(conf), "found": plan.found, "notes": plan.notes, "project": plan.project, "next": next }));
    Ok(())
}
