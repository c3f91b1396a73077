//! A Django project in a project tree: the shallowest `manage.py`, its settings module (a
//! developer's module gives way to the production or shared module of its settings package), the
//! WSGI or ASGI entry point gunicorn serves, and a health URL routed in the root URL configuration.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::project::shared::{is_dotted, is_venv, relative, Interface, SKIPPED_DIRS};

/// How deep below the project directory `manage.py` is looked for (`manage.py`, `API/manage.py`,
/// `src/backend/manage.py`).
pub const MANAGE_PY_DEPTH: usize = 3;

/// Settings module names that are meant for a developer's machine; a sibling from
/// [`BASE_SETTINGS`] is used instead when there is one.
const LOCAL_SETTINGS: &[&str] = &["local", "dev", "development", "test", "tests", "testing"];
/// Settings module names meant for servers: used for every build when a settings package has one.
const PRODUCTION_SETTINGS: &[&str] = &["production", "prod", "live"];
/// The module of a settings package that holds the shared settings.
const BASE_SETTINGS: &[&str] = &["base", "common", "defaults", "default", "shared", "settings"];

/// Last segments of a URL that are meant for health checks.
const HEALTH_NAMES: &[&str] =
    &["health", "healthz", "healthcheck", "health-check", "health_check", "ping", "livez", "readyz"];

#[derive(Debug, Clone, Serialize)]
pub struct Django {
    /// The directory of `manage.py`, relative to the project; `.` for the project itself.
    pub workdir: String,
    /// `manage.py`, relative to the project.
    pub manage_py: String,
    /// Other `manage.py` files found (not used).
    pub other_manage_py: Vec<String>,
    pub settings: Option<SettingsModule>,
    pub entry: Option<EntryPoint>,
    pub health: Option<HealthUrl>,
    /// The URL configuration that was searched for a health URL, relative to the project.
    pub urls_file: Option<String>,
}

/// The settings module the per-build settings import.
#[derive(Debug, Clone, Serialize)]
pub struct SettingsModule {
    /// Dotted, importable from the workdir, e.g. `mysite.settings`.
    pub module: String,
    /// Where it was found, for people (`DJANGO_SETTINGS_MODULE in manage.py`).
    pub found_in: String,
    /// The settings package's module for a developer's machine (`mysite.settings.dev`), when
    /// another module (production's) was chosen.
    pub dev_module: Option<String>,
    /// The environment variable the settings package's `__init__.py` chooses its module by.
    pub switch: Option<String>,
}

/// The module and callable gunicorn serves.
#[derive(Debug, Clone, Serialize)]
pub struct EntryPoint {
    pub interface: Interface,
    /// e.g. `mysite.wsgi`
    pub module: String,
    /// e.g. `application`
    pub callable: String,
    pub found_in: String,
}

/// A URL of the app that exists and is meant for health checks.
#[derive(Debug, Clone, Serialize)]
pub struct HealthUrl {
    /// e.g. `/health`
    pub path: String,
    /// The URL configuration it was found in, relative to the project.
    pub found_in: String,
}

/// The shallowest `manage.py` (then the first by name), searched [`MANAGE_PY_DEPTH`] levels deep
/// without entering hidden directories, virtualenvs or [`SKIPPED_DIRS`]. Directories that cannot be
/// read are passed over: what they hold cannot be deployed by this user anyway.
fn find_manage_py(dir: &Path) -> Vec<PathBuf> {
    let walk = walkdir::WalkDir::new(dir).max_depth(MANAGE_PY_DEPTH).sort_by_file_name().into_iter();
    let mut found: Vec<(usize, PathBuf)> = walk
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            e.depth() == 0
                || !e.file_type().is_dir()
                || !(name.starts_with('.') || SKIPPED_DIRS.contains(&name.as_ref()) || is_venv(e.path()))
        })
        .flatten()
        .filter(|e| e.file_type().is_file() && e.file_name() == "manage.py")
        .map(|e| (e.depth(), e.into_path()))
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

pub(super) fn find_django(dir: &Path) -> Option<Django> {
    let mut all = find_manage_py(dir);
    if all.is_empty() {
        return None;
    }
    let manage = all.remove(0);
    let work = manage.parent().unwrap_or(dir).to_path_buf();
    let workdir = relative(dir, &work);
    let rel = |p: &Path| relative(dir, p);
    let settings = find_settings(&work, &manage, &rel);
    let settings_files = settings.as_ref().map(|s| module_family(&work, &s.module)).unwrap_or_default();
    let entry = find_entry(&work, settings.as_ref(), &settings_files, &rel);
    let urls = find_urls(&work, settings.as_ref(), &settings_files);
    let health = urls.as_ref().and_then(|u| {
        let text = std::fs::read_to_string(u).ok()?;
        health_route(&text).map(|path| HealthUrl { path, found_in: rel(u) })
    });
    Some(Django {
        workdir,
        manage_py: rel(&manage),
        other_manage_py: all.iter().map(|p| rel(p)).collect(),
        settings,
        entry,
        health,
        urls_file: urls.as_ref().map(|u| rel(u)),
    })
}

