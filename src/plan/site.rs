//! `relctl site`: the server blocks of the builds with a `domain`, resolved from the manifest —
//! which domain answers which routes, where each domain's certificate comes from (the ACME CA
//! through certbot, or files the user provides), and the renewal timer's units.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::error::Error;
use crate::manifest::Loaded;
use crate::name::BuildName;
use crate::plan::units::UnitFile;
use crate::plan::AppPlan;
use crate::release::render;

const SERVICE_TEMPLATE: &str = include_str!("../../units/certs.service.tera");
const TIMER_TEMPLATE: &str = include_str!("../../units/certs.timer.tera");

/// Everything `relctl site` (and `relctl renew`) does, resolved.
#[derive(Debug, Clone, Serialize)]
pub struct SitePlan {
    pub app: String,
    /// The nginx file the server blocks go to (inside nginx's `http {}`).
    pub config: PathBuf,
    pub http_port: u16,
    pub https_port: u16,
    /// The `Strict-Transport-Security` value (`max-age=N`), when `[site] hsts_max_age_s` is set.
    pub hsts: Option<String>,
    /// Listen on IPv6 too (the host has IPv6).
    pub ipv6: bool,
    /// In manifest order of their first build.
    pub domains: Vec<DomainPlan>,
    /// How certificates are obtained from the ACME CA; None when no domain needs one.
    pub acme: Option<AcmePlan>,
    /// The renewal timer and its service (written only with an ACME domain).
    pub renewal: Vec<UnitFile>,
    pub renewal_timer: String,
    pub renewal_service: String,
    /// Where the renewal units go (systemd's unit directory).
    pub unit_dir: PathBuf,
}

/// One domain: its server blocks and their routes.
#[derive(Debug, Clone, Serialize)]
pub struct DomainPlan {
    pub name: String,
    pub routes: Vec<crate::nginx::Route>,
    pub certificate: Certificate,
}

/// Where a domain's certificate and key come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum Certificate {
    /// Obtained and renewed by relctl (certbot, HTTP-01 through nginx): certbot's live files.
    Acme { cert: PathBuf, key: PathBuf },
    /// `[site.certificates."<domain>"]`: the user's files.
    Files { cert: PathBuf, key: PathBuf },
}

impl Certificate {
    pub fn cert(&self) -> &Path {
        match self {
            Certificate::Acme { cert, .. } | Certificate::Files { cert, .. } => cert,
        }
    }

    pub fn key(&self) -> &Path {
        match self {
            Certificate::Acme { key, .. } | Certificate::Files { key, .. } => key,
        }
    }

    pub fn is_acme(&self) -> bool {
        matches!(self, Certificate::Acme { .. })
    }
}

/// certbot's settings and directories for this app.
#[derive(Debug, Clone, Serialize)]
pub struct AcmePlan {
    pub directory: String,
    pub email: Option<String>,
    pub ca_bundle: Option<PathBuf>,
    /// Where certbot puts the HTTP-01 answers and nginx serves them from
    /// (`/.well-known/acme-challenge/` on port 80 of every domain): world-readable, public.
    pub webroot: PathBuf,
    /// certbot's `--config-dir` (account, keys, certificates; mode 0700), `--work-dir`,
    /// `--logs-dir`, all under `acme_dir`.
    pub acme_dir: PathBuf,
}

impl AcmePlan {
    pub fn config_dir(&self) -> PathBuf {
        self.acme_dir.join("config")
    }
    pub fn work_dir(&self) -> PathBuf {
        self.acme_dir.join("work")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.acme_dir.join("logs")
    }
}

impl SitePlan {
    /// The server blocks, with HTTPS for the domains `has_certificate` says have theirs now.
    pub fn nginx(&self, manifest: &Path, has_certificate: impl Fn(&DomainPlan) -> bool) -> crate::nginx::site::Site {
        crate::nginx::site::Site {
            app: self.app.clone(),
            manifest: manifest.to_path_buf(),
            http_port: self.http_port,
            https_port: self.https_port,
            ipv6: self.ipv6,
            hsts: self.hsts.clone(),
            webroot: self.acme.as_ref().map(|a| a.webroot.clone()),
            servers: self
                .domains
                .iter()
                .map(|d| crate::nginx::site::Server {
                    name: d.name.clone(),
                    routes: d.routes.clone(),
                    tls: has_certificate(d)
                        .then(|| (d.certificate.cert().to_path_buf(), d.certificate.key().to_path_buf())),
                })
                .collect(),
        }
    }
}

