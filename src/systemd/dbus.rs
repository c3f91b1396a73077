//! systemd over D-Bus (org.freedesktop.systemd1.Manager). relctl never runs `systemctl`.
//!
//! Jobs: the signal stream for `JobRemoved` is created *before* the call that queues the job, so
//! a job that finishes at once is not missed. Unit state is always read uncached: systemd only
//! announces changes to subscribers, and a cached proxy would report stale state.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use zbus::blocking::Connection;
use zbus::proxy::CacheProperties;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue};

use crate::systemd::manager::Manager;
use crate::systemd::unit::{ActiveState, JobKind, JobMode, JobResult, LoadState, TimerState, UnitFiles, UnitState};

/// One change `EnableUnitFiles` or `DisableUnitFiles` made: kind (symlink, unlink), file,
/// destination (empty for an unlink).
type UnitFileChange = (String, String, String);
/// One entry of `ListUnitsByPatterns`: name, description, load state, active state, sub state,
/// followed unit, unit path, job id, job type, job path.
type ListedUnit = (String, String, String, String, String, String, OwnedObjectPath, u32, String, OwnedObjectPath);
/// One entry of `ListJobs`: id, unit, job type, state, job path, unit path.
type QueuedJob = (u32, String, String, String, OwnedObjectPath, OwnedObjectPath);

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_async = false
)]
trait Manager {
    fn subscribe(&self) -> zbus::Result<()>;
    fn reload(&self) -> zbus::Result<()>;
    fn enable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<(bool, Vec<UnitFileChange>)>;
    fn disable_unit_files(&self, files: &[&str], runtime: bool) -> zbus::Result<Vec<UnitFileChange>>;
    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn reload_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn list_units_by_patterns(&self, states: &[&str], patterns: &[&str]) -> zbus::Result<Vec<ListedUnit>>;
    fn list_jobs(&self) -> zbus::Result<Vec<QueuedJob>>;

    #[zbus(signal)]
    fn job_removed(&self, id: u32, job: OwnedObjectPath, unit: String, result: String) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1",
    gen_async = false
)]
trait Unit {
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn sub_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn active_enter_timestamp(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn fragment_path(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn drop_in_paths(&self) -> zbus::Result<Vec<String>>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Service",
    default_service = "org.freedesktop.systemd1",
    gen_async = false
)]
trait Service {
    #[zbus(property, name = "MainPID")]
    fn main_pid(&self) -> zbus::Result<u32>;
    #[zbus(property, name = "NRestarts")]
    fn n_restarts(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn result(&self) -> zbus::Result<String>;
}

/// A connection to systemd on the system bus.
pub struct Systemd {
    conn: Connection,
    manager: ManagerProxy<'static>,
}

/// How long relctl waits for a job at most; systemd's own start/stop timeouts normally end it first.
const JOB_TIMEOUT: Duration = Duration::from_secs(300);

impl Systemd {
    pub fn connect() -> Result<Systemd> {
        let conn = Connection::system()
            .map_err(|e| anyhow!("cannot connect to the system D-Bus ({e}); is systemd running as PID 1 with dbus?"))?;
        let manager = ManagerProxy::new(&conn).context("creating the systemd manager proxy")?;
        manager.subscribe().map_err(|e| dbus_error(e, "subscribing to systemd's job signals"))?;
        Ok(Systemd { conn, manager })
    }

    /// Queues a job for `unit` in `mode` and waits for systemd to finish it.
    fn queue_and_wait(&self, kind: JobKind, unit: &str, mode: JobMode) -> Result<()> {
        let mode = mode.as_str();
        let jobs = JobWatch::new(&self.manager)?;
        let job = match kind {
            JobKind::Start => self.manager.start_unit(unit, mode),
            JobKind::Stop => self.manager.stop_unit(unit, mode),
            JobKind::Restart => self.manager.restart_unit(unit, mode),
            JobKind::Reload => self.manager.reload_unit(unit, mode),
        }
        .map_err(|e| dbus_error(e, &format!("{} {unit}", kind.verb())))?;
        let result = jobs.wait(&job, unit)?;
        if result != JobResult::Done {
            bail!("{} of {unit} failed: job result '{result}'{}", kind.verb(), result.hint(unit));
        }
        Ok(())
    }

