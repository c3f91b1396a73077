//! This host, as root sees it: files written atomically and never through a path another user
//! controls (`atomic`, `trust`), locks (`lock`), service accounts (`users`), what a socket holds
//! (`listener`) and HTTP over a unix socket (`health`). Nothing here knows about apps or builds.

pub mod atomic;
pub mod command;
pub mod health;
pub mod listener;
pub mod lock;
pub mod trust;
pub mod users;
