//! `relctl site` against a real ACME CA: Debian's pebble (Let's Encrypt's test CA) with
//! pebble-challtestsrv as DNS, certbot through real nginx, in a sandbox with a network of its own
//! (ports 80 and 443 are its own). Two builds on two domains: HTTP only while a domain has no
//! certificate, then certificates from pebble, a chain curl verifies against pebble's root, 308
//! from HTTP with the challenge path exempt, HSTS, HTTP/2; the renewal timer's service replaces a
//! certificate under load with no failed request; a user's own certificate; a failing renewal
//! shows in status, logs and exit codes while the old certificate keeps serving.

use std::time::Duration;

use crate::common::acme::Pebble;
use crate::common::env::{binds, RELCTL};
use crate::common::lab::offline_example;
use crate::common::sandbox::Sandbox;
use crate::common::scratch::{append, replace, scratch_dir};
use crate::common::{show, stderr, stdout};

const LIVE: &str = "/var/lib/relctl/medctrl/acme/config/live";
const CONFIG: &str = "/etc/nginx/conf.d/relctl-medctrl.conf";

#[test]
fn site_obtains_serves_and_renews_certificates() {
    let manifest = offline_example("site");
    let m = manifest.to_str().unwrap();
    let pebble_dir = scratch_dir("pebble");
    replace(&manifest, "route = \"/api\"\n", "route = \"/api\"\ndomain = \"dev.test\"\n");
    replace(&manifest, "route = \"/testapi\"\n", "domain = \"testing.test\"\n");
    append(&manifest, "\n[builds.\"pr-*\"]\ndomain = \"{{ build }}.review.test\"\n");
    append(
        &manifest,
        &format!(
            "\n[site]\nacme_directory = \"https://127.0.0.1:14000/dir\"\nacme_ca_bundle = \"{}\"\nacme_email = \"ops@example.org\"\nhsts_max_age_s = 600\n",
            pebble_dir.join("api-ca.pem").display()
        ),
    );
    // The CA's bundle before the CA runs (pebble writes its own over it when it starts).
    std::fs::copy("/etc/ssl/certs/ca-certificates.crt", pebble_dir.join("api-ca.pem")).unwrap();
    let sb = Sandbox::boot_with(&binds(), true);
    let relctl = |args: &[&str]| {
        let mut all = vec!["-f", m];
        all.extend_from_slice(args);
        sb.run(RELCTL, &all)
    };
    let ok = |args: &[&str]| {
        let out = relctl(args);
        assert!(out.status.success(), "relctl {args:?}: {}\n{}", show(&out), sb.journal_all(40));
        stdout(&out)
    };
    // Only relctl's server blocks (Debian's default site removed); names resolve here for wrk.
    sb.sh_ok(
        "rm -f /etc/nginx/sites-enabled/*; echo '127.0.0.1 dev.test testing.test pr-1.review.test' >> /etc/hosts; systemctl start nginx",
    );
    ok(&["build", "development"]);
    ok(&["build", "testing"]);

    // 1. No CA reachable yet: both domains are served on HTTP (their challenge path too), relctl
    // names them and exits 1, and status says they have no certificate.
    let out = relctl(&["site"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("relctl: 2 certificate(s) could not be obtained or renewed: dev.test: certbot could not obtain a certificate for dev.test:"),
        "{err}"
    );
    let http = |url: &str| {
        sb.sh_ok(&format!("curl -sS -o /dev/null -w '%{{http_code}} %{{redirect_url}}' --max-time 10 '{url}'"))
    };
    assert_eq!(http("http://dev.test/api/health"), "200", "served on HTTP until it has a certificate");
    assert_eq!(http("http://testing.test/health"), "200");
    assert!(!sb.sh_ok(&format!("cat {CONFIG}")).contains("ssl_certificate"));
    let out = relctl(&["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(stdout(&out).contains("no certificate yet (served on HTTP only): run relctl site"), "{}", show(&out));
    // A renewal that changes nothing leaves nginx alone: same file, same workers.
    let workers = || sb.sh_ok("pgrep -P $(systemctl show -P MainPID nginx) | sort");
    let (file, before) = (sb.sh_ok(&format!("stat -c %Y.%i {CONFIG}")), workers());
    let out = relctl(&["--json", "renew"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let renewed: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(renewed["site"]["reloaded"], false, "{renewed}");
    assert_eq!((sb.sh_ok(&format!("stat -c %Y.%i {CONFIG}")), workers()), (file, before), "nginx was not reloaded");

    // 2. With the CA: certificates for both, HTTPS with a chain curl verifies, HTTP/2, HSTS, 308.
    let pebble = Pebble::start(&sb, &pebble_dir, 20 * 86_400);
    let written = std::fs::read_to_string(&manifest).unwrap();
    assert!(written.contains(&format!("acme_directory = \"{}\"", pebble.directory)), "{written}");
    assert!(written.contains(&format!("acme_ca_bundle = \"{}\"", pebble.api_ca.display())), "{written}");
    let root = pebble.root_ca.to_str().unwrap();
    let out = ok(&["site"]);
    assert!(out.contains("dev.test: obtained") && out.contains("testing.test: obtained"), "{out}");
    let https = |url: &str| {
        sb.sh_ok(&format!(
            "curl -sS --cacert {root} -o /dev/null -w '%{{http_code}} HTTP/%{{http_version}}' --max-time 10 '{url}'"
        ))
    };
    assert_eq!(https("https://dev.test/api/health"), "200 HTTP/2");
    assert_eq!(https("https://testing.test/health"), "200 HTTP/2");
    // What the app sees: its route, the host, HTTPS; the static URL it generates is served.
    let page: serde_json::Value =
        serde_json::from_str(&sb.sh_ok(&format!("curl -sS --fail --cacert {root} 'https://dev.test/api/x?q=1'")))
            .unwrap();
    assert_eq!(page["build"], "development", "{page}");
    assert_eq!((page["script_name"].as_str(), page["path"].as_str()), (Some("/api"), Some("/x")), "{page}");
    assert_eq!(page["headers"]["host"], "dev.test", "{page}");
    assert_eq!(page["headers"]["x-forwarded-proto"], "https", "{page}");
    assert_eq!(page["static"], "/api/static/medctrl/hello.css", "{page}");
    assert_eq!(https("https://dev.test/api/static/medctrl/hello.css"), "200 HTTP/2");
    let headers = sb.sh_ok(&format!("curl -sS --cacert {root} -D - -o /dev/null https://dev.test/api/health"));
    assert!(headers.to_lowercase().contains("strict-transport-security: max-age=600"), "{headers}");
    assert_eq!(http("http://dev.test/api/x?q=1"), "308 https://dev.test/api/x?q=1");
    assert_eq!(http("http://testing.test/"), "308 https://testing.test/");
    let challenges = "/var/lib/relctl/medctrl/acme-challenge/.well-known/acme-challenge";
    sb.sh_ok(&format!("mkdir -p {challenges} && printf probe > {challenges}/probe"));
    assert_eq!(
        sb.sh_ok("curl -sS --max-time 10 http://dev.test/.well-known/acme-challenge/probe"),
        "probe",
        "the ACME challenge path is not redirected"
    );
    // Keys for root alone; certbot's directory 0700; the nginx file 0644.
    let modes = sb.sh_ok(&format!(
        "stat -L -c '%a %U' {LIVE}/dev.test/privkey.pem {LIVE}/testing.test/privkey.pem /var/lib/relctl/medctrl/acme {CONFIG}"
    ));
    assert_eq!(modes, "600 root\n600 root\n700 root\n644 root", "{modes}");
    let status: serde_json::Value = serde_json::from_str(&ok(&["--json", "status"])).unwrap();
    let certs = status["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 2, "{status}");
    for c in certs {
        assert_eq!(c["source"], "acme", "{c}");
        assert_eq!(c["days_left"], 19, "pebble's 20-day certificates: {c}");
        assert!(c["problem"].is_null(), "{c}");
    }
    assert_eq!(status["renewal"]["timer"], "relctl-medctrl-certs.timer");
    assert_eq!(status["renewal"]["state"], "active", "{status}");
    assert!(status["renewal"]["next_run"].is_string(), "{status}");
    assert_eq!(
        sb.sh_ok("systemctl is-enabled relctl-medctrl-certs.timer; systemctl is-active relctl-medctrl-certs.timer"),
        "enabled\nactive"
    );

    // 3. The timer's service renews (20-day certificates are due: certbot renews 30 days ahead)
    // while wrk loads dev.test over HTTPS: nginx serves the new certificate, no request fails.
    // Each request on a connection of its own, as a new visitor's: nginx's reload closes the
    // idle keep-alive connections of its old workers, and an HTTP/1.1 client that sends on one
    // at that moment sees it closed (browsers retry such a request; wrk counts an error).
    let serial = |domain: &str| {
        sb.sh_ok(&format!(
            "echo | openssl s_client -connect 127.0.0.1:443 -servername {domain} 2>/dev/null | openssl x509 -noout -serial"
        ))
    };
    let before = serial("dev.test");
    let wrk = sb
        .command("wrk")
        .args(["-t1", "-c4", "-d12s", "--timeout", "10s", "-H", "Connection: close", "https://dev.test/api/health"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let out = sb.sh("systemctl start relctl-medctrl-certs.service");
    assert!(out.status.success(), "{}\n{}", show(&out), sb.journal("relctl-medctrl-certs.service", 40));
    let wrk = wrk.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&wrk.stdout).into_owned();
    assert!(wrk.status.success(), "{report}");
    let requests: u64 =
        report.split(" requests in").next().unwrap().rsplit(' ').next().unwrap().trim().parse().unwrap();
    assert!(requests > 100, "{report}");
    assert!(!report.contains("Non-2xx"), "a request got an error response during the renewal:\n{report}");
    assert!(!report.contains("Socket errors"), "a request failed during the renewal:\n{report}");
    let after = serial("dev.test");
    assert_ne!(before, after, "nginx serves the renewed certificate");
    let on_disk = sb.sh_ok(&format!("openssl x509 -noout -serial -in {LIVE}/dev.test/cert.pem"));
    assert_eq!(after, on_disk);
    assert_eq!(https("https://dev.test/api/health"), "200 HTTP/2", "the new chain verifies");
    let logs = ok(&["logs", "--certs"]);
    assert!(logs.contains("dev.test: renewed"), "{logs}");

    // 4. A review build gets its own domain when it is built, and loses it when destroyed.
    let out = relctl(&["build", "pr-1"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("pr-1.review.test: obtained"), "{}", show(&out));
    assert_eq!(https("https://pr-1.review.test/health"), "200 HTTP/2");
    assert_eq!(http("http://pr-1.review.test/x"), "308 https://pr-1.review.test/x");
    let status: serde_json::Value = serde_json::from_str(&ok(&["--json", "status"])).unwrap();
    assert_eq!(status["certificates"].as_array().unwrap().len(), 3, "{status}");
    ok(&["destroy", "pr-1"]);
    assert!(!sb.sh_ok(&format!("cat {CONFIG}")).contains("pr-1.review.test"), "its server blocks are gone");
    assert_eq!(https("https://dev.test/api/health"), "200 HTTP/2");
    let status: serde_json::Value = serde_json::from_str(&ok(&["--json", "status"])).unwrap();
    assert_eq!(status["certificates"].as_array().unwrap().len(), 2, "{status}");

    // 5. A user's own certificate for testing.test (signed by their CA): served as given.
    let own = pebble_dir.join("own");
    std::fs::create_dir_all(&own).unwrap();
    let o = own.to_str().unwrap();
    sb.sh_ok(&format!(
        "cd {o} && umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 30 -subj /CN=own-ca 2>/dev/null \
         && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout testing.key -out testing.csr -subj /CN=testing.test 2>/dev/null \
         && printf 'subjectAltName=DNS:testing.test\\n' > ext && openssl x509 -req -in testing.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -extfile ext -out testing.pem 2>/dev/null \
         && chmod 644 ca.pem testing.pem"
    ));
    append(
        &manifest,
        &format!("[site.certificates.\"testing.test\"]\ncert = \"{o}/testing.pem\"\nkey = \"{o}/testing.key\"\n"),
    );
    ok(&["site"]);
    assert_eq!(
        sb.sh_ok(&format!("curl -sS --cacert {o}/ca.pem -o /dev/null -w '%{{http_code}}' https://testing.test/health")),
        "200"
    );
    let status: serde_json::Value = serde_json::from_str(&ok(&["--json", "status"])).unwrap();
    assert_eq!(status["certificates"][1]["source"], "files", "{status}");
    assert_eq!(status["certificates"][1]["days_left"], 29, "{status}");

    // 6. The CA is gone: the renewal fails visibly (the unit, status, logs, relctl renew's exit)
    // and nginx keeps serving the certificate it has.
    sb.sh_ok("systemctl stop pebble");
    let out = sb.sh("systemctl start relctl-medctrl-certs.service");
    assert!(!out.status.success(), "the renewal service fails: {}", show(&out));
    let out = relctl(&["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(stdout(&out).contains("exit-code: see relctl logs --certs"), "{}", show(&out));
    let logs = ok(&["logs", "--certs"]);
    assert!(logs.contains("certbot could not obtain a certificate for dev.test"), "{logs}");
    let out = relctl(&["renew"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("1 certificate(s) could not be obtained or renewed: dev.test: certbot"),
        "{}",
        show(&out)
    );
    assert_eq!(https("https://dev.test/api/health"), "200 HTTP/2", "still served with the certificate it had");
}
