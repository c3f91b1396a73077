//! nginx-snippet end to end: real nginx (Debian's, installed by .ci/run) inside the systemd
//! sandbox, in front of real gunicorn builds of the example and of a second app. Needs root;
//! fails (never skips) without it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::env::{Env, REPO};
use crate::common::scratch::{replace, variant};
use crate::common::{show, stderr};

const SNIPPET: &str = "/etc/nginx/snippets/medctrl.conf";

/// The example's manifest, copied, with `route = "/testapi"` (testing's) replaced by `with`.
fn testing_route(name: &str, with: &str) -> PathBuf {
    variant(name, |app| replace(&app.join("relctl.toml"), "route = \"/testapi\"", with))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Http {
    status: u16,
    location: String,
    body: String,
}

impl Env {
    fn http(&self, port: u16, path: &str) -> Http {
        let url = format!("http://127.0.0.1:{port}{path}");
        let out = self.sb.run(
            "curl",
            &[
                "-sS",
                "--max-time",
                "10",
                "-o",
                "/dev/stdout",
                "-w",
                "\n%{http_code} %{redirect_url}",
                "-H",
                "X-Forwarded-For: 203.0.113.9",
                &url,
            ],
        );
        assert!(out.status.success(), "GET {url}: {}", show(&out));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, meta) = text.rsplit_once('\n').unwrap();
        let (status, location) = meta.split_once(' ').unwrap_or((meta, ""));
        Http { status: status.parse().unwrap(), location: location.to_string(), body: body.to_string() }
    }

    fn json(&self, port: u16, path: &str) -> Value {
        let r = self.http(port, path);
        assert_eq!(r.status, 200, "GET {path}: {} {}", r.status, r.body);
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {}", r.body))
    }
}