/// The file of a dotted module under `work`: `a/b.py` or `a/b/__init__.py`.
fn module_file(work: &Path, module: &str) -> Option<PathBuf> {
    if !is_dotted(module) {
        return None;
    }
    let base = module.split('.').fold(work.to_path_buf(), |p, seg| p.join(seg));
    [base.with_extension("py"), base.join("__init__.py")].into_iter().find(|p| p.is_file())
}

/// The module's file, and for a module of a settings package (`config/settings/`) the other
/// modules in it (where a star-imported `base.py` keeps `ROOT_URLCONF`).
fn module_family(work: &Path, module: &str) -> Vec<PathBuf> {
    let Some(file) = module_file(work, module) else { return Vec::new() };
    let mut files = vec![file.clone()];
    if let Some(package) = file.parent().filter(|p| p.ends_with("settings") && p.join("__init__.py").is_file()) {
        let mut siblings: Vec<PathBuf> = std::fs::read_dir(package)
            .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "py")).collect())
            .unwrap_or_default();
        siblings.sort();
        files.extend(siblings.into_iter().filter(|p| *p != file));
    }
    files
}

/// The first string literal that is assigned to or paired with `key` in Python source:
/// `os.environ.setdefault("KEY", "value")`, `os.environ["KEY"] = "value"`, `KEY = "value"`.
/// Commented lines are skipped.
pub fn python_string_after(text: &str, key: &str) -> Option<String> {
    for line in text.lines() {
        let code = line.split('#').next().unwrap_or("");
        for (at, _) in code.match_indices(key) {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let rest = code[at + key.len()..].strip_prefix(['"', '\'']).unwrap_or(&code[at + key.len()..]);
            let rest = rest.trim_start_matches([' ', '\t', ',', ']', '=', ':']);
            let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else { continue };
            if let Some((value, _)) = rest[1..].split_once(quote) {
                return Some(value.to_string());
            }
        }
    }
    None
}

/// A settings package's module that holds the settings: the package itself when its
/// `__init__.py` has code, else its `base.py`, `common.py`, ... or its only module.
fn settings_in_package(package_dir: &Path, module: &str) -> String {
    let init = std::fs::read_to_string(package_dir.join("__init__.py")).unwrap_or_default();
    let has_code = init.lines().any(|l| {
        let l = l.trim();
        !l.is_empty() && !l.starts_with('#') && (l.contains('=') || l.starts_with("from ") || l.starts_with("import "))
    });
    if has_code {
        return module.to_string();
    }
    if let Some(base) = BASE_SETTINGS.iter().find(|b| package_dir.join(format!("{b}.py")).is_file()) {
        return format!("{module}.{base}");
    }
    let modules: Vec<String> = std::fs::read_dir(package_dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".py")).map(str::to_string))
                .filter(|n| n != "__init__")
                .collect()
        })
        .unwrap_or_default();
    match modules.as_slice() {
        [only] => format!("{module}.{only}"),
        _ => module.to_string(),
    }
}

/// Refines a settings module named somewhere: in a settings package (`config/settings/`, or a
/// package named as the module) its production module when it has one (`production`, `prod`,
/// `live`: every build runs on a server); else a package becomes its settings module, and a
/// developer's module (`config.settings.local`) its shared sibling (`config.settings.base`).
fn refine_settings(work: &Path, module: &str) -> Option<String> {
    let file = module_file(work, module)?;
    let is_package = file.ends_with("__init__.py");
    let (dir, package) = match (is_package, module.rsplit_once('.')) {
        (true, _) => (file.parent()?, module),
        (false, Some((package, _))) if file.parent()?.ends_with("settings") => (file.parent()?, package),
        _ => return Some(module.to_string()),
    };
    if let Some(prod) = PRODUCTION_SETTINGS.iter().find(|p| dir.join(format!("{p}.py")).is_file()) {
        return Some(format!("{package}.{prod}"));
    }
    if is_package {
        return Some(settings_in_package(dir, module));
    }
    let last = module.rsplit('.').next().unwrap_or(module);
    if LOCAL_SETTINGS.contains(&last) {
        if let Some(base) = BASE_SETTINGS.iter().find(|b| dir.join(format!("{b}.py")).is_file()) {
            return Some(format!("{package}.{base}"));
        }
    }
    Some(module.to_string())
}

