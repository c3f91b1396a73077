//! `relctl.toml`: finding it, parsing it strictly, and checking its names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::error::UsageError;
use crate::host::trust::{self, Trust};

pub const FILE_NAME: &str = "relctl.toml";

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
    #[serde(default)]
    pub builds: BTreeMap<String, Build>,
    #[serde(default)]
    pub hardening: Hardening,
    /// `[static]`: files nginx serves itself, from each build's current release.
    #[serde(rename = "static")]
    pub static_files: Option<Static>,
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
    pub route: Option<String>,
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
    /// The hosts this build runs on (`[user@]host[:port]`, reached over SSH): build, restart,
    /// rollback and promote roll across them (`--serial`), status asks each.
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub vars: toml::Table,
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

fn check_hardening(h: &Hardening) -> Result<(), String> {
    let u = &h.umask;
    if !(3..=4).contains(&u.len())
        || !u.chars().all(|c| ('0'..='7').contains(&c))
        || u.len() == 4 && !u.starts_with('0')
    {
        return Err(format!("[hardening] umask \"{u}\" must be 3 or 4 octal digits, e.g. \"0027\""));
    }
    let allow = h.ip_address_allow.as_deref().unwrap_or_default();
    let any = allow.iter().any(|a| a == IP_ANY);
    if any && allow.len() > 1 {
        return Err(format!("[hardening] ip_address_allow: \"{IP_ANY}\" lifts the IP filter; list it alone"));
    }
    for a in allow.iter().filter(|a| *a != IP_ANY && *a != IP_LOCALHOST) {
        if !is_ip_or_cidr(a) {
            return Err(format!(
                "[hardening] ip_address_allow entry \"{a}\" is not an IP address or CIDR range (e.g. \"10.0.0.5\", \"10.0.0.0/24\", \"fd00::/8\"), \"{IP_LOCALHOST}\" or \"{IP_ANY}\""
            ));
        }
    }
    Ok(())
}

fn is_ip_or_cidr(s: &str) -> bool {
    let (addr, prefix) = match s.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (s, None),
    };
    let Ok(addr) = addr.parse::<std::net::IpAddr>() else { return false };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    prefix.is_none_or(|p| p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u8>().is_ok_and(|n| n <= max))
}

/// A parsed, checked manifest and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Loaded {
    /// Resolves a path from the manifest against the manifest's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    /// Checks that `name` is a valid build name and is declared, as a build of its own or as a
    /// member of a family (`[builds."pr-*"]`, whose `route` and `vars` are then rendered for it).
    pub fn build(&self, name: &str) -> Result<Build> {
        check_build_name(name)?;
        let m = &self.manifest;
        if let Some(b) = m.builds.get(name).filter(|_| !is_family(name)) {
            return Ok(b.clone());
        }
        if let Some((pattern, family)) = m.family_of(name) {
            let member = member(&m.app, pattern, family, name)
                .map_err(|e| UsageError(format!("{}: {e}", self.path.display())))?;
            if let Some(route) = &member.route {
                let normalized = crate::route::normalize(route).map_err(UsageError)?;
                let taken = m.builds.iter().filter(|(n, _)| !is_family(n)).find(|(_, b)| {
                    b.route.as_deref().and_then(|r| crate::route::normalize(r).ok()).as_deref()
                        == Some(normalized.as_str())
                });
                if let Some((other, _)) = taken {
                    return Err(UsageError(format!(
                        "{}: build {name} of [builds.\"{pattern}\"] would take route {normalized}, the route of build {other}",
                        self.path.display()
                    ))
                    .into());
                }
            }
            return Ok(member);
        }
        let declared: Vec<String> =
            m.builds.keys().map(|k| if is_family(k) { format!("{k} (a family)") } else { k.clone() }).collect();
        Err(UsageError(format!(
            "build \"{name}\" is not declared in {}; declared builds: {}",
            self.path.display(),
            if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
        ))
        .into())
    }
}

/// Whether a `[builds.<key>]` declares a family of builds (`pr-*`) rather than one build.
pub fn is_family(key: &str) -> bool {
    key.contains('*')
}

