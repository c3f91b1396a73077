//! Obtaining and renewing one domain's certificate with certbot (webroot mode: certbot writes
//! the HTTP-01 answer into the webroot nginx serves on port 80), in relctl's own certbot
//! directories for the app — never the host's `/etc/letsencrypt`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::plan::site::AcmePlan;

/// The certbot binary: from PATH, or Debian's.
fn certbot() -> Result<PathBuf> {
    which::which("certbot")
        .or_else(|_| which::which_in("certbot", Some("/usr/bin:/usr/local/bin"), "/"))
        .context("certbot not found in PATH or /usr/bin; relctl obtains certificates with it: apt-get install certbot")
}

/// The command that obtains `domain`'s certificate, or renews it when it expires within 30 days
/// (`--keep-until-expiring`: otherwise certbot changes nothing and asks the CA nothing).
pub fn command(acme: &AcmePlan, domain: &str) -> Result<Command> {
    let mut c = Command::new(certbot()?);
    c.args(["certonly", "--non-interactive", "--agree-tos", "--keep-until-expiring", "--webroot"])
        .arg("--webroot-path")
        .arg(&acme.webroot)
        .args(["--preferred-challenges", "http", "--cert-name", domain, "--domain", domain])
        .args(["--server", &acme.directory])
        .arg("--config-dir")
        .arg(acme.config_dir())
        .arg("--work-dir")
        .arg(acme.work_dir())
        .arg("--logs-dir")
        .arg(acme.logs_dir());
    match &acme.email {
        Some(e) => c.args(["--email", e]),
        None => c.arg("--register-unsafely-without-email"),
    };
    if let Some(bundle) = &acme.ca_bundle {
        c.env("REQUESTS_CA_BUNDLE", bundle);
    }
    Ok(c)
}

/// Runs certbot for `domain`. The error is certbot's own explanation (its `Detail:` lines, or
/// its last line), with where its log is.
pub fn obtain(acme: &AcmePlan, domain: &str) -> Result<()> {
    let mut c = command(acme, domain)?;
    let out = c.output().with_context(|| format!("running certbot for {domain}"))?;
    if out.status.success() {
        return Ok(());
    }
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    bail!(
        "certbot could not obtain a certificate for {domain}: {} (log: {})",
        explain(&text),
        acme.logs_dir().join("letsencrypt.log").display()
    )
}

/// The lines of certbot's output that say what went wrong.
fn explain(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let details: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("Detail:") || l.starts_with("Type:") || l.contains("Error") || l.contains("error:"))
        .copied()
        .collect();
    let chosen = if details.is_empty() {
        lines
            .iter()
            .rev()
            .find(|l| !l.starts_with("Ask for help") && !l.starts_with("See the logfile"))
            .copied()
            .into_iter()
            .collect()
    } else {
        details
    };
    chosen.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_explanation_is_certbots_detail() {
        let out = "Saving debug log to /x/letsencrypt.log\nRequesting a certificate for a.test\n\nCertbot failed to authenticate some domains (authenticator: webroot). The Certificate Authority reported these problems:\n  Domain: a.test\n  Type: connection\n  Detail: 127.0.0.1: Fetching http://a.test/.well-known/acme-challenge/x: Connection refused\n\nHint: The Certificate Authority failed to download the temporary challenge files\n\nSome challenges have failed.\nAsk for help or search for solutions at https://community.letsencrypt.org. See the logfile /x/letsencrypt.log or re-run Certbot with -v for more details.\n";
        assert_eq!(
            explain(out),
            "Type: connection; Detail: 127.0.0.1: Fetching http://a.test/.well-known/acme-challenge/x: Connection refused"
        );
        assert_eq!(explain("An unexpected error occurred:\nSomething broke\n"), "Something broke");
        assert_eq!(explain("No such thing\nAsk for help or search\n"), "No such thing");
    }
}
