//! Helpers shared by the end-to-end tests: the sandbox, relctl run inside it ([`env::Env`]),
//! scratch copies of the example app ([`scratch`]) and the output of commands.

pub mod acme;
pub mod env;
pub mod lab;
pub mod sandbox;
pub mod scratch;

use std::process::Output;

/// A command's exit status and both streams, for failure messages.
pub fn show(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A command's stdout, trimmed.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A command's stderr, as is.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Stops a running `wrk` with SIGINT, which makes it print its report for the time it ran, and
/// returns its output.
pub fn stop_wrk(wrk: std::process::Child) -> Output {
    let kill = std::process::Command::new("kill").args(["-INT", &wrk.id().to_string()]).status().unwrap();
    assert!(kill.success(), "kill -INT wrk");
    wrk.wait_with_output().unwrap()
}
