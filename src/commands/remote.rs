//! Commands run on other hosts: `-H HOST` (one host), `--hosts a,b,c` or a build's `hosts` in the
//! manifest (a roll, or `status` of every host). The work is `fleet`'s and `remote`'s.

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::error::Error;
use crate::name::BuildName;
use crate::remote::fleet::{self, HostState, Job};
use crate::remote::ssh::{self, Output};
use crate::remote::target::Target;
use crate::report::{Mode, Report};

/// Where a command runs.
pub enum Place {
    Here,
    One(Target),
    Many(Vec<Target>),
}

/// The build a command is about (None: every build, or none).
fn build_of(command: &Command) -> Option<&BuildName> {
    match command {
        Command::Init(_) | Command::Completions { .. } | Command::NginxSnippet(_) => None,
        Command::Build(a) => Some(&a.build),
        Command::Rollback(a) => Some(&a.build),
        Command::Promote(a) => Some(&a.to),
        Command::Restart(a) | Command::Status(a) => a.build.as_ref(),
        Command::Start(a) | Command::Stop(a) | Command::Reload(a) | Command::Releases(a) => Some(&a.build),
        Command::Destroy(a) => Some(&a.build),
        Command::Logs(a) => Some(&a.build),
        Command::Exec(a) => Some(&a.build),
    }
}

/// `-H`, then `--hosts`, then the manifest's `hosts` of the build the command is about (for
/// `status` without a build: of every build).
pub fn place(cli: &Cli) -> Result<Place> {
    let g = &cli.global;
    if let Some(t) = &g.host {
        return Ok(Place::One(t.clone()));
    }
    if !g.hosts.is_empty() {
        return Ok(Place::Many(g.hosts.clone()));
    }
    if let Command::Init(_) | Command::Completions { .. } = cli.command {
        return Ok(Place::Here);
    }
    // A manifest that does not load is the command's to report.
    let Ok(loaded) = super::load(g) else { return Ok(Place::Here) };
    let mut hosts: Vec<String> = match build_of(&cli.command) {
        Some(b) => loaded.build(b).map(|d| d.hosts).unwrap_or_default(),
        None => loaded.manifest.named_builds().flat_map(|(_, b)| b.hosts.clone()).collect(),
    };
    let mut seen = std::collections::BTreeSet::new();
    hosts.retain(|h| seen.insert(h.clone()));
    if hosts.is_empty() {
        return Ok(Place::Here);
    }
    let hosts = hosts.iter().map(|h| h.parse().map_err(Error::Usage)).collect::<Result<Vec<Target>, _>>()?;
    Ok(Place::Many(hosts))
}

fn job(cli: &Cli) -> Result<Job> {
    let loaded = super::load(&cli.global)?;
    let args = ssh::forwarded_args(&std::env::args_os().skip(1).collect::<Vec<_>>())?;
    let reported = match &cli.command {
        Command::Build(_) | Command::Rollback(_) | Command::Promote(_) | Command::Restart(_) => build_of(&cli.command),
        _ => None,
    };
    Job::new(loaded, matches!(cli.command, Command::Build(_)), reported, args)
}

pub fn run(cli: &Cli, place: Place, report: &Report) -> Result<()> {
    if let Command::Init(_) | Command::Completions { .. } = cli.command {
        let what = if matches!(cli.command, Command::Init(_)) { "init" } else { "completions" };
        return Err(Error::Usage(format!("relctl {what} runs here, not on a host: leave out -H/--hosts")).into());
    }
    match place {
        Place::Here => unreachable!("commands::dispatch runs those here"),
        Place::One(target) => {
            let (_, code, _) = job(cli)?.run_on(&target, &Output::Inherit)?;
            Ok(Error::from_exit(code)?)
        }
        Place::Many(hosts) => match &cli.command {
            Command::Build(_) | Command::Rollback(_) | Command::Promote(_) => roll(cli, &hosts, report),
            Command::Restart(a) if a.build.is_some() => roll(cli, &hosts, report),
            Command::Status(_) => status(cli, &hosts, report),
            _ => Err(Error::Usage(format!(
                "this command runs on one host at a time; the build runs on {}: pick one with -H",
                hosts.iter().map(Target::to_string).collect::<Vec<_>>().join(", ")
            ))
            .into()),
        },
    }
}

/// `build`, `restart`, `rollback`, `promote` across hosts, `--serial` at a time.
fn roll(cli: &Cli, hosts: &[Target], report: &Report) -> Result<()> {
    let job = job(cli)?;
    let serial = cli.global.serial;
    let names: Vec<String> = hosts.iter().map(Target::to_string).collect();
    report.say(format!("relctl: rolling over {} ({serial} at a time): {}", names.join(", "), job.args.join(" ")));
    let rows = fleet::roll_job(&job, hosts, serial.into(), report.mode);
    match report.mode {
        Mode::Json => report.json(&serde_json::json!({ "app": job.loaded.manifest.app, "hosts": rows })),
        Mode::Human => fleet::print_table(&rows),
        Mode::Quiet => {}
    }
    match rows.iter().find(|r| r.result == HostState::Failed) {
        Some(first) => Err(anyhow::anyhow!("the roll stopped at {}; the hosts after it were not touched", first.host)),
        None => Ok(()),
    }
}

/// `status` of every host, as one table.
fn status(cli: &Cli, hosts: &[Target], report: &Report) -> Result<()> {
    let mut job = job(cli)?;
    if !job.args.iter().any(|a| a == "--json") {
        job.args.insert(0, "--json".into());
    }
    let statuses = fleet::status_of(&job, hosts);
    let mut end = Ok(());
    let mut docs = Vec::new();
    for h in &statuses {
        match &h.status {
            Ok((code, answer)) => {
                if *code != 0 && end.is_ok() {
                    end = Err(Error::NotActive);
                }
                docs.push(serde_json::json!({ "host": h.host, "status": answer.doc }));
            }
            Err(why) => {
                crate::report::err(format!("{} | relctl: {why}\n", h.host));
                docs.push(serde_json::json!({ "host": h.host, "error": why }));
                end = Err(Error::Exited(1));
            }
        }
    }
    match report.mode {
        Mode::Json => report.json(&serde_json::json!({ "hosts": docs })),
        Mode::Human => crate::report::print_table(
            &["HOST", "BUILD", "STATE", "RELEASE", "PID", "ROUTE"],
            &fleet::status_rows(&statuses),
        ),
        Mode::Quiet => {}
    }
    end.map_err(Into::into)
}
