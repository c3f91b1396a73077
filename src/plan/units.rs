//! The app's unit files, rendered from relctl's templates in `units/` (compiled into the binary):
//! `<app>@.service`, `<app>@.socket`, `<app>.target`. Rendered only where they are written.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::error::Error;
use crate::host::atomic;
use crate::plan::processes::ProcessSet;
use crate::plan::AppPlan;
use crate::release::layout::{Slot, MARKER};
use crate::release::render;

/// A file relctl writes for systemd.
#[derive(Debug, Clone, Serialize)]
pub struct UnitFile {
    pub path: PathBuf,
    pub contents: String,
}

const SERVICE_TEMPLATE: &str = include_str!("../../units/app@.service.tera");
const SOCKET_TEMPLATE: &str = include_str!("../../units/app@.socket.tera");
const TARGET_TEMPLATE: &str = include_str!("../../units/app.target.tera");
const SANDBOX_TEMPLATE: &str = include_str!("../../units/sandbox.tera");
const PROCESS_TEMPLATE: &str = include_str!("../../units/process@.service.tera");
const JOB_TEMPLATE: &str = include_str!("../../units/job.service.tera");
const TIMER_TEMPLATE: &str = include_str!("../../units/job.timer.tera");
const WAKE_SERVICE_TEMPLATE: &str = include_str!("../../units/wake@.service.tera");
const WAKE_SOCKET_TEMPLATE: &str = include_str!("../../units/wake@.socket.tera");

/// systemd's proxy, which the wake units run (`systemd-socket-proxyd(8)`).
pub const PROXYD: &str = "/usr/lib/systemd/systemd-socket-proxyd";

/// What the unit templates see.
#[derive(Debug, Serialize)]
struct UnitContext<'a> {
    app: &'a str,
    component: &'a str,
    root: &'a Path,
    user: &'a str,
    socket_name: &'a str,
    socket_group: &'a str,
    socket_mode: String,
    /// The unit name before `@`: `<app>` (main) or `<app>_next` (next).
    unit: String,
    role: &'static str,
    description_suffix: &'static str,
    /// The symlink in the build directory the instance runs: `current` or `next`.
    link: &'static str,
    /// The socket file the instance listens on, in the build directory.
    listen: &'static str,
    runtime_suffix: &'static str,
    /// Enabled into `<app>.target` (main); next only runs when a deploy hands the build to it.
    enabled: bool,
    /// Main only: the build's switch lock (`lock::switch_lock_path`, with `%i`); main takes the
    /// public socket when it starts while relctl does not hold it.
    switch_lock: Option<String>,
    switch_lock_dir: &'static str,
    timeout_start_s: u64,
    /// The sandbox every unit of the app runs in (`units/sandbox.tera`).
    sandbox: String,
    /// The wake units: main's socket file, and systemd's proxy.
    main_socket: &'static str,
    next_socket: &'static str,
    proxyd: &'static str,
}

/// What `units/sandbox.tera` sees.
#[derive(Debug, Serialize)]
struct SandboxContext<'a> {
    hardening: &'a crate::manifest::Hardening,
    /// `IPAddressAllow=` (with `IPAddressDeny=any`); `None`: no IP address filter.
    ip_address_allow: Option<String>,
}

/// The `[Service]` hardening lines every unit of the app gets, from `[hardening]`.
fn sandbox(app: &AppPlan) -> Result<String> {
    let ctx = SandboxContext {
        hardening: &app.hardening,
        ip_address_allow: ip_address_allow(app.hardening.ip_address_allow.as_deref()),
    };
    render::render_value("units/sandbox.tera", SANDBOX_TEMPLATE, &ctx)
}

/// The mode of every build's socket (`SocketMode=` in the socket unit).
pub const SOCKET_MODE: u32 = 0o660;

/// Where systemd looks for unit files, most important first.
const UNIT_PATHS: [&str; 4] =
    ["/etc/systemd/system", "/run/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"];

/// Refuses an app whose unit names are taken by units relctl did not write (e.g. app `getty`
/// would shadow the system's `getty@.service`), naming the file; but those in `adopting` (a
/// hand-made setup `build --adopt` takes over).
pub fn check_ours(app: &AppPlan, adopting: &[PathBuf]) -> Result<()> {
    check_ours_in(app, &UNIT_PATHS.map(Path::new), adopting)
}

fn check_ours_in(app: &AppPlan, dirs: &[&Path], adopting: &[PathBuf]) -> Result<()> {
    for name in paths(app).iter().filter_map(|p| p.file_name()) {
        for dir in dirs {
            let path = dir.join(name);
            if adopting.contains(&path) {
                continue;
            }
            let Some(bytes) = atomic::read_if_exists(&path)? else { continue };
            if !String::from_utf8_lossy(&bytes).contains(MARKER) {
                return Err(Error::Usage(format!(
                    "{} exists and relctl did not write it (it has no \"{MARKER}\" line): app \"{}\" would replace or shadow it; choose another app name; if it is a hand-made setup of this app, take it over with `relctl build <BUILD> --adopt` (relctl build <BUILD> names what it finds)",
                    path.display(),
                    app.layout.app
                ))
                .into());
            }
        }
    }
    Ok(())
}

