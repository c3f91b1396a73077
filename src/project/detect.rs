//! What `relctl init` finds in a project directory: a Django project (its `manage.py`, settings
//! module, WSGI or ASGI module and a health URL), the file its Python dependencies come from, and
//! local virtualenvs to leave out of releases. Only reads files; every path it reports is relative
//! to the project directory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// How deep below the project directory `manage.py` is looked for (`manage.py`, `API/manage.py`,
/// `src/backend/manage.py`).
pub const MANAGE_PY_DEPTH: usize = 3;

/// Directories never searched: dependencies, caches and other tools' trees.
const SKIPPED_DIRS: &[&str] = &["node_modules", "__pycache__", "site-packages"];

/// Where a Python project's dependency list usually is, relative to the project or to the
/// directory of `manage.py`, in order of preference.
const REQUIREMENTS: &[&str] =
    &["requirements.txt", "requirements/production.txt", "requirements/prod.txt", "requirements/base.txt"];

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

/// Directory names that say nothing about the app (a checkout in `/srv/app`, `~/src`): the app is
/// named after the project's package instead.
const GENERIC_NAMES: &[&str] = &[
    "app",
    "apps",
    "src",
    "code",
    "project",
    "projects",
    "repo",
    "web",
    "site",
    "website",
    "backend",
    "server",
    "www",
    "current",
    "checkout",
    "build",
    "workspace",
    "srv",
    "main",
    "api",
    "deploy",
    "release",
    "config",
    "settings",
    "core",
    "conf",
];

/// Everything found in one project directory.
#[derive(Debug, Clone, Serialize)]
pub struct Project {
    /// The project directory, absolute.
    pub dir: PathBuf,
    /// The app name: the directory's, or the project's when the directory's says nothing.
    pub app: String,
    /// Where the name comes from, for people (`the directory's name`).
    pub app_from: String,
    pub django: Option<Django>,
    /// A Flask, FastAPI or Starlette app, when there is no Django project.
    pub python_app: Option<PythonApp>,
    pub deps: Option<PythonDeps>,
    /// Directories directly in the project that are virtualenvs (they hold `pyvenv.cfg`).
    pub local_venvs: Vec<String>,
}

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

/// The web framework of a project without Django.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Framework {
    Flask,
    FastApi,
    Starlette,
}

impl Framework {
    pub fn name(self) -> &'static str {
        match self {
            Framework::Flask => "Flask",
            Framework::FastApi => "FastAPI",
            Framework::Starlette => "Starlette",
        }
    }

    pub fn interface(self) -> Interface {
        match self {
            Framework::Flask => Interface::Wsgi,
            Framework::FastApi | Framework::Starlette => Interface::Asgi,
        }
    }
}