/// The MedCtrl guide's hand-written location blocks, generated: both builds reachable under their
/// routes, the prefix stripped, the bare prefix redirected, look-alike paths not routed, headers
/// forwarded; nested routes and a root route of a second app; `--check` refusing a broken
/// snippet and a snippet the host's config rejects, with the old file kept.
#[test]
fn snippet_routes_builds_through_real_nginx() {
    let env = Env::boot();
    let echo = Path::new(REPO).join("tests/fixtures/echo/relctl.toml");
    env.ok(&["build", "development"]);
    env.ok(&["build", "testing"]);
    for build in ["v2", "root"] {
        let out = env.relctl_with(&echo, &["build", build]);
        assert!(out.status.success(), "echo build {build}: {}", show(&out));
    }

    // A server block of our own on a free port, including the snippets; nothing else served.
    let (port, port2) = (free_port(), free_port());
    env.sh(&format!(
        r#"rm -f /etc/nginx/sites-enabled/*
: > {SNIPPET}; : > /etc/nginx/snippets/echo-v2.conf; : > /etc/nginx/snippets/echo-root.conf
cat > /etc/nginx/sites-enabled/relctl-test <<EOF
server {{
    listen 127.0.0.1:{port} default_server;
    location ^~ /conflict/ {{ return 418; }}
    # Hand-written: the MedCtrl guide's block, and the README's.
    location /guideapi {{ include proxy_params; rewrite ^/guideapi(.*)\$ \$1 break; proxy_pass http://unix:/opt/medctrl/backend/development/gunicorn.sock; }}
    location /handapi/ {{ include proxy_params; proxy_set_header SCRIPT_NAME /handapi; proxy_pass http://unix:/opt/medctrl/backend/development/gunicorn.sock:; }}
    include {SNIPPET};
    include /etc/nginx/snippets/echo-v2.conf;
}}
server {{
    listen 127.0.0.1:{port2} default_server;
    include /etc/nginx/snippets/echo-root.conf;
}}
EOF
systemctl start nginx"#
    ));

    // -- install the example's snippet: --output --check --reload ----------------------------
    let out = env.relctl(&["nginx-snippet", "--output", SNIPPET, "--check", "--reload"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(out.stdout.is_empty(), "--output prints nothing: {}", show(&out));
    assert_eq!(env.sh(&format!("stat -c %a {SNIPPET}")), "644");
    let installed = env.sh(&format!("cat {SNIPPET}"));
    let release = env.get("development", "/")["release"].as_str().unwrap().to_string();
    assert!(
        installed.contains(&format!(
            "# medctrl development (release {release}): /api -> /opt/medctrl/backend/development/gunicorn.sock"
        )),
        "{installed}"
    );
    for (file, build) in [("echo-v2", "v2"), ("echo-root", "root")] {
        let out = env.relctl_with(
            &echo,
            &[
                "nginx-snippet",
                "--build",
                build,
                "--output",
                &format!("/etc/nginx/snippets/{file}.conf"),
                "--check",
                "--reload",
            ],
        );
        assert!(out.status.success(), "{}", show(&out));
    }

    // -- each route reaches its own build, prefix stripped, query kept -----------------------
    let dev = env.json(port, "/api/");
    assert_eq!((dev["build"].as_str(), dev["path"].as_str()), (Some("development"), Some("/")));
    let testing = env.json(port, "/testapi/");
    assert_eq!(testing["build"], "testing");
    let x = env.json(port, "/api/x?q=1");
    assert_eq!((x["path"].as_str(), x["query"].as_str()), (Some("/x"), Some("q=1")));
    let deep = env.json(port, "/testapi/a/b/?k=v&z=2");
    assert_eq!(
        (deep["build"].as_str(), deep["path"].as_str(), deep["query"].as_str()),
        (Some("testing"), Some("/a/b/"), Some("k=v&z=2"))
    );

    // -- the app knows its route (SCRIPT_NAME) and generates URLs under it ------------------
    assert_eq!(
        (x["script_name"].as_str(), x["static"].as_str()),
        (Some("/api"), Some("/api/static/medctrl/hello.css"))
    );
    assert_eq!(testing["static"], "/testapi/static/medctrl/hello.css");
    // Straight to the socket (no proxy, no header, no prefix in the path), as the health gate
    // asks: routed as if mounted at /, still generating URLs under its route (the rendered
    // settings pin FORCE_SCRIPT_NAME).
    let direct = env.get("development", "/x");
    assert_eq!((direct["path"].as_str(), direct["script_name"].as_str()), (Some("/x"), Some("/api")));

    // Hand-written blocks reach the same build: the guide's rewrite, the README's full path.
    let guide = env.json(port, "/guideapi/x?q=1");
    assert_eq!((guide["path"].as_str(), guide["query"].as_str()), (Some("/x"), Some("q=1")));
    let hand = env.json(port, "/handapi/x");
    assert_eq!((hand["path"].as_str(), hand["script_name"].as_str()), (Some("/x"), Some("/api")));

    // -- static files: nginx serves each build's own, from its current release ---------------
    let css =
        env.sb.sh_ok(&format!("curl -sS -D - --max-time 10 http://127.0.0.1:{port}/testapi/static/medctrl/hello.css"));
    assert!(css.starts_with("HTTP/1.1 200"), "{css}");
    assert!(css.contains("Cache-Control: public, max-age=3600"), "{css}");
    assert!(css.contains("body { font-family: sans-serif; }"), "{css}");
    assert_eq!(env.http(port, "/api/static/nothing.css").status, 404);
    // As nginx's user: the static files read, the release's code, settings and environment not.
    let rel = format!("/opt/medctrl/backend/development/releases/{release}");
    let as_nginx = |cmd: &str| env.sb.sh(&format!("setpriv --reuid=www-data --regid=www-data --clear-groups {cmd}"));
    assert!(as_nginx(&format!("cat {rel}/API/static/medctrl/hello.css")).status.success());
    for private in [
        format!("{rel}/API/api_settings/settings/deploy_development.py"),
        format!("{rel}/API/api_settings/settings/common.py"),
        format!("{rel}/.relctl/environment"),
    ] {
        let out = as_nginx(&format!("cat {private}"));
        assert!(!out.status.success() && stderr(&out).contains("Permission denied"), "{private}: {}", show(&out));
    }
    assert!(!as_nginx(&format!("ls {rel}")).status.success(), "the release is not listable by nginx");
    assert_eq!(env.sh(&format!("stat -c '%a %U:%G' {rel}/API/api_settings/views.py")), "640 root:medctrl");

    // -- proxy_params headers arrive -------------------------------------------------------
    let h = &dev["headers"];
    assert_eq!(h["host"], "127.0.0.1", "{h}");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");

    // -- the bare prefix redirects; look-alikes are not the build ---------------------------
    let r = env.http(port, "/api");
    assert_eq!((r.status, r.location.as_str()), (308, format!("http://127.0.0.1:{port}/api/").as_str()));
    let r = env.http(port, "/testapi?q=1");
    assert_eq!((r.status, r.location.as_str()), (308, format!("http://127.0.0.1:{port}/testapi/?q=1").as_str()));
    for path in ["/apix", "/api-x", "/testapix", "/ap"] {
        let r = env.http(port, path);
        assert_eq!(r.status, 404, "{path} must not reach a build: {}", r.body);
        assert!(!r.body.contains("\"build\""), "{path}: {}", r.body);
    }

    // -- nested routes and a root route of another app --------------------------------------
    let v2 = env.json(port, "/api/v2/items?id=3");
    assert_eq!(
        (v2["app"].as_str(), v2["build"].as_str(), v2["path"].as_str(), v2["query"].as_str()),
        (Some("echo"), Some("v2"), Some("/items"), Some("id=3"))
    );
    assert_eq!(env.json(port, "/api/v2x")["build"], "development", "/api/v2x is under /api, not /api/v2");
    assert_eq!(env.http(port, "/api/v2").location, format!("http://127.0.0.1:{port}/api/v2/"));
    let root = env.json(port2, "/anything/here?x=y");
    assert_eq!(
        (root["build"].as_str(), root["path"].as_str(), root["query"].as_str()),
        (Some("root"), Some("/anything/here"), Some("x=y"))
    );

    // -- under load through nginx, restarts and a build drop no request ----------------------
    let wrk = std::process::Command::new("wrk")
        .stdout(std::process::Stdio::piped())
        .args(["-t2", "-c8", "-d600s", "--timeout", "10s", &format!("http://127.0.0.1:{port}/api/x")])
        .spawn()
        .expect("wrk runs (apt-get install wrk; .ci/run installs it)");
    std::thread::sleep(std::time::Duration::from_secs(1));
    env.ok(&["build", "development"]);
    for _ in 0..3 {
        env.ok(&["restart", "development"]);
    }
    // wrk stops on SIGINT and reports what it saw until then: the load covered every deploy.
    let wrk = crate::common::stop_wrk(wrk);
    let report = String::from_utf8_lossy(&wrk.stdout).into_owned();
    assert!(wrk.status.success(), "{report}");
    let requests: u64 =
        report.split(" requests in").next().unwrap().rsplit(' ').next().unwrap().trim().parse().unwrap();
    assert!(requests > 100, "{report}");
    assert!(
        !report.contains("Non-2xx") && !report.contains("Socket errors"),
        "requests failed during restarts:\n{report}"
    );

    // -- an allow entry nginx would reject is refused by relctl itself; the old file stays ------
    let before = env.sh(&format!("cat {SNIPPET}"));
    let broken = testing_route("nginx-broken", "route = \"/testapi\"\nallow = [\"10.0.0.300/8\"]");
    let out = env.relctl_with(&broken, &["nginx-snippet", "--output", SNIPPET, "--check", "--reload"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains("[builds.testing] allow entry \"10.0.0.300/8\" must be"), "{err}");
    assert_eq!(env.sh(&format!("cat {SNIPPET}")), before, "the old snippet is kept");

    // -- a snippet that is valid alone but breaks the host's config is put back --------------
    let conflicting = testing_route("nginx-conflict", "route = \"/conflict\"");
    let out = env.relctl_with(&conflicting, &["nginx-snippet", "--output", SNIPPET, "--check", "--reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{SNIPPET} restored to its previous contents")) && err.contains("duplicate location"),
        "{err}"
    );
    assert_eq!(env.sh(&format!("cat {SNIPPET}")), before);
    assert_eq!(env.json(port, "/testapi/")["build"], "testing", "nginx still serves the old routes");

    // -- access control: allow list ----------------------------------------------------------
    let guarded = testing_route("nginx-allow", "route = \"/testapi\"\nallow = [\"10.9.9.9\"]");
    let out = env.relctl_with(&guarded, &["nginx-snippet", "--output", SNIPPET, "--check", "--reload"]);
    assert!(out.status.success(), "{}", show(&out));
    let r = env.http(port, "/testapi/");
    assert_eq!(
        r.status,
        403,
        "127.0.0.1 is not in the allow list: {}\n{}\n{}",
        r.body,
        env.sh(&format!("cat {SNIPPET}")),
        env.sh("journalctl -u nginx --no-pager | tail; ps -ef | grep [n]ginx")
    );
    assert_eq!(env.json(port, "/api/")["build"], "development", "other builds are not restricted");

    // -- access control: basic auth ----------------------------------------------------------
    env.sh("printf 'tester:{PLAIN}s3cret\\n' > /etc/nginx/medctrl-testing.htpasswd");
    let htpasswd =
        testing_route("nginx-htpasswd", "route = \"/testapi\"\nhtpasswd = \"/etc/nginx/medctrl-testing.htpasswd\"");
    let out = env.relctl_with(&htpasswd, &["nginx-snippet", "--output", SNIPPET, "--check", "--reload"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(env.http(port, "/testapi/").status, 401, "no credentials");
    let with_auth = env.sh(&format!("curl -sS -u tester:s3cret http://127.0.0.1:{port}/testapi/"));
    assert_eq!(serde_json::from_str::<Value>(&with_auth).unwrap()["build"], "testing", "{with_auth}");
    let wrong =
        env.sh(&format!("curl -sS -o /dev/null -w '%{{http_code}}' -u tester:wrong http://127.0.0.1:{port}/testapi/"));
    assert_eq!(wrong, "401");
}
