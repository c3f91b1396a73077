//! A release's database schema as its code knows it (`[schema] list`: Django's
//! `showmigrations --plan`), recorded with the release (`.relctl/schema.json`), and what going
//! back to an older release means for it: the migrations applied now that the older code does not
//! know, and how far each app must be unapplied for it to.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::host::atomic;
use crate::release::store::meta_dir;

const FILE: &str = "schema.json";

/// One migration: `app.name` (Django: `auth.0012_alter_user_first_name_max_length`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Migration {
    pub app: String,
    pub name: String,
}

impl std::fmt::Display for Migration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.app, self.name)
    }
}

/// What `[schema] list` printed in a release: every migration its code knows, in the order they
/// apply, and which of them the database has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    pub known: Vec<Migration>,
    pub applied: Vec<Migration>,
}

/// Parses `[schema] list`'s output: lines `[X] app.name` (applied) or `[ ] app.name` (not), as
/// Django's `showmigrations --plan` prints them. Lines that do not start with `[` are not
/// migrations (the command's output and errors come together: a system check's warning) and are
/// left out; a line that starts with `[` and is not one of those is an error naming it.
pub fn parse(output: &str) -> Result<Schema, String> {
    let mut schema = Schema::default();
    for line in output.lines().map(str::trim).filter(|l| l.starts_with('[')) {
        let (applied, rest) = if let Some(r) = line.strip_prefix("[X]") {
            (true, r)
        } else if let Some(r) = line.strip_prefix("[ ]") {
            (false, r)
        } else {
            return Err(format!("\"{}\" is not \"[X] app.migration\" or \"[ ] app.migration\"", line.escape_debug()));
        };
        let id = rest.trim();
        let Some((app, name)) = id.split_once('.').filter(|(a, n)| !a.is_empty() && !n.is_empty() && !n.contains(' '))
        else {
            return Err(format!("\"{}\" does not name a migration as app.migration", line.escape_debug()));
        };
        let m = Migration { app: app.to_string(), name: name.to_string() };
        if applied {
            schema.applied.push(m.clone());
        }
        schema.known.push(m);
    }
    Ok(schema)
}

/// Records `schema` with the release.
pub fn record(release_dir: &Path, schema: &Schema) -> Result<()> {
    let text = serde_json::to_string_pretty(schema).context("encoding the schema record")?;
    atomic::ensure_dir(&meta_dir(release_dir))?;
    atomic::write(&meta_dir(release_dir).join(FILE), text.as_bytes(), 0o644, None).map(|_| ())
}

/// The schema recorded with the release, if it has one (releases built without `[schema]`, or
/// adopted ones, have none).
pub fn recorded(release_dir: &Path) -> Result<Option<Schema>> {
    let file = meta_dir(release_dir).join(FILE);
    match atomic::read_if_exists(&file)? {
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| format!("reading {}", file.display())),
        None => Ok(None),
    }
}

/// The migrations in `applied` that `known` (an older release's code) does not know, in the order
/// they were applied.
pub fn unknown_to(applied: &[Migration], known: &[Migration]) -> Vec<Migration> {
    applied.iter().filter(|m| !known.contains(m)).cloned().collect()
}

/// How far each app with migrations in `unknown` must be unapplied so that what stays applied is
/// known to `known`: per app, in the order the apps first appear in `unknown` reversed (the last
/// applied first), the latest of its migrations `known` has (in `known`'s order), or `zero`.
pub fn unapply_targets(unknown: &[Migration], known: &[Migration]) -> Vec<(String, String)> {
    let mut apps: Vec<&str> = Vec::new();
    for m in unknown.iter().rev() {
        if !apps.contains(&m.app.as_str()) {
            apps.push(&m.app);
        }
    }
    apps.into_iter()
        .map(|app| {
            let to = known.iter().rev().find(|k| k.app == app).map_or("zero".to_string(), |k| k.name.clone());
            (app.to_string(), to)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = "[X]  contenttypes.0001_initial\n[X]  auth.0001_initial\n[X]  notes.0001_initial\n[X]  notes.0002_note_body\n[ ]  shop.0001_initial\n";

    fn m(s: &str) -> Migration {
        let (app, name) = s.split_once('.').unwrap();
        Migration { app: app.into(), name: name.into() }
    }

    #[test]
    fn showmigrations_plan_is_read_and_anything_else_refused() {
        let s = parse(PLAN).unwrap();
        assert_eq!(s.known.len(), 5);
        assert_eq!(
            s.applied.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
            ["contenttypes.0001_initial", "auth.0001_initial", "notes.0001_initial", "notes.0002_note_body"]
        );
        assert_eq!(parse("").unwrap(), Schema::default());
        assert_eq!(parse("System check identified some issues:\n").unwrap(), Schema::default());
        assert_eq!(
            parse("[?] x.y\n").unwrap_err(),
            "\"[?] x.y\" is not \"[X] app.migration\" or \"[ ] app.migration\""
        );
        assert!(parse("[X] nodot\n").unwrap_err().contains("does not name a migration"));
    }

    #[test]
    fn going_back_unapplies_each_app_to_what_the_older_code_knows() {
        let now = parse(PLAN).unwrap();
        let older = parse("[X]  contenttypes.0001_initial\n[X]  auth.0001_initial\n[X]  notes.0001_initial\n").unwrap();
        let unknown = unknown_to(&now.applied, &older.known);
        assert_eq!(unknown, [m("notes.0002_note_body")]);
        assert_eq!(unapply_targets(&unknown, &older.known), [("notes".to_string(), "0001_initial".to_string())]);
        let oldest = parse("[X]  contenttypes.0001_initial\n[X]  auth.0001_initial\n").unwrap();
        let unknown = unknown_to(&now.applied, &oldest.known);
        assert_eq!(unknown, [m("notes.0001_initial"), m("notes.0002_note_body")]);
        assert_eq!(unapply_targets(&unknown, &oldest.known), [("notes".to_string(), "zero".to_string())]);
        assert!(unknown_to(&older.applied, &now.known).is_empty(), "newer code knows older migrations");
    }

    #[test]
    fn a_schema_is_recorded_with_the_release() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(recorded(dir.path()).unwrap(), None);
        let s = parse(PLAN).unwrap();
        record(dir.path(), &s).unwrap();
        assert_eq!(recorded(dir.path()).unwrap(), Some(s));
    }
}
