//! The hooks a plan runs, and when.

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
    /// As the service, before anything changes the database (a `pg_dump`): before the release
    /// hooks, and before a rollback unapplies migrations.
    PreMigrate,
    /// `[schema] list` and `unapply`, run as the service like release hooks.
    Schema,
}

impl HookStage {
    pub fn as_str(self) -> &'static str {
        match self {
            HookStage::Build => "build",
            HookStage::Release => "release",
            HookStage::Verify => "verify",
            HookStage::PreMigrate => "pre_migrate",
            HookStage::Schema => "schema",
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
