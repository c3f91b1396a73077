use anyhow::Result;
use serde::Serialize;

use crate::error::Error;
use crate::manifest::Loaded;
use crate::name::BuildName;
use crate::plan;
use crate::plan::processes::ProcessSet;
use crate::release::id::ReleaseId;
use crate::release::layout::{self, AppLayout, BuildLayout, Slot};
use crate::report::{Mode, Report};
use crate::systemd::dbus::Systemd;
use crate::systemd::unit::{ActiveState, UnitState};

#[derive(Debug, Serialize)]
struct BuildStatus {
    build: BuildName,
    unit: String,
    state: ActiveState,
    sub_state: String,
    release: Option<ReleaseId>,
    #[serde(with = "crate::time::serde_rfc3339_option")]
    since: Option<jiff::Timestamp>,
    main_pid: Option<u32>,
    route: Option<String>,
    socket: String,
    active: bool,
    /// The build's other instance, while it runs (a deploy's candidate, or the one that served
    /// until a `systemctl start|restart` of main took the build back): its state and release.
    other: Option<Other>,
    /// `[processes.*]` as the current release runs them.
    processes: Vec<ProcessStatus>,
    /// `[timers.*]` as the current release runs them.
    timers: Vec<TimerStatus>,
    /// Since when its route answers 503 (`relctl maintenance on`), if it does.
    maintenance: Option<crate::maintenance::Maintenance>,
    /// `idle_stop_s`: the build sleeps after this many seconds without a request through nginx.
    idle_stop_s: Option<u64>,
    /// While the build sleeps (see `deploy::sleep`): since when, if known, and for how long.
    sleeping: Option<Sleeping>,
    /// The switch journal, while there is one: a relctl switching the build now (`in_progress`),
    /// or one interrupted (killed, or the power went) that the next build, rollback or restart
    /// finishes.
    switch: Option<SwitchStatus>,
}

#[derive(Debug, Serialize)]
struct Sleeping {
    #[serde(with = "crate::time::serde_rfc3339_option")]
    since: Option<jiff::Timestamp>,
    for_s: Option<u64>,
}

#[derive(Debug, Serialize)]
struct SwitchStatus {
    #[serde(flatten)]
    journal: crate::deploy::switch::Record,
    /// Whether the relctl that wrote the journal still runs.
    in_progress: bool,
}

#[derive(Debug, Serialize)]
struct ProcessStatus {
    name: String,
    /// Instances the current release runs.
    desired: u32,
    /// Of those, the active ones.
    running: u32,
    instances: Vec<ProcessInstance>,
}

#[derive(Debug, Serialize)]
struct ProcessInstance {
    unit: String,
    state: ActiveState,
    sub_state: String,
    main_pid: Option<u32>,
    restarts: u32,
    /// The release its main process runs (its working directory), while it runs.
    release: Option<ReleaseId>,
}

#[derive(Debug, Serialize)]
struct TimerStatus {
    name: String,
    unit: String,
    schedule: String,
    /// The timer's own state: `active` while it is scheduled.
    state: ActiveState,
    #[serde(with = "crate::time::serde_rfc3339_option")]
    next_run: Option<jiff::Timestamp>,
    #[serde(with = "crate::time::serde_rfc3339_option")]
    last_run: Option<jiff::Timestamp>,
    /// How the last run ended (systemd's Result: `success`, `exit-code`, `timeout`, ...); none
    /// before the first run, `running` during one.
    last_result: Option<String>,
    last_exit_status: Option<i32>,
}

#[derive(Debug, Serialize)]
struct Other {
    unit: String,
    state: ActiveState,
    release: Option<ReleaseId>,
}