    /// Restarts `target` and waits for its job and for every job the restart queued on units
    /// matching `prefix` (the instances that are `PartOf=` the target).
    pub fn restart_target(&self, target: &str, prefix: &str) -> Result<Vec<(String, JobResult)>> {
        let jobs = JobWatch::new(&self.manager)?;
        let job =
            self.manager.restart_unit(target, "replace").map_err(|e| dbus_error(e, &format!("restart {target}")))?;
        let queued = self.manager.list_jobs().map_err(|e| dbus_error(e, "listing jobs"))?;
        let mut waiting: Vec<(OwnedObjectPath, String)> = vec![(job, target.to_string())];
        for (_, unit, _, _, path, _) in queued {
            if unit.starts_with(prefix) && !waiting.iter().any(|(p, _)| *p == path) {
                waiting.push((path, unit));
            }
        }
        let mut results = Vec::new();
        for (path, unit) in waiting {
            results.push((unit.clone(), jobs.wait(&path, &unit)?));
        }
        let failed: Vec<String> =
            results.iter().filter(|(_, r)| *r != JobResult::Done).map(|(u, r)| format!("{u}: {r}")).collect();
        if !failed.is_empty() {
            bail!("restart of {target} failed: {}", failed.join(", "));
        }
        Ok(results)
    }

    /// The state of every unit systemd has loaded whose name matches `pattern` (a shell glob, e.g.
    /// `medctrl@*.service`), by unit name, in two round trips however many units match: one
    /// `ListUnitsByPatterns` (all states) for the names, load/active/sub states and object paths,
    /// then the remaining properties of all of them, the `Get` calls sent at once and their replies
    /// awaited together. Units missing from the map are not loaded: see [`UnitState::not_loaded`].
    pub fn states(&self, pattern: &str) -> Result<HashMap<String, UnitState>> {
        let listed = self
            .manager
            .list_units_by_patterns(&[], &[pattern])
            .map_err(|e| dbus_error(e, &format!("listing units {pattern}")))?;
        let conn = self.conn.inner();
        let reads = listed.iter().map(|u| read_properties(conn, listed_state(u), &u.6));
        let states = futures_lite::future::block_on(futures_util::future::try_join_all(reads))?;
        Ok(states.into_iter().map(|s| (s.unit.clone(), s)).collect())
    }
}

impl Systemd {
    /// A timer and the last run of the service it starts, read uncached (loading both).
    pub fn timer_state(&self, timer: &str, service: &str) -> Result<TimerState> {
        const TIMER: &str = "org.freedesktop.systemd1.Timer";
        const SERVICE: &str = "org.freedesktop.systemd1.Service";
        let (timer_state, timer_path) = self.loaded_state(timer)?;
        let (service_state, service_path) = self.loaded_state(service)?;
        let conn = self.conn.inner();
        let read = |e: zbus::Error| dbus_error(e, &format!("reading the state of {timer} and {service}"));
        let loaded = timer_state.load_state == LoadState::Loaded;
        let (next_us, last_us) = if loaded {
            futures_lite::future::block_on(futures_util::future::try_join(
                get::<u64>(conn, &timer_path, TIMER, "NextElapseUSecRealtime"),
                get::<u64>(conn, &timer_path, TIMER, "LastTriggerUSec"),
            ))
            .map_err(read)?
        } else {
            (0, 0)
        };
        let (status, started_us) = if service_state.load_state == LoadState::Loaded {
            futures_lite::future::block_on(futures_util::future::try_join(
                get::<i32>(conn, &service_path, SERVICE, "ExecMainStatus"),
                get::<u64>(conn, &service_path, SERVICE, "ExecMainStartTimestamp"),
            ))
            .map_err(read)?
        } else {
            (0, 0)
        };
        Ok(TimerState { timer: timer_state, service: service_state, next_us, last_us, exit_status: status, started_us })
    }