/// certbot's live files of `domain` under `config_dir`.
fn live(config_dir: &Path, domain: &str) -> Certificate {
    let dir = config_dir.join("live").join(domain);
    Certificate::Acme { cert: dir.join("fullchain.pem"), key: dir.join("privkey.pem") }
}

/// The renewal timer's unit names: `relctl-<app>-certs.timer` and `.service`.
pub fn renewal_units(app: &str) -> (String, String) {
    (format!("relctl-{app}-certs.timer"), format!("relctl-{app}-certs.service"))
}

/// The site of `app`: every build with a domain (declared, and members of families on disk),
/// but `without` (a build being destroyed). `relctl`: the binary the renewal service runs.
pub fn site(app: &AppPlan, loaded: &Loaded, relctl: &Path, without: Option<&BuildName>) -> Result<SitePlan> {
    let s = &loaded.manifest.site;
    let name = app.layout.app.clone();
    let mut routes = crate::plan::routes::nginx_routes(app, loaded, &[])?;
    routes.retain(|r| Some(&r.build) != without);
    let state = crate::release::layout::relctl_state_dir(&name);
    let acme = AcmePlan {
        directory: s.acme_directory.clone(),
        email: s.acme_email.clone(),
        ca_bundle: match &s.acme_ca_bundle {
            Some(p) => Some(trusted_file(loaded, "[site] acme_ca_bundle", p, false)?),
            None => None,
        },
        webroot: state.join("acme-challenge"),
        acme_dir: state.join("acme"),
    };
    let mut domains: Vec<DomainPlan> = Vec::new();
    for r in routes {
        let Some(d) = r.domain.clone() else { continue };
        match domains.iter_mut().find(|x| x.name == d) {
            Some(x) => x.routes.push(r),
            None => {
                let certificate = match s.certificates.get(&d) {
                    Some(c) => {
                        let what = format!("[site.certificates.\"{d}\"]");
                        Certificate::Files {
                            cert: trusted_file(loaded, &format!("{what} cert"), &c.cert, false)?,
                            key: trusted_file(loaded, &format!("{what} key"), &c.key, true)?,
                        }
                    }
                    None => live(&acme.config_dir(), &d),
                };
                domains.push(DomainPlan { name: d, routes: vec![r], certificate });
            }
        }
    }
    let any_acme = domains.iter().any(|d| d.certificate.is_acme());
    let (renewal_timer, renewal_service) = renewal_units(&name);
    let renewal = if any_acme { renewal_files(app, &domains, relctl)? } else { Vec::new() };
    Ok(SitePlan {
        config: s.config.clone().unwrap_or_else(|| PathBuf::from(format!("/etc/nginx/conf.d/relctl-{name}.conf"))),
        app: name,
        http_port: s.http_port,
        https_port: s.https_port,
        hsts: (s.hsts_max_age_s > 0).then(|| format!("max-age={}", s.hsts_max_age_s)),
        ipv6: has_ipv6(),
        domains,
        acme: any_acme.then_some(acme),
        renewal,
        renewal_timer,
        renewal_service,
        unit_dir: app.layout.unit_dir.clone(),
    })
}

/// Whether the host has IPv6 addresses (nginx refuses `listen [::]:…` without).
fn has_ipv6() -> bool {
    std::fs::read_to_string("/proc/net/if_inet6").is_ok_and(|s| !s.trim().is_empty())
}

/// A file the manifest names for nginx's master (root) to read (see `routes::root_file`); a key
/// must also be unreadable by other users.
fn trusted_file(loaded: &Loaded, what: &str, p: &Path, secret: bool) -> Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let path = crate::plan::routes::root_file(loaded, what, p)?;
    let mode = std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?.mode();
    if secret && mode & 0o004 != 0 {
        return Err(Error::Usage(format!(
            "{}: {what} {} is readable by every user (mode {:04o}); a private key must not be: chmod 600 {}",
            loaded.path.display(),
            path.display(),
            mode & 0o7777,
            path.display()
        ))
        .into());
    }
    Ok(path)
}

#[derive(Serialize)]
struct RenewalContext<'a> {
    app: &'a str,
    domains: String,
    relctl: String,
    manifest: String,
    service: &'a str,
    timer: &'a str,
}