/// The paths of the app's unit files, in the order they are written: main's service
/// and socket, the target, next's service and socket, the wake service and socket (see
/// `layout::WAKE_SOCKET`).
pub fn paths(app: &AppPlan) -> [PathBuf; 7] {
    let l = &app.layout;
    let next = Slot::Next.unit_prefix(&l.app);
    let wake = l.wake_prefix();
    [
        l.service_template(),
        l.socket_template(),
        l.target(),
        format!("{next}@.service"),
        format!("{next}@.socket"),
        format!("{wake}@.service"),
        format!("{wake}@.socket"),
    ]
    .map(|name| l.unit_dir.join(name))
}

/// Renders the app's unit files (see [`paths`]).
pub fn render(app: &AppPlan) -> Result<Vec<UnitFile>> {
    let l = &app.layout;
    let sandbox = sandbox(app)?;
    let ctx = |slot: Slot| UnitContext {
        app: &l.app,
        component: &l.component,
        root: &l.root,
        user: &app.user,
        socket_name: &l.socket_name,
        socket_group: &app.socket_group,
        socket_mode: format!("{SOCKET_MODE:04o}"),
        unit: slot.unit_prefix(&l.app),
        role: match slot {
            Slot::Main => "the main instance",
            Slot::Next => "the next instance (where a deploy verifies a release while main serves)",
        },
        description_suffix: match slot {
            Slot::Main => "",
            Slot::Next => " (next)",
        },
        link: slot.link(),
        listen: slot.socket_file(),
        runtime_suffix: match slot {
            Slot::Main => "",
            Slot::Next => "-next",
        },
        enabled: slot == Slot::Main,
        switch_lock_dir: crate::host::lock::LOCK_DIR,
        switch_lock: (slot == Slot::Main).then(|| {
            crate::host::lock::switch_lock_path(Path::new(crate::host::lock::LOCK_DIR), &l.app, "%i")
                .display()
                .to_string()
        }),
        // systemd must not give up on a start before the health gate does.
        timeout_start_s: app.health.timeout_s.max(90),
        sandbox: sandbox.clone(),
        main_socket: Slot::Main.socket_file(),
        next_socket: Slot::Next.socket_file(),
        proxyd: PROXYD,
    };
    let [service, socket, target, next_service, next_socket, wake_service, wake_socket] = paths(app);
    let unit = |path: PathBuf, name: &str, source: &str, slot: Slot| -> Result<UnitFile> {
        Ok(UnitFile { path, contents: render::render_value(name, source, &ctx(slot))? })
    };
    // The wake units: main's context, but their own name and socket; main's switch lock.
    let wake = |path: PathBuf, name: &str, source: &str| -> Result<UnitFile> {
        let ctx = UnitContext { unit: l.wake_prefix(), listen: crate::release::layout::WAKE_SOCKET, ..ctx(Slot::Main) };
        Ok(UnitFile { path, contents: render::render_value(name, source, &ctx)? })
    };
    Ok(vec![
        unit(service, "units/app@.service.tera", SERVICE_TEMPLATE, Slot::Main)?,
        unit(socket, "units/app@.socket.tera", SOCKET_TEMPLATE, Slot::Main)?,
        unit(target, "units/app.target.tera", TARGET_TEMPLATE, Slot::Main)?,
        unit(next_service, "units/app@.service.tera", SERVICE_TEMPLATE, Slot::Next)?,
        unit(next_socket, "units/app@.socket.tera", SOCKET_TEMPLATE, Slot::Next)?,
        wake(wake_service, "units/wake@.service.tera", WAKE_SERVICE_TEMPLATE)?,
        wake(wake_socket, "units/wake@.socket.tera", WAKE_SOCKET_TEMPLATE)?,
    ])
}

/// The drop-in of `build`'s wake service (`<app>_wake@<build>.service.d/50-relctl.conf`): how long
/// it waits for a connection before the build sleeps, and the build's processes and timers
/// (`jobs`), which wake with it.
pub fn wake_dropin(build: &str, idle_stop_s: u64, jobs: &[String]) -> String {
    let mut s = format!(
        "# Written by relctl for build {build} (idle_stop_s); `relctl build {build}` rewrites it, do not edit.\n"
    );
    if !jobs.is_empty() {
        s.push_str(&format!("[Unit]\nWants={}\n", jobs.join(" ")));
    }
    s.push_str(&format!("[Service]\nEnvironment=RELCTL_IDLE_STOP_S={idle_stop_s}\n"));
    s
}

/// What the process and timer templates see.
#[derive(Debug, Serialize)]
struct JobContext<'a> {
    app: &'a str,
    component: &'a str,
    root: &'a Path,
    user: &'a str,
    build: &'a str,
    name: &'a str,
    unit: String,
    secrets: Option<&'a Path>,
    sandbox: &'a str,
    // Processes.
    ready: bool,
    timeout_start_s: u64,
    stop_timeout_s: u64,
    // Timers and their jobs.
    what: String,
    script: String,
    runtime: String,
    on_failure: Option<String>,
    failed_unit: Option<String>,
    timeout_s: u64,
    service: String,
    on_calendar: &'a str,
    randomized_delay_s: u64,
    persistent: bool,
}

