//! A host set up by hand with the MedCtrl guide (docs: the guide's steps, its build.sh and unit
//! files as they most plausibly are) is refused without --adopt, and taken over with it while
//! the hand-written nginx config keeps answering; the hand-made files stay a release to go back to.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::env::{assert_unchanged, Env};
use crate::common::scratch::variant;
use crate::common::{show, stderr, stdout};

const DEV: &str = "/opt/medctrl/backend/development";

/// The guide's settings template, filled in; RELCTL_RELEASE marks the hand-made files.
const SETTINGS: &str = r#"from api_settings.settings.common import *

SECRET_KEY = "random secret key"

DEBUG = False

# base url where the api will be served from
BASE_URL = "api/"

STATIC_ROOT = "/var/www/medctrl/django-static"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": "/opt/medctrl/backend/development/db.sqlite3",
    }
}

RELCTL_BUILD = "development"
RELCTL_RELEASE = "hand-made"
"#;

/// The guide's build.sh, as it describes it: copy the sources into the build's directory,
/// install the dependencies there (a `venv/`, where the manifest says `.venv`), restart the
/// service.
const BUILD_SH: &str = r#"#!/bin/sh
set -e
: "${BUILD_NAME:?set BUILD_NAME}"
test -f "API/api_settings/settings/deploy_$BUILD_NAME.py"
DEST="/opt/medctrl/backend/$BUILD_NAME"
mkdir -p "$DEST"
cp -r API requirements.txt "$DEST/"
cd "$DEST"
python3 -m venv venv
venv/bin/pip install --disable-pip-version-check -q -r requirements.txt
DJANGO_SETTINGS_MODULE="api_settings.settings.deploy_$BUILD_NAME" venv/bin/python API/manage.py collectstatic --noinput -v 0
systemctl restart "medctrl@$BUILD_NAME"
"#;

/// The guide's medctrl@.service: gunicorn binds the build's socket itself.
const SERVICE: &str = "[Unit]
Description=MedCtrl backend (%i)
After=network.target
PartOf=medctrl.target

[Service]
WorkingDirectory=/opt/medctrl/backend/%i/API
Environment=DJANGO_SETTINGS_MODULE=api_settings.settings.deploy_%i
ExecStart=/opt/medctrl/backend/%i/venv/bin/gunicorn --workers 2 --bind unix:/opt/medctrl/backend/%i/gunicorn.sock api_settings.wsgi:application
Restart=on-failure

[Install]
WantedBy=medctrl.target
";

const TARGET: &str = "[Unit]
Description=MedCtrl backends

[Install]
WantedBy=multi-user.target
";

/// What a request loop through nginx saw: requests, failures, and the longest time from a
/// failed request's start to the next answered one's end (None: nothing failed).
#[derive(Debug, Default)]
struct Seen {
    requests: u64,
    failures: u64,
    longest_gap: Option<Duration>,
    first_failure: Option<String>,
}

/// GET `path` through nginx at `port`; the status line's code, or why there was none.
fn get(port: u16, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").map_err(|e| e.to_string())?;
    let mut body = String::new();
    s.read_to_string(&mut body).map_err(|e| e.to_string())?;
    let code = body.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or(format!("no status: {body:?}"))?;
    Ok((code, body))
}

/// Requests in a loop until `stop`, on one thread.
fn load(port: u16, stop: Arc<AtomicBool>) -> thread::JoinHandle<Seen> {
    thread::spawn(move || {
        let mut seen = Seen::default();
        let mut failing_since: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            seen.requests += 1;
            match get(port, "/api/x") {
                Ok((200, _)) => {
                    if let Some(since) = failing_since.take() {
                        let gap = since.elapsed();
                        seen.longest_gap = Some(seen.longest_gap.map_or(gap, |g| g.max(gap)));
                    }
                }
                other => {
                    seen.failures += 1;
                    seen.first_failure.get_or_insert_with(|| format!("{other:?}"));
                    failing_since.get_or_insert(t);
                }
            }
        }
        seen
    })
}

/// The release the app says it runs, through nginx.
fn release_via_nginx(port: u16) -> String {
    let (code, body) = get(port, "/api/x").unwrap();
    assert_eq!(code, 200, "{body}");
    let json = body.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["release"].as_str().unwrap().to_string()
}

