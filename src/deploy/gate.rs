//! The gate every release passes before it takes traffic: the unit is up, holds the socket systemd
//! passes it, answers `[health]`, passes the verify hooks and stays up through its probation.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::deploy::{failpoint, Deploy, Verified};
use crate::host::health;
use crate::release::id::ReleaseId;
use crate::release::layout::Instance;
use crate::release::store;
use crate::systemd::unit::{JobKind, UnitState};

/// What an instance is to the verify hooks (`RELCTL_INSTANCE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Started beside the instance that serves; takes traffic only once verified.
    Candidate,
    /// Nothing else serves: a first or cold start.
    Live,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Candidate => "candidate",
            Role::Live => "live",
        }
    }
}

/// What warming the workers saw, for the verify step (`; warmed 2 workers`): every answer must
/// pass as the health check's did, else the worker that gave it is broken.
fn warmed(answers: &[std::io::Result<health::Response>], accept: health::Accept) -> Result<String> {
    for (i, answer) in answers.iter().enumerate() {
        match answer {
            Ok(r) if accept.passes(r.status) => {}
            Ok(r) => bail!(
                "request {} of {} answered HTTP {}: {}",
                i + 1,
                answers.len(),
                r.status,
                crate::report::terminal_safe(r.body.lines().next().unwrap_or(""))
            ),
            Err(e) => bail!("request {} of {}: {e}", i + 1, answers.len()),
        }
    }
    Ok(format!("; warmed {} workers", answers.len()))
}

/// Whether users reach an instance while the gate runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// The candidate: only relctl reaches its socket, so its workers are warmed before it takes
    /// traffic.
    NotYet,
    /// The public socket points at it (a cold start, a reload): nothing is held on its socket,
    /// where users' requests wait.
    Public,
}

