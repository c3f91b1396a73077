//! `relctl history`: the app's audit records (see `crate::audit`), here or across hosts.

use anyhow::Result;

use crate::audit::{self, Outcome, Record};
use crate::cli::HistoryArgs;
use crate::error::Error;
use crate::manifest::target::Target;
use crate::manifest::Loaded;
use crate::plan;
use crate::remote::fleet::{self, Job};
use crate::remote::ssh::Output;
use crate::report::{Mode, Report};

pub fn run(loaded: &Loaded, args: &HistoryArgs, report: &Report) -> Result<()> {
    let app = plan::app(loaded)?;
    if let Some(b) = &args.build {
        loaded.build(b)?;
    }
    let file = audit::history_file(&app.layout.app);
    if !nix::unistd::geteuid().is_root() && file.exists() {
        return Err(Error::Usage(format!(
            "relctl history reads {} (0600 root: it names who ran what): run it with sudo",
            file.display()
        ))
        .into());
    }
    let all = audit::read(&file, args.build.as_ref())?;
    let records = &all[all.len().saturating_sub(args.lines)..];
    match report.mode {
        Mode::Json => report.json(&serde_json::json!({ "app": app.layout.app, "history": records })),
        Mode::Human => print(records.iter().map(|r| (None, r))),
        Mode::Quiet => {}
    }
    Ok(())
}

/// `history` on every host, merged by time.
pub fn across(mut job: Job, hosts: &[Target], report: &Report) -> Result<()> {
    if !job.args.iter().any(|a| a == "--json") {
        job.args.insert(0, "--json".into());
    }
    let answers: Vec<(String, Result<Vec<Record>, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = hosts
            .iter()
            .map(|t| {
                let job = &job;
                s.spawn(move || {
                    let records = job
                        .run_on(t, &Output::Captured(t.to_string()))
                        .map_err(|e| crate::error::one_line(&e))
                        .and_then(|(_, code, out)| match fleet::json_answer(&out)? {
                            Some(doc) => serde_json::from_value::<Vec<Record>>(doc["history"].clone())
                                .map_err(|e| format!("its history answer is not relctl's ({e})")),
                            None => Err(format!("relctl history exited {code} there without an answer")),
                        });
                    (t.to_string(), records)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a history thread panicked")).collect()
    });
    let mut merged: Vec<(String, Record)> = Vec::new();
    let mut failed = false;
    for (host, answer) in answers {
        match answer {
            Ok(records) => merged.extend(records.into_iter().map(|r| (host.clone(), r))),
            Err(why) => {
                crate::report::err(format!("{host} | relctl: {why}\n"));
                failed = true;
            }
        }
    }
    merged.sort_by_key(|(_, r)| r.time);
    match report.mode {
        Mode::Json => report.json(&serde_json::json!({
            "history": merged.iter().map(|(h, r)| serde_json::json!({ "target": h, "record": r })).collect::<Vec<_>>()
        })),
        Mode::Human => print(merged.iter().map(|(h, r)| (Some(h.as_str()), r))),
        Mode::Quiet => {}
    }
    if failed {
        Err(Error::Exited(1).into())
    } else {
        Ok(())
    }
}

fn print<'a>(records: impl Iterator<Item = (Option<&'a str>, &'a Record)>) {
    let dash = || "-".to_string();
    let rows: Vec<[String; 8]> = records
        .map(|(target, r)| {
            [
                crate::report::utc(r.time),
                target.map_or_else(|| r.host.clone(), String::from),
                format!("{} ({})", r.who.user, r.who.via),
                format!("{}{}", r.command, r.build.as_ref().map(|b| format!(" {b}")).unwrap_or_default()),
                r.from.as_ref().map_or_else(dash, |i| i.to_string()),
                r.to.as_ref().map_or_else(dash, |i| i.to_string()),
                match (r.result, &r.error) {
                    (Outcome::Ok, _) => "ok".to_string(),
                    (Outcome::Failed, Some(e)) => format!("failed: {}", crate::report::terminal_safe(e)),
                    (Outcome::Failed, None) => "failed".to_string(),
                },
                format!("{:.1}s", r.duration_s),
            ]
        })
        .collect();
    crate::report::print_table(&["TIME", "HOST", "WHO", "COMMAND", "FROM", "TO", "RESULT", "TOOK"], &rows);
}
