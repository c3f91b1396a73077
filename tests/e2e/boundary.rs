//! The boundary: bad input against a live build behind nginx. One sandbox, one live build of the
//! example, many cases. Every case must exit non-zero with one line `relctl: …` naming the thing
//! and the rule, and leave /opt/medctrl, /etc/systemd/system, /var/lib/medctrl and /etc/nginx as
//! they were (paths, modes, owners, sizes, mtimes, link targets), with the live build answering
//! from the same main PID.

use std::path::PathBuf;
use std::time::Instant;

use crate::common::env::Env;
use crate::common::scratch::variant;
use crate::common::show;

const SNIPPET: &str = "/etc/nginx/snippets/medctrl.conf";

/// One bad input: how to make it, what to run, and what relctl must say.
struct Case {
    name: &'static str,
    /// Replaces each `from` by its `to` in the example's manifest (written beside it as a new file).
    edit: &'static [(&'static str, &'static str)],
    /// Shell run inside the sandbox before the command (and `undo` after it).
    setup: &'static str,
    undo: &'static str,
    args: &'static [&'static str],
    code: i32,
    says: &'static str,
}

const fn case(
    name: &'static str,
    edit: &'static [(&'static str, &'static str)],
    args: &'static [&'static str],
    says: &'static str,
) -> Case {
    Case { name, edit, setup: "", undo: "", args, code: 2, says }
}

const fn args(name: &'static str, args: &'static [&'static str], code: i32, says: &'static str) -> Case {
    Case { name, edit: &[], setup: "", undo: "", args, code, says }
}

const fn state(
    name: &'static str,
    setup: &'static str,
    undo: &'static str,
    args: &'static [&'static str],
    code: i32,
    says: &'static str,
) -> Case {
    Case { name, edit: &[], setup, undo, args, code, says }
}

const BUILD: &[&str] = &["build", "development"];
const SNIP: &[&str] = &["nginx-snippet"];
const APP: &str = "app = \"medctrl\"";
const SERVICE: &str = "[service]";
const ROUTE: &str = "route = \"/testapi\"";
const HEALTH: &str = "timeout_s = 30";
const ENV: &str = "environment = { ";
const KEEP: &str = "keep_releases = 5";
const TEMPLATE: &str = "template = \"deploy/settings.py.tera\"";

