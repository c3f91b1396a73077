//! The server blocks of `relctl site`: for each domain, a server on the HTTP port (the ACME
//! challenge, then a 308 to HTTPS), and one on the HTTPS port (HTTP/2, the certificate, HSTS
//! when asked) with the locations of its builds — the same blocks `nginx-snippet` prints. A
//! domain without its certificate files yet is served on HTTP only, so the file always loads.

use std::path::PathBuf;

use serde::Serialize;

use crate::nginx::Route;

const TEMPLATE: &str = include_str!("site.conf.tera");

/// What the server blocks are made of.
#[derive(Debug, Clone, Serialize)]
pub struct Site {
    pub app: String,
    /// Named in the file's header.
    pub manifest: PathBuf,
    pub http_port: u16,
    pub https_port: u16,
    pub ipv6: bool,
    /// The `Strict-Transport-Security` value, if any.
    pub hsts: Option<String>,
    /// certbot's webroot, served at `/.well-known/acme-challenge/` on the HTTP port.
    pub webroot: Option<PathBuf>,
    pub servers: Vec<Server>,
}

/// One domain.
#[derive(Debug, Clone, Serialize)]
pub struct Server {
    pub name: String,
    pub routes: Vec<Route>,
    /// Certificate (with its chain) and key; None: HTTP only.
    pub tls: Option<(PathBuf, PathBuf)>,
}

#[derive(Serialize)]
struct ServerContext<'a> {
    name: &'a str,
    /// `development at /api, testing at /testapi`.
    builds: String,
    https: bool,
    cert: String,
    key: String,
    /// The builds' location blocks, indented for the server block.
    locations: String,
}

/// Renders the site. `proxy_params`: as for the snippet.
pub fn render(site: &Site, proxy_params: bool) -> String {
    let domains: Vec<ServerContext> = site
        .servers
        .iter()
        .map(|d| {
            let hsts = site.hsts.as_deref().filter(|_| d.tls.is_some());
            let locations = crate::nginx::snippet::locations(&d.routes, proxy_params, hsts);
            let (cert, key) = d.tls.clone().unwrap_or_default();
            ServerContext {
                name: &d.name,
                builds: d.routes.iter().map(|r| format!("{} at {}", r.build, r.route)).collect::<Vec<_>>().join(", "),
                https: d.tls.is_some(),
                cert: cert.display().to_string(),
                key: key.display().to_string(),
                locations: indent(locations.trim_matches('\n')),
            }
        })
        .collect();
    let mut ctx = tera::Context::new();
    ctx.insert("app", &site.app);
    ctx.insert("manifest", &site.manifest.display().to_string());
    ctx.insert("domains", &domains);
    ctx.insert("http_port", &site.http_port);
    ctx.insert("https_port", &site.https_port);
    ctx.insert(
        "https_port_suffix",
        &if site.https_port == 443 { String::new() } else { format!(":{}", site.https_port) },
    );
    ctx.insert("ipv6", &site.ipv6);
    ctx.insert("hsts", &site.hsts);
    ctx.insert("webroot", &site.webroot.as_ref().map(|w| w.display().to_string()));
    let mut tera = tera::Tera::default();
    tera.autoescape_on(vec![]);
    // The template and its context are relctl's own: a failure is a bug, caught by the tests.
    tera.render_str(TEMPLATE, &ctx).expect("the nginx site template renders")
}

fn indent(text: &str) -> String {
    text.lines().map(|l| if l.is_empty() { String::new() } else { format!("    {l}") }).collect::<Vec<_>>().join("\n")
}
