//! Checking every value of a parsed manifest: names, paths, routes, families, ranges; each error
//! one line naming the key and the rule.

use std::collections::BTreeMap;
use std::path::Path;

use crate::manifest::family::{is_family, member};
use crate::manifest::schema::{Build, Hardening, Manifest, IP_ANY, IP_LOCALHOST};
use crate::name::{matches_rule, BuildName, BUILD_RULE};
use crate::route::Route;

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

/// `[builds."<prefix>*"]`: a prefix that starts a build name, then one `*` at the end; its
/// `route`, if any, must depend on `{{ build }}` (each member needs its own).
fn check_family(app: &str, key: &str, b: &Build) -> Result<(), String> {
    let prefix = key.strip_suffix('*').unwrap_or(key);
    let ok = !prefix.is_empty()
        && !is_family(prefix)
        && BuildName::parse(&format!("{prefix}x")).is_ok()
        && prefix.len() < 32;
    if !ok {
        return Err(format!(
            "[builds.\"{}\"]: a family of builds is a build-name prefix followed by one '*' at the end, e.g. \"pr-*\" (members then match {BUILD_RULE})",
            key.escape_debug()
        ));
    }
    let samples = [format!("{prefix}1"), format!("{prefix}2")];
    let members: Vec<Build> = samples.iter().map(|n| member(app, key, b, n)).collect::<Result<_, _>>()?;
    for (m, sample) in members.iter().zip(&samples) {
        if let Some(d) = &m.domain {
            check_domain(&format!("[builds.\"{key}\"] domain (as rendered for {sample})"), d)?;
        }
    }
    if let (Some(r1), Some(r2)) = (&members[0].written_route, &members[1].written_route) {
        let n1 = Route::parse(r1).map_err(|e| format!("[builds.\"{key}\"] {e} (as rendered for {})", samples[0]))?;
        let n2 = Route::parse(r2).map_err(|e| format!("[builds.\"{key}\"] {e}"))?;
        if n1 == n2 && members[0].domain == members[1].domain {
            return Err(match &b.domain {
                None => format!(
                    "[builds.\"{key}\"] route \"{}\" is the same for every member; put {{{{ build }}}} in it, e.g. \"/review/{{{{ build }}}}\"",
                    b.written_route.as_deref().unwrap_or_default()
                ),
                Some(d) => format!(
                    "[builds.\"{key}\"] domain \"{d}\" and route \"{}\" are the same for every member; put {{{{ build }}}} in one of them, e.g. \"{{{{ build }}}}.review.example.org\"",
                    b.written_route.as_deref().unwrap_or("/")
                ),
            });
        }
    }
    Ok(())
}

/// The route a build declared by name is served at: as written, or `/` for a build with a domain.
fn written_route(b: &Build) -> Option<&str> {
    b.written_route.as_deref().or(b.domain.as_ref().map(|_| "/"))
}

/// A host name nginx can match exactly and an ACME CA can validate over HTTP-01: lowercase
/// labels of letters, digits and inner hyphens, joined by dots; no wildcard.
/// The shortest and longest `idle_stop_s`: below a few seconds a build would sleep between the
/// requests of one page; a week is the longest anyone means by "idle".
pub const IDLE_STOP_MIN_S: u64 = 5;
pub const IDLE_STOP_MAX_S: u64 = 604_800;

pub fn check_domain(what: &str, d: &str) -> Result<(), String> {
    let label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if d.len() > 253 || !d.split('.').all(label) || d.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(format!(
            "{what} \"{}\" must be a lowercase host name such as \"staging.example.org\": labels of letters, digits and '-' joined by '.', no wildcard (certificates are validated over HTTP)",
            d.escape_debug()
        ));
    }
    Ok(())
}

