use anyhow::Result;

use super::Session;
use crate::cli::{BuildArgs, GlobalArgs};
use crate::error::Outcome;
use crate::manifest::Loaded;
use crate::plan;
use crate::report::{Mode, Report};

pub fn run(loaded: &Loaded, args: &BuildArgs, g: &GlobalArgs, report: &mut Report) -> Result<Outcome> {
    if args.dry_run {
        let plan = plan::build(&plan::app(loaded)?, loaded, &args.build, jiff::Timestamp::now())?;
        match report.mode {
            Mode::Json => report.json(&plan),
            _ => print!("{}", plan.describe()),
        }
        return Ok(Outcome::Ok);
    }
    // The lock first, then the plan: a build that ran while this one waited may have taken the
    // release id this one would have picked.
    let (session, _) = Session::for_build(loaded, g, report, "build", &args.build)?;
    let plan = plan::build(&session.app, loaded, &args.build, jiff::Timestamp::now())?;
    report.say(format!("relctl: building {} {} release {}", plan.app.layout.app, plan.build.build, plan.release));
    let result = session.deploy(&plan.build, report).build(&plan)?;
    report.say(format!("relctl: {} {} is live at release {}", result.app, result.build, result.release));
    report.json(&serde_json::json!({ "result": result, "steps": report.steps() }));
    Ok(Outcome::Ok)
}
