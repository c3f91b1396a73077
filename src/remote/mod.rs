//! Other hosts: one command run on a host over SSH (`ssh`, `-H`) and a command rolled over
//! several hosts (`fleet`, `--hosts`). Hosts are named as `manifest::target` parses them.

pub mod fleet;
pub mod ssh;