impl Manifest {
    /// The declared family `name` belongs to (never for a build declared by its own name).
    pub fn family_of(&self, name: &str) -> Option<(&str, &Build)> {
        if self.builds.get(name).is_some_and(|_| !is_family(name)) {
            return None;
        }
        self.builds.iter().find_map(|(k, b)| {
            let prefix = k.strip_suffix('*').filter(|p| !is_family(p))?;
            (name.len() > prefix.len() && name.starts_with(prefix)).then_some((k.as_str(), b))
        })
    }

    /// The builds declared by their own names, in manifest order.
    pub fn named_builds(&self) -> impl Iterator<Item = (&String, &Build)> {
        self.builds.iter().filter(|(k, _)| !is_family(k))
    }
}

/// A family's declaration for one member: `{{ build }}` (and `{{ app }}`) rendered in its route
/// and in the strings of its vars.
fn member(app: &str, pattern: &str, family: &Build, name: &str) -> Result<Build, String> {
    let ctx = serde_json::json!({ "app": app, "build": name });
    let what = format!("[builds.\"{pattern}\"]");
    let render = |field: &str, text: &str| {
        crate::release::render::render_value(&format!("{what} {field}"), text, &ctx).map_err(|e| format!("{e:#}"))
    };
    let mut b = family.clone();
    if let Some(route) = &family.route {
        b.route = Some(render("route", route)?);
    }
    fn render_toml(v: &mut toml::Value, f: &dyn Fn(&str) -> Result<String, String>) -> Result<(), String> {
        match v {
            toml::Value::String(s) => *s = f(s)?,
            toml::Value::Array(a) => a.iter_mut().try_for_each(|v| render_toml(v, f))?,
            toml::Value::Table(t) => t.iter_mut().try_for_each(|(_, v)| render_toml(v, f))?,
            _ => {}
        }
        Ok(())
    }
    for (k, v) in b.vars.iter_mut() {
        render_toml(v, &|s| render(&format!("vars.{k}"), s))?;
    }
    Ok(b)
}

/// `[builds."<prefix>*"]`: a prefix that starts a build name, then one `*` at the end; its
/// `route`, if any, must depend on `{{ build }}` (each member needs its own).
fn check_family(app: &str, key: &str, b: &Build) -> Result<(), String> {
    let prefix = key.strip_suffix('*').unwrap_or(key);
    let ok = !prefix.is_empty()
        && !is_family(prefix)
        && check_build_name(&format!("{prefix}x")).is_ok()
        && prefix.len() < 32;
    if !ok {
        return Err(format!(
            "[builds.\"{}\"]: a family of builds is a build-name prefix followed by one '*' at the end, e.g. \"pr-*\" (members then match {BUILD_RULE})",
            key.escape_debug()
        ));
    }
    let samples = [format!("{prefix}1"), format!("{prefix}2")];
    let members: Vec<Build> = samples.iter().map(|n| member(app, key, b, n)).collect::<Result<_, _>>()?;
    if let (Some(r1), Some(r2)) = (&members[0].route, &members[1].route) {
        let n1 = crate::route::normalize(r1)
            .map_err(|e| format!("[builds.\"{key}\"] {e} (as rendered for {})", samples[0]))?;
        let n2 = crate::route::normalize(r2).map_err(|e| format!("[builds.\"{key}\"] {e}"))?;
        if n1 == n2 {
            return Err(format!(
                "[builds.\"{key}\"] route \"{}\" is the same for every member; put {{{{ build }}}} in it, e.g. \"/review/{{{{ build }}}}\"",
                b.route.as_deref().unwrap_or_default()
            ));
        }
    }
    Ok(())
}

/// Finds the manifest: the given path, or `relctl.toml` in `start` or the nearest parent.
pub fn locate(explicit: Option<&Path>, start: &Path) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    for dir in start.ancestors() {
        let candidate = dir.join(FILE_NAME);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(UsageError(format!(
        "no {FILE_NAME} in {} or any parent directory; pass one with -f/--manifest",
        start.display()
    ))
    .into())
}

