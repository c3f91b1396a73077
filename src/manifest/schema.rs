//! The manifest's schema: what `relctl.toml` may say, with its defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::route::Route;

/// The manifest as written, with defaults applied. Paths are still as written; `Loaded` knows
/// the directory they resolve against.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub app: String,
    #[serde(default = "default_component")]
    pub component: String,
    pub root: Option<PathBuf>,
    #[serde(default = "default_source")]
    pub source: PathBuf,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default = "default_keep_releases")]
    pub keep_releases: usize,
    pub settings: Option<Settings>,
    pub service: Service,
    #[serde(default)]
    pub hooks: Hooks,
    /// Dependencies built once per content and shared by releases (see `deps`).
    #[serde(default)]
    pub deps: BTreeMap<String, Dep>,
    pub health: Option<Health>,
    #[serde(default)]
    pub vars: toml::Table,
    /// In the order the manifest declares them: `status`, `nginx-snippet` and the rest list them so.
    #[serde(default)]
    pub builds: IndexMap<String, Build>,
    #[serde(default)]
    pub hardening: Hardening,
    /// `[static]`: files nginx serves itself, from each build's current release.
    #[serde(rename = "static")]
    pub static_files: Option<Static>,
    /// `[processes.<name>]`: long-running processes beside web (a Celery worker, its beat), run
    /// from each build's current release; in the order the manifest declares them.
    #[serde(default)]
    pub processes: IndexMap<String, Process>,
    /// `[timers.<name>]`: scheduled jobs (systemd timers) run in each build's current release.
    #[serde(default)]
    pub timers: IndexMap<String, Timer>,
    /// `[maintenance]`: the page and `Retry-After` of `relctl maintenance on`.
    #[serde(default)]
    pub maintenance: Maintenance,
    /// `[schema]`: how a release's code lists its migrations and unapplies them, for rollbacks
    /// that respect the database.
    pub schema: Option<SchemaCommands>,
    /// `[notify]`: commands told about deploys, rollbacks and failures.
    #[serde(default)]
    pub notify: Notify,
    /// `[site]`: the server blocks `relctl site` writes for the builds with a `domain`, and their
    /// certificates.
    #[serde(default)]
    pub site: Site,
    /// The text it was parsed from (and checked): what `-H` ships to the host, never read again.
    #[serde(skip)]
    pub text: String,
}

/// `[static]`: a directory inside the release (what `collectstatic` fills in a build hook) that
/// nginx serves at `<route>/<url>/` for every build, through `current`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Static {
    /// Relative to the release, e.g. `API/static`.
    pub dir: String,
    /// The URL path under the build's route, e.g. `static` (Django's `STATIC_URL = "static/"`).
    #[serde(default = "default_static_url")]
    pub url: String,
    /// `Cache-Control: public, max-age=` for the files, in seconds.
    #[serde(default = "default_static_max_age")]
    pub max_age_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// A path relative to the manifest, or `builtin:<name>`.
    pub template: String,
    /// Destination inside the release; itself a template (`deploy_{{ build }}.py`).
    pub path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub workdir: Option<String>,
    pub exec: String,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    pub user: Option<String>,
    #[serde(default = "default_socket")]
    pub socket: String,
    #[serde(default = "default_socket_group")]
    pub socket_group: String,
}

/// `[maintenance]`: what a build in maintenance answers through nginx (503).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    /// A page the app ships, relative to the release (served from `current`); without it,
    /// relctl's own.
    pub page: Option<String>,
    /// `Retry-After:`, in seconds.
    #[serde(default = "default_retry_after")]
    pub retry_after_s: u64,
}

impl Default for Maintenance {
    fn default() -> Maintenance {
        Maintenance { page: None, retry_after_s: default_retry_after() }
    }
}

fn default_retry_after() -> u64 {
    300
}

