//! `relctl init`: a commented starter `relctl.toml` made from what [`detect`] finds in a project
//! directory. The file is rendered from `init.toml.tera` (values through a `toml` filter, so they
//! are always valid TOML), parsed and checked like any manifest before it is written, and never
//! written over an existing one.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use crate::error::Error;
use crate::host::atomic;
use crate::manifest;
use crate::project::detect::{self, Project};
use crate::project::django::{Django, EntryPoint, HealthUrl, SettingsModule, MANAGE_PY_DEPTH};
use crate::project::python_app::{Framework, PythonApp};
use crate::project::python_deps::{DepsSource, PythonDeps};
use crate::project::shared::{self, Interface};

const TEMPLATE: &str = include_str!("init.toml.tera");

/// The gunicorn settings init writes beside `manage.py` when the project has none: `gc.freeze()`
/// before each fork, which makes stopping an instance (every restart and deploy) cheap.
const GUNICORN_CONF: &str = include_str!("init-gunicorn.conf.py");

/// gunicorn's settings file, in the directory it starts in (its default `--config`).
pub const GUNICORN_CONF_NAME: &str = "gunicorn.conf.py";

/// The build `init` declares, and the command it tells the user to run next.
pub const FIRST_BUILD: &str = "development";

/// gunicorn's own ASGI worker (gunicorn 24 and later) with the build's route as its root path:
/// the app routes under the route and generates URLs with it (uvicorn's worker ignores both the
/// SCRIPT_NAME header and the route).
const ASGI_WORKER: &str = "--worker-class asgi --root-path \"$RELCTL_SCRIPT_NAME\"";

/// The interpreter the virtualenv is made with, when the host has it.
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// What `relctl init` will write, and where.
#[derive(Debug, Clone, Serialize)]
pub struct InitPlan {
    /// `<dir>/relctl.toml`
    pub path: PathBuf,
    pub project: Project,
    /// What was found, one line each (also at the top of the file).
    pub found: Vec<String>,
    /// What the user should check or change (also in the file).
    pub notes: Vec<String>,
    #[serde(skip)]
    pub text: String,
    /// `<workdir>/gunicorn.conf.py`, written beside the manifest, when a Django project has none.
    pub gunicorn_conf: Option<PathBuf>,
}

/// Looks at the project in `dir` (absolute) and renders its manifest. Refuses, before looking,
/// when `dir` already has a relctl.toml.
pub fn plan(dir: &Path, app: Option<&str>) -> Result<InitPlan> {
    let path = dir.join(manifest::FILE_NAME);
    if std::fs::symlink_metadata(&path).is_ok() {
        return Err(already_there(&path).into());
    }
    let mut project = detect::detect(dir);
    if let Some(app) = app {
        manifest::check_app_name(app).map_err(|e| Error::Usage(format!("--app: {e}")))?;
        project.app = app.to_string();
        project.app_from = "--app".into();
    }
    let view = View::new(&project);
    let text = render(&view)?;
    // What init writes must load as it is: a failure here is relctl's bug, not the user's.
    manifest::parse(&text)
        .map_err(|e| anyhow!("relctl init could not make a manifest that loads for {}: {e}", dir.display()))?;
    let gunicorn_conf = view.write_gunicorn_conf.then(|| dir.join(&view.gunicorn_conf));
    Ok(InitPlan { path, project, found: view.found, notes: view.notes, text, gunicorn_conf })
}