/// Reads, parses and checks the manifest at `path`. As root, only a manifest only root can
/// change is read (see `trust`): it names the commands relctl runs as root. That holds for the
/// one the upward search found too (a `relctl.toml` another user left in `/tmp`).
pub fn load(path: &Path) -> Result<Loaded> {
    load_as(path, Trust::current())
}

/// [`load`] with this trust policy.
pub fn load_as(path: &Path, trust: Trust) -> Result<Loaded> {
    let text = trust::read_to_string(path, "manifest", trust)
        .map_err(|e| e.into_usage(|e| format!("cannot read manifest {}: {e}", path.display())))?;
    let manifest = parse(&text).map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
    let path = std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
    Ok(Loaded { path, dir, manifest })
}

/// Parses manifest text and checks every value in it. Errors are one line, without the file name.
pub fn parse(text: &str) -> Result<Manifest, String> {
    let de = toml::Deserializer::parse(text).map_err(|e| one_line_toml_error(&e, text, None))?;
    let manifest: Manifest = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        one_line_toml_error(e.inner(), text, Some(key.as_str()).filter(|k| *k != "."))
    })?;
    check(&manifest)?;
    Ok(manifest)
}

/// toml's messages span several lines (with a source excerpt); ours are one line with the
/// position and, for a value of the wrong type, the key it belongs to.
fn one_line_toml_error(e: &toml::de::Error, text: &str, key: Option<&str>) -> String {
    let msg = e.message().trim().replace('\n', " ");
    let msg = match key {
        Some(k) => format!("{k}: {msg}"),
        None => msg,
    };
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
            format!("line {line}, column {column}: {msg}")
        }
        None => msg,
    }
}

pub const APP_RULE: &str = "^[a-z][a-z0-9-]{0,31}$";
pub const BUILD_RULE: &str = "^[a-z0-9][a-z0-9_-]{0,31}$";

fn matches_rule(s: &str, first: fn(char) -> bool, rest: fn(char) -> bool) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if first(c)) && s.len() <= 32 && chars.all(rest)
}

pub fn check_app_name(name: &str) -> Result<(), String> {
    let ok =
        matches_rule(name, |c| c.is_ascii_lowercase(), |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!("app name \"{name}\" is invalid: it must match {APP_RULE}"))
    }
}

/// Build names become directory names and unit instance names, so they are kept plain.
pub fn check_build_name(name: &str) -> Result<(), UsageError> {
    let ok = matches_rule(
        name,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_',
    );
    if ok {
        Ok(())
    } else {
        Err(UsageError(format!(
            "invalid build name \"{}\": it must match {BUILD_RULE} (lowercase letters, digits, '-' and '_'; no dots, slashes or '@')",
            name.escape_debug()
        )))
    }
}

/// A relative path that stays inside its base: no `..`, not absolute, not empty.
fn check_inner_path(what: &str, p: &str) -> Result<(), String> {
    let path = Path::new(p);
    let escapes =
        path.components().any(|c| !matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir));
    if p.is_empty() || path.is_absolute() || escapes {
        return Err(format!(
            "{what} \"{}\" must be a relative path inside the release (no '..', not absolute)",
            p.escape_debug()
        ));
    }
    Ok(())
}

/// `[static] url` without its slashes (`/static/` -> `static`): one or more path segments of
/// letters, digits, `.`, `_` and `-`, none of them `.` or `..`.
pub fn static_url(url: &str) -> Result<String, String> {
    let trimmed = url.trim_matches('/');
    let ok_segment = |seg: &str| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    };
    if trimmed.is_empty() || !trimmed.split('/').all(ok_segment) {
        return Err(format!(
            "[static] url \"{}\" must be a path under the route such as \"static\": segments of letters, digits, '.', '_' and '-'",
            url.escape_debug()
        ));
    }
    Ok(trimmed.to_string())
}

