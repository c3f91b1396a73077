//! Without root, every command that changes the system is refused up front, with one line that
//! names the command and says what to do. No sandbox and no systemd: relctl runs on the host as
//! `nobody` (uid and gid 65534), from a world-readable copy under /srv. Switching users needs
//! root, so this test fails (never skips) when not run as root.
//!
//! The copy's manifest puts the builds' root in the same temp dir, where both builds look built
//! (a release and `current`): start, restart and reload refuse a never-built build as a usage
//! error, before the root check, and the host's /opt is not to be touched.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const NOBODY: u32 = 65534;

/// The commands that change files under /opt and /etc/systemd/system or start and stop units.
const NEED_ROOT: &[&[&str]] = &[
    &["build", "development"],
    &["start", "development"],
    &["stop", "testing"],
    &["restart", "development"],
    &["restart"],
    &["reload", "testing"],
    &["rollback", "development"],
    &["promote", "testing", "development"],
    &["destroy", "testing"],
];

fn needs_root(command: &[&str]) -> String {
    format!(
        "relctl: relctl {} needs root (it changes files under /opt and /etc/systemd/system and asks systemd to start \
         and stop units); run it with sudo\n",
        command.join(" ")
    )
}

/// A 0755 directory under /srv with relctl and the example app, readable by anyone (the checkout
/// and its target dir may be under a private home; /tmp would not do, relctl refuses a build root
/// there). Removed on drop.
struct Copy(PathBuf);

