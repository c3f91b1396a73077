//! Rendering with tera, strictly: an undefined variable is an error naming the template, the line
//! and the variable.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, Result};
use serde::Serialize;

/// Everything a template may use. Secrets are only ever put in rendered files that
/// are not world-readable, never printed.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateContext {
    pub app: String,
    pub component: String,
    pub build: String,
    pub release: String,
    pub root: PathBuf,
    pub build_dir: PathBuf,
    pub release_dir: PathBuf,
    pub current: PathBuf,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    /// The build's route as the app's URL prefix (WSGI's `SCRIPT_NAME`, Django's
    /// `FORCE_SCRIPT_NAME`): `/ledger`; "" for the root route or a build without a route.
    pub script_name: String,
    /// `[static] dir` inside this release (Django's `STATIC_ROOT`), when the manifest has one.
    pub static_root: Option<PathBuf>,
    /// `[static] url` with a trailing `/`, relative (Django's `STATIC_URL`: the app's URL prefix
    /// is put in front of it per request).
    pub static_url: Option<String>,
    pub vars: toml::Table,
    #[serde(skip)]
    pub secrets: BTreeMap<String, String>,
}

impl TemplateContext {
    fn tera_context(&self) -> Result<tera::Context> {
        let mut ctx = tera::Context::from_serialize(self).map_err(|e| anyhow!("building template context: {e}"))?;
        ctx.insert("secrets", &self.secrets);
        Ok(ctx)
    }
}

/// Renders `source` (named `name` in errors).
pub fn render(name: &str, source: &str, ctx: &TemplateContext) -> Result<String> {
    render_with(name, source, &ctx.tera_context()?)
}

/// Renders `source` with any serializable context (used for the unit templates).
pub fn render_value<T: Serialize>(name: &str, source: &str, value: &T) -> Result<String> {
    let ctx = tera::Context::from_serialize(value).map_err(|e| anyhow!("building context for {name}: {e}"))?;
    render_with(name, source, &ctx)
}

fn render_with(name: &str, source: &str, ctx: &tera::Context) -> Result<String> {
    let mut tera = tera::Tera::default();
    tera.autoescape_on(vec![]);
    // tera's only built-in that reaches outside the context (`now`, `get_random` need its
    // `builtins` feature, which relctl leaves out; with one raw template, `include`, `import` and
    // `extends` find nothing): relctl renders as root, and root's environment is not the
    // template's to read.
    tera.register_function("get_env", |_: &std::collections::HashMap<String, tera::Value>| {
        Err(tera::Error::msg(NO_GET_ENV))
    });
    tera.add_raw_template(name, source).map_err(|e| anyhow!("{name}: {}", describe(&e)))?;
    tera.render(name, ctx).map_err(|e| anyhow!("{}", located(name, source, &e)))
}

const NO_GET_ENV: &str = "get_env is not available in relctl templates (templates see only app, component, build, release, root, build_dir, release_dir, current, socket, state_dir, script_name, static_root, static_url, vars.*, secrets.*; put what you need in [vars] or a secrets file)";

/// The tera error and its causes as one line.
fn describe(e: &tera::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        parts.push(s.to_string());
        src = s.source();
    }
    parts.retain(|p| !p.starts_with("Failed to render"));
    parts.join(": ").replace('\n', " ")
}

/// For an undefined variable: `<file>:<line>: undefined variable `x``; else the tera message.
fn located(name: &str, source: &str, e: &tera::Error) -> String {
    let msg = describe(e);
    let var = msg
        .split_once("Variable `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(v, _)| v.to_string())
        .filter(|_| msg.contains("not found in context"));
    match var {
        Some(var) => {
            let line =
                source.lines().position(|l| contains_token(l, &var)).map(|i| format!(":{}", i + 1)).unwrap_or_default();
            format!("{name}{line}: undefined variable `{var}` (template variables: app, component, build, release, root, build_dir, release_dir, current, socket, state_dir, vars.*, secrets.*)")
        }
        None => format!("{name}: {msg}"),
    }
}

/// Whether `line` mentions `var` as a whole name (not as part of a longer one).
fn contains_token(line: &str, var: &str) -> bool {
    let is_name = |c: char| c.is_alphanumeric() || c == '_' || c == '.';
    line.match_indices(var).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + var.len()..].chars().next();
        !before.is_some_and(is_name) && !after.is_some_and(|c| is_name(c) && c != '.')
    })
}

