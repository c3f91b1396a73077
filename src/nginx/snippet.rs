//! The snippet: one `snippet.conf.tera` rendered for every route.

use serde::Serialize;

use crate::nginx::Route;

/// Where Debian's nginx keeps the four proxy headers every `location` sets.
pub const PROXY_PARAMS: &str = "/etc/nginx/proxy_params";

const TEMPLATE: &str = include_str!("snippet.conf.tera");

/// One route, as the template reads it.
#[derive(Serialize)]
struct RouteContext<'a> {
    app: &'a str,
    build: &'a str,
    release: &'a str,
    route: &'a str,
    /// The location prefix: `/api/`, or `/` for the root route.
    prefix: String,
    socket: String,
    /// `allow`/`deny` and basic-auth lines, each ending with a newline; empty when open.
    access: String,
    /// The app's URL prefix; `""` (not sent) on the root route, so a client cannot set one.
    script_name: String,
    static_url: Option<&'a str>,
    /// The regex of the static location's URIs, capturing the file's path (`relctl_static`).
    static_regex: Option<String>,
    static_root: Option<String>,
    static_dir: Option<&'a str>,
    static_max_age_s: Option<u64>,
    websocket: bool,
    read_timeout_s: Option<u64>,
    maintenance_flag: String,
    /// The named location of the maintenance page: `relctl_maintenance_<app>_<build>`.
    maintenance_location: String,
    build_dir: String,
    retry_after_s: u64,
    health_uri: Option<&'a str>,
}

/// Renders the snippet. `proxy_params` says whether the host has /etc/nginx/proxy_params; when
/// not, the same four headers are set inline.
pub fn render(routes: &[Route], proxy_params: bool) -> String {
    render_with(routes, proxy_params, None, true)
}

/// The location blocks of `routes` alone (no header), for a server block of `relctl site`:
/// `hsts`, the `Strict-Transport-Security` value, is repeated in the locations that set headers
/// of their own (nginx does not inherit `add_header` into them).
pub fn locations(routes: &[Route], proxy_params: bool, hsts: Option<&str>) -> String {
    render_with(routes, proxy_params, hsts, false)
}

fn render_with(routes: &[Route], proxy_params: bool, hsts: Option<&str>, header: bool) -> String {
    let routes: Vec<RouteContext> = routes
        .iter()
        .map(|r| RouteContext {
            app: &r.app,
            build: r.build.as_str(),
            release: r.release.as_ref().map_or("none yet", |id| id.as_str()),
            route: r.route.as_str(),
            prefix: if r.route.is_root() { "/".to_string() } else { format!("{}/", r.route) },
            socket: r.socket.display().to_string(),
            access: access_lines(r),
            script_name: if r.route.is_root() { "\"\"".to_string() } else { r.route.to_string() },
            static_url: r.static_files.as_ref().map(|st| st.url.as_str()),
            static_regex: r.static_files.as_ref().map(|st| {
                let prefix = if r.route.is_root() { "/".to_string() } else { format!("{}/", r.route) };
                format!("^{}(?<relctl_static>.*)$", regex_escape(&format!("{prefix}{}/", st.url)))
            }),
            static_root: r.static_files.as_ref().map(|st| st.build_dir.display().to_string()),
            static_dir: r.static_files.as_ref().map(|st| st.dir.as_str()),
            static_max_age_s: r.static_files.as_ref().map(|st| st.max_age_s),
            websocket: r.websocket,
            read_timeout_s: r.read_timeout_s,
            maintenance_flag: r.maintenance.flag.display().to_string(),
            maintenance_location: format!("relctl_maintenance_{}_{}", r.app, r.build),
            build_dir: r.maintenance.build_dir.display().to_string(),
            retry_after_s: r.maintenance.retry_after_s,
            health_uri: r.maintenance.health_uri.as_deref(),
        })
        .collect();
    let mut ctx = tera::Context::new();
    ctx.insert("routes", &routes);
    ctx.insert("proxy_params", &proxy_params.then_some(PROXY_PARAMS));
    ctx.insert("hsts", &hsts);
    ctx.insert("header", &header);
    let mut tera = tera::Tera::default();
    tera.autoescape_on(vec![]);
    // The template and its context are relctl's own: a failure is a bug, caught by the tests.
    tera.render_str(TEMPLATE, &ctx).expect("the nginx snippet template renders")
}

