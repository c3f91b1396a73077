//! man/ is generated from the clap definitions; this test fails when it is stale.
//! Regenerate with: RELCTL_UPDATE_MAN=1 cargo test --test man

use std::path::Path;

fn pages() -> Vec<(String, Vec<u8>)> {
    let cmd = relctl::cli::command();
    let mut out = Vec::new();
    let mut render = |name: String, cmd: clap::Command| {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf).expect("man page renders");
        out.push((format!("{name}.1"), buf));
    };
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let name = format!("relctl-{}", sub.get_name());
        render(name.clone(), sub.clone().name(name));
    }
    render("relctl".into(), cmd);
    out
}

#[test]
fn man_pages_are_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let update = std::env::var_os("RELCTL_UPDATE_MAN").is_some();
    let mut stale = Vec::new();
    let pages = pages();
    for (file, contents) in &pages {
        let path = dir.join(file);
        if std::fs::read(&path).ok().as_deref() != Some(contents.as_slice()) {
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, contents).unwrap();
            } else {
                stale.push(file.clone());
            }
        }
    }
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".1") && !pages.iter().any(|(f, _)| *f == name) {
            if update {
                std::fs::remove_file(entry.path()).unwrap();
            } else {
                stale.push(format!("{name} (no such command any more)"));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "man/ is stale: {}; regenerate with RELCTL_UPDATE_MAN=1 cargo test --test man",
        stale.join(", ")
    );
}