/// `[schema]`: commands run in a release the way release hooks run (as the service, in a unit of
/// their own).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaCommands {
    /// Prints every migration the release's code knows, in order, as `[X] app.name` (applied) or
    /// `[ ] app.name` (Django: `showmigrations --plan`).
    pub list: String,
    /// Unapplies `{app}`'s migrations after `{to}` (`zero`: all of them), run with the newer
    /// release's code (Django: `migrate --noinput {app} {to}`).
    pub unapply: String,
}

/// `[notify]`: shell commands run (as root, with `sh -c`) after the changing commands named in
/// `on`; each gets the event as `RELCTL_*` variables and the history record as JSON on stdin.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notify {
    pub commands: Vec<String>,
    /// Commands (`build`, `adopt`, `promote`, `rollback`, `restart`, `start`, `stop`, `reload`,
    /// `destroy`, `maintenance`, `site`, `renew`) whose every run is told, and `failed` for any
    /// of them that fails.
    pub on: Vec<String>,
    /// How long one command may run before it is stopped (and reported).
    pub timeout_s: u64,
}

/// The commands `[notify] on` may name, and `failed`.
pub const NOTIFY_EVENTS: [&str; 13] = [
    "build",
    "adopt",
    "promote",
    "rollback",
    "restart",
    "start",
    "stop",
    "reload",
    "destroy",
    "maintenance",
    "site",
    "renew",
    "failed",
];

impl Default for Notify {
    fn default() -> Notify {
        Notify {
            commands: Vec::new(),
            on: ["build", "adopt", "promote", "rollback", "failed"].map(String::from).to_vec(),
            timeout_s: 30,
        }
    }
}

/// `[site]`: how `relctl site` serves the builds that have a `domain`: its nginx file, ports,
/// HSTS, and where certificates come from (an ACME CA, or files for a domain).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Site {
    /// The nginx file relctl writes; default `/etc/nginx/conf.d/relctl-<app>.conf`, which
    /// Debian's nginx.conf includes inside `http {}`.
    pub config: Option<std::path::PathBuf>,
    /// The port of plain HTTP (the ACME challenge and the redirect to HTTPS).
    pub http_port: u16,
    pub https_port: u16,
    /// `Strict-Transport-Security: max-age=` on every HTTPS answer; 0 (the default) sends none.
    pub hsts_max_age_s: u64,
    /// The ACME directory certificates are requested from (HTTP-01 through nginx, by certbot).
    pub acme_directory: String,
    /// The ACME account's e-mail (expiry notices); without it the account has none.
    pub acme_email: Option<String>,
    /// A CA bundle to trust for the ACME directory's own HTTPS (a private or test CA).
    pub acme_ca_bundle: Option<std::path::PathBuf>,
    /// `[site.certificates."<domain>"]`: a certificate and key the user provides for a domain,
    /// instead of one from the ACME CA.
    pub certificates: IndexMap<String, CustomCertificate>,
}

pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

impl Default for Site {
    fn default() -> Site {
        Site {
            config: None,
            http_port: 80,
            https_port: 443,
            hsts_max_age_s: 0,
            acme_directory: LETS_ENCRYPT.to_string(),
            acme_email: None,
            acme_ca_bundle: None,
            certificates: IndexMap::new(),
        }
    }
}

/// A certificate chain and its key, as files on the host (nginx's `ssl_certificate` and
/// `ssl_certificate_key`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CustomCertificate {
    /// The certificate with its chain (PEM).
    pub cert: std::path::PathBuf,
    /// Its private key (PEM): owned by root and readable by nobody else.
    pub key: std::path::PathBuf,
}

/// `[processes.<name>]`: a long-running process of every build (unless a build says otherwise),
/// started from the same release, environment, user and sandbox as web.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Process {
    /// The command, as `[service] exec`: a relative program path resolves against the release.
    pub exec: String,
    /// How many instances each build runs (a build's `processes` table overrides it).
    #[serde(default = "default_instances")]
    pub instances: u32,
    /// How long a stopping instance may take to finish its work (SIGTERM, then this long, then
    /// SIGKILL): `TimeoutStopSec=`.
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout_s: u64,
    /// A readiness check, run (as the service) until it passes once an instance started.
    pub ready: Option<String>,
    /// How long the readiness check may take to pass.
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout_s: u64,
}

