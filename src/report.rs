//! What relctl tells the user: a short step-by-step account with timings on stdout, or with
//! `--json` one JSON document at the end. Errors are printed once, by `run`.
//!
//! Everything relctl prints goes through [`out`] (stdout) or [`err`] (stderr), and both show text
//! from elsewhere — hook output, health answers, a host's lines, journal lines — with its control
//! characters escaped ([`terminal_safe`]): a source tree, a running service or a host cannot send
//! escape sequences to the admin's terminal. A reader that went away (`relctl ... | head`) is not
//! relctl's failure: the rest of the output is dropped and the command carries on.
//!
//! On a terminal, a long wait (a hook, a `[deps]` build, a systemd job, the health check, the
//! probation) shows as one status line on stderr with a spinner and the seconds waited
//! ([`Report::waiting`]), which the step's own line replaces when it is done; whatever relctl
//! prints meanwhile goes above it. Not on anything else, nor with `--json` or `-q`.

use std::borrow::Cow;
use std::io::{ErrorKind, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
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
    /// Long waits show as a status line ([`Report::waiting`]).
    progress: bool,
    steps: Vec<Step>,
}

impl Report {
    /// A report in `mode`; it shows a status line for long waits where [`shows_progress`] says so
    /// for relctl's own stdout and stderr.
    pub fn new(mode: Mode, verbose: bool) -> Report {
        let term = std::env::var("TERM").ok();
        let progress =
            shows_progress(mode, std::io::stdout().is_terminal(), std::io::stderr().is_terminal(), term.as_deref());
        Report { mode, verbose, progress, steps: Vec::new() }
    }

    /// Shows, until the returned guard is dropped, that relctl waits for `what` in `step` (as the
    /// step's line will name it): on a terminal, a status line on stderr with a spinner and the
    /// seconds waited, cleared when the guard goes; nothing otherwise. Waits may nest: the line
    /// shows the latest one, then the one it was inside again.
    pub fn waiting(&self, step: &str, what: impl AsRef<str>) -> Waiting {
        if !self.progress {
            return Waiting { id: None };
        }
        Waiting { id: status().begin(step, what.as_ref()) }
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
            err(format!("{}\n", text.as_ref()));
        }
    }

    /// Extra output for -v, on stderr so it never mixes with JSON.
    pub fn verbose(&self, text: impl AsRef<str>) {
        if self.verbose {
            err(format!("{}\n", text.as_ref()));
        }
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Prints the JSON document (in JSON mode only).
    pub fn json<T: Serialize>(&self, value: &T) {
        if self.mode == Mode::Json {
            let text = serde_json::to_string_pretty(value).expect("report serializes");
            out_raw(format!("{}\n", json_safe(&text)).as_bytes());
        }
    }
}

/// Whether long waits show as a status line: for people (not `--json`, not `-q`), when stdout and
/// stderr are both a terminal (the status line is drawn on stderr, the step lines that replace it
/// go to stdout) that can redraw a line (`TERM` set, and not `dumb`). Output that is captured or
/// piped is never touched.
pub fn shows_progress(mode: Mode, stdout_tty: bool, stderr_tty: bool, term: Option<&str>) -> bool {
    mode == Mode::Human && stdout_tty && stderr_tty && term.is_some_and(|t| !t.is_empty() && t != "dumb")
}

/// A wait shown by [`Report::waiting`]; dropping it ends the wait.
#[must_use = "the wait shows only while this guard lives: bind it to a named variable"]
pub struct Waiting {
    /// The wait's place in [`STATUS`] (none: nothing is shown).
    id: Option<u64>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            status().end(id);
        }
    }
}

/// One wait under way: its id, step, what it waits for and since when.
struct Wait {
    id: u64,
    step: String,
    what: String,
    since: Instant,
}

/// The status line: the spinner while a wait is under way, and the waits, outermost first.
struct Status {
    bar: Option<ProgressBar>,
    waits: Vec<Wait>,
    next_id: u64,
    /// Where the spinner is drawn: stderr (the tests' own draw nowhere).
    target: fn() -> ProgressDrawTarget,
}