    /// The unit file and drop-ins systemd runs `unit` with (loading it if needed). A unit systemd
    /// cannot load is an error naming its load state.
    pub fn unit_files(&self, unit: &str) -> Result<UnitFiles> {
        let path = self.manager.load_unit(unit).map_err(|e| dbus_error(e, &format!("loading {unit}")))?;
        let u = UnitProxy::builder(&self.conn)
            .path(path)?
            .cache_properties(CacheProperties::No)
            .build()
            .with_context(|| format!("reading {unit}"))?;
        let read = |e: zbus::Error| dbus_error(e, &format!("reading the unit files of {unit}"));
        let load_state = LoadState::parse(&u.load_state().map_err(read)?);
        let fragment = u.fragment_path().map_err(read)?;
        if load_state != LoadState::Loaded || fragment.is_empty() {
            bail!("systemd cannot load {unit} (load state {load_state}); run relctl build to install its units");
        }
        let drop_ins = u.drop_in_paths().map_err(read)?.into_iter().map(PathBuf::from).collect();
        Ok(UnitFiles { fragment: fragment.into(), drop_ins })
    }
}

impl Manager for Systemd {
    /// Disables the given unit files (instances included): the symlinks their `[Install]` sections
    /// made are removed. Returns the files removed. Like `EnableUnitFiles`, it does not reload.
    fn disable(&self, units: &[&str]) -> Result<Vec<String>> {
        let changes = self
            .manager
            .disable_unit_files(units, false)
            .map_err(|e| dbus_error(e, &format!("disabling {}", units.join(", "))))?;
        Ok(changes.into_iter().map(|(_, file, _)| file).collect())
    }

    /// Resets those of `units` (names, no glob characters) that are failed (`ResetFailedUnit`), so
    /// that systemd unloads them once nothing refers to them. Returns the units it reset.
    fn reset_failed(&self, units: &[&str]) -> Result<Vec<String>> {
        let failed = self
            .manager
            .list_units_by_patterns(&["failed"], units)
            .map_err(|e| dbus_error(e, &format!("listing the failed units among {}", units.join(", "))))?;
        let mut reset = Vec::new();
        for (unit, ..) in failed {
            self.manager.reset_failed_unit(&unit).map_err(|e| dbus_error(e, &format!("resetting failed {unit}")))?;
            reset.push(unit);
        }
        Ok(reset)
    }

    /// Reloads systemd's unit files (daemon-reload).
    fn reload(&self) -> Result<()> {
        self.manager.reload().map_err(|e| dbus_error(e, "reloading systemd (Reload)"))
    }

    /// Enables the given unit files (instances like `app@build.service` included).
    fn enable(&self, units: &[&str]) -> Result<Vec<String>> {
        let (_, changes) = self
            .manager
            .enable_unit_files(units, false, true)
            .map_err(|e| dbus_error(e, &format!("enabling {}", units.join(", "))))?;
        Ok(changes.into_iter().map(|(kind, file, dest)| format!("{kind} {file} -> {dest}")).collect())
    }

    fn run_job_in(&self, kind: JobKind, unit: &str, mode: JobMode) -> Result<()> {
        self.queue_and_wait(kind, unit, mode)
    }

    /// The loaded units whose names match `pattern` (a shell glob, e.g. `medctrl@*.socket`) and
    /// that are active or on their way there, with their active state: one D-Bus call.
    fn running_units(&self, pattern: &str) -> Result<Vec<(String, ActiveState)>> {
        let states = ["active", "activating", "reloading", "deactivating"];
        let units = self
            .manager
            .list_units_by_patterns(&states, &[pattern])
            .map_err(|e| dbus_error(e, &format!("listing units {pattern}")))?;
        Ok(units.into_iter().map(|u| (u.0, ActiveState::parse(&u.3))).collect())
    }