/// A Flask, FastAPI or Starlette application and how gunicorn finds it.
#[derive(Debug, Clone, Serialize)]
pub struct PythonApp {
    pub framework: Framework,
    /// The directory the module imports from, relative to the project (`.`, `src`).
    pub workdir: String,
    /// e.g. `flaskr`, `app.main`
    pub module: String,
    /// gunicorn's name for the app in the module: `app`, or a factory call `create_app()`.
    pub callable: String,
    /// The file it was found in, relative to the project.
    pub found_in: String,
    /// Flask's instance folder (`instance` beside the package), relative to the project: where
    /// the app keeps its database and config, writable at run time.
    pub instance_dir: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Interface {
    Wsgi,
    Asgi,
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

/// Where the virtualenv's packages come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DepsSource {
    /// `pip install -r <file>`.
    Requirements { file: String },
    /// The `[project] dependencies` of a pyproject.toml, installed without building the project
    /// (the code runs from the release, and a Django project with several apps does not build as
    /// one package without extra configuration).
    PyProjectDependencies { file: String },
    /// `pip install <dir>`: a pyproject.toml with a `[build-system]` but no `[project]` table
    /// (e.g. Poetry before 2.0), built and installed with its dependencies.
    PyProjectBuild { file: String },
}

impl DepsSource {
    pub fn file(&self) -> &str {
        match self {
            DepsSource::Requirements { file }
            | DepsSource::PyProjectDependencies { file }
            | DepsSource::PyProjectBuild { file } => file,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PythonDeps {
    pub source: DepsSource,
    /// Every file the list is read from (a requirements file and the ones it includes with `-r`):
    /// the virtualenv's key.
    pub key: Vec<String>,
    /// Normalized names of the packages listed (`django`, `gunicorn`); None when they cannot be
    /// known (a project that is built).
    pub packages: Option<BTreeSet<String>>,
}

impl PythonDeps {
    /// Whether `name` (normalized) is listed; unknown counts as listed.
    pub fn lists(&self, name: &str) -> bool {
        self.packages.as_ref().is_none_or(|p| p.contains(name))
    }
}

/// Looks at the project in `dir` (absolute).
pub fn detect(dir: &Path) -> Project {
    let django = find_django(dir);
    let python_app = if django.is_none() { find_python_app(dir) } else { None };
    let workdir = django.as_ref().map(|d| d.workdir.clone()).or_else(|| python_app.as_ref().map(|a| a.workdir.clone()));
    let deps = find_deps(dir, workdir.as_deref());
    let (app, app_from) = name_the_app(dir, django.as_ref(), python_app.as_ref());
    Project { dir: dir.to_path_buf(), app, app_from, deps, local_venvs: local_venvs(dir), django, python_app }
}

/// The app's name and where it comes from: the directory's name, unless it says nothing about the
/// app ([`GENERIC_NAMES`]); then the `[project] name` of a pyproject.toml, the Django project's
/// package or the app's module.
fn name_the_app(dir: &Path, django: Option<&Django>, python_app: Option<&PythonApp>) -> (String, String) {
    let dir_name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let from_dir = app_name(&dir_name);
    if !GENERIC_NAMES.contains(&from_dir.as_str()) {
        return (from_dir, format!("the directory's name, {dir_name}"));
    }
    let pyproject = std::fs::read_to_string(dir.join("pyproject.toml"))
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("project")?.get("name")?.as_str().map(str::to_string));
    let package = django
        .and_then(|d| d.settings.as_ref())
        .map(|s| s.module.split('.').next().unwrap_or("").to_string())
        .or_else(|| python_app.map(|a| a.module.split('.').next().unwrap_or("").to_string()));
    let candidates = [
        pyproject.map(|n| (n.clone(), format!("[project] name \"{n}\" in pyproject.toml"))),
        package.map(|p| (p.clone(), format!("the project's package, {p}"))),
    ];
    for (name, from) in candidates.into_iter().flatten() {
        let name = app_name(&name);
        if !GENERIC_NAMES.contains(&name.as_str()) {
            return (name, format!("{from}; the directory's name, {dir_name}, says nothing about the app"));
        }
    }
    (from_dir, format!("the directory's name, {dir_name}"))
}

/// An app name (`^[a-z][a-z0-9-]{0,31}$`) made from a directory name: lowercase, other characters
/// turned into `-`, starting with a letter; `app` when nothing is left.
pub fn app_name(dir_name: &str) -> String {
    let mut name = String::new();
    for c in dir_name.chars().map(|c| c.to_ascii_lowercase()) {
        if c.is_ascii_lowercase() || (c.is_ascii_digit() && !name.is_empty()) {
            name.push(c);
        } else if !name.is_empty() && !name.ends_with('-') {
            name.push('-');
        }
    }
    name.truncate(32);
    let name = name.trim_end_matches('-');
    if name.is_empty() {
        "app".to_string()
    } else {
        name.to_string()
    }
}

/// `path` relative to `base`, with `/` separators; `.` for `base` itself.
fn relative(base: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(base).unwrap_or(path);
    if rel.as_os_str().is_empty() {
        ".".to_string()
    } else {
        rel.to_string_lossy().into_owned()
    }
}

/// `a` joined with `b`, both relative; `.` is left out.
pub fn join(a: &str, b: &str) -> String {
    match (a, b) {
        (".", b) => b.to_string(),
        (a, ".") => a.to_string(),
        (a, b) => format!("{}/{b}", a.trim_end_matches('/')),
    }
}

fn is_venv(dir: &Path) -> bool {
    dir.join("pyvenv.cfg").is_file()
}

fn local_venvs(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut venvs: Vec<String> = entries
        .flatten()
        .filter(|e| is_venv(&e.path()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    venvs.sort();
    venvs
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

fn find_django(dir: &Path) -> Option<Django> {
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

/// `a.b_c.d`: Python identifiers joined by dots.
fn is_dotted(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|seg| {
            seg.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
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

/// How deep below the project a Flask, FastAPI or Starlette app is looked for (`app.py`,
/// `flaskr/__init__.py`, `src/shop/main.py`).
const APP_DEPTH: usize = 3;

/// A Flask, FastAPI or Starlette application in the project: the first module, shallowest first,
/// that makes one (`app = Flask(__name__)`, `app = FastAPI()`), with its factory when the module
/// defines one (`def create_app(`). Modules are named from the project or, in a `src/` layout,
/// from `src/`.
fn find_python_app(dir: &Path) -> Option<PythonApp> {
    let walk = walkdir::WalkDir::new(dir).max_depth(APP_DEPTH).sort_by_file_name().into_iter();
    let mut files: Vec<(usize, PathBuf)> = walk
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            e.depth() == 0
                || !e.file_type().is_dir()
                || !(name.starts_with('.')
                    || SKIPPED_DIRS.contains(&name.as_ref())
                    || ["tests", "test", "docs", "migrations"].contains(&name.as_ref())
                    || is_venv(e.path()))
        })
        .flatten()
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "py"))
        .map(|e| (e.depth(), e.into_path()))
        .collect();
    files.sort();
    for (_, file) in files {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        let code: String = text.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
        let found =
            [("Flask(", Framework::Flask), ("FastAPI(", Framework::FastApi), ("Starlette(", Framework::Starlette)]
                .into_iter()
                .find_map(|(call, framework)| assigned_from(&code, call).map(|var| (framework, var)));
        let Some((framework, var)) = found else { continue };
        let Some((workdir, module)) = module_of(dir, &file) else { continue };
        let factory =
            ["create_app", "make_app", "app_factory"].into_iter().find(|f| code.contains(&format!("def {f}(")));
        let callable = match factory {
            Some(f) => format!("{f}()"),
            None => var,
        };
        let instance_dir = (framework == Framework::Flask).then(|| {
            // Flask's default instance folder: beside the app's top package, or beside the module.
            join(&workdir, "instance")
        });
        return Some(PythonApp { framework, workdir, module, callable, found_in: relative(dir, &file), instance_dir });
    }
    None
}

/// The variable a call is assigned to: `app = Flask(__name__)` or `app = flask.Flask(...)`
/// (indented too, as in a factory) -> `app`. `call` is the callee with its `(`.
fn assigned_from(code: &str, call: &str) -> Option<String> {
    let name = call.trim_end_matches('(');
    code.lines().find_map(|line| {
        let (lhs, rhs) = line.trim_start().split_once('=')?;
        let var = lhs.trim();
        let (callee, _) = rhs.trim_start().split_once('(')?;
        let calls = callee.rsplit('.').next() == Some(name) && is_dotted(callee);
        (calls && is_dotted(var) && !var.contains('.')).then(|| var.to_string())
    })
}

/// The directory a Python file imports from and its dotted module name: its top package is the
/// highest directory with `__init__.py` above it; the directory above that is the workdir
/// (relative to the project).
fn module_of(dir: &Path, file: &Path) -> Option<(String, String)> {
    let mut parts: Vec<String> = Vec::new();
    let stem = file.file_stem()?.to_string_lossy().into_owned();
    if stem != "__init__" {
        parts.push(stem);
    }
    let mut at = file.parent()?;
    while at != dir && at.join("__init__.py").is_file() {
        parts.push(at.file_name()?.to_string_lossy().into_owned());
        at = at.parent()?;
    }
    parts.reverse();
    let module = parts.join(".");
    is_dotted(&module).then(|| (relative(dir, at), module))
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

/// The dependency file: a requirements file in the project, then beside manage.py; else a
/// pyproject.toml (project, then beside manage.py) that lists dependencies or can be built.
fn find_deps(dir: &Path, workdir: Option<&str>) -> Option<PythonDeps> {
    let mut bases = vec![".".to_string()];
    bases.extend(workdir.filter(|w| *w != ".").map(str::to_string));
    for base in &bases {
        for name in REQUIREMENTS {
            let file = join(base, name);
            if dir.join(&file).is_file() {
                let mut key = Vec::new();
                let mut packages = BTreeSet::new();
                read_requirements(dir, &file, &mut key, &mut packages);
                return Some(PythonDeps { source: DepsSource::Requirements { file }, key, packages: Some(packages) });
            }
        }
    }
    for base in &bases {
        let file = join(base, "pyproject.toml");
        let Ok(text) = std::fs::read_to_string(dir.join(&file)) else { continue };
        let Ok(doc) = text.parse::<toml::Table>() else { continue };
        if let Some(project) = doc.get("project").and_then(|p| p.as_table()) {
            let listed = project.get("dependencies").and_then(|d| d.as_array()).cloned().unwrap_or_default();
            let packages = listed.iter().filter_map(|d| d.as_str()).filter_map(requirement_name).collect();
            return Some(PythonDeps {
                source: DepsSource::PyProjectDependencies { file: file.clone() },
                key: vec![file],
                packages: Some(packages),
            });
        }
        if doc.contains_key("build-system") {
            return Some(PythonDeps {
                source: DepsSource::PyProjectBuild { file: file.clone() },
                key: vec![file],
                packages: None,
            });
        }
    }
    None
}

/// Reads a requirements file and those it includes (`-r other.txt`, relative to it), adding each
/// file to `files` and each package's normalized name to `packages`.
fn read_requirements(dir: &Path, file: &str, files: &mut Vec<String>, packages: &mut BTreeSet<String>) {
    if files.iter().any(|f| f == file) || files.len() > 16 {
        return;
    }
    files.push(file.to_string());
    let Ok(text) = std::fs::read_to_string(dir.join(file)) else { return };
    let here = Path::new(file).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    for line in text.lines() {
        let line = line.split(" #").next().unwrap_or("").trim();
        let include = line
            .strip_prefix("-r")
            .or_else(|| line.strip_prefix("--requirement"))
            .map(|r| r.trim_start_matches(['=', ' ', '\t']).trim());
        match include {
            Some(inc) if !inc.is_empty() => {
                let inc = if here.is_empty() { inc.to_string() } else { join(&here, inc) };
                read_requirements(dir, &inc, files, packages);
            }
            _ => packages.extend(requirement_name(line)),
        }
    }
}

/// The normalized package name of a requirement line (`Django>=5.2` -> `django`); None for
/// comments, options and URLs.
pub fn requirement_name(line: &str) -> Option<String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with(['#', '-']) || line.contains("://") {
        return None;
    }
    let name: String = line.chars().take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect();
    if name.is_empty() {
        return None;
    }
    Some(name.to_ascii_lowercase().replace(['_', '.'], "-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, text: &str) {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// The files of `django-admin startproject mysite` (as Django 5.2 writes them, shortened).
    fn startproject(dir: &Path) {
        write(
            dir,
            "manage.py",
            "import os\nimport sys\n\ndef main():\n    \"\"\"Run administrative tasks.\"\"\"\n    os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')\n",
        );
        write(dir, "mysite/__init__.py", "");
        write(
            dir,
            "mysite/settings.py",
            "DEBUG = True\nROOT_URLCONF = 'mysite.urls'\n\nWSGI_APPLICATION = 'mysite.wsgi.application'\n",
        );
        write(
            dir,
            "mysite/urls.py",
            "\"\"\"\n    2. Add a URL to urlpatterns:  path('', views.home, name='home')\n\"\"\"\nfrom django.contrib import admin\nfrom django.urls import path\n\nurlpatterns = [\n    path('admin/', admin.site.urls),\n]\n",
        );
        write(dir, "mysite/wsgi.py", "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')\napplication = get_wsgi_application()\n");
        write(dir, "mysite/asgi.py", "application = get_asgi_application()\n");
    }

    #[test]
    fn a_startproject_tree_is_found_with_its_settings_and_wsgi_module() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mysite");
        startproject(&dir);
        write(&dir, "requirements.txt", "Django==5.2.19\ngunicorn==23.0.0  # the server\n");
        let p = detect(&dir);
        assert_eq!(p.app, "mysite");
        let d = p.django.unwrap();
        assert_eq!((d.workdir.as_str(), d.manage_py.as_str()), (".", "manage.py"));
        let s = d.settings.unwrap();
        assert_eq!(s.module, "mysite.settings");
        assert_eq!(s.found_in, "DJANGO_SETTINGS_MODULE in manage.py");
        let e = d.entry.unwrap();
        assert_eq!(
            (e.interface, e.module.as_str(), e.callable.as_str()),
            (Interface::Wsgi, "mysite.wsgi", "application")
        );
        assert_eq!(e.found_in, "WSGI_APPLICATION in mysite/settings.py");
        assert!(d.health.is_none(), "startproject routes only admin/");
        assert_eq!(d.urls_file.as_deref(), Some("mysite/urls.py"));
        let deps = p.deps.unwrap();
        assert_eq!(deps.source, DepsSource::Requirements { file: "requirements.txt".into() });
        assert_eq!(deps.key, ["requirements.txt"]);
        assert!(deps.lists("django") && deps.lists("gunicorn") && !deps.lists("uvicorn"));
    }

    #[test]
    fn the_example_layout_is_found_in_its_subdirectory() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/medctrl");
        let p = detect(&example);
        assert_eq!(p.app, "medctrl");
        let d = p.django.unwrap();
        assert_eq!((d.workdir.as_str(), d.manage_py.as_str()), ("API", "API/manage.py"));
        // manage.py names no settings: the settings package's shared module is used.
        let s = d.settings.unwrap();
        assert_eq!(s.module, "api_settings.settings.common");
        assert_eq!(s.found_in, "API/api_settings/settings/common.py");
        let e = d.entry.unwrap();
        assert_eq!((e.module.as_str(), e.callable.as_str()), ("api_settings.wsgi", "application"));
        let h = d.health.unwrap();
        assert_eq!((h.path.as_str(), h.found_in.as_str()), ("/health", "API/api_settings/urls.py"));
        assert_eq!(p.deps.unwrap().key, ["requirements.txt"]);
    }

    #[test]
    fn the_shallowest_manage_py_wins_and_venvs_and_hidden_dirs_are_not_searched() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("Shop_Backend 2");
        write(&dir, "venv/pyvenv.cfg", "home = /usr/bin\n");
        write(&dir, "venv/lib/manage.py", "");
        write(&dir, ".git/manage.py", "");
        write(&dir, "node_modules/x/manage.py", "");
        write(&dir, "src/shop/manage.py", "");
        write(&dir, "backend/manage.py", "");
        write(&dir, "a/b/c/manage.py", "");
        let p = detect(&dir);
        assert_eq!(p.app, "shop-backend-2");
        assert_eq!(p.local_venvs, ["venv"]);
        let d = p.django.unwrap();
        assert_eq!(d.workdir, "backend");
        assert_eq!(d.other_manage_py, ["src/shop/manage.py"], "a/b/c is too deep");
        assert!(d.settings.is_none() && d.entry.is_none() && d.health.is_none());
    }

    #[test]
    fn no_manage_py_is_no_django() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "app.py", "app = Flask(__name__)\n");
        let p = detect(tmp.path());
        assert!(p.django.is_none() && p.deps.is_none());
    }

    #[test]
    fn a_developers_settings_module_gives_way_to_the_shared_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(dir, "manage.py", "os.environ.setdefault(\"DJANGO_SETTINGS_MODULE\", \"config.settings.local\")\n");
        write(dir, "config/__init__.py", "");
        write(dir, "config/settings/__init__.py", "");
        write(dir, "config/settings/base.py", "ROOT_URLCONF = \"config.urls\"\n");
        write(dir, "config/settings/local.py", "from .base import *\n");
        write(dir, "config/urls.py", "urlpatterns = [\n    re_path(r'^healthz/?$', views.ok),\n]\n");
        write(dir, "config/asgi.py", "application = get_asgi_application()\n");
        let d = detect(dir).django.unwrap();
        let s = d.settings.unwrap();
        assert_eq!(s.module, "config.settings.base");
        assert_eq!(s.found_in, "config.settings.local (DJANGO_SETTINGS_MODULE in manage.py) imports it");
        let e = d.entry.unwrap();
        assert_eq!((e.interface, e.module.as_str()), (Interface::Asgi, "config.asgi"));
        assert_eq!(d.health.unwrap().path, "/healthz", "found through ROOT_URLCONF of base.py");
    }

