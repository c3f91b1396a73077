//! The nginx routes of an app's builds, checked: one route per build, htpasswd files that exist
//! and that only root can change (as root).

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error::Error;
use crate::host::trust::{self, Trust};
use crate::manifest::Loaded;
use crate::name::BuildName;
use crate::plan::AppPlan;

/// The nginx routes of the declared builds that have one (only `only`, when given), with the
/// domain each answers on (`relctl site`) or none (`relctl nginx-snippet`).
pub fn nginx_routes(app: &AppPlan, loaded: &Loaded, only: &[BuildName]) -> Result<Vec<crate::nginx::Route>> {
    for name in only {
        if loaded.build(name)?.route.is_none() {
            return Err(Error::Usage(format!(
                "build {name} has no route in {}; nothing to route to it",
                loaded.path.display()
            ))
            .into());
        }
    }
    let mut routes: Vec<crate::nginx::Route> = Vec::new();
    for (name, _) in &app.builds {
        if !only.is_empty() && !only.contains(name) {
            continue;
        }
        let decl = loaded.build(name)?;
        let Some(route) = decl.route.clone() else { continue };
        let b = app.layout.build(name);
        if let Some(other) = routes.iter().find(|r| r.route == route && r.domain == decl.domain) {
            let on = decl.domain.as_ref().map(|d| format!(" on domain {d}")).unwrap_or_default();
            return Err(Error::Usage(format!(
                "builds {} and {name} both have the route {route}{on} in {}; each build needs its own",
                other.build,
                loaded.path.display()
            ))
            .into());
        }
        let health_uri = app.health.declared.then(|| format!("{}{}", route.script_name(), app.health.path));
        routes.push(crate::nginx::Route {
            app: app.layout.app.clone(),
            domain: decl.domain.clone(),
            build: name.clone(),
            route,
            release: b.current_release()?,
            static_files: app.static_files.as_ref().map(|st| crate::nginx::StaticRoute {
                url: st.url.clone(),
                build_dir: b.build_dir.clone(),
                dir: st.dir.trim_end_matches('/').to_string(),
                max_age_s: st.max_age_s,
            }),
            websocket: decl.websocket,
            read_timeout_s: decl.read_timeout_s,
            maintenance: crate::nginx::MaintenanceRoute {
                flag: b.maintenance_flag(),
                build_dir: b.build_dir.clone(),
                retry_after_s: loaded.manifest.maintenance.retry_after_s,
                health_uri,
            },
            // A build that sleeps when idle is reached through its wake socket, which wakes it.
            socket: match app.idle_stop_s(name) {
                Some(_) => app.layout.wake(name).socket,
                None => b.socket,
            },
            allow: decl.allow.clone(),
            htpasswd: match &decl.htpasswd {
                Some(p) => Some(htpasswd_file(loaded, name, p)?),
                None => None,
            },
        });
    }
    // A build's health path that lies under another build's longer route (`/` with
    // `/api/health`, while `/api` is a route) is that build's: no exact location for it.
    let prefixes: Vec<(String, Option<String>, String)> =
        routes.iter().map(|r| (r.build.to_string(), r.domain.clone(), format!("{}/", r.route.script_name()))).collect();
    for r in &mut routes {
        let own = format!("{}/", r.route.script_name());
        if let Some(h) = &r.maintenance.health_uri {
            let longer = |(b, d, p): &(String, Option<String>, String)| {
                b != r.build.as_str() && *d == r.domain && p.len() > own.len() && h.starts_with(p.as_str())
            };
            if prefixes.iter().any(longer) {
                r.maintenance.health_uri = None;
            }
        }
    }
    Ok(routes)
}

/// The routes `relctl nginx-snippet` prints: those of builds without a `domain` (`relctl site`
/// serves the others, in server blocks of their own). Naming a build with a domain is an error.
pub fn snippet_routes(app: &AppPlan, loaded: &Loaded, only: &[BuildName]) -> Result<Vec<crate::nginx::Route>> {
    let routes = nginx_routes(app, loaded, only)?;
    if let Some(r) = routes.iter().find(|r| r.domain.is_some() && only.contains(&r.build)) {
        return Err(Error::Usage(format!(
            "build {} has domain = \"{}\" in {}: relctl site serves it in a server block of its own, not nginx-snippet",
            r.build,
            r.domain.as_deref().unwrap_or_default(),
            loaded.path.display()
        ))
        .into());
    }
    Ok(routes.into_iter().filter(|r| r.domain.is_none()).collect())
}

/// A file the manifest names that must exist now (nginx would otherwise accept the path and then
/// fail every request).
fn existing_file(loaded: &Loaded, what: &str, p: &Path) -> Result<PathBuf> {
    let path = loaded.resolve(p);
    if !path.is_file() {
        return Err(Error::Usage(format!("{}: {what} {} is not a file", loaded.path.display(), path.display())).into());
    }
    Ok(path)
}

/// A build's htpasswd: nginx's master reads it as root (`nginx -t`, reload) and it decides who
/// gets in, so as root only one only root can change is used.
fn htpasswd_file(loaded: &Loaded, build: &str, p: &Path) -> Result<PathBuf> {
    root_file(loaded, &format!("[builds.{build}] htpasswd"), p)
}

/// A file the manifest names for nginx's master (root) to read: it must exist now and, as root,
/// be one only root can change.
pub fn root_file(loaded: &Loaded, what: &str, p: &Path) -> Result<PathBuf> {
    let path = existing_file(loaded, what, p)?;
    trust::check(&path, what, Trust::current())
        .map_err(|e| e.into_usage(|e| format!("{}: {what} {}: {e}", loaded.path.display(), path.display())))?;
    Ok(path)
}