fn renewal_files(app: &AppPlan, domains: &[DomainPlan], relctl: &Path) -> Result<Vec<UnitFile>> {
    let l = &app.layout;
    let (timer, service) = renewal_units(&l.app);
    let ctx = RenewalContext {
        app: &l.app,
        domains: domains
            .iter()
            .filter(|d| d.certificate.is_acme())
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        relctl: systemd_quote(relctl)?,
        manifest: systemd_quote(&app.manifest)?,
        service: &service,
        timer: &timer,
    };
    Ok(vec![
        UnitFile {
            path: l.unit_dir.join(&service),
            contents: render::render_value("units/certs.service.tera", SERVICE_TEMPLATE, &ctx)?,
        },
        UnitFile {
            path: l.unit_dir.join(&timer),
            contents: render::render_value("units/certs.timer.tera", TIMER_TEMPLATE, &ctx)?,
        },
    ])
}

/// A path as one argument of `ExecStart=`: double-quoted, with `\`, `"` and systemd's `%`
/// specifiers escaped.
fn systemd_quote(p: &Path) -> Result<String> {
    let s = p.to_str().with_context(|| format!("{} is not UTF-8", p.display()))?;
    if s.chars().any(char::is_control) {
        anyhow::bail!("{} contains a control character", p.display());
    }
    Ok(format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace('%', "%%")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;

    const SITE: &str = r#"
app = "medctrl"
[service]
exec = ".venv/bin/gunicorn app:app"
[health]
path = "/health"
[site]
hsts_max_age_s = 31536000
acme_email = "ops@example.org"
[builds.production]
domain = "example.org"
[builds.development]
route = "/api"
[builds.docs]
domain = "example.org"
route = "/docs"
websocket = true
[builds.staging]
domain = "staging.example.org"
"#;

    fn plan_of(text: &str) -> (tempfile::TempDir, Loaded, SitePlan) {
        let tmp = tempfile::tempdir().unwrap();
        let loaded = Loaded {
            path: tmp.path().join("relctl.toml"),
            dir: tmp.path().into(),
            manifest: manifest::parse(text).unwrap(),
        };
        let app = crate::plan::app(&loaded).unwrap();
        let plan = site(&app, &loaded, Path::new("/usr/bin/relctl"), None).unwrap();
        (tmp, loaded, plan)
    }

    #[test]
    fn domains_group_their_builds_and_get_acme_certificates() {
        let (_tmp, loaded, plan) = plan_of(SITE);
        let names: Vec<(&str, Vec<String>)> = plan
            .domains
            .iter()
            .map(|d| (d.name.as_str(), d.routes.iter().map(|r| format!("{} {}", r.build, r.route)).collect()))
            .collect();
        assert_eq!(
            names,
            [
                ("example.org", vec!["production /".into(), "docs /docs".into()]),
                ("staging.example.org", vec!["staging /".into()])
            ]
        );
        assert_eq!(
            plan.domains[0].certificate,
            Certificate::Acme {
                cert: "/var/lib/relctl/medctrl/acme/config/live/example.org/fullchain.pem".into(),
                key: "/var/lib/relctl/medctrl/acme/config/live/example.org/privkey.pem".into(),
            }
        );
        assert_eq!(plan.config, Path::new("/etc/nginx/conf.d/relctl-medctrl.conf"));
        assert_eq!(plan.hsts.as_deref(), Some("max-age=31536000"));
        let acme = plan.acme.as_ref().unwrap();
        assert_eq!(acme.webroot, Path::new("/var/lib/relctl/medctrl/acme-challenge"));
        assert_eq!(acme.directory, crate::manifest::LETS_ENCRYPT);
        // nginx-snippet keeps the builds without a domain.
        let app = crate::plan::app(&loaded).unwrap();
        let snippet = crate::plan::routes::snippet_routes(&app, &loaded, &[]).unwrap();
        assert_eq!(snippet.iter().map(|r| r.build.as_str()).collect::<Vec<_>>(), ["development"]);
        let err = crate::plan::routes::snippet_routes(&app, &loaded, &["staging".parse().unwrap()]).unwrap_err();
        assert!(err.to_string().starts_with("build staging has domain = \"staging.example.org\""), "{err}");
        // The renewal timer runs this relctl with this manifest.
        let service = &plan.renewal[0];
        assert_eq!(service.path, Path::new("/etc/systemd/system/relctl-medctrl-certs.service"));
        let exec = format!("ExecStart=\"/usr/bin/relctl\" --manifest \"{}\" renew\n", loaded.path.display());
        assert!(
            service.contents.contains(&exec) && service.contents.contains(crate::release::layout::MARKER),
            "{}",
            service.contents
        );
        let timer = &plan.renewal[1];
        assert!(
            timer.contents.contains("Unit=relctl-medctrl-certs.service\n")
                && timer.contents.contains("WantedBy=timers.target")
        );
    }

    #[test]
    fn a_domain_is_https_only_once_it_has_its_certificate() {
        let (_tmp, loaded, mut plan) = plan_of(SITE);
        plan.ipv6 = false;
        let without = crate::nginx::site::render(&plan.nginx(&loaded.path, |_| false), true);
        assert!(
            !without.contains("ssl") && !without.contains("https://") && !without.contains("Strict-Transport"),
            "{without}"
        );
        assert_eq!(without.matches("listen 80;").count(), 2);
        assert_eq!(without.matches("location ^~ /.well-known/acme-challenge/ {").count(), 2);
        assert!(without.contains("    location ^~ /docs/ {"), "the routes are served on HTTP meanwhile: {without}");
        let with = crate::nginx::site::render(&plan.nginx(&loaded.path, |d| d.name == "example.org"), true);
        let expected_start = format!(
            "# Generated by relctl site for medctrl from {}; `relctl site` rewrites it, do not edit.
# Included inside nginx's http {{}} block.

# example.org: production at /, docs at /docs; HTTPS with /var/lib/relctl/medctrl/acme/config/live/example.org/fullchain.pem
server {{
    listen 80;
    server_name example.org;
    # The ACME CA's HTTP-01 requests, answered from certbot's webroot.
    location ^~ /.well-known/acme-challenge/ {{
        root /var/lib/relctl/medctrl/acme-challenge;
        default_type text/plain;
        try_files $uri =404;
    }}
    location / {{
        return 308 https://example.org$request_uri;
    }}
}}
server {{
    listen 443 ssl http2;
    server_name example.org;
    ssl_certificate /var/lib/relctl/medctrl/acme/config/live/example.org/fullchain.pem;
    ssl_certificate_key /var/lib/relctl/medctrl/acme/config/live/example.org/privkey.pem;
    add_header Strict-Transport-Security \"max-age=31536000\" always;
    # medctrl production (release none yet): / -> ",
            loaded.path.display()
        );
        assert!(with.starts_with(&expected_start), "{with}");
        assert!(
            with.contains("        add_header Strict-Transport-Security \"max-age=31536000\" always;\n"),
            "the maintenance page has its own headers: {with}"
        );
        let staging = &with[with.find("# staging.example.org").unwrap()..];
        assert!(staging.contains("HTTP only until it has a certificate") && !staging.contains("ssl"), "{staging}");
        // nginx itself accepts both (as root, its -t reads the certificate files named: none here).
        crate::nginx::control::check_in(&without, crate::nginx::control::Include::Http).unwrap();
    }

    #[test]
    fn a_private_key_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let (tmp, _, _) = plan_of(SITE);
        let key = tmp.path().join("staging.key");
        std::fs::write(tmp.path().join("staging.pem"), "x").unwrap();
        std::fs::write(&key, "x").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = format!(
            "{SITE}[site.certificates.\"staging.example.org\"]\ncert = \"staging.pem\"\nkey = \"staging.key\"\n"
        );
        let loaded = Loaded {
            path: tmp.path().join("relctl.toml"),
            dir: tmp.path().into(),
            manifest: manifest::parse(&text).unwrap(),
        };
        let app = crate::plan::app(&loaded).unwrap();
        let err = site(&app, &loaded, Path::new("/usr/bin/relctl"), None).unwrap_err();
        assert!(crate::error::is_usage(&err));
        assert!(
            err.to_string().ends_with(&format!(
                "is readable by every user (mode 0644); a private key must not be: chmod 600 {}",
                key.display()
            )),
            "{err}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let plan = site(&app, &loaded, Path::new("/usr/bin/relctl"), None).unwrap();
        assert_eq!(plan.domains[1].certificate, Certificate::Files { cert: tmp.path().join("staging.pem"), key });
    }

    #[test]
    fn exec_paths_are_quoted_for_systemd() {
        assert_eq!(systemd_quote(Path::new("/usr/bin/relctl")).unwrap(), "\"/usr/bin/relctl\"");
        assert_eq!(
            systemd_quote(Path::new("/srv/my app/100%/relctl.toml")).unwrap(),
            "\"/srv/my app/100%%/relctl.toml\""
        );
        assert!(systemd_quote(Path::new("/srv/a\nb")).is_err());
    }
}
