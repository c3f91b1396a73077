//! A Django app nobody here wrote (`django-admin startproject`), deployed as two builds at nested
//! routes behind real nginx: the admin redirects and links under each build's route, its CSS
//! comes from each build's own release through nginx, and a superuser made with `relctl exec`
//! logs in through the login form and lands on the admin index under the route. Then a Flask app
//! at a nested route of its own: `url_for` and `redirect` stay under it.

use std::process::Command;

use crate::common::env::Env;
use crate::common::scratch::scratch_dir;
use crate::common::show;

const MANIFEST: &str = r#"# A fresh `django-admin startproject ledger`, deployed by relctl.
app = "ledger"
component = "web"
exclude = ["static/", "db.sqlite3"]

[settings]
template = "builtin:django"
path = "ledger/deploy_{{ build }}.py"

[service]
exec = ".venv/bin/python -m gunicorn --preload --workers 2 ledger.wsgi:application"
environment = { DJANGO_SETTINGS_MODULE = "ledger.deploy_{{ build }}" }

[deps.venv]
path = ".venv"
key = ["requirements.txt"]
build = [
  "/usr/bin/python3 -m venv \"$RELCTL_DEP_DIR\"",
  "\"$RELCTL_DEP_DIR/bin/python\" -m pip install --disable-pip-version-check -q -r requirements.txt",
]

[hooks]
build = [".venv/bin/python manage.py collectstatic --noinput -v 0"]
release = [".venv/bin/python manage.py migrate --noinput -v 0"]

[static]
dir = "static"

[health]
path = "/admin/login/"

[vars]
settings_module = "ledger.settings"

[builds.production]
route = "/ledger"

[builds.staging]
route = "/ledger/staging"
"#;

/// Logs in through nginx as a browser would (cookie jar, the form's CSRF token), then opens the
/// admin index; prints the login response's status and Location, then the index's status and
/// whether it is the admin's own page.
const LOGIN: &str = r#"
import http.cookiejar, re, sys, urllib.error, urllib.parse, urllib.request
base, route = sys.argv[1], sys.argv[2]
jar = http.cookiejar.CookieJar()
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
page = opener.open(f"{base}{route}/admin/login/?next={route}/admin/").read().decode()
action = re.search(r'<form action="([^"]*)" method="post" id="login-form">', page).group(1)
token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
form = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": "admin",
                               "password": "s3cret-Pw-for-e2e", "next": f"{route}/admin/"}).encode()
try:
    r = opener.open(base + action, data=form)
    print(r.status, "")
except urllib.error.HTTPError as e:
    print(e.code, e.headers.get("Location", ""))
try:
    index = opener.open(f"{base}{route}/admin/")
    print(index.status, "Site administration" in index.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.headers.get("Location", ""))
print(action)
"#;

const FLASK_APP: &str = r#"from flask import Flask, redirect, url_for

app = Flask(__name__)


@app.get("/health")
def health():
    return "ok"


@app.get("/")
def index():
    return redirect(url_for("item", name="tea"))


@app.get("/items/<name>")
def item(name):
    return {"name": name, "self": url_for("item", name=name), "static": url_for("static", filename="x.css")}
"#;

const FLASK_MANIFEST: &str = r#"app = "shop"
[service]
exec = ".venv/bin/python -m gunicorn --workers 2 app:app"
[deps.venv]
path = ".venv"
key = ["requirements.txt"]
build = [
  "/usr/bin/python3 -m venv \"$RELCTL_DEP_DIR\"",
  "\"$RELCTL_DEP_DIR/bin/python\" -m pip install --disable-pip-version-check -q -r requirements.txt",
]
[health]
path = "/health"
[builds.main]
route = "/shop/v1"
"#;