/// `[timers.<name>]`: a scheduled job run in the build's current release.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timer {
    /// The command, as `[service] exec`.
    pub exec: String,
    /// When it runs: a systemd calendar expression (`OnCalendar=`), e.g. `daily`, `*-*-* 03:00`.
    pub on_calendar: String,
    /// A random delay up to this long before each run (`RandomizedDelaySec=`).
    #[serde(default)]
    pub randomized_delay_s: u64,
    /// A run missed while the host was down runs when it is up again (`Persistent=`).
    #[serde(default = "default_true")]
    pub persistent: bool,
    /// How long one run may take before systemd stops it.
    #[serde(default = "default_timer_timeout")]
    pub timeout_s: u64,
    /// A command run (as the service, in the current release) when a run fails; it gets
    /// `RELCTL_FAILED_UNIT` and systemd's `MONITOR_*` variables.
    pub on_failure: Option<String>,
}

/// `[deps.<name>]`: a directory the release uses (a virtualenv, `node_modules`), built by `build`
/// at a path keyed by the content of `key` files and the output of `key_commands`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dep {
    /// Where the release sees it, relative to the release (e.g. `.venv`).
    pub path: String,
    /// Files in the source whose content keys it (e.g. `requirements.txt`).
    #[serde(default)]
    pub key: Vec<String>,
    /// Commands whose output keys it too (e.g. `/usr/bin/python3 --version`).
    #[serde(default)]
    pub key_commands: Vec<String>,
    /// Shell commands that build it into `$RELCTL_DEP_DIR`, run in the new release.
    pub build: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    #[serde(default)]
    pub build: Vec<String>,
    #[serde(default)]
    pub release: Vec<String>,
    /// Run against the new instance once it passed the health gate, before it takes traffic.
    #[serde(default)]
    pub verify: Vec<String>,
    /// Run before anything changes the database: before the release hooks, and before a rollback
    /// unapplies migrations (a `pg_dump`); as the service, in the release about to migrate.
    #[serde(default)]
    pub pre_migrate: Vec<String>,
    /// How long one release hook may run before systemd stops it (it runs as a unit of its own).
    #[serde(default = "default_release_timeout")]
    pub release_timeout_s: u64,
}

fn default_release_timeout() -> u64 {
    900
}

