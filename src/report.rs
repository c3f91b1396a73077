//! What relctl tells the user: a short step-by-step account with timings on stdout, or with
//! `--json` one JSON document at the end. Errors are printed once, by `run`.

use std::time::Instant;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Human,
    Json,
    Quiet,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub step: String,
    pub seconds: f64,
    pub detail: String,
}

pub struct Report {
    pub mode: Mode,
    pub verbose: bool,
    steps: Vec<Step>,
}

impl Report {
    pub fn new(mode: Mode, verbose: bool) -> Report {
        Report { mode, verbose, steps: Vec::new() }
    }

    /// Records a finished step that began at `started`.
    pub fn step(&mut self, step: &str, started: Instant, detail: impl Into<String>) {
        let s = Step { step: step.to_string(), seconds: started.elapsed().as_secs_f64(), detail: detail.into() };
        if self.mode == Mode::Human {
            out(format!("  {:<12} {:>6.2}s  {}\n", s.step, s.seconds, s.detail));
        }
        self.steps.push(s);
    }

    /// A line for people (not in JSON, not with -q).
    pub fn say(&self, line: impl AsRef<str>) {
        if self.mode == Mode::Human {
            out(format!("{}\n", line.as_ref()));
        }
    }

    /// Diagnostic detail on stderr (hook output tails, rollback notes); shown unless -q.
    pub fn warn(&self, text: impl AsRef<str>) {
        if self.mode != Mode::Quiet {
            eprintln!("{}", text.as_ref());
        }
    }

    /// Extra output for -v, on stderr so it never mixes with JSON.
    pub fn verbose(&self, text: impl AsRef<str>) {
        if self.verbose {
            eprintln!("{}", text.as_ref());
        }
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Prints the JSON document (in JSON mode only).
    pub fn json<T: Serialize>(&self, value: &T) {
        if self.mode == Mode::Json {
            out(format!("{}\n", serde_json::to_string_pretty(value).expect("report serializes")));
        }
    }
}

/// Writes `text` to stdout. A reader that went away (`relctl status | head -1`) is not relctl's
/// failure and must never stop a deploy half-way, so a failed write is dropped: stdout is where
/// relctl would have said so.
pub fn out(text: impl AsRef<str>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_ref().as_bytes()).and_then(|()| stdout.flush()).ok();
}

/// A time for people: `2026-11-23 13:05:01 UTC` (release metadata, lock holders, status).
pub fn utc(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Prints an aligned table without borders (used by `status` and `releases`).
pub fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(header.to_vec());
    for row in rows {
        table.add_row(row.to_vec());
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    for line in table.to_string().lines() {
        out(format!("{}\n", line.trim_end()));
    }
}
