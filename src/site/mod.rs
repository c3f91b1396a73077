//! `relctl site` and `relctl renew`: the app's server blocks installed (validated, atomic,
//! reloaded, restored on failure), certificates obtained and renewed by certbot, and the renewal
//! timer. `cert` reads a certificate's dates; `certbot` runs certbot for one domain.

pub mod cert;
pub mod certbot;

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::host::atomic;
use crate::nginx::control::{self, Steps};
use crate::plan::site::{Certificate, DomainPlan, SitePlan};
use crate::release::layout::MARKER;
use crate::report::Report;
use crate::systemd::manager::Manager;
use crate::systemd::unit::JobKind;

/// `relctl site` writes the renewal timer too; `relctl renew` (what the timer runs) does not; after
/// `relctl build` of a build with a domain the site has not served yet, only that domain's
/// certificate is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run<'a> {
    Site,
    Renew,
    Build(&'a str),
}

/// What happened to one domain.
#[derive(Debug, Clone, Serialize)]
pub struct DomainOutcome {
    pub domain: String,
    #[serde(flatten)]
    pub certificate: Certificate,
    /// Served over HTTPS now.
    pub https: bool,
    /// Its certificate was obtained or renewed by this run.
    pub renewed: bool,
    /// It had none before this run.
    pub obtained: bool,
    pub expires: Option<cert::CertInfo>,
    /// Why certbot could not obtain or renew it.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub config: std::path::PathBuf,
    pub domains: Vec<DomainOutcome>,
    /// nginx was reloaded (its configuration or a certificate changed).
    pub reloaded: bool,
}

/// Whether the domain's certificate and key are there for nginx to load.
pub fn has_certificate(d: &DomainPlan) -> bool {
    d.certificate.cert().is_file() && d.certificate.key().is_file()
}

/// Installs the site: the server blocks as they can be served now; then, for each ACME domain,
/// certbot (which asks the CA only when the certificate is missing or due); then the server
/// blocks again, with HTTPS for what certbot obtained, and nginx reloaded only when a file or
/// a certificate changed. `Run::Site` also writes and starts the renewal timer. A domain certbot
/// fails for stays as it was (HTTP only without a certificate); the error names every one.
pub fn apply(
    plan: &SitePlan,
    manifest: &Path,
    systemd: &dyn Manager,
    run: Run<'_>,
    report: &mut Report,
) -> Result<Outcome> {
    let proxy_params = Path::new(crate::nginx::snippet::PROXY_PARAMS).exists();
    if let Some(acme) = &plan.acme {
        private_dirs(acme)?;
    }
    let t = Instant::now();
    let text = crate::nginx::site::render(&plan.nginx(manifest, has_certificate), proxy_params);
    let mut reloaded = false;
    if install_if_changed(&plan.config, &text)? {
        reloaded = true;
        report.step("nginx", t, format!("{} written, nginx reloaded", plan.config.display()));
    }
    let mut domains = Vec::new();
    let mut renewed_any = false;
    for d in &plan.domains {
        let t = Instant::now();
        let mut outcome = DomainOutcome {
            domain: d.name.clone(),
            certificate: d.certificate.clone(),
            https: false,
            renewed: false,
            obtained: false,
            expires: None,
            error: None,
        };
        let wanted = match run {
            Run::Build(domain) => domain == d.name,
            Run::Site | Run::Renew => true,
        };
        if let (Certificate::Acme { cert, .. }, Some(acme), true) = (&d.certificate, &plan.acme, wanted) {
            let before = atomic::read_if_exists(cert)?;
            match certbot::obtain(acme, &d.name) {
                Ok(()) => {
                    outcome.renewed = atomic::read_if_exists(cert)? != before;
                    outcome.obtained = outcome.renewed && before.is_none();
                    let what = match (&before, outcome.renewed) {
                        (None, _) => "obtained",
                        (Some(_), true) => "renewed",
                        (Some(_), false) => "still valid, not due for renewal",
                    };
                    report.step("certificate", t, format!("{}: {what}", d.name));
                }
                Err(e) => {
                    report.step("certificate", t, format!("{}: failed", d.name));
                    outcome.error = Some(format!("{e:#}"));
                }
            }
            renewed_any |= outcome.renewed;
        }
        domains.push(outcome);
    }
    if renewed_any {
        let t = Instant::now();
        let text = crate::nginx::site::render(&plan.nginx(manifest, has_certificate), proxy_params);
        install(&plan.config, &text)?;
        reloaded = true;
        report.step("nginx", t, "reloaded with the new certificates");
    }
    for (o, d) in domains.iter_mut().zip(&plan.domains) {
        o.https = has_certificate(d);
        o.expires = if o.https { Some(cert::read(d.certificate.cert())?) } else { None };
    }
    if run == Run::Site {
        let t = Instant::now();
        let detail = install_renewal(plan, systemd)?;
        report.step("renewal", t, detail);
    }
    Ok(Outcome { config: plan.config.clone(), domains, reloaded })
}

/// Writes the site's nginx file if its text changed ([`install`]). Returns whether it did.
fn install_if_changed(config: &Path, text: &str) -> Result<bool> {
    if atomic::read_string_if_exists(config)?.as_deref() == Some(text) {
        return Ok(false);
    }
    install(config, text)?;
    Ok(true)
}

