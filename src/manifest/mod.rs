//! `relctl.toml`: finding it, parsing it strictly, and checking its names. The schema is in
//! `schema`, the checks of every value in `check`, families of builds (`[builds."pr-*"]`) in
//! `family`.

mod check;
mod family;
mod schema;
pub mod target;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::error::Error;
use crate::host::trust::{self, Trust};
use crate::name::BuildName;

pub use check::{check_app_name, check_one_line, static_url, APP_RULE};
pub use family::is_family;
pub use schema::{
    default_health_timeout, default_probation, Build, CustomCertificate, Dep, Hardening, Health, Hooks, Maintenance,
    Manifest, Notify, ProcSubset, Process, SchemaCommands, Service, Settings, Site, Static, Timer, IP_ANY,
    IP_LOCALHOST, LETS_ENCRYPT, NOTIFY_EVENTS,
};

pub const FILE_NAME: &str = "relctl.toml";

/// A parsed, checked manifest and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Loaded {
    /// Resolves a path from the manifest against the manifest's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    /// The declaration of `name`, which must be declared, as a build of its own or as a
    /// member of a family (`[builds."pr-*"]`, whose `route` and `vars` are then rendered for it).
    pub fn build(&self, name: &BuildName) -> Result<Build> {
        let m = &self.manifest;
        if let Some(b) = m.builds.get(name.as_str()).filter(|_| !is_family(name)) {
            return Ok(b.clone());
        }
        if let Some(member) = family::declared_member(m, &self.path, name) {
            return member;
        }
        let declared: Vec<String> =
            m.builds.keys().map(|k| if is_family(k) { format!("{k} (a family)") } else { k.clone() }).collect();
        Err(Error::Usage(format!(
            "build \"{name}\" is not declared in {}; declared builds: {}",
            self.path.display(),
            if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
        ))
        .into())
    }
}

/// Finds the manifest: the given path, or `relctl.toml` in `start` or the nearest parent.
pub fn locate(explicit: Option<&Path>, start: &Path) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    for dir in start.ancestors() {
        let candidate = dir.join(FILE_NAME);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(Error::Usage(format!(
        "no {FILE_NAME} in {} or any parent directory; pass one with -f/--manifest",
        start.display()
    ))
    .into())
}

/// Reads, parses and checks the manifest at `path`. As root, only a manifest only root can
/// change is read (see `trust`): it names the commands relctl runs as root. That holds for the
/// one the upward search found too (a `relctl.toml` another user left in `/tmp`).
pub fn load(path: &Path) -> Result<Loaded> {
    load_as(path, Trust::current())
}

/// [`load`] with this trust policy.
pub fn load_as(path: &Path, trust: Trust) -> Result<Loaded> {
    let text = trust::read_to_string(path, "manifest", trust)
        .map_err(|e| e.into_usage(|e| format!("cannot read manifest {}: {e}", path.display())))?;
    let manifest = parse(&text).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    let path = std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
    Ok(Loaded { path, dir, manifest })
}

/// Parses manifest text and checks every value in it. Errors are one line, without the file name.
pub fn parse(text: &str) -> Result<Manifest, String> {
    let de = toml::Deserializer::parse(text).map_err(|e| one_line_toml_error(&e, text, None))?;
    let mut manifest: Manifest = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        one_line_toml_error(e.inner(), text, Some(key.as_str()).filter(|k| *k != "."))
    })?;
    check::check(&mut manifest)?;
    manifest.text = text.to_string();
    Ok(manifest)
}

