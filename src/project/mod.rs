//! A project before relctl deploys it: what `detect` finds in its tree (framework, settings,
//! WSGI/ASGI app, dependencies, health URL) and the starter manifest `init` writes from it.

pub mod detect;
pub mod init;
