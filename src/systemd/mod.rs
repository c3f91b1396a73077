//! systemd: what relctl asks of it (`manager::Manager`), done over D-Bus (`dbus`, the only
//! implementation outside unit tests, which drive `fake`), the units' states (`unit`) and their
//! journal (`journal`, `logfmt`). relctl never runs `systemctl`.

pub mod dbus;
#[cfg(test)]
pub mod fake;
pub mod journal;
pub mod logfmt;
pub mod manager;
pub mod unit;