/// A value that goes into a file line by line (an environment file, a shell script, a unit):
/// a newline or another control character would start a new entry there.
pub fn check_one_line(what: &str, value: &str) -> Result<(), String> {
    match value.chars().find(|c| c.is_control() && *c != '\t') {
        Some(c) => Err(format!(
            "{what} \"{}\" contains the control character {:?}; it must fit on one line",
            value.escape_debug(),
            c
        )),
        None => Ok(()),
    }
}

/// A path that goes into a unit or nginx directive as it is: no whitespace, quotes, `;`, `%`
/// (systemd's specifiers), braces or control characters.
fn check_plain_path(what: &str, p: &Path) -> Result<(), String> {
    let text = p.to_string_lossy();
    match text.chars().find(|c| c.is_whitespace() || c.is_control() || "\"'\\;%{}$`#".contains(*c)) {
        Some(c) => Err(format!(
            "{what} \"{}\" contains {:?}; paths relctl writes into units and nginx config must not contain whitespace, quotes, '\\', ';', '%', '$', '#', '`' or braces",
            text.escape_debug(),
            c
        )),
        None if text.is_empty() => Err(format!("{what} must not be empty")),
        None => Ok(()),
    }
}

/// A user or group name as useradd/groupadd accept them.
fn is_account_name(name: &str) -> bool {
    matches_rule(
        name,
        |c| c.is_ascii_lowercase() || c == '_',
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_',
    )
}

fn check_deps(m: &Manifest) -> Result<(), String> {
    let mut paths: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, d) in &m.deps {
        if !matches_rule(
            name,
            |c| c.is_ascii_lowercase(),
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_',
        ) {
            return Err(format!("[deps.{}] name must match ^[a-z][a-z0-9_-]{{0,31}}$", name.escape_debug()));
        }
        let what = format!("[deps.{name}] path");
        check_inner_path(&what, &d.path)?;
        check_one_line(&what, &d.path)?;
        if d.path.trim_end_matches('/') == crate::release::store::META_DIR {
            return Err(format!("{what} \"{}\" is relctl's own directory in the release", d.path));
        }
        if let Some(other) = paths.insert(d.path.trim_end_matches('/'), name) {
            return Err(format!("{what} \"{}\" is also the path of [deps.{other}]", d.path));
        }
        for k in &d.key {
            check_inner_path(&format!("[deps.{name}] key"), k)?;
        }
        if d.build.is_empty() || d.build.iter().any(|c| c.trim().is_empty()) {
            return Err(format!("[deps.{name}] build must list at least one command, none empty"));
        }
        for c in d.build.iter().chain(&d.key_commands) {
            check_one_line(&format!("[deps.{name}] command"), c)?;
        }
    }
    Ok(())
}

