use anyhow::Result;

use super::Session;
use crate::cli::{GlobalArgs, PromoteArgs};
use crate::error::Error;
use crate::manifest::Loaded;
use crate::plan;
use crate::plan::adopt;
use crate::report::{Mode, Report};

pub fn run(loaded: &Loaded, args: &PromoteArgs, g: &GlobalArgs, report: &mut Report) -> Result<()> {
    if args.dry_run {
        let app = plan::app(loaded)?;
        let plan = plan::build::promote(&app, loaded, &args.from, &args.to, jiff::Timestamp::now())?;
        match report.mode {
            Mode::Json => report.json(&serde_json::json!({ "plan": plan })),
            _ => crate::report::out(plan.describe()),
        }
        return Ok(());
    }
    // Under the lock, FROM cannot change between the plan and the copy.
    let (session, to) = Session::for_build(loaded, g, report, &format!("promote {}", args.from), &args.to)?;
    let found = adopt::find_hand_made(&session.app, &to)?;
    if !found.is_empty() {
        return Err(Error::Usage(format!(
            "build {} was set up by hand, not by relctl: found {}; take it over first with relctl build {} --adopt",
            args.to,
            found.describe(),
            args.to
        ))
        .into());
    }
    let plan = plan::build::promote(&session.app, loaded, &args.from, &args.to, jiff::Timestamp::now())?;
    // TO's database against what FROM's code knows: refused, unapplied or tolerated, as asked.
    if let (Some(current), Some(p)) = (to.current_release()?, plan.origin.promoted_from()) {
        let from_build: crate::name::BuildName = p.build.parse()?;
        let from_dir = session.app.layout.build(&from_build).release_dir(&p.release);
        let m = crate::migrations::Move { what: "promoting", target: &p.release, target_dir: &from_dir };
        crate::migrations::prepare(
            &session.app,
            &to,
            &current,
            &m,
            super::schema_mode(&args.schema),
            &session.systemd,
            report,
        )?;
    }
    let from = plan.origin.promoted_from().map(|p| p.to_string()).unwrap_or_default();
    report.say(format!(
        "relctl: promoting {from} to {} {} as release {}",
        plan.app.layout.app, plan.build.build, plan.release
    ));
    let result = session.deploy(&plan.build, report).build(&plan, None)?;
    report.say(format!(
        "relctl: {} {} is live at release {} (promoted from {from})",
        result.app, result.build, result.release
    ));
    report.json(
        &serde_json::json!({ "result": result, "promoted_from": plan.origin.promoted_from(), "steps": report.steps() }),
    );
    Ok(())
}