/// Writes the planned manifest (mode 0644) if there is still nothing at its path, and before it
/// the planned gunicorn.conf.py (0644) unless one appeared meanwhile (then that one is used).
/// Nothing is left behind when the manifest cannot be written. Returns the gunicorn.conf.py it
/// wrote, if it wrote one.
pub fn write(plan: &InitPlan) -> Result<Option<&Path>> {
    let conf = match &plan.gunicorn_conf {
        Some(conf) => match atomic::create_new(conf, GUNICORN_CONF.as_bytes(), 0o644) {
            Ok(()) => Some(conf.as_path()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => None,
            Err(e) => return Err(anyhow::Error::new(e).context(format!("writing {}", conf.display()))),
        },
        None => None,
    };
    write_manifest(plan).map_err(|e| match conf {
        Some(c) => match std::fs::remove_file(c) {
            Ok(()) => e,
            Err(r) => e.context(format!("removing {} again failed too: {r}", c.display())),
        },
        None => e,
    })?;
    Ok(conf)
}

fn write_manifest(plan: &InitPlan) -> Result<()> {
    atomic::create_new(&plan.path, plan.text.as_bytes(), 0o644).map_err(|e| {
        if e.kind() == ErrorKind::AlreadyExists {
            already_there(&plan.path).into()
        } else {
            anyhow::Error::new(e).context(format!("writing {}", plan.path.display()))
        }
    })
}

fn already_there(path: &Path) -> Error {
    Error::Usage(format!(
        "{} already exists; relctl init does not overwrite it (edit it, or move it away and run relctl init again)",
        path.display()
    ))
}

/// Everything the template shows, worked out from the project.
#[derive(Debug, Serialize)]
struct View {
    dir: String,
    app: String,
    #[serde(skip)]
    found: Vec<String>,
    #[serde(skip)]
    notes: Vec<String>,
    /// `found` and `notes` as comment lines.
    found_lines: Vec<String>,
    note_lines: Vec<String>,
    django: bool,
    /// A Flask, FastAPI or Starlette app (no Django).
    python_app: Option<PythonAppView>,
    /// Comment lines on the settings module chosen (a settings package's other modules).
    settings_lines: Vec<String>,
    /// Why [health] checks what it checks.
    health_lines: Vec<String>,
    /// `manage.py`, for a comment.
    manage_py: String,
    workdir: Option<String>,
    exec: String,
    /// gunicorn's settings file, relative to the project (`<workdir>/gunicorn.conf.py`).
    gunicorn_conf: String,
    /// init writes it (the project has none); else the project's own is used as it is.
    write_gunicorn_conf: bool,
    asgi: bool,
    entry_found: bool,
    settings: Option<SettingsView>,
    deps: Option<DepsView>,
    /// The interpreter, as a shell word.
    python: String,
    health: HealthUrl,
    urls_file: Option<String>,
    exclude: Vec<String>,
    migrate: String,
    /// `[schema]`: Django's migrations as the release's code knows them, and how to unapply them.
    showmigrations: String,
    unapply: String,
    collectstatic: String,
    /// Where collectstatic puts the static files in the release (`[static] dir`).
    static_dir: String,
}

#[derive(Debug, Serialize)]
struct PythonAppView {
    framework: &'static str,
    /// The release hooks' and the service's Flask instance folder, linked to the state directory.
    instance_dir: Option<String>,
    /// The build hook that links it.
    link_instance: Option<String>,
    /// A release hook that initializes the database once per build (Flask's `init-db`).
    init_db: Option<String>,
}

#[derive(Debug, Serialize)]
struct SettingsView {
    /// The module the rendered settings star-import.
    module: String,
    /// Where the rendered settings go in the release (a template).
    path: String,
    /// Their module name (a template).
    environment: String,
}

#[derive(Debug, Serialize)]
struct DepsView {
    key: Vec<String>,
    /// The key files, for a comment.
    key_list: String,
    python_version: String,
    build: Vec<String>,
    explain: Vec<String>,
}

/// What was found and what the user should look at, collected while the view is worked out.
#[derive(Debug, Default)]
struct Log {
    found: Vec<String>,
    notes: Vec<String>,
}

impl View {
    fn new(p: &Project) -> View {
        let mut log = Log::default();
        log.found.push(format!(
            "app name {} (from {}); to change it: relctl init --app NAME, or edit app = before the first build",
            p.app, p.app_from
        ));
        let python = interpreter(&mut log);
        let django = p.django.as_ref();
        let python_app = p.python_app.as_ref();
        match (django, python_app) {
            (Some(d), _) => {
                log.found.push(format!("a Django project: {}", d.manage_py));
                if !d.other_manage_py.is_empty() {
                    log.notes.push(format!(
                        "{} is used; relctl init also found {}. Change [service] workdir, [settings] and the hooks if another is the one to deploy.",
                        d.manage_py,
                        d.other_manage_py.join(", ")
                    ));
                }
            }
            (None, Some(a)) => log.found.push(format!(
                "a {} app: {}:{} ({}, {})",
                a.framework.name(),
                a.module,
                a.callable,
                a.found_in,
                match a.framework.interface() {
                    Interface::Wsgi => "WSGI",
                    Interface::Asgi => "ASGI",
                }
            )),
            (None, None) => log.found.push(format!(
                "no Django, Flask, FastAPI or Starlette project (no manage.py in it or up to {} directories below, no module that makes an app)",
                MANAGE_PY_DEPTH - 1
            )),
        }
        let workdir = django.map(|d| d.workdir.clone()).or_else(|| python_app.map(|a| a.workdir.clone()));
        let settings = django.and_then(|d| settings_view(d, &mut log));
        let settings_lines = django
            .and_then(|d| d.settings.as_ref())
            .map(|s| settings_comment(s).iter().flat_map(|l| comment_lines(l, "# ", "# ")).collect())
            .unwrap_or_default();
        let entry = django.and_then(|d| d.entry.as_ref());
        let asgi = entry.is_some_and(|e| e.interface == Interface::Asgi)
            || python_app.is_some_and(|a| a.framework.interface() == Interface::Asgi);
        let gunicorn_conf = shared::join(workdir.as_deref().unwrap_or("."), GUNICORN_CONF_NAME);
        let python_project = django.is_some() || python_app.is_some();
        let write_gunicorn_conf = python_project && gunicorn_conf_view(&p.dir.join(&gunicorn_conf), &mut log);
        let exec = match python_app {
            Some(a) => app_exec(a),
            None => exec(django.is_some(), entry, settings.as_ref(), &mut log),
        };

        let mut needed = vec!["gunicorn"];
        if asgi && python_app.is_none() {
            needed.push("uvicorn-worker");
        }
        let deps = p.deps.as_ref().map(|d| {
            let missing: Vec<&str> = needed.iter().copied().filter(|n| !d.lists(n)).collect();
            deps_view(d, &python, &missing, &mut log)
        });
        if deps.is_none() {
            let what = match (django, python_app) {
                (Some(_), _) => "Django and gunicorn".to_string(),
                (None, Some(a)) => format!("{} and gunicorn", a.framework.name()),
                (None, None) => "your packages and gunicorn".to_string(),
            };
            log.notes.push(format!(
                "no requirements.txt or pyproject.toml found: [deps.venv] is left commented out, so there is no .venv for [service] exec yet. Add a requirements.txt with {what}, then uncomment it."
            ));
        }

        let found_health = django.and_then(|d| d.health.clone());
        let urls_file = django.and_then(|d| d.urls_file.clone());
        match (&found_health, &urls_file) {
            (Some(h), _) => log.found.push(format!("health URL {} ({})", h.path, h.found_in)),
            (None, Some(u)) => log.found.push(format!("no health URL in {u}")),
            (None, None) => {}
        }
        let (health, health_lines) = health_view(found_health, urls_file.as_deref());

        let mut exclude: Vec<String> = ["__pycache__/", "*.pyc", ".venv/", "db.sqlite3"].map(String::from).to_vec();
        exclude.extend(p.local_venvs.iter().filter(|v| *v != ".venv").map(|v| format!("/{v}/")));

        let static_dir = shared::join(workdir.as_deref().unwrap_or("."), "static");
        if django.is_some() {
            exclude.push(format!("/{static_dir}/"));
        }
        let app_view = python_app.map(|a| python_app_view(a, &p.dir, &mut exclude, &mut log));
        let manage_py = django.map_or("manage.py", |d| d.manage_py.as_str());
        let manage = shell_word(manage_py);
        log.found.push(format!(
            "one build, {FIRST_BUILD}, at the route /dev (nginx-snippet routes /dev/ to it); change or add builds under [builds]"
        ));
        View {
            dir: comment_text(&p.dir.display().to_string()),
            app: p.app.clone(),
            found_lines: log.found.iter().flat_map(|l| comment_lines(l, "#   ", "#     ")).collect(),
            note_lines: log.notes.iter().flat_map(|l| comment_lines(l, "# NOTE: ", "#   ")).collect(),
            found: log.found,
            notes: log.notes,
            django: django.is_some(),
            python_app: app_view,
            settings_lines,
            health_lines,
            manage_py: comment_text(manage_py),
            workdir,
            exec,
            gunicorn_conf,
            write_gunicorn_conf,
            asgi,
            entry_found: entry.is_some() || python_app.is_some(),
            settings,
            deps,
            python: shell_word(&python),
            health,
            urls_file: urls_file.map(|u| comment_text(&u)),
            exclude,
            migrate: format!(".venv/bin/python {manage} migrate --noinput"),
            showmigrations: format!(".venv/bin/python {manage} showmigrations --plan"),
            unapply: format!(".venv/bin/python {manage} migrate --noinput {{app}} {{to}}"),
            collectstatic: format!(".venv/bin/python {manage} collectstatic --noinput"),
            static_dir,
        }
    }
}

/// `[health]`: the health URL found, else the route's root, where any answer but a server error
/// passes; with the comment lines that say why.
fn health_view(found: Option<HealthUrl>, urls_file: Option<&str>) -> (HealthUrl, Vec<String>) {
    match found {
        Some(h) => {
            let why = format!(
                "After every start, relctl GETs this path through the build's socket, as nginx will (route in front, SCRIPT_NAME), until it answers 2xx or 3xx (for at most timeout_s seconds) before the release takes requests; else the release fails and the one before keeps serving. Found in {}.",
                h.found_in
            );
            (h, comment_lines(&why, "# ", "# "))
        }
        None => {
            let searched = urls_file
                .map(|u| format!(" relctl init found no health URL in {u} (it looks for health, healthz, ping, ...)."))
                .unwrap_or_default();
            let why = format!(
                "After every start, relctl GETs the build's root through its socket, as nginx will (route in front, SCRIPT_NAME), before the release takes requests: an error page (5xx) or no answer fails the release and the one before keeps serving. A 404 or a redirect to a login page passes (accept = \"not-5xx\"): the root is the app's to answer as it likes.{searched} A view that answers 200 without logging in makes a better check: route it (e.g. path(\"health\", lambda request: HttpResponse(\"ok\")) in Django's urls.py), set path to it and remove accept."
            );
            (HealthUrl { path: "/".into(), found_in: String::new() }, comment_lines(&why, "# ", "# "))
        }
    }
}

/// Comment lines on the settings module chosen: the package's other modules and its switch.
fn settings_comment(s: &SettingsModule) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(dev) = &s.dev_module {
        lines.push(format!(
            "Every build imports {} (a server's settings: DEBUG from vars.debug, collectstatic, nginx in front); {dev} is for `manage.py runserver` on a developer's machine. To run a build on it anyway: vars = {{ settings_module = \"{dev}\" }} on that build.",
            s.module
        ));
    }
    if let Some(var) = &s.switch {
        lines.push(format!(
            "The settings package's __init__.py chooses a module by ${var}; the rendered settings import {} directly. If __init__.py needs ${var} anyway, set it in [service] environment.",
            s.module
        ));
    }
    lines
}

