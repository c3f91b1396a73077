//! `relctl exec`: a command run the way the service runs (its user, release, environment, secrets
//! and sandbox) in a transient unit, with stdin, a terminal and the exit status passed through,
//! while the live service goes on undisturbed and nothing of exec's stays behind.

use std::collections::BTreeMap;

use crate::common::env::{Env, RELCTL};
use crate::common::scratch::{replace, variant};
use crate::common::{show, stderr, stdout};

const STATE: &str = "/var/lib/medctrl/backend/development";
const RUNTIME: &str = "/run/medctrl/backend/development";
/// The `[Service]` settings (as `systemctl show` names them) that differ between the service and
/// an exec unit, and why: a one-shot command, the release pinned, its runtime directory kept.
const DIFFERENT: [&str; 6] =
    ["CollectMode", "EnvironmentFiles", "KillMode", "RuntimeDirectoryPreserve", "Type", "WorkingDirectory"];
const COMPARED: &str = "User,Group,WorkingDirectory,EnvironmentFiles,Environment,StateDirectory,CacheDirectory,RuntimeDirectory,RuntimeDirectoryPreserve,ReadWritePaths,NoNewPrivileges,ProtectSystem,ProtectHome,PrivateTmp,PrivateDevices,PrivateMounts,PrivateUsers,ProtectKernelTunables,ProtectKernelModules,ProtectKernelLogs,ProtectControlGroups,ProtectClock,ProtectHostname,ProtectProc,ProcSubset,RemoveIPC,RestrictNamespaces,RestrictRealtime,RestrictSUIDSGID,LockPersonality,MemoryDenyWriteExecute,CapabilityBoundingSet,AmbientCapabilities,RestrictAddressFamilies,SystemCallArchitectures,SystemCallFilter,SystemCallErrorNumber,UMask,IPAddressDeny,IPAddressAllow,Type,KillMode,CollectMode";

/// A user at a terminal: runs its arguments on a pseudo terminal, waits for Python's prompt, asks
/// whether stdin and stdout are a terminal, then leaves with `exit(3)`; prints what the terminal
/// showed and exits with the command's status. (It waits for the prompt as a person would:
/// Python's readline drops what was typed before it started.)
const TERMINAL_USER: &str = r#"
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
seen = b""
def read_until(token):
    global seen
    end = time.time() + 60
    while token not in seen:
        if not select.select([fd], [], [], max(0, end - time.time()))[0]:
            sys.exit("timed out waiting for %r; the terminal showed: %r" % (token, seen))
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            chunk = b""
        if not chunk:
            sys.exit("the terminal closed before %r; it showed: %r" % (token, seen))
        seen += chunk