/// The unit files of `build`'s processes and timers (see `ProcessSet`): a template per process,
/// a timer and its job's service per timer, and the failure notification's service of a timer
/// that has one.
pub fn render_jobs(app: &AppPlan, build: &str, set: &ProcessSet) -> Result<Vec<UnitFile>> {
    let l = &app.layout;
    let sandbox = sandbox(app)?;
    let ctx = |name: &str, unit: String| JobContext {
        app: &l.app,
        component: &l.component,
        root: &l.root,
        user: &app.user,
        build,
        name: "",
        unit,
        secrets: set.secrets.as_deref(),
        sandbox: &sandbox,
        ready: false,
        timeout_start_s: 90,
        stop_timeout_s: 60,
        what: String::new(),
        script: String::new(),
        runtime: name.to_string(),
        on_failure: None,
        failed_unit: None,
        timeout_s: 0,
        service: String::new(),
        on_calendar: "",
        randomized_delay_s: 0,
        persistent: true,
    };
    let file = |unit: &str, template: &str, source: &str, c: &JobContext| -> Result<UnitFile> {
        Ok(UnitFile { path: l.unit_dir.join(unit), contents: render::render_value(template, source, c)? })
    };
    let mut files = Vec::new();
    for p in &set.processes {
        let unit = l.process_template(build, &p.name);
        let c = JobContext {
            name: &p.name,
            ready: p.ready.is_some(),
            // systemd must not give up on a start before the readiness check does.
            timeout_start_s: if p.ready.is_some() { p.ready_timeout_s } else { 90 },
            stop_timeout_s: p.stop_timeout_s,
            ..ctx(&p.name, unit.clone())
        };
        files.push(file(&unit, "units/process@.service.tera", PROCESS_TEMPLATE, &c)?);
    }
    for t in &set.timers {
        let service = l.timer_service(build, &t.name);
        let failed = l.timer_failed_unit(build, &t.name);
        let job = JobContext {
            name: &t.name,
            what: format!("timer {}", t.name),
            script: format!("timer-{}", t.name),
            on_failure: t.on_failure.as_ref().map(|_| failed.clone()),
            timeout_s: t.timeout_s,
            ..ctx(&t.name, service.clone())
        };
        files.push(file(&service, "units/job.service.tera", JOB_TEMPLATE, &job)?);
        let timer = l.timer_unit(build, &t.name);
        let c = JobContext {
            name: &t.name,
            service: service.clone(),
            on_calendar: &t.on_calendar,
            randomized_delay_s: t.randomized_delay_s,
            persistent: t.persistent,
            ..ctx(&t.name, timer.clone())
        };
        files.push(file(&timer, "units/job.timer.tera", TIMER_TEMPLATE, &c)?);
        if t.on_failure.is_some() {
            let c = JobContext {
                name: &t.name,
                what: format!("the failure notification of timer {}", t.name),
                script: format!("timer-{}-failed", t.name),
                runtime: format!("{}-failed", t.name),
                failed_unit: Some(service.clone()),
                timeout_s: 300,
                ..ctx(&t.name, failed.clone())
            };
            files.push(file(&failed, "units/job.service.tera", JOB_TEMPLATE, &c)?);
        }
    }
    Ok(files)
}

