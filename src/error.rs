//! The few ways relctl ends, and the exit code of each.

use std::fmt;
use std::process::ExitCode;

/// A usage or manifest error: the user asked for something that cannot be (exit 2). Raised before
/// anything is touched.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// What a command that did not fail reports back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// `status` listed a build that is not active (exit 3).
    NotActive,
    /// `exec` ran its command, which exited with this status (relctl exits with it too).
    Exited(u8),
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> ExitCode {
        match o {
            Outcome::Ok => ExitCode::SUCCESS,
            Outcome::NotActive => ExitCode::from(3),
            Outcome::Exited(code) => ExitCode::from(code),
        }
    }
}

/// Exit code for an error: 2 when a usage/manifest error is anywhere in its chain, else 1.
pub fn exit_code(err: &anyhow::Error) -> ExitCode {
    if err.chain().any(|e| e.is::<UsageError>()) {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

/// A value of the command line that relctl's own parser refused (a build name): its usage error,
/// as it is. None for clap's own errors.
pub fn usage_from_clap(e: &clap::Error) -> Option<String> {
    if e.kind() != clap::error::ErrorKind::ValueValidation {
        return None;
    }
    let source = std::error::Error::source(e)?;
    source.downcast_ref::<UsageError>().map(|u| u.0.clone())
}

/// clap's usage error (several lines: the error, tips, usage) as one line: what was wrong and the
/// tips, then where to look.
pub fn one_line_usage(rendered: &str) -> String {
    let parts: Vec<&str> =
        rendered.lines().take_while(|l| !l.starts_with("Usage:")).map(|l| l.trim()).filter(|l| !l.is_empty()).collect();
    let text = parts.join(" ");
    format!("{}; see relctl --help", text.strip_prefix("error: ").unwrap_or(&text))
}

/// The error as one line: its contexts joined by ": ", newlines folded.
pub fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}").replace('\n', " ")
}
