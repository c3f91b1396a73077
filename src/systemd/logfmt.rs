//! How `relctl logs` shows journal entries: for people, one line an entry (time, instance,
//! message) with errors in red and warnings in yellow on a terminal; for programs, one JSON object
//! a line.
//!
//! What counts as an error: journal priority err (3) or worse; warning: priority warning (4). A
//! service's stdout and stderr reach the journal at one priority (info), so the message counts
//! too: gunicorn's `[ERROR]`/`[CRITICAL]` (and `[WARNING]`) lines, and every line of a Python
//! traceback, followed per process from `Traceback (most recent call last):` to the exception.

use std::collections::HashMap;
use std::ffi::OsStr;

use anstyle::{AnsiColor, Style};
use jiff::tz::TimeZone;
use serde::Serialize;

use crate::release::layout::{Instance, Slot};
use crate::systemd::journal::Entry;

/// How an entry is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Plain,
    Warning,
    Error,
}

/// Colour only on a terminal, and not when NO_COLOR is set to anything but the empty string
/// (https://no-color.org).
pub fn color_wanted(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// The level an entry has by itself: by its priority, or by gunicorn's level in its message.
pub fn level(priority: Option<u8>, message: &str) -> Level {
    let by_priority = match priority {
        Some(0..=3) => Level::Error,
        Some(4) => Level::Warning,
        _ => Level::Plain,
    };
    by_priority.max(gunicorn_level(message))
}

/// gunicorn's log lines: `[2026-11-23 13:05:01 +0000] [1234] [ERROR] message`. Its level is one
/// of the leading bracketed fields, so words in the message itself do not count.
fn gunicorn_level(message: &str) -> Level {
    let mut rest = message;
    for _ in 0..3 {
        let Some(field) = rest.strip_prefix('[') else { break };
        let Some((inside, after)) = field.split_once(']') else { break };
        match inside {
            "ERROR" | "CRITICAL" => return Level::Error,
            "WARNING" => return Level::Warning,
            _ => rest = after.trim_start(),
        }
    }
    Level::Plain
}

/// Where one process is in a Python traceback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Traceback {
    /// After `Traceback (most recent call last):`: indented frames, until the exception line.
    Frames,
    /// After the exception line: a chained traceback may follow.
    Ended,
}

const TRACEBACK: &str = "Traceback (most recent call last):";
/// The lines between the tracebacks of chained exceptions.
const CHAINED: [&str; 2] = [
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
];

/// The Python tracebacks going on, by process (workers' output interleaves in one journal).
#[derive(Debug, Default)]
struct Tracebacks(HashMap<Option<u32>, Traceback>);

impl Tracebacks {
    /// Whether `message`, the next line of process `pid`, belongs to a traceback.
    fn feed(&mut self, pid: Option<u32>, message: &str) -> bool {
        if message.contains(TRACEBACK) {
            self.0.insert(pid, Traceback::Frames);
            return true;
        }
        match self.0.get(&pid) {
            None => false,
            Some(Traceback::Frames) => {
                if !(message.is_empty() || message.starts_with([' ', '\t'])) {
                    // `ValueError: boom`: the last line of this traceback.
                    self.0.insert(pid, Traceback::Ended);
                }
                true
            }
            Some(Traceback::Ended) => {
                let chained = message.trim().is_empty() || CHAINED.contains(&message.trim());
                if !chained {
                    self.0.remove(&pid);
                }
                chained
            }
        }
    }
}

/// Output for people or for programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Human { color: bool },
    Json,
}

/// One entry for `--json`.
#[derive(Debug, Serialize)]
struct Record<'a> {
    /// RFC 3339, UTC, microseconds.
    time: String,
    unit: Option<&'a str>,
    /// `main` or `next` (the build's instance).
    instance: Option<&'static str>,
    pid: Option<u32>,
    priority: Option<u8>,
    message: &'a str,
}