impl Default for Hooks {
    fn default() -> Hooks {
        Hooks {
            build: Vec::new(),
            release: Vec::new(),
            verify: Vec::new(),
            pre_migrate: Vec::new(),
            release_timeout_s: default_release_timeout(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub path: String,
    #[serde(default = "default_health_timeout")]
    pub timeout_s: u64,
    /// After the health check passes, the service must keep its main PID and not be restarted by
    /// systemd for this long.
    #[serde(default = "default_probation")]
    pub probation_s: u64,
    /// Which answers pass: `2xx-3xx` (the default), or `not-5xx` for a path that may also answer
    /// 404 or 401 (an app's root).
    #[serde(default)]
    pub accept: crate::host::health::Accept,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// The route as the manifest wrote it; a family's is a template (`/review/{{ build }}`).
    /// With a `domain` and no route, `/`.
    #[serde(rename = "route")]
    pub written_route: Option<String>,
    /// The host name this build answers on, in the server blocks `relctl site` writes (with a
    /// certificate for it); a family's is a template (`{{ build }}.review.example.org`). Builds
    /// without one are what `relctl nginx-snippet` prints.
    pub domain: Option<String>,
    /// The route, checked and normalized once: when the manifest is parsed (a build declared by
    /// name) or a family's member is resolved (`Loaded::build`). None for a family's own
    /// declaration.
    #[serde(skip)]
    pub route: Option<Route>,
    pub secrets: Option<PathBuf>,
    /// nginx `allow` entries (IP addresses or CIDR ranges); everything else is denied.
    #[serde(default)]
    pub allow: Vec<String>,
    /// An htpasswd file for nginx basic auth on this build's route.
    pub htpasswd: Option<PathBuf>,
    /// Pass WebSocket upgrades through nginx on this route (HTTP/1.1, Upgrade/Connection headers,
    /// no response buffering).
    #[serde(default)]
    pub websocket: bool,
    /// How long nginx waits for the app between two reads (and writes) on this route, in seconds;
    /// nginx's default is 60. For long polls and quiet WebSockets.
    pub read_timeout_s: Option<u64>,
    /// Sleep when idle: with no request through nginx for this many seconds, the build's processes
    /// stop (web, its workers and timers) while systemd keeps its sockets; the next request wakes
    /// it and is answered. Absent: the build always runs.
    pub idle_stop_s: Option<u64>,
    /// The hosts this build runs on (`[user@]host[:port]`, reached over SSH): build, restart,
    /// rollback and promote roll across them (`--serial`), status asks each.
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub vars: toml::Table,
    /// Which `[processes.*]` this build runs, and how many instances of each; absent: every one
    /// at its `instances`; `{}`: none.
    pub processes: Option<IndexMap<String, u32>>,
    /// Which `[timers.*]` this build runs; absent: every one; `[]`: none.
    pub timers: Option<Vec<String>>,
}

fn default_component() -> String {
    "app".into()
}
fn default_source() -> PathBuf {
    ".".into()
}
fn default_keep_releases() -> usize {
    5
}
fn default_socket() -> String {
    "gunicorn.sock".into()
}
fn default_socket_group() -> String {
    "www-data".into()
}
fn default_static_url() -> String {
    "static".into()
}
fn default_static_max_age() -> u64 {
    3600
}
fn default_instances() -> u32 {
    1
}
fn default_stop_timeout() -> u64 {
    60
}
fn default_ready_timeout() -> u64 {
    60
}
fn default_true() -> bool {
    true
}
fn default_timer_timeout() -> u64 {
    3600
}
pub fn default_health_timeout() -> u64 {
    30
}
pub fn default_probation() -> u64 {
    2
}

/// `[hardening]`: relaxes the service unit's sandbox for apps that need it (README "Hardening").
/// Every default is the strict setting.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hardening {
    /// `MemoryDenyWriteExecute=`; false for code that needs writable+executable pages (JITs).
    pub memory_deny_write_execute: bool,
    /// `PrivateUsers=`; false when the app must see the real ids of other users and groups.
    pub private_users: bool,
    /// `ProcSubset=`: `pid` (only /proc/<pid>) or `all` (also /proc/meminfo, /proc/stat, ...).
    pub proc_subset: ProcSubset,
    /// `UMask=` of the service, 3 or 4 octal digits.
    pub umask: String,
    /// Unset (the default): no IP address filter, the app reaches databases, mail servers and
    /// APIs as a web app expects. A list turns the filter on: IP only to and from localhost and
    /// the listed addresses or CIDR ranges (`IPAddressDeny=any`, `IPAddressAllow=localhost ...`);
    /// `["localhost"]` is localhost alone; `["any"]` is the same as unset.
    pub ip_address_allow: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcSubset {
    Pid,
    All,
}

impl Default for Hardening {
    fn default() -> Self {
        Hardening {
            memory_deny_write_execute: true,
            private_users: true,
            proc_subset: ProcSubset::Pid,
            umask: "0077".into(),
            ip_address_allow: None,
        }
    }
}

/// The value of `ip_address_allow` that turns the IP filter off.
pub const IP_ANY: &str = "any";
/// The entry of `ip_address_allow` for the loopback addresses (always allowed when it is set).
pub const IP_LOCALHOST: &str = "localhost";
