//! Taking over a hand-made setup (`build --adopt`) without a failed request.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::deploy::Deploy;
use crate::host::atomic;
use crate::host::users::RunAs;
use crate::plan::adopt::AdoptPlan;
use crate::release::layout::Slot;
use crate::release::{handmade, stage, store};

impl Deploy<'_> {
    /// Takes the hand-made setup of `build --adopt` out of service, once nothing hand-made is
    /// reachable through the public socket any more: its listener (bound at the public path,
    /// which now names relctl's symlink) is drained, its service stopped — the public socket
    /// re-made at once if the hand-made server removes it as it exits (gunicorn unlinks the path
    /// it bound) — and only then (the stopped server may have read files lazily until it exited)
    /// are its files moved into the adopted release, which gets what a rollback needs to run it.
    pub(super) fn retire_hand_made(&mut self, a: &AdoptPlan, user: &RunAs) -> Result<()> {
        let b = self.build;
        let t = Instant::now();
        let mut detail = String::new();
        if self.systemd.unit_state(&b.service_unit)?.active_state.is_up() {
            self.drain(&b.socket)?;
            detail = match self.stop_keeping_public(&b.service_unit)? {
                None => format!("{} drained and stopped, the public socket untouched; ", b.service_unit),
                Some(gap) => format!(
                    "{} drained and stopped; it removed the public socket as it exited, re-made within {} µs; ",
                    b.service_unit,
                    gap.as_micros()
                ),
            };
        }
        handmade::move_into(&a.found, &a.release_dir)?;
        // The build's dependencies where the hand-made files lack them, as a built release has.
        let mut linked = Vec::new();
        for (path, entry) in &a.deps {
            if std::fs::symlink_metadata(a.release_dir.join(path)).is_err() {
                stage::link_beneath(&a.release_dir, std::path::Path::new(path), entry)?;
                linked.push(path.as_str());
            }
        }
        super::staging::write_start(&a.release_dir, a.environment.vars(), &a.start_script)?;
        if let Some(d) = &a.dropin {
            atomic::write(&store::dropin_copy(&a.release_dir), d.as_bytes(), 0o644, None)?;
        }
        self.seal(&a.release_dir, user, stage::Seal::Adopted)?;
        self.mark_complete(&a.release, None, None, None)?;
        let moved = if a.found.entries.is_empty() { "nothing".to_string() } else { a.found.entries.join(", ") };
        detail.push_str(&format!("moved {moved} into {}", a.release_dir.display()));
        if !linked.is_empty() {
            detail.push_str(&format!(", linked the build's {}", linked.join(", ")));
        }
        // What the manifest's exec cannot start, rollback must not try: said now, with why.
        let missing: Vec<String> = a.needs.iter().filter(|p| !p.exists()).map(|p| p.display().to_string()).collect();
        if !missing.is_empty() {
            let why = format!(
                "the hand-made files lack {} (the manifest's [service] workdir and exec run a release)",
                missing.join(" and ")
            );
            store::mark_not_a_rollback_target(&a.release_dir, &why)?;
            detail.push_str(&format!("; not a rollback target: {why}"));
        }
        self.report.step("adopt", t, detail);
        Ok(())
    }

    /// Stops the hand-made `unit` while the public socket points at the candidate, re-making the
    /// public socket whenever it disappears. Returns the longest time it was missing, if it was:
    /// from the last check that saw it to the moment it was back.
    pub(super) fn stop_keeping_public(&self, unit: &str) -> Result<Option<Duration>> {
        const POLL: Duration = Duration::from_micros(20);
        let public = self.build.socket.as_path();
        let target = Path::new(Slot::Next.socket_file());
        let stopping = AtomicBool::new(true);
        let mut spare = atomic::SpareSymlink::new(public, target)?;
        let stopping = &stopping;
        std::thread::scope(|s| {
            let watcher = s.spawn(move || -> Result<Option<Duration>> {
                // Sleeps of POLL, not POLL plus the default 50 µs of timer slack.
                nix::sys::prctl::set_timerslack(1000).context("setting the watcher's timer slack")?;
                let mut longest: Option<Duration> = None;
                let mut seen = Instant::now();
                loop {
                    let last = !stopping.load(Ordering::Acquire);
                    if std::fs::symlink_metadata(public).is_ok() {
                        seen = Instant::now();
                    } else {
                        spare.put()?;
                        let gap = seen.elapsed();
                        longest = Some(longest.map_or(gap, |l| l.max(gap)));
                        seen = Instant::now();
                    }
                    if last {
                        return Ok(longest);
                    }
                    std::thread::sleep(POLL);
                }
            });
            let stopped = self.stop_alone(unit);
            stopping.store(false, Ordering::Release);
            let gap = watcher
                .join()
                .map_err(|_| anyhow::anyhow!("the thread keeping {} in place panicked", public.display()))?;
            stopped?;
            gap
        })
    }

    /// `build --adopt` failed: while the hand-made setup had not been taken over yet (its server
    /// still serves), its unit files go back in place; the error says where things stand.
    pub(super) fn restore_hand_made(&mut self, adoption: Option<&AdoptPlan>, e: anyhow::Error) -> anyhow::Error {
        let Some(a) = adoption else { return e };
        if a.release_dir.exists() {
            return e.context(format!(
                "the hand-made setup of build {} had been taken over as release {} (its unit files are in {})",
                self.build.build,
                a.release,
                a.backup_dir.display()
            ));
        }
        if a.found.unit_files.is_empty() {
            return e;
        }
        match handmade::restore(&a.found, &a.backup_dir).and_then(|()| self.systemd.reload()) {
            Ok(()) => e.context(format!(
                "the hand-made setup of build {} keeps serving; its unit files are back in place (copies in {})",
                self.build.build,
                a.backup_dir.display()
            )),
            Err(r) => e.context(format!(
                "restoring the hand-made unit files from {} failed too ({r:#})",
                a.backup_dir.display()
            )),
        }
    }
}
