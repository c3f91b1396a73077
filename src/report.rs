//! What relctl tells the user: a short step-by-step account with timings on stdout, or with
//! `--json` one JSON document at the end. Errors are printed once, by `run`.
//!
//! Everything relctl prints goes through [`out`] (stdout) or [`err`] (stderr), and both show text
//! from elsewhere — hook output, health answers, a host's lines, journal lines — with its control
//! characters escaped ([`terminal_safe`]): a source tree, a running service or a host cannot send
//! escape sequences to the admin's terminal. A reader that went away (`relctl ... | head`) is not
//! relctl's failure: the rest of the output is dropped and the command carries on.

use std::borrow::Cow;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};
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
    write_dropping(&mut std::io::stdout().lock(), &STDOUT_GONE, bytes);
}

/// Writes `text` to stderr, its control characters escaped; never panics (`eprintln!` does when
/// stderr is a closed pipe: `relctl build x 2>&1 | head`), failures as with [`out`].
pub fn err(text: impl AsRef<str>) {
    write_dropping(&mut std::io::stderr().lock(), &STDERR_GONE, terminal_safe(text.as_ref()).as_bytes());
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