fn check(m: &Manifest) -> Result<(), String> {
    check_app_name(&m.app)?;
    if !matches_rule(
        &m.component,
        |c| c.is_ascii_lowercase(),
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_',
    ) {
        return Err(format!("component \"{}\" is invalid: it must match ^[a-z][a-z0-9_-]{{0,31}}$", m.component));
    }
    if let Some(root) = &m.root {
        check_plain_path("root", root)?;
    }
    let mut matcher = ignore::gitignore::GitignoreBuilder::new("/");
    for pattern in &m.exclude {
        matcher
            .add_line(None, pattern)
            .map_err(|e| format!("exclude pattern \"{}\" is invalid: {e}", pattern.escape_debug()))?;
    }
    let mut routes: BTreeMap<String, &str> = BTreeMap::new();
    let families: Vec<&str> = m.builds.keys().filter(|k| is_family(k)).map(|k| k.trim_end_matches('*')).collect();
    for (name, b) in &m.builds {
        if is_family(name) {
            check_family(&m.app, name, b)?;
            let prefix = name.trim_end_matches('*');
            if let Some(other) = families.iter().find(|o| **o != prefix && o.starts_with(prefix)) {
                return Err(format!(
                    "[builds.\"{name}\"] and [builds.\"{other}*\"] overlap: a build named {other}1 would belong to both"
                ));
            }
        } else {
            check_build_name(name).map_err(|e| format!("[builds.{name}]: {}", e.0))?;
        }
        if let Some(route) = b.route.as_ref().filter(|_| !is_family(name)) {
            let normalized = crate::route::normalize(route).map_err(|e| format!("[builds.{name}] {e}"))?;
            if let Some(other) = routes.insert(normalized.clone(), name) {
                return Err(format!(
                    "[builds.{name}] route \"{route}\" is also the route of build {other}; each build needs its own"
                ));
            }
        }
        for a in &b.allow {
            crate::route::check_allow(a).map_err(|e| format!("[builds.{name}] {e}"))?;
        }
        if let Some(p) = &b.secrets {
            check_plain_path(&format!("[builds.{name}] secrets"), p)?;
        }
        if let Some(p) = &b.htpasswd {
            check_plain_path(&format!("[builds.{name}] htpasswd"), p)?;
        }
        for h in &b.hosts {
            h.parse::<crate::remote::target::Target>().map_err(|e| format!("[builds.{name}] hosts: {e}"))?;
        }
        if let Some(dup) = b.hosts.iter().enumerate().find(|(i, h)| b.hosts[..*i].contains(h)).map(|(_, h)| h) {
            return Err(format!("[builds.{name}] hosts lists {dup} twice"));
        }
        if let Some(t) = b.read_timeout_s {
            if !(1..=86_400).contains(&t) {
                return Err(format!("[builds.{name}] read_timeout_s = {t} must be between 1 and 86400 (a day)"));
            }
        }
    }
    if let Some(st) = &m.static_files {
        check_inner_path("[static] dir", &st.dir)?;
        check_plain_path("[static] dir", Path::new(&st.dir))?;
        static_url(&st.url)?;
        if st.max_age_s > 31_536_000 {
            return Err(format!("[static] max_age_s = {} must be at most 31536000 (a year)", st.max_age_s));
        }
    }
    if !(1..=1000).contains(&m.keep_releases) {
        return Err(format!("keep_releases = {} must be between 1 and 1000", m.keep_releases));
    }
    let s = &m.service;
    if s.exec.trim().is_empty() {
        return Err("[service] exec must not be empty".into());
    }
    check_one_line("[service] exec", &s.exec)?;
    if let Some(w) = &s.workdir {
        check_inner_path("[service] workdir", w)?;
        check_one_line("[service] workdir", w)?;
        if w.contains('\'') {
            return Err(format!("[service] workdir \"{w}\" must not contain a single quote"));
        }
    }
    let sock = &s.socket;
    let plain = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
    if sock.is_empty()
        || sock.len() > 64
        || !sock.chars().all(plain)
        || sock.starts_with('.')
        || sock == "current"
        || sock == "releases"
    {
        return Err(format!(
            "[service] socket \"{}\" must be a plain file name of letters, digits, '.', '_' and '-' (it lives in <root>/<build>/), not 'current' or 'releases'",
            sock.escape_debug()
        ));
    }
    if let Some(user) = &s.user {
        if !is_account_name(user) {
            return Err(format!(
                "[service] user \"{}\" is not a valid user name (^[a-z_][a-z0-9_-]{{0,31}}$)",
                user.escape_debug()
            ));
        }
        if user == "root" {
            return Err("[service] user \"root\" is refused: the service runs as an unprivileged system user".into());
        }
    }
    if !is_account_name(&s.socket_group) {
        return Err(format!(
            "[service] socket_group \"{}\" is not a valid group name (^[a-z_][a-z0-9_-]{{0,31}}$)",
            s.socket_group.escape_debug()
        ));
    }
    for (key, value) in &s.environment {
        if key.is_empty()
            || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || key.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(format!("[service] environment key \"{}\" is not a valid variable name", key.escape_debug()));
        }
        check_one_line(&format!("[service] environment.{key}"), value)?;
    }
    if let Some(settings) = &m.settings {
        check_inner_path("[settings] path", &settings.path)?;
        check_one_line("[settings] path", &settings.path)?;
    }
    if !(1..=86400).contains(&m.hooks.release_timeout_s) {
        return Err(format!(
            "[hooks] release_timeout_s = {} must be between 1 and 86400 (a day)",
            m.hooks.release_timeout_s
        ));
    }
    if let Some(h) = &m.health {
        if !h.path.starts_with('/') || h.path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "[health] path \"{}\" must start with '/' and contain no spaces",
                h.path.escape_debug()
            ));
        }
        if !(1..=3600).contains(&h.timeout_s) {
            return Err(format!("[health] timeout_s = {} must be between 1 and 3600", h.timeout_s));
        }
        if h.probation_s > 3600 {
            return Err(format!("[health] probation_s = {} must be at most 3600", h.probation_s));
        }
    }
    for (stage, commands) in [("build", &m.hooks.build), ("release", &m.hooks.release), ("verify", &m.hooks.verify)] {
        if commands.iter().any(|c| c.trim().is_empty()) {
            return Err(format!("[hooks] {stage}: a command is empty"));
        }
    }
    check_hardening(&m.hardening)?;
    check_deps(m)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
