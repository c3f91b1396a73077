//! The Debian package: `cargo deb` builds it from this checkout, and in a sandbox (an overlay of
//! /, so dpkg's database and /usr on the host are untouched) it installs, answers `--version`,
//! has its man pages and shell completions where man and the shells look, and goes away again.
//! Needs root and cargo-deb (`cargo install cargo-deb --locked`; .ci/run installs it); fails
//! (never skips) without them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::common::env::{Env, REPO};
use crate::common::scratch::scratch_dir;
use crate::common::{show, stdout};

/// Where the package puts what a user reaches, and the file in this checkout it comes from.
const COMPLETIONS: [(&str, &str); 3] = [
    ("/usr/share/bash-completion/completions/relctl", "completions/relctl.bash"),
    ("/usr/share/zsh/vendor-completions/_relctl", "completions/_relctl"),
    ("/usr/share/fish/vendor_completions.d/relctl.fish", "completions/relctl.fish"),
];

/// `cargo deb` in this checkout, into a scratch dir; returns the .deb. It shares the test's target
/// dir, so it reuses a release build that is already there (.ci/run makes one before the tests).
fn cargo_deb() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let version = Command::new(&cargo).args(["deb", "--version"]).output().expect("cargo runs");
    assert!(
        version.status.success(),
        "cargo-deb is missing: install it with `cargo install cargo-deb --locked` (.ci/run does): {}",
        show(&version)
    );
    let deb = scratch_dir("package").join("relctl.deb");
    let started = Instant::now();
    let out = Command::new(&cargo)
        .current_dir(REPO)
        .env("CARGO_TARGET_DIR", target)
        // --fast: lighter compression (1 s instead of 5); the same files.
        .args(["deb", "--fast", "--manifest-path", &format!("{REPO}/Cargo.toml"), "--output"])
        .arg(&deb)
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "cargo deb: {}", show(&out));
    eprintln!("cargo deb: {} in {:.1}s", deb.display(), started.elapsed().as_secs_f64());
    deb
}

#[test]
fn deb_installs_binary_man_pages_and_completions_and_removes_them() {
    let deb = cargo_deb();
    let env = Env::boot();
    let deb = deb.to_str().unwrap();
    assert!(
        env.sb.run("sh", &["-c", "command -v man"]).status.success(),
        "man is not installed: apt-get install man-db (.ci/run installs it)"
    );

    // -- dpkg -i: exit 0; the binary on PATH's /usr/bin --------------------------------------
    // A slim image's /etc/dpkg/dpkg.cfg.d excludes /usr/share/man/*: included again for this
    // package, whose man pages are what this test checks.
    let out = env.sb.run("dpkg", &["--path-include=/usr/share/man/*", "-i", deb]);
    assert!(out.status.success(), "dpkg -i {deb}: {}", show(&out));
    let out = env.sb.run("/usr/bin/relctl", &["--version"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stdout(&out), format!("relctl {}", env!("CARGO_PKG_VERSION")));
    let status = env.sh("dpkg-query -W -f '${Status} ${Version}' relctl");
    assert_eq!(status, format!("install ok installed {}-1", env!("CARGO_PKG_VERSION")));
    // What apt pulls in on a bare machine: libc6 from the binary (cargo-deb's $auto, through
    // dpkg-shlibdeps), and what relctl runs.
    let depends = env.sh("dpkg-query -W -f '${Depends}' relctl");
    for dep in ["libc6 (>= ", "systemd", "dbus-system-bus", "passwd"] {
        assert!(depends.contains(dep), "Depends lacks {dep}: {depends}");
    }

    // -- man: every page in man/ found where man looks, and rendered --------------------------
    let mut pages: Vec<String> = std::fs::read_dir(Path::new(REPO).join("man"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".1").to_string())
        .collect();
    pages.sort();
    assert!(pages.len() > 10 && pages.contains(&"relctl".to_string()), "{pages:?}");
    for page in &pages {
        let out = env.sb.run("man", &["-w", page]);
        assert!(out.status.success(), "man -w {page}: {}", show(&out));
        assert_eq!(stdout(&out), format!("/usr/share/man/man1/{page}.1.gz"), "man -w {page}");
    }
    let out = env.sb.command("man").env("MANWIDTH", "100").arg("relctl-build").output().unwrap();
    assert!(out.status.success(), "man relctl-build: {}", show(&out));
    // Justified text: compared with runs of spaces collapsed.
    let text = stdout(&out).split_whitespace().collect::<Vec<_>>().join(" ");
    for expected in [
        "relctl-build - Build a new release of BUILD and make it live",
        "SYNOPSIS relctl-build [--dry-run] [--adopt]",
        "OPTIONS --dry-run",
    ] {
        assert!(text.contains(expected), "man relctl-build lacks {expected:?}:\n{}", stdout(&out));
    }

    // -- completions: bash loads and completes; zsh and fish files where those shells look ----
    let bash = env.sh("bash -c 'source /usr/share/bash-completion/completions/relctl && complete -p relctl \
         && COMP_WORDS=(relctl bu) COMP_CWORD=1 && _relctl relctl bu relctl && echo \"${COMPREPLY[*]}\"'");
    let (complete, words) = bash.split_once('\n').unwrap_or_else(|| panic!("{bash}"));
    assert!(complete.starts_with("complete ") && complete.ends_with(" -F _relctl relctl"), "{complete}");
    assert_eq!(words, "build", "TAB after `relctl bu`");
    for (installed, source) in COMPLETIONS {
        let repo = std::fs::read_to_string(Path::new(REPO).join(source)).unwrap();
        assert_eq!(env.sh(&format!("cat {installed}")), repo.trim(), "{installed} is {source}");
    }

    // -- dpkg -r: everything it installed gone ------------------------------------------------
    let out = env.sb.run("dpkg", &["-r", "relctl"]);
    assert!(out.status.success(), "dpkg -r relctl: {}", show(&out));
    let mut installed: Vec<String> = vec!["/usr/bin/relctl".into(), "/usr/share/doc/relctl".into()];
    installed.extend(pages.iter().map(|p| format!("/usr/share/man/man1/{p}.1.gz")));
    installed.extend(COMPLETIONS.iter().map(|(path, _)| path.to_string()));
    let left = env.sh(&format!("for p in {}; do [ -e $p ] && echo $p; done; true", installed.join(" ")));
    assert_eq!(left, "", "left behind by dpkg -r");
    assert!(!env.sb.run("man", &["-w", "relctl"]).status.success(), "man still finds relctl");
}