#[test]
fn startproject_admin_works_under_nested_routes_with_its_static_files() {
    let env = Env::boot();
    let src = scratch_dir("django").join("ledger");
    // Django's own project template, from the real package, as a new user would start.
    env.sb.sh_ok(&format!(
        "python3 -m venv /root/dj && /root/dj/bin/pip install --disable-pip-version-check -q Django==5.2.19 \
         && mkdir -p {src} && /root/dj/bin/django-admin startproject ledger {src}",
        src = src.display()
    ));
    std::fs::write(src.join("requirements.txt"), "Django==5.2.19\ngunicorn==23.0.0\n").unwrap();
    std::fs::write(src.join("relctl.toml"), MANIFEST).unwrap();
    let manifest = src.join("relctl.toml");
    for build in ["production", "staging"] {
        let out = env.relctl_with(&manifest, &["build", build]);
        assert!(out.status.success(), "build {build}: {}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(".venv/bin/python -m compileall /opt/ledger/web/"),
            "{}",
            show(&out)
        );
    }
    // The sealed release carries the bytecode of the app's modules, compiled by the service's
    // interpreter before the seal (no build hook imports urls.py), readable by the service alone.
    let pyc = env.sh("ls /opt/ledger/web/production/current/ledger/__pycache__/urls.cpython-*.pyc");
    assert!(pyc.ends_with(".pyc"), "{pyc}");
    assert_eq!(env.sh(&format!("stat -c '%U:%G %a' {pyc}")), "root:ledger 640");
    // Python reads it rather than compiling again: its header holds the source's mtime and size.
    let check = format!(
        "cd /opt/ledger/web/production/current && .venv/bin/python -c \"import importlib.util, os, struct; \
         d = open('{pyc}', 'rb').read(16); st = os.stat('ledger/urls.py'); \
         print(d[:4] == importlib.util.MAGIC_NUMBER and struct.unpack('<4xIII', d) == (0, int(st.st_mtime) & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF))\""
    );
    assert_eq!(env.sh(&check), "True");

    let port = env.nginx_in_front(&manifest, "/etc/nginx/snippets/ledger.conf");
    let base = format!("http://127.0.0.1:{port}");
    let curl = |path: &str| env.sh(&format!("curl -sS -D - --max-time 10 '{base}{path}'"));

    for route in ["/ledger", "/ledger/staging"] {
        // The admin sends an anonymous user to its login page under the route, not to /admin/.
        let r = curl(&format!("{route}/admin/"));
        assert!(r.starts_with("HTTP/1.1 302"), "{r}");
        assert!(r.contains(&format!("Location: {route}/admin/login/?next={route}/admin/\r\n")), "{r}");
        // The login page's form and stylesheet are under the route too.
        let page = curl(&format!("{route}/admin/login/?next={route}/admin/"));
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains(&format!("<form action=\"{route}/admin/login/?next={route}/admin/\"")), "{page}");
        let css_url = format!("{route}/static/admin/css/base.css");
        assert!(page.contains(&format!("href=\"{css_url}\"")), "{page}");
        // nginx serves the CSS itself, from this build's current release.
        let css = curl(&css_url);
        assert!(css.starts_with("HTTP/1.1 200") && css.contains("Content-Type: text/css"), "{css}");
        assert!(css.contains("Cache-Control: public, max-age=3600"), "{css}");
        let build = if route == "/ledger" { "production" } else { "staging" };
        let release_css = env.sh(&format!("cat /opt/ledger/web/{build}/current/static/admin/css/base.css"));
        assert!(css.trim_end().ends_with(release_css.trim_end()), "served from {build}'s release");
    }
    let snippet = env.sh("cat /etc/nginx/snippets/ledger.conf");
    for build in ["production", "staging"] {
        let static_files = format!(
            "        root /opt/ledger/web/{build};\n        try_files /current/static/$relctl_static /.relctl-previous/static/$relctl_static =404;\n"
        );
        assert!(snippet.contains(&static_files), "{snippet}");
    }

    // A superuser made with relctl exec, with the build's settings and database, logs in
    // through nginx and lands on the admin index under the route.
    let out = env.relctl_with(
        &manifest,
        &[
            "exec",
            "production",
            "-e",
            "DJANGO_SUPERUSER_USERNAME=admin",
            "-e",
            "DJANGO_SUPERUSER_PASSWORD=s3cret-Pw-for-e2e",
            "-e",
            "DJANGO_SUPERUSER_EMAIL=admin@example.com",
            "--",
            ".venv/bin/python",
            "manage.py",
            "createsuperuser",
            "--noinput",
        ],
    );
    assert!(out.status.success(), "createsuperuser: {}", show(&out));
    let login = Command::new("python3").args(["-c", LOGIN, &base, "/ledger"]).output().unwrap();
    assert!(login.status.success(), "{}", show(&login));
    let text = String::from_utf8_lossy(&login.stdout).into_owned();
    assert_eq!(text, "302 /ledger/admin/\n200 True\n/ledger/admin/login/?next=/ledger/admin/\n", "{}", show(&login));
    // staging has its own database: the same login is refused there (the form comes back).
    let login = Command::new("python3").args(["-c", LOGIN, &base, "/ledger/staging"]).output().unwrap();
    let text = String::from_utf8_lossy(&login.stdout).into_owned();
    assert_eq!(
        text,
        "200 \n302 /ledger/staging/admin/login/?next=/ledger/staging/admin/\n/ledger/staging/admin/login/?next=/ledger/staging/admin/\n",
        "{}",
        show(&login)
    );

    // A Flask app under /shop/v1, in the same nginx: its URLs and redirects keep the route.
    let shop = scratch_dir("flask").join("shop");
    std::fs::create_dir_all(shop.join("static")).unwrap();
    std::fs::write(shop.join("static/x.css"), "p {}\n").unwrap();
    std::fs::write(shop.join("app.py"), FLASK_APP).unwrap();
    std::fs::write(shop.join("requirements.txt"), "Flask==3.1.3\ngunicorn==23.0.0\n").unwrap();
    std::fs::write(shop.join("relctl.toml"), FLASK_MANIFEST).unwrap();
    let shop_manifest = shop.join("relctl.toml");
    let out = env.relctl_with(&shop_manifest, &["build", "main"]);
    assert!(out.status.success(), "build shop: {}", show(&out));
    env.sh(": > /etc/nginx/snippets/shop.conf; sed -i 's|include /etc/nginx/snippets/ledger.conf;|& include /etc/nginx/snippets/shop.conf;|' /etc/nginx/sites-enabled/relctl-test");
    let out = env.relctl_with(
        &shop_manifest,
        &["nginx-snippet", "--output", "/etc/nginx/snippets/shop.conf", "--check", "--reload"],
    );
    assert!(out.status.success(), "{}", show(&out));
    let r = curl("/shop/v1/");
    assert!(r.starts_with("HTTP/1.1 302") && r.contains("Location: /shop/v1/items/tea\r\n"), "{r}");
    let item = curl("/shop/v1/items/tea");
    assert!(
        item.contains(r#""self":"/shop/v1/items/tea""#) && item.contains(r#""static":"/shop/v1/static/x.css""#),
        "{item}"
    );
}