impl Copy {
    fn new() -> Copy {
        let out = Command::new("mktemp").args(["-d", "/srv/relctl-nonroot.XXXXXX"]).output().unwrap();
        assert!(out.status.success(), "mktemp: {}", show(&out));
        let copy = Copy(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        let dir = &copy.0;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::copy(env!("CARGO_BIN_EXE_relctl"), dir.join("relctl")).unwrap();
        fs::set_permissions(dir.join("relctl"), fs::Permissions::from_mode(0o755)).unwrap();
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/medctrl");
        let out = Command::new("cp").arg("-a").arg(example).arg(dir.join("medctrl")).output().unwrap();
        assert!(out.status.success(), "cp: {}", show(&out));
        let _ = fs::remove_dir_all(dir.join("medctrl/.venv"));
        let manifest = dir.join("medctrl/relctl.toml");
        let text = fs::read_to_string(&manifest).unwrap();
        assert!(text.contains("\nkeep_releases = 5\n"), "{} changed; adapt this test", manifest.display());
        let root = dir.join("root");
        let text = text.replace("\nkeep_releases = 5\n", &format!("\nkeep_releases = 5\nroot = {:?}\n", root));
        fs::write(&manifest, text).unwrap();
        for build in ["development", "testing"] {
            fs::create_dir_all(root.join(build).join("releases/20260101T000000Z")).unwrap();
            std::os::unix::fs::symlink("releases/20260101T000000Z", root.join(build).join("current")).unwrap();
        }
        let out = Command::new("chmod").args(["-R", "a+rX"]).arg(dir.join("medctrl")).output().unwrap();
        assert!(out.status.success(), "chmod: {}", show(&out));
        copy
    }

    /// `relctl -f <the example's manifest> args...` as nobody, in a clean environment.
    fn relctl_as_nobody(&self, args: &[&str]) -> Output {
        self.as_nobody(args).stdin(Stdio::null()).output().unwrap()
    }

    /// The command of [`Copy::relctl_as_nobody`], to run as it is or with other stdio.
    fn as_nobody(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.0.join("relctl"));
        command
            .arg("-f")
            .arg(self.0.join("medctrl/relctl.toml"))
            .args(args)
            .uid(NOBODY)
            .gid(NOBODY)
            .current_dir(&self.0)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .env("HOME", "/nonexistent");
        command
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn show(out: &Output) -> String {
    format!(
        "{}, stdout {:?}, stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn commands_that_change_the_system_need_root_and_say_so() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs relctl as nobody (uid {NOBODY}) and needs root to switch users: run it as root"
    );
    let copy = Copy::new();
    let mut wrong = Vec::new();
    for command in NEED_ROOT {
        let out = copy.relctl_as_nobody(command);
        let expected = needs_root(command);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(1) || stderr != expected || !out.stdout.is_empty() {
            wrong.push(format!(
                "relctl {}:\n  expected: exit 1, stderr {expected:?}, no stdout\n  actual:   {}",
                command.join(" "),
                show(&out)
            ));
        }
    }
    // Usage errors come first: an undeclared build is exit 2 with or without root.
    let out = copy.relctl_as_nobody(&["start", "staging"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(2) || !stderr.contains("staging") || stderr.contains("needs root") {
        wrong.push(format!(
            "relctl start staging:\n  expected: exit 2, stderr naming the undeclared build \"staging\", not \"needs root\"\n  \
             actual:   {}",
            show(&out)
        ));
    }
    // And a process the manifest does not declare.
    let out = copy.relctl_as_nobody(&["restart", "development", "--process", "celery"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(2)
        || !stderr.contains("declares no [processes.celery]")
        || stderr.contains("needs root")
    {
        wrong.push(format!(
            "relctl restart development --process celery:\n  expected: exit 2, stderr naming [processes.celery], not \"needs root\"\n  actual:   {}",
            show(&out)
        ));
    }
    // diff changes nothing, but reads what only root can; its exit 1 means "differs", so 2.
    let out = copy.relctl_as_nobody(&["diff", "development"]);
    let expected =
        "relctl: relctl diff development needs root: it reads the build's secrets file and its release's settings \
                    and environment, which only root can read; run it with sudo\n";
    if out.status.code() != Some(2) || String::from_utf8_lossy(&out.stderr) != expected || !out.stdout.is_empty() {
        wrong.push(format!(
            "relctl diff development:\n  expected: exit 2, stderr {expected:?}, no stdout\n  actual:   {}",
            show(&out)
        ));
    }
    assert!(
        wrong.is_empty(),
        "as nobody, {} of {} commands answered wrong:\n{}",
        wrong.len(),
        NEED_ROOT.len() + 3,
        wrong.join("\n")
    );
}

/// A reader that goes away (`relctl build --help | head -1`) ends relctl quietly: exit 0, no panic
/// on the closed pipe.
#[test]
fn a_closed_stdout_is_not_a_crash() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_relctl"))
        .args(["build", "--help"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `relctl completions bash | head -1`: the reader takes a line and goes away while relctl still
/// writes (the pipe holds 4 KiB, the script is 35 KB). relctl ends quietly: exit 0, no panic.
#[test]
fn completions_to_a_reader_that_goes_away_end_quietly() {
    use std::io::BufRead;
    use std::os::fd::AsFd;
    let (reader, writer) = std::io::pipe().unwrap();
    nix::fcntl::fcntl(reader.as_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096)).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_relctl"))
        .args(["completions", "bash"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(reader).read_line(&mut first).unwrap();
    assert_eq!(first, "_relctl() {\n");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(out.stderr.is_empty(), "{}", show(&out));
}

/// Every command that prints to a reader that went away before it wrote: `completions`, and
/// (as nobody: it needs no root) `destroy --dry-run`; with stderr gone too, an error is no panic.
#[test]
fn a_reader_gone_before_the_first_write_is_no_crash() {
    let gone = || {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        writer
    };
    let out = Command::new(env!("CARGO_BIN_EXE_relctl"))
        .args(["completions", "fish"])
        .stdout(gone())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!((out.status.code(), out.stderr.is_empty()), (Some(0), true), "{}", show(&out));
    // An error to a closed stderr: exit 2 still, and no panic (its message would go to stderr).
    let status = Command::new(env!("CARGO_BIN_EXE_relctl"))
        .args(["no-such-command"])
        .stdout(gone())
        .stderr(gone())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2), "{status}");
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs relctl as nobody (uid {NOBODY}) and needs root to switch users: run it as root"
    );
    let copy = Copy::new();
    let plan = copy.relctl_as_nobody(&["destroy", "testing", "--dry-run"]);
    assert!(plan.status.success() && !plan.stdout.is_empty(), "{}", show(&plan));
    let out =
        copy.as_nobody(&["destroy", "testing", "--dry-run"]).stdout(gone()).stderr(Stdio::piped()).output().unwrap();
    assert_eq!((out.status.code(), out.stderr.is_empty()), (Some(0), true), "{}", show(&out));
}

/// Text that is not relctl's reaches the terminal escaped: here a manifest path with an OSC
/// title sequence and a bell, named by the error.
#[test]
fn an_error_naming_hostile_text_shows_it_escaped() {
    let out = Command::new(env!("CARGO_BIN_EXE_relctl"))
        .args(["-f", "/nonexistent/\u{1b}]0;pwned\u{7}\u{9b}2J/relctl.toml", "status"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr.contains("/nonexistent/\\u{1b}]0;pwned\\u{7}\\u{9b}2J/relctl.toml"), "{}", show(&out));
    assert!(!stderr.chars().any(|c| c.is_control() && c != '\n'), "{}", show(&out));
}

/// `relctl init` in a checkout of one's own says, before the first `sudo relctl build`, that root
/// will refuse the manifest where it is, and how to go on; the same manifest owned by root (and
/// in root's directories) is used.
#[test]
fn init_in_a_checkout_of_ones_own_says_sudo_will_refuse_it() {
    assert!(nix::unistd::geteuid().is_root(), "this test runs relctl as nobody: run it as root");
    let copy = Copy::new();
    let project = copy.0.join("mine");
    fs::create_dir(&project).unwrap();
    fs::write(project.join("app.py"), "def app(environ, start_response):\n    pass\n").unwrap();
    nix::unistd::chown(&project, Some(nix::unistd::Uid::from_raw(NOBODY)), Some(nix::unistd::Gid::from_raw(NOBODY)))
        .unwrap();
    let out = Command::new(copy.0.join("relctl"))
        .args(["init", "."])
        .uid(NOBODY)
        .gid(NOBODY)
        .current_dir(&project)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let manifest = project.join("relctl.toml");
    assert!(
        stderr.contains(&format!(
            "note: sudo relctl will refuse this manifest where it is (manifest {} is in {}, which is owned by nobody, not root",
            manifest.display(),
            project.display()
        )),
        "{}",
        show(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.trim_end().ends_with("then run: relctl build development --dry-run"), "{}", show(&out));
    // As root, the manifest nobody owns is refused with exit 2 and the same words.
    let out = Command::new(copy.0.join("relctl"))
        .arg("-f")
        .arg(&manifest)
        .args(["build", "development", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("which is owned by nobody, not root"), "{}", show(&out));
}