/// Turns a build's journal entries into lines of output.
pub struct Formatter {
    style: Output,
    tz: TimeZone,
    /// The build's units and the instance each belongs to.
    units: Vec<(String, Slot)>,
    tracebacks: Tracebacks,
    /// Shown without it (see `short_names`).
    prefix: Option<String>,
}

impl Formatter {
    /// For the entries of `instances`' units; human times in `tz`.
    pub fn new(instances: &[Instance], style: Output, tz: TimeZone) -> Formatter {
        let units = instances
            .iter()
            .flat_map(|i| [(i.service_unit.clone(), i.slot), (i.socket_unit.clone(), i.slot)])
            .collect();
        Formatter { style, tz, units, tracebacks: Tracebacks::default(), prefix: None }
    }

    /// Shows the units whose names start with `prefix` (a build's processes and timers) without
    /// it: `worker@1.service`.
    pub fn short_names(mut self, prefix: String) -> Formatter {
        self.prefix = Some(prefix);
        self
    }

    /// Which of the build's units the entry is about, and its instance: the first the entry
    /// names (systemd's messages come from init.scope, about the unit).
    fn source<'e>(&self, entry: &'e Entry) -> (Option<&'e str>, Option<Slot>) {
        for unit in &entry.units {
            if let Some((_, slot)) = self.units.iter().find(|(u, _)| u == unit) {
                return (Some(unit), Some(*slot));
            }
        }
        (entry.units.first().map(String::as_str), None)
    }

    /// The entry's output line(s), without the final newline. Entries must come in order: a
    /// traceback's lines are recognised by what came before them.
    pub fn format(&mut self, entry: &Entry) -> String {
        let in_traceback = self.tracebacks.feed(entry.pid, &entry.message);
        let (unit, slot) = self.source(entry);
        let time = jiff::Timestamp::from_microsecond(entry.realtime_us).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        match self.style {
            Output::Json => {
                let record = Record {
                    time: time.to_string(),
                    unit,
                    instance: slot.map(Slot::label),
                    pid: entry.pid,
                    priority: entry.priority,
                    message: &entry.message,
                };
                crate::report::json_safe(&serde_json::to_string(&record).expect("a record serializes")).into_owned()
            }
            Output::Human { color } => {
                let level = if in_traceback { Level::Error } else { level(entry.priority, &entry.message) };
                let short = unit.and_then(|u| self.prefix.as_deref().and_then(|p| u.strip_prefix(p)));
                let who = slot.map(Slot::label).or(short).or(unit).unwrap_or("-");
                let time = time.to_zoned(self.tz.clone()).strftime("%Y-%m-%d %H:%M:%S%.3f").to_string();
                let prefix = format!("{time} {:<9} ", crate::report::terminal_safe(who));
                let indent = " ".repeat(prefix.chars().count());
                let message = printable(&entry.message).join(&format!("\n{indent}"));
                let line = format!("{prefix}{message}");
                match (color, style(level)) {
                    (true, Some(style)) => format!("{style}{line}{style:#}"),
                    _ => line,
                }
            }
        }
    }
}

fn style(level: Level) -> Option<Style> {
    match level {
        Level::Error => Some(AnsiColor::Red.on_default()),
        Level::Warning => Some(AnsiColor::Yellow.on_default()),
        Level::Plain => None,
    }
}

