//! man/ and completions/ are generated from the clap definitions; this test fails when either is
//! stale. Regenerate both with: RELCTL_UPDATE_MAN=1 cargo test --test man

use std::path::Path;

use clap_complete::Shell;

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

/// What `relctl completions <shell>` prints, under the names the packages install them as.
fn completions() -> Vec<(String, Vec<u8>)> {
    [(Shell::Bash, "relctl.bash"), (Shell::Zsh, "_relctl"), (Shell::Fish, "relctl.fish")]
        .into_iter()
        .map(|(shell, file)| {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut relctl::cli::command(), "relctl", &mut buf);
            (file.to_string(), buf)
        })
        .collect()
}

/// Compares `files` with `dir` (every file in it counts, except those `ours` rejects); with
/// RELCTL_UPDATE_MAN set, rewrites what differs and removes what is no longer generated.
/// Returns what is stale.
fn check(name: &str, files: &[(String, Vec<u8>)], ours: impl Fn(&str) -> bool) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    let update = std::env::var_os("RELCTL_UPDATE_MAN").is_some();
    let mut stale = Vec::new();
    for (file, contents) in files {
        let path = dir.join(file);
        if std::fs::read(&path).ok().as_deref() != Some(contents.as_slice()) {
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, contents).unwrap();
            } else {
                stale.push(format!("{name}/{file}"));
            }
        }
    }
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if ours(&file) && !files.iter().any(|(f, _)| *f == file) {
            if update {
                std::fs::remove_file(entry.path()).unwrap();
            } else {
                stale.push(format!("{name}/{file} (no longer generated)"));
            }
        }
    }
    stale
}

#[test]
fn man_pages_are_up_to_date() {
    let stale = check("man", &pages(), |name| name.ends_with(".1"));
    assert!(stale.is_empty(), "stale: {}; regenerate with RELCTL_UPDATE_MAN=1 cargo test --test man", stale.join(", "));
}

#[test]
fn completions_are_up_to_date() {
    let stale = check("completions", &completions(), |_| true);
    assert!(stale.is_empty(), "stale: {}; regenerate with RELCTL_UPDATE_MAN=1 cargo test --test man", stale.join(", "));
}