fn cases() -> Vec<Case> {
    vec![
        // -- names that would take over the system's units ------------------------------------
        case("app shadowing getty", &[(APP, "app = \"getty\"")], BUILD, "getty@.service exists and relctl did not write it"),
        case("app shadowing user", &[(APP, "app = \"user\"")], BUILD, "user@.service exists and relctl did not write it"),
        case("app name with capitals", &[(APP, "app = \"MedCtrl\"")], BUILD, "app name \"MedCtrl\" is invalid"),
        case("app name with a dot", &[(APP, "app = \"med.ctrl\"")], BUILD, "app name \"med.ctrl\" is invalid"),
        case("component with a slash", &[("component = \"backend\"", "component = \"a/b\"")], BUILD, "component \"a/b\" is invalid"),
        // -- values that their file cannot hold -----------------------------------------------
        case("newline in an environment value", &[(ENV, "environment = { X = \"a\\nLD_PRELOAD=/tmp/x.so\", ")], BUILD, "[service] environment.X"),
        case("environment key with a dash", &[(ENV, "environment = { \"A-B\" = \"1\", ")], BUILD, "environment key \"A-B\""),
        case("newline in exec", &[("exec = \".venv", "exec = \"echo\\n.venv")], BUILD, "[service] exec"),
        case("quote in workdir", &[("workdir = \"API\"", "workdir = \"API'; rm -rf /; '\"")], BUILD, "single quote"),
        case("workdir outside the release", &[("workdir = \"API\"", "workdir = \"../../etc\"")], BUILD, "[service] workdir \"../../etc\""),
        case("socket with a slash", &[(SERVICE, "[service]\nsocket = \"../g.sock\"")], BUILD, "[service] socket \"../g.sock\""),
        case("socket with a space", &[(SERVICE, "[service]\nsocket = \"g sock\"")], BUILD, "[service] socket \"g sock\""),
        case("socket named current", &[(SERVICE, "[service]\nsocket = \"current\"")], BUILD, "not 'current' or 'releases'"),
        case("missing socket group", &[(SERVICE, "[service]\nsocket_group = \"no-such-grp\"")], BUILD, "socket_group \"no-such-grp\" does not exist"),
        case("socket group with a space", &[(SERVICE, "[service]\nsocket_group = \"www data\"")], BUILD, "socket_group \"www data\" is not a valid group name"),
        case("service user root", &[(SERVICE, "[service]\nuser = \"root\"")], BUILD, "[service] user \"root\" is refused"),
        case("service user with capitals", &[(SERVICE, "[service]\nuser = \"Med\"")], BUILD, "[service] user \"Med\" is not a valid user name"),
        case("empty exec", &[("exec = \".venv/bin/python -m gunicorn --config gunicorn.conf.py --preload --workers 2 api_settings.wsgi:application\"", "exec = \" \"")], BUILD, "[service] exec must not be empty"),
        case("root is /", &[(APP, "app = \"medctrl\"\nroot = \"/\"")], BUILD, "must not be / or contain"),
        case("root with a systemd specifier", &[(APP, "app = \"medctrl\"\nroot = \"/opt/%n\"")], BUILD, "root \"/opt/%n\" contains"),
        case("root too long for a socket", &[(APP, "app = \"medctrl\"\nroot = \"/opt/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"")], BUILD, "longer than a unix socket address can hold"),
        case("secrets path with a specifier", &[(ROUTE, "route = \"/testapi\"\nsecrets = \"/etc/relctl/%i.env\"")], BUILD, "secrets \"/etc/relctl/%i.env\" contains"),
        case("root under /etc", &[(APP, "app = \"medctrl\"\nroot = \"/etc/medctrl\"")], BUILD, "root /etc/medctrl is inside /etc, which belongs to the system"),
        case("root under /tmp", &[(APP, "app = \"medctrl\"\nroot = \"/tmp/medctrl\"")], BUILD, "root /tmp/medctrl is inside /tmp"),
        case("source is /", &[("source = \".\"", "source = \"/\"")], BUILD, "source / is / or a system directory"),
        case("workdir missing from the source", &[("workdir = \"API\"", "workdir = \"no-such-dir\"")], BUILD, "[service] workdir \"no-such-dir\" is not a directory in the source"),
        case("app shadowing multi-user.target", &[(APP, "app = \"multi-user\"")], BUILD, "multi-user.target exists and relctl did not write it"),
        case("another daemon's account as the service user", &[(SERVICE, "[service]\nuser = \"www-data\"")], BUILD, "[service] user \"www-data\" already exists and relctl did not create it"),
        case("a template reading relctl's environment", &[(ENV, "environment = { X = \"{{ get_env(name='HOME') }}\", ")], BUILD, "get_env is not available in relctl templates"),
        case("release hooks without time", &[("[hooks]\n", "[hooks]\nrelease_timeout_s = 0\n")], BUILD, "[hooks] release_timeout_s = 0 must be between 1 and 86400"),
        // -- types and ranges, named by key ---------------------------------------------------
        case("keep_releases as text", &[(KEEP, "keep_releases = \"five\"")], BUILD, "keep_releases: invalid type: string \"five\", expected usize"),
        case("keep_releases zero", &[(KEEP, "keep_releases = 0")], BUILD, "keep_releases = 0 must be between 1 and 1000"),
        case("health timeout as text", &[(HEALTH, "timeout_s = \"30\"")], BUILD, "health.timeout_s: invalid type"),
        case("health timeout negative", &[(HEALTH, "timeout_s = -1")], BUILD, "health.timeout_s: invalid value"),
        case("health timeout huge", &[(HEALTH, "timeout_s = 100000")], BUILD, "[health] timeout_s = 100000 must be between 1 and 3600"),
        case("health path relative", &[("path = \"/health\"", "path = \"health\"")], BUILD, "[health] path \"health\" must start with '/'"),
        case("unknown key", &[(ROUTE, "route = \"/testapi\"\nrout = \"/x\"")], BUILD, "unknown field `rout`"),
        case("toml syntax", &[(APP, "app = \"medctrl")], BUILD, "line 2, column"),
        case("bad exclude pattern", &[("exclude = [", "exclude = [\"{a,b\", ")], BUILD, "exclude pattern \"{a,b\" is invalid"),
        case("undeclared build name in manifest", &[(ROUTE, "route = \"/testapi\"\n[builds.\"a.b\"]")], BUILD, "invalid build name \"a.b\""),
        case("source missing", &[("source = \".\"", "source = \"no-such-dir\"")], BUILD, "is not a directory"),
        // -- templates --------------------------------------------------------------------------
        case("settings template missing", &[(TEMPLATE, "template = \"deploy/missing.tera\"")], BUILD, "[settings] template"),
        case("settings builtin unknown", &[(TEMPLATE, "template = \"builtin:flask\"")], BUILD, "is not a builtin template; builtins: builtin:django"),
        case("settings path escapes", &[("path = \"API/api_settings", "path = \"../API/api_settings")], BUILD, "[settings] path \"../API"),
        case("environment renders a newline", &[("[vars]", "[vars]\nnl = \"a\\nb\""), (ENV, "environment = { X = \"{{ vars.nl }}\", ")], BUILD, "[service] environment"),
        // -- routes and nginx -----------------------------------------------------------------
        case("route without slash", &[(ROUTE, "route = \"testapi\"")], SNIP, "route \"testapi\" must start with '/'"),
        case("route with a semicolon", &[(ROUTE, "route = \"/t;x\"")], SNIP, "contains ';'"),
        case("route with a brace", &[(ROUTE, "route = \"/t{\"")], SNIP, "contains '{'"),
        case("route with ..", &[(ROUTE, "route = \"/a/../b\"")], SNIP, "'..' segments"),
        case("duplicate route", &[(ROUTE, "route = \"/api/\"")], SNIP, "is also the route of build development"),
        case("allow prefix too long", &[(ROUTE, "route = \"/testapi\"\nallow = [\"10.0.0.0/33\"]")], SNIP, "allow entry \"10.0.0.0/33\""),
        case("allow bad address", &[(ROUTE, "route = \"/testapi\"\nallow = [\"10.0.0.300/8\"]")], SNIP, "allow entry \"10.0.0.300/8\""),
        case("allow injection", &[(ROUTE, "route = \"/testapi\"\nallow = [\"all; deny all\"]")], SNIP, "allow entry \"all; deny all\""),
        case("htpasswd missing", &[(ROUTE, "route = \"/testapi\"\nhtpasswd = \"/etc/nginx/missing\"")], SNIP, "htpasswd /etc/nginx/missing is not a file"),
        case("htpasswd with a space", &[(ROUTE, "route = \"/testapi\"\nhtpasswd = \"/etc/nginx/a b\"")], SNIP, "htpasswd \"/etc/nginx/a b\" contains"),
        // -- the command line -------------------------------------------------------------------
        args("build name with ..", &["build", "../x"], 2, "invalid build name \"../x\""),
        args("build name with capitals", &["build", "Dev"], 2, "invalid build name \"Dev\""),
        args("build name with @", &["restart", "x@y"], 2, "invalid build name \"x@y\""),
        args("undeclared build", &["build", "staging"], 2, "declared builds: development, testing"),
        args("start a build never built", &["start", "testing"], 2, "build testing has no release yet"),
        args("reload a build never built", &["reload", "testing"], 2, "build testing has no release yet"),
        args("rollback to a path", &["rollback", "development", "--to", "../../etc"], 2, "--to: \"../../etc\" is not a release id"),
        args("rollback to an unknown release", &["rollback", "development", "--to", "20000101T000000Z"], 2, "has no release 20000101T000000Z; its releases: "),
        args("rollback with nothing to go back to", &["rollback", "development"], 1, "has no good release older than"),
        args("snippet for an undeclared build", &["nginx-snippet", "--build", "staging"], 2, "build \"staging\" is not declared"),
        args("snippet into a missing directory", &["nginx-snippet", "--output", "/etc/nginx/no-such-dir/x.conf"], 1, "directory /etc/nginx/no-such-dir does not exist"),
        args("status of an undeclared build", &["status", "staging"], 2, "build \"staging\" is not declared"),
        args("releases of a bad name", &["releases", "a/b"], 2, "invalid build name \"a/b\""),
        args("unknown flag", &["build", "development", "--force"], 2, "unexpected argument '--force' found"),
        // -- secrets ----------------------------------------------------------------------------
        state("world-readable secrets", "mkdir -p /etc/relctl && printf 'K=v\\n' > /etc/relctl/dev.env && chmod 644 /etc/relctl/dev.env", "rm -f /etc/relctl/dev.env", &["-f", "@secrets", "build", "development"], 2, "is world-readable (mode 0644)"),
        state("missing secrets", "", "", &["-f", "@secrets", "build", "development"], 2, "secrets file /etc/relctl/dev.env of build development"),
        state("malformed secrets", "mkdir -p /etc/relctl && printf 'no equals sign\\n' > /etc/relctl/dev.env && chmod 600 /etc/relctl/dev.env", "rm -f /etc/relctl/dev.env", &["-f", "@secrets", "build", "development"], 2, "line 1: expected KEY=VALUE"),
        // -- state on disk ------------------------------------------------------------------------
        state("corrupt switch journal", "printf '{not json' > /opt/medctrl/backend/development/.relctl-switch", "rm /opt/medctrl/backend/development/.relctl-switch", BUILD, 1, "reading the switch journal /opt/medctrl/backend/development/.relctl-switch"),
        state("current pointing outside", "cp -P /opt/medctrl/backend/development/current /opt/medctrl/current.keep && ln -sfn /etc /opt/medctrl/backend/development/current", "mv -T /opt/medctrl/current.keep /opt/medctrl/backend/development/current", &["rollback", "development"], 1, "points at /etc, which is not a release"),
        state("current removed by hand", "mv /opt/medctrl/backend/development/current /opt/medctrl/current.keep", "mv /opt/medctrl/current.keep /opt/medctrl/backend/development/current", &["restart", "development"], 2, "build development has no release yet"),
        state("current release removed by hand", "cd /opt/medctrl/backend/development && mv releases/$(basename $(readlink current)) /opt/medctrl/release.keep", "cd /opt/medctrl/backend/development && mv /opt/medctrl/release.keep releases/$(basename $(readlink current))", &["restart", "development"], 2, "current release"),
        state("nginx missing for --check", "mv /usr/sbin/nginx /usr/sbin/nginx.away", "mv /usr/sbin/nginx.away /usr/sbin/nginx", &["nginx-snippet", "--check"], 1, "nginx not found"),
        state("no system bus", "", "", &["@nodbus", "restart", "development"], 1, "cannot connect to the system D-Bus"),
        state("secrets file is a directory", "mkdir -p /etc/relctl/dev.env && chmod 700 /etc/relctl/dev.env", "rmdir /etc/relctl/dev.env", &["-f", "@secrets", "build", "development"], 2, "secrets file /etc/relctl/dev.env of build development: Is a directory"),
        state("secrets another user owns", "mkdir -p /etc/relctl && printf 'K=v\\n' > /etc/relctl/dev.env && chmod 600 /etc/relctl/dev.env && chown nobody /etc/relctl/dev.env", "rm -f /etc/relctl/dev.env", &["-f", "@secrets", "build", "development"], 2, "[builds.development] secrets /etc/relctl/dev.env is owned by nobody, not root"),
        state("secrets with export", "mkdir -p /etc/relctl && printf 'export K=v\\n' > /etc/relctl/dev.env && chmod 600 /etc/relctl/dev.env", "rm -f /etc/relctl/dev.env", &["-f", "@secrets", "build", "development"], 2, "line 1: \"export K\" is not a valid variable name (systemd's EnvironmentFile= has no `export`: write KEY=VALUE)"),
        state("manifest another user owns", "mkdir -p /srv/mine && printf 'app = \"medctrl\"\\n[service]\\nexec = \"x\"\\n[builds.development]\\n' > /srv/mine/relctl.toml && chown nobody /srv/mine/relctl.toml", "rm -rf /srv/mine", &["-f", "/srv/mine/relctl.toml", "build", "development"], 2, "manifest /srv/mine/relctl.toml is owned by nobody, not root"),
        state("manifest in a directory others may write", "mkdir -p /srv/open && chmod 0777 /srv/open && printf 'app = \"medctrl\"\\n[service]\\nexec = \"x\"\\n[builds.development]\\n' > /srv/open/relctl.toml", "rm -rf /srv/open", &["-f", "/srv/open/relctl.toml", "build", "development"], 2, "manifest /srv/open/relctl.toml is in /srv/open, which is writable by"),
        state("manifest missing", "", "", &["-f", "/no/such/relctl.toml", "status"], 2, "cannot read manifest /no/such/relctl.toml"),
    ]
}

/// Paths, types, modes, owners, sizes, mtimes and link targets under the trees relctl may touch
/// (the live release's venv left out: nothing writes there).
fn tree(env: &Env) -> String {
    env.sh(
        "find /opt/medctrl /etc/systemd/system /var/lib/medctrl /etc/nginx /run/systemd/system -name .venv -prune -o -printf '%p %y %m %u:%g %s %T@ %l\\n' 2>/dev/null | sort",
    )
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let env = Env::boot();
    let manifest = variant("boundary", |_| {});
    let dir = manifest.parent().unwrap().to_path_buf();
    let out = env.relctl_with(&manifest, BUILD);
    assert!(out.status.success(), "{}", show(&out));

    // The live build behind real nginx, through the snippet relctl installed.
    let port = env.nginx_in_front(&manifest, SNIPPET);
    let through_nginx = || env.sh(&format!("curl -sS --fail --max-time 10 http://127.0.0.1:{port}/api/x"));
    let live = serde_json::from_str::<serde_json::Value>(&through_nginx()).unwrap()["release"].clone();
    let pid = env.main_pid("development");

    let text = std::fs::read_to_string(&manifest).unwrap();
    let secrets_manifest = dir.join("secrets.toml");
    std::fs::write(
        &secrets_manifest,
        text.replace("route = \"/api\"", "route = \"/api\"\nsecrets = \"/etc/relctl/dev.env\""),
    )
    .unwrap();

    let cases = cases();
    let started = Instant::now();
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let file: PathBuf = if c.edit.is_empty() {
            manifest.clone()
        } else {
            let mut edited = text.clone();
            for (from, to) in c.edit {
                assert!(edited.contains(from), "case {}: the manifest has no {from:?}", c.name);
                edited = edited.replacen(from, to, 1);
            }
            let f = dir.join(format!("case-{i}.toml"));
            std::fs::write(&f, edited).unwrap();
            f
        };
        if !c.setup.is_empty() {
            env.sh(c.setup);
        }
        let before = tree(&env);
        let mut argv: Vec<&str> = Vec::new();
        if !c.args.contains(&"-f") {
            argv.extend(["-f", file.to_str().unwrap()]);
        }
        for a in c.args {
            argv.push(if *a == "@secrets" { secrets_manifest.to_str().unwrap() } else { a });
        }
        let out = match argv.iter().position(|a| *a == "@nodbus") {
            Some(i) => {
                argv.remove(i);
                let mut with_env =
                    vec!["DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/no-such-bus", crate::common::env::RELCTL];
                with_env.extend(argv.iter().copied());
                env.sb.run("env", &with_env)
            }
            None => env.sb.run(crate::common::env::RELCTL, &argv),
        };
        let after = tree(&env);
        if !c.undo.is_empty() {
            env.sh(c.undo);
        }
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let mut wrong = Vec::new();
        if out.status.code() != Some(c.code) {
            wrong.push(format!("exit {:?}, expected {}", out.status.code(), c.code));
        }
        if err.lines().count() != 1 || !err.starts_with("relctl: ") {
            wrong.push("not one line".to_string());
        }
        if !err.contains(c.says) {
            wrong.push(format!("does not say {:?}", c.says));
        }
        if before != after {
            let gone: Vec<&str> = before.lines().filter(|l| !after.lines().any(|a| a == *l)).collect();
            let new: Vec<&str> = after.lines().filter(|l| !before.lines().any(|b| b == *l)).collect();
            wrong.push(format!("changed files: - {gone:?} + {new:?}"));
        }
        if env.main_pid("development") != pid {
            wrong.push("the live build's main PID changed".into());
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{} (relctl {}): {}\n    stderr: {}",
                c.name,
                argv.join(" "),
                wrong.join("; "),
                err.trim()
            ));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("boundary: {} cases in {seconds:.1}s", cases.len());
    assert!(cases.len() >= 50, "the battery has {} cases", cases.len());
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));

    // The live build still answers through nginx, from the same release and process.
    let now = serde_json::from_str::<serde_json::Value>(&through_nginx()).unwrap();
    assert_eq!(now["release"], live);
    assert_eq!(env.main_pid("development"), pid);
}