/// The message's lines with control characters (a program's own colours, escape sequences that
/// would move the cursor) shown escaped rather than sent to the terminal.
fn printable(message: &str) -> Vec<String> {
    message.trim_end_matches('\n').split('\n').map(|line| crate::report::terminal_safe(line).into_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::layout::{AppLayout, UNIT_DIR};

    fn instances() -> [Instance; 2] {
        AppLayout {
            app: "medctrl".into(),
            component: "backend".into(),
            root: "/opt/medctrl/backend".into(),
            unit_dir: UNIT_DIR.into(),
            socket_name: "gunicorn.sock".into(),
        }
        .instances("development")
    }

    fn formatter(style: Output) -> Formatter {
        Formatter::new(&instances(), style, TimeZone::UTC)
    }

    /// 2026-11-23 21:59:31.603396 UTC
    const T: i64 = 1795471171603396;

    fn entry(units: &[&str], pid: u32, priority: u8, message: &str) -> Entry {
        Entry {
            realtime_us: T,
            units: units.iter().map(|u| u.to_string()).collect(),
            pid: Some(pid),
            priority: Some(priority),
            message: message.into(),
        }
    }

    fn gunicorn(pid: u32, message: &str) -> Entry {
        entry(&["medctrl@development.service"], pid, 6, message)
    }

    #[test]
    fn color_only_on_a_terminal_without_no_color() {
        assert!(color_wanted(true, None));
        assert!(color_wanted(true, Some(OsStr::new(""))), "an empty NO_COLOR does not count");
        assert!(!color_wanted(true, Some(OsStr::new("1"))));
        assert!(!color_wanted(true, Some(OsStr::new("0"))), "any value counts, even 0");
        assert!(!color_wanted(false, None));
    }

    #[test]
    fn levels_by_priority() {
        for (p, l) in [(0, Level::Error), (2, Level::Error), (3, Level::Error), (4, Level::Warning), (5, Level::Plain)]
        {
            assert_eq!(level(Some(p), "x"), l, "priority {p}");
        }
        assert_eq!(level(Some(6), "x"), Level::Plain);
        assert_eq!(level(None, "x"), Level::Plain);
    }

    #[test]
    fn levels_by_gunicorns_own() {
        let at = |lvl: &str| level(Some(6), &format!("[2026-11-23 21:59:31 +0000] [250] [{lvl}] something"));
        assert_eq!(at("ERROR"), Level::Error);
        assert_eq!(at("CRITICAL"), Level::Error);
        assert_eq!(at("WARNING"), Level::Warning);
        assert_eq!(at("INFO"), Level::Plain);
        assert_eq!(at("DEBUG"), Level::Plain);
        // Only gunicorn's field counts, not the words of a message.
        assert_eq!(level(Some(6), "[2026-11-23 21:59:31 +0000] [250] [INFO] GET /[ERROR] [ERROR]"), Level::Plain);
        assert_eq!(level(Some(6), "request failed: [ERROR]"), Level::Plain);
        // Priority and gunicorn's level: the worse one.
        assert_eq!(level(Some(4), "[x] [1] [ERROR] boom"), Level::Error);
        assert_eq!(level(Some(2), "[x] [1] [INFO] hm"), Level::Error);
    }

    #[test]
    fn human_lines() {
        let mut f = formatter(Output::Human { color: false });
        assert_eq!(
            f.format(&gunicorn(254, "[2026-11-23 21:59:31 +0000] [254] [INFO] Starting gunicorn 23.0.0")),
            "2026-11-23 21:59:31.603 main      [2026-11-23 21:59:31 +0000] [254] [INFO] Starting gunicorn 23.0.0"
        );
        let systemd = entry(
            &["init.scope", "medctrl_next@development.socket"],
            1,
            6,
            "Listening on medctrl_next@development.socket - medctrl backend socket, build development (next).",
        );
        assert_eq!(
            f.format(&systemd),
            "2026-11-23 21:59:31.603 next      Listening on medctrl_next@development.socket - medctrl backend socket, build development (next)."
        );
        // In the instance's time zone.
        let mut paris =
            Formatter::new(&instances(), Output::Human { color: false }, TimeZone::get("Europe/Paris").unwrap());
        assert!(paris.format(&gunicorn(1, "x")).starts_with("2026-11-23 22:59:31.603 main "));
    }

    #[test]
    fn human_lines_keep_the_terminal_safe_and_indent_continuations() {
        let mut f = formatter(Output::Human { color: false });
        assert_eq!(
            f.format(&gunicorn(1, "red \u{1b}[31mtext\u{1b}[0m\tand a tab\r")),
            "2026-11-23 21:59:31.603 main      red \\u{1b}[31mtext\\u{1b}[0m\tand a tab\\r"
        );
        assert_eq!(
            f.format(&gunicorn(1, "8-bit csi \u{9b}2J")),
            "2026-11-23 21:59:31.603 main      8-bit csi \\u{9b}2J"
        );
        assert_eq!(
            f.format(&gunicorn(1, "two\nlines\n")),
            "2026-11-23 21:59:31.603 main      two\n                                  lines"
        );
    }

    #[test]
    fn colours_errors_red_and_warnings_yellow() {
        let red = "\u{1b}[31m";
        let yellow = "\u{1b}[33m";
        let reset = "\u{1b}[0m";
        let mut f = formatter(Output::Human { color: true });
        let line = f.format(&entry(&["medctrl@development.service"], 1, 3, "failed"));
        assert!(line.starts_with(red) && line.ends_with(reset), "{line:?}");
        let line = f.format(&entry(&["init.scope", "medctrl@development.service"], 1, 4, "Failed with result"));
        assert!(line.starts_with(yellow) && line.ends_with(reset), "{line:?}");
        let line = f.format(&gunicorn(7, "[x] [7] [CRITICAL] WORKER TIMEOUT (pid:8)"));
        assert!(line.starts_with(red), "{line:?}");
        let plain = f.format(&gunicorn(7, "[x] [7] [INFO] Booting worker with pid: 8"));
        assert!(!plain.contains('\u{1b}'), "{plain:?}");
        // Without colour, the same lines carry no escape sequences at all.
        let mut f = formatter(Output::Human { color: false });
        assert!(!f.format(&entry(&["medctrl@development.service"], 1, 3, "failed")).contains('\u{1b}'));
    }

    #[test]
    fn tracebacks_are_errors_line_by_line_per_process() {
        let mut f = formatter(Output::Human { color: true });
        let mut red = |pid: u32, message: &str| f.format(&gunicorn(pid, message)).starts_with("\u{1b}[31m");
        assert!(!red(9, "[x] [9] [INFO] Booting worker with pid: 9"));
        assert!(red(9, "Traceback (most recent call last):"));
        assert!(red(9, "  File \"/app/views.py\", line 3, in index"));
        assert!(!red(10, "[x] [10] [INFO] another worker, meanwhile"), "other processes are not in it");
        assert!(red(9, "    raise KeyError(\"x\")"));
        assert!(red(9, "KeyError: 'x'"), "the exception line ends it");
        assert!(red(9, ""));
        assert!(red(9, "During handling of the above exception, another exception occurred:"));
        assert!(red(9, ""));
        assert!(red(9, "Traceback (most recent call last):"));
        assert!(red(9, "  File \"/app/views.py\", line 5, in index"));
        assert!(red(9, "ValueError: boom"));
        assert!(!red(9, "[x] [9] [INFO] Worker exiting (pid: 9)"), "after the exception, back to normal");
        assert!(!red(9, "  indented, but no traceback"));
    }

    #[test]
    fn json_records() {
        let mut f = formatter(Output::Json);
        let line = f.format(&gunicorn(250, "[x] [250] [INFO] Worker exiting (pid: 250)"));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "time": "2026-11-23T21:59:31.603396Z",
                "unit": "medctrl@development.service",
                "instance": "main",
                "pid": 250,
                "priority": 6,
                "message": "[x] [250] [INFO] Worker exiting (pid: 250)",
            })
        );
        let v: serde_json::Value = serde_json::from_str(&f.format(&entry(
            &["init.scope", "medctrl_next@development.service"],
            1,
            4,
            "multi\nline \u{1b}",
        )))
        .unwrap();
        assert_eq!(v["unit"], "medctrl_next@development.service");
        assert_eq!(v["instance"], "next");
        assert_eq!(v["message"], "multi\nline \u{1b}", "JSON carries the message as it is");
        // Escaped as JSON escapes, also the C1 controls serde_json leaves raw.
        let line = f.format(&gunicorn(250, "csi \u{9b}2J"));
        assert!(line.ends_with(r#""message":"csi \u009b2J"}"#), "{line}");
        assert!(!line.contains('\n'), "one line an entry");
    }
}
