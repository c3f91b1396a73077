//! Build and release hooks: shell commands run in the new release directory.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::users::RunAs;
use serde::Serialize;

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HookStage {
    /// In the new release directory, as root, right after the copy (venv, pip, collectstatic).
    Build,
    /// As the service user with the build's environment and secrets, before the switch (migrations).
    Release,
    /// As root, against the new instance once it passed the health gate and before it takes
    /// traffic, with `RELCTL_SOCKET` (its own socket) and `RELCTL_URL` (smoke tests).
    Verify,
}

impl HookStage {
    pub fn as_str(self) -> &'static str {
        match self {
            HookStage::Build => "build",
            HookStage::Release => "release",
            HookStage::Verify => "verify",
        }
    }
}

impl std::fmt::Display for HookStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Hook {
    pub stage: HookStage,
    pub command: String,
}

const TAIL_LINES: usize = 20;

/// Runs `hook` with `sh -c` in `cwd`, with `env` added to relctl's environment. stdout and stderr
/// are captured together; a failure is an error with the exit status, and the tail of the output
/// is in the error (printed by the caller). Returns what the hook printed.
pub fn run(hook: &Hook, cwd: &Path, env: &BTreeMap<String, String>, run_as: Option<&RunAs>) -> Result<String> {
    let (mut reader, writer) = std::io::pipe().context("creating a pipe for hook output")?;
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(&hook.command).current_dir(cwd).envs(env).stdin(Stdio::null());
    cmd.stdout(writer.try_clone()?).stderr(writer);
    if let Some(u) = run_as {
        cmd.uid(u.uid).gid(u.gid).env("HOME", &u.home).env("USER", &u.user).env("LOGNAME", &u.user);
    }
    let mut child =
        cmd.spawn().with_context(|| format!("{} hook `{}`: cannot start /bin/sh", hook.stage, hook.command))?;
    drop(cmd); // closes our copies of the pipe's write end
    let mut raw = Vec::new();
    reader.read_to_end(&mut raw).context("reading hook output")?;
    let status = child.wait().context("waiting for hook")?;
    let output = String::from_utf8_lossy(&raw).into_owned();
    if !status.success() {
        let how = match status.code() {
            Some(code) => format!("exited with status {code}"),
            None => format!("was killed ({status})"),
        };
        return Err(HookFailed {
            stage: hook.stage,
            command: hook.command.clone(),
            how,
            tail: tail(&output, TAIL_LINES),
        }
        .into());
    }
    Ok(output)
}

/// A hook that failed; `tail` is the end of what it printed.
#[derive(Debug)]
pub struct HookFailed {
    pub stage: HookStage,
    pub command: String,
    pub how: String,
    pub tail: String,
}

impl std::fmt::Display for HookFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} hook `{}` {}", self.stage, self.command, self.how)
    }
}

impl std::error::Error for HookFailed {}

fn tail(output: &str, n: usize) -> String {
    let lines: Vec<&str> = output.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(cmd: &str) -> Hook {
        Hook { stage: HookStage::Build, command: cmd.into() }
    }

    #[test]
    fn runs_in_cwd_with_env_and_captures_both_streams() {
        let env = [("RELCTL_BUILD".to_string(), "development".to_string())].into();
        let r = run(&hook("pwd; echo $RELCTL_BUILD; echo err >&2"), Path::new("/usr"), &env, None).unwrap();
        assert_eq!(r, "/usr\ndevelopment\nerr\n");
    }

    #[test]
    fn failure_reports_status_and_tail() {
        let err = run(&hook("seq 1 30; exit 7"), Path::new("/"), &BTreeMap::new(), None).unwrap_err();
        let failed = err.downcast_ref::<HookFailed>().unwrap();
        assert_eq!(err.to_string(), "build hook `seq 1 30; exit 7` exited with status 7");
        assert_eq!(failed.tail.lines().count(), TAIL_LINES);
        assert!(failed.tail.ends_with("30"));
    }
}