/// `[service] exec` for a Flask, FastAPI or Starlette app: gunicorn's own ASGI worker for ASGI
/// apps, which takes the build's route as its root path (`$RELCTL_SCRIPT_NAME`).
fn app_exec(a: &PythonApp) -> String {
    let target = shell_word(&format!("{}:{}", a.module, a.callable));
    let worker = match a.framework.interface() {
        Interface::Wsgi => String::new(),
        Interface::Asgi => format!("{ASGI_WORKER} "),
    };
    format!(".venv/bin/python -m gunicorn --config {GUNICORN_CONF_NAME} --preload --workers 2 {worker}{target}")
}

/// A Flask app's instance folder, linked to the build's state directory; its database command.
fn python_app_view(a: &PythonApp, dir: &Path, exclude: &mut Vec<String>, log: &mut Log) -> PythonAppView {
    let instance_dir = a.instance_dir.clone();
    let link_instance = instance_dir.as_ref().map(|d| {
        exclude.push(format!("/{d}/"));
        log.found.push(format!(
            "Flask's instance folder {d}: linked to the build's state directory in each release (the release itself is read-only to the app), and your own {d}/ is not copied"
        ));
        format!("ln -sfn \"$RELCTL_STATE_DIR\" {}", shell_word(d))
    });
    let init_db = (a.framework == Framework::Flask && defines_command(dir, "init-db")).then(|| {
        let top = a.module.split('.').next().unwrap_or(&a.module);
        log.found.push(
            "a `flask init-db` command: run once per build by a release hook, before the first release takes requests (never again: it drops the tables)".to_string(),
        );
        format!(
            "test -e \"$RELCTL_STATE_DIR/.relctl-init-db-done\" || {{ .venv/bin/python -m flask --app {} init-db && touch \"$RELCTL_STATE_DIR/.relctl-init-db-done\"; }}",
            shell_word(top)
        )
    });
    PythonAppView { framework: a.framework.name(), instance_dir, link_instance, init_db }
}

