//! A Flask, FastAPI or Starlette app in a project without Django: the module that makes it, its
//! factory when it has one, and the directory the module imports from.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::project::shared::{is_dotted, is_venv, join, relative, Interface, SKIPPED_DIRS};

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

/// How deep below the project a Flask, FastAPI or Starlette app is looked for (`app.py`,
/// `flaskr/__init__.py`, `src/shop/main.py`).
const APP_DEPTH: usize = 3;

/// A Flask, FastAPI or Starlette application in the project: the first module, shallowest first,
/// that makes one (`app = Flask(__name__)`, `app = FastAPI()`), with its factory when the module
/// defines one (`def create_app(`). Modules are named from the project or, in a `src/` layout,
/// from `src/`.
pub(super) fn find_python_app(dir: &Path) -> Option<PythonApp> {
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
