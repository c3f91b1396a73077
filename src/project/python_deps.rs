//! Where a project's Python dependencies come from, a requirements file (with the files it
//! includes) or a pyproject.toml, and the packages it lists.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;

use crate::project::shared::join;

/// Where a Python project's dependency list usually is, relative to the project or to the
/// directory of `manage.py`, in order of preference.
const REQUIREMENTS: &[&str] =
    &["requirements.txt", "requirements/production.txt", "requirements/prod.txt", "requirements/base.txt"];

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

/// The dependency file: a requirements file in the project, then beside manage.py; else a
/// pyproject.toml (project, then beside manage.py) that lists dependencies or can be built.
pub(super) fn find_deps(dir: &Path, workdir: Option<&str>) -> Option<PythonDeps> {
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