/// Whether a Python file of the project (3 levels deep) defines the click command `name`.
fn defines_command(dir: &Path, name: &str) -> bool {
    let quoted = [format!("command(\"{name}\")"), format!("command('{name}')")];
    walkdir::WalkDir::new(dir)
        .max_depth(3)
        .into_iter()
        .filter_entry(|e| !e.file_name().to_string_lossy().starts_with('.') && e.file_name() != "node_modules")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "py"))
        .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| quoted.iter().any(|q| t.contains(q.as_str()))))
}

/// The interpreter the virtualenv is made with: the system's python3.
fn interpreter(log: &mut Log) -> String {
    if Path::new(SYSTEM_PYTHON).is_file() {
        return SYSTEM_PYTHON.to_string();
    }
    match which::which("python3") {
        Ok(found) => found.display().to_string(),
        Err(_) => {
            log.notes.push(format!("no python3 found on this host; the virtualenv is made with {SYSTEM_PYTHON}."));
            SYSTEM_PYTHON.to_string()
        }
    }
}

/// The per-build settings: rendered beside the settings module, which they star-import.
fn settings_view(d: &Django, log: &mut Log) -> Option<SettingsView> {
    let Some(s) = &d.settings else {
        log.notes.push(
            "no settings module found: uncomment and fill in [settings], or set DJANGO_SETTINGS_MODULE in [service] environment.".into(),
        );
        return None;
    };
    log.found.push(format!("settings {} ({})", s.module, s.found_in));
    let package = s.module.rsplit_once('.').map_or("", |(package, _)| package);
    let name = "deploy_{{ build }}".to_string();
    let dir = shared::join(&d.workdir, &package.replace('.', "/"));
    Some(SettingsView {
        module: s.module.clone(),
        path: format!("{}.py", shared::join(&dir, &name)),
        environment: if package.is_empty() { name } else { format!("{package}.{name}") },
    })
}

/// Whether init writes gunicorn.conf.py at `path`: when the project has none. A project's own is
/// used as it is (noted when it does not freeze the collector before forking).
fn gunicorn_conf_view(path: &Path, log: &mut Log) -> bool {
    if std::fs::symlink_metadata(path).is_err() {
        return true;
    }
    let shown = path.display();
    log.found.push(format!("gunicorn settings {shown} (yours, used as they are)"));
    if !std::fs::read_to_string(path).is_ok_and(|text| text.contains("gc.freeze")) {
        log.notes.push(format!(
            "{shown} does not call gc.freeze(): with it in a pre_fork hook, stopping an instance (every restart and deploy) costs a fraction of the CPU; see relctl's docs/benchmarks.md, \"What a restart costs\"."
        ));
    }
    false
}

