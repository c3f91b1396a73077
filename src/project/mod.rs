//! A project before relctl deploys it: what `detect` finds in its tree and the starter manifest
//! `init` writes from it. `detect` (the `Project`, the app's name) is the top and calls the
//! finders: `django` (`manage.py`, settings module, WSGI/ASGI entry, health URL), `python_app`
//! (a Flask, FastAPI or Starlette app) and `python_deps` (requirements or pyproject.toml). They
//! import only from `shared` (what more than one of them needs), never from each other.

pub mod detect;
pub mod django;
pub mod init;
pub mod python_app;
pub mod python_deps;
pub mod shared;
