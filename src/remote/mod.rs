//! Other hosts: one command run on a host over SSH (`ssh`, `-H`) and a command rolled over
//! several hosts (`fleet`, `--hosts`).

pub mod fleet;
pub mod ssh;
pub mod target;
