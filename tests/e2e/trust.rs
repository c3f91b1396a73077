//! The trust boundary, tried the way an attacker on the host would: a second local user (`eve`,
//! no privileges), a compromised service (code running as the service user) and a hostile source
//! tree try to reach root or the app's data while real builds serve. Every case checks that the
//! attempt fails and that the live build keeps serving.

use crate::common::env::{Env, RELCTL};
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

/// A hostile source tree (a setuid file, a world-writable directory) staged as root: while the
/// `[deps]` and build hooks run, the release is root's alone and already sealed-shaped; no
/// setuid bit or shared write survives the copy; afterwards only `[static]` is readable to other
/// users, and a second user can enter nothing else.
#[test]
fn a_release_is_private_until_sealed_and_keeps_no_setuid_or_shared_write() {
    let env = Env::boot();
    env.sh("id eve >/dev/null 2>&1 || useradd --create-home --shell /bin/sh eve");
    let hostile = variant("hostile-modes", |app| {
        let api = app.join("API");
        std::fs::write(api.join("suid"), "#!/bin/sh\nid\n").unwrap();
        std::fs::create_dir(api.join("open")).unwrap();
        std::fs::write(api.join("open/mod.py"), "X = 1\n").unwrap();
        let sh = format!("chmod 4755 {0}/suid && chmod 2777 {0}/open && chmod 0666 {0}/open/mod.py", api.display());
        assert!(std::process::Command::new("sh").arg("-c").arg(&sh).status().unwrap().success());
        // The build hook looks at the release as eve and as root while it is being built.
        let probe = concat!(
            "{ setpriv --reuid eve --regid eve --init-groups ls \"$RELCTL_RELEASE_DIR\" >/dev/null 2>&1 && echo eve-lists || echo eve-kept-out; ",
            "setpriv --reuid eve --regid eve --init-groups touch API/open/evil.py 2>/dev/null && echo eve-writes || echo eve-cannot-write; ",
            "stat -c '%n %a %U:%G' . API API/open API/suid API/open/mod.py; } > /var/tmp/relctl-probe.txt"
        );
        replace(&app.join("relctl.toml"), "build = [", &format!("build = [{probe:?}, "));
    });
    // Run from a shell whose umask lets everyone write: relctl does not pass that on.
    let script = "umask 000; exec \"$0\" -f \"$1\" build development";
    let out = env.sb.run("sh", &["-c", script, RELCTL, hostile.to_str().unwrap()]);
    assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    assert_eq!(
        env.sh("find /opt/medctrl /var/lib/medctrl -perm /022 -not -type l -not -type s | wc -l"),
        "0",
        "nothing group- or world-writable, the venv in .deps included"
    );
    let during = env.sh("cat /var/tmp/relctl-probe.txt");
    assert_eq!(
        during,
        "eve-kept-out\neve-cannot-write\n. 700 root:medctrl\nAPI 751 root:medctrl\nAPI/open 750 root:medctrl\nAPI/suid 750 root:medctrl\nAPI/open/mod.py 640 root:medctrl",
        "while the build hooks run"
    );
    let release = env.sh("readlink -f /opt/medctrl/backend/development/current");
    assert_eq!(
        env.sh(&format!("find {release} -perm /6002 -not -type l | wc -l")),
        "0",
        "no setuid, setgid or world write"
    );
    assert_eq!(
        env.sh(&format!("cd {release} && stat -c '%n %a %U:%G' . API API/open API/suid API/static .relctl/environment")),
        ". 751 root:medctrl\nAPI 751 root:medctrl\nAPI/open 750 root:medctrl\nAPI/suid 750 root:medctrl\nAPI/static 755 root:medctrl\n.relctl/environment 600 root:medctrl"
    );
    let (listed, said) = as_eve(&env, &format!("ls {release}/API/open"));
    assert!(!listed, "eve listed the release's code: {said}");
    let (css, said) = as_eve(&env, &format!("cat {release}/API/static/admin/css/base.css | head -c 10"));
    assert!(css, "[static] stays readable for nginx: {said}");
    assert_eq!(env.get("development", "/")["build"], "development");
}