    /// Reads a unit's state without any cache. Units systemd does not know read as inactive.
    fn unit_state(&self, unit: &str) -> Result<UnitState> {
        Ok(self.loaded_state(unit)?.0)
    }
}

impl Systemd {
    /// A unit's state ([`Manager::unit_state`]) and the object path systemd loaded it at.
    fn loaded_state(&self, unit: &str) -> Result<(UnitState, OwnedObjectPath)> {
        let path = self.manager.load_unit(unit).map_err(|e| dbus_error(e, &format!("loading {unit}")))?;
        let u = UnitProxy::builder(&self.conn)
            .path(path.clone())?
            .cache_properties(CacheProperties::No)
            .build()
            .with_context(|| format!("reading {unit}"))?;
        let read = |e: zbus::Error| dbus_error(e, &format!("reading the state of {unit}"));
        let mut state = UnitState {
            unit: unit.to_string(),
            load_state: LoadState::parse(&u.load_state().map_err(read)?),
            active_state: ActiveState::parse(&u.active_state().map_err(read)?),
            sub_state: u.sub_state().map_err(read)?,
            active_since_us: u.active_enter_timestamp().map_err(read)?,
            main_pid: 0,
            n_restarts: 0,
            result: String::new(),
        };
        if state.has_service_properties() {
            let s = ServiceProxy::builder(&self.conn)
                .path(path.clone())?
                .cache_properties(CacheProperties::No)
                .build()
                .with_context(|| format!("reading {unit}"))?;
            state.main_pid = s.main_pid().map_err(read)?;
            state.n_restarts = s.n_restarts().map_err(read)?;
            state.result = s.result().map_err(read)?;
        }
        Ok((state, path))
    }
}

/// Fills in the properties of `state` that `ListUnitsByPatterns` does not give, read uncached from
/// the unit at `path`: all `Get` calls are sent before any reply is awaited.
async fn read_properties(conn: &zbus::Connection, mut state: UnitState, path: &ObjectPath<'_>) -> Result<UnitState> {
    const UNIT: &str = "org.freedesktop.systemd1.Unit";
    const SERVICE: &str = "org.freedesktop.systemd1.Service";
    let unit = state.unit.clone();
    let read = |e: zbus::Error| dbus_error(e, &format!("reading the state of {unit}"));
    let since = get::<u64>(conn, path, UNIT, "ActiveEnterTimestamp");
    if state.has_service_properties() {
        let (since, pid, restarts, result) = futures_util::future::try_join4(
            since,
            get::<u32>(conn, path, SERVICE, "MainPID"),
            get::<u32>(conn, path, SERVICE, "NRestarts"),
            get::<String>(conn, path, SERVICE, "Result"),
        )
        .await
        .map_err(read)?;
        (state.active_since_us, state.main_pid, state.n_restarts, state.result) = (since, pid, restarts, result);
    } else {
        state.active_since_us = since.await.map_err(read)?;
    }
    Ok(state)
}

/// One property, read with `org.freedesktop.DBus.Properties.Get` (never from a cache).
async fn get<T>(conn: &zbus::Connection, path: &ObjectPath<'_>, interface: &str, name: &str) -> zbus::Result<T>
where
    T: TryFrom<OwnedValue>,
    T::Error: Into<zbus::Error>,
{
    let reply = conn
        .call_method(
            Some("org.freedesktop.systemd1"),
            path,
            Some("org.freedesktop.DBus.Properties"),
            "Get",
            &(interface, name),
        )
        .await?;
    let value: OwnedValue = reply.body().deserialize()?;
    T::try_from(value).map_err(Into::into)
}

/// One `JobRemoved` signal: the job and how it ended, or why its body did not read.
type JobEvent = Result<(OwnedObjectPath, JobResult), String>;

/// A subscription to `JobRemoved`, made before the job is queued.
struct JobWatch {
    rx: mpsc::Receiver<JobEvent>,
    seen: std::cell::RefCell<HashMap<OwnedObjectPath, JobResult>>,
}

/// A `JobRemoved` signal read by type: (id, job, unit, result).
fn job_event(signal: &JobRemoved) -> JobEvent {
    let message = signal.message();
    match message.body().deserialize::<(u32, OwnedObjectPath, String, String)>() {
        Ok((_, job, _, result)) => Ok((job, JobResult::parse(&result))),
        Err(e) => Err(format!("a body of signature '{}' where systemd sends (uoss): {e}", message.body().signature())),
    }
}

impl JobWatch {
    fn new(manager: &ManagerProxy<'static>) -> Result<JobWatch> {
        let signals = manager.receive_job_removed().context("listening for systemd's JobRemoved signal")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for signal in signals {
                if tx.send(job_event(&signal)).is_err() {
                    break;
                }
            }
        });
        Ok(JobWatch { rx, seen: Default::default() })
    }

