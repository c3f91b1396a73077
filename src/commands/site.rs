//! `relctl site` and `relctl renew`: glue from the manifest to `plan::site` and `site`.

use anyhow::{Context, Result};

use super::Session;
use crate::cli::GlobalArgs;
use crate::error::Error;
use crate::manifest::Loaded;
use crate::plan;
use crate::report::{Mode, Report};
use crate::site;

/// `relctl site` (`site::Run::Site`, `--dry-run` only prints) and `relctl renew` (`site::Run::Renew`).
pub fn run(loaded: &Loaded, how: site::Run<'_>, dry_run: bool, g: &GlobalArgs, report: &mut Report) -> Result<()> {
    let app = plan::app(loaded)?;
    let relctl = std::env::current_exe().context("finding relctl's own path for the renewal service")?;
    let plan = plan::site::site(&app, loaded, &relctl, None)?;
    if plan.domains.is_empty() {
        return Err(Error::Usage(format!(
            "no build has a domain in {}: relctl site serves builds with `domain = \"...\"` (nginx-snippet prints the locations of the others for your own server)",
            loaded.path.display()
        ))
        .into());
    }
    if dry_run {
        let proxy_params = std::path::Path::new(crate::nginx::snippet::PROXY_PARAMS).exists();
        let text = crate::nginx::site::render(&plan.nginx(&loaded.path, |_| true), proxy_params);
        match report.mode {
            Mode::Json => report.json(&serde_json::json!({ "site": plan, "config_text": text })),
            _ => {
                crate::report::out(format!("# relctl site --dry-run: {} would get:\n", plan.config.display()));
                crate::report::out(&text);
                for d in &plan.domains {
                    let how = if d.certificate.is_acme() {
                        format!(
                            "certificate from {} (certbot, HTTP-01)",
                            plan.acme.as_ref().map_or("", |a| a.directory.as_str())
                        )
                    } else {
                        format!("certificate {}", d.certificate.cert().display())
                    };
                    crate::report::out(format!("# {}: {how}\n", d.name));
                }
                for f in &plan.renewal {
                    crate::report::out(format!("# {}:\n{}", f.path.display(), f.contents));
                }
            }
        }
        return Ok(());
    }
    let verb = match how {
        site::Run::Renew => "renew",
        _ => "site",
    };
    let session = Session::for_app(loaded, g, report, verb)?;
    let outcome = site::apply(&plan, &loaded.path, &session.systemd, how, report)?;
    match report.mode {
        Mode::Json => report.json(&serde_json::json!({ "site": outcome, "steps": report.steps() })),
        Mode::Human => print_table(&outcome),
        Mode::Quiet => {}
    }
    let failed: Vec<String> =
        outcome.domains.iter().filter_map(|d| d.error.as_ref().map(|e| format!("{}: {e}", d.domain))).collect();
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} certificate(s) could not be obtained or renewed: {}", failed.len(), failed.join("; "))
    }
}

fn print_table(o: &site::Outcome) {
    let now = jiff::Timestamp::now();
    let rows: Vec<[String; 5]> = o
        .domains
        .iter()
        .map(|d| {
            [
                d.domain.clone(),
                if d.https { "https".to_string() } else { "http only".to_string() },
                if d.certificate.is_acme() { "acme".to_string() } else { "files".to_string() },
                d.expires.as_ref().map_or("-".to_string(), |c| {
                    format!("{} ({} days)", crate::report::utc(c.not_after), c.days_left(now))
                }),
                match (&d.error, d.obtained, d.renewed) {
                    (Some(_), _, _) => "failed".to_string(),
                    (None, true, _) => "obtained".to_string(),
                    (None, false, true) => "renewed".to_string(),
                    (None, false, false) => "ok".to_string(),
                },
            ]
        })
        .collect();
    crate::report::print_table(&["DOMAIN", "SERVED", "CERTIFICATE", "EXPIRES", "THIS RUN"], &rows);
}
