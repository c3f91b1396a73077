//! What `relctl init` finds in a project directory: [`detect`] gathers a Django project (its
//! `manage.py`, settings module, WSGI or ASGI module and a health URL, from
//! [`django`](crate::project::django)), else a Flask, FastAPI or Starlette app (from
//! [`python_app`](crate::project::python_app)), the file its Python dependencies come from (from
//! [`python_deps`](crate::project::python_deps)) and local virtualenvs to leave out of releases,
//! and names the app. Only reads files; every path it reports is relative to the project directory.
//!
//! This file is the top: it calls the finders, which import only from
//! [`shared`](crate::project::shared), never from here or from each other.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::project::django::{find_django, Django};
use crate::project::python_app::{find_python_app, PythonApp};
use crate::project::python_deps::{find_deps, PythonDeps};
use crate::project::shared::is_venv;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::python_app::Framework;
    use crate::project::python_deps::DepsSource;
    use crate::project::shared::Interface;

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