    /// Waits for the `JobRemoved` of `job` and returns its result (done, failed, timeout, ...). A
    /// `JobRemoved` that does not read may be this job's: an error naming the unit and the job,
    /// at once, rather than a wait for a signal that may have come and gone.
    fn wait(&self, job: &OwnedObjectPath, unit: &str) -> Result<JobResult> {
        if let Some(r) = self.seen.borrow_mut().remove(job) {
            return Ok(r);
        }
        let deadline = Instant::now() + JOB_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Ok((path, result))) if path == *job => return Ok(result),
                Ok(Ok((path, result))) => {
                    self.seen.borrow_mut().insert(path, result);
                }
                Ok(Err(why)) => bail!(
                    "waiting for systemd's job {} on {unit}: a JobRemoved signal did not read ({why}); systemctl status {unit} shows how the unit is",
                    job.as_str()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!(
                    "waiting for systemd's job {} on {unit}: the D-Bus signal stream ended (did systemd or the bus restart?); systemctl status {unit} shows how the unit is",
                    job.as_str()
                ),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("gave up waiting for systemd's job on {unit} after {}s", JOB_TIMEOUT.as_secs())
                }
            }
        }
    }
}

/// A D-Bus error with what relctl was doing, and a hint for the common ones, told apart by the
/// D-Bus error name.
fn dbus_error(e: zbus::Error, doing: &str) -> anyhow::Error {
    let name = match &e {
        zbus::Error::MethodError(name, _, _) => Some(name.as_str().to_string()),
        zbus::Error::FDO(fdo) => Some(zbus::DBusError::name(fdo.as_ref()).as_str().to_string()),
        _ => None,
    };
    let hint = match name.as_deref() {
        Some(
            "org.freedesktop.DBus.Error.AccessDenied" | "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
        ) => " (run as root)",
        Some("org.freedesktop.systemd1.NoSuchUnit" | "org.freedesktop.DBus.Error.FileNotFound") => {
            " (is the unit installed? run relctl build first)"
        }
        _ => "",
    };
    anyhow!("{doing}: {e}{hint}")
}

