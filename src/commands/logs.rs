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
    loaded.build(&args.build)?;
    let instances = app.layout.instances(&args.build);
    let units = match &args.process {
        None => instances.iter().flat_map(|i| [i.service_unit.clone(), i.socket_unit.clone()]).collect(),
        Some(name) => {
            let l = &app.layout;
            let b = &args.build;
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
    let query = Query { units, lines: args.lines, since: args.since.clone(), follow: args.follow };
    let stdout = std::io::stdout();
    let output = match report.mode {
        Mode::Json => Output::Json,
        Mode::Human | Mode::Quiet => {
            Output::Human { color: logfmt::color_wanted(stdout.is_terminal(), std::env::var_os("NO_COLOR").as_deref()) }
        }
    };
    let tz = jiff::tz::TimeZone::system();
    let mut formatter = Formatter::new(&instances, output, tz).short_names(app.layout.job_prefix(&args.build));
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
    .with_context(|| format!("reading the journal of {} {}", app.layout.app, args.build))?;
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