pub fn run(loaded: &Loaded, only: Option<&BuildName>, report: &Report) -> Result<()> {
    let app = plan::app(loaded)?;
    if let Some(b) = only {
        loaded.build(b)?;
        if !app.builds.iter().any(|(name, _)| name == b) {
            return Err(crate::error::Error::Usage(format!(
                "build {b} of the family [builds.\"{}\"] does not exist on disk; relctl build {b} makes it",
                loaded.manifest.family_of(b).map_or("", |(pattern, _)| pattern)
            ))
            .into());
        }
    }
    let systemd = Systemd::connect()?;
    // Every build's instances in two calls: the app's loaded units; the others are not loaded.
    let mut mains = systemd.states(&app.layout.service_glob())?;
    let mut nexts = systemd.states(&format!("{}@*.service", Slot::Next.unit_prefix(&app.layout.app)))?;
    let wakes = match app.sleepers.iter().any(|s| s.idle_stop_s.is_some()) {
        true => systemd.states(&format!("{}@*.socket", app.layout.wake_prefix()))?,
        false => Default::default(),
    };
    let mut rows = Vec::new();
    for (name, route) in app.builds.iter().filter(|(n, _)| only.is_none_or(|o| o == n)) {
        let b = app.layout.build(name);
        let [main, next] = app.layout.instances(name);
        let main_state = mains.remove(&main.service_unit).unwrap_or_else(|| UnitState::not_loaded(&main.service_unit));
        let next_state = nexts.remove(&next.service_unit).unwrap_or_else(|| UnitState::not_loaded(&next.service_unit));
        // The instance that serves, if one does; else main is the build.
        let up = |slot| Ok(if slot == Slot::Next { &next_state } else { &main_state }.active_state.is_up());
        let next_serves = b.serving(up)? == Some(Slot::Next);
        let (unit, release, other, other_link) = if next_serves {
            (next_state, layout::link_release(&next.link)?, main_state, &main.link)
        } else {
            (main_state, b.current_release()?, next_state, &next.link)
        };
        let other = match other.active_state {
            ActiveState::Inactive => None,
            _ => {
                Some(Other { release: layout::link_release(other_link)?, unit: other.unit, state: other.active_state })
            }
        };
        let set = match b.current_release()? {
            Some(id) => crate::plan::processes::recorded(&b.release_dir(&id))?,
            None => Default::default(),
        };
        let processes = process_status(&systemd, &app.layout, &b, &set)?;
        let timers = timer_status(&systemd, &app.layout, &b, &set)?;
        // A journal that cannot be read is the next build's to report (it refuses to go on).
        let switch = crate::deploy::switch::read(&b.switch_journal()).ok().flatten().map(|journal| SwitchStatus {
            in_progress: journal.pid != std::process::id()
                && std::fs::read_to_string(format!("/proc/{}/comm", journal.pid))
                    .is_ok_and(|comm| comm.trim() == "relctl"),
            journal,
        });
        let idle_stop_s = app.idle_stop_s(name);
        let wake_listens = wakes.get(&app.layout.wake(name).socket_unit).is_some_and(UnitState::is_active);
        // Asleep: both instances stopped (not still stopping), its wake socket listening.
        let stopped = unit.active_state == ActiveState::Inactive && other.is_none();
        let sleeping =
            (idle_stop_s.is_some() && wake_listens && stopped && release.is_some()).then(|| sleeping_since(&b));
        rows.push(BuildStatus {
            idle_stop_s,
            sleeping,
            switch,
            maintenance: crate::maintenance::state(&b)?,
            processes,
            timers,
            build: name.clone(),
            state: unit.active_state.clone(),
            sub_state: unit.sub_state.clone(),
            release,
            since: crate::time::from_systemd_us(unit.active_since_us).filter(|_| unit.is_active()),
            main_pid: (unit.main_pid > 0).then_some(unit.main_pid),
            route: route.as_ref().map(|r| r.as_written().to_string()),
            socket: b.socket.display().to_string(),
            active: unit.is_active(),
            unit: unit.unit,
            other,
        });
    }
    // The certificates of the app's domains (of the build's, for one build) and their renewal.
    let domain = match only {
        Some(b) => loaded.build(b)?.domain,
        None => None,
    };
    let (certificates, renewal) = if only.is_none() || domain.is_some() {
        let relctl = std::env::current_exe().unwrap_or_default();
        let site = crate::plan::site::site(&app, loaded, &relctl, None)?;
        crate::site::status(&site, &systemd, domain.as_deref())?
    } else {
        (Vec::new(), None)
    };
    match report.mode {
        Mode::Json => report.json(&serde_json::json!({
            "app": app.layout.app,
            "builds": rows,
            "certificates": certificates,
            "renewal": renewal,
        })),
        Mode::Human => {
            print_table(&rows);
            print_certificates(&certificates, renewal.as_ref());
        }
        Mode::Quiet => {}
    }
    // A build that sleeps is as it should be: its next request wakes it.
    let all_up =
        |r: &BuildStatus| r.sleeping.is_some() || (r.active && r.processes.iter().all(|p| p.running == p.desired));
    let certs_ok = certificates.iter().all(|c| c.problem.is_none()) && !renewal.as_ref().is_some_and(|r| r.failed());
    if rows.iter().all(all_up) && certs_ok {
        Ok(())
    } else {
        Err(Error::NotActive.into())
    }
}