/// `[site]`: ports, HSTS, the ACME settings, and custom certificates for domains builds use.
fn check_site(m: &Manifest) -> Result<(), String> {
    let s = &m.site;
    if s.http_port == 0 || s.https_port == 0 || s.http_port == s.https_port {
        return Err(format!(
            "[site] http_port = {} and https_port = {} must be two different ports above 0",
            s.http_port, s.https_port
        ));
    }
    if s.hsts_max_age_s > 63_072_000 {
        return Err(format!("[site] hsts_max_age_s = {} must be at most 63072000 (two years)", s.hsts_max_age_s));
    }
    let d = &s.acme_directory;
    if !d.starts_with("https://")
        || d.len() <= "https://".len()
        || d.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("[site] acme_directory \"{}\" must be an https:// URL", d.escape_debug()));
    }
    if let Some(e) = &s.acme_email {
        let ok = e.split_once('@').is_some_and(|(u, h)| !u.is_empty() && h.contains('.'))
            && !e.chars().any(|c| c.is_whitespace() || c.is_control() || c == ',');
        if !ok {
            return Err(format!("[site] acme_email \"{}\" must be one e-mail address", e.escape_debug()));
        }
    }
    if let Some(p) = &s.acme_ca_bundle {
        check_plain_path("[site] acme_ca_bundle", p)?;
    }
    if let Some(p) = &s.config {
        check_plain_path("[site] config", p)?;
        if !p.is_absolute() || p.extension().is_none_or(|e| e != "conf") {
            return Err(format!("[site] config {} must be an absolute path ending in .conf", p.display()));
        }
    }
    for (domain, c) in &s.certificates {
        let what = format!("[site.certificates.\"{}\"]", domain.escape_debug());
        check_domain(&what, domain)?;
        if !m.named_builds().any(|(_, b)| b.domain.as_deref() == Some(domain.as_str())) {
            return Err(format!("{what}: no build has domain = \"{domain}\""));
        }
        check_plain_path(&format!("{what} cert"), &c.cert)?;
        check_plain_path(&format!("{what} key"), &c.key)?;
    }
    Ok(())
}

pub const APP_RULE: &str = "^[a-z][a-z0-9-]{0,31}$";