/// The app's locks are root's: another user or the service cannot hold them to block deploys,
/// and a wait for a lock relctl cannot get ends (at once with --no-wait) naming the lock.
#[test]
fn locks_only_root_takes_and_waits_that_end() {
    let env = Env::boot();
    env.ok(&["build", "development"]);
    assert_eq!(
        env.sh("stat -c '%a %U' /run/relctl /run/relctl/medctrl.lock /run/relctl/medctrl@development.switch"),
        "700 root\n600 root\n600 root"
    );
    let (held, said) = as_eve(&env, "flock -n /run/relctl/medctrl.lock true");
    assert!(!held, "eve took the app lock: {said}");
    let service = env.sb.sh(
        "setpriv --reuid medctrl --regid medctrl --clear-groups flock -n /run/relctl/medctrl@development.switch true",
    );
    assert!(!service.status.success(), "the service took the switch lock: {}", show(&service));

    // Root holds the switch lock (as an instance starting by itself would, briefly): --no-wait
    // gives up at once, naming it, and the build keeps serving.
    let pid = env.main_pid("development");
    env.sh("systemd-run --unit=hold-switch flock /run/relctl/medctrl@development.switch sleep 600");
    let out = env.relctl(&["--no-wait", "restart", "development"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("the switch lock of medctrl@development, /run/relctl/medctrl@development.switch, is held by pid"),
        "{err}"
    );
    assert!(err.contains("not waiting (--no-wait)"), "{err}");
    env.sh("systemctl stop hold-switch");
    assert_eq!(env.main_pid("development"), pid);
    env.ok(&["restart", "development"]);
}

/// Secrets stay out of what relctl prints and of files others can read: an environment value
/// built from a secret shows as <secret> in --dry-run and --json, the release keeps it in a file
/// only root reads, and the service gets it.
#[test]
fn secrets_in_environment_values_are_never_shown() {
    let env = Env::boot();
    let secret = "hunter2-env-value";
    env.sh(&format!(
        "mkdir -p /etc/relctl && printf 'DB_PASSWORD={secret}\\n' > /etc/relctl/dev.env && chmod 0600 /etc/relctl/dev.env"
    ));
    let manifest = variant("secret-env", |app| {
        let m = app.join("relctl.toml");
        replace(&m, "route = \"/api\"", "route = \"/api\"\nsecrets = \"/etc/relctl/dev.env\"");
        replace(
            &m,
            "environment = { DJANGO_SETTINGS_MODULE",
            "environment = { DATABASE_URL = \"postgres://app:{{ secrets.DB_PASSWORD }}@db/app\", DJANGO_SETTINGS_MODULE",
        );
    });
    for args in [&["build", "development", "--dry-run"][..], &["--json", "build", "development", "--dry-run"]] {
        let out = env.relctl_with(&manifest, args);
        assert!(out.status.success(), "{}", show(&out));
        assert!(!show(&out).contains(secret), "relctl {args:?} printed the secret: {}", show(&out));
        assert!(show(&out).contains("DATABASE_URL"), "{}", show(&out));
    }
    let out = env.relctl_with(&manifest, &["--json", "-v", "build", "development"]);
    assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    assert!(!show(&out).contains(secret), "the build printed the secret: {}", show(&out));
    assert_eq!(env.sh("stat -c '%a %U' /opt/medctrl/backend/development/current/.relctl/environment"), "600 root");
    let (read, said) = as_eve(&env, "cat /opt/medctrl/backend/development/current/.relctl/environment");
    assert!(!read, "{said}");
    let environ = env.sh(&format!("tr '\\0' '\\n' < /proc/{}/environ", env.main_pid("development")));
    assert!(environ.contains(&format!("DATABASE_URL=postgres://app:{secret}@db/app")), "{environ}");
    assert_eq!(env.sh(&format!("journalctl -q --no-pager | grep -c {secret} || true")), "0", "not in the journal");
}

/// `[service] user` must be the app's own: naming another daemon's account is refused before
/// anything changes.
#[test]
fn another_daemons_account_is_refused() {
    let env = Env::boot();
    let manifest = variant("www-data-user", |app| {
        replace(&app.join("relctl.toml"), "[service]\n", "[service]\nuser = \"www-data\"\n");
    });
    let out = env.relctl_with(&manifest, &["build", "development"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.starts_with("relctl: ") && err.contains("www-data") && err.lines().count() == 1, "{err}");
    assert_eq!(env.sh("ls /opt/medctrl 2>/dev/null | wc -l; ls /etc/systemd/system | grep -c medctrl || true"), "0\n0");
}

/// Only root's files run as root: a `relctl.toml` another user dropped in /tmp is refused, not
/// used, when root runs relctl below it; a dry run runs no command of the manifest's; and git,
/// asked for the release id's revision, runs nothing a checkout's config names.
#[test]
fn other_users_files_never_run_as_root() {
    let env = Env::boot();
    env.sh("id eve >/dev/null 2>&1 || useradd --create-home --shell /bin/sh eve");
    let (wrote, said) = as_eve(
        &env,
        "printf 'app = \"evil\"\\n[service]\\nexec = \"x\"\\n[deps.v]\\npath = \"v\"\\nkey_commands = [\"touch /var/tmp/pwned-key\"]\\nbuild = [\"true\"]\\n[builds.x]\\n' > /tmp/relctl.toml && mkdir -p /tmp/a/b",
    );
    assert!(wrote, "{said}");
    let out = env.sb.sh(&format!("cd /tmp/a/b && {RELCTL} build x --dry-run"));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_eq!(
        stderr(&out),
        "relctl: manifest /tmp/relctl.toml is owned by eve, not root: as root, relctl uses only files that only root \
         can change; check it, then run: chown root: /tmp/relctl.toml; or run relctl without sudo (e.g. build --dry-run)\n"
    );
    assert_eq!(env.sh("test -e /var/tmp/pwned-key && echo ran || echo not-run"), "not-run");

    // A root-owned manifest whose key command and checkout config would run things: a dry run
    // runs neither, and says when the key command runs.
    let manifest = variant("dry-run-runs-nothing", |app| {
        let m = app.join("relctl.toml");
        replace(&m, "key_commands = [", "key_commands = [\"touch /var/tmp/pwned-dry\", ");
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git").arg("-C").arg(app).args(args).output().unwrap();
            assert!(out.status.success(), "git {args:?}: {}", show(&out));
        };
        git(&["init", "-q"]);
        git(&["add", "-A"]);
        git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one"]);
        // Set last: git on this host must not run it either.
        git(&["config", "core.fsmonitor", "touch /var/tmp/pwned-fsmonitor; false"]);
    });
    let out = env.relctl_with(&manifest, &["build", "development", "--dry-run"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(show(&out).contains("the key commands run at build time, not on a dry run"), "{}", show(&out));
    assert_eq!(env.sh("ls /var/tmp | grep pwned || true"), "", "a dry run ran a command");
    // The real build runs the key command (as root: the manifest is root's) but never git's fsmonitor.
    let out = env.relctl_with(&manifest, &["build", "development"]);
    assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    assert_eq!(env.sh("ls /var/tmp | grep pwned || true"), "pwned-dry");
    let id = env.get("development", "/")["release"].as_str().unwrap().to_string();
    assert!(id.contains('-'), "the release id names the revision: {id}");
}