    #[test]
    fn a_wagtail_site_runs_on_its_production_settings_and_is_named_after_its_package() {
        let tmp = tempfile::tempdir().unwrap();
        // `wagtail start cms` in a checkout at .../app: manage.py and wsgi.py name the dev module.
        let dir = tmp.path().join("app");
        write(&dir, "manage.py", "    os.environ.setdefault(\"DJANGO_SETTINGS_MODULE\", \"cms.settings.dev\")\n");
        write(&dir, "cms/__init__.py", "");
        write(&dir, "cms/wsgi.py", "os.environ.setdefault(\"DJANGO_SETTINGS_MODULE\", \"cms.settings.dev\")\napplication = get_wsgi_application()\n");
        write(&dir, "cms/settings/__init__.py", "");
        write(
            &dir,
            "cms/settings/base.py",
            "ROOT_URLCONF = \"cms.urls\"\nWSGI_APPLICATION = \"cms.wsgi.application\"\n",
        );
        write(&dir, "cms/settings/dev.py", "from .base import *\nSECRET_KEY = \"django-insecure-x\"\n");
        write(&dir, "cms/settings/production.py", "from .base import *\nDEBUG = False\n");
        write(&dir, "cms/urls.py", "urlpatterns = [path(\"admin/\", include(wagtailadmin_urls))]\n");
        write(&dir, "requirements.txt", "Django>=5.2,<5.3\nwagtail>=7.0,<7.1\n");
        let p = detect(&dir);
        assert_eq!(p.app, "cms");
        assert_eq!(p.app_from, "the project's package, cms; the directory's name, app, says nothing about the app");
        let s = p.django.unwrap().settings.unwrap();
        assert_eq!(s.module, "cms.settings.production");
        assert_eq!(s.dev_module.as_deref(), Some("cms.settings.dev"));
        assert_eq!(s.switch, None);
        assert_eq!(
            s.found_in,
            "the production module beside cms.settings.dev, which DJANGO_SETTINGS_MODULE in manage.py names"
        );
        // A settings package whose __init__.py switches on a variable: its production module.
        std::fs::remove_file(dir.join("cms/settings/production.py")).unwrap();
        write(&dir, "cms/settings/prod.py", "from .base import *\n");
        write(&dir, "cms/settings/__init__.py", "import os\nif os.environ.get('DJANGO_ENV') == 'prod':\n    from .prod import *\nelse:\n    from .dev import *\n");
        write(&dir, "manage.py", "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'cms.settings')\n");
        let s = detect(&dir).django.unwrap().settings.unwrap();
        assert_eq!((s.module.as_str(), s.switch.as_deref()), ("cms.settings.prod", Some("DJANGO_ENV")));
    }