/// Since when `b` sleeps: the time its last sleep was marked (`deploy::sleep::ASLEEP_MARK`).
fn sleeping_since(b: &BuildLayout) -> Sleeping {
    let since = std::fs::metadata(b.build_dir.join(crate::deploy::sleep::ASLEEP_MARK))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| jiff::Timestamp::try_from(t).ok());
    let for_s = since.map(|t| jiff::Timestamp::now().duration_since(t).as_secs().max(0) as u64);
    Sleeping { since, for_s }
}

/// Each process of `set`: its instances as systemd has them, and the release each runs.
fn process_status(systemd: &Systemd, l: &AppLayout, b: &BuildLayout, set: &ProcessSet) -> Result<Vec<ProcessStatus>> {
    let mut out = Vec::new();
    for p in &set.processes {
        let mut states = systemd.states(&l.process_glob(&b.build, &p.name))?;
        let mut instances = Vec::new();
        for n in 1..=p.instances {
            let unit = l.process_unit(&b.build, &p.name, n);
            let state = states.remove(&unit).unwrap_or_else(|| UnitState::not_loaded(&unit));
            instances.push(instance(b, state));
        }
        // Instances above the count that still run (a scale-down relctl did not finish).
        let mut extra: Vec<UnitState> = states.into_values().filter(|s| s.active_state.is_up()).collect();
        extra.sort_by(|a, b| a.unit.cmp(&b.unit));
        instances.extend(extra.into_iter().map(|s| instance(b, s)));
        let running = instances.iter().take(p.instances as usize).filter(|i| i.state == ActiveState::Active).count();
        out.push(ProcessStatus { name: p.name.clone(), desired: p.instances, running: running as u32, instances });
    }
    Ok(out)
}

fn instance(b: &BuildLayout, s: UnitState) -> ProcessInstance {
    let pid = (s.main_pid > 0).then_some(s.main_pid);
    // The release directory its main process works in (`current` resolved when it started).
    let release = pid
        .and_then(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).ok())
        .and_then(|cwd| cwd.strip_prefix(&b.releases_dir).ok().map(|r| r.to_path_buf()))
        .and_then(|r| r.components().next().and_then(|c| ReleaseId::parse(&c.as_os_str().to_string_lossy()).ok()));
    ProcessInstance {
        state: s.active_state,
        sub_state: s.sub_state,
        main_pid: pid,
        restarts: s.n_restarts,
        release,
        unit: s.unit,
    }
}

fn timer_status(systemd: &Systemd, l: &AppLayout, b: &BuildLayout, set: &ProcessSet) -> Result<Vec<TimerStatus>> {
    let mut out = Vec::new();
    for t in &set.timers {
        let unit = l.timer_unit(&b.build, &t.name);
        let st = systemd.timer_state(&unit, &l.timer_service(&b.build, &t.name))?;
        let ran = st.last_run_us() > 0;
        let last_result = st.last_result();
        out.push(TimerStatus {
            name: t.name.clone(),
            unit,
            schedule: t.on_calendar.clone(),
            state: st.timer.active_state.clone(),
            next_run: crate::time::from_systemd_us(st.next_us),
            last_run: crate::time::from_systemd_us(st.last_run_us()),
            last_exit_status: (ran && !st.service.active_state.is_up()).then_some(st.exit_status),
            last_result,
        });
    }
    Ok(out)
}

