//! End-to-end tests: relctl against a real systemd (PID 1 of its own namespaces, over an overlay
//! of /, see tests/sandbox/README.md), real gunicorn services, the example Django app and real
//! nginx. Needs root; fails (never skips) without it.
//!
//! One test binary, so `common` is compiled once and every helper in it is used. Cargo runs the
//! tests in parallel; each boots its own sandbox, so they share nothing but the host's network
//! (only `nginx` listens on TCP, on ports the kernel hands out) and their scratch directories
//! (named per test, see `common::scratch_dir`).

mod adopt;
mod app_wide;
mod assets;
mod audit;
mod boundary;
mod common;
mod core;
mod deps;
mod destroy;
mod diff;
mod django;
mod exec;
mod faults;
mod fleet;
mod hostile;
mod init;
mod logs;
mod maintenance;
mod nginx;
mod package;
mod power;
mod promote;
mod releases;
mod remote;
mod review;
mod sandbox_smoke;
mod schema;
mod site;
mod sleep;
mod starters;
mod trust;
mod websocket;
mod workers;
mod zero_impact;
