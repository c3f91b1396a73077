//! The audit record of a changing command run here: what it was about before it ran, and after
//! it ended, its record (journal, history) and the `[notify]` commands (see `crate::audit`).

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::audit::{self, Outcome, Record};
use crate::cli::Command;
use crate::manifest::{Loaded, Notify};
use crate::name::BuildName;
use crate::release::id::ReleaseId;
use crate::report::Report;

/// A changing command under way.
pub struct Pending {
    command: &'static str,
    app: String,
    build: Option<BuildName>,
    /// The build's directory, to read its current release after the command.
    build_layout: Option<crate::release::layout::BuildLayout>,
    from: Option<ReleaseId>,
    started: Instant,
    time: jiff::Timestamp,
    notify: Notify,
}

/// The name a changing command is recorded under; None for one that changes nothing (a
/// `--dry-run` included).
fn changing(command: &Command) -> Option<&'static str> {
    Some(match command {
        Command::Build(a) if !a.dry_run => {
            if a.adopt {
                "adopt"
            } else {
                "build"
            }
        }
        Command::Promote(a) if !a.dry_run => "promote",
        Command::Rollback(_) => "rollback",
        Command::Restart(_) => "restart",
        Command::Start(_) => "start",
        Command::Stop(_) => "stop",
        Command::Reload(_) => "reload",
        Command::Destroy(a) if !a.dry_run => "destroy",
        Command::Maintenance(_) => "maintenance",
        Command::Site(a) if !a.dry_run => "site",
        Command::Renew => "renew",
        _ => return None,
    })
}

impl Pending {
    /// Before `command` runs as root: what it is about. None when it changes nothing or relctl
    /// is not root (it is then refused before anything changes).
    pub fn begin(command: &Command, loaded: &Loaded) -> Option<Pending> {
        let name = changing(command)?;
        if !nix::unistd::geteuid().is_root() {
            return None;
        }
        let app = crate::plan::app(loaded).ok()?;
        let build = super::remote::build_of(command).cloned().filter(|b| loaded.build(b).is_ok());
        let build_layout = build.as_ref().map(|b| app.layout.build(b));
        let from = build_layout.as_ref().and_then(|l| l.current_release().ok().flatten());
        Some(Pending {
            command: name,
            app: app.layout.app.clone(),
            build,
            build_layout,
            from,
            started: Instant::now(),
            time: jiff::Timestamp::now(),
            notify: loaded.manifest.notify.clone(),
        })
    }

    /// After it ended with `result`: the record, then the notifications. A usage error (nothing
    /// was touched) leaves none. Problems here are warnings: the command's result stands.
    pub fn finish(self, result: &Result<()>, report: &Report) {
        if let Err(e) = result {
            if crate::error::is_usage(e) {
                return;
            }
        }
        let to = self.build_layout.as_ref().and_then(|l| l.current_release().ok().flatten());
        let args =
            crate::remote::ssh::forwarded_args(&std::env::args_os().skip(1).collect::<Vec<_>>()).unwrap_or_default();
        let record = Record {
            time: self.time,
            app: self.app.clone(),
            host: audit::hostname(),
            who: audit::who(),
            command: self.command.to_string(),
            args,
            build: self.build.clone(),
            from: self.from.clone(),
            to,
            result: if result.is_ok() { Outcome::Ok } else { Outcome::Failed },
            // `status` exits 3 without a message: no other command returns NotActive.
            error: result.as_ref().err().map(|e| format!("{e:#}").replace('\n', " ")),
            duration_s: self.started.elapsed().as_secs_f64(),
        };
        if let Err(e) = audit::record(&record, &audit::history_file(&self.app)) {
            report.warn(format!("relctl: recording this {} in the history: {e:#}", self.command));
        }
        let told =
            self.notify.on.iter().any(|o| o == self.command || (o == "failed" && record.result == Outcome::Failed));
        if told && !self.notify.commands.is_empty() {
            for problem in audit::notify(&self.notify.commands, &record, Duration::from_secs(self.notify.timeout_s)) {
                report.warn(format!("relctl: {problem} (the {} itself is not affected)", self.command));
            }
        }
    }
}
