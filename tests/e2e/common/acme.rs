//! A private ACME CA inside a sandbox: Debian's `pebble` (Let's Encrypt's test CA) with
//! `pebble-challtestsrv` as its DNS server, for certbot (webroot, HTTP-01 through the sandbox's
//! nginx) to get real certificates from.
//!
//! The sandbox must have a network namespace of its own ([`Sandbox::boot_with`] with `net`):
//! pebble listens on fixed ports (ACME directory 127.0.0.1:14000, management 127.0.0.1:15000),
//! challtestsrv answers DNS on 127.0.0.1:8053 (management 127.0.0.1:8055) and pebble validates
//! HTTP-01 challenges on port 80 of 127.0.0.1, where nginx listens. Every name resolves to
//! 127.0.0.1 and no name has an AAAA record (with one, pebble would ask `[::1]:80`, which a
//! `listen 80;` server does not serve: nginx's default server answers 404). Another address for a
//! name: `curl -d '{"host":"a.test","addresses":["10.77.0.11"]}' http://127.0.0.1:8055/add-a`.
//!
//! Pebble keeps everything in memory and makes a new root on every start: do not restart it
//! under a certbot `--config-dir` that has an account (certbot 2.1 then fails with
//! "AttributeError: can't set attribute", which hides pebble's accountDoesNotExist).
//!
//! certbot is pointed at it with `--server {directory}` and `REQUESTS_CA_BUNDLE={api_ca}`;
//! clients check the certificates it issues with `curl --cacert {root_ca}` (nginx serving
//! certbot's `fullchain.pem` is enough: leaf + intermediate).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::sandbox::Sandbox;
use super::show;

pub struct Pebble {
    /// Pebble's issuing root (`/roots/0`), for `curl --cacert`. New on every start.
    pub root_ca: PathBuf,
    /// The CA of pebble's own HTTPS API (directory and management): certbot needs it as
    /// `REQUESTS_CA_BUNDLE`.
    pub api_ca: PathBuf,
    /// The ACME directory URL, for certbot's `--server`.
    pub directory: String,
}

impl Pebble {
    /// Writes pebble's config and the certificates of its API under `dir` (a directory bound into
    /// the sandbox: same path inside), starts `pebble-challtestsrv.service` and `pebble.service`
    /// (transient units) inside the sandbox, waits until the directory answers and fetches the
    /// root. Certificates are valid `validity_s` seconds (0: pebble's default, 5 years); under 30
    /// days, certbot renews them on every run (its default `renew_before_expiry`). Every order is
    /// validated afresh (`PEBBLE_AUTHZREUSE=0`), without pebble's random delays
    /// (`PEBBLE_VA_NOSLEEP=1`) or rejected nonces (`PEBBLE_WFE_NONCEREJECT=0`).
    ///
    /// Panics with the reason (and the units' journal) on failure.
    pub fn start(sb: &Sandbox, dir: &Path, validity_s: u64) -> Pebble {
        let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
        let sb_net = std::fs::read_link(format!("/proc/{}/ns/net", sb.pid)).unwrap();
        assert_ne!(
            host_net, sb_net,
            "pebble: the sandbox must have a network namespace of its own (boot_with(.., true))"
        );
        let d = dir.to_str().expect("pebble: dir is not UTF-8");
        let config = format!(
            r#"{{
  "pebble": {{
    "listenAddress": "127.0.0.1:14000",
    "managementListenAddress": "127.0.0.1:15000",
    "certificate": "{d}/api.pem",
    "privateKey": "{d}/api.key",
    "httpPort": 80,
    "tlsPort": 443,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false,
    "certificateValidityPeriod": {validity_s}
  }}
}}
"#
        );
        std::fs::write(dir.join("pebble.json"), config).unwrap();
        // The API's own CA and a localhost/127.0.0.1 certificate signed by it.
        sb.sh_ok(&format!(
            r#"set -e; cd {d}; umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout api-ca.key -out api-ca.pem -days 30 -subj /CN=pebble-api-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout api.key -out api.csr -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' > api.ext
openssl x509 -req -in api.csr -CA api-ca.pem -CAkey api-ca.key -CAcreateserial -days 30 -extfile api.ext -out api.pem 2>/dev/null
chmod 0644 api-ca.pem api.pem"#
        ));
        // -defaultIPv6 '': no AAAA answers (see above); the challenge servers it would start
        // (HTTP-01 on :5002, TLS-ALPN-01 on :5001, ...) are not wanted: nginx answers.
        sb.sh_ok(
            "systemd-run -q --unit=pebble-challtestsrv -p Type=exec /usr/bin/pebble-challtestsrv \
               -defaultIPv4 127.0.0.1 -defaultIPv6 '' -dns01 127.0.0.1:8053 -management 127.0.0.1:8055 \
               -http01 '' -https01 '' -tlsalpn01 ''",
        );
        sb.sh_ok(&format!(
            "systemd-run -q --unit=pebble -p Type=exec -E PEBBLE_VA_NOSLEEP=1 -E PEBBLE_WFE_NONCEREJECT=0 \
               -E PEBBLE_AUTHZREUSE=0 /usr/bin/pebble -config {d}/pebble.json -dnsserver 127.0.0.1:8053"
        ));
        let api_ca = dir.join("api-ca.pem");
        let ca = api_ca.to_str().unwrap();
        let directory = "https://127.0.0.1:14000/dir".to_string();
        let journals =
            || format!("{}\n{}", sb.journal("pebble-challtestsrv.service", 20), sb.journal("pebble.service", 20));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            // Any HTTP answer from challtestsrv's management port; pebble's directory as JSON.
            let out = sb.sh(&format!(
                "curl -sS -o /dev/null --max-time 2 http://127.0.0.1:8055/ && curl -sS --fail --max-time 2 --cacert {ca} {directory}"
            ));
            if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("newOrder") {
                break;
            }
            assert!(Instant::now() < deadline, "pebble did not answer within 15s: {}\n{}", show(&out), journals());
            std::thread::sleep(Duration::from_millis(100));
        }
        let root_ca = dir.join("root.pem");
        let root = root_ca.to_str().unwrap();
        let out = sb.sh(&format!(
            "curl -sS --fail --max-time 5 --cacert {ca} -o {root} https://127.0.0.1:15000/roots/0 && openssl x509 -in {root} -noout"
        ));
        assert!(out.status.success(), "pebble: fetching the root: {}\n{}", show(&out), journals());
        Pebble { root_ca, api_ca, directory }
    }
}
