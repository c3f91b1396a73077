//! The bytecode a release carries: the service's own Python interpreter compiles the release's
//! modules (and the dependency entry that holds the interpreter, when it is built) before the
//! release is sealed. A sealed release is read-only to the service and its sources come without
//! `__pycache__` (manifests exclude it), so without this every start of every instance compiled
//! each module of the app again, in memory, and threw the result away.

use serde::Serialize;

use crate::release::deps::DepPlan;

/// Who compiles a release's bytecode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bytecode {
    /// The service's interpreter as `[service] exec` names it: a path in the release
    /// (`.venv/bin/python`), an absolute path, or a name on `PATH` (`python3`).
    pub python: String,
    /// The dependency whose entry holds the interpreter, compiled when it is built.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dep: Option<DepPython>,
}

/// An interpreter that lives in a dependency's entry (a virtualenv).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DepPython {
    /// `[deps.<name>]`.
    pub name: String,
    /// The interpreter inside the entry (`bin/python`).
    pub python: String,
}

/// The interpreter `exec` runs, if it runs Python: its program when that is an interpreter
/// (`.venv/bin/python -m gunicorn …`, `python3 app.py`), else the `python` beside a program in a
/// `bin/` directory (`.venv/bin/gunicorn …`: a virtualenv's script). None for anything else
/// (`./run.sh`, `node server.js`, `gunicorn app:app` from `PATH`): nothing is compiled.
pub fn plan(exec: &str, deps: &[DepPlan]) -> Option<Bytecode> {
    let program = exec.split_whitespace().next()?;
    let python = if is_interpreter(program.rsplit('/').next().unwrap_or(program)) {
        program.to_string()
    } else {
        let (dir, _) = program.rsplit_once('/')?;
        if dir.rsplit('/').next() != Some("bin") {
            return None;
        }
        format!("{dir}/python")
    };
    let relative = python.trim_start_matches("./");
    let dep = (!python.starts_with('/'))
        .then(|| {
            deps.iter().find_map(|d| {
                let inside = relative.strip_prefix(d.path.trim_end_matches('/'))?.strip_prefix('/')?;
                Some(DepPython { name: d.name.clone(), python: inside.to_string() })
            })
        })
        .flatten();
    Some(Bytecode { python, dep })
}

/// `python`, `python3`, `python3.12`.
fn is_interpreter(name: &str) -> bool {
    let Some(version) = name.strip_prefix("python") else { return false };
    version.is_empty() || version.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The arguments of the interpreter that compile everything below `dir`: quiet but for errors,
/// one process (a build beside an instance that serves takes one CPU, not all), and never into
/// a directory that is a symlink (`compileall` does not follow them: a release's dependency links
/// are compiled with their entry, once).
pub fn compileall_args(dir: &std::path::Path) -> Vec<std::ffi::OsString> {
    vec!["-m".into(), "compileall".into(), "-q".into(), dir.as_os_str().to_owned()]
}

/// The files `compileall` says it could not compile (`*** Error compiling '<path>'...`).
pub fn failed_files(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("*** Error compiling '"))
        .filter_map(|l| l.split_once('\'').map(|(path, _)| path.to_string()))
        .collect()
}

/// Files for a message: the first five, then how many more.
pub fn some_files(files: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = files.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if files.len() > SHOWN {
        text.push_str(&format!(" and {} more", files.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn venv() -> Vec<DepPlan> {
        vec![DepPlan {
            name: "venv".into(),
            path: ".venv".into(),
            entry: "/opt/a/app/.deps/venv-1".into(),
            build: vec![],
            keyed_by: vec![],
            key_commands_not_run: vec![],
        }]
    }

    fn python(exec: &str) -> Option<(String, Option<(String, String)>)> {
        plan(exec, &venv()).map(|b| (b.python, b.dep.map(|d| (d.name, d.python))))
    }

    #[test]
    fn the_services_interpreter_compiles_and_its_venv_when_built() {
        let dep = || Some(("venv".to_string(), "bin/python".to_string()));
        assert_eq!(python(".venv/bin/python -m gunicorn --preload app.wsgi"), Some((".venv/bin/python".into(), dep())));
        assert_eq!(
            python("./.venv/bin/python3 -m gunicorn"),
            Some(("./.venv/bin/python3".into(), Some(("venv".into(), "bin/python3".into()))))
        );
        // A virtualenv's script: the python beside it.
        assert_eq!(python(".venv/bin/gunicorn app:app"), Some((".venv/bin/python".into(), dep())));
        assert_eq!(python("/srv/env/bin/uvicorn app:app"), Some(("/srv/env/bin/python".into(), None)));
        assert_eq!(python("python3.12 app.py"), Some(("python3.12".into(), None)));
        assert_eq!(python("/usr/bin/python3 -m gunicorn app"), Some(("/usr/bin/python3".into(), None)));
        // A path that only starts like the dependency's is not in it.
        assert_eq!(python(".venvx/bin/python app.py"), Some((".venvx/bin/python".into(), None)));
    }

    #[test]
    fn what_does_not_run_python_compiles_nothing() {
        for exec in
            ["./run.sh", "node server.js", "gunicorn app:app", "bin2/gunicorn x", "pythonista x", "python3.x y", ""]
        {
            assert_eq!(python(exec), None, "{exec}");
        }
    }

    #[test]
    fn compile_errors_name_their_files() {
        let out = "*** Error compiling '/r/a/broken.py'...\n  File \"/r/a/broken.py\", line 1\n    def (\n        ^\nSyntaxError: invalid syntax\n\n*** Error compiling '/r/b.py'...\n";
        assert_eq!(failed_files(out), vec!["/r/a/broken.py", "/r/b.py"]);
        assert!(failed_files("").is_empty());
        let many: Vec<String> = (1..=7).map(|i| format!("f{i}.py")).collect();
        assert_eq!(some_files(&many), "f1.py, f2.py, f3.py, f4.py, f5.py and 2 more");
        assert_eq!(some_files(&many[..1]), "f1.py");
    }
}
