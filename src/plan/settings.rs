//! What a release carries of its build's configuration: the settings file rendered from its
//! template, the build's secrets, and the service's environment (secret values marked, never
//! shown).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::error::Error;
use crate::host::trust::{self, Trust};
use crate::manifest::{self, Loaded, Manifest};
use crate::plan::{source_dir, AppPlan};
use crate::release::id::ReleaseId;
use crate::release::layout::BuildLayout;
use crate::release::render::{self, TemplateContext};

/// How a secret value is shown.
pub const SECRET_SHOWN: &str = "<secret>";

/// A rendered file that goes inside the release.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseFile {
    /// Relative to the release directory.
    pub path: String,
    /// What it was rendered from.
    pub template: String,
    /// May hold secrets: never printed.
    #[serde(skip)]
    pub contents: String,
    /// The file rendered with each secret as `<secret>`, which the release keeps beside it for
    /// `relctl diff`; None when the template does not render so (a filter that needs the real
    /// value).
    #[serde(skip)]
    pub shown: Option<String>,
}

/// A build's secrets file: its path and the variables in it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Secrets {
    pub file: Option<PathBuf>,
    /// Variable names only; values are never printed.
    pub names: Vec<String>,
    #[serde(skip)]
    pub values: BTreeMap<String, String>,
}

/// The service's environment: `[service] environment` rendered, and relctl's `RELCTL_*`. A value
/// whose template mentions `secrets` (or the whole template context), or renders differently
/// when the secrets are replaced by placeholders, is secret: it goes into the environment file
/// (0600, read by systemd as root) and to hooks, but `--dry-run`, `--json` and error messages show
/// it as `<secret>`.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
    secret: BTreeSet<String>,
}

impl Environment {
    /// The values, secret ones included: for the environment file and hooks only.
    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.vars
    }

    /// Whether `key`'s value is rendered from secrets.
    pub fn is_secret(&self, key: &str) -> bool {
        self.secret.contains(key)
    }

    pub(crate) fn insert(&mut self, key: String, value: String, secret: bool) {
        if secret {
            self.secret.insert(key.clone());
        } else {
            self.secret.remove(&key);
        }
        self.vars.insert(key, value);
    }

    /// The variables as they may be printed: secret values as `<secret>`.
    pub fn shown(&self) -> BTreeMap<&str, &str> {
        self.vars.iter().map(|(k, v)| (k.as_str(), if self.is_secret(k) { SECRET_SHOWN } else { v.as_str() })).collect()
    }

    /// The release's `.relctl/environment`, as systemd reads it (`EnvironmentFile=`).
    pub fn file(&self) -> Result<String> {
        render::env_file(&self.vars)
    }

    /// The same file with secret values as `<secret>`, which the release keeps beside it for
    /// `relctl diff` (`store::masked_copy`).
    pub fn shown_file(&self) -> Result<String> {
        let shown = self.shown().into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        render::env_file(&shown)
    }
}

impl Serialize for Environment {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.shown().serialize(serializer)
    }
}

impl std::ops::Index<&str> for Environment {
    type Output = String;
    fn index(&self, key: &str) -> &String {
        &self.vars[key]
    }
}

const BUILTIN_TEMPLATES: &[(&str, &str)] = &[("django", include_str!("../../settings-templates/django.py.tera"))];

pub fn template_context(
    app: &AppPlan,
    m: &Manifest,
    decl: &manifest::Build,
    build: &BuildLayout,
    release: &ReleaseId,
    release_dir: &Path,
    secrets: &Secrets,
) -> TemplateContext {
    let mut vars = m.vars.clone();
    vars.extend(decl.vars.clone());
    let script_name = crate::route::script_name(decl.route.as_ref());
    TemplateContext {
        app: m.app.clone(),
        component: m.component.clone(),
        build: build.build.to_string(),
        release: release.to_string(),
        root: app.layout.root.clone(),
        build_dir: build.build_dir.clone(),
        release_dir: release_dir.to_path_buf(),
        current: build.current.clone(),
        socket: build.socket.clone(),
        state_dir: build.state_dir.clone(),
        // Absolute, with the route: what an app reads at import must not depend on a request.
        static_url: app.static_files.as_ref().map(|st| format!("{script_name}/{}/", st.url)),
        script_name,
        static_root: app.static_files.as_ref().map(|st| release_dir.join(&st.dir)),
        vars,
        secrets: secrets.values.clone(),
    }
}

/// A template error is the user's to fix: a usage error, with the file, line and variable.
pub fn template_error(e: anyhow::Error) -> Error {
    Error::Usage(format!("{e:#}"))
}