/// Writes the site's nginx file: validated first, written atomically, nginx reloaded, the old
/// file put back when nginx refuses it.
pub fn install(config: &Path, text: &str) -> Result<()> {
    control::check_in(text, control::Include::Http)?;
    control::install(config, text, Steps { check: true, reload: true })
}

/// `/var/lib/relctl/<app>/`: the webroot nginx reads (0755, public answers) and certbot's
/// directories (0700: the account key and the certificates' keys). Refused when one exists
/// owned by another user or writable by others.
fn private_dirs(acme: &crate::plan::site::AcmePlan) -> Result<()> {
    atomic::ensure_root_dir(&acme.webroot, 0o755)?;
    atomic::ensure_root_dir(&acme.acme_dir, 0o700)
}

/// Writes the renewal timer and its service (refusing files of those names relctl did not
/// write), and starts the timer; without an ACME domain, removes them.
fn install_renewal(plan: &SitePlan, systemd: &dyn Manager) -> Result<String> {
    for f in &plan.renewal {
        if let Some(bytes) = atomic::read_if_exists(&f.path)? {
            if !String::from_utf8_lossy(&bytes).contains(MARKER) {
                bail!(
                    "{} exists and relctl did not write it (it has no \"{MARKER}\" line); relctl would replace it: remove it, or rename the app",
                    f.path.display()
                );
            }
        }
    }
    let timer = plan.renewal_timer.as_str();
    if plan.renewal.is_empty() {
        let files = [plan.unit_dir.join(&plan.renewal_timer), plan.unit_dir.join(&plan.renewal_service)];
        if !files.iter().any(|f| f.exists()) {
            return Ok("no domain gets its certificate from the ACME CA: no renewal timer".into());
        }
        systemd.stop_if_running(timer)?;
        systemd.disable(&[timer])?;
        for f in &files {
            atomic::remove_if_exists(f)?;
        }
        systemd.reload()?;
        return Ok(format!("{timer} removed: no domain gets its certificate from the ACME CA"));
    }
    let mut written = false;
    for f in &plan.renewal {
        written |= atomic::write(&f.path, f.contents.as_bytes(), 0o644, None)?;
    }
    if written {
        systemd.reload()?;
    }
    systemd.enable(&[timer])?;
    systemd.run_job(JobKind::Start, timer)?;
    Ok(format!("{timer} runs {} twice a day", plan.renewal_service))
}

/// Renewal is due this many days before a certificate expires (certbot's default); `status`
/// asks for attention from half of it.
pub const ATTENTION_DAYS: i64 = 14;

/// A domain's certificate as `relctl status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CertStatus {
    pub domain: String,
    /// `acme` or `files`.
    pub source: &'static str,
    pub cert: std::path::PathBuf,
    #[serde(with = "crate::time::serde_rfc3339_option")]
    pub not_after: Option<jiff::Timestamp>,
    pub days_left: Option<i64>,
    /// Missing, unreadable, expired or expiring within [`ATTENTION_DAYS`].
    pub problem: Option<String>,
}

/// The renewal timer as `relctl status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RenewalStatus {
    pub timer: String,
    pub state: crate::systemd::unit::ActiveState,
    #[serde(with = "crate::time::serde_rfc3339_option")]
    pub last_run: Option<jiff::Timestamp>,
    /// systemd's Result of the last run (`success`, `exit-code`, ...); none before the first.
    pub last_result: Option<String>,
    #[serde(with = "crate::time::serde_rfc3339_option")]
    pub next_run: Option<jiff::Timestamp>,
}

impl RenewalStatus {
    pub fn failed(&self) -> bool {
        self.last_result.as_deref().is_some_and(|r| r != "success" && r != "running")
    }
}

/// The certificates of `plan`'s domains (only `only`'s, when given) and the renewal timer.
pub fn status(
    plan: &SitePlan,
    systemd: &crate::systemd::dbus::Systemd,
    only: Option<&str>,
) -> Result<(Vec<CertStatus>, Option<RenewalStatus>)> {
    let now = jiff::Timestamp::now();
    let mut certs = Vec::new();
    for d in plan.domains.iter().filter(|d| only.is_none_or(|o| o == d.name)) {
        let path = d.certificate.cert();
        let (not_after, problem) = if !path.exists() {
            (None, Some("no certificate yet (served on HTTP only): run relctl site".to_string()))
        } else {
            match cert::read(path) {
                Ok(c) => {
                    let days = c.days_left(now);
                    let problem = if c.not_after <= now {
                        Some("expired".to_string())
                    } else if days < ATTENTION_DAYS {
                        Some(format!("expires in {days} days"))
                    } else {
                        None
                    };
                    (Some(c.not_after), problem)
                }
                Err(e) => (None, Some(format!("{e:#}"))),
            }
        };
        certs.push(CertStatus {
            domain: d.name.clone(),
            source: if d.certificate.is_acme() { "acme" } else { "files" },
            cert: path.to_path_buf(),
            days_left: not_after.map(|t| cert::days_between(now, t)),
            not_after,
            problem,
        });
    }
    let renewal = if plan.acme.is_some() {
        let st = systemd.timer_state(&plan.renewal_timer, &plan.renewal_service)?;
        Some(RenewalStatus {
            timer: plan.renewal_timer.clone(),
            state: st.timer.active_state.clone(),
            last_run: crate::time::from_systemd_us(st.last_run_us()),
            last_result: st.last_result(),
            next_run: crate::time::from_systemd_us(st.next_us),
        })
    } else {
        None
    };
    Ok((certs, renewal))
}