#[test]
fn a_hand_made_setup_is_refused_then_adopted_without_nginx_noticing() {
    let env = Env::boot();
    // The project's checkout with the guide's hand-written settings file and build.sh in it.
    let manifest = variant("adopt-src", |app| {
        std::fs::write(app.join("API/api_settings/settings/deploy_development.py"), SETTINGS).unwrap();
        std::fs::write(app.join("build.sh"), BUILD_SH).unwrap();
    });
    let checkout = manifest.parent().unwrap().display().to_string();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // The guide's steps, by hand.
    env.sh(&format!(
        "set -e
mkdir -p /opt/medctrl/backend /var/www/medctrl/django-static
cat > /etc/systemd/system/medctrl@.service <<'EOF'
{SERVICE}EOF
cat > /etc/systemd/system/medctrl.target <<'EOF'
{TARGET}EOF
systemctl daemon-reload
cd {checkout}
BUILD_NAME=development sh ./build.sh
rm -f /etc/nginx/sites-enabled/*
cat > /etc/nginx/sites-enabled/medctrl <<'EOF'
server {{
    listen 127.0.0.1:{port} default_server;

    # The /api endpoint will be bound to the `development` build
    location /api {{
        include proxy_params;
        rewrite ^/api(.*)$ $1 break;
        proxy_pass http://unix:/opt/medctrl/backend/development/gunicorn.sock;
    }}
}}
EOF
systemctl start nginx
for i in $(seq 100); do test -S {DEV}/gunicorn.sock && break; sleep 0.1; done"
    ));
    assert_eq!(release_via_nginx(port), "hand-made", "the hand-made setup serves through the guide's nginx blocks");

    // Without --adopt: refused, naming what was found, nothing changed.
    let before = env.snapshot();
    let out = env.relctl_with(&manifest, &["build", "development"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = stderr(&out);
    for want in [
        "build development was set up by hand",
        "/etc/systemd/system/medctrl@.service",
        "/etc/systemd/system/medctrl.target",
        "a hand-made build directory /opt/medctrl/backend/development (holding API, requirements.txt, venv)",
        "run: relctl build development --adopt",
    ] {
        assert!(err.contains(want), "missing {want:?}:\n{err}");
    }
    let out = env.relctl_with(&manifest, &["build", "development", "--dry-run", "--adopt"]);
    assert!(out.status.success(), "{}", show(&out));
    let plan = stdout(&out);
    assert!(plan.contains("backup") && plan.contains("/var/backups/relctl/medctrl-development-"), "{plan}");
    assert!(plan.contains("-adopted") && plan.contains("moved into"), "{plan}");
    assert_unchanged(&before, &env.snapshot(), "build without --adopt, and --dry-run --adopt");
    assert!(env.sb.is_active("medctrl@development.service"));

    // With --adopt, under a request loop through the hand-written nginx config.
    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = (0..2).map(|_| load(port, stop.clone())).collect();
    thread::sleep(Duration::from_millis(500));
    let out = env.relctl_with(&manifest, &["build", "development", "--adopt"]);
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Seen> = loops.into_iter().map(|l| l.join().unwrap()).collect();
    let report = stdout(&out);
    eprintln!("--- relctl build development --adopt ---\n{report}\n{}", stderr(&out));
    assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    let requests: u64 = seen.iter().map(|s| s.requests).sum();
    let failures: u64 = seen.iter().map(|s| s.failures).sum();
    let longest = seen.iter().filter_map(|s| s.longest_gap).max();
    eprintln!(
        "adopt under load: {requests} requests through nginx, {failures} failed, longest gap {longest:?}; first failure: {:?}",
        seen.iter().find_map(|s| s.first_failure.clone())
    );
    assert!(requests > 100, "the loop ran through the adoption: {requests}");
    // gunicorn unlinks the path it bound as it stops, which by then names relctl's public
    // symlink; relctl re-makes it at once and says for how long it was missing at most (from its
    // last check that saw it: 0.2-6.5 ms seen on a busy 2-core machine, where the 20 µs polls
    // wait for a CPU). A request that reaches nginx in that window fails (nginx answers 502): 0
    // in most runs, 17 in one CI run whose window was 6.3 ms (the loop sends ~2000 requests/s).
    // So what is bounded is the window, not the count. Without the re-making, every request
    // would fail from the stop until the live instance takes the socket back (the handover step:
    // seconds), far above these bounds.
    let remade = report.split("re-made within ").nth(1).and_then(|r| r.split(' ').next()?.parse::<u64>().ok());
    eprintln!("public socket missing for at most {remade:?} µs (relctl's measure)");
    if let Some(us) = remade {
        assert!(us < 50_000, "the public socket was missing for {us} µs:\n{report}");
    }
    if let Some(gap) = longest {
        assert!(gap < Duration::from_millis(100), "requests failed for {gap:?} in a row during the adoption");
    }

    // The backup is where relctl said, with the hand-made unit in it.
    let backup = report
        .split("backed up in ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no backup dir in:\n{report}"))
        .to_string();
    assert!(backup.starts_with("/var/backups/relctl/medctrl-development-"), "{backup}");
    assert!(env.sh(&format!("cat {backup}/medctrl@.service")).contains("--bind unix:"), "{backup}");
    assert!(env.sh(&format!("cat {backup}/medctrl.target")).contains("MedCtrl backends"));
    assert!(env.sh("cat /etc/systemd/system/medctrl@.service").contains("Written by relctl"));
    let adopted = report
        .split("as release ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no adopted release in:\n{report}"))
        .to_string();
    assert!(adopted.ends_with("-adopted"), "{adopted}");
    assert!(report.contains("linked the build's .venv"), "the guide's venv/ is not the manifest's .venv: {report}");
    assert!(!report.contains("not a rollback target"), "{report}");
    let releases = env.ok(&["releases", "development"]);
    assert!(releases.contains(&adopted), "{releases}");
    assert!(env
        .sh(&format!("ls {DEV}"))
        .lines()
        .all(|l| ["current", "gunicorn.sock", "next", "releases"].contains(&l)));
    let new = release_via_nginx(port);
    assert!(new != "hand-made" && !new.ends_with("-adopted"), "the new release serves: {new}");
    assert_eq!(env.sh("ls /var/www/medctrl/django-static"), "medctrl", "the guide's STATIC_ROOT is left alone");

    // systemctl as the guide says, then back to the hand-made files.
    env.sh("systemctl restart medctrl@development");
    assert_eq!(release_via_nginx(port), new);
    let out = env.relctl_with(&manifest, &["rollback", "development", "--to", &adopted]);
    assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    assert_eq!(release_via_nginx(port), "hand-made", "the rollback serves the adopted hand-made files");

    // --adopt on a build relctl made: nothing to adopt, an ordinary build.
    let out = env.relctl_with(&manifest, &["build", "development", "--adopt"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("has nothing hand-made to adopt; building as usual"), "{}", show(&out));
}
