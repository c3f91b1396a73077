//! gunicorn with uvicorn's worker (`-k uvicorn_worker.UvicornWorker`, the worker FastAPI's docs
//! deploy with) under a route. gunicorn's own workers take the route from the `SCRIPT_NAME`
//! header nginx sends; uvicorn's worker ignores it and has no `--root-path` under gunicorn, so
//! the app would miss every route but `/`. For such a service, a release carries a gunicorn
//! configuration (`gunicorn-relctl.conf.py`) whose `post_worker_init` gives the app the route as
//! its ASGI `root_path` (the path stays the full one nginx sends, as uvicorn ≥ 0.26 and Starlette
//! expect), loaded through `GUNICORN_CMD_ARGS`; it loads the project's `gunicorn.conf.py` first.

use std::path::Path;

/// The configuration's path in the release.
pub const CONF: &str = ".relctl/gunicorn-relctl.conf.py";

/// Its text.
pub const CONF_TEXT: &str = include_str!("gunicorn-relctl.conf.py");

/// What a service needs for uvicorn's worker under a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uvicorn {
    /// Not uvicorn's worker under gunicorn: nothing.
    No,
    /// The configuration goes in the release and `GUNICORN_CMD_ARGS` loads it.
    Hook,
    /// uvicorn's worker, but `exec` names a configuration of its own (`-c`, `--config`), which
    /// gunicorn loads instead: the note for the user.
    OwnConfig(String),
}

/// Whether `exec` runs gunicorn with uvicorn's worker (on its command line, or in the project's
/// `gunicorn.conf.py`, `project_conf`).
pub fn uvicorn(exec: &str, project_conf: Option<&str>) -> Uvicorn {
    let words: Vec<&str> = exec.split_whitespace().collect();
    let gunicorn = words.iter().any(|w| w.rsplit('/').next().is_some_and(|p| p == "gunicorn"));
    // The worker classes' modules: uvicorn-worker's, and uvicorn's own older one.
    let uvicorns = |text: &str| text.contains("uvicorn_worker.") || text.contains("uvicorn.workers.");
    let worker = uvicorns(exec) || project_conf.is_some_and(uvicorns);
    if !gunicorn || !worker {
        return Uvicorn::No;
    }
    let own = words.iter().any(|w| {
        *w == "-c"
            || *w == "--config"
            || w.starts_with("--config=")
            || (w.starts_with("-c") && w.len() > 2 && !w.starts_with("--"))
    });
    if own {
        return Uvicorn::OwnConfig(
            "[service] exec runs gunicorn with uvicorn's worker and a --config of its own, which gunicorn loads instead of relctl's: under a route, the app gets no root_path from relctl. Add relctl's post_worker_init to your configuration (see docs/nginx.md, \"ASGI apps\"), or drop --config and keep the settings in gunicorn.conf.py, which relctl's configuration loads".to_string(),
        );
    }
    Uvicorn::Hook
}

/// `GUNICORN_CMD_ARGS` that loads the release's configuration, before what the manifest sets.
pub fn cmd_args(release_dir: &Path, own: Option<&str>) -> String {
    let ours = format!("--config {}", release_dir.join(CONF).display());
    match own {
        Some(o) if !o.trim().is_empty() => format!("{ours} {o}"),
        _ => ours,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uvicorns_worker_under_gunicorn_is_found_on_the_command_line_or_in_the_projects_conf() {
        let hook = [
            ".venv/bin/gunicorn -k uvicorn_worker.UvicornWorker app:app",
            ".venv/bin/python -m gunicorn --worker-class uvicorn.workers.UvicornWorker main:app",
            ".venv/bin/python -m gunicorn --worker-class=uvicorn_worker.UvicornH11Worker main:app",
        ];
        for exec in hook {
            assert_eq!(uvicorn(exec, None), Uvicorn::Hook, "{exec}");
        }
        assert_eq!(
            uvicorn(".venv/bin/gunicorn main:app", Some("worker_class = \"uvicorn_worker.UvicornWorker\"\n")),
            Uvicorn::Hook
        );
        for exec in [
            ".venv/bin/gunicorn -k asgi --root-path \"$RELCTL_SCRIPT_NAME\" app:app",
            ".venv/bin/python -m gunicorn app.wsgi:application",
            ".venv/bin/uvicorn --uds x app:app",
        ] {
            assert_eq!(uvicorn(exec, None), Uvicorn::No, "{exec}");
        }
        for exec in [
            ".venv/bin/gunicorn -c conf.py -k uvicorn_worker.UvicornWorker app:app",
            ".venv/bin/gunicorn --config=conf.py -k uvicorn_worker.UvicornWorker app:app",
            ".venv/bin/gunicorn -cconf.py -k uvicorn_worker.UvicornWorker app:app",
        ] {
            assert!(matches!(uvicorn(exec, None), Uvicorn::OwnConfig(_)), "{exec}");
        }
        assert_eq!(cmd_args(Path::new("/r"), None), "--config /r/.relctl/gunicorn-relctl.conf.py");
        assert_eq!(
            cmd_args(Path::new("/r"), Some("--timeout 60")),
            "--config /r/.relctl/gunicorn-relctl.conf.py --timeout 60"
        );
    }
}