/// `[service] exec`: gunicorn serving the WSGI application, or the ASGI one in uvicorn's worker.
fn exec(django: bool, entry: Option<&EntryPoint>, settings: Option<&SettingsView>, log: &mut Log) -> String {
    let (worker, target) = match entry {
        Some(e) => {
            let asgi = e.interface == Interface::Asgi;
            let kind = if asgi { "ASGI" } else { "WSGI" };
            log.found.push(format!("{kind} application {}:{} ({})", e.module, e.callable, e.found_in));
            (
                if asgi { "--worker-class uvicorn_worker.UvicornWorker " } else { "" },
                format!("{}:{}", e.module, e.callable),
            )
        }
        None => {
            // The package of the settings, where startproject puts wsgi.py.
            let guess = settings.and_then(|s| s.module.split_once('.')).map_or("myproject", |(top, _)| top);
            if django {
                log.notes.push(format!(
                    "no wsgi.py or asgi.py found: [service] exec names {guess}.wsgi:application; change it to your WSGI module."
                ));
            }
            ("", format!("{guess}.wsgi:application"))
        }
    };
    // A Django project's gunicorn.conf.py is init's or the project's own: named, so it is seen.
    let config = if django { format!("--config {GUNICORN_CONF_NAME} ") } else { String::new() };
    format!(".venv/bin/python -m gunicorn {config}--preload --workers 2 {worker}{target}")
}

/// The `[deps.venv]` that builds the virtualenv from the project's dependency list, installing
/// `missing` (gunicorn, the ASGI worker) too.
fn deps_view(d: &PythonDeps, python: &str, missing: &[&str], log: &mut Log) -> DepsView {
    let file = d.source.file();
    let venv_python = "\"$RELCTL_DEP_DIR/bin/python\"";
    let pip = format!("{venv_python} -m pip install --disable-pip-version-check -q");
    let extra: String = missing.iter().map(|m| format!(" {m}")).collect();
    let mut build = vec![format!("{} -m venv \"$RELCTL_DEP_DIR\"", shell_word(python))];
    let mut explain = String::new();
    match &d.source {
        DepsSource::Requirements { .. } => {
            log.found.push(format!("dependencies in {}", d.key.join(", ")));
            build.push(format!("{pip} -r {}{extra}", shell_word(file)));
        }
        DepsSource::PyProjectDependencies { .. } => {
            log.found.push(format!("dependencies in {file} ([project] dependencies)"));
            explain = format!(
                "It installs the [project] dependencies of {file}, not the project itself: the code runs from the release (the venv would hold a stale copy of it), and `pip install .` fails for a Django project with more than one app until its packaging is configured. tomllib needs Python 3.11 or later."
            );
            let listed = "\"$RELCTL_DEP_DIR/pyproject-dependencies.txt\"";
            let py_file = file.replace('\\', "\\\\").replace('"', "\\\"");
            build.push(format!(
                "{venv_python} -c 'import tomllib; print(\"\\n\".join(tomllib.load(open(\"{py_file}\", \"rb\"))[\"project\"].get(\"dependencies\", [])))' > {listed}"
            ));
            build.push(format!("{pip} -r {listed}{extra}"));
        }
        DepsSource::PyProjectBuild { .. } => {
            log.found.push(format!("dependencies by building the project of {file} (no [project] table)"));
            explain = format!(
                "It builds and installs the project of {file} with its dependencies, so the venv also holds a copy of your code as it was when the venv was built; the release's own code, in the workdir, comes first on sys.path."
            );
            let dir = match Path::new(file).parent().map(|p| p.display().to_string()) {
                Some(d) if !d.is_empty() => format!("./{d}"),
                _ => ".".to_string(),
            };
            build.push(format!("{pip} {}{extra}", shell_word(&dir)));
        }
    }
    for m in missing {
        log.notes.push(format!(
            "{m} is not listed in {file}: the virtualenv gets its newest release. Pin it in {file} and remove it from the pip command in [deps.venv]."
        ));
    }
    DepsView {
        key_list: comment_text(&d.key.join(", ")),
        key: d.key.clone(),
        python_version: format!("{} --version", shell_word(python)),
        build,
        explain: if explain.is_empty() { Vec::new() } else { comment_lines(&explain, "# ", "# ") },
    }
}

/// A word for `sh -c`, quoted when it needs to be.
fn shell_word(s: &str) -> String {
    shlex::try_quote(s).map(|q| q.into_owned()).unwrap_or_else(|_| s.replace('\0', ""))
}

