use anyhow::Result;

use super::Session;
use crate::cli::{BuildArgs, GlobalArgs};
use crate::error::Error;
use crate::manifest::Loaded;
use crate::plan;
use crate::plan::adopt;
use crate::plan::deps::KeyCommands;
use crate::report::{Mode, Report};

pub fn run(loaded: &Loaded, args: &BuildArgs, g: &GlobalArgs, report: &mut Report) -> Result<()> {
    let app = plan::app(loaded)?;
    loaded.build(&args.build)?;
    let found = adopt::find_hand_made(&app, &app.layout.build(&args.build))?;
    if !found.is_empty() && !args.adopt {
        return Err(Error::Usage(format!(
            "build {b} was set up by hand, not by relctl: found {}; relctl does not replace it behind your back. To take it over (unit files backed up under {}, the hand-made files kept as a release to roll back to, the public socket serving throughout), run: relctl build {b} --adopt (add --dry-run to see the plan)",
            found.describe(),
            adopt::BACKUP_DIR,
            b = args.build
        ))
        .into());
    }
    if args.adopt && found.is_empty() {
        report.say(format!("relctl: build {} has nothing hand-made to adopt; building as usual", args.build));
    }
    if args.dry_run {
        let now = jiff::Timestamp::now();
        let plan = plan::build::build(&app, loaded, &args.build, now, KeyCommands::NotRun)?;
        let adoption = (!found.is_empty()).then(|| adopt::adopt(loaded, &plan, found, now)).transpose()?;
        match report.mode {
            Mode::Json => report.json(&serde_json::json!({ "plan": plan, "adopt": adoption })),
            _ => {
                crate::report::out(plan.describe());
                if let Some(a) = &adoption {
                    crate::report::out(a.describe(&plan.build));
                }
            }
        }
        return Ok(());
    }
    // The lock first, then the plan: a build that ran while this one waited may have taken the
    // release id this one would have picked.
    let (session, _) = Session::for_adoption(loaded, g, report, &args.build, &found.unit_files)?;
    let now = jiff::Timestamp::now();
    let plan = plan::build::build(&session.app, loaded, &args.build, now, KeyCommands::Run)?;
    // Looked at again under the lock.
    let found = adopt::find_hand_made(&session.app, &plan.build)?;
    let adoption = (args.adopt && !found.is_empty()).then(|| adopt::adopt(loaded, &plan, found, now)).transpose()?;
    report.say(format!("relctl: building {} {} release {}", plan.app.layout.app, plan.build.build, plan.release));
    let result = session.deploy(&plan.build, report).build(&plan, adoption.as_ref())?;
    if let Some(a) = &adoption {
        let back = match crate::release::store::not_a_rollback_target(&a.release_dir)? {
            None => format!("relctl rollback {} --to {} returns to it", result.build, a.release),
            Some(why) => format!("not a rollback target: {why}"),
        };
        report.say(format!(
            "relctl: adopted the hand-made setup as release {} ({back}); its unit files are backed up in {}",
            a.release,
            a.backup_dir.display()
        ));
    }
    report.say(format!("relctl: {} {} is live at release {}", result.app, result.build, result.release));
    if let Some(domain) = loaded.build(&args.build)?.domain {
        serve_domain(loaded, &session, &args.build, &domain, report);
    }
    report.json(&serde_json::json!({ "result": result, "steps": report.steps() }));
    Ok(())
}

/// A build with a domain the site does not serve yet (a new member of a family with
/// `domain = "{{ build }}.review.example.org"`): once it is live, its server blocks are added
/// and its certificate asked for, when the app's site is in use (`relctl site` ran). The build
/// is live whatever happens here: a failure is a warning, and `relctl status` shows the domain.
fn serve_domain(loaded: &Loaded, session: &Session, build: &crate::name::BuildName, domain: &str, report: &mut Report) {
    let mut served = || -> Result<Vec<String>> {
        let app = plan::app(loaded)?;
        let relctl = std::env::current_exe()?;
        let site = plan::site::site(&app, loaded, &relctl, None)?;
        let Some(installed) = crate::host::atomic::read_string_if_exists(&site.config)? else {
            report.say(format!(
                "relctl: build {build} has domain {domain}: relctl site serves it over HTTPS (not run yet for {})",
                app.layout.app
            ));
            return Ok(Vec::new());
        };
        let d = site.domains.iter().find(|d| d.name == domain);
        if installed.contains(&format!("server_name {domain};")) && d.is_some_and(crate::site::has_certificate) {
            return Ok(Vec::new());
        }
        let outcome =
            crate::site::apply(&site, &loaded.path, &session.systemd, crate::site::Run::Build(domain), report)?;
        Ok(outcome.domains.into_iter().filter_map(|d| d.error).collect())
    };
    match served() {
        Ok(errors) if errors.is_empty() => {}
        Ok(errors) => report.warn(format!(
            "relctl: {domain} is served on HTTP only until it has a certificate ({}); relctl status shows it, relctl site tries again",
            errors.join("; ")
        )),
        Err(e) => report.warn(format!("relctl: serving {domain}: {e:#}; relctl site tries again")),
    }
}
