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
    /// Where nginx serves `[static]`: the route, `[static] url` and a trailing `/`, absolute
    /// (`/ledger/static/`; `/static/` at `/`). Django's `STATIC_URL`: an absolute one does not
    /// depend on the script prefix of the moment Django first reads it.
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

/// Parses an environment file exactly as systemd's `EnvironmentFile=` does: the secrets files
/// users write (which the service is also given, through the build's drop-in) and the
/// `.relctl/environment` files [`env_file`] writes, which release and verify hooks read back.
///
/// This follows systemd's `parse_env_file_internal` (src/basic/env-file.c), the parser behind
/// `load_env_file`, which `EnvironmentFile=` uses:
/// - Lines whose first non-blank character is `#` or `;` are comments; blank lines are skipped.
/// - A key runs to the first `=`, with surrounding blanks trimmed (there is no `export`).
/// - Blanks after `=` are skipped. Then the value is a sequence of: single-quoted text (taken
///   literally, newlines included, up to the next `'`), double-quoted text (up to the next
///   unescaped `"`; `\` before `"`, `\`, `` ` `` or `$` gives that character, before a newline
///   joins lines, before anything else stays as it is: `"a\nb"` is `a\nb`; `$` is not expanded),
///   with blanks between such parts dropped; or, once an unquoted character starts it, plain text
///   to the end of the line (`\r` or `\n`) in which quotes are ordinary characters, `\` takes the
///   next character literally (`\` at the end of a line joins it with the next) and trailing
///   blanks are dropped.
/// - A key that is repeated takes its last value.
///
/// Where systemd would ignore a line (one without `=`; a name that is not `[A-Za-z_][A-Za-z0-9_]*`,
/// such as `export KEY`), this fails naming the line instead, so a secret is never set for hooks
/// and missing in the service. A NUL byte (where systemd stops reading) fails too.
pub fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>, String> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        PreKey,
        Key,
        PreValue,
        Value,
        ValueEscape,
        Single,
        Double,
        DoubleEscape,
        Comment,
    }
    use State::*;
    let newline = |c: char| c == '\n' || c == '\r';
    let blank = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r');
    if let Some(i) = text.find('\0') {
        let line = text[..i].matches('\n').count() + 1;
        return Err(format!("line {line}: contains a NUL byte, where systemd stops reading the file"));
    }
    let mut out = BTreeMap::new();
    let mut state = PreKey;
    let mut line = 1;
    let (mut key_line, mut key, mut value) = (1, String::new(), String::new());
    // Where the value's trailing blanks start (plain text only).
    let mut trailing: Option<usize> = None;
    let mut push = |key_line: usize, key: &str, value: String| -> Result<(), String> {
        let name = key.trim_end_matches([' ', '\t', '\n', '\r']);
        if !is_env_name(name) {
            let hint = match name.strip_prefix("export") {
                Some(rest) if rest.starts_with([' ', '\t']) => {
                    " (systemd's EnvironmentFile= has no `export`: write KEY=VALUE)"
                }
                _ => " (names are letters, digits and _, not starting with a digit; systemd would ignore the line)",
            };
            return Err(format!("line {key_line}: \"{}\" is not a valid variable name{hint}", name.escape_debug()));
        }
        out.insert(name.to_string(), value);
        Ok(())
    };
    for c in text.chars() {
        match state {
            PreKey => {
                if c == '#' || c == ';' {
                    state = Comment;
                } else if !blank(c) {
                    state = Key;
                    key_line = line;
                    key.clear();
                    key.push(c);
                }
            }
            Key => {
                if newline(c) {
                    return Err(format!("line {key_line}: expected KEY=VALUE"));
                } else if c == '=' {
                    state = PreValue;
                    value.clear();
                    trailing = None;
                } else {
                    key.push(c);
                }
            }
            PreValue => {
                if newline(c) {
                    state = PreKey;
                    push(key_line, &key, std::mem::take(&mut value))?;
                } else if c == '\'' {
                    state = Single;
                } else if c == '"' {
                    state = Double;
                } else if c == '\\' {
                    state = ValueEscape;
                } else if !blank(c) {
                    state = Value;
                    value.push(c);
                }
            }
            Value => {
                if newline(c) {
                    state = PreKey;
                    if let Some(t) = trailing {
                        value.truncate(t);
                    }
                    push(key_line, &key, std::mem::take(&mut value))?;
                } else if c == '\\' {
                    state = ValueEscape;
                    trailing = None;
                } else {
                    if !blank(c) {
                        trailing = None;
                    } else if trailing.is_none() {
                        trailing = Some(value.len());
                    }
                    value.push(c);
                }
            }
            ValueEscape => {
                state = Value;
                if !newline(c) {
                    value.push(c);
                }
            }
            Single => {
                if c == '\'' {
                    state = PreValue;
                } else {
                    value.push(c);
                }
            }
            Double => {
                if c == '"' {
                    state = PreValue;
                } else if c == '\\' {
                    state = DoubleEscape;
                } else {
                    value.push(c);
                }
            }
            DoubleEscape => {
                state = Double;
                if SHELL_NEED_ESCAPE.contains(c) {
                    value.push(c);
                } else if c != '\n' {
                    value.push('\\');
                    value.push(c);
                }
            }
            // systemd (since v254) ends a comment at the end of its line, `\` or not.
            Comment => {
                if newline(c) {
                    state = PreKey;
                }
            }
        }
        if c == '\n' {
            line += 1;
        }
    }
    match state {
        PreKey | Comment => {}
        Key => return Err(format!("line {key_line}: expected KEY=VALUE")),
        _ => {
            if state == Value {
                if let Some(t) = trailing {
                    value.truncate(t);
                }
            }
            push(key_line, &key, value)?;
        }
    }
    Ok(out)
}

