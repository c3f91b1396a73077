//! What more than one of `detect`'s finders needs, kept in this lowest file so that no finder
//! imports another: the directories never searched and how a virtualenv is recognized, paths
//! relative to the project, dotted Python names, and the interface (WSGI or ASGI) gunicorn serves
//! an app by.

use std::path::Path;

use serde::Serialize;

/// Directories never searched: dependencies, caches and other tools' trees.
pub(super) const SKIPPED_DIRS: &[&str] = &["node_modules", "__pycache__", "site-packages"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Interface {
    Wsgi,
    Asgi,
}

/// `path` relative to `base`, with `/` separators; `.` for `base` itself.
pub(super) fn relative(base: &Path, path: &Path) -> String {
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

pub(super) fn is_venv(dir: &Path) -> bool {
    dir.join("pyvenv.cfg").is_file()
}

/// `a.b_c.d`: Python identifiers joined by dots.
pub(super) fn is_dotted(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|seg| {
            seg.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}
