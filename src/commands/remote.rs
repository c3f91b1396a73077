//! Commands run on other hosts: `-H HOST` (one host), `--hosts a,b,c` or a build's `hosts` in the
//! manifest (a roll, or `status` of every host).

use anyhow::Result;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::error::{Outcome, UsageError};
use crate::fleet::{self, HostResult, HostState};
use crate::manifest::Loaded;
use crate::remote::{self, Output, Remote, Shipment, Target};
use crate::report::{Mode, Report};

/// Where a command runs.
pub enum Place {
    Here,
    One(Target),
    Many(Vec<Target>),
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
    let build = match &cli.command {
        Command::Init(_) | Command::Completions { .. } => return Ok(Place::Here),
        Command::Build(a) => Some(a.build.as_str()),
        Command::Rollback(a) => Some(a.build.as_str()),
        Command::Promote(a) => Some(a.to.as_str()),
        Command::Restart(a) | Command::Status(a) => a.build.as_deref(),
        Command::Start(a) | Command::Stop(a) | Command::Reload(a) | Command::Releases(a) => Some(a.build.as_str()),
        Command::Destroy(a) => Some(a.build.as_str()),
        Command::Logs(a) => Some(a.build.as_str()),
        Command::Exec(a) => Some(a.build.as_str()),
        Command::NginxSnippet(_) => None,
    };
    // A manifest that does not load is the command's to report.
    let Ok(loaded) = super::load(g) else { return Ok(Place::Here) };
    let mut hosts: Vec<String> = match build {
        Some(b) => loaded.build(b).map(|d| d.hosts).unwrap_or_default(),
        None => loaded.manifest.named_builds().flat_map(|(_, b)| b.hosts.clone()).collect(),
    };
    let mut seen = std::collections::BTreeSet::new();
    hosts.retain(|h| seen.insert(h.clone()));
    if hosts.is_empty() {
        return Ok(Place::Here);
    }
    let hosts = hosts.iter().map(|h| h.parse().map_err(UsageError)).collect::<Result<Vec<Target>, _>>()?;
    Ok(Place::Many(hosts))
}

/// What a command run elsewhere ships and runs there.
struct Job {
    loaded: Loaded,
    shipment: Shipment,
    args: Vec<String>,
    revision: Option<String>,
    /// The build whose release the table shows.
    build_dir: Option<std::path::PathBuf>,
}

impl Job {
    fn new(cli: &Cli) -> Result<Job> {
        let ships_source = matches!(cli.command, Command::Build(_));
        let loaded = super::load(&cli.global)?;
        let source = if ships_source { Some(crate::plan::source_copy(&loaded)?) } else { None };
        let revision = source.as_ref().and_then(|s| crate::git::revision(&s.source)).map(|r| r.label());
        let shipment = Shipment::new(&loaded, source)?;
        let args = remote::forwarded_args(&std::env::args_os().skip(1).collect::<Vec<_>>())?;
        let build = match &cli.command {
            Command::Build(a) => Some(a.build.clone()),
            Command::Rollback(a) => Some(a.build.clone()),
            Command::Promote(a) => Some(a.to.clone()),
            Command::Restart(a) => a.build.clone(),
            _ => None,
        };
        let build_dir = match build {
            Some(b) => Some(crate::plan::app(&loaded)?.layout.build(&b).build_dir),
            None => None,
        };
        Ok(Job { loaded, shipment, args, revision, build_dir })
    }

    /// Ships and runs on one host; the error is for a host relctl could not run on.
    fn run_on(&self, target: &Target, output: &Output) -> Result<(Remote, Outcome, Vec<u8>)> {
        let host = Remote::new(target.clone())?;
        host.check_version()?;
        let dir = host.ship(&self.shipment)?;
        let (outcome, captured) = host.run(&dir, &self.args, self.revision.as_deref(), output)?;
        Ok((host, outcome, captured))
    }
}

pub fn run(cli: &Cli, place: Place, report: &Report) -> Result<Outcome> {
    let g = &cli.global;
    if let Command::Init(_) | Command::Completions { .. } = cli.command {
        return Err(UsageError(format!(
            "relctl {} runs here, not on a host: leave out -H/--hosts",
            if matches!(cli.command, Command::Init(_)) { "init" } else { "completions" }
        ))
        .into());
    }
    match place {
        Place::Here => unreachable!("commands::dispatch runs those here"),
        Place::One(target) => {
            let job = Job::new(cli)?;
            job.run_on(&target, &Output::Inherit).map(|(_, outcome, _)| outcome)
        }
        Place::Many(hosts) => match &cli.command {
            Command::Build(_) | Command::Rollback(_) | Command::Promote(_) => roll(cli, &hosts, g, report),
            Command::Restart(a) if a.build.is_some() => roll(cli, &hosts, g, report),
            Command::Status(_) => status(cli, &hosts, report),
            _ => Err(UsageError(format!(
                "this command runs on one host at a time; the build runs on {}: pick one with -H",
                hosts.iter().map(Target::to_string).collect::<Vec<_>>().join(", ")
            ))
            .into()),
        },
    }
}

