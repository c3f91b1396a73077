use anyhow::Result;

use super::{command_line, lock_app};
use crate::cli::{BuildArgs, GlobalArgs};
use crate::deploy;
use crate::error::Outcome;
use crate::manifest::Loaded;
use crate::plan;
use crate::report::{Mode, Report};
use crate::systemd::Systemd;

pub fn run(loaded: &Loaded, args: &BuildArgs, g: &GlobalArgs, report: &mut Report) -> Result<Outcome> {
    let app = plan::app(loaded)?;
    let plan = plan::build(&app, loaded, &args.build, jiff::Timestamp::now())?;
    if args.dry_run {
        match report.mode {
            Mode::Json => report.json(&plan),
            _ => print!("{}", plan.describe()),
        }
        return Ok(Outcome::Ok);
    }
    deploy::require_root(&format!("relctl build {}", args.build))?;
    let systemd = Systemd::connect()?;
    let _lock = lock_app(&app.layout.app, &command_line(), g, report)?;
    // The plan was made before waiting for the lock; a build that ran meanwhile may have taken
    // its release id.
    let plan = plan::build(&app, loaded, &args.build, jiff::Timestamp::now())?;
    report.say(format!("relctl: building {} {} release {}", plan.app.layout.app, plan.build.build, plan.release));
    let result = deploy::build(&plan, &systemd, report)?;
    report.say(format!("relctl: {} {} is live at release {}", result.app, result.build, result.release));
    report.json(&serde_json::json!({ "result": result, "steps": report.steps() }));
    Ok(Outcome::Ok)
}