/// The `[settings]` file, rendered.
/// `templates_from`: a release (of a promotion) whose copy of the template is used when the
/// template is a file of the source.
pub fn settings_file(
    loaded: &Loaded,
    ctx: &TemplateContext,
    templates_from: Option<&Path>,
) -> Result<Option<ReleaseFile>> {
    let Some(s) = &loaded.manifest.settings else { return Ok(None) };
    let (template_name, source_text) = settings_template(loaded, &s.template, templates_from)?;
    // The path is printed (`--dry-run`, steps): rendered without the secrets.
    let no_secrets = TemplateContext { secrets: BTreeMap::new(), ..ctx.clone() };
    let path = render::render("[settings] path", &s.path, &no_secrets).map_err(template_error)?;
    if Path::new(&path).components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(
            Error::Usage(format!("[settings] path renders to \"{path}\", which is not inside the release")).into()
        );
    }
    let contents = render::render(&template_name, &source_text, ctx).map_err(template_error)?;
    let shown = if ctx.secrets.is_empty() {
        Some(contents.clone())
    } else {
        let secrets = ctx.secrets.keys().map(|k| (k.clone(), SECRET_SHOWN.to_string())).collect();
        render::render(&template_name, &source_text, &TemplateContext { secrets, ..ctx.clone() }).ok()
    };
    Ok(Some(ReleaseFile { path, template: template_name, contents, shown }))
}

/// `[service] environment`, rendered, plus relctl's own `RELCTL_*` variables. Which values are
/// secret: see [`Environment`].
pub fn service_environment(
    m: &Manifest,
    ctx: &TemplateContext,
    build: &BuildLayout,
    release: &ReleaseId,
) -> Result<Environment> {
    let mut placeholders = ctx.clone();
    for v in placeholders.secrets.values_mut() {
        *v = "\u{1}relctl-secret-placeholder\u{1}".into();
    }
    let mut environment = Environment::default();
    for (k, v) in &m.service.environment {
        let what = format!("[service] environment.{k}");
        let value = render::render(&what, v, ctx).map_err(template_error)?;
        let secret = v.contains("secrets")
            || v.contains("__tera_context")
            || render::render(&what, v, &placeholders).map_err(template_error)? != value;
        if secret {
            if let Some(c) = value.chars().find(|c| c.is_control() && *c != '\t') {
                return Err(Error::Usage(format!(
                    "{what} contains the control character {c:?} as rendered from secrets; it must fit on one line"
                ))
                .into());
            }
        } else {
            manifest::check_one_line(&what, &value).map_err(|e| Error::Usage(format!("{e} (as rendered)")))?;
        }
        environment.insert(k.clone(), value, secret);
    }
    environment.insert("RELCTL_APP".into(), m.app.clone(), false);
    environment.insert("RELCTL_BUILD".into(), build.build.to_string(), false);
    environment.insert("RELCTL_RELEASE".into(), release.to_string(), false);
    environment.insert("RELCTL_STATE_DIR".into(), build.state_dir.display().to_string(), false);
    // The build's route as a URL prefix ("" at / or without a route), for servers that take it
    // as an option rather than per request, e.g. gunicorn's ASGI worker:
    // `exec = "... -k asgi --root-path \"$RELCTL_SCRIPT_NAME\" app:app"` (the start script is sh).
    environment.insert("RELCTL_SCRIPT_NAME".into(), ctx.script_name.clone(), false);
    Ok(environment)
}

pub fn settings_template(loaded: &Loaded, template: &str, templates_from: Option<&Path>) -> Result<(String, String)> {
    if let Some(name) = template.strip_prefix("builtin:") {
        let found = BUILTIN_TEMPLATES.iter().find(|(n, _)| *n == name);
        return match found {
            Some((n, src)) => Ok((format!("builtin:{n}"), src.to_string())),
            None => {
                let known: Vec<String> = BUILTIN_TEMPLATES.iter().map(|(n, _)| format!("builtin:{n}")).collect();
                Err(Error::Usage(format!(
                    "[settings] template \"{template}\" is not a builtin template; builtins: {}",
                    known.join(", ")
                ))
                .into())
            }
        };
    }
    let mut path = loaded.resolve(Path::new(template));
    if let Some(release) = templates_from {
        // The copy in the release, when the template is one of the source's files: the checkout
        // may have moved on since that release was built.
        let source = source_dir(loaded)?;
        let copy =
            std::fs::canonicalize(&path).ok().and_then(|p| p.strip_prefix(&source).ok().map(|rel| release.join(rel)));
        if let Some(copy) = copy.filter(|c| c.is_file()) {
            path = copy;
        }
    }
    let text = trust::read_to_string(&path, "[settings] template", Trust::current())
        .map_err(|e| e.into_usage(|e| format!("[settings] template {}: {e}", path.display())))?;
    Ok((template.to_string(), text))
}

/// Reads a build's secrets file, refusing one that others can read.
pub fn read_secrets(loaded: &Loaded, build: &str, file: Option<&Path>) -> Result<Secrets> {
    let Some(file) = file else { return Ok(Secrets::default()) };
    let path = loaded.resolve(file);
    let io_error = |e: std::io::Error| Error::Usage(format!("secrets file {} of build {build}: {e}", path.display()));
    let mut file = trust::open(&path, &format!("[builds.{build}] secrets"), Trust::current())
        .map_err(|e| e.into_usage(|e| io_error(e).to_string()))?;
    let meta = file.metadata().map_err(io_error)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o004 != 0 {
        return Err(Error::Usage(format!(
            "secrets file {} of build {build} is world-readable (mode {mode:04o}); run: chmod o-rwx {}",
            path.display(),
            path.display()
        ))
        .into());
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text).map_err(io_error)?;
    let values =
        render::parse_env_file(&text).map_err(|e| Error::Usage(format!("secrets file {}: {e}", path.display())))?;
    Ok(Secrets { file: Some(path), names: values.keys().cloned().collect(), values })
}
