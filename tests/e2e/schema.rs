//! Rollbacks that respect the database (`[schema]`, Django's `showmigrations --plan` and
//! `migrate <app> <to>`): a release that added a migration is not rolled back from silently —
//! refused naming the migration, unapplied with `--migrate` (after the `pre_migrate` hook, the
//! table gone from the database), or left with `--schema-compatible`; an irreversible migration
//! makes `--migrate` fail with the newer release still serving and nothing unapplied.

use crate::common::env::Env;
use crate::common::scratch::{append, replace, variant};
use crate::common::{show, stderr};

const DB: &str = "/var/lib/medctrl/backend/development/db.sqlite3";

const MODELS: &str = "from django.db import models\n\n\nclass Note(models.Model):\n    body = models.TextField()\n";

const INITIAL: &str = r#"from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Note",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("body", models.TextField()),
            ],
        ),
    ]
"#;

/// Data written by a RunPython without reverse code: Django cannot unapply it.
const SEED: &str = r#"from django.db import migrations


def seed(apps, schema_editor):
    apps.get_model("notes", "Note").objects.create(body="seeded")


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]
    operations = [migrations.RunPython(seed)]
"#;

/// The example with `[schema]` and a `pre_migrate` hook that copies the database aside; with
/// `migrations`, a `notes` app with those migrations.
fn app(name: &str, migrations: &[(&str, &str)]) -> std::path::PathBuf {
    let migrations: Vec<(String, String)> = migrations.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
    variant(name, move |app| {
        let m = app.join("relctl.toml");
        replace(
            &m,
            "release = [\".venv/bin/python API/manage.py migrate --noinput\"]",
            "release = [\".venv/bin/python API/manage.py migrate --noinput\"]\npre_migrate = [\"if [ -f \\\"$STATE_DIRECTORY/db.sqlite3\\\" ]; then cp \\\"$STATE_DIRECTORY/db.sqlite3\\\" \\\"$STATE_DIRECTORY/before-migrate.sqlite3\\\"; fi\"]",
        );
        append(
            &m,
            "\n[schema]\nlist = \".venv/bin/python API/manage.py showmigrations --plan\"\nunapply = \".venv/bin/python API/manage.py migrate --noinput {app} {to}\"\n",
        );
        if migrations.is_empty() {
            return;
        }
        let notes = app.join("API/notes");
        std::fs::create_dir_all(notes.join("migrations")).unwrap();
        std::fs::write(notes.join("__init__.py"), "").unwrap();
        std::fs::write(notes.join("migrations/__init__.py"), "").unwrap();
        std::fs::write(notes.join("models.py"), MODELS).unwrap();
        for (name, text) in &migrations {
            std::fs::write(notes.join("migrations").join(format!("{name}.py")), text).unwrap();
        }
        replace(
            &app.join("API/api_settings/settings/common.py"),
            "    \"django.contrib.staticfiles\",\n]",
            "    \"django.contrib.staticfiles\",\n    \"notes\",\n]",
        );
    })
}

#[test]
fn a_rollback_past_a_migration_is_refused_unapplied_or_tolerated_never_silent() {
    let env = Env::boot();
    let plain = app("schema-plain", &[]);
    let notes = app("schema-notes", &[("0001_initial", INITIAL)]);
    let seeded = app("schema-seeded", &[("0001_initial", INITIAL), ("0002_seed", SEED)]);
    let release = |env: &Env| env.get("development", "/")["release"].as_str().unwrap().to_string();
    let table = |env: &Env| {
        env.sh(&format!(
            "python3 -c \"import sqlite3; c = sqlite3.connect('{DB}'); print(c.execute(\\\"select count(*) from sqlite_master where name = 'notes_note'\\\").fetchone()[0], c.execute(\\\"select count(*) from django_migrations where app = 'notes'\\\").fetchone()[0])\""
        ))
    };

    let out = env.relctl_with(&plain, &["build", "development"]);
    assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    assert!(String::from_utf8_lossy(&out.stdout).contains("migrations known"), "{}", show(&out));
    let a = release(&env);
    let out = env.relctl_with(&notes, &["build", "development"]);
    assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    let b = release(&env);
    assert_eq!(table(&env), "1 1", "notes.0001_initial is applied");

    // Refused, naming the migration and the ways on; nothing changed.
    let out = env.relctl_with(&notes, &["rollback", "development"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("relctl: rolling back to {a}: its code does not know 1 migration(s) applied now: notes.0001_initial; --migrate unapplies them first with release {b}'s code (.venv/bin/python API/manage.py migrate --noinput notes zero)")),
        "{err}"
    );
    assert_eq!(release(&env), b);
    assert_eq!(table(&env), "1 1");

    // --migrate: the pre_migrate hook, then the migration unapplied with B's code, then A serves.
    let out = env.relctl_with(&notes, &["rollback", "development", "--migrate"]);
    assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    assert!(String::from_utf8_lossy(&out.stdout).contains("unapplied 1 migration(s)"), "{}", show(&out));
    assert_eq!(release(&env), a);
    assert_eq!(table(&env), "0 0", "the table and its migration record are gone");
    let backup = DB.replace("db.sqlite3", "before-migrate.sqlite3");
    assert_eq!(
        env.sh(&format!("python3 -c \"import sqlite3; print(sqlite3.connect('{backup}').execute(\\\"select count(*) from sqlite_master where name = 'notes_note'\\\").fetchone()[0])\"")),
        "1",
        "the pre_migrate hook copied the database before the table was dropped"
    );

    // An irreversible migration: --migrate fails before anything switches or is unapplied.
    let out = env.relctl_with(&seeded, &["build", "development"]);
    assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    let c = release(&env);
    assert_eq!(table(&env), "1 2");
    let out = env.relctl_with(&seeded, &["rollback", "development", "--to", &b, "--migrate"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains("unapplying notes's migrations after 0001_initial") && err.contains("irreversible"), "{err}");
    assert!(err.contains("IrreversibleError"), "Django's reason is shown: {err}");
    assert_eq!(release(&env), c, "the newer release still serves");
    assert_eq!(table(&env), "1 2", "nothing was unapplied");

    // --schema-compatible: the user says B's code works with notes.0002_seed applied.
    let out = env.relctl_with(&seeded, &["rollback", "development", "--to", &b, "--schema-compatible"]);
    assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    assert!(String::from_utf8_lossy(&out.stdout).contains("going ahead with 1 migration(s)"), "{}", show(&out));
    assert_eq!(release(&env), b);
    assert_eq!(table(&env), "1 2");
}
