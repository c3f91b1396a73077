//! relctl: a systemd-native build-and-release tool for instanced services.
//!
//! Parse (`cli`) → plan (`plan`, from `manifest`) → act (`deploy` for one build, `destroy`, `exec`,
//! `nginx`, `remote` for other hosts), with `commands` as the glue that opens the one `Session`
//! every changing command needs. Beneath them: `project` (what `init` finds and writes),
//! `systemd` (the manager as a trait, over D-Bus), `release` (a build's releases on disk) and
//! `host` (this host as root sees it). ARCHITECTURE.md draws the wings and the flow of a build.

pub mod audit;
pub mod cli;
mod commands;
pub mod deploy;
pub mod destroy;
pub mod error;
pub mod exec;
pub mod host;
pub mod maintenance;
pub mod manifest;
pub mod migrations;
pub mod name;
pub mod nginx;
pub mod plan;
pub mod project;
pub mod release;
pub mod remote;
pub mod report;
pub mod route;
pub mod site;
pub mod systemd;
pub mod time;

use std::process::ExitCode;

use clap::Parser;

/// Runs relctl with the process's arguments and returns its exit code. Never exits the process.
pub fn run() -> ExitCode {
    // Whatever umask the caller's shell has, nothing relctl, its hooks or its `[deps]` builds create
    // is writable by the group or by others (a world-writable venv would let any user put code
    // that build hooks then run as root).
    let caller = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    nix::sys::stat::umask(caller | nix::sys::stat::Mode::from_bits_truncate(0o022));
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version are not errors: clap prints them as they are.
        Err(e) if !e.use_stderr() => {
            report::out(e.render().to_string());
            return ExitCode::SUCCESS;
        }
        // Everything else clap rejects is a usage error: one line, like every other error.
        Err(e) => {
            let line = error::usage_from_clap(&e).unwrap_or_else(|| error::one_line_usage(&e.render().to_string()));
            report::err(format!("relctl: {line}\n"));
            return ExitCode::from(2);
        }
    };
    match commands::dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if error::is_shown(&err) {
                report::err(format!("relctl: {}\n", error::one_line(&err)));
            }
            error::exit_code(&err)
        }
    }
}
