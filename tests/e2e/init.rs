//! `relctl init` on projects as users have them: a fresh `django-admin startproject` tree with the
//! requirements.txt its user would write (and one with a second app and a pyproject.toml), and
//! the example app without its manifest. What init
//! writes builds as it is, and the build answers through its socket. An existing relctl.toml is
//! never overwritten.

use std::path::Path;
use std::process::Command;

use crate::common::env::{Env, RELCTL};
use crate::common::scratch::{scratch_dir, variant};
use crate::common::{show, stderr, stdout};

/// GET `path` through the unix socket `socket` inside the sandbox: (HTTP status, body).
fn get(env: &Env, socket: &str, path: &str) -> (u16, String) {
    let url = format!("http://localhost{path}");
    let out = env.sb.run("curl", &["-sS", "--max-time", "10", "--unix-socket", socket, "-w", "\n%{http_code}", &url]);
    assert!(out.status.success(), "GET {path} via {socket}: {}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.to_string())
}

/// `relctl build development` for the manifest in `dir`, run there as a user would; its stdout.
fn build_in(env: &Env, dir: &Path, unit: &str) -> String {
    let out = env.sb.sh(&format!("cd '{}' && {RELCTL} build development", dir.display()));
    assert!(
        out.status.success(),
        "relctl build development in {}: {}\n{}",
        dir.display(),
        show(&out),
        env.sb.journal(unit, 40)
    );
    stdout(&out)
}

#[test]
fn init_on_fresh_startproject_trees_writes_manifests_that_build_and_serve() {
    let env = Env::boot();
    let dir = scratch_dir("init-startproject").join("mysite");
    let d = dir.display();
    // What a user does: a virtualenv with Django and gunicorn, startproject, pip freeze.
    env.sh(&format!(
        "python3 -m venv /tmp/dj && /tmp/dj/bin/pip install --disable-pip-version-check -q Django gunicorn \
         && mkdir '{d}' && /tmp/dj/bin/django-admin startproject mysite '{d}' \
         && /tmp/dj/bin/pip freeze > '{d}/requirements.txt'"
    ));

    let out = env.sb.sh(&format!("cd '{d}' && {RELCTL} init"));
    assert!(out.status.success(), "{}", show(&out));
    let said = stdout(&out);
    assert!(
        said.starts_with(&format!("relctl: wrote {d}/relctl.toml\nrelctl: wrote {d}/gunicorn.conf.py\n")),
        "the project had no gunicorn settings: {said}"
    );
    assert!(said.contains("found: settings mysite.settings (DJANGO_SETTINGS_MODULE in manage.py)"), "{said}");
    assert!(said.contains("found: no health URL in mysite/urls.py"), "{said}");
    assert!(said.ends_with("next: check it, then run: sudo relctl build development"), "{said}");
    assert_eq!(stderr(&out), "", "gunicorn is in requirements.txt: nothing to note");
    let text = std::fs::read_to_string(dir.join("relctl.toml")).unwrap();
    assert!(text.contains("\n[health]\npath = \"/\"\naccept = \"not-5xx\"\n"), "the root, as nginx asks it:\n{text}");

    let built = build_in(&env, &dir, "mysite@development.service");
    assert!(built.contains("mysite development is live at release"), "{built}");
    let socket = "/opt/mysite/app/development/gunicorn.sock";
    let (status, body) = get(&env, socket, "/admin/login/");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<title>Log in | Django site admin</title>"), "{body}");
    // The rendered settings are the ones in use (startproject's own say DEBUG = True, which would
    // answer / with Django's welcome page), and the release hook migrated the build's database.
    assert_eq!(get(&env, socket, "/").0, 404);
    assert_eq!(env.sh("test -s /var/lib/mysite/app/development/db.sqlite3 && echo migrated"), "migrated");
    // gunicorn runs with the settings init wrote (a file it cannot read would fail the start).
    let pid = env.sh("systemctl show -P MainPID mysite@development.service");
    let cmdline = env.sh(&format!("tr '\\0' ' ' < /proc/{pid}/cmdline"));
    assert!(cmdline.contains(" -m gunicorn --config gunicorn.conf.py --preload "), "{cmdline}");
    assert_eq!(env.sh(&format!("readlink /proc/{pid}/cwd")), env.sh("readlink -f /opt/mysite/app/development/current"));
    assert!(env.sh("cat /opt/mysite/app/development/current/gunicorn.conf.py").contains("gc.freeze()"));

    // -- the dependencies in pyproject.toml, and a second app (`pip install .` would fail) -------
    let shop = scratch_dir("init-pyproject").join("shop");
    let s = shop.display();
    env.sh(&format!(
        "mkdir '{s}' && /tmp/dj/bin/django-admin startproject shop '{s}' && cd '{s}' \
         && /tmp/dj/bin/python manage.py startapp polls \
         && printf '[project]\nname = \"shop\"\nversion = \"1.0\"\ndependencies = [\"Django>=5.2\", \"gunicorn\"]\n' > pyproject.toml"
    ));
    let out = env.sb.sh(&format!("cd '{s}' && {RELCTL} init"));
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("found: dependencies in pyproject.toml ([project] dependencies)"), "{}", show(&out));
    build_in(&env, &shop, "shop@development.service");
    let (status, body) = get(&env, "/opt/shop/app/development/gunicorn.sock", "/admin/login/");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn init_on_the_example_without_its_manifest_writes_one_that_builds_it() {
    let env = Env::boot();
    let manifest = variant("init-example", |app| std::fs::remove_file(app.join("relctl.toml")).unwrap());
    let app = manifest.parent().unwrap();
    let out = env.sb.run(RELCTL, &["init", app.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    let said = stdout(&out);
    assert!(said.contains("found: a Django project: API/manage.py"), "{said}");
    assert!(said.contains("found: health URL /health (API/api_settings/urls.py)"), "{said}");
    let conf = app.join("API/gunicorn.conf.py");
    assert!(said.contains(&format!("found: gunicorn settings {} (yours, used as they are)", conf.display())), "{said}");
    assert_eq!(said.matches("relctl: wrote").count(), 1, "only the manifest is written: {said}");
    assert_eq!(stderr(&out), "", "the example's gunicorn.conf.py freezes the collector: nothing to note");
    assert!(said.ends_with(&format!("next: check it, then run: cd {} && sudo relctl build development", app.display())));

    let built = build_in(&env, app, "medctrl@development.service");
    assert!(built.contains("GET /dev/health -> 200"), "the health URL init found is the gate: {built}");
    let (status, body) = get(&env, "/opt/medctrl/app/development/gunicorn.sock", "/x?q=1");
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((answer["build"].as_str(), answer["path"].as_str()), (Some("development"), Some("/x")));
}

#[test]
fn init_never_overwrites_a_manifest() {
    let manifest = variant("init-refuses", |_| {});
    let manifest = std::fs::canonicalize(manifest).unwrap();
    let app = manifest.parent().unwrap();
    let before = std::fs::read(&manifest).unwrap();
    let refused = format!(
        "relctl: {} already exists; relctl init does not overwrite it (edit it, or move it away and run relctl init again)\n",
        manifest.display()
    );
    for out in [
        Command::new(RELCTL).arg("init").arg(app).output().unwrap(),
        Command::new(RELCTL).arg("init").current_dir(app).output().unwrap(),
    ] {
        assert_eq!(out.status.code(), Some(2), "{}", show(&out));
        assert_eq!(stderr(&out), refused);
        assert_eq!(stdout(&out), "");
    }
    assert_eq!(std::fs::read(&manifest).unwrap(), before, "the manifest is unchanged");
    let entries: Vec<_> = std::fs::read_dir(app).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(!entries.iter().any(|n| n.to_string_lossy().starts_with(".relctl-")), "no temp file left: {entries:?}");
}