/// What a settings package tells about the module chosen in it: its developer's module (when
/// that is not the one chosen) and the variable its `__init__.py` switches on.
fn settings_package_facts(work: &Path, module: &str) -> (Option<String>, Option<String>) {
    let Some(file) = module_file(work, module) else { return (None, None) };
    let (dir, package) = match module.rsplit_once('.') {
        Some((package, _))
            if !file.ends_with("__init__.py") && file.parent().is_some_and(|p| p.join("__init__.py").is_file()) =>
        {
            (file.parent().unwrap_or(work).to_path_buf(), package.to_string())
        }
        _ => return (None, None),
    };
    let dev = LOCAL_SETTINGS
        .iter()
        .find(|d| dir.join(format!("{d}.py")).is_file())
        .map(|d| format!("{package}.{d}"))
        .filter(|d| d != module);
    let init = std::fs::read_to_string(dir.join("__init__.py")).unwrap_or_default();
    let switch = ["os.environ.get(", "os.getenv(", "os.environ[", "env("].iter().find_map(|call| {
        let code: String = init.lines().map(|l| l.split('#').next().unwrap_or("")).collect::<Vec<_>>().join("\n");
        let at = code.find(call)?;
        first_string_literal(&code[at + call.len()..])
    });
    (dev, switch)
}

