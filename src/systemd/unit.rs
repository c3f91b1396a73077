//! What relctl knows of a unit: the jobs it asks for, how they end, and a unit's state.

use std::path::PathBuf;

use serde::Serialize;

/// What relctl asks systemd to do with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Start,
    Stop,
    Restart,
    Reload,
}

impl JobKind {
    pub fn verb(self) -> &'static str {
        match self {
            JobKind::Start => "start",
            JobKind::Stop => "stop",
            JobKind::Restart => "restart",
            JobKind::Reload => "reload",
        }
    }
}

/// How a job is queued (systemd's job modes, of those relctl uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobMode {
    /// Replaces conflicting jobs queued for the unit (`systemctl`'s default).
    Replace,
    /// Stops or starts the unit alone: the job is not propagated to the units that are `PartOf=`
    /// it or that it requires (a build's next instance is `PartOf=` its main one).
    IgnoreDependencies,
}

impl JobMode {
    pub fn as_str(self) -> &'static str {
        match self {
            JobMode::Replace => "replace",
            JobMode::IgnoreDependencies => "ignore-dependencies",
        }
    }
}

/// An enum for one of systemd's string-valued properties: the values systemd documents, and
/// `Other` for any value a newer systemd may add. Serialized as systemd spells it.
macro_rules! systemd_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $name {
            $($variant,)*
            Other(String),
        }

        impl $name {
            pub fn parse(s: &str) -> $name {
                match s {
                    $($text => $name::$variant,)*
                    other => $name::Other(other.to_string()),
                }
            }

            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)*
                    $name::Other(s) => s,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

systemd_enum! {
    /// A unit's ActiveState.
    ActiveState {
        Active = "active",
        Reloading = "reloading",
        Inactive = "inactive",
        Failed = "failed",
        Activating = "activating",
        Deactivating = "deactivating",
        Maintenance = "maintenance",
        Refreshing = "refreshing",
    }
}

systemd_enum! {
    /// A unit's LoadState.
    LoadState {
        Loaded = "loaded",
        NotFound = "not-found",
        BadSetting = "bad-setting",
        Error = "error",
        Masked = "masked",
        Stub = "stub",
        Merged = "merged",
    }
}

systemd_enum! {
    /// How a job ended (the `result` of `JobRemoved`).
    JobResult {
        Done = "done",
        Canceled = "canceled",
        Timeout = "timeout",
        Failed = "failed",
        Dependency = "dependency",
        Skipped = "skipped",
    }
}

impl ActiveState {
    /// Running, or on its way to running: a restart (not a start) is what brings a new process.
    pub fn is_up(&self) -> bool {
        matches!(self, ActiveState::Active | ActiveState::Activating | ActiveState::Reloading)
    }
}

impl JobResult {
    /// What to look at next, for people.
    pub fn hint(&self, unit: &str) -> String {
        match self {
            JobResult::Failed => format!(" (see: journalctl -u {unit})"),
            JobResult::Timeout => " (the unit did not finish starting in time)".into(),
            JobResult::Dependency => " (a unit it requires failed, e.g. its socket)".into(),
            JobResult::Canceled => " (another job replaced it)".into(),
            _ => String::new(),
        }
    }
}

/// A unit's state, read uncached.
#[derive(Debug, Clone, Serialize)]
pub struct UnitState {
    pub unit: String,
    pub load_state: LoadState,
    pub active_state: ActiveState,
    pub sub_state: String,
    /// Microseconds since the epoch when the unit last became active; 0 if never.
    pub active_since_us: u64,
    pub main_pid: u32,
    pub n_restarts: u32,
    /// The service's Result property (`success`, `exit-code`, `signal`, ...); empty for other units.
    pub result: String,
}

impl UnitState {
    pub fn is_active(&self) -> bool {
        self.active_state == ActiveState::Active
    }

    /// A unit systemd has not loaded: never started, or garbage-collected once stopped, so it is
    /// missing from `ListUnitsByPatterns`. It is inactive (dead) with no main PID, as `LoadUnit`
    /// would report it; its load state reads `stub` (not loaded) rather than guessing what loading
    /// would say (`loaded` from the template, or `not-found`).
    pub fn not_loaded(unit: &str) -> UnitState {
        UnitState {
            unit: unit.to_string(),
            load_state: LoadState::Stub,
            active_state: ActiveState::Inactive,
            sub_state: "dead".into(),
            active_since_us: 0,
            main_pid: 0,
            n_restarts: 0,
            result: String::new(),
        }
    }

    /// Whether it has the `org.freedesktop.systemd1.Service` properties worth reading (as
    /// `unit_state` does: loaded services only).
    pub fn has_service_properties(&self) -> bool {
        self.unit.ends_with(".service") && self.load_state == LoadState::Loaded
    }
}

/// A timer and the service it starts: when it runs next, when it last did, how that ended.
#[derive(Debug, Clone, Serialize)]
pub struct TimerState {
    pub timer: UnitState,
    pub service: UnitState,
    /// Microseconds since the epoch of the next run; 0 when none is scheduled.
    pub next_us: u64,
    /// Microseconds since the epoch of the last run's start; 0 if it never ran.
    pub last_us: u64,
    /// The last run's exit status (its main process's).
    pub exit_status: i32,
    /// Microseconds since the epoch when the last run's main process started (by the timer or
    /// by hand); 0 if never.
    pub started_us: u64,
}

impl TimerState {
    /// When the last run started (by the timer or by hand), microseconds since the epoch; 0 if
    /// it never ran.
    pub fn last_run_us(&self) -> u64 {
        self.last_us.max(self.started_us)
    }

    /// How the last run ended (systemd's `Result`), `running` during one, none before the first.
    pub fn last_result(&self) -> Option<String> {
        match (self.last_run_us() > 0, self.service.active_state.is_up()) {
            (_, true) => Some("running".to_string()),
            (true, false) => Some(self.service.result.clone()).filter(|r| !r.is_empty()),
            (false, false) => None,
        }
    }
}

/// The files systemd builds a unit from.
#[derive(Debug, Clone, Serialize)]
pub struct UnitFiles {
    /// The unit file (for an instance, its template's), e.g. /etc/systemd/system/medctrl@.service.
    pub fragment: PathBuf,
    /// The drop-ins, in the order systemd applies them.
    pub drop_ins: Vec<PathBuf>,
}
