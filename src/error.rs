//! The ways relctl ends other than success, and the exit code of each: [`Error`], found anywhere
//! in an error's chain; any other failure exits 1.

use std::fmt;
use std::process::ExitCode;

/// What a command ends with when it does not simply succeed. [`Error::code`] is relctl's exit
/// code for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A usage or manifest error: the user asked for something that cannot be (exit 2). Raised
    /// before anything is touched.
    Usage(String),
    /// `status` listed a build that is not active (exit 3); what it printed is the answer.
    NotActive,
    /// A command relctl ran for the user exited with this status, and relctl exits with it too:
    /// `exec`'s command, or relctl on another host (which printed its own errors).
    Exited(u8),
    /// `diff` found that the next build would change something (exit 1, as diff(1)); what it
    /// printed is the answer.
    Differs,
    /// `diff` could not compare (exit 2, as diff(1) when in trouble, so that a script never takes
    /// a failure for "something differs"), for this reason.
    CannotCompare(String),
}

impl Error {
    /// relctl's exit code for it.
    pub fn code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::NotActive => 3,
            Error::Exited(code) => *code,
            Error::Differs => 1,
            Error::CannotCompare(_) => 2,
        }
    }

    /// Whether relctl prints it: a usage error says what was wrong, and so does `CannotCompare`
    /// with its cause; `NotActive`, `Exited` and `Differs` end a command whose own output said it
    /// all.
    pub fn is_shown(&self) -> bool {
        matches!(self, Error::Usage(_) | Error::CannotCompare(_))
    }

    /// The end of a command that exited with `code` (0: none).
    pub fn from_exit(code: u8) -> Result<(), Error> {
        match code {
            0 => Ok(()),
            c => Err(Error::Exited(c)),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(message) => f.write_str(message),
            Error::NotActive => f.write_str("a build is not active"),
            Error::Exited(code) => write!(f, "the command exited with status {code}"),
            Error::Differs => f.write_str("the next build would change files"),
            Error::CannotCompare(why) => write!(f, "cannot tell what the next build would change: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// The relctl [`Error`] in `err`'s chain, if any.
pub fn find(err: &anyhow::Error) -> Option<&Error> {
    err.chain().find_map(|e| e.downcast_ref::<Error>())
}

/// Whether `err` is (or was caused by) a usage error.
pub fn is_usage(err: &anyhow::Error) -> bool {
    matches!(find(err), Some(Error::Usage(_)))
}

/// Exit code for an error: the code of the relctl [`Error`] anywhere in its chain, else 1.
pub fn exit_code(err: &anyhow::Error) -> ExitCode {
    ExitCode::from(find(err).map_or(1, Error::code))
}

/// Whether relctl prints `err` (see [`Error::is_shown`]; every other failure is printed).
pub fn is_shown(err: &anyhow::Error) -> bool {
    find(err).is_none_or(Error::is_shown)
}

/// A value of the command line that relctl's own parser refused (a build name): its usage error,
/// as it is. None for clap's own errors.
pub fn usage_from_clap(e: &clap::Error) -> Option<String> {
    if e.kind() != clap::error::ErrorKind::ValueValidation {
        return None;
    }
    match std::error::Error::source(e)?.downcast_ref::<Error>() {
        Some(Error::Usage(message)) => Some(message.clone()),
        _ => None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn each_error_has_its_exit_code_found_anywhere_in_the_chain() {
        let codes = [
            (Error::Usage("no".into()), 2),
            (Error::NotActive, 3),
            (Error::Exited(42), 42),
            (Error::Differs, 1),
            (Error::CannotCompare("x".into()), 2),
        ];
        for (e, code) in codes {
            assert_eq!(e.code(), code);
            let wrapped = Err::<(), _>(e.clone()).context("while doing x").unwrap_err();
            assert_eq!(exit_code(&wrapped), ExitCode::from(code));
            assert_eq!(find(&wrapped), Some(&e));
        }
        let plain = anyhow::anyhow!("disk full");
        assert_eq!(exit_code(&plain), ExitCode::FAILURE);
        assert!(is_shown(&plain) && !is_usage(&plain));
        let usage = anyhow::Error::from(Error::Usage("bad name".into()));
        assert!(is_usage(&usage) && is_shown(&usage));
        assert_eq!(one_line(&usage), "bad name");
        assert!(!is_shown(&Error::NotActive.into()) && !is_shown(&Error::Exited(1).into()));
        assert!(!is_shown(&Error::Differs.into()));
        let trouble = anyhow::Error::from(Error::CannotCompare("reading /x: Permission denied".into()));
        assert_eq!(exit_code(&trouble), ExitCode::from(2));
        assert!(is_shown(&trouble) && !is_usage(&trouble));
        assert_eq!(one_line(&trouble), "cannot tell what the next build would change: reading /x: Permission denied");
        assert_eq!(Error::from_exit(0), Ok(()));
        assert_eq!(Error::from_exit(7), Err(Error::Exited(7)));
    }
}
