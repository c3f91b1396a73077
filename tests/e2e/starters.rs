//! Real projects on the first try: each generated in the test by its own tool (`wagtail start`,
//! the Flask tutorial from Flask's own source, FastAPI's first steps with a pyproject.toml), then
//! deployed only as the README's quick start says — `relctl init`, `relctl build development`,
//! `relctl nginx-snippet --output … --reload` — and looked at through nginx the way its users would:
//! pages, every stylesheet and script they load, logging in, an admin page. A release broken to
//! answer 500 is refused while the one before keeps serving, with its traceback in `relctl logs`.

use std::path::Path;
use std::process::Command;

use crate::common::env::{Env, RELCTL};
use crate::common::scratch::scratch_dir;
use crate::common::{show, stdout};

/// `relctl init` then `relctl build development` in `dir`, as a user would; init's output.
fn init_and_build(env: &Env, dir: &Path, unit: &str) -> String {
    let d = dir.display();
    let out = env.sb.sh(&format!("cd '{d}' && {RELCTL} init"));
    assert!(out.status.success(), "relctl init: {}", show(&out));
    let said = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    let out = env.sb.sh(&format!("cd '{d}' && {RELCTL} build development"));
    assert!(
        out.status.success(),
        "relctl build development: {}\n--- relctl.toml ---\n{}\n{}",
        show(&out),
        std::fs::read_to_string(dir.join("relctl.toml")).unwrap_or_default(),
        env.sb.journal(unit, 60)
    );
    said
}

/// GET through nginx: (status line and headers, body).
fn get(env: &Env, url: &str) -> (String, String) {
    let out = env.sh(&format!("curl -sS -D - --max-time 20 '{url}'"));
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (head.to_string(), body.to_string())
}

/// Every `/dev/static/...` URL a page loads (`href=` and `src=`).
fn static_urls(page: &str) -> Vec<String> {
    let mut urls: Vec<String> = ["href=\"", "src=\""]
        .iter()
        .flat_map(|attr| page.match_indices(attr).map(move |(i, _)| &page[i + attr.len()..]))
        .filter_map(|rest| rest.split_once('"').map(|(u, _)| u.to_string()))
        .filter(|u| u.contains("/static/"))
        .collect();
    urls.sort();
    urls.dedup();
    urls
}

/// Every static URL of `page` is under /dev and answers 200 through nginx; returns how many.
fn assets_load(env: &Env, base: &str, page: &str) -> usize {
    let urls = static_urls(page);
    for u in &urls {
        assert!(u.starts_with("/dev/static/"), "a static URL outside the route: {u}\n{page}");
        let (head, _) = get(env, &format!("{base}{u}"));
        assert!(head.starts_with("HTTP/1.1 200"), "{u}: {head}");
    }
    urls.len()
}

/// Logs in through a login form as a browser would (cookie jar, the form's CSRF token when it has
/// one), then opens `after`; prints the login answer's status and Location, then `after`'s status
/// and body.
const LOGIN: &str = r#"
import http.cookiejar, re, sys, urllib.error, urllib.parse, urllib.request
base, login, after, user, password = sys.argv[1:6]
jar = http.cookiejar.CookieJar()
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
page = opener.open(base + login).read().decode()
form = {"username": user, "password": password}
token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
if token:
    form["csrfmiddlewaretoken"] = token.group(1)
nxt = re.search(r'name="next" value="([^"]*)"', page)
if nxt:
    form["next"] = nxt.group(1)
try:
    r = opener.open(base + login, data=urllib.parse.urlencode(form).encode())
    print(r.status, "")
except urllib.error.HTTPError as e:
    print(e.code, e.headers.get("Location", ""))
try:
    page = opener.open(base + after)
    print(page.status)
    print(page.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.headers.get("Location", ""))
"#;