/// Parses a KEY=VALUE secrets file: blank lines and `#` comments skipped, optional `export `,
/// matching single or double quotes around the value removed.
pub fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!("line {}: expected KEY=VALUE", i + 1));
        };
        let k = k.trim();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("line {}: \"{k}\" is not a valid variable name", i + 1));
        }
        let v = v.trim();
        let v = [('"', '"'), ('\'', '\'')]
            .iter()
            .find_map(|(a, b)| v.strip_prefix(*a).and_then(|s| s.strip_suffix(*b)))
            .unwrap_or(v);
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Writes environment variables as a systemd EnvironmentFile= (values double-quoted, escaped).
pub fn env_file(vars: &BTreeMap<String, String>) -> String {
    let mut s = String::from("# Written by relctl; systemd EnvironmentFile= format.\n");
    for (k, v) in vars {
        let escaped = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        s.push_str(&format!("{k}=\"{escaped}\"\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> TemplateContext {
        let mut vars = toml::Table::new();
        vars.insert("base_url".into(), "api/".into());
        TemplateContext {
            app: "medctrl".into(),
            component: "backend".into(),
            build: "development".into(),
            release: "20261123T130501Z".into(),
            root: "/opt/medctrl/backend".into(),
            build_dir: "/opt/medctrl/backend/development".into(),
            release_dir: "/opt/medctrl/backend/development/releases/20261123T130501Z".into(),
            current: "/opt/medctrl/backend/development/current".into(),
            socket: "/opt/medctrl/backend/development/gunicorn.sock".into(),
            state_dir: "/var/lib/medctrl/backend/development".into(),
            script_name: String::new(),
            static_root: None,
            static_url: None,
            vars,
            secrets: [("DB_PASSWORD".to_string(), "s3cret".to_string())].into(),
        }
    }

    #[test]
    fn renders_context_vars_and_secrets() {
        let out =
            render("t", "{{ build }} {{ vars.base_url }} {{ state_dir }} {{ secrets.DB_PASSWORD }}", &ctx()).unwrap();
        assert_eq!(out, "development api/ /var/lib/medctrl/backend/development s3cret");
    }

    #[test]
    fn does_not_html_escape() {
        assert_eq!(render("t.py", "\"{{ vars.base_url }}\" <&>", &ctx()).unwrap(), "\"api/\" <&>");
    }

    #[test]
    fn undefined_variable_names_file_line_and_variable() {
        let src = "a = 1\nb = \"{{ build }}\"\nc = \"{{ vars.missing }}\"\n";
        let err = render("deploy/settings.py.tera", src, &ctx()).unwrap_err().to_string();
        assert!(err.starts_with("deploy/settings.py.tera:3: undefined variable `vars.missing`"), "{err}");
    }

    #[test]
    fn syntax_error_names_the_file() {
        let err = render("x.tera", "{{ build ", &ctx()).unwrap_err().to_string();
        assert!(err.starts_with("x.tera: "), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn env_files_parse_and_quote() {
        let parsed = parse_env_file("# c\nexport A=1\nB=\"two words\"\n\nC='x=y'\n").unwrap();
        assert_eq!(parsed["A"], "1");
        assert_eq!(parsed["B"], "two words");
        assert_eq!(parsed["C"], "x=y");
        assert!(parse_env_file("nokey\n").unwrap_err().contains("line 1"));
        assert_eq!(
            env_file(&parsed),
            "# Written by relctl; systemd EnvironmentFile= format.\nA=\"1\"\nB=\"two words\"\nC=\"x=y\"\n"
        );
    }

    #[test]
    fn templates_cannot_read_the_environment() {
        let err = render("deploy/settings.py.tera", "a = 1\nb = \"{{ get_env(name=\"HOME\") }}\"\n", &ctx())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("deploy/settings.py.tera: "), "{err}");
        assert!(err.contains("get_env is not available in relctl templates (templates see only app, "), "{err}");
        assert!(!err.contains('\n'));
        let home = std::env::var("HOME").unwrap_or_default();
        let err = render_value("unit", "{{ get_env(name=\"HOME\", default=\"x\") }}", &ctx()).unwrap_err();
        assert!(err.to_string().contains("get_env is not available"), "{err}");
        assert!(home.is_empty() || !err.to_string().contains(&home));
    }
}