/// The states `ListUnitsByPatterns` lists for a unit, before its other properties are read.
fn listed_state(u: &ListedUnit) -> UnitState {
    UnitState {
        unit: u.0.clone(),
        load_state: LoadState::parse(&u.2),
        active_state: ActiveState::parse(&u.3),
        sub_state: u.4.clone(),
        active_since_us: 0,
        main_pid: 0,
        n_restarts: 0,
        result: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_and_print_as_systemd_spells_them() {
        assert_eq!(ActiveState::parse("active"), ActiveState::Active);
        assert!(ActiveState::parse("reloading").is_up() && !ActiveState::parse("failed").is_up());
        assert_eq!(ActiveState::parse("something-new"), ActiveState::Other("something-new".into()));
        assert_eq!(LoadState::parse("not-found").to_string(), "not-found");
        assert_eq!(serde_json::to_string(&JobResult::parse("dependency")).unwrap(), "\"dependency\"");
        assert!(JobResult::parse("failed").hint("a@b.service").contains("journalctl -u a@b.service"));
    }

    fn listed(name: &str, load: &str, active: &str, sub: &str) -> ListedUnit {
        let path = OwnedObjectPath::try_from("/org/freedesktop/systemd1/unit/x").unwrap();
        let none = OwnedObjectPath::try_from("/").unwrap();
        (
            name.into(),
            String::new(),
            load.into(),
            active.into(),
            sub.into(),
            String::new(),
            path,
            0,
            String::new(),
            none,
        )
    }

    #[test]
    fn listed_units_keep_their_states_and_only_loaded_services_read_service_properties() {
        let s = listed_state(&listed("a@b.service", "loaded", "active", "running"));
        assert_eq!((s.unit.as_str(), s.sub_state.as_str()), ("a@b.service", "running"));
        assert!(s.is_active() && s.load_state == LoadState::Loaded && s.has_service_properties());
        let s = listed_state(&listed("a@b.service", "not-found", "inactive", "dead"));
        assert!(!s.is_active() && !s.has_service_properties());
        assert!(!listed_state(&listed("a@b.socket", "loaded", "active", "listening")).has_service_properties());
    }

    /// A `JobRemoved` signal with `body`, as it would come off the bus.
    fn job_removed<B: serde::Serialize + zbus::zvariant::DynamicType>(body: &B) -> JobRemoved {
        let message =
            zbus::Message::signal("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "JobRemoved")
                .unwrap()
                .build(body)
                .unwrap();
        JobRemoved::from_message(message).unwrap()
    }

    fn job(n: u32) -> OwnedObjectPath {
        OwnedObjectPath::try_from(format!("/org/freedesktop/systemd1/job/{n}")).unwrap()
    }

    #[test]
    fn job_removed_signals_read_by_type() {
        let ok = job_removed(&(7u32, job(7), "a@b.service", "failed"));
        assert_eq!(job_event(&ok), Ok((job(7), JobResult::Failed)));
        // Garbled: wrong types, too few fields.
        for bad in [job_removed(&("7", "x", "a@b.service", 1u32)), job_removed(&(7u32, job(7)))] {
            let why = job_event(&bad).unwrap_err();
            assert!(why.starts_with("a body of signature '") && why.contains("where systemd sends (uoss)"), "{why}");
        }
    }

    fn watch(events: Vec<JobEvent>) -> JobWatch {
        let (tx, rx) = mpsc::channel();
        for e in events {
            tx.send(e).unwrap();
        }
        // The sender stays open (the bus is still there) unless the test drops it.
        std::mem::forget(tx);
        JobWatch { rx, seen: Default::default() }
    }

    #[test]
    fn a_garbled_job_removed_is_an_error_at_once_naming_unit_and_job() {
        let w = watch(vec![Ok((job(1), JobResult::Done)), Err("a body of signature 's'".into())]);
        let t = Instant::now();
        let err = w.wait(&job(2), "a@b.service").unwrap_err().to_string();
        assert!(t.elapsed() < Duration::from_secs(5), "no wait for the timeout");
        assert_eq!(
            err,
            "waiting for systemd's job /org/freedesktop/systemd1/job/2 on a@b.service: a JobRemoved signal did not \
             read (a body of signature 's'); systemctl status a@b.service shows how the unit is"
        );
        // Other jobs' signals that came before are kept for their waiters.
        assert_eq!(w.wait(&job(1), "c@d.service").unwrap(), JobResult::Done);
    }

    #[test]
    fn a_signal_stream_that_ends_is_an_error_at_once() {
        let (tx, rx) = mpsc::channel::<JobEvent>();
        drop(tx);
        let w = JobWatch { rx, seen: Default::default() };
        let err = w.wait(&job(3), "a@b.service").unwrap_err().to_string();
        assert!(
            err.contains("job /org/freedesktop/systemd1/job/3 on a@b.service: the D-Bus signal stream ended"),
            "{err}"
        );
    }

    #[test]
    fn a_unit_systemd_has_not_loaded_reads_as_inactive_dead_without_a_pid() {
        let s = UnitState::not_loaded("a@b.service");
        assert!(!s.is_active() && !s.has_service_properties());
        assert_eq!(
            (s.unit.as_str(), s.active_state, s.sub_state.as_str()),
            ("a@b.service", ActiveState::Inactive, "dead")
        );
        assert_eq!((s.main_pid, s.active_since_us), (0, 0));
    }
}