/// The one status line of the process (the terminal has one bottom line).
static STATUS: Mutex<Status> = Mutex::new(Status::new(ProgressDrawTarget::stderr));

/// The status line, locked. A panic elsewhere while it was held leaves it usable: it holds no
/// invariant that a half-done change could break beyond a wrong line on the screen.
fn status() -> MutexGuard<'static, Status> {
    STATUS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How often the spinner turns and the seconds are redrawn.
const TICK: Duration = Duration::from_millis(100);

/// The status line's look, aligned with the step lines (`  <step>  <seconds>s  <detail>`): the step,
/// the whole seconds waited, a spinner and what relctl waits for, cut to the terminal's width.
fn status_style() -> Option<ProgressStyle> {
    let seconds = |state: &ProgressState, w: &mut dyn std::fmt::Write| {
        // Into indicatif's line buffer, a String: this cannot fail.
        w.write_fmt(format_args!("{:>6}s", state.elapsed().as_secs())).ok();
    };
    let style = ProgressStyle::with_template("  {prefix:<12} {seconds}  {spinner} {wide_msg}").ok()?;
    Some(style.with_key("seconds", seconds).tick_chars("|/-\\ "))
}

/// `text` for the status line: its control characters escaped, on one line.
fn one_line(text: &str) -> String {
    terminal_safe(text).split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Status {
    const fn new(target: fn() -> ProgressDrawTarget) -> Status {
        Status { bar: None, waits: Vec::new(), next_id: 0, target }
    }

    /// Starts showing a wait; its id, or none when the line cannot be drawn.
    fn begin(&mut self, step: &str, what: &str) -> Option<u64> {
        if self.bar.is_none() {
            let bar = ProgressBar::with_draw_target(None, (self.target)()).with_style(status_style()?);
            bar.enable_steady_tick(TICK);
            self.bar = Some(bar);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.waits.push(Wait { id, step: one_line(step), what: one_line(what), since: Instant::now() });
        self.show_latest();
        Some(id)
    }

    /// Stops showing wait `id`: the line shows the wait it was inside, or goes.
    fn end(&mut self, id: u64) {
        self.waits.retain(|w| w.id != id);
        if self.waits.is_empty() {
            if let Some(bar) = self.bar.take() {
                bar.finish_and_clear();
            }
        } else {
            self.show_latest();
        }
    }

    fn show_latest(&self) {
        if let (Some(bar), Some(wait)) = (&self.bar, self.waits.last()) {
            bar.set_prefix(wait.step.clone());
            bar.set_message(wait.what.clone());
            bar.set_elapsed(wait.since.elapsed());
        }
    }
}

/// Runs `write` with the status line, if one shows, taken off the screen meanwhile, so that what
/// relctl prints goes above it.
fn above_status(write: impl FnOnce()) {
    let status = status();
    match &status.bar {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// Set once stdout's (stderr's) reader went away: nothing more is written there.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
static STDERR_GONE: AtomicBool = AtomicBool::new(false);

/// Writes `text` to stdout, its control characters escaped ([`terminal_safe`]). A reader that
/// went away (`relctl status | head -1`) is not relctl's failure and must never stop a deploy
/// half-way, so a failed write is dropped (stdout is where relctl would have said so), and after
/// a broken pipe nothing more is written.
pub fn out(text: impl AsRef<str>) {
    out_raw(terminal_safe(text.as_ref()).as_bytes());
}

/// Writes `bytes` to stdout as they are, for relctl's own output that must stay byte for byte
/// (JSON, shell completions); failures as with [`out`].
pub fn out_raw(bytes: &[u8]) {
    above_status(|| write_dropping(&mut std::io::stdout().lock(), &STDOUT_GONE, bytes));
}

/// Writes `text` to stderr, its control characters escaped; never panics (`eprintln!` does when
/// stderr is a closed pipe: `relctl build x 2>&1 | head`), failures as with [`out`].
pub fn err(text: impl AsRef<str>) {
    let safe = terminal_safe(text.as_ref());
    above_status(|| write_dropping(&mut std::io::stderr().lock(), &STDERR_GONE, safe.as_bytes()));
}

/// Writes and flushes `bytes` unless `gone`; a broken pipe sets `gone`, any failure is dropped.
fn write_dropping(w: &mut impl Write, gone: &AtomicBool, bytes: &[u8]) {
    if gone.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = w.write_all(bytes).and_then(|()| w.flush()) {
        if e.kind() == ErrorKind::BrokenPipe {
            gone.store(true, Ordering::Relaxed);
        }
    }
}

/// Text from elsewhere (hook output, an HTTP answer, a host's or the journal's lines) made safe
/// for a terminal: printable text, newlines and tabs as they are; every other control character
/// (ESC, CR, BEL, DEL, the C1 controls U+0080 to U+009F) and the bidirectional overrides that
/// reorder what is shown escaped as Rust writes them (`\u{1b}`, `\r`, `\u{9b}`), so that it shows
/// instead of acting. Invalid UTF-8 has become U+FFFD on the way in (lossy decoding).
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    escape_acting(text, |c, to| to.extend(c.escape_default()))
}

/// `text` with each character a terminal may act on ([`acts_on_terminal`]) written by `escape`.
fn escape_acting(text: &str, escape: impl Fn(char, &mut String)) -> Cow<'_, str> {
    if !text.chars().any(acts_on_terminal) {
        return Cow::Borrowed(text);
    }
    let mut safe = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if acts_on_terminal(c) {
            escape(c, &mut safe);
        } else {
            safe.push(c);
        }
    }
    Cow::Owned(safe)
}

/// A control character other than newline and tab, or a bidirectional control.
fn acts_on_terminal(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A JSON text with the characters serde_json leaves as they are but a terminal may act on (DEL,
/// the C1 controls, bidirectional controls) written as `\uXXXX` escapes: the same JSON value (in
/// JSON text they can only be inside strings), safe to print.
pub fn json_safe(json: &str) -> Cow<'_, str> {
    escape_acting(json, |c, to| to.push_str(&format!("\\u{:04x}", c as u32)))
}

/// A time for people: `2026-11-23 13:05:01 UTC` (release metadata, lock holders, status).
pub fn utc(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A length of time for people: `4m 12s`, `2h 5m 3s`.
pub fn duration_s(s: u64) -> String {
    format!("{:#}", jiff::SignedDuration::from_secs(i64::try_from(s).unwrap_or(i64::MAX)))
}

/// Prints an aligned table without borders (used by `status` and `releases`).
pub fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(header.to_vec());
    for row in rows {
        table.add_row(row.iter().map(|cell| terminal_safe(cell).into_owned()).collect::<Vec<_>>());
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    for line in table.to_string().lines() {
        out(format!("{}\n", line.trim_end()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_show_escaped_and_text_stays() {
        // Retitle the window, clipboard write (OSC 52), return to the line start, bell, DEL.
        let hostile = "a\u{1b}]0;pwned\u{7}b\u{1b}]52;c;Zm9v\u{1b}\\ over\rwrite\u{7f}";
        assert_eq!(terminal_safe(hostile), "a\\u{1b}]0;pwned\\u{7}b\\u{1b}]52;c;Zm9v\\u{1b}\\ over\\rwrite\\u{7f}");
        // C1 controls (U+009B is CSI on terminals that take 8-bit controls), bidi overrides.
        assert_eq!(terminal_safe("x\u{9b}31my\u{85}z\u{202e}cba"), "x\\u{9b}31my\\u{85}z\\u{202e}cba");
        // Printable text, newlines, tabs and non-ASCII letters are kept as they are.
        let kept = "café 日本\tok\nnext line – «quoted» \u{fffd}";
        assert!(matches!(terminal_safe(kept), Cow::Borrowed(_)));
        assert_eq!(terminal_safe(kept), kept);
        // Invalid UTF-8, decoded lossily, shows as U+FFFD.
        assert_eq!(terminal_safe(&String::from_utf8_lossy(b"a\xffb\x1b")), "a\u{fffd}b\\u{1b}");
    }

    #[test]
    fn the_status_line_shows_only_for_people_on_a_terminal() {
        let xterm = Some("xterm-256color");
        assert!(shows_progress(Mode::Human, true, true, xterm));
        // Captured or piped output (CI, tests, `| tee`), either stream: nothing of it.
        assert!(!shows_progress(Mode::Human, false, true, xterm));
        assert!(!shows_progress(Mode::Human, true, false, xterm));
        assert!(!shows_progress(Mode::Human, false, false, xterm));
        // --json and -q, even on a terminal.
        assert!(!shows_progress(Mode::Json, true, true, xterm));
        assert!(!shows_progress(Mode::Quiet, true, true, xterm));
        // A terminal that cannot redraw a line.
        assert!(!shows_progress(Mode::Human, true, true, Some("dumb")));
        assert!(!shows_progress(Mode::Human, true, true, Some("")));
        assert!(!shows_progress(Mode::Human, true, true, None));
    }

    #[test]
    fn a_report_without_the_status_line_shows_no_wait() {
        let report = Report { mode: Mode::Human, verbose: false, progress: false, steps: Vec::new() };
        let waiting = report.waiting("hook:build", "pip install -r requirements.txt");
        assert_eq!(waiting.id, None);
        assert!(status().bar.is_none(), "no spinner was made");
    }

    #[test]
    fn nested_waits_show_the_latest_then_the_one_they_were_inside() {
        assert!(status_style().is_some(), "the template parses");
        let mut s = Status::new(ProgressDrawTarget::hidden);
        let shown = |s: &Status| s.bar.as_ref().map(|b| (b.prefix(), b.message()));
        let outer = s.begin("hook:build", "pip install \\\n  -r requirements.txt\u{1b}[2J").unwrap();
        assert_eq!(
            shown(&s),
            Some(("hook:build".into(), "pip install \\ -r requirements.txt\\u{1b}[2J".into())),
            "on one line, escaped"
        );
        let inner = s.begin("start", "medctrl@development.service").unwrap();
        assert_eq!(shown(&s), Some(("start".into(), "medctrl@development.service".into())));
        s.end(inner);
        assert_eq!(shown(&s), Some(("hook:build".into(), "pip install \\ -r requirements.txt\\u{1b}[2J".into())));
        // Out of order too.
        let inner = s.begin("probation", "medctrl@development.service 3s").unwrap();
        s.end(outer);
        assert_eq!(shown(&s), Some(("probation".into(), "medctrl@development.service 3s".into())));
        s.end(inner);
        assert!(s.bar.is_none() && s.waits.is_empty(), "the line went with the last wait");
    }

    #[test]
    fn json_keeps_its_value_and_loses_what_serde_leaves_raw() {
        let value = serde_json::json!({ "body": "x\u{1b}[2J\u{9b}2Jy\u{202e}é" });
        let text = serde_json::to_string_pretty(&value).unwrap();
        assert!(text.contains('\u{9b}'), "serde_json leaves C1 controls raw: {text:?}");
        let safe = json_safe(&text);
        assert!(!safe.chars().any(|c| c.is_control() && c != '\n'), "{safe:?}");
        assert!(safe.contains("\\u009b") && safe.contains("\\u202e") && safe.contains('é'), "{safe:?}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&safe).unwrap(), value);
    }

    /// A writer whose reader went away after `ok` writes.
    struct Closing {
        ok: usize,
        calls: usize,
        written: Vec<u8>,
    }

    impl Write for Closing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.calls += 1;
            if self.calls > self.ok {
                return Err(ErrorKind::BrokenPipe.into());
            }
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_reader_that_went_away_stops_the_output_quietly() {
        let gone = AtomicBool::new(false);
        let mut w = Closing { ok: 1, calls: 0, written: Vec::new() };
        write_dropping(&mut w, &gone, b"first\n");
        write_dropping(&mut w, &gone, b"second\n");
        assert!(gone.load(Ordering::Relaxed), "the broken pipe is remembered");
        write_dropping(&mut w, &gone, b"third\n");
        assert_eq!((w.written.as_slice(), w.calls), (&b"first\n"[..], 2), "nothing is tried after it");
    }
}