/// What `\` escapes inside double quotes, for systemd as for the shell (`SHELL_NEED_ESCAPE`).
const SHELL_NEED_ESCAPE: &str = "\"\\`$";

/// A variable name systemd keeps (`env_name_is_valid`): letters, digits and `_`, not starting
/// with a digit.
pub fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Writes environment variables as a systemd `EnvironmentFile=`, read back by [`parse_env_file`]:
/// every value in double quotes with `"`, `\`, `` ` `` and `$` escaped by `\` (as systemd's own
/// `write_env_var` does); newlines, tabs and every other character are written as they are,
/// which systemd reads literally inside double quotes. Fails on a name systemd would ignore and
/// on a NUL byte, which no environment variable can hold.
pub fn env_file(vars: &BTreeMap<String, String>) -> Result<String> {
    let mut s = String::from("# Written by relctl; systemd EnvironmentFile= format.\n");
    for (k, v) in vars {
        if !is_env_name(k) {
            return Err(anyhow!("environment variable name \"{}\" is not valid for systemd", k.escape_debug()));
        }
        if v.contains('\0') {
            return Err(anyhow!("environment variable {k} contains a NUL byte, which no environment can hold"));
        }
        s.push_str(k);
        s.push_str("=\"");
        for c in v.chars() {
            if SHELL_NEED_ESCAPE.contains(c) {
                s.push('\\');
            }
            s.push(c);
        }
        s.push_str("\"\n");
    }
    Ok(s)
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
        let parsed = parse_env_file("# c\n; c\nA=1\nB=\"two words\"\n\nC='x=y'\n").unwrap();
        assert_eq!(parsed["A"], "1");
        assert_eq!(parsed["B"], "two words");
        assert_eq!(parsed["C"], "x=y");
        assert!(parse_env_file("nokey\n").unwrap_err().contains("line 1"));
        assert_eq!(
            env_file(&parsed).unwrap(),
            "# Written by relctl; systemd EnvironmentFile= format.\nA=\"1\"\nB=\"two words\"\nC=\"x=y\"\n"
        );
    }

    /// What systemd's `parse_env_file_internal` (src/basic/env-file.c) makes of each line.
    #[test]
    fn env_files_read_as_systemd_reads_them() {
        let one = |line: &str| -> String {
            let parsed = parse_env_file(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(parsed.len(), 1, "{line:?}: {parsed:?}");
            parsed.into_values().next().unwrap()
        };
        for (line, value) in [
            (r#"A="x\"y""#, r#"x"y"#),
            ("B='a b'", "a b"),
            (r"C=a\ b", "a b"),
            (r"C=a\\b", r"a\b"),
            (r"C=a\b", "ab"),
            (r#"D=" lead""#, " lead"),
            ("D=  plain  \n", "plain"),
            (r"D=trail\ ", "trail "),
            (r#"E="a\nb""#, r"a\nb"),
            (r#"E="\$HOME \`x\` \\""#, r"$HOME `x` \"),
            (r#"E="$HOME""#, "$HOME"),
            ("F='a\\\"b'", "a\\\"b"),
            ("F='multi\nline'", "multi\nline"),
            ("F=\"multi\nline\"", "multi\nline"),
            ("F=\"join\\\nlines\"", "joinlines"),
            ("F=join\\\nlines", "joinlines"),
            (r#"G="a" 'b' c"#, "abc"),
            (r#"G=a "b" c"#, r#"a "b" c"#),
            ("G=a # not a comment", "a # not a comment"),
            ("  H  =  v\r\n", "v"),
            ("I=", ""),
            ("I=\"unterminated", "unterminated"),
        ] {
            assert_eq!(one(line), value, "{line:?}");
        }
        let last = parse_env_file("K=1\nK=2\n").unwrap();
        assert_eq!(last["K"], "2", "a repeated key takes its last value");
        let err = parse_env_file("A=1\nexport B=2\n").unwrap_err();
        assert!(
            err.starts_with("line 2: \"export B\" is not a valid variable name") && err.contains("export"),
            "{err}"
        );
        assert!(parse_env_file("1A=x\n").unwrap_err().starts_with("line 1: \"1A\" is not a valid variable name"));
        assert!(parse_env_file("A=x\0y\n").unwrap_err().contains("NUL"));
    }

    #[test]
    fn every_value_round_trips_through_the_env_file() {
        let pieces =
            ["\\", "\"", "'", "$", "#", " ", "=", "\t", "`", ";", "\n", "\r", "x", "é", "\\n", "${A}", "$$", "\\\""];
        let mut values: Vec<String> = Vec::new();
        for a in pieces {
            for b in pieces {
                for c in ["", " ", "\\", "y"] {
                    values.push(format!("{a}{b}{c}"));
                    values.push(format!("{c}v{a}{b}"));
                }
            }
        }
        values.push(String::new());
        values.push("postgres://u:p\"a$s\\w'o#rd @h/db".into());
        for (i, chunk) in values.chunks(50).enumerate() {
            let vars: BTreeMap<String, String> =
                chunk.iter().enumerate().map(|(j, v)| (format!("V_{i}_{j}"), v.clone())).collect();
            let written = env_file(&vars).unwrap();
            assert_eq!(parse_env_file(&written).unwrap(), vars, "{written}");
        }
        assert!(env_file(&[("A".into(), "a\0b".into())].into()).unwrap_err().to_string().contains("NUL"));
        assert!(env_file(&[("export A".into(), "a".into())].into()).is_err());
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
