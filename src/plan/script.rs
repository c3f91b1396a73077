//! The scripts a release carries to start what runs from it (`.relctl/start`, a process's, a
//! timer's): enter the working directory, `exec` the command.

use std::path::Path;

/// The release's start script, `.relctl/start`, which the unit runs through `current`: it enters
/// the working directory and `exec`s the service (so systemd's main PID is the service itself).
/// A relative program path resolves against the release.
pub fn start_script(release_dir: &Path, workdir: Option<&str>, exec: &str, what: &str) -> String {
    let exec = exec.trim();
    let (program, args) = exec.split_once(char::is_whitespace).unwrap_or((exec, ""));
    let program = resolve_program(release_dir, program);
    let dir = match workdir {
        Some(w) => release_dir.join(w.trim_end_matches('/')),
        None => release_dir.to_path_buf(),
    };
    let args = args.trim();
    format!(
        "#!/bin/sh\n# Written by relctl build: how {what} starts. The unit runs it through `current`.\ncd '{}' || exit 1\nexec {program}{}{args}\n",
        dir.display(),
        if args.is_empty() { "" } else { " " }
    )
}

/// A program as the service runs it from `release_dir`: a path with a `/` that is not absolute
/// resolves against the release (`.venv/bin/python`, `./run.sh`); a bare name is left to `PATH`.
pub fn resolve_program(release_dir: &Path, program: &str) -> String {
    if program.contains('/') && !program.starts_with('/') {
        release_dir.join(program.trim_start_matches("./")).display().to_string()
    } else {
        program.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_script_enters_workdir_and_execs_the_service_from_the_release() {
        let rel = Path::new("/opt/a/app/dev/releases/r1");
        let s = start_script(rel, Some("API/"), ".venv/bin/python -m gunicorn  app:app", "release r1 of a dev");
        assert_eq!(s, "#!/bin/sh\n# Written by relctl build: how release r1 of a dev starts. The unit runs it through `current`.\ncd '/opt/a/app/dev/releases/r1/API' || exit 1\nexec /opt/a/app/dev/releases/r1/.venv/bin/python -m gunicorn  app:app\n");
        assert!(start_script(rel, None, "./run.sh", "x")
            .ends_with("cd '/opt/a/app/dev/releases/r1' || exit 1\nexec /opt/a/app/dev/releases/r1/run.sh\n"));
        assert!(start_script(rel, None, "gunicorn app", "x").ends_with("exec gunicorn app\n"));
    }
}