/// A URL path as an nginx (PCRE) regex matching it literally.
fn regex_escape(path: &str) -> String {
    path.chars()
        .map(|c| if c.is_ascii_alphanumeric() || "/_-".contains(c) { c.to_string() } else { format!("\\{c}") })
        .collect()
}

fn access_lines(r: &Route) -> String {
    let mut s = String::new();
    for a in &r.allow {
        s.push_str(&format!("    allow {a};\n"));
    }
    if !r.allow.is_empty() {
        s.push_str("    deny all;\n");
    }
    if let Some(h) = &r.htpasswd {
        s.push_str(&format!("    auth_basic \"{} {}\";\n    auth_basic_user_file {};\n", r.app, r.build, h.display()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nginx::StaticRoute;
    use crate::release::id::ReleaseId;

    fn route(build: &str, route: &str) -> Route {
        Route {
            app: "medctrl".into(),
            domain: None,
            build: build.parse().unwrap(),
            route: crate::route::Route::parse(route).unwrap(),
            socket: format!("/opt/medctrl/backend/{build}/gunicorn.sock").into(),
            release: Some(ReleaseId::parse("20261123T130501Z-abc1234").unwrap()),
            allow: vec![],
            htpasswd: None,
            static_files: None,
            websocket: false,
            read_timeout_s: None,
            maintenance: crate::nginx::MaintenanceRoute {
                flag: format!("/opt/medctrl/backend/{build}/.relctl-maintenance").into(),
                build_dir: format!("/opt/medctrl/backend/{build}").into(),
                retry_after_s: 300,
                health_uri: None,
            },
        }
    }

    #[test]
    fn snippet_for_the_example_builds() {
        let text = render(&[route("development", "/api"), route("testing", "/testapi")], true);
        let expected = r#"# Generated by relctl nginx-snippet; include it inside a server {} block. Do not edit.

# medctrl development (release 20261123T130501Z-abc1234): /api -> /opt/medctrl/backend/development/gunicorn.sock
location = /api {
    return 308 /api/$is_args$args;
}
location ^~ /api/ {
    # `relctl maintenance on development`: 503 and the maintenance page while this file exists.
    if (-f /opt/medctrl/backend/development/.relctl-maintenance) {
        return 503;
    }
    error_page 503 @relctl_maintenance_medctrl_development;
    include /etc/nginx/proxy_params;
    proxy_set_header SCRIPT_NAME /api;
    proxy_pass http://unix:/opt/medctrl/backend/development/gunicorn.sock:;
}
location @relctl_maintenance_medctrl_development {
    root /opt/medctrl/backend/development;
    try_files /.relctl-maintenance.html =503;
    default_type text/html;
    add_header Retry-After 300 always;
    add_header Cache-Control "no-store" always;
}

# medctrl testing (release 20261123T130501Z-abc1234): /testapi -> /opt/medctrl/backend/testing/gunicorn.sock
location = /testapi {
    return 308 /testapi/$is_args$args;
}
location ^~ /testapi/ {
    # `relctl maintenance on testing`: 503 and the maintenance page while this file exists.
    if (-f /opt/medctrl/backend/testing/.relctl-maintenance) {
        return 503;
    }
    error_page 503 @relctl_maintenance_medctrl_testing;
    include /etc/nginx/proxy_params;
    proxy_set_header SCRIPT_NAME /testapi;
    proxy_pass http://unix:/opt/medctrl/backend/testing/gunicorn.sock:;
}
location @relctl_maintenance_medctrl_testing {
    root /opt/medctrl/backend/testing;
    try_files /.relctl-maintenance.html =503;
    default_type text/html;
    add_header Retry-After 300 always;
    add_header Cache-Control "no-store" always;
}
"#;
        assert_eq!(text, expected);
    }

    #[test]
    fn inline_headers_without_proxy_params_and_root_route() {
        let text = render(&[route("production", "/")], false);
        assert!(!text.contains("location = "), "no redirect for /: {text}");
        assert!(text.contains("    error_page 503 @relctl_maintenance_medctrl_production;\n    proxy_set_header Host $host;\n    proxy_set_header X-Real-IP $remote_addr;\n    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    proxy_set_header X-Forwarded-Proto $scheme;\n"), "{text}");
        assert!(!text.contains("proxy_params"));
        assert!(text.contains("    proxy_set_header SCRIPT_NAME \"\";\n"), "a client cannot set a prefix: {text}");
    }

    #[test]
    fn static_files_websockets_and_timeouts() {
        let mut r = route("development", "/api");
        r.static_files = Some(StaticRoute {
            url: "static".into(),
            build_dir: "/opt/medctrl/backend/development".into(),
            dir: "API/static".into(),
            max_age_s: 600,
        });
        r.websocket = true;
        r.read_timeout_s = Some(120);
        r.allow = vec!["127.0.0.1".into()];
        let text = render(&[r], true);
        let static_block = "location ^~ /api/static/ {
    allow 127.0.0.1;
    deny all;
    # The current release's files, then those only the release before it has (its pages' assets).
    location ~ ^/api/static/(?<relctl_static>.*)$ {
        root /opt/medctrl/backend/development;
        try_files /current/API/static/$relctl_static /.relctl-previous/API/static/$relctl_static =404;
        add_header Cache-Control \"public, max-age=600\";
        access_log off;
    }
}
";
        assert!(text.contains(static_block), "{text}");
        assert!(text.contains("    proxy_http_version 1.1;\n    proxy_set_header Upgrade $http_upgrade;\n    proxy_set_header Connection $http_connection;\n    proxy_buffering off;\n    proxy_read_timeout 120s;\n    proxy_send_timeout 120s;\n"), "{text}");
        let plain = render(&[route("development", "/api")], true);
        assert!(!plain.contains("Upgrade") && !plain.contains("timeout") && !plain.contains("alias"), "{plain}");
        let root = render(
            &[Route {
                static_files: Some(StaticRoute {
                    url: "assets.v1".into(),
                    build_dir: "/x".into(),
                    dir: "s".into(),
                    max_age_s: 1,
                }),
                ..route("p", "/")
            }],
            true,
        );
        assert!(root.contains("location ^~ /assets.v1/ {"), "{root}");
        assert!(root.contains("    location ~ ^/assets\\.v1/(?<relctl_static>.*)$ {\n"), "a literal dot: {root}");
    }

    #[test]
    fn access_control_goes_in_both_blocks() {
        let mut r = route("testing", "/testapi");
        r.allow = vec!["10.0.0.0/8".into(), "127.0.0.1".into()];
        r.htpasswd = Some("/etc/nginx/medctrl-testing.htpasswd".into());
        let text = render(&[r], true);
        let access = "    allow 10.0.0.0/8;\n    allow 127.0.0.1;\n    deny all;\n    auth_basic \"medctrl testing\";\n    auth_basic_user_file /etc/nginx/medctrl-testing.htpasswd;\n";
        assert_eq!(text.matches(access).count(), 2, "{text}");
    }

    #[test]
    fn maintenance_answers_503_with_its_page_but_the_health_check_passes() {
        let mut r = route("production", "/shop");
        r.maintenance.health_uri = Some("/shop/health".into());
        r.maintenance.retry_after_s = 60;
        r.htpasswd = Some("/etc/nginx/x.htpasswd".into());
        let text = render(&[r], true);
        let health = "location = /shop/health {\n    auth_basic \"medctrl production\";\n    auth_basic_user_file /etc/nginx/x.htpasswd;\n    include /etc/nginx/proxy_params;\n    proxy_set_header SCRIPT_NAME /shop;\n    proxy_pass http://unix:/opt/medctrl/backend/production/gunicorn.sock:;\n}\n";
        assert!(text.contains(health), "{text}");
        assert!(text.contains("    if (-f /opt/medctrl/backend/production/.relctl-maintenance) {\n        return 503;\n    }\n    error_page 503 @relctl_maintenance_medctrl_production;\n"), "{text}");
        assert!(text.contains("    add_header Retry-After 60 always;\n"), "{text}");
        assert_eq!(text.matches("if (").count(), 1, "the health check's location has no maintenance check: {text}");
    }

    #[test]
    fn a_build_never_built_says_so() {
        let mut r = route("testing", "/t");
        r.release = None;
        assert!(render(&[r], true).contains("# medctrl testing (release none yet): /t -> "));
    }
}