    #[test]
    fn flask_and_fastapi_apps_are_found_with_their_factory() {
        let tmp = tempfile::tempdir().unwrap();
        // The Flask tutorial: a package with an application factory and a click command.
        let dir = tmp.path().join("flask-tutorial");
        write(&dir, "flaskr/__init__.py", "import os\nfrom flask import Flask\n\ndef create_app(test_config=None):\n    app = Flask(__name__, instance_relative_config=True)\n    return app\n");
        write(&dir, "flaskr/db.py", "@click.command('init-db')\ndef init_db_command():\n    pass\n");
        write(&dir, "tests/conftest.py", "app = Flask(__name__)\n");
        write(
            &dir,
            "pyproject.toml",
            "[project]\nname = \"flaskr\"\nversion = \"1.0.0\"\ndependencies = [\"flask\"]\n",
        );
        let p = detect(&dir);
        assert!(p.django.is_none());
        let a = p.python_app.unwrap();
        assert_eq!(a.framework, Framework::Flask);
        assert_eq!((a.workdir.as_str(), a.module.as_str(), a.callable.as_str()), (".", "flaskr", "create_app()"));
        assert_eq!((a.found_in.as_str(), a.instance_dir.as_deref()), ("flaskr/__init__.py", Some("instance")));
        assert_eq!(p.app, "flask-tutorial");
        // FastAPI in main.py of a checkout called "backend", named by its pyproject.toml.
        let dir = tmp.path().join("backend");
        write(
            &dir,
            "main.py",
            "from fastapi import FastAPI\n\napp = FastAPI()\n\n@app.get(\"/\")\ndef root():\n    return {}\n",
        );
        write(&dir, "pyproject.toml", "[project]\nname = \"Orders API\"\ndependencies = [\"fastapi\"]\n");
        let p = detect(&dir);
        let a = p.python_app.unwrap();
        assert_eq!((a.framework, a.module.as_str(), a.callable.as_str()), (Framework::FastApi, "main", "app"));
        assert_eq!(a.instance_dir, None);
        assert_eq!(p.app, "orders-api");
        // A src/ layout: the module imports from src.
        let dir = tmp.path().join("shop");
        write(&dir, "src/shop/__init__.py", "");
        write(&dir, "src/shop/web.py", "import starlette\napplication = starlette.applications.Starlette(routes=[])\n");
        let a = detect(&dir).python_app.unwrap();
        assert_eq!((a.workdir.as_str(), a.module.as_str(), a.callable.as_str()), ("src", "shop.web", "application"));
    }

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

