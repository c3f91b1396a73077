//! Commands run on other hosts: `-H HOST` (one host), `--hosts a,b,c` or a build's `hosts` in the
//! manifest (a roll, or `status` of every host). The work is `fleet`'s and `remote`'s.

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::error::Error;
use crate::manifest::target::Target;
use crate::manifest::Loaded;
use crate::name::BuildName;
use crate::remote::fleet::{self, HostState, Job, Ships};
use crate::remote::ssh::{self, Output};
use crate::report::{Mode, Report};

/// Where a command runs.
pub enum Place {
    Here,
    One(Target),
    Many(Vec<Target>),
}

/// The build a command is about (None: every build, or none).
pub(super) fn build_of(command: &Command) -> Option<&BuildName> {
    match command {
        Command::Init(_)
        | Command::Completions { .. }
        | Command::NginxSnippet(_)
        | Command::Site(_)
        | Command::Renew => None,
        Command::Build(a) => Some(&a.build),
        Command::Diff(a) => Some(&a.build),
        Command::Rollback(a) => Some(&a.build),
        Command::Promote(a) => Some(&a.to),
        Command::Restart(a) => a.build.as_ref(),
        Command::Status(a) => a.build.as_ref(),
        Command::History(a) => a.build.as_ref(),
        Command::Start(a) | Command::Stop(a) | Command::Reload(a) | Command::Releases(a) => Some(&a.build),
        Command::Destroy(a) => Some(&a.build),
        Command::Logs(a) => a.build.as_ref(),
        Command::Maintenance(a) => Some(&a.build),
        Command::Exec(a) => Some(&a.build),
    }
}

/// `-H`, then `--hosts`, then the manifest's `hosts` of the build the command is about (for
/// `status` without a build: of every build). `loaded`: the manifest, when it loaded (one that
/// does not is the command's to report).
pub fn place(cli: &Cli, loaded: Option<&Loaded>) -> Result<Place> {
    let g = &cli.global;
    if let Some(t) = &g.host {
        return Ok(Place::One(t.clone()));
    }
    if !g.hosts.is_empty() {
        return Ok(Place::Many(g.hosts.clone()));
    }
    // site and renew configure this host whatever hosts the builds run on.
    if let Command::Init(_) | Command::Completions { .. } | Command::Site(_) | Command::Renew = cli.command {
        return Ok(Place::Here);
    }
    let Some(loaded) = loaded else { return Ok(Place::Here) };
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

/// `manifest`: as `commands::dispatch` read it.
fn job(cli: &Cli, manifest: Option<Result<Loaded>>) -> Result<Job> {
    let loaded = manifest.expect("read for every command but init and completions")?;
    let args = ssh::forwarded_args(&std::env::args_os().skip(1).collect::<Vec<_>>())?;
    let reported = match &cli.command {
        Command::Build(_) | Command::Rollback(_) | Command::Promote(_) | Command::Restart(_) => build_of(&cli.command),
        _ => None,
    };
    // `diff` plans the build as `build` does: from the same sources.
    let ships =
        if matches!(cli.command, Command::Build(_) | Command::Diff(_)) { Ships::Sources } else { Ships::ManifestOnly };
    Job::new(loaded, ships, reported, args)
}

pub fn run(cli: &Cli, place: Place, manifest: Option<Result<Loaded>>, report: &Report) -> Result<()> {
    if let Command::Init(_) | Command::Completions { .. } = cli.command {
        let what = if matches!(cli.command, Command::Init(_)) { "init" } else { "completions" };
        return Err(Error::Usage(format!("relctl {what} runs here, not on a host: leave out -H/--hosts")).into());
    }
    if let Command::Site(_) | Command::Renew = cli.command {
        return Err(Error::Usage(
            "relctl site and relctl renew configure the host they run on, and its renewal timer reads the manifest there: run them on each host (ssh HOST sudo relctl site), without -H/--hosts or a build's hosts".into(),
        )
        .into());
    }
    match place {
        Place::Here => unreachable!("commands::dispatch runs those here"),
        Place::One(target) => {
            let ran = job(cli, manifest).and_then(|job| job.run_on(&target, &Output::Inherit));
            let (_, code, _) = match ran {
                // `diff` exits 1 when something differs: its own failures are 2, as there.
                Err(e) if matches!(cli.command, Command::Diff(_)) && crate::error::find(&e).is_none() => {
                    return Err(Error::CannotCompare(crate::error::one_line(&e)).into());
                }
                ran => ran?,
            };
            Ok(Error::from_exit(code)?)
        }
        Place::Many(hosts) => match &cli.command {
            Command::Build(_) | Command::Rollback(_) | Command::Promote(_) => {
                roll(job(cli, manifest)?, cli, &hosts, report)
            }
            Command::Restart(a) if a.build.is_some() => roll(job(cli, manifest)?, cli, &hosts, report),
            Command::Status(_) => status(job(cli, manifest)?, &hosts, report),
            Command::History(_) => super::history::across(job(cli, manifest)?, &hosts, report),
            _ => Err(Error::Usage(format!(
                "this command runs on one host at a time; the build runs on {}: pick one with -H",
                hosts.iter().map(Target::to_string).collect::<Vec<_>>().join(", ")
            ))
            .into()),
        },
    }
}

/// `build`, `restart`, `rollback`, `promote` across hosts, `--serial` at a time.
fn roll(job: Job, cli: &Cli, hosts: &[Target], report: &Report) -> Result<()> {
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
fn status(mut job: Job, hosts: &[Target], report: &Report) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn hosts(place: Place) -> Option<Vec<String>> {
        match place {
            Place::Many(hosts) => Some(hosts.iter().map(Target::to_string).collect()),
            Place::Here => None,
            Place::One(t) => panic!("one host: {t}"),
        }
    }

    #[test]
    fn where_a_command_runs_comes_from_the_manifest_dispatch_read() {
        let text = "app = \"medctrl\"\n[service]\nexec = \"x\"\n[builds.production]\nhosts = [\"web1\", \"web2\"]\n[builds.development]\n";
        let loaded =
            Loaded { path: "/x/relctl.toml".into(), dir: "/x".into(), manifest: crate::manifest::parse(text).unwrap() };
        let cli = |args: &[&str]| Cli::try_parse_from([&["relctl"], args].concat()).unwrap();
        let build = cli(&["build", "production"]);
        assert_eq!(hosts(place(&build, Some(&loaded)).unwrap()), Some(vec!["web1".into(), "web2".into()]));
        assert_eq!(hosts(place(&cli(&["build", "development"]), Some(&loaded)).unwrap()), None);
        // A manifest that did not load: here, where the command reports it.
        assert_eq!(hosts(place(&build, None).unwrap()), None);
        assert_eq!(
            hosts(place(&cli(&["--hosts", "h1", "build", "production"]), None).unwrap()),
            Some(vec!["h1".into()])
        );
    }
}
