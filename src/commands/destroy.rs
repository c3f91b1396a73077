use anyhow::Result;

use super::Session;
use crate::cli::{DestroyArgs, GlobalArgs};
use crate::destroy::{self, Destroy, SnippetOutput};
use crate::manifest::Loaded;
use crate::plan;
use crate::report::{Mode, Report};

pub fn run(loaded: &Loaded, args: &DestroyArgs, g: &GlobalArgs, report: &mut Report) -> Result<()> {
    let snippet = || {
        args.output.as_ref().map(|output| SnippetOutput {
            output: output.clone(),
            check: args.check,
            reload: args.reload,
        })
    };
    let app = plan::app(loaded)?;
    loaded.build(&args.build)?;
    // Usage errors before root and the lock.
    destroy::require_on_disk(&app.layout.build(&args.build))?;
    if args.dry_run {
        let plan = destroy::plan(&app, loaded, &args.build, args.purge, snippet())?;
        match report.mode {
            Mode::Json => report.json(&serde_json::json!({ "plan": plan })),
            _ => crate::report::out(plan.describe()),
        }
        return Ok(());
    }
    // Planned under the lock: a relctl that held it may have changed what is there.
    let (session, _) = Session::for_build(loaded, g, report, "destroy", &args.build)?;
    let plan = destroy::plan(&session.app, loaded, &args.build, args.purge, snippet())?;
    report.say(format!("relctl: destroying {} {}", plan.app, args.build));
    let result = Destroy::new(&plan, &session.systemd, report).run()?;
    let kept = if result.kept.is_empty() {
        String::new()
    } else {
        format!(
            "; kept {} (relctl destroy --purge removes it)",
            result.kept.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and ")
        )
    };
    report.say(format!("relctl: destroyed {} {}{kept}", result.app, result.build));
    report.json(&serde_json::json!({ "result": result, "steps": report.steps() }));
    Ok(())
}
