//! The gate every release passes before it takes traffic: the unit is up, holds the socket systemd
//! passes it, answers `[health]`, passes the verify hooks and stays up through its probation.

use super::*;

impl Deploy<'_> {
    /// Starts `inst`'s socket, starts its service afresh (stopped first, alone, if it runs: a
    /// restart of main would reach next), waits for the jobs, then runs the gate through the
    /// instance's own socket.
    pub(super) fn start_and_verify(&mut self, inst: &Instance) -> Result<(UnitState, Option<health::Response>)> {
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
        self.gate(inst)
    }

    /// The gate, through `inst`'s own socket: the unit is active, its main process holds the socket
    /// systemd passes it (and listens on nothing of its own), and `[health]` answers 2xx/3xx.
    pub(super) fn gate(&mut self, inst: &Instance) -> Result<(UnitState, Option<health::Response>)> {
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
        if !listener::holds(first.main_pid, &inst.socket)? {
            bail!(
                "{unit} is active, but its main process (PID {}) does not hold the listening socket {}: the service must take its socket from systemd (LISTEN_FDS), not bind one of its own (for gunicorn: no --bind)",
                first.main_pid,
                inst.socket.display()
            );
        }
        let own = listener::own_tcp_listeners(first.main_pid)?;
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
        let response = health::wait_healthy(&inst.socket, &request, h.accept, Duration::from_secs(h.timeout_s))?;
        drop(waiting);
        let answered = format!("; GET {} -> {}", request.uri(), response.status);
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
    pub(super) fn verify(&mut self, inst: &Instance, release: &ReleaseId, role: &str) -> Result<()> {
        if self.app.verify.is_empty() {
            return Ok(());
        }
        let dir = self.build.release_dir(release);
        let mut env = store::environment(&dir)?;
        env.insert("RELCTL_RELEASE_DIR".into(), dir.display().to_string());
        env.insert("RELCTL_SOCKET".into(), inst.socket.display().to_string());
        env.insert("RELCTL_URL".into(), "http://localhost".into());
        env.insert("RELCTL_INSTANCE".into(), role.into());
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
        let journal = std::process::Command::new("journalctl")
            .args(["-u", unit, "-n", "200", "--no-pager", "-o", "short-precise"])
            .output()
            .map(|o| last_error(&String::from_utf8_lossy(&o.stdout)))
            .unwrap_or_else(|e| format!("(journalctl could not run: {e})\n"));
        format!("--- {state}; last journal lines ---\n{journal}---")
    }
}

/// The journal lines worth showing: from the start of the last error the app logged (a Python
/// traceback, Django's "Internal Server Error: <path>") when it is among them, at most 60 lines,
/// else the last 15.
pub(super) fn last_error(journal: &str) -> String {
    let lines: Vec<&str> = journal.lines().collect();
    let starts = |l: &&str| l.contains("Traceback (most recent call last):") || l.contains("Internal Server Error: ");
    let from = match lines.iter().rposition(starts) {
        // Django's message comes right before its traceback.
        Some(i) if i > 0 && lines[i - 1].contains("Internal Server Error: ") => i - 1,
        Some(i) => i,
        None => lines.len().saturating_sub(15),
    };
    let shown = &lines[from..lines.len().min(from + 60)];
    shown.iter().map(|l| format!("{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_gate_shows_the_apps_last_error_from_its_start() {
        let mut journal: Vec<String> = (0..100).map(|i| format!("Dec 02 gunicorn[1]: noise {i}")).collect();
        journal.push("Dec 02 gunicorn[7]: Internal Server Error: /".into());
        journal.push("Dec 02 gunicorn[7]: Traceback (most recent call last):".into());
        journal.extend((0..40).map(|i| format!("Dec 02 gunicorn[7]:   File \"x.py\", line {i}")));
        journal.push("Dec 02 gunicorn[7]: django.core.exceptions.ImproperlyConfigured: boom".into());
        journal.push("Dec 02 systemd[1]: Stopping x".into());
        let shown = last_error(&journal.join("\n"));
        assert!(shown.starts_with("Dec 02 gunicorn[7]: Internal Server Error: /\n"), "{shown}");
        assert!(shown.contains("ImproperlyConfigured: boom\nDec 02 systemd[1]: Stopping x\n"), "{shown}");
        let quiet: Vec<String> = (0..30).map(|i| format!("line {i}")).collect();
        let shown = last_error(&quiet.join("\n"));
        assert!(shown.starts_with("line 15\n") && shown.ends_with("line 29\n"), "{shown}");
    }
}