/// toml's messages span several lines (with a source excerpt); ours are one line with the
/// position and, for a value of the wrong type, the key it belongs to.
fn one_line_toml_error(e: &toml::de::Error, text: &str, key: Option<&str>) -> String {
    let msg = e.message().trim().replace('\n', " ");
    let msg = match key {
        Some(k) => format!("{k}: {msg}"),
        None => msg,
    };
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
            format!("line {line}, column {column}: {msg}")
        }
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const MINIMAL: &str = r#"
app = "medctrl"
[service]
exec = ".venv/bin/gunicorn app:app"
[builds.development]
route = "/api"
"#;

    #[test]
    fn minimal_manifest_gets_defaults() {
        let m = parse(MINIMAL).unwrap();
        assert_eq!(m.component, "app");
        assert_eq!(m.keep_releases, 5);
        assert_eq!(m.service.socket, "gunicorn.sock");
        assert_eq!(m.service.socket_group, "www-data");
        assert_eq!(m.builds["development"].route.as_ref().map(|r| r.as_str()), Some("/api"));
    }

    #[test]
    fn routes_are_parsed_once_with_the_manifest() {
        let m = parse(&MINIMAL.replace("\"/api\"", "\"/api/\"")).unwrap();
        let route = m.builds["development"].route.as_ref().unwrap();
        assert_eq!((route.as_str(), route.as_written()), ("/api", "/api/"));
        let m = parse(&format!("{MINIMAL}[builds.\"pr-*\"]\nroute = \"/review/{{{{ build }}}}\"\n")).unwrap();
        assert!(m.builds["pr-*"].route.is_none(), "a family's route is a template, parsed per member");
    }

    #[test]
    fn builds_keep_the_order_the_manifest_declares_them_in() {
        let text = format!(
            "{MINIMAL}[builds.production]\nroute = \"/\"\n[builds.\"pr-*\"]\n[builds.alpha]\nroute = \"/alpha\"\n"
        );
        let m = parse(&text).unwrap();
        assert_eq!(m.builds.keys().collect::<Vec<_>>(), ["development", "production", "pr-*", "alpha"]);
        assert_eq!(
            m.named_builds().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["development", "production", "alpha"]
        );
        let declared = Loaded { path: "/x/relctl.toml".into(), dir: "/x".into(), manifest: m }
            .build(&"staging".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(declared.ends_with("declared builds: development, production, pr-* (a family), alpha"), "{declared}");
    }

    #[test]
    fn unknown_key_is_an_error_with_line_and_column() {
        let text = MINIMAL.replace("route = \"/api\"", "route = \"/api\"\nrout = \"/x\"");
        let err = parse(&text).unwrap_err();
        assert!(err.starts_with("line 7, column 1: builds.development.rout: unknown field `rout`"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_key() {
        let text = MINIMAL.replace("app = \"medctrl\"", "app = \"medctrl\"\nkeep_releases = \"five\"");
        assert_eq!(
            parse(&text).unwrap_err(),
            "line 3, column 17: keep_releases: invalid type: string \"five\", expected usize"
        );
        let text = format!("{MINIMAL}[health]\npath = \"/h\"\ntimeout_s = -1\n");
        let err = parse(&text).unwrap_err();
        assert!(err.contains("health.timeout_s: invalid value: integer `-1`"), "{err}");
    }

    #[test]
    fn undeclared_build_lists_declared_ones() {
        let loaded = Loaded { path: "/x/relctl.toml".into(), dir: "/x".into(), manifest: parse(MINIMAL).unwrap() };
        let err = loaded.build(&"staging".parse().unwrap()).unwrap_err().to_string();
        assert_eq!(err, "build \"staging\" is not declared in /x/relctl.toml; declared builds: development");
    }

    #[test]
    fn as_root_a_manifest_another_user_left_above_the_directory_is_refused() {
        // /tmp/<dir>/relctl.toml owned by nobody, found from /tmp/<dir>/project/deeper.
        let dir = tempfile::tempdir().unwrap();
        let below = dir.path().join("project/deeper");
        std::fs::create_dir_all(&below).unwrap();
        let dropped = dir.path().join(FILE_NAME);
        std::fs::write(&dropped, MINIMAL).unwrap();
        std::os::unix::fs::chown(&dropped, Some(65534), Some(65534)).unwrap();
        let found = locate(None, &below).unwrap();
        assert_eq!(found, dropped);
        let err = load_as(&found, Trust::RootOnly).unwrap_err();
        assert!(crate::error::is_usage(&err));
        assert_eq!(
            err.to_string(),
            format!(
                "manifest {p} is owned by nobody, not root: as root, relctl uses only files that only root can change; check it, then run: chown root: {p}; or run relctl without sudo (e.g. build --dry-run)",
                p = dropped.display()
            )
        );
        assert_eq!(load_as(&found, Trust::Anyone).unwrap().manifest.app, "medctrl", "without root it is read");
        std::os::unix::fs::chown(&dropped, Some(0), Some(0)).unwrap();
        assert_eq!(load_as(&found, Trust::RootOnly).unwrap().manifest.app, "medctrl", "root's own is read");
    }
}