    #[test]
    fn requirements_follow_includes_and_pyproject_lists_or_builds() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(dir, "manage.py", "");
        write(dir, "requirements/production.txt", "-r base.txt\ngunicorn[gevent]==23.0.0 ; python_version >= '3.8'\n");
        write(dir, "requirements/base.txt", "# pinned\nDjango_Extensions>=3\n--index-url https://example.invalid\n");
        let deps = detect(dir).deps.unwrap();
        assert_eq!(deps.source, DepsSource::Requirements { file: "requirements/production.txt".into() });
        assert_eq!(deps.key, ["requirements/production.txt", "requirements/base.txt"]);
        assert_eq!(deps.packages.unwrap().into_iter().collect::<Vec<_>>(), ["django-extensions", "gunicorn"]);

        std::fs::remove_dir_all(dir.join("requirements")).unwrap();
        write(dir, "pyproject.toml", "[project]\nname = \"x\"\ndependencies = [\"Django>=5\", \"psycopg[binary]\"]\n");
        let deps = detect(dir).deps.unwrap();
        assert_eq!(deps.source, DepsSource::PyProjectDependencies { file: "pyproject.toml".into() });
        assert!(deps.lists("django") && deps.lists("psycopg") && !deps.lists("gunicorn"));

        write(
            dir,
            "pyproject.toml",
            "[tool.poetry.dependencies]\ndjango = \"^5\"\n[build-system]\nrequires = [\"poetry-core\"]\n",
        );
        let deps = detect(dir).deps.unwrap();
        assert_eq!(deps.source, DepsSource::PyProjectBuild { file: "pyproject.toml".into() });
        assert!(deps.lists("gunicorn"), "what a built project installs is unknown");

        write(dir, "pyproject.toml", "[tool.black]\nline-length = 100\n");
        assert!(detect(dir).deps.is_none(), "a pyproject.toml that only configures tools lists nothing");
    }

    #[test]
    fn app_names_follow_the_rule() {
        assert_eq!(app_name("mysite"), "mysite");
        assert_eq!(app_name("My_Site.v2"), "my-site-v2");
        assert_eq!(app_name("2fast"), "fast");
        assert_eq!(app_name("__"), "app");
        assert_eq!(app_name(&"a".repeat(40)), "a".repeat(32));
        for n in ["mysite", "My_Site.v2", "2fast", "__", "-x-", "ünï"] {
            assert!(crate::manifest::check_app_name(&app_name(n)).is_ok(), "{n}");
        }
    }
}
