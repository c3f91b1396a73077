//! Dependencies built once per content: the example's virtualenv is built on the first build,
//! reused (no pip) by the next build and by another build of the app, rebuilt when
//! requirements.txt changes, kept for a rollback across that change, never used half-built after
//! relctl is killed while building it, and collected once no kept release links to it.

use crate::common::env::Env;
use crate::common::scratch::{append, replace, variant};
use crate::common::{show, stdout};

const DEPS: &str = "/opt/medctrl/backend/.deps";

impl Env {
    fn venv_of(&self, build: &str) -> String {
        self.sh(&format!("readlink /opt/medctrl/backend/{build}/current/.venv"))
    }

    /// The entries under .deps, and the ones kept releases link to: they must be the same.
    fn entries(&self) -> (String, String) {
        let present = self.sh(&format!("ls -d {DEPS}/*/ | sed 's|/$||' | sort"));
        let linked = self.sh("readlink /opt/medctrl/backend/*/releases/*/.venv | sort -u");
        (present, linked)
    }
}

#[test]
fn dependencies_are_built_once_per_content_shared_and_collected() {
    let env = Env::boot();
    let m = variant("deps", |app| replace(&app.join("relctl.toml"), "keep_releases = 5", "keep_releases = 2"));
    let build = |b: &str| {
        let out = env.relctl_with(&m, &["build", b]);
        assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
        stdout(&out)
    };

    // -- built once, at its final path, then reused by the next build and by another build ----
    let first = build("development");
    let entry = env.venv_of("development");
    assert!(entry.starts_with(&format!("{DEPS}/venv-")), "{entry}");
    assert!(
        first.contains(&format!("venv: built {entry} (keyed by requirements.txt, `/usr/bin/python3 --version`)")),
        "{first}"
    );
    let done = env.sh(&format!("stat -c %Y.%i {entry}.done"));
    let second = build("development");
    assert!(second.contains(&format!("venv: reused {entry}")), "{second}");
    assert_eq!(env.venv_of("development"), entry, "the second release links the same entry");
    assert_eq!(env.sh(&format!("stat -c %Y.%i {entry}.done")), done, "the entry was not rebuilt");
    let testing = build("testing");
    assert!(testing.contains(&format!("venv: reused {entry}")), "{testing}");
    assert_eq!(env.get("development", "/")["build"], "development");
    let old_release = env.get("development", "/")["release"].as_str().unwrap().to_string();

    // -- a change to requirements.txt is a new entry; the old one stays for the kept releases ---
    append(&m.parent().unwrap().join("requirements.txt"), "\n# pinned again\n");
    let changed = build("development");
    let entry2 = env.venv_of("development");
    assert_ne!(entry2, entry);
    assert!(changed.contains(&format!("venv: built {entry2}")), "{changed}");
    assert!(env.sh(&format!("test -d {entry} && echo kept")) == "kept", "releases still link {entry}");

    // -- rollback across the change runs the old release on the old entry ----------------------
    let out = env.relctl_with(&m, &["rollback", "development"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(env.venv_of("development"), entry);
    assert_eq!(env.get("development", "/")["release"], old_release.as_str());

    // -- killed while building an entry: the half-built entry is never used ---------------------
    append(&m.parent().unwrap().join("requirements.txt"), "# and again\n");
    let out = env
        .sb
        .command("env")
        .args(["RELCTL_FAILPOINT=deps", crate::common::env::RELCTL, "-f", m.to_str().unwrap(), "build", "development"])
        .output()
        .unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&out.status), Some(9), "{}", show(&out));
    let half = env.sh(&format!("for d in {DEPS}/*/; do d=${{d%/}}; test -e $d.done || echo $d; done"));
    assert!(half.starts_with(&format!("{DEPS}/venv-")), "a half-built entry without its marker: {half:?}");
    assert_eq!(env.get("development", "/")["release"], old_release.as_str(), "the live build was not touched");
    let recovered = build("development");
    assert!(recovered.contains(&format!("venv: built {half}")), "{recovered}");
    assert!(recovered.contains("after removing what an interrupted build left"), "{recovered}");
    assert_eq!(env.venv_of("development"), half);
    assert_eq!(env.sh(&format!("test -f {half}.done && echo done")), "done");

    // -- entries no kept release links to are collected ------------------------------------------
    build("development");
    build("testing");
    let (present, linked) = env.entries();
    assert_eq!(present, linked, "entries under .deps are exactly those kept releases link to");
    assert!(!present.contains(&entry2), "{entry2} is no longer linked by a kept release: {present}");
}