app = "medctrl"
[service]
exec = ".venv/bin/gunicorn app:app"
[builds.development]
route = "/api"
"#;

    #[test]
    fn minimal_manifest_gets_defaults() {
        let m = parse(MINIMAL).unwrap();
        assert_eq!(m.component, "app");
        assert_eq!(m.keep_releases, 5);
        assert_eq!(m.service.socket, "gunicorn.sock");
        assert_eq!(m.service.socket_group, "www-data");
        assert_eq!(m.builds["development"].route.as_deref(), Some("/api"));
    }

    #[test]
    fn unknown_key_is_an_error_with_line_and_column() {
        let text = MINIMAL.replace("route = \"/api\"", "route = \"/api\"\nrout = \"/x\"");
        let err = parse(&text).unwrap_err();
        assert!(err.starts_with("line 7, column 1: builds.development.rout: unknown field `rout`"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_key() {
        let text = MINIMAL.replace("app = \"medctrl\"", "app = \"medctrl\"\nkeep_releases = \"five\"");
        assert_eq!(
            parse(&text).unwrap_err(),
            "line 3, column 17: keep_releases: invalid type: string \"five\", expected usize"
        );
        let text = format!("{MINIMAL}[health]\npath = \"/h\"\ntimeout_s = -1\n");
        let err = parse(&text).unwrap_err();
        assert!(err.contains("health.timeout_s: invalid value: integer `-1`"), "{err}");
    }

    #[test]
    fn values_that_their_file_cannot_hold_are_refused() {
        let cases = [
            ("[service]", "[service]\nenvironment = { X = \"a\\nLD_PRELOAD=/tmp/x.so\" }", "[service] environment.X"),
            ("[service]", "[service]\nworkdir = \"a'b\"", "single quote"),
            ("[service]", "[service]\nsocket_group = \"no such\"", "[service] socket_group"),
            ("[service]", "[service]\nuser = \"root\"", "unprivileged"),
            ("[service]", "[service]\nsocket = \"g sock\"", "[service] socket"),
            ("route = \"/api\"", "route = \"/api\"\nallow = [\"10.0.0.0/33\"]", "allow entry \"10.0.0.0/33\""),
            ("route = \"/api\"", "route = \"/api\"\nsecrets = \"/etc/x %i.env\"", "secrets"),
            ("route = \"/api\"", "route = \"/api\"\nhtpasswd = \"/etc/nginx/x;\"", "htpasswd"),
            ("app = \"medctrl\"", "app = \"medctrl\"\nexclude = [\"{a,b\"]", "exclude pattern"),
            ("app = \"medctrl\"", "app = \"medctrl\"\nkeep_releases = 0", "keep_releases = 0"),
            ("route = \"/api\"", "route = \"/api\"\nread_timeout_s = 0", "read_timeout_s = 0"),
            ("app = \"medctrl\"", "app = \"medctrl\"\n[static]\ndir = \"../etc\"", "[static] dir"),
            ("app = \"medctrl\"", "app = \"medctrl\"\n[static]\ndir = \"s t\"", "[static] dir"),
            ("app = \"medctrl\"", "app = \"medctrl\"\n[static]\ndir = \"s\"\nurl = \"a/../b\"", "[static] url"),
            ("app = \"medctrl\"", "app = \"medctrl\"\n[static]\ndir = \"s\"\nurl = \"x;y\"", "[static] url"),
        ];
        for (from, to, expected) in cases {
            let text = MINIMAL.replacen(from, to, 1);
            let err = parse(&text).expect_err(to);
            assert!(err.contains(expected) && !err.contains('\n'), "{to}: {err}");
        }
    }

    #[test]
    fn bad_app_name_is_refused_with_the_rule() {
        let err = parse(&MINIMAL.replace("medctrl", "Med_ctrl")).unwrap_err();
        assert!(err.contains("app name \"Med_ctrl\"") && err.contains(APP_RULE), "{err}");
    }

    #[test]
    fn build_names_follow_the_rule() {
        for ok in ["development", "a", "v2_test-1", "0day"] {
            assert!(check_build_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Dev", "../x", "a.b", "a/b", "a@b", "-x", "_x", &"x".repeat(33)] {
            let err = check_build_name(bad).unwrap_err().0;
            assert!(err.contains(BUILD_RULE), "{err}");
        }
    }

    #[test]
    fn undeclared_build_lists_declared_ones() {
        let loaded = Loaded { path: "/x/relctl.toml".into(), dir: "/x".into(), manifest: parse(MINIMAL).unwrap() };
        let err = loaded.build("staging").unwrap_err().to_string();
        assert_eq!(err, "build \"staging\" is not declared in /x/relctl.toml; declared builds: development");
    }

    const FAMILY: &str =
        "[builds.\"pr-*\"]\nroute = \"/review/{{ build }}\"\nvars = { title = \"Review {{ build }}\", n = 1 }\n";

    #[test]
    fn a_family_declares_members_with_their_own_route_and_vars() {
        let loaded = Loaded {
            path: "/x/relctl.toml".into(),
            dir: "/x".into(),
            manifest: parse(&format!("{MINIMAL}{FAMILY}")).unwrap(),
        };
        let b = loaded.build("pr-42").unwrap();
        assert_eq!(b.route.as_deref(), Some("/review/pr-42"));
        assert_eq!(b.vars["title"].as_str(), Some("Review pr-42"));
        assert_eq!(b.vars["n"].as_integer(), Some(1));
        assert_eq!(loaded.build("development").unwrap().route.as_deref(), Some("/api"));
        for bad in ["pr-", "pr", "staging", "pr-X"] {
            let err = loaded.build(bad).unwrap_err().to_string();
            assert!(err.contains("is not declared") || err.contains(BUILD_RULE), "{bad}: {err}");
        }
        assert_eq!(
            loaded.build("staging").unwrap_err().to_string(),
            "build \"staging\" is not declared in /x/relctl.toml; declared builds: development, pr-* (a family)"
        );
        assert_eq!(loaded.manifest.named_builds().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["development"]);
    }

    #[test]
    fn a_named_build_wins_over_its_family_and_routes_may_not_collide() {
        let text = format!("{MINIMAL}{FAMILY}[builds.pr-main]\nroute = \"/main\"\n");
        let loaded = Loaded { path: "/x/relctl.toml".into(), dir: "/x".into(), manifest: parse(&text).unwrap() };
        assert_eq!(loaded.build("pr-main").unwrap().route.as_deref(), Some("/main"));
        let text = format!("{MINIMAL}{FAMILY}[builds.other]\nroute = \"/review/pr-7\"\n");
        let loaded = Loaded { path: "/x/relctl.toml".into(), dir: "/x".into(), manifest: parse(&text).unwrap() };
        let err = loaded.build("pr-7").unwrap_err().to_string();
        assert!(err.ends_with("would take route /review/pr-7, the route of build other"), "{err}");
    }

    #[test]
    fn families_are_checked() {
        let cases = [
            ("[builds.\"*\"]\n", "a build-name prefix followed by one '*'"),
            ("[builds.\"p*r*\"]\n", "a build-name prefix followed by one '*'"),
            ("[builds.\"*-pr\"]\n", "a build-name prefix followed by one '*'"),
            ("[builds.\"PR-*\"]\n", "a build-name prefix followed by one '*'"),
            ("[builds.\"pr-*\"]\nroute = \"/review\"\n", "is the same for every member"),
            ("[builds.\"pr-*\"]\nroute = \"/r/{{ nope }}\"\n", "undefined variable `nope`"),
            ("[builds.\"pr-*\"]\n[builds.\"pr-1*\"]\n", "overlap"),
        ];
        for (extra, expected) in cases {
            let err = parse(&format!("{MINIMAL}{extra}")).expect_err(extra);
            assert!(err.contains(expected) && !err.contains('\n'), "{extra}: {err}");
        }
        assert!(parse(&format!("{MINIMAL}[builds.\"pr-*\"]\n")).is_ok(), "a family without a route");
    }

    #[test]
    fn settings_path_must_stay_inside_the_release() {
        let text = format!("{MINIMAL}\n[settings]\ntemplate = \"t\"\npath = \"../escape.py\"\n");
        assert!(parse(&text).unwrap_err().contains("[settings] path"));
    }

    #[test]
    fn routes_must_be_well_formed_and_distinct() {
        let dup = format!("{MINIMAL}[builds.testing]\nroute = \"/api/\"\n");
        let err = parse(&dup).unwrap_err();
        assert_eq!(
            err,
            "[builds.testing] route \"/api/\" is also the route of build development; each build needs its own"
        );
        let bad = MINIMAL.replace("\"/api\"", "\"/api;\"");
        assert!(parse(&bad).unwrap_err().starts_with("[builds.development] route \"/api;\" contains ';'"));
        let nested = format!("{MINIMAL}[builds.v2]\nroute = \"/api/v2\"\n");
        assert!(parse(&nested).is_ok());
        let allow = MINIMAL.replace("route = \"/api\"", "route = \"/api\"\nallow = [\"10.0.0.0/8; deny all\"]");
        assert!(parse(&allow).unwrap_err().contains("allow entry"));
    }

    #[test]
    fn static_url_loses_its_slashes() {
        assert_eq!(static_url("/static/").unwrap(), "static");
        assert_eq!(static_url("assets/v1").unwrap(), "assets/v1");
        for bad in ["", "/", "a//b", "./x", "a b", "x{"] {
            assert!(static_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn socket_must_be_a_plain_name() {
        let text = MINIMAL.replace("[service]", "[service]\nsocket = \"../g.sock\"");
        assert!(parse(&text).unwrap_err().contains("[service] socket"));
    }

    #[test]
    fn as_root_a_manifest_another_user_left_above_the_directory_is_refused() {
        // /tmp/<dir>/relctl.toml owned by nobody, found from /tmp/<dir>/project/deeper.
        let dir = tempfile::tempdir().unwrap();
        let below = dir.path().join("project/deeper");
        std::fs::create_dir_all(&below).unwrap();
        let dropped = dir.path().join(FILE_NAME);
        std::fs::write(&dropped, MINIMAL).unwrap();
        std::os::unix::fs::chown(&dropped, Some(65534), Some(65534)).unwrap();
        let found = locate(None, &below).unwrap();
        assert_eq!(found, dropped);
        let err = load_as(&found, Trust::RootOnly).unwrap_err();
        assert!(err.is::<UsageError>());
        assert_eq!(
            err.to_string(),
            format!(
                "manifest {p} is owned by nobody, not root: as root, relctl uses only files that only root can change; check it, then run: chown root: {p}; or run relctl without sudo (e.g. build --dry-run)",
                p = dropped.display()
            )
        );
        assert_eq!(load_as(&found, Trust::Anyone).unwrap().manifest.app, "medctrl", "without root it is read");
        std::os::unix::fs::chown(&dropped, Some(0), Some(0)).unwrap();
        assert_eq!(load_as(&found, Trust::RootOnly).unwrap().manifest.app, "medctrl", "root's own is read");
    }
}