fn login(base: &str, login: &str, after: &str, user: &str, password: &str) -> String {
    let out = Command::new("python3").args(["-c", LOGIN, base, login, after, user, password]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    stdout(&out)
}

#[test]
fn a_wagtail_site_works_under_its_route_and_a_release_answering_500_never_goes_live() {
    let env = Env::boot();
    // `wagtail start cms` in a checkout called app, as in the issue (Wagtail 7.0 LTS, the newest whose
    // project template pins a Django that Debian 12's Python 3.11 runs): settings split in
    // base/dev/production, no SECRET_KEY outside dev.py, Wagtail reads STATIC_URL at import.
    let dir = scratch_dir("wagtail").join("app");
    let d = dir.display();
    env.sh(&format!(
        "python3 -m venv /root/wt && /root/wt/bin/pip install --disable-pip-version-check -q 'wagtail>=7.0,<7.1' \
         && mkdir -p '{d}' && /root/wt/bin/wagtail start cms '{d}'"
    ));
    let said = init_and_build(&env, &dir, "cms@development.service");
    assert!(said.contains("found: app name cms (from the project's package, cms; the directory's name, app, says nothing about the app)"), "{said}");
    assert!(said.contains("found: settings cms.settings.production ("), "{said}");
    let text = std::fs::read_to_string(dir.join("relctl.toml")).unwrap();
    assert!(text.contains("cms.settings.dev is for `manage.py runserver`"), "{text}");
    // The key relctl generated for the build: root's alone, and what the app runs with.
    assert_eq!(env.sh("stat -c '%a %U' /opt/cms/app/development/.relctl-secret-key"), "600 root");

    let port = env.nginx_in_front(&dir.join("relctl.toml"), "/etc/nginx/snippets/cms.conf");
    let base = format!("http://127.0.0.1:{port}");
    // The home page Wagtail made, with its stylesheet under the route.
    let (head, home) = get(&env, &format!("{base}/dev/"));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{home}");
    assert!(home.contains("Welcome to your new Wagtail site!"), "{home}");
    let loaded = assets_load(&env, &base, &home);
    assert!(loaded >= 2, "the home page's CSS: {loaded}\n{home}");
    // The admin sends an anonymous user to its login page under the route; the page's CSS and JS
    // (ManifestStaticFilesStorage's hashed names, served by nginx) all load.
    let (head, _) = get(&env, &format!("{base}/dev/admin/"));
    assert!(head.starts_with("HTTP/1.1 302"), "{head}");
    assert!(head.contains("Location: /dev/admin/login/?next=/dev/admin/\r\n"), "{head}");
    let (head, page) = get(&env, &format!("{base}/dev/admin/login/?next=/dev/admin/"));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let loaded = assets_load(&env, &base, &page);
    assert!(loaded >= 5, "the admin's CSS and JS: {loaded}\n{page}");
    assert!(static_urls(&page).iter().any(|u| u.ends_with(".js")), "{page}");

    // A superuser made with relctl exec logs in through nginx and lands on the dashboard.
    let out = env.sb.sh(&format!(
        "cd '{d}' && {RELCTL} exec development -e DJANGO_SUPERUSER_USERNAME=admin -e DJANGO_SUPERUSER_PASSWORD=s3cret-Pw-for-e2e \
         -e DJANGO_SUPERUSER_EMAIL=admin@example.com -- .venv/bin/python manage.py createsuperuser --noinput"
    ));
    assert!(out.status.success(), "createsuperuser: {}", show(&out));
    let text = login(&base, "/dev/admin/login/?next=/dev/admin/", "/dev/admin/", "admin", "s3cret-Pw-for-e2e");
    assert!(text.starts_with("302 /dev/admin/\n200\n"), "{}", &text[..text.len().min(400)]);
    assert!(text.contains("Dashboard"), "the admin's dashboard: {}", &text[..text.len().min(2000)]);
    let dashboard = text.split_once("200\n").map(|(_, b)| b).unwrap_or("");
    assets_load(&env, &base, dashboard);

    // A release that answers 500 (its home page template is broken) is refused; the one before
    // keeps serving, and the traceback is in relctl logs.
    let live = env.sh("readlink /opt/cms/app/development/current");
    std::fs::write(dir.join("home/templates/home/home_page.html"), "{% url 'no-such-view' %}\n").unwrap();
    let out = env.sb.sh(&format!("cd '{d}' && {RELCTL} build development"));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("GET /dev/ (SCRIPT_NAME: /dev)") && err.contains("HTTP 500"), "{err}");
    assert!(err.contains("NoReverseMatch"), "the gate's failure shows the app's error: {err}");
    assert_eq!(env.sh("readlink /opt/cms/app/development/current"), live);
    let (head, home) = get(&env, &format!("{base}/dev/"));
    assert!(head.starts_with("HTTP/1.1 200") && home.contains("Welcome to your new Wagtail site!"), "{head}");
    let out = env.sb.sh(&format!("cd '{d}' && {RELCTL} logs development -n 200"));
    let logs = stdout(&out);
    assert!(logs.contains("Internal Server Error: /") && logs.contains("Traceback (most recent call last):"), "{logs}");
    assert!(logs.contains("NoReverseMatch"), "{logs}");
}