/// Text for a `#` comment: on one line, without control characters.
fn comment_text(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// `text` as comment lines of at most 100 columns, the first starting with `first`, the others
/// with `rest`.
fn comment_lines(text: &str, first: &str, rest: &str) -> Vec<String> {
    let options = textwrap::Options::new(100).initial_indent(first).subsequent_indent(rest);
    textwrap::wrap(&comment_text(text), options).into_iter().map(|l| l.into_owned()).collect()
}

/// Renders the manifest; values go through the `toml` filter, which writes them as TOML values.
fn render(view: &View) -> Result<String> {
    let mut tera = tera::Tera::default();
    tera.autoescape_on(vec![]);
    tera.register_filter("toml", toml_filter);
    tera.add_raw_template("relctl.toml", TEMPLATE).context("the relctl init template")?;
    let ctx = tera::Context::from_serialize(view).context("the relctl init template's context")?;
    tera.render("relctl.toml", &ctx).map_err(|e| anyhow!("rendering the relctl init template: {e:?}"))
}

fn toml_filter(value: &tera::Value, _: &HashMap<String, tera::Value>) -> tera::Result<tera::Value> {
    let v = toml::Value::try_from(value).map_err(|e| tera::Error::msg(format!("not a TOML value: {e}")))?;
    Ok(tera::Value::String(v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, file: &str, text: &str) {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn the_example_gets_a_manifest_like_its_own() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/medctrl");
        let p = detect::detect(&example);
        let text = render(&View::new(&p)).unwrap();
        let m = manifest::parse(&text).unwrap();
        assert_eq!(m.app, "medctrl");
        assert_eq!(m.service.workdir.as_deref(), Some("API"));
        assert_eq!(
            m.service.exec,
            ".venv/bin/python -m gunicorn --config gunicorn.conf.py --preload --workers 2 api_settings.wsgi:application"
        );
        // The example has its own gunicorn.conf.py, which freezes the collector: used, no note.
        assert!(
            text.contains("# --config: API/gunicorn.conf.py, your own gunicorn settings, used as they are."),
            "{text}"
        );
        assert!(!text.contains("gc.freeze()"), "{text}");
        let s = m.settings.unwrap();
        assert_eq!(s.template, "builtin:django");
        assert_eq!(s.path, "API/api_settings/settings/deploy_{{ build }}.py");
        assert_eq!(m.service.environment["DJANGO_SETTINGS_MODULE"], "api_settings.settings.deploy_{{ build }}");
        assert_eq!(m.vars["settings_module"].as_str(), Some("api_settings.settings.common"));
        assert_eq!(m.health.unwrap().path, "/health");
        assert_eq!(m.hooks.release, [".venv/bin/python API/manage.py migrate --noinput"]);
        let venv = &m.deps["venv"];
        assert_eq!(venv.key, ["requirements.txt"]);
        assert_eq!(
            venv.build[1],
            "\"$RELCTL_DEP_DIR/bin/python\" -m pip install --disable-pip-version-check -q -r requirements.txt"
        );
        assert_eq!(m.builds.keys().collect::<Vec<_>>(), ["development"]);
        assert_eq!(m.builds["development"].route.as_ref().map(|r| r.as_str()), Some("/dev"));
        // Every section is explained, above its header or right below it.
        let lines: Vec<&str> = text.lines().collect();
        for section in
            ["[settings]", "[service]", "[deps.venv]", "[hooks]", "[health]", "[vars]", "[builds.development]"]
        {
            let at = lines.iter().position(|l| *l == section).unwrap_or_else(|| panic!("no {section}:\n{text}"));
            assert!(
                lines[at - 1].starts_with("# ") || lines[at + 1].starts_with("# "),
                "{section} unexplained:\n{text}"
            );
        }
    }

    #[test]
    fn the_rendered_settings_path_and_module_are_the_builds() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/medctrl");
        let tmp = tempfile::tempdir().unwrap();
        let out = Command::new("cp").arg("-a").arg(&example).arg(tmp.path().join("medctrl")).status().unwrap();
        assert!(out.success());
        let dir = tmp.path().join("medctrl");
        std::fs::remove_file(dir.join("relctl.toml")).unwrap();
        let plan = plan(&dir, None).unwrap();
        write_plan(&plan);
        let text = plan.text.replace("[builds.development]", "[builds.dev-2]");
        std::fs::write(&plan.path, text).unwrap();
        let loaded = manifest::load(&plan.path).unwrap();
        let app = crate::plan::app(&loaded).unwrap();
        let now = "2026-11-23T13:05:01Z".parse().unwrap();
        let b = crate::plan::build::build(
            &app,
            &loaded,
            &"dev-2".parse().unwrap(),
            now,
            crate::plan::deps::KeyCommands::Run,
        )
        .unwrap();
        assert_eq!(b.settings.as_ref().unwrap().path, "API/api_settings/settings/deploy_dev-2.py");
        assert_eq!(b.environment["DJANGO_SETTINGS_MODULE"], "api_settings.settings.deploy_dev-2");
        assert!(b.settings.unwrap().contents.contains("from api_settings.settings.common import *"));
    }

    fn write_plan(plan: &InitPlan) {
        super::write(plan).unwrap();
    }

    use std::process::Command;

    #[test]
    fn an_existing_manifest_is_refused_before_anything_else() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "relctl.toml", "app = \"mine\"\n");
        let err = plan(tmp.path(), None).unwrap_err();
        assert!(crate::error::is_usage(&err));
        let path = tmp.path().join("relctl.toml");
        assert_eq!(
            err.to_string(),
            format!("{} already exists; relctl init does not overwrite it (edit it, or move it away and run relctl init again)", path.display())
        );
        // Written meanwhile: still refused, and left alone.
        let tmp = tempfile::tempdir().unwrap();
        let p = plan(tmp.path(), None).unwrap();
        write(tmp.path(), "relctl.toml", "app = \"theirs\"\n");
        assert!(crate::error::is_usage(&super::write(&p).unwrap_err()));
        assert_eq!(std::fs::read_to_string(&p.path).unwrap(), "app = \"theirs\"\n");
    }

    #[test]
    fn no_project_gets_a_generic_manifest_that_loads() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("Empty Dir");
        std::fs::create_dir(&dir).unwrap();
        let p = plan(&dir, None).unwrap();
        let m = manifest::parse(&p.text).unwrap();
        assert_eq!(m.app, "empty-dir");
        assert!(m.settings.is_none() && m.deps.is_empty() && m.hooks.release.is_empty());
        let h = m.health.unwrap();
        assert_eq!((h.path.as_str(), h.accept), ("/", crate::host::health::Accept::NoServerError));
        assert_eq!(p.found[0], "app name empty-dir (from the directory's name, Empty Dir); to change it: relctl init --app NAME, or edit app = before the first build");
        assert!(p.found[1].starts_with("no Django, Flask, FastAPI or Starlette project"), "{:?}", p.found);
        assert!(p.text.contains("This is a generic starter"), "{}", p.text);
        assert!(p.text.contains("# [deps.venv]") && p.text.contains("\n[health]\n"), "{}", p.text);
    }

    #[test]
    fn a_startproject_tree_without_health_gets_gunicorn_installed_and_health_explained() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mysite");
        write(&dir, "manage.py", "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')\n");
        write(&dir, "mysite/__init__.py", "");
        write(
            &dir,
            "mysite/settings.py",
            "ROOT_URLCONF = 'mysite.urls'\nWSGI_APPLICATION = 'mysite.wsgi.application'\n",
        );
        write(&dir, "mysite/urls.py", "urlpatterns = [\n    path('admin/', admin.site.urls),\n]\n");
        write(&dir, "mysite/wsgi.py", "application = get_wsgi_application()\n");
        write(&dir, "requirements.txt", "Django==5.2\n");
        write(&dir, "env/pyvenv.cfg", "home = /usr/bin\n");
        let p = plan(&dir, None).unwrap();
        let m = manifest::parse(&p.text).unwrap();
        assert_eq!(m.service.workdir.as_deref(), Some("."));
        assert_eq!(m.settings.unwrap().path, "mysite/deploy_{{ build }}.py");
        let h = m.health.unwrap();
        assert_eq!((h.path.as_str(), h.accept), ("/", crate::host::health::Accept::NoServerError));
        assert!(
            p.text.contains("# After every start, relctl GETs the build's root through its socket, as nginx will"),
            "{}",
            p.text
        );
        assert!(p.text.contains("\n[health]\npath = \"/\"\naccept = \"not-5xx\"\ntimeout_s = 30\n"), "{}", p.text);
        assert!(p.found.iter().any(|f| f == "no health URL in mysite/urls.py"), "{:?}", p.found);
        assert_eq!(m.hooks.release, [".venv/bin/python manage.py migrate --noinput"]);
        assert!(m.deps["venv"].build[1].ends_with("-r requirements.txt gunicorn"), "{:?}", m.deps["venv"].build);
        assert!(p.notes.iter().any(|n| n.starts_with("gunicorn is not listed in requirements.txt")), "{:?}", p.notes);
        assert!(p.text.contains("# NOTE: gunicorn is not listed"), "{}", p.text);
        assert!(m.exclude.iter().any(|e| e == "/env/"), "the local venv is not copied: {:?}", m.exclude);
        assert!(m.exclude.iter().any(|e| e == "/static/"), "{:?}", m.exclude);
        assert_eq!(m.hooks.build, [".venv/bin/python manage.py collectstatic --noinput"]);
        assert_eq!(m.static_files.map(|s| s.dir).as_deref(), Some("static"));
    }

    #[test]
    fn a_django_project_without_gunicorn_settings_gets_them_and_they_freeze_the_collector() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("shop");
        write(&dir, "src/manage.py", "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'shop.settings')\n");
        write(&dir, "src/shop/settings.py", "WSGI_APPLICATION = 'shop.wsgi.application'\n");
        write(&dir, "src/shop/wsgi.py", "application = get_wsgi_application()\n");
        let p = plan(&dir, None).unwrap();
        let conf = dir.join("src/gunicorn.conf.py");
        assert_eq!(p.gunicorn_conf.as_deref(), Some(conf.as_path()));
        let m = manifest::parse(&p.text).unwrap();
        assert_eq!(m.service.workdir.as_deref(), Some("src"));
        assert!(
            m.service.exec.starts_with(".venv/bin/python -m gunicorn --config gunicorn.conf.py --preload "),
            "{}",
            m.service.exec
        );
        assert!(
            p.text.contains("# --config: src/gunicorn.conf.py, written by relctl init beside this file"),
            "{}",
            p.text
        );
        assert!(!p.notes.iter().any(|n| n.contains("gc.freeze")), "{:?}", p.notes);

        // The manifest cannot be written (one appeared meanwhile): neither is the gunicorn.conf.py.
        write(&dir, "relctl.toml", "app = \"theirs\"\n");
        assert!(crate::error::is_usage(&super::write(&p).unwrap_err()));
        assert!(!conf.exists(), "gunicorn.conf.py removed again");
        assert_eq!(std::fs::read_dir(dir.join("src")).unwrap().count(), 2, "no temp files left behind");
        std::fs::remove_file(dir.join("relctl.toml")).unwrap();

        assert_eq!(super::write(&p).unwrap(), Some(conf.as_path()));
        assert!(dir.join("relctl.toml").exists());
        let text = std::fs::read_to_string(&conf).unwrap();
        assert!(text.contains("def pre_fork(server, worker):\n    gc.freeze()\n"), "{text}");
        assert_eq!(std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777, 0o644);

        // A project's own settings are used as they are, and never written over.
        std::fs::remove_file(dir.join("relctl.toml")).unwrap();
        std::fs::write(&conf, "workers = 4\n").unwrap();
        let p = plan(&dir, None).unwrap();
        assert_eq!(p.gunicorn_conf, None);
        assert!(p
            .found
            .iter()
            .any(|f| f == &format!("gunicorn settings {} (yours, used as they are)", conf.display())));
        let note = p.notes.iter().find(|n| n.contains("gc.freeze")).expect("a note on gc.freeze");
        assert!(note.starts_with(&format!("{} does not call gc.freeze(): ", conf.display())), "{note}");
        assert_eq!(super::write(&p).unwrap(), None);
        assert!(dir.join("relctl.toml").exists());
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), "workers = 4\n");
    }

    #[test]
    fn a_bare_manage_py_gets_a_manifest_that_loads_and_says_what_is_missing() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "backend/manage.py", "");
        write(tmp.path(), "backend/core/__init__.py", "");
        let p = plan(tmp.path(), None).unwrap();
        let m = manifest::parse(&p.text).unwrap();
        assert_eq!(m.service.workdir.as_deref(), Some("backend"));
        assert!(m.settings.is_none() && m.deps.is_empty());
        assert_eq!(m.health.unwrap().path, "/");
        assert_eq!(m.hooks.release, [".venv/bin/python backend/manage.py migrate --noinput"]);
        let notes = p.notes.join("\n");
        for missing in
            ["no settings module found", "no wsgi.py or asgi.py found", "no requirements.txt or pyproject.toml"]
        {
            assert!(notes.contains(missing), "{notes}");
        }
        assert!(
            p.text.contains("# [settings]: relctl init found no settings module beside backend/manage.py."),
            "{}",
            p.text
        );
        assert!(p.text.contains("# path = \"backend/<your package>/deploy_{{ build }}.py\""), "{}", p.text);
    }

    #[test]
    fn pyproject_dependencies_are_installed_without_building_the_project() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("shop");
        write(&dir, "backend/manage.py", "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'shop.settings')\n");
        write(&dir, "backend/shop/__init__.py", "");
        write(&dir, "backend/shop/settings.py", "");
        write(&dir, "backend/shop/asgi.py", "application = get_asgi_application()\n");
        write(
            &dir,
            "pyproject.toml",
            "[project]\nname = \"shop\"\nversion = \"1\"\ndependencies = [\"Django\", \"gunicorn\"]\n",
        );
        let p = plan(&dir, None).unwrap();
        let m = manifest::parse(&p.text).unwrap();
        assert_eq!(
            m.service.exec,
            ".venv/bin/python -m gunicorn --config gunicorn.conf.py --preload --workers 2 --worker-class uvicorn_worker.UvicornWorker shop.asgi:application"
        );
        let venv = &m.deps["venv"];
        assert_eq!(venv.key, ["pyproject.toml"]);
        assert_eq!(
            venv.build[1..],
            [
                "\"$RELCTL_DEP_DIR/bin/python\" -c 'import tomllib; print(\"\\n\".join(tomllib.load(open(\"pyproject.toml\", \"rb\"))[\"project\"].get(\"dependencies\", [])))' > \"$RELCTL_DEP_DIR/pyproject-dependencies.txt\"",
                "\"$RELCTL_DEP_DIR/bin/python\" -m pip install --disable-pip-version-check -q -r \"$RELCTL_DEP_DIR/pyproject-dependencies.txt\" uvicorn-worker",
            ]
        );
        assert_eq!(m.hooks.release, [".venv/bin/python backend/manage.py migrate --noinput"]);
    }
}
