//! Pre-flight checks of the host, before anything is touched: unit names, the socket group,
//! socket paths.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::error::Error;
use crate::name::BuildName;
use crate::plan::units;
use crate::plan::AppPlan;

/// The longest path a unix socket can have (`sun_path` holds 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// What the manifest asks of this host, checked before anything is touched: its unit names are
/// not taken by units relctl did not write, the socket group exists, and every build's socket
/// path fits in a unix socket address.
/// `adopting`: unit files of a hand-made setup that `build --adopt` takes over, allowed.
pub fn check_host(app: &AppPlan, adopting: &[PathBuf]) -> Result<()> {
    units::check_ours(app, adopting)?;
    let group = nix::unistd::Group::from_name(&app.socket_group)
        .with_context(|| format!("looking up group {}", app.socket_group))?;
    if group.is_none() {
        return Err(Error::Usage(format!(
            "{}: [service] socket_group \"{}\" does not exist on this host; use the group nginx runs as (www-data on Debian) or create it",
            app.manifest.display(),
            app.socket_group
        ))
        .into());
    }
    for (name, _) in &app.builds {
        check_socket_path(app, name)?;
    }
    Ok(())
}

/// The build's socket path fits in a unix socket address.
pub fn check_socket_path(app: &AppPlan, name: &BuildName) -> Result<()> {
    let socket = app.layout.build(name).socket;
    let len = socket.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(Error::Usage(format!(
            "{}: the socket path of build {name}, {} ({len} bytes), is longer than a unix socket address can hold ({MAX_SOCKET_PATH}); use a shorter root or socket name",
            app.manifest.display(),
            socket.display()
        ))
        .into());
    }
    Ok(())
}