read_until(b">>> ")
os.write(fd, b"import os; print('on a tty:', os.isatty(0), os.isatty(1), 6 * 7)\n")
read_until(b"42")
read_until(b">>> ")
os.write(fd, b"exit(3)\n")
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    seen += chunk
sys.stdout.write(seen.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"#;

/// `systemctl show` output as settings: the words of each value (of all its lines: one a file for
/// `EnvironmentFiles=`), sorted (systemd prints some sets, like `IPAddressDeny=`, in no fixed order).
fn settings(show: &str) -> BTreeMap<String, Vec<String>> {
    let mut settings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in show.lines().filter_map(|l| l.split_once('=')) {
        settings.entry(k.to_string()).or_default().extend(v.split_whitespace().map(str::to_string));
    }
    settings.values_mut().for_each(|words| words.sort());
    settings
}

/// The exec units systemd has loaded, one a line.
fn exec_units(env: &Env) -> String {
    env.sh("systemctl list-units --all --no-legend --plain 'medctrl-exec-*' | cut -d' ' -f1")
}

#[test]
fn exec_runs_a_command_as_the_service_runs_and_leaves_nothing_behind() {
    let env = Env::boot();
    env.sh("mkdir -p /etc/relctl && printf 'SECRET_TOKEN=from-the-secrets-file\\n' > /etc/relctl/dev.env && chmod 600 /etc/relctl/dev.env");
    let manifest = variant("exec", |app| {
        replace(&app.join("relctl.toml"), "route = \"/api\"", "route = \"/api\"\nsecrets = \"/etc/relctl/dev.env\"")
    });
    let m = manifest.to_str().unwrap();
    let out = env.relctl_with(&manifest, &["build", "development"]);
    assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    // An admin's drop-in next to relctl's: exec gets it too.
    env.sh(&format!(
        "mkdir -p /srv/shared && chown medctrl: /srv/shared && printf '[Service]\\nReadWritePaths=/srv/shared\\nEnvironment=FROM_DROPIN=%%i\\n' > /etc/systemd/system/medctrl@development.service.d/60-local.conf && systemctl daemon-reload && touch {RUNTIME}/the-service-was-here"
    ));
    let pid = env.main_pid("development");
    let exec = |args: &[&str]| {
        let mut all = vec!["exec"];
        all.extend_from_slice(args);
        env.relctl_with(&manifest, &all)
    };
    let exec_ok = |args: &[&str]| {
        let out = exec(args);
        assert!(out.status.success(), "exec {args:?}: {}", show(&out));
        stdout(&out)
    };

    // -- the canonical use: a Django superuser, with its password from relctl's environment ----
    let out = env.sb.sh(&format!(
        "DJANGO_SUPERUSER_PASSWORD='pa$$ word' {RELCTL} -f {m} exec -e DJANGO_SUPERUSER_USERNAME=admin -e DJANGO_SUPERUSER_EMAIL=admin@example.com -e DJANGO_SUPERUSER_PASSWORD development -- .venv/bin/python API/manage.py createsuperuser --noinput"
    ));
    assert!(out.status.success() && stdout(&out).contains("Superuser created successfully"), "{}", show(&out));
    let users = exec_ok(&[
        "development",
        "--",
        ".venv/bin/python",
        "API/manage.py",
        "shell",
        "-c",
        "from django.conf import settings; from django.contrib.auth.models import User; print('db', settings.DATABASES['default']['NAME']); print('users', [(u.username, u.email, u.is_superuser, u.check_password('pa$$ word')) for u in User.objects.all()])",
    ]);
    assert!(users.contains(&format!("db {STATE}/db.sqlite3")), "the service's database: {users}");
    assert!(users.contains("users [('admin', 'admin@example.com', True, True)]"), "{users}");

    // -- who, where, with what environment -----------------------------------------------------
    assert_eq!(exec_ok(&["development", "--", "id", "-un"]), "medctrl");
    let release = env.sh("readlink -f /opt/medctrl/backend/development/current");
    let seen = exec_ok(&[
        "development",
        "--",
        "sh",
        "-c",
        "echo \"$PWD|$DJANGO_SETTINGS_MODULE|$SECRET_TOKEN|$FROM_DROPIN|$HOME|$XDG_RUNTIME_DIR|100%i\"",
    ]);
    assert_eq!(
        seen,
        format!("{release}|api_settings.settings.deploy_development|from-the-secrets-file|development|/var/cache/medctrl/backend/development|{RUNTIME}|100%i")
    );
    let seen = exec_ok(&[
        "-e",
        "SECRET_TOKEN=from the command line",
        "development",
        "--",
        "sh",
        "-c",
        "echo \"$SECRET_TOKEN\"",
    ]);
    assert_eq!(seen, "from the command line", "-e wins over the secrets");

    // -- exit status, and the sandbox: read-only system, writable state -------------------------
    assert_eq!(exec(&["development", "--", "sh", "-c", "exit 7"]).status.code(), Some(7));
    let out = exec(&["development", "--", "sh", "-c", "touch /opt/x"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("touch: cannot touch '/opt/x': Read-only file system"), "{}", show(&out));
    exec_ok(&["development", "--", "sh", "-c", "touch \"$RELCTL_STATE_DIR/exec-was-here\" /srv/shared/exec-was-here"]);
    assert_eq!(env.sh(&format!("stat -c %U {STATE}/exec-was-here /srv/shared/exec-was-here")), "medctrl\nmedctrl");
    assert_eq!(env.sh("test -e /opt/x || echo absent"), "absent");

    // -- stdin passes; so does a terminal -------------------------------------------------------
    assert_eq!(env.sh(&format!("echo hi | {RELCTL} -f {m} exec development -- cat")), "hi");
    let out = env
        .sb
        .command("python3")
        .args(["-c", TERMINAL_USER, RELCTL, "-f", m, "exec", "development", "--"])
        .args([".venv/bin/python", "API/manage.py", "shell"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(stdout(&out).contains("on a tty: True True 42"), "{}", show(&out));

    // -- while one runs: its settings are the service's, it holds no lock; interrupted, relctl
    // stops it -------------------------------------------------------------------------------
    let out = env.sb.sh(&format!(
        "{RELCTL} -f {m} exec development -- sleep 60 & relctl=$!
         for i in $(seq 100); do u=$(systemctl list-units --no-legend --plain 'medctrl-exec-development-*' | cut -d' ' -f1); [ -n \"$u\" ] && break; sleep 0.1; done
         echo \"$u\"; echo ----; systemctl show -p {COMPARED} \"$u\"; echo ----; systemctl show -p {COMPARED} medctrl@development.service; echo ----
         {RELCTL} -f {m} --no-wait reload development > /dev/null && echo 'a deploy command is not held up'
         kill -TERM $relctl; wait $relctl; echo \"exit $?\""
    ));
    let text = stdout(&out);
    let parts: Vec<&str> = text.split("----\n").collect();
    let [unit, exec_unit, service, end] = parts[..] else { panic!("{}", show(&out)) };
    let unit = unit.trim();
    assert!(unit.starts_with("medctrl-exec-development-") && unit.ends_with(".service"), "{}", show(&out));
    let (exec_unit, service) = (settings(exec_unit), settings(service));
    assert_eq!(exec_unit.len(), COMPARED.split(',').count(), "{exec_unit:?}");
    let differs: Vec<&str> = exec_unit.iter().filter(|(k, v)| service[*k] != **v).map(|(k, _)| k.as_str()).collect();
    assert_eq!(differs, DIFFERENT, "exec: {exec_unit:#?}\nservice: {service:#?}");
    assert_eq!(exec_unit["WorkingDirectory"], [release.as_str()]);
    let files = &exec_unit["EnvironmentFiles"];
    assert!(files.contains(&format!("{release}/.relctl/environment")), "{files:?}");
    assert!(files.contains(&"/etc/relctl/dev.env".to_string()), "the secrets: {files:?}");
    assert_eq!(exec_unit["RuntimeDirectoryPreserve"], ["yes"]);
    assert_eq!((exec_unit["Type"][0].as_str(), service["Type"][0].as_str()), ("oneshot", "notify"));
    assert!(
        exec_unit["IPAddressDeny"].iter().all(|v| v.is_empty()),
        "no IP address filter by default, as the service: {:?}",
        exec_unit["IPAddressDeny"]
    );
    assert!(exec_unit["ReadWritePaths"].contains(&"/srv/shared".to_string()), "{exec_unit:?}");
    let text = end;
    assert!(text.starts_with("a deploy command is not held up"), "exec holds no lock: {}", show(&out));
    assert!(text.ends_with("exit 143"), "SIGTERM stops the command; relctl exits 128+15: {}", show(&out));
    assert!(stderr(&out).contains(&format!("relctl: SIGTERM: stopping {unit}")), "{}", show(&out));

    // -- usage errors: one line, exit 2 ----------------------------------------------------------
    for (args, msg) in [
        (&["development"][..], "relctl: the following required arguments were not provided: <CMD>..."),
        (&["staging", "--", "id"], "relctl: build \"staging\" is not declared in"),
        (&["testing", "--", "id"], "relctl: build testing has no release yet"),
        (&["-e", "1X=y", "development", "--", "id"], "relctl: -e 1X=y: \"1X\" is not a variable name"),
    ] {
        let out = exec(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        assert!(stderr(&out).starts_with(msg) && stderr(&out).lines().count() == 1, "{args:?}: {}", show(&out));
    }

    // -- the service never noticed, and nothing of exec's is left -------------------------------
    assert_eq!(env.main_pid("development"), pid, "the live service kept its main process");
    assert_eq!(env.sh(&format!("ls {RUNTIME}")), "the-service-was-here", "its runtime directory survived");
    assert_eq!(exec_units(&env), "", "no exec unit stays loaded");
    assert_eq!(
        env.sh("ls /run/relctl"),
        "medctrl.lock\nmedctrl@development.switch",
        "only relctl's locks: no -e file stays behind"
    );
}
