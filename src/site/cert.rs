//! What a certificate file says: its names, when it expires, its serial.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// The first certificate of a PEM file (a leaf, then its chain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    #[serde(with = "crate::time::serde_rfc3339")]
    pub not_before: jiff::Timestamp,
    #[serde(with = "crate::time::serde_rfc3339")]
    pub not_after: jiff::Timestamp,
    /// Hexadecimal, as `openssl x509 -serial` prints it.
    pub serial: String,
    pub issuer: String,
    /// Its DNS names (subjectAltName).
    pub names: Vec<String>,
}

impl CertInfo {
    /// Whole days left until it expires (negative once it has).
    pub fn days_left(&self, now: jiff::Timestamp) -> i64 {
        days_between(now, self.not_after)
    }
}

/// Whole days from `now` to `then` (negative once it has passed).
pub fn days_between(now: jiff::Timestamp, then: jiff::Timestamp) -> i64 {
    (then.as_second() - now.as_second()).div_euclid(86_400)
}

/// Reads the first certificate of the PEM file at `path`.
pub fn read(path: &Path) -> Result<CertInfo> {
    let bytes = std::fs::read(path).with_context(|| format!("reading certificate {}", path.display()))?;
    parse(&bytes).with_context(|| format!("certificate {}", path.display()))
}

/// The first certificate of PEM text.
pub fn parse(pem_bytes: &[u8]) -> Result<CertInfo> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_bytes).map_err(|e| anyhow::anyhow!("not PEM: {e}"))?;
    let cert = pem.parse_x509().map_err(|e| anyhow::anyhow!("not an X.509 certificate: {e}"))?;
    let time = |t: x509_parser::time::ASN1Time| {
        jiff::Timestamp::from_second(t.timestamp()).context("a certificate time out of range")
    };
    let names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(CertInfo {
        not_before: time(cert.validity().not_before)?,
        not_after: time(cert.validity().not_after)?,
        serial: cert.raw_serial_as_string().replace(':', "").to_uppercase(),
        issuer: cert.issuer().to_string(),
        names,
    })
}
