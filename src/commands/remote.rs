use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::error::{Outcome, UsageError};
use crate::remote::{self, Remote, Shipment, Target};

/// `relctl -H HOST <command>`: the manifest checked here, shipped with what the command needs,
/// run there.
pub fn run(cli: &Cli, target: &Target) -> Result<Outcome> {
    let ships_source = match &cli.command {
        Command::Init(_) | Command::Completions { .. } => {
            return Err(UsageError(format!(
                "{} runs here, not on a host: leave out -H {target}",
                if matches!(cli.command, Command::Init(_)) { "relctl init" } else { "relctl completions" }
            ))
            .into())
        }
        Command::Build(_) => true,
        _ => false,
    };
    let loaded = super::load(&cli.global)?;
    let source = if ships_source { Some(crate::plan::source_copy(&loaded)?) } else { None };
    let revision = source.as_ref().and_then(|s| crate::git::revision(&s.source)).map(|r| r.label());
    let shipment = Shipment::new(&loaded, source)?;
    let args = remote::forwarded_args(&std::env::args_os().skip(1).collect::<Vec<_>>())?;
    let host = Remote::new(target.clone())?;
    host.check_version()?;
    let dir = host.ship(&shipment)?;
    host.run(&dir, &args, revision.as_deref())
}