fn print_table(rows: &[BuildStatus]) {
    let dash = || "-".to_string();
    let table: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.build.to_string(),
                match (&r.sleeping, &r.maintenance) {
                    (Some(s), _) => match s.for_s {
                        Some(n) => format!("sleeping ({})", crate::report::duration_s(n)),
                        None => "sleeping".to_string(),
                    },
                    (None, Some(_)) => format!("{} ({}), maintenance", r.state, r.sub_state),
                    (None, None) => format!("{} ({})", r.state, r.sub_state),
                },
                r.release.as_ref().map_or_else(dash, |id| id.to_string()),
                match &r.sleeping {
                    Some(s) => s.since.map_or_else(dash, crate::report::utc),
                    None => r.since.map_or_else(dash, crate::report::utc),
                },
                r.main_pid.map(|p| p.to_string()).unwrap_or_else(dash),
                r.route.clone().unwrap_or_else(dash),
                r.unit.clone(),
                r.other.as_ref().map_or_else(dash, |c| {
                    format!("{}: {} ({})", c.unit, c.release.as_ref().map_or_else(dash, |id| id.to_string()), c.state)
                }),
            ]
        })
        .collect();
    crate::report::print_table(&["BUILD", "STATE", "RELEASE", "SINCE", "PID", "ROUTE", "SERVED BY", "OTHER"], &table);
    for (r, sw) in rows.iter().filter_map(|r| r.switch.as_ref().map(|sw| (r, sw))) {
        let phase = sw.journal.phase.map_or("an unrecorded phase".to_string(), |p| format!("phase {p}"));
        if sw.in_progress {
            println!(
                "{}: relctl (pid {}) is switching it to release {}, in {phase}",
                r.build, sw.journal.pid, sw.journal.to
            );
        } else {
            println!(
                "{}: a switch to release {} was interrupted in {phase} (relctl pid {} is gone); the next relctl build, rollback or restart {} finishes it",
                r.build, sw.journal.to, sw.journal.pid, r.build
            );
        }
    }
    let processes: Vec<[String; 6]> = rows
        .iter()
        .flat_map(|r| r.processes.iter().map(move |p| (r, p)))
        .map(|(r, p)| {
            let states: Vec<String> = p.instances.iter().map(|i| format!("{} ({})", i.state, i.sub_state)).collect();
            let mut releases: Vec<String> =
                p.instances.iter().filter_map(|i| i.release.as_ref().map(|id| id.to_string())).collect();
            releases.dedup();
            let pids: Vec<String> = p.instances.iter().filter_map(|i| i.main_pid.map(|p| p.to_string())).collect();
            [
                r.build.to_string(),
                p.name.clone(),
                format!("{}/{}", p.running, p.desired),
                states.join(", "),
                if releases.is_empty() { dash() } else { releases.join(", ") },
                if pids.is_empty() { dash() } else { pids.join(" ") },
            ]
        })
        .collect();
    if !processes.is_empty() {
        println!();
        crate::report::print_table(&["BUILD", "PROCESS", "RUNNING", "STATE", "RELEASE", "PIDS"], &processes);
    }
    let timers: Vec<[String; 6]> = rows
        .iter()
        .flat_map(|r| r.timers.iter().map(move |t| (r, t)))
        .map(|(r, t)| {
            let result = match (&t.last_result, t.last_exit_status) {
                (Some(res), Some(code)) if res != "success" => format!("{res} (status {code})"),
                (Some(res), _) => res.clone(),
                (None, _) => "never ran".to_string(),
            };
            [
                r.build.to_string(),
                t.name.clone(),
                t.schedule.clone(),
                t.last_run.map_or_else(dash, crate::report::utc),
                result,
                t.next_run.map_or_else(|| format!("none ({})", t.state), crate::report::utc),
            ]
        })
        .collect();
    if !timers.is_empty() {
        println!();
        crate::report::print_table(&["BUILD", "TIMER", "SCHEDULE", "LAST RUN", "RESULT", "NEXT RUN"], &timers);
    }
}

fn print_certificates(certs: &[crate::site::CertStatus], renewal: Option<&crate::site::RenewalStatus>) {
    if certs.is_empty() {
        return;
    }
    let dash = || "-".to_string();
    let rows: Vec<[String; 4]> = certs
        .iter()
        .map(|c| {
            [
                c.domain.clone(),
                c.source.to_string(),
                match (c.not_after, c.days_left) {
                    (Some(t), Some(d)) => format!("{} ({d} days)", crate::report::utc(t)),
                    _ => dash(),
                },
                c.problem.clone().unwrap_or_else(|| "ok".to_string()),
            ]
        })
        .collect();
    println!();
    crate::report::print_table(&["DOMAIN", "CERTIFICATE", "EXPIRES", "STATE"], &rows);
    if let Some(r) = renewal {
        let result = match &r.last_result {
            Some(res) if r.failed() => format!("{res}: see relctl logs --certs"),
            Some(res) => res.clone(),
            None => "never ran".to_string(),
        };
        println!();
        crate::report::print_table(
            &["RENEWAL", "LAST RUN", "RESULT", "NEXT RUN"],
            &[[
                r.timer.clone(),
                r.last_run.map_or_else(dash, crate::report::utc),
                result,
                r.next_run.map_or_else(|| format!("none ({})", r.state), crate::report::utc),
            ]],
        );
    }
}