/// The unit files of `build`'s processes and timers installed now (relctl's, by their marker),
/// sorted.
pub fn installed_jobs(l: &crate::release::layout::AppLayout, build: &str) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(&l.unit_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("listing {}", l.unit_dir.display()))),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| anyhow::Error::new(e).context(format!("listing {}", l.unit_dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !l.is_job_of(&name, build) || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let ours = atomic::read_if_exists(&entry.path())?.is_some_and(|b| String::from_utf8_lossy(&b).contains(MARKER));
        if ours {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// Refuses unit files of `build`'s processes and timers that exist and that relctl did not write.
pub fn check_jobs_ours(files: &[UnitFile]) -> Result<()> {
    for f in files {
        if let Some(bytes) = atomic::read_if_exists(&f.path)? {
            if !String::from_utf8_lossy(&bytes).contains(MARKER) {
                return Err(Error::Usage(format!(
                    "{} exists and relctl did not write it (it has no \"{MARKER}\" line); relctl would replace it: rename the process or timer in the manifest, or remove the file",
                    f.path.display()
                ))
                .into());
            }
        }
    }
    Ok(())
}

/// The units `enable` makes part of `build` (wanted by its main instance): each process
/// instance and each timer.
pub fn job_units_to_enable(app: &AppPlan, build: &str, set: &ProcessSet) -> Vec<String> {
    let l = &app.layout;
    let mut units: Vec<String> =
        set.processes.iter().flat_map(|p| (1..=p.instances).map(move |n| l.process_unit(build, &p.name, n))).collect();
    units.extend(set.timers.iter().map(|t| l.timer_unit(build, &t.name)));
    units
}

/// localhost and the manifest's entries, or `None` (no filter) when it has none or `["any"]`.
pub fn ip_address_allow(allow: Option<&[String]>) -> Option<String> {
    use crate::manifest::{IP_ANY, IP_LOCALHOST};
    let allow = allow?;
    if allow.iter().any(|a| a == IP_ANY) {
        return None;
    }
    let extra = allow.iter().map(String::as_str).filter(|a| *a != IP_LOCALHOST);
    Some(std::iter::once(IP_LOCALHOST).chain(extra).collect::<Vec<_>>().join(" "))
}

/// What `relctl logs` and `status` say when the app's IP filter is on and a line of its journal
/// shows a refused connection ("Operation not permitted", what a dropped connect() returns): the
/// filter and the key that changes it. None when there is no filter or nothing was refused.
pub fn ip_filter_note(app: &str, allow: Option<&[String]>, message: &str) -> Option<String> {
    let allowed = ip_address_allow(allow)?;
    if !message.contains("Operation not permitted") {
        return None;
    }
    Some(format!(
        "note: {app}'s service may use IP only with {allowed} (IPAddressAllow=, from [hardening] ip_address_allow in relctl.toml); a connection to any other address fails with \"Operation not permitted\". Add the address to ip_address_allow, or remove the key to lift the filter, then relctl build."
    ))
}

#[cfg(test)]
mod hardening_tests {
    use super::*;
    use crate::manifest::{self, Loaded};

    const EXAMPLE: &str = "app = \"medctrl\"\ncomponent = \"backend\"\n[service]\nexec = \"x\"\n[builds.development]\n";

    /// The example's service unit, with `extra` appended to its manifest.
    fn service(extra: &str) -> String {
        let text = format!("{EXAMPLE}{extra}");
        let manifest = manifest::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let loaded = Loaded { path: "/srv/relctl.toml".into(), dir: "/srv".into(), manifest };
        render(&crate::plan::app(&loaded).unwrap()).unwrap().swap_remove(0).contents
    }

    const HARDENED: &[&str] = &[
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "PrivateMounts=yes",
        "PrivateUsers=yes",
        "ProtectProc=invisible",
        "ProcSubset=pid",
        "RemoveIPC=yes",
        "MemoryDenyWriteExecute=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @resources",
        "SystemCallErrorNumber=EPERM",
        "UMask=0077",
    ];

    #[test]
    fn service_is_hardened_by_default() {
        let c = service("");
        let lines: Vec<&str> = c.lines().collect();
        for want in HARDENED {
            assert!(lines.contains(want), "missing {want:?}:\n{c}");
        }
        assert!(!c.contains("\n\n\n") && !c.contains("%I"), "{c}");
        assert_eq!(service(""), service("[hardening]\n"), "an empty [hardening] is the default");
    }

    /// The lines only in `a` and the lines only in `b`.
    fn line_diff<'a>(a: &'a str, b: &'a str) -> (Vec<&'a str>, Vec<&'a str>) {
        let only = |x: &'a str, y: &'a str| x.lines().filter(|l| !y.lines().any(|m| m == *l)).collect();
        (only(a, b), only(b, a))
    }

    #[test]
    fn each_hardening_key_changes_exactly_its_setting() {
        let strict = service("");
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("memory_deny_write_execute = false", &["MemoryDenyWriteExecute=yes"], &["MemoryDenyWriteExecute=no"]),
            ("private_users = false", &["PrivateUsers=yes"], &["PrivateUsers=no"]),
            ("proc_subset = \"all\"", &["ProcSubset=pid"], &["ProcSubset=all"]),
            ("umask = \"0027\"", &["UMask=0077"], &["UMask=0027"]),
        ];
        let open = [
            "# No IP address filter: the app reaches its database, mail server and APIs over IP. It listens on",
            "# no IP port (its socket is the unix socket above; relctl's gate refuses a release that listens",
            "# on IP). [hardening] ip_address_allow = [\"localhost\", ...] limits IP to those addresses.",
        ];
        let filtered = |allow: &'static str| -> Vec<&'static str> {
            vec![
                "# IP only to and from localhost and [hardening] ip_address_allow (nginx uses the unix socket);",
                "# anything else is dropped: connect() to another host times out.",
                "IPAddressDeny=any",
                allow,
            ]
        };
        let filters: &[(&str, Vec<&str>)] = &[
            (
                "ip_address_allow = [\"10.0.0.5\", \"192.168.0.0/16\", \"fd00::/8\"]",
                filtered("IPAddressAllow=localhost 10.0.0.5 192.168.0.0/16 fd00::/8"),
            ),
            ("ip_address_allow = [\"localhost\"]", filtered("IPAddressAllow=localhost")),
            ("ip_address_allow = []", filtered("IPAddressAllow=localhost")),
            ("ip_address_allow = [\"10.0.0.5\", \"localhost\"]", filtered("IPAddressAllow=localhost 10.0.0.5")),
        ];
        for (key, added) in filters {
            let open_unit = service("");
            let strict = service(&format!("[hardening]\n{key}\n"));
            let (gone, new) = line_diff(&open_unit, &strict);
            assert_eq!((gone.as_slice(), new.as_slice()), (&open[..], added.as_slice()), "{key}");
        }
        assert_eq!(service("[hardening]\nip_address_allow = [\"any\"]\n"), service(""), "any is the default");
        for (key, removed, added) in cases {
            let relaxed = service(&format!("[hardening]\n{key}\n"));
            assert!(relaxed.contains("\n\n[Install]\n") && !relaxed.contains("\n\n\n"), "{relaxed}");
            let (gone, new) = line_diff(&strict, &relaxed);
            assert_eq!((gone.as_slice(), new.as_slice()), (*removed, *added), "{key}");
        }
        // Restating the defaults changes nothing.
        let defaults = "[hardening]\nmemory_deny_write_execute = true\nprivate_users = true\nproc_subset = \"pid\"\numask = \"0077\"\n";
        assert_eq!(service(defaults), strict);
    }

    #[test]
    fn a_refused_connection_names_the_filter_and_its_key() {
        let strict = vec!["10.0.0.5".to_string()];
        let refused = "OSError: [Errno 1] Operation not permitted";
        let note = ip_filter_note("shop", Some(&strict), refused).unwrap();
        assert!(note.starts_with("note: shop's service may use IP only with localhost 10.0.0.5 (IPAddressAllow=, from [hardening] ip_address_allow in relctl.toml)"), "{note}");
        assert_eq!(ip_filter_note("shop", None, refused), None, "no filter by default");
        assert_eq!(ip_filter_note("shop", Some(&["any".to_string()]), refused), None);
        assert_eq!(ip_filter_note("shop", Some(&strict), "GET / 200"), None);
    }

    #[test]
    fn hardening_keys_are_checked() {
        let parse = |body: &str| manifest::parse(&format!("{EXAMPLE}[hardening]\n{body}\n"));
        for ok in [
            "umask = \"022\"",
            "umask = \"0027\"",
            "ip_address_allow = [\"10.0.0.5\", \"10.0.0.0/8\", \"::1\", \"2001:db8::/32\", \"0.0.0.0/0\"]",
            "ip_address_allow = [\"any\"]",
        ] {
            assert!(parse(ok).is_ok(), "{ok}: {:?}", parse(ok).err());
        }
        for (bad, msg) in [
            ("umask = \"27\"", "[hardening] umask \"27\" must be 3 or 4 octal digits"),
            ("umask = \"0028\"", "[hardening] umask \"0028\""),
            ("umask = \"1077\"", "[hardening] umask \"1077\""),
            ("ip_address_allow = [\"db.example.com\"]", "entry \"db.example.com\" is not an IP address or CIDR range"),
            ("ip_address_allow = [\"10.0.0.0/33\"]", "entry \"10.0.0.0/33\""),
            ("ip_address_allow = [\"fd00::/129\"]", "entry \"fd00::/129\""),
            ("ip_address_allow = [\"10.0.0.1/+8\"]", "entry \"10.0.0.1/+8\""),
            ("ip_address_allow = [\"10.0.0.1 ; x\"]", "entry \"10.0.0.1 ; x\""),
            ("ip_address_allow = [\"localhost:5432\"]", "entry \"localhost:5432\""),
            ("ip_address_allow = [\"any\", \"10.0.0.1\"]", "\"any\" lifts the IP filter; list it alone"),
            ("proc_subset = \"none\"", "unknown variant `none`"),
            ("private_user = false", "unknown field `private_user`"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(msg), "{bad}: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{self, Loaded};

    fn example() -> AppPlan {
        app("medctrl")
    }

    fn app(name: &str) -> AppPlan {
        let text =
            format!("app = \"{name}\"\ncomponent = \"backend\"\n[service]\nexec = \"x\"\n[builds.development]\n");
        let loaded =
            Loaded { path: "/srv/relctl.toml".into(), dir: "/srv".into(), manifest: manifest::parse(&text).unwrap() };
        crate::plan::app(&loaded).unwrap()
    }

    #[test]
    fn the_wake_units_proxy_to_the_public_socket_and_stop_the_build_only_when_idle() {
        let units = render(&example()).unwrap();
        let [service, socket] = [5, 6].map(|i| &units[i]);
        assert_eq!(service.path, Path::new("/etc/systemd/system/medctrl_wake@.service"));
        assert_eq!(socket.path, Path::new("/etc/systemd/system/medctrl_wake@.socket"));
        let s = &socket.contents;
        assert!(s.contains("ListenStream=/opt/medctrl/backend/%i/.relctl-wake.sock\n"), "{s}");
        assert!(s.contains("SocketGroup=www-data\nSocketMode=0660\n") && s.contains("WantedBy=medctrl.target"), "{s}");
        let s = &service.contents;
        assert!(s.contains(MARKER), "{s}");
        assert!(
            s.contains("ExecStart=/usr/lib/systemd/systemd-socket-proxyd --exit-idle-time=${RELCTL_IDLE_STOP_S}s /opt/medctrl/backend/%i/gunicorn.sock\n"),
            "{s}"
        );
        // Only an exit of its own (idle), and never while relctl holds the build's switch lock.
        let stop = s.lines().find(|l| l.starts_with("ExecStopPost=+")).unwrap();
        assert!(stop.contains(r#"[ "$$EXIT_CODE" = exited ] && [ "$$EXIT_STATUS" = 0 ] || exit 0"#), "{stop}");
        assert!(stop.contains("flock -n -E 0 /run/relctl/medctrl@%i.switch"), "{stop}");
        assert!(
            stop.contains("systemctl -q stop medctrl@%i.service medctrl_next@%i.service medctrl_%i_\\\\*"),
            "{stop}"
        );
        // After a reboot, the public socket goes back on main's, the one systemd holds from boot.
        let pre = s.lines().find(|l| l.starts_with("ExecStartPre=+")).unwrap();
        assert!(
            pre.contains(r#"[ "$$(readlink /opt/medctrl/backend/%i/gunicorn.sock)" = .relctl-next.sock ] && ! systemctl -q is-active medctrl_next@%i.socket || exit 0"#)
                && pre.contains("ln -sfn .relctl-live.sock"),
            "{pre}"
        );
        assert!(s.contains("DynamicUser=yes\nSupplementaryGroups=www-data\n"), "{s}");
        let dropin = wake_dropin("pr-1", 600, &["medctrl_pr-1_worker@1.service".into()]);
        assert!(
            dropin.contains(
                "[Unit]\nWants=medctrl_pr-1_worker@1.service\n[Service]\nEnvironment=RELCTL_IDLE_STOP_S=600\n"
            ),
            "{dropin}"
        );
    }

    #[test]
    fn units_use_the_instance_name_and_resolve_exec_against_the_instance_link() {
        let units = render(&example()).unwrap();
        let service = &units[0];
        assert_eq!(service.path, Path::new("/etc/systemd/system/medctrl@.service"));
        let c = &service.contents;
        assert!(c.contains(" /opt/medctrl/backend/%i/.relctl-main/.relctl/start\n"), "{c}");
        assert!(c.contains("WorkingDirectory=/opt/medctrl/backend/%i/.relctl-main\n"));
        assert!(c.contains("EnvironmentFile=/opt/medctrl/backend/%i/.relctl-main/.relctl/environment\n"));
        assert!(c.contains("Requires=medctrl@%i.socket\n") && c.contains("PartOf=medctrl.target\n"));
        assert!(c.contains("StateDirectory=medctrl/backend/%i\n") && c.contains("User=medctrl\n"));
        // The service user's home is /nonexistent; the service gets a writable one of its own.
        assert!(c.contains("CacheDirectory=medctrl/backend/%i\nRuntimeDirectory=medctrl/backend/%i\n"), "{c}");
        assert!(c.contains("Environment=HOME=%C/medctrl/backend/%i XDG_RUNTIME_DIR=%t/medctrl/backend/%i\n"));
        assert!(c.contains("Type=notify\n") && c.contains("ProtectSystem=strict\n"));
        assert!(!c.contains("%I"), "use %i, never %I");
        let socket = &units[1].contents;
        assert!(socket.contains("ListenStream=/opt/medctrl/backend/%i/.relctl-live.sock\n"), "{socket}");
        assert!(socket.contains("WantedBy=medctrl.target\n") && !socket.contains("RemoveOnStop"));
        let next_service = &units[3].contents;
        assert_eq!(units[3].path, Path::new("/etc/systemd/system/medctrl_next@.service"));
        assert!(next_service.contains(" /opt/medctrl/backend/%i/next/.relctl/start\n"), "{next_service}");
        assert!(
            next_service.contains("Requires=medctrl_next@%i.socket\n")
                && next_service.contains("PartOf=medctrl.target\n")
        );
        assert!(next_service.contains("RuntimeDirectory=medctrl/backend/%i-next\n"));
        assert!(!next_service.contains("[Install]"), "next is never enabled");
        // systemctl stop|restart of main reaches next; main started by anyone but relctl takes
        // the public socket, atomically, unless relctl holds the build's switch lock.
        assert!(next_service.contains("PartOf=medctrl@%i.service\n") && !c.contains("PartOf=medctrl@%i.service"));
        let takeover = "ExecStartPost=+/bin/sh -c 'mkdir -p -m 0700 /run/relctl && exec flock -n -E 0 /run/relctl/medctrl@%i.switch -c \"ln -sfn .relctl-live.sock /opt/medctrl/backend/%i/.relctl-public.tmp && mv -fT /opt/medctrl/backend/%i/.relctl-public.tmp /opt/medctrl/backend/%i/gunicorn.sock\"'\n";
        assert!(c.contains(takeover), "{c}");
        assert!(!next_service.contains("flock"), "{next_service}");
        // Main started by anyone but relctl after an interrupted switch goes back first (see
        // main_started_after_an_interrupted_switch_goes_back_where_the_switch_came_from).
        assert!(c.contains("\nExecStartPre=+/bin/sh -c 'mkdir -p -m 0700 /run/relctl && exec flock -n -E 0 /run/relctl/medctrl@%i.switch -c \"cd /opt/medctrl/backend/%i && [ -e .relctl-switch ] && [ -d .relctl-boot ] || exit 0;"), "{c}");
        assert!(!next_service.contains("ExecStartPre"), "{next_service}");
        let next_socket = &units[4].contents;
        assert!(next_socket.contains("ListenStream=/opt/medctrl/backend/%i/.relctl-next.sock\n"));
        assert!(next_socket.contains("RemoveOnStop=yes\n") && !next_socket.contains("[Install]"), "{next_socket}");
        assert!(socket.contains("SocketGroup=www-data\n") && socket.contains("SocketMode=0660\n"));
        assert!(units[2].contents.contains("WantedBy=multi-user.target"));
    }

    /// Main's `ExecStartPre=` as `sh -c` would run it for build `dev` of an app whose root is
    /// `root`, with the switch locks in `locks` instead of /run/relctl.
    fn settle_script(root: &Path, locks: &Path) -> String {
        let mut app = example();
        app.layout.root = root.to_path_buf();
        let service = render(&app).unwrap().remove(0).contents;
        let line = service.lines().find_map(|l| l.strip_prefix("ExecStartPre=+/bin/sh -c '")).expect(&service);
        let script = line.strip_suffix('\'').unwrap();
        assert!(!script.contains('\'') && !script.contains('$') && !script.contains('\\'), "{script}");
        script.replace("%i", "dev").replace(crate::host::lock::LOCK_DIR, &locks.display().to_string())
    }

    /// Main started by anyone but relctl (a boot after a power cut during a switch) first puts its
    /// link and `current` on the release `.relctl-boot` names — only when a switch journal is
    /// there, the link leads to a release, and no relctl holds the build's switch lock.
    #[test]
    fn main_started_after_an_interrupted_switch_goes_back_where_the_switch_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let (root, locks) = (dir.path().join("root"), dir.path().join("locks"));
        let build = root.join("dev");
        for r in ["r1", "r2"] {
            std::fs::create_dir_all(build.join("releases").join(r)).unwrap();
        }
        let link = |name: &str, to: &str| {
            let _ = std::fs::remove_file(build.join(name));
            std::os::unix::fs::symlink(to, build.join(name)).unwrap();
        };
        let target = |name: &str| std::fs::read_link(build.join(name)).unwrap().display().to_string();
        let script = settle_script(&root, &locks);
        let run = || {
            let out = std::process::Command::new("/bin/sh").arg("-c").arg(&script).output().unwrap();
            assert!(out.status.success(), "{script}: {out:?}");
            String::from_utf8_lossy(&out.stderr).into_owned()
        };
        let interrupted = || {
            link(".relctl-main", "releases/r2");
            link("current", "releases/r2");
            link(".relctl-boot", "releases/r1");
            std::fs::write(build.join(".relctl-switch"), "{}").unwrap();
        };

        // No journal: a link left behind counts for nothing.
        interrupted();
        std::fs::remove_file(build.join(".relctl-switch")).unwrap();
        assert_eq!(run(), "");
        assert_eq!((target(".relctl-main"), target("current")), ("releases/r2".into(), "releases/r2".into()));

        // A journal: both links go back.
        interrupted();
        let said = run();
        assert_eq!(said, "relctl: a switch of build dev was interrupted, main and current go back on:\nreleases/r1\n");
        assert_eq!((target(".relctl-main"), target("current")), ("releases/r1".into(), "releases/r1".into()));
        assert!(!build.join(".relctl-boot.tmp").exists());

        // relctl holds the switch lock (it starts main as a candidate on r2): nothing moves.
        interrupted();
        let file = std::fs::File::create(locks.join("medctrl@dev.switch")).unwrap();
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
        assert_eq!(run(), "");
        assert_eq!(target(".relctl-main"), "releases/r2");
        drop(lock);

        // A boot link to a release that is gone: nothing moves.
        interrupted();
        link(".relctl-boot", "releases/r0");
        assert_eq!(run(), "");
        assert_eq!((target(".relctl-main"), target("current")), ("releases/r2".into(), "releases/r2".into()));
        // A leftover temp link from a start cut short is replaced.
        link(".relctl-boot", "releases/r1");
        link(".relctl-boot.tmp", "releases/r2");
        run();
        assert_eq!((target(".relctl-main"), target("current")), ("releases/r1".into(), "releases/r1".into()));
    }

    #[test]
    fn units_relctl_did_not_write_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = [dir.path()];
        assert!(check_ours_in(&app("getty"), &dirs, &[]).is_ok(), "nothing there yet");
        for unit in render(&app("getty")).unwrap() {
            std::fs::write(dir.path().join(unit.path.file_name().unwrap()), &unit.contents).unwrap();
        }
        assert!(check_ours_in(&app("getty"), &dirs, &[]).is_ok(), "relctl's own units are fine");
        std::fs::write(dir.path().join("getty@.service"), "[Unit]\nDescription=Getty on %I\n").unwrap();
        let err = check_ours_in(&app("getty"), &dirs, &[]).unwrap_err();
        assert!(crate::error::is_usage(&err));
        let expected = format!("{}/getty@.service exists and relctl did not write it", dir.path().display());
        assert!(err.to_string().starts_with(&expected), "{err}");
        assert!(err.to_string().contains("relctl build <BUILD> --adopt"), "{err}");
        let adopting = [dir.path().join("getty@.service")];
        assert!(check_ours_in(&app("getty"), &dirs, &adopting).is_ok(), "a hand-made unit being adopted");
    }

    #[test]
    fn the_systems_own_units_are_refused_on_this_host() {
        // Debian's systemd ships getty@.service and user@.service.
        for name in ["getty", "user"] {
            let unit = format!("/lib/systemd/system/{name}@.service");
            assert!(Path::new(&unit).exists(), "{unit} missing: install systemd (apt-get install systemd)");
            assert!(check_ours(&app(name), &[]).is_err(), "{name}");
        }
    }
}

#[cfg(test)]
mod job_tests {
    use super::*;
    use crate::manifest::{self, Loaded};
    use crate::plan::processes::ProcessSet;

    const M: &str = r#"app = "shop"
component = "web"
[service]
exec = "x"
[processes.worker]
exec = "celery worker"
instances = 2
stop_timeout_s = 600
ready = "celery inspect ping"
ready_timeout_s = 45
[timers.clear]
exec = "manage.py clearsessions"
on_calendar = "daily"
randomized_delay_s = 600
persistent = false
timeout_s = 120
on_failure = "notify"
[builds.prod]
secrets = "/etc/relctl/shop.env"
"#;

    fn files() -> (AppPlan, Vec<UnitFile>) {
        let m = manifest::parse(M).unwrap();
        let set = ProcessSet::resolve(&m, &m.builds["prod"]);
        let loaded = Loaded { path: "/srv/relctl.toml".into(), dir: "/srv".into(), manifest: m };
        let app = crate::plan::app(&loaded).unwrap();
        let files = render_jobs(&app, "prod", &set).unwrap();
        (app, files)
    }

    #[test]
    fn a_process_runs_current_as_web_does_part_of_the_build() {
        let (app, files) = files();
        let names: Vec<String> =
            files.iter().map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(
            names,
            [
                "shop_prod_worker@.service",
                "shop_prod_clear.service",
                "shop_prod_clear.timer",
                "shop_prod_clear-failed.service"
            ]
        );
        let worker = &files[0].contents;
        for line in [
            "PartOf=shop@prod.service",
            "WantedBy=shop@prod.service",
            // Started with web (at boot), after main's start put `current` where it belongs.
            "After=shop@prod.service",
            "X-Relctl-Build=prod",
            "X-Relctl-Process=worker",
            "Type=exec",
            "User=shop",
            "WorkingDirectory=/opt/shop/web/prod/current",
            "EnvironmentFile=/opt/shop/web/prod/current/.relctl/environment",
            "EnvironmentFile=-/opt/shop/web/prod/.relctl-secret-key",
            "EnvironmentFile=/etc/relctl/shop.env",
            "Environment=RELCTL_PROCESS=worker RELCTL_PROCESS_INSTANCE=%i",
            "ExecStart=/opt/shop/web/prod/current/.relctl/process-worker",
            "ExecStartPost=/bin/sh -c 'until \"$$0\" >/dev/null 2>&1; do kill -0 \"$$MAINPID\" 2>/dev/null || { echo \"process exited before its readiness check passed\" >&2; exit 1; }; sleep 1; done' /opt/shop/web/prod/current/.relctl/ready-worker",
            "StateDirectory=shop/web/prod",
            "RuntimeDirectory=shop/web/prod-worker-%i",
            "KillMode=mixed",
            "TimeoutStartSec=45",
            "TimeoutStopSec=600",
            "Restart=on-failure",
            "ProtectSystem=strict",
            "SystemCallFilter=@system-service",
        ] {
            assert!(worker.lines().any(|l| l == line), "missing {line:?}:\n{worker}");
        }
        assert!(worker.contains(MARKER) && !worker.contains("\n\n\n"), "{worker}");
        // The same sandbox as web's.
        let web = &render(&app).unwrap()[0].contents;
        let sandbox = |c: &str| {
            c.lines()
                .skip_while(|l| !l.starts_with("# Hardening"))
                .take_while(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(sandbox(worker), sandbox(web));
    }

    #[test]
    fn a_timer_runs_one_job_at_a_time_and_notifies_its_failure() {
        let (_, files) = files();
        let (job, timer, failed) = (&files[1].contents, &files[2].contents, &files[3].contents);
        for line in [
            "Type=oneshot",
            "OnFailure=shop_prod_clear-failed.service",
            "TimeoutStartSec=120",
            "ExecStart=/opt/shop/web/prod/current/.relctl/timer-clear",
            "X-Relctl-Timer=clear",
            "After=shop@prod.service",
        ] {
            assert!(job.lines().any(|l| l == line), "missing {line:?}:\n{job}");
        }
        assert!(!job.contains("[Install]"), "the timer starts it");
        for line in [
            "OnCalendar=daily",
            "RandomizedDelaySec=600",
            "Persistent=no",
            "AccuracySec=1s",
            "Unit=shop_prod_clear.service",
            "PartOf=shop@prod.service",
            "WantedBy=shop@prod.service",
        ] {
            assert!(timer.lines().any(|l| l == line), "missing {line:?}:\n{timer}");
        }
        assert!(failed.contains("ExecStart=/opt/shop/web/prod/current/.relctl/timer-clear-failed\n"), "{failed}");
        assert!(
            failed.contains("RELCTL_FAILED_UNIT=shop_prod_clear.service") && !failed.contains("OnFailure="),
            "{failed}"
        );
    }

    #[test]
    fn job_units_relctl_did_not_write_are_refused_and_only_the_builds_own_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let (mut app, _) = files();
        app.layout.unit_dir = dir.path().to_path_buf();
        let m = manifest::parse(M).unwrap();
        let files = render_jobs(&app, "prod", &ProcessSet::resolve(&m, &m.builds["prod"])).unwrap();
        assert!(check_jobs_ours(&files).is_ok());
        std::fs::write(&files[0].path, "[Service]\nExecStart=/bin/true\n").unwrap();
        let err = check_jobs_ours(&files).unwrap_err();
        assert!(crate::error::is_usage(&err) && err.to_string().contains("relctl did not write it"), "{err}");
        assert!(installed_jobs(&app.layout, "prod").unwrap().is_empty(), "a file without the marker is not relctl's");
        for f in &files {
            std::fs::write(&f.path, &f.contents).unwrap();
        }
        // Another build whose name starts the same, and another app.
        std::fs::write(dir.path().join("shop_prod_x_worker@.service"), &files[0].contents).unwrap();
        std::fs::write(dir.path().join("shopx_prod_worker@.service"), &files[0].contents).unwrap();
        let found: Vec<String> = installed_jobs(&app.layout, "prod")
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            found,
            [
                "shop_prod_clear-failed.service",
                "shop_prod_clear.service",
                "shop_prod_clear.timer",
                "shop_prod_worker@.service"
            ]
        );
    }
}
