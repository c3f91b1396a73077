//! Commands relctl runs as root for the user (hooks, `[deps]` key and build commands).

/// Variables of relctl's environment a hook never gets: the admin's SSH agent (a build hook runs
/// the source tree's code as root; with the agent it would reach every host the admin can) and
/// what ties it to the admin's login session.
pub const NOT_FOR_HOOKS: &[&str] =
    &["SSH_AUTH_SOCK", "SSH_AGENT_PID", "SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY", "DBUS_SESSION_BUS_ADDRESS"];
