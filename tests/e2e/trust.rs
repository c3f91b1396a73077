//! The trust boundary, tried the way an attacker on the host would: a second local user (`eve`,
//! no privileges), a compromised service (code running as the service user) and a hostile source
//! tree try to reach root or the app's data while real builds serve. Every case checks that the
//! attempt fails and that the live build keeps serving.

use crate::common::env::Env;
use crate::common::scratch::{replace, variant};
use crate::common::{show, stderr};

const STATE: &str = "/var/lib/medctrl/backend/development";

/// Runs `script` as the local user `eve` (created on first use); returns whether it succeeded
/// and what it printed.
fn as_eve(env: &Env, script: &str) -> (bool, String) {
    env.sh("id eve >/dev/null 2>&1 || useradd --create-home --shell /bin/sh eve");
    let out = env.sb.run("setpriv", &["--reuid", "eve", "--regid", "eve", "--init-groups", "/bin/sh", "-c", script]);
    (out.status.success(), show(&out))
}

/// Release hooks run the way the service runs: in a transient unit as the service user, inside
/// its sandbox, with its UMask, its environment file and secrets, and no terminal. So the
/// database `migrate` creates is the service's alone, in a state directory only it can enter;
/// and a hook that hangs (or that the running service stops with SIGSTOP) is stopped at its time
/// limit and named, with the live build untouched and no unit left behind.
#[test]
fn release_hooks_run_like_the_service_and_the_data_stays_private() {
    let env = Env::boot();
    env.sh(concat!(
        "mkdir -p /etc/relctl && printf 'DB_PASSWORD=pa\"ss\\\\word $HOME\\n' > /etc/relctl/dev.env ",
        "&& chmod 0600 /etc/relctl/dev.env"
    ));
    let probe = variant("hook-like-service", |app| {
        let manifest = app.join("relctl.toml");
        replace(&manifest, "route = \"/api\"", "route = \"/api\"\nsecrets = \"/etc/relctl/dev.env\"");
        // What the hook sees, written where only the service can write: its state directory.
        let hook = concat!(
            "{ id -un; umask; readlink /proc/self/fd/0; grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; ",
            "cat /proc/self/cgroup; printf 'pw=%s\\n' \"$DB_PASSWORD\"; echo \"rd=$RELCTL_RELEASE_DIR\"; pwd; ",
            "touch /opt/medctrl/escape 2>&1 || echo read-only-system; } > \"$RELCTL_STATE_DIR/hook.txt\""
        );
        replace(&manifest, "release = [", &format!("release = [{hook:?}, "));
    });
    let out = env.relctl_with(&probe, &["build", "development"]);
    assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    let seen = env.sh(&format!("cat {STATE}/hook.txt"));
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines[0], "medctrl", "the hook runs as the service user: {seen}");
    assert_eq!(lines[1], "0077", "with the service's UMask: {seen}");
    assert_eq!(lines[2], "/dev/null", "with no terminal: {seen}");
    assert!(seen.contains("NoNewPrivs:\t1") && seen.contains("Seccomp:\t2"), "in the service's sandbox: {seen}");
    assert!(seen.contains("/system.slice/medctrl-hook-development-"), "in a unit of its own: {seen}");
    // The secret as systemd reads the file (an unquoted backslash escapes the next character),
    // the same for the hook as for the service.
    assert!(seen.contains("pw=pa\"ssword $HOME\n"), "with the secrets as systemd reads them: {seen}");
    let environ = env.sh(&format!("tr '\\0' '\\n' < /proc/{}/environ", env.main_pid("development")));
    assert!(environ.lines().any(|l| l == "DB_PASSWORD=pa\"ssword $HOME"), "{environ}");
    let release = env.sh("readlink -f /opt/medctrl/backend/development/current");
    assert!(seen.contains(&format!("rd={release}\n{release}\n")), "in the new release: {seen}");
    assert!(seen.contains("read-only-system"), "the rest of the system is read-only to it: {seen}");
    assert_eq!(env.sh("test -e /opt/medctrl/escape && echo yes || echo no"), "no");

    // The database migrate created, and the directory it lies in, are the service's alone.
    assert_eq!(env.sh(&format!("stat -c '%a %U' {STATE} {STATE}/db.sqlite3")), "700 medctrl\n600 medctrl");
    let (read, said) = as_eve(&env, &format!("cat {STATE}/db.sqlite3"));
    assert!(!read, "eve read the database: {said}");
    assert_eq!(
        env.sh("stat -c '%a' /var/cache/medctrl/backend/development /run/medctrl/backend/development"),
        "700\n700"
    );
    assert_eq!(env.get("development", "/")["build"], "development");

    // A hook that hangs, or is stopped, ends at its time limit; the live build goes on.
    let pid = env.main_pid("development");
    let live = env.get("development", "/")["release"].as_str().unwrap().to_string();
    let hangs = variant("hook-hangs", |app| {
        let manifest = app.join("relctl.toml");
        replace(&manifest, "release = [", "release = [\"kill -STOP $$\", ");
        replace(&manifest, "[hooks]\n", "[hooks]\nrelease_timeout_s = 3\n");
    });
    let out = env.relctl_with(&hangs, &["build", "development"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let last = stderr(&out).lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("relctl: build development aborted before the switch"), "{last}");
    assert!(
        last.contains("release hook `kill -STOP $$` did not finish within 3 s ([hooks] release_timeout_s)"),
        "{last}"
    );
    assert_eq!(env.sh("systemctl list-units --all --no-legend 'medctrl-hook-*' | wc -l"), "0", "no hook unit left");
    assert_eq!(env.main_pid("development"), pid);
    assert_eq!(env.get("development", "/")["release"], live.as_str());
}
