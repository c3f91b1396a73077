use anyhow::Result;

use crate::cli::BuildArgs;
use crate::deploy;
use crate::error::Outcome;
use crate::manifest::Loaded;
use crate::plan;
use crate::report::{Mode, Report};

pub fn run(loaded: &Loaded, args: &BuildArgs, report: &mut Report) -> Result<Outcome> {
    let app = plan::app(loaded)?;
    let plan = plan::build(&app, loaded, &args.build, jiff::Timestamp::now())?;
    if args.dry_run {
        match report.mode {
            Mode::Json => report.json(&plan),
            _ => print!("{}", plan.describe()),
        }
        return Ok(Outcome::Ok);
    }
    report.say(format!("relctl: building {} {} release {}", plan.app.layout.app, plan.build.build, plan.release));
    let result = deploy::build(&plan, report)?;
    report.say(format!("relctl: {} {} is live at release {}", result.app, result.build, result.release));
    report.json(&serde_json::json!({ "result": result, "steps": report.steps() }));
    Ok(Outcome::Ok)
}