/// The packages directly in `work` (directories with `__init__.py`), by name.
fn packages(work: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(work)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.join("__init__.py").is_file()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

fn find_settings(work: &Path, manage: &Path, rel: &dyn Fn(&Path) -> String) -> Option<SettingsModule> {
    // Where Django itself is told: manage.py, then the WSGI/ASGI files of the packages.
    let mut named_in = vec![manage.to_path_buf()];
    for p in packages(work) {
        named_in.extend(["wsgi.py", "asgi.py"].iter().map(|f| p.join(f)).filter(|f| f.is_file()));
    }
    for file in &named_in {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        let Some(named) = python_string_after(&text, "DJANGO_SETTINGS_MODULE") else { continue };
        if let Some(module) = refine_settings(work, &named) {
            let found_in = if module == named {
                format!("DJANGO_SETTINGS_MODULE in {}", rel(file))
            } else if PRODUCTION_SETTINGS.iter().any(|p| module.ends_with(&format!(".{p}"))) {
                format!("the production module beside {named}, which DJANGO_SETTINGS_MODULE in {} names", rel(file))
            } else {
                format!("{named} (DJANGO_SETTINGS_MODULE in {}) imports it", rel(file))
            };
            let (dev_module, switch) = settings_package_facts(work, &module);
            return Some(SettingsModule { module, found_in, dev_module, switch });
        }
    }
    // Else a package with a settings module or package: `mysite/settings.py`, `api/settings/`.
    packages(work).iter().find_map(|p| {
        let name = p.file_name()?.to_string_lossy().into_owned();
        let module = refine_settings(work, &format!("{name}.settings"))?;
        let found_in = rel(&module_file(work, &module)?);
        let (dev_module, switch) = settings_package_facts(work, &module);
        Some(SettingsModule { module, found_in, dev_module, switch })
    })
}

/// gunicorn's module: `WSGI_APPLICATION` of the settings, else `wsgi.py` beside the settings (or
/// in any package), else the ASGI equivalents.
fn find_entry(
    work: &Path,
    settings: Option<&SettingsModule>,
    settings_files: &[PathBuf],
    rel: &dyn Fn(&Path) -> String,
) -> Option<EntryPoint> {
    let top = settings.and_then(|s| s.module.split('.').next()).map(|t| work.join(t));
    let mut dirs: Vec<PathBuf> = top.into_iter().collect();
    dirs.extend(packages(work));
    for (interface, setting, file) in
        [(Interface::Wsgi, "WSGI_APPLICATION", "wsgi.py"), (Interface::Asgi, "ASGI_APPLICATION", "asgi.py")]
    {
        for sf in settings_files {
            let Some(dotted) = std::fs::read_to_string(sf).ok().and_then(|t| python_string_after(&t, setting)) else {
                continue;
            };
            let Some((module, callable)) = dotted.rsplit_once('.') else { continue };
            if module_file(work, module).is_some() && is_dotted(callable) {
                return Some(EntryPoint {
                    interface,
                    module: module.to_string(),
                    callable: callable.to_string(),
                    found_in: format!("{setting} in {}", rel(sf)),
                });
            }
        }
        for d in &dirs {
            let path = d.join(file);
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            let package = d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if text.contains("application") && is_dotted(&package) {
                return Some(EntryPoint {
                    interface,
                    module: format!("{package}.{}", file.trim_end_matches(".py")),
                    callable: "application".into(),
                    found_in: rel(&path),
                });
            }
        }
    }
    None
}

/// The root URL configuration: `ROOT_URLCONF` of the settings, else `urls.py` beside them.
fn find_urls(work: &Path, settings: Option<&SettingsModule>, settings_files: &[PathBuf]) -> Option<PathBuf> {
    let named = settings_files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .find_map(|t| python_string_after(&t, "ROOT_URLCONF"));
    if let Some(file) = named.and_then(|m| module_file(work, &m)) {
        return Some(file);
    }
    let top = settings?.module.split('.').next()?.to_string();
    Some(work.join(top).join("urls.py")).filter(|p| p.is_file())
}

/// The URL of a health view routed in a URL configuration: a `path("health", ...)`,
/// `re_path(r"^healthz/?$", ...)` or `path("ht/", include("health_check.urls"))`.
pub fn health_route(urls_py: &str) -> Option<String> {
    let code: String =
        urls_py.lines().filter(|l| !l.trim_start().starts_with('#')).map(|l| format!("{l}\n")).collect::<String>();
    let calls: Vec<usize> = ["path(", "re_path(", "url("]
        .iter()
        .flat_map(|f| code.match_indices(f).map(|(i, _)| i))
        .filter(|&i| !code[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    for (n, &start) in calls.iter().enumerate() {
        let call = &code[start..calls.get(n + 1).copied().unwrap_or(code.len())];
        let args = &call[call.find('(')? + 1..];
        let Some(route) = first_string_literal(args) else { continue };
        let Some(url) = plain_route(&route) else { continue };
        let last = url.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        if HEALTH_NAMES.contains(&last) || call.contains("health_check.urls") {
            return Some(format!("/{url}"));
        }
    }
    None
}

/// A string literal at the start of `s` (after whitespace; `r` prefix allowed).
fn first_string_literal(s: &str) -> Option<String> {
    let s = s.trim_start();
    let s = s.strip_prefix(['r', 'R']).unwrap_or(s);
    let quote = s.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    s[1..].split_once(quote).map(|(v, _)| v.to_string())
}

/// A Django route or anchored regex as the plain URL path it matches (`^health/?$` ->
/// `health`), or None when it has parameters or regex syntax left.
fn plain_route(route: &str) -> Option<String> {
    let r = route.strip_prefix('^').unwrap_or(route);
    let r = r.strip_suffix('$').unwrap_or(r);
    let r = r.strip_suffix("/?").unwrap_or(r);
    let r = r.strip_prefix('/').unwrap_or(r);
    if r.is_empty() || r.chars().any(|c| "<>()[]{}*+?|\\^$. ".contains(c) || c.is_control()) {
        return None;
    }
    Some(r.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_strings_are_read_after_their_key() {
        let f = |t: &str| python_string_after(t, "DJANGO_SETTINGS_MODULE");
        assert_eq!(f("os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'a.settings')").as_deref(), Some("a.settings"));
        assert_eq!(f("os.environ[\"DJANGO_SETTINGS_MODULE\"] = \"b.s\"").as_deref(), Some("b.s"));
        assert_eq!(f("\"\"\"DJANGO_SETTINGS_MODULE must be set (x.y)\"\"\"\n").as_deref(), None);
        assert_eq!(f("# os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'old')\n").as_deref(), None);
        assert_eq!(
            python_string_after("MY_ROOT_URLCONF = 'x'\nROOT_URLCONF = 'y'", "ROOT_URLCONF").as_deref(),
            Some("y")
        );
    }

    #[test]
    fn health_routes_are_plain_paths_meant_for_health() {
        assert_eq!(health_route("path(\"health\", v)").as_deref(), Some("/health"));
        assert_eq!(health_route("path('api/ping/', v)").as_deref(), Some("/api/ping/"));
        assert_eq!(health_route("url(r'^healthcheck$', v)").as_deref(), Some("/healthcheck"));
        assert_eq!(health_route("path('ht/', include('health_check.urls'))").as_deref(), Some("/ht/"));
        assert_eq!(health_route("path('admin/', admin.site.urls)\npath('users/<int:pk>/health', v)"), None);
        assert_eq!(health_route("# path('health', v)\nsomepath('health', v)"), None);
        assert_eq!(health_route("re_path(r'^health/(?P<x>.*)$', v)"), None);
    }
}