#[test]
fn the_flask_tutorial_works_under_its_route_with_its_database_in_the_state_dir() {
    let env = Env::boot();
    // The Flask tutorial's blog (flaskr), from Flask's own source distribution.
    let dir = scratch_dir("flaskr").join("flask-tutorial");
    let d = dir.display();
    env.sh(&format!(
        "python3 -m venv /root/fl && /root/fl/bin/pip download --disable-pip-version-check -q --no-binary :all: --no-deps \
         -d /root/fl-src flask==3.1.3 && tar -xzf /root/fl-src/flask-3.1.3.tar.gz -C /root/fl-src \
         && cp -r /root/fl-src/flask-3.1.3/examples/tutorial '{d}'"
    ));
    let said = init_and_build(&env, &dir, "flask-tutorial@development.service");
    assert!(said.contains("found: a Flask app: flaskr:create_app() (flaskr/__init__.py, WSGI)"), "{said}");
    // The database init-db made lives in the build's state directory, the service user's.
    assert_eq!(env.sh("stat -c '%U %a' /var/lib/flask-tutorial/app/development/flaskr.sqlite"), "flask-tutorial 600");

    let port = env.nginx_in_front(&dir.join("relctl.toml"), "/etc/nginx/snippets/flaskr.conf");
    let base = format!("http://127.0.0.1:{port}");
    let (head, index) = get(&env, &format!("{base}/dev/"));
    assert!(head.starts_with("HTTP/1.1 200") && index.contains("<h1>Posts</h1>"), "{head}\n{index}");
    assert_eq!(assets_load(&env, &base, &index), 1, "style.css: {index}");
    assert!(index.contains("href=\"/dev/auth/register\""), "{index}");
    // Register, then log in through nginx: the blog greets the user under the route.
    let out = env.sh(&format!(
        "curl -sS -o /dev/null -w '%{{http_code}} %{{redirect_url}}' --data 'username=ada&password=pw-for-e2e' '{base}/dev/auth/register'"
    ));
    assert_eq!(out, format!("302 {base}/dev/auth/login"));
    let text = login(&base, "/dev/auth/login", "/dev/", "ada", "pw-for-e2e");
    assert!(text.starts_with("302 /dev/\n200\n"), "{text}");
    assert!(text.contains("<span>ada</span>") && text.contains("href=\"/dev/auth/logout\""), "{text}");

    // A second release keeps the database: init-db ran once.
    let out = env.sb.sh(&format!("cd '{d}' && {RELCTL} build development"));
    assert!(out.status.success(), "{}", show(&out));
    let text = login(&base, "/dev/auth/login", "/dev/", "ada", "pw-for-e2e");
    assert!(text.starts_with("302 /dev/\n200\n"), "the user is still there: {text}");
}

const FASTAPI_MAIN: &str = r#"from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def root():
    return {"message": "Hello World"}


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None):
    return {"item_id": item_id, "q": q}
"#;

#[test]
fn a_fastapi_project_works_under_its_route_docs_included() {
    let env = Env::boot();
    // FastAPI's first steps, in a project with a pyproject.toml, as `uv init` and the docs have it.
    let dir = scratch_dir("fastapi").join("orders");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("main.py"), FASTAPI_MAIN).unwrap();
    std::fs::write(
        dir.join("pyproject.toml"),
        "[project]\nname = \"orders\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\ndependencies = [\"fastapi\"]\n",
    )
    .unwrap();
    let said = init_and_build(&env, &dir, "orders@development.service");
    assert!(said.contains("found: a FastAPI app: main:app (main.py, ASGI)"), "{said}");

    let port = env.nginx_in_front(&dir.join("relctl.toml"), "/etc/nginx/snippets/orders.conf");
    let base = format!("http://127.0.0.1:{port}");
    let (head, body) = get(&env, &format!("{base}/dev/"));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
    assert_eq!(body, r#"{"message":"Hello World"}"#);
    let (_, body) = get(&env, &format!("{base}/dev/items/5?q=tea"));
    assert_eq!(body, r#"{"item_id":5,"q":"tea"}"#);
    // The interactive docs load their schema from under the route.
    let (head, docs) = get(&env, &format!("{base}/dev/docs"));
    assert!(head.starts_with("HTTP/1.1 200") && docs.contains("url: '/dev/openapi.json'"), "{head}\n{docs}");
    let (head, schema) = get(&env, &format!("{base}/dev/openapi.json"));
    assert!(head.starts_with("HTTP/1.1 200") && schema.contains("\"/items/{item_id}\""), "{head}\n{schema}");
}
