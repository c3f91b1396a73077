use anyhow::{Context, Result};

use super::Session;
use crate::cli::{ExecArgs, GlobalArgs};
use crate::error::Error;
use crate::exec;
use crate::manifest::Loaded;
use crate::report::Report;

pub fn run(loaded: &Loaded, args: &ExecArgs, g: &GlobalArgs, report: &Report) -> Result<()> {
    if g.json {
        return Err(Error::Usage("--json does not apply to exec: what it prints is the command's".into()).into());
    }
    let env = exec::env_args(&args.env, |key| std::env::var(key).ok())?;
    // No lock: the command may run as long as its user likes, and must not hold up deploys.
    let (session, b) = Session::for_built_unlocked(loaded, "exec", &args.build)?;
    let release = b.current_release()?.with_context(|| format!("{} disappeared", b.current.display()))?;
    let files = session.systemd.unit_files(&b.service_unit)?;
    let plan = exec::plan(&session.app, &b, &release, &files, &args.command, env)?;
    Ok(Error::from_exit(exec::run(&plan, &session.systemd, report)?)?)
}