/// `build`, `restart`, `rollback`, `promote` across hosts, `--serial` at a time.
fn roll(cli: &Cli, hosts: &[Target], g: &GlobalArgs, report: &Report) -> Result<Outcome> {
    let job = Job::new(cli)?;
    let json = report.mode == Mode::Json;
    report.say(format!(
        "relctl: rolling over {} ({} at a time): {}",
        hosts.iter().map(Target::to_string).collect::<Vec<_>>().join(", "),
        g.serial,
        job.args.join(" ")
    ));
    let rows = fleet::roll(hosts, g.serial.into(), |target| {
        let prefix = target.to_string();
        let output = if json { Output::Captured(prefix.clone()) } else { Output::Prefixed(prefix.clone()) };
        let mut row = HostResult {
            host: prefix.clone(),
            result: HostState::Failed,
            exit_code: None,
            error: None,
            release: None,
            seconds: 0.0,
            output: None,
        };
        match job.run_on(target, &output) {
            Ok((host, outcome, captured)) => {
                row.exit_code = Some(match outcome {
                    Outcome::Ok => 0,
                    Outcome::NotActive => 3,
                    Outcome::Exited(c) => c,
                });
                if outcome == Outcome::Ok {
                    row.result = HostState::Ok;
                }
                row.output = serde_json::from_slice(&captured).ok();
                row.release = job.build_dir.as_ref().and_then(|d| {
                    let link = shlex::try_quote(&d.join("current").display().to_string()).ok()?.into_owned();
                    host.query(&format!("readlink {link}")).map(|r| r.trim_start_matches("releases/").to_string())
                });
            }
            Err(e) => {
                let why = crate::error::one_line(&e);
                eprintln!("{prefix} | relctl: {why}");
                row.error = Some(why);
            }
        }
        row
    });
    let failed = rows.iter().any(|r| r.result != HostState::Ok);
    match report.mode {
        Mode::Json => report.json(&serde_json::json!({ "app": job.loaded.manifest.app, "hosts": rows })),
        Mode::Human => fleet::print_table(&rows),
        Mode::Quiet => {}
    }
    if failed {
        let first = rows.iter().find(|r| r.result == HostState::Failed).map(|r| r.host.clone()).unwrap_or_default();
        return Err(anyhow::anyhow!("the roll stopped at {first}; the hosts after it were not touched"));
    }
    Ok(Outcome::Ok)
}

/// `status` of every host, as one table.
fn status(cli: &Cli, hosts: &[Target], report: &Report) -> Result<Outcome> {
    let mut job = Job::new(cli)?;
    if !job.args.iter().any(|a| a == "--json") {
        job.args.insert(0, "--json".into());
    }
    let rows = std::thread::scope(|s| {
        let handles: Vec<_> = hosts
            .iter()
            .map(|t| {
                let job = &job;
                s.spawn(move || (t.to_string(), job.run_on(t, &Output::Captured(t.to_string()))))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a status thread panicked")).collect::<Vec<_>>()
    });
    let mut docs = Vec::new();
    let mut table = Vec::new();
    let mut outcome = Outcome::Ok;
    for (host, r) in rows {
        match r {
            Ok((_, code, captured)) => {
                if code != Outcome::Ok && outcome == Outcome::Ok {
                    outcome = Outcome::NotActive;
                }
                let doc: serde_json::Value = serde_json::from_slice(&captured).unwrap_or_default();
                for b in doc["builds"].as_array().into_iter().flatten() {
                    let s = |k: &str| b[k].as_str().map(str::to_string).unwrap_or_else(|| "-".into());
                    table.push([
                        host.clone(),
                        s("build"),
                        format!("{} ({})", s("state"), s("sub_state")),
                        s("release"),
                        b["main_pid"].as_u64().map_or("-".into(), |p| p.to_string()),
                        s("route"),
                    ]);
                }
                docs.push(serde_json::json!({ "host": host, "status": doc }));
            }
            Err(e) => {
                let why = crate::error::one_line(&e);
                eprintln!("{host} | relctl: {why}");
                table.push([host.clone(), "-".into(), format!("unknown: {why}"), "-".into(), "-".into(), "-".into()]);
                docs.push(serde_json::json!({ "host": host, "error": why }));
                outcome = Outcome::Exited(1);
            }
        }
    }
    match report.mode {
        Mode::Json => report.json(&serde_json::json!({ "hosts": docs })),
        Mode::Human => crate::report::print_table(&["HOST", "BUILD", "STATE", "RELEASE", "PID", "ROUTE"], &table),
        Mode::Quiet => {}
    }
    Ok(outcome)
}