impl Deploy<'_> {
    /// Starts `inst`'s socket, starts its service afresh (stopped first, alone, if it runs: a
    /// restart of main would reach next), waits for the jobs, then runs the gate through the
    /// instance's own socket.
    pub(super) fn start_and_verify(
        &mut self,
        inst: &Instance,
        traffic: Traffic,
    ) -> Result<(UnitState, Option<health::Response>)> {
        self.hold_switch_lock()?;
        self.ensure_socket(inst)?;
        let t = Instant::now();
        let before = self.systemd.unit_state(&inst.service_unit)?;
        let kind = if before.active_state.is_up() { JobKind::Restart } else { JobKind::Start };
        if kind == JobKind::Restart {
            self.stop_alone(&inst.service_unit)?;
        }
        self.run_job(JobKind::Start, &inst.service_unit)?;
        failpoint("restart");
        self.report.step(kind.verb(), t, format!("{} done", inst.service_unit));
        self.gate(inst, traffic)
    }

    /// The gate, through `inst`'s own socket: the unit is active, its main process holds the socket
    /// systemd passes it (and listens on nothing of its own), and `[health]` answers 2xx/3xx; then,
    /// with no traffic yet, its workers are warmed.
    pub(super) fn gate(&mut self, inst: &Instance, traffic: Traffic) -> Result<(UnitState, Option<health::Response>)> {
        let t = Instant::now();
        let unit = &inst.service_unit;
        let first = self.systemd.unit_state(unit)?;
        if !first.is_active() {
            bail!(
                "{unit} is {} ({}) after its job finished, result '{}'",
                first.active_state,
                first.sub_state,
                first.result
            );
        }
        if !self.probe.holds(first.main_pid, &inst.socket)? {
            bail!(
                "{unit} is active, but its main process (PID {}) does not hold the listening socket {}: the service must take its socket from systemd (LISTEN_FDS), not bind one of its own (for gunicorn: no --bind)",
                first.main_pid,
                inst.socket.display()
            );
        }
        let own = self.probe.own_tcp_listeners(first.main_pid)?;
        if !own.is_empty() {
            bail!(
                "{unit}'s main process (PID {}) listens on {} of its own instead of serving the socket systemd passes it ({}): the service must take its socket from systemd (LISTEN_FDS; for gunicorn: no --bind)",
                first.main_pid,
                own.join(", "),
                inst.socket.display()
            );
        }
        let h = &self.app.health;
        let request = health::Request { script_name: self.app.script_name(&self.build.build), path: h.path.clone() };
        let waiting = self.report.waiting("verify", format!("waiting for GET {} from {unit}", request.uri()));
        let timeout = Duration::from_secs(h.timeout_s);
        let response = self.probe.wait_healthy(&inst.socket, &request, h.accept, timeout)?;
        drop(waiting);
        let mut answered = format!("; GET {} -> {}", request.uri(), response.status);
        // The workers serve their first request (Django loads its URLs and templates then) before
        // the instance takes traffic, not on the users' first requests. Never on a socket users
        // reach: a held request would keep a worker from them.
        let workers = match traffic {
            Traffic::NotYet => self.probe.workers(first.main_pid)?,
            Traffic::Public => 0,
        };
        if workers > 1 {
            let _waiting = self.report.waiting("verify", format!("warming {workers} workers of {unit}"));
            let answers = self.probe.warm(&inst.socket, &request, workers, timeout);
            answered.push_str(&warmed(&answers, h.accept).with_context(|| {
                format!(
                    "warming the {workers} workers of {unit} with GET {} through {}",
                    request.uri(),
                    inst.socket.display()
                )
            })?);
        }
        let health = Some(response);
        self.report.step("verify", t, format!("{unit} active, main PID {}{answered}", first.main_pid));
        Ok((first, health))
    }

    /// The probation window: the service keeps its main PID and is not restarted by systemd for
    /// `probation_s` after it passed the gate.
    pub(super) fn probation(
        &mut self,
        inst: &Instance,
        first: &UnitState,
        health: Option<health::Response>,
    ) -> Result<Verified> {
        let t = Instant::now();
        let unit = &inst.service_unit;
        let waiting = self.report.waiting("probation", format!("{unit} {}s", self.app.probation_s));
        std::thread::sleep(Duration::from_secs(self.app.probation_s));
        drop(waiting);
        let state = self.systemd.unit_state(unit)?;
        if !state.is_active() || state.n_restarts != first.n_restarts || state.main_pid != first.main_pid {
            bail!(
                "{unit} did not stay up for the {}s probation: now {} ({}), result '{}', restarts {} -> {}, main PID {} -> {}",
                self.app.probation_s,
                state.active_state,
                state.sub_state,
                state.result,
                first.n_restarts,
                state.n_restarts,
                first.main_pid,
                state.main_pid
            );
        }
        self.report.step(
            "probation",
            t,
            format!("{unit} stable for {}s, main PID {}", self.app.probation_s, state.main_pid),
        );
        Ok(Verified { unit: state, health })
    }

    /// `[hooks] verify` against `inst`, which runs `release` and passed the gate, before it takes
    /// traffic: as root in the release, with the release's environment, `RELCTL_SOCKET` (the
    /// instance's own socket) and `RELCTL_URL` (`http://localhost`, for `curl --unix-socket`).
    /// `role`: `candidate` (beside the instance that serves) or `live` (nothing else serves).
    pub(super) fn verify(&mut self, inst: &Instance, release: &ReleaseId, role: Role) -> Result<()> {
        if self.app.verify.is_empty() {
            return Ok(());
        }
        let dir = self.build.release_dir(release);
        let mut env = store::environment(&dir)?;
        env.insert("RELCTL_RELEASE_DIR".into(), dir.display().to_string());
        env.insert("RELCTL_SOCKET".into(), inst.socket.display().to_string());
        env.insert("RELCTL_URL".into(), "http://localhost".into());
        env.insert("RELCTL_INSTANCE".into(), role.as_str().into());
        for hook in &self.app.verify {
            self.run_hook(hook, &dir, &env)?;
        }
        Ok(())
    }

    /// Why a unit failed, for people: its state and the last lines of its journal.
    pub(super) fn diagnose(&self, unit: &str) -> String {
        let state = match self.systemd.unit_state(unit) {
            Ok(s) => format!(
                "{unit}: {} ({}), result '{}', restarts {}",
                s.active_state, s.sub_state, s.result, s.n_restarts
            ),
            Err(e) => format!("{unit}: state unknown ({e:#})"),
        };
        let journal = self.probe.journal(unit);
        format!("--- {state}; last journal lines ---\n{journal}---")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16) -> std::io::Result<health::Response> {
        Ok(health::Response { status, body: format!("status {status}\nmore") })
    }

    #[test]
    fn every_warmed_worker_must_answer_as_the_health_check_did() {
        assert_eq!(warmed(&[answer(200), answer(302)], health::Accept::Success).unwrap(), "; warmed 2 workers");
        let err = warmed(&[answer(200), answer(500)], health::Accept::Success).unwrap_err().to_string();
        assert_eq!(err, "request 2 of 2 answered HTTP 500: status 500");
        assert!(warmed(&[answer(404)], health::Accept::NoServerError).is_ok());
        let timed_out = std::io::Error::new(std::io::ErrorKind::TimedOut, "no complete answer within 30.0s");
        let err = warmed(&[answer(200), Err(timed_out)], health::Accept::Success).unwrap_err().to_string();
        assert_eq!(err, "request 2 of 2: no complete answer within 30.0s");
    }
}
