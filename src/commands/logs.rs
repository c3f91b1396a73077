use std::io::{ErrorKind, IsTerminal, Write};

use anyhow::{Context, Result};

use crate::cli::LogsArgs;
use crate::manifest::Loaded;
use crate::plan;
use crate::plan::units;
use crate::report::{Mode, Report};
use crate::systemd::journal::{self, Flow, Query};
use crate::systemd::logfmt::{self, Formatter, Output};

pub fn run(loaded: &Loaded, args: &LogsArgs, report: &Report) -> Result<()> {
    let app = plan::app(loaded)?;
    let (units, instances, prefix) = match &args.build {
        Some(build) => {
            let (units, instances) = build_units(loaded, &app, build, args.process.as_deref())?;
            (units, instances, app.layout.job_prefix(build))
        }
        // `--certs`: the renewal service's runs.
        None => {
            let (_, service) = crate::plan::site::renewal_units(&app.layout.app);
            (vec![service], Vec::new(), String::new())
        }
    };
    let query = Query { units, lines: args.lines, since: args.since.clone(), follow: args.follow };
    let stdout = std::io::stdout();
    let output = match report.mode {
        Mode::Json => Output::Json,
        Mode::Human | Mode::Quiet => {
            Output::Human { color: logfmt::color_wanted(stdout.is_terminal(), std::env::var_os("NO_COLOR").as_deref()) }
        }
    };
    let tz = jiff::tz::TimeZone::system();
    let mut formatter = Formatter::new(&instances, output, tz).short_names(prefix);
    let mut out = std::io::BufWriter::new(stdout.lock());
    let allow = loaded.manifest.hardening.ip_address_allow.as_deref();
    let mut filter_note = None;
    let count = journal::read(&query, |entry| {
        if filter_note.is_none() {
            filter_note = units::ip_filter_note(&app.layout.app, allow, &entry.message);
            if let (Some(note), true) = (&filter_note, args.follow) {
                report.warn(format!("relctl: {note}"));
            }
        }
        let written = writeln!(out, "{}", formatter.format(&entry)).and_then(|()| match args.follow {
            true => out.flush(),
            false => Ok(()),
        });
        match written {
            Ok(()) => Ok(Flow::More),
            // Whoever read the output is gone (`relctl logs ... | head`): nothing left to do.
            Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(Flow::Stop),
            Err(e) => Err(e).context("writing to stdout"),
        }
    })
    .with_context(|| match &args.build {
        Some(b) => format!("reading the journal of {} {b}", app.layout.app),
        None => format!("reading the journal of {}'s certificate renewal", app.layout.app),
    })?;
    match out.flush() {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => return Err(e).context("writing to stdout"),
        _ => {}
    }
    if let (Some(note), false) = (&filter_note, args.follow) {
        report.warn(format!("relctl: {note}"));
    }
    if count == 0 && !journal::sees_system_journal() {
        report.warn(
            "relctl: no entries; journalctl may show a user outside the systemd-journal and adm groups only their own journal: run relctl logs as root (sudo), or as a member of one of them",
        );
    }
    Ok(())
}

/// The units of `build`'s web instances, or of one of its processes or timers, and its instances.
fn build_units(
    loaded: &Loaded,
    app: &crate::plan::AppPlan,
    b: &crate::name::BuildName,
    process: Option<&str>,
) -> Result<(Vec<String>, Vec<crate::release::layout::Instance>)> {
    loaded.build(b)?;
    let instances = app.layout.instances(b);
    let l = &app.layout;
    let units = match process {
        None => instances.iter().flat_map(|i| [i.service_unit.clone(), i.socket_unit.clone()]).collect(),
        Some(name) => {
            if loaded.manifest.processes.contains_key(name) {
                vec![l.process_glob(b, name)]
            } else if loaded.manifest.timers.contains_key(name) {
                vec![l.timer_service(b, name), l.timer_unit(b, name), l.timer_failed_unit(b, name)]
            } else {
                let mut known: Vec<&str> = loaded.manifest.processes.keys().map(String::as_str).collect();
                known.extend(loaded.manifest.timers.keys().map(String::as_str));
                return Err(crate::error::Error::Usage(format!(
                    "--process {name}: the manifest declares no [processes.{name}] or [timers.{name}] (it declares: {})",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ))
                .into());
            }
        }
    };
    Ok((units, instances.into()))
}