pub fn check_app_name(name: &str) -> Result<(), String> {
    let ok =
        matches_rule(name, |c| c.is_ascii_lowercase(), |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!("app name \"{name}\" is invalid: it must match {APP_RULE}"))
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

/// The rule for `[processes.<name>]` and `[timers.<name>]` names: they go into unit names
/// (`<app>_<build>_<name>`), so no `_`, and no `-failed` ending (a timer's notification unit).
pub const PROCESS_RULE: &str = "^[a-z][a-z0-9-]{0,31}$";

fn check_job_name(table: &str, name: &str) -> Result<(), String> {
    let ok =
        matches_rule(name, |c| c.is_ascii_lowercase(), |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok || name.ends_with("-failed") || name == "web" {
        return Err(format!(
            "[{table}.{}] name must match {PROCESS_RULE}, not end in \"-failed\" and not be \"web\"",
            name.escape_debug()
        ));
    }
    Ok(())
}

fn check_command(what: &str, command: &str) -> Result<(), String> {
    if command.trim().is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    check_one_line(what, command)
}

/// `[processes.*]`, `[timers.*]` and each build's choice of them.
fn check_processes(m: &Manifest) -> Result<(), String> {
    for (name, p) in &m.processes {
        check_job_name("processes", name)?;
        check_command(&format!("[processes.{name}] exec"), &p.exec)?;
        if let Some(r) = &p.ready {
            check_command(&format!("[processes.{name}] ready"), r)?;
        }
        if p.instances > 32 {
            return Err(format!("[processes.{name}] instances = {} must be at most 32", p.instances));
        }
        for (key, v, max) in
            [("stop_timeout_s", p.stop_timeout_s, 86_400), ("ready_timeout_s", p.ready_timeout_s, 3600)]
        {
            if !(1..=max).contains(&v) {
                return Err(format!("[processes.{name}] {key} = {v} must be between 1 and {max}"));
            }
        }
    }
    for (name, t) in &m.timers {
        check_job_name("timers", name)?;
        if m.processes.contains_key(name) {
            return Err(format!("[timers.{name}] has the name of [processes.{name}]; give each its own"));
        }
        check_command(&format!("[timers.{name}] exec"), &t.exec)?;
        if let Some(c) = &t.on_failure {
            check_command(&format!("[timers.{name}] on_failure"), c)?;
        }
        let cal = t.on_calendar.trim();
        if cal.is_empty() || cal.chars().any(|c| c.is_control() || c == '%' || c == '\\') {
            return Err(format!(
                "[timers.{name}] on_calendar \"{}\" must be a systemd calendar expression such as \"daily\" or \"*-*-* 03:00:00\" (see man systemd.time)",
                t.on_calendar.escape_debug()
            ));
        }
        if t.randomized_delay_s > 86_400 {
            return Err(format!("[timers.{name}] randomized_delay_s = {} must be at most 86400", t.randomized_delay_s));
        }
        if !(1..=604_800).contains(&t.timeout_s) {
            return Err(format!("[timers.{name}] timeout_s = {} must be between 1 and 604800 (a week)", t.timeout_s));
        }
    }
    for (build, b) in &m.builds {
        for (name, n) in b.processes.iter().flatten() {
            if !m.processes.contains_key(name) {
                return Err(format!(
                    "[builds.\"{build}\"] processes names \"{name}\", which is not declared as [processes.{name}]"
                ));
            }
            if *n > 32 {
                return Err(format!("[builds.\"{build}\"] processes.{name} = {n} must be at most 32"));
            }
        }
        for name in b.timers.iter().flatten() {
            if !m.timers.contains_key(name) {
                return Err(format!(
                    "[builds.\"{build}\"] timers names \"{name}\", which is not declared as [timers.{name}]"
                ));
            }
        }
    }
    Ok(())
}

/// Checks every value of `m`, and sets the route of each build declared by name, parsed.
pub(super) fn check(m: &mut Manifest) -> Result<(), String> {
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
    let mut routes: BTreeMap<(String, String), &str> = BTreeMap::new();
    let mut parsed: Vec<(String, Route)> = Vec::new();
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
            BuildName::parse(name).map_err(|e| format!("[builds.{name}]: {e}"))?;
        }
        if let Some(d) = b.domain.as_ref().filter(|_| !is_family(name)) {
            check_domain(&format!("[builds.{name}] domain"), d)?;
        }
        if let Some(route) = written_route(b).filter(|_| !is_family(name)) {
            let normalized = Route::parse(route).map_err(|e| format!("[builds.{name}] {e}"))?;
            let key = (b.domain.clone().unwrap_or_default(), normalized.as_str().to_string());
            if let Some(other) = routes.insert(key, name) {
                return Err(match &b.domain {
                    None => format!(
                        "[builds.{name}] route \"{route}\" is also the route of build {other}; each build needs its own"
                    ),
                    Some(d) => format!(
                        "[builds.{name}] route \"{route}\" on domain {d} is also the route of build {other} there; each build needs its own route or domain"
                    ),
                });
            }
            parsed.push((name.clone(), normalized));
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
            h.parse::<crate::manifest::target::Target>().map_err(|e| format!("[builds.{name}] hosts: {e}"))?;
        }
        if let Some(dup) = b.hosts.iter().enumerate().find(|(i, h)| b.hosts[..*i].contains(h)).map(|(_, h)| h) {
            return Err(format!("[builds.{name}] hosts lists {dup} twice"));
        }
        if let Some(t) = b.read_timeout_s {
            if !(1..=86_400).contains(&t) {
                return Err(format!("[builds.{name}] read_timeout_s = {t} must be between 1 and 86400 (a day)"));
            }
        }
        if let Some(t) = b.idle_stop_s {
            if !(IDLE_STOP_MIN_S..=IDLE_STOP_MAX_S).contains(&t) {
                return Err(format!(
                    "[builds.{name}] idle_stop_s = {t} must be between {IDLE_STOP_MIN_S} and {IDLE_STOP_MAX_S} (a week)"
                ));
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
    if let Some(sc) = &m.schema {
        for (key, c) in [("list", &sc.list), ("unapply", &sc.unapply)] {
            if c.trim().is_empty() {
                return Err(format!("[schema] {key} must not be empty"));
            }
        }
        if !sc.unapply.contains("{app}") || !sc.unapply.contains("{to}") {
            return Err(format!(
                "[schema] unapply \"{}\" must name {{app}} and {{to}}, e.g. \".venv/bin/python manage.py migrate --noinput {{app}} {{to}}\"",
                sc.unapply.escape_debug()
            ));
        }
    }
    for (stage, commands) in [
        ("build", &m.hooks.build),
        ("release", &m.hooks.release),
        ("verify", &m.hooks.verify),
        ("pre_migrate", &m.hooks.pre_migrate),
    ] {
        if commands.iter().any(|c| c.trim().is_empty()) {
            return Err(format!("[hooks] {stage}: a command is empty"));
        }
    }
    check_hardening(&m.hardening)?;
    check_deps(m)?;
    check_processes(m)?;
    if let Some(page) = &m.maintenance.page {
        check_inner_path("[maintenance] page", page)?;
        check_plain_path("[maintenance] page", Path::new(page))?;
    }
    if !(1..=86_400).contains(&m.maintenance.retry_after_s) {
        return Err(format!(
            "[maintenance] retry_after_s = {} must be between 1 and 86400",
            m.maintenance.retry_after_s
        ));
    }
    check_site(m)?;
    for e in &m.notify.on {
        if !crate::manifest::schema::NOTIFY_EVENTS.contains(&e.as_str()) {
            return Err(format!(
                "[notify] on: \"{}\" is not one of {}",
                e.escape_debug(),
                crate::manifest::schema::NOTIFY_EVENTS.join(", ")
            ));
        }
    }
    if m.notify.commands.iter().any(|c| c.trim().is_empty()) {
        return Err("[notify] commands: a command is empty".into());
    }
    if !(1..=600).contains(&m.notify.timeout_s) {
        return Err(format!("[notify] timeout_s = {} must be between 1 and 600", m.notify.timeout_s));
    }
    for (name, route) in parsed {
        if let Some(b) = m.builds.get_mut(&name) {
            b.route = Some(route);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse;
    use crate::manifest::tests::MINIMAL;

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
            ("route = \"/api\"", "route = \"/api\"\nidle_stop_s = 2", "idle_stop_s = 2 must be between 5 and 604800"),
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
    fn domains_are_host_names_and_a_route_is_unique_per_domain() {
        let site = |extra: &str| parse(&format!("{MINIMAL}{extra}"));
        let m = site("[builds.production]\ndomain = \"example.org\"\n[builds.staging]\ndomain = \"staging.example.org\"\n[builds.docs]\ndomain = \"example.org\"\nroute = \"/docs\"\n").unwrap();
        let route = |b: &str| m.builds[b].route.as_ref().map(|r| r.as_str().to_string());
        assert_eq!(route("production").as_deref(), Some("/"), "a build with a domain and no route is at /");
        assert_eq!(route("staging").as_deref(), Some("/"), "the same route on another domain is another route");
        assert_eq!(route("docs").as_deref(), Some("/docs"));
        assert_eq!(
            site("[builds.production]\ndomain = \"example.org\"\n[builds.www]\ndomain = \"example.org\"\nroute = \"/\"\n").unwrap_err(),
            "[builds.www] route \"/\" on domain example.org is also the route of build production there; each build needs its own route or domain"
        );
        for bad in ["Example.org", "*.example.org", "example..org", "-x.org", "x_y.org", "10.0.0.1", "a b"] {
            let err = site(&format!("[builds.production]\ndomain = \"{bad}\"\n")).unwrap_err();
            assert!(
                err.starts_with(&format!("[builds.production] domain \"{bad}\" must be a lowercase host name")),
                "{err}"
            );
        }
        let cases = [
            ("[site]\nhttp_port = 8080\nhttps_port = 8080\n", "must be two different ports"),
            ("[site]\nhsts_max_age_s = 99999999\n", "hsts_max_age_s"),
            ("[site]\nacme_directory = \"http://ca/dir\"\n", "must be an https:// URL"),
            ("[site]\nacme_email = \"ops\"\n", "acme_email"),
            ("[site]\nconfig = \"relctl.conf\"\n", "absolute path ending in .conf"),
            ("[site.certificates.\"other.org\"]\ncert = \"/c\"\nkey = \"/k\"\n", "no build has domain = \"other.org\""),
        ];
        for (extra, expected) in cases {
            let err = site(extra).unwrap_err();
            assert!(err.contains(expected) && !err.contains('\n'), "{extra}: {err}");
        }
    }

    #[test]
    fn a_family_with_a_domain_renders_it_per_member() {
        let m =
            parse(&format!("{MINIMAL}[builds.\"pr-*\"]\ndomain = \"{{{{ build }}}}.review.example.org\"\n")).unwrap();
        let loaded = crate::manifest::Loaded { path: "/x/relctl.toml".into(), dir: "/x".into(), manifest: m };
        let b = loaded.build(&"pr-7".parse().unwrap()).unwrap();
        assert_eq!(b.domain.as_deref(), Some("pr-7.review.example.org"));
        assert_eq!(b.route.as_ref().map(|r| r.as_str()), Some("/"));
        let err = parse(&format!("{MINIMAL}[builds.\"pr-*\"]\ndomain = \"review.example.org\"\n")).unwrap_err();
        assert!(err.contains("are the same for every member; put {{ build }} in one of them"), "{err}");
    }

    #[test]
    fn bad_app_name_is_refused_with_the_rule() {
        let err = parse(&MINIMAL.replace("medctrl", "Med_ctrl")).unwrap_err();
        assert!(err.contains("app name \"Med_ctrl\"") && err.contains(APP_RULE), "{err}");
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
}
