//! nginx location blocks for every build with a route (`snippet`, from `snippet.conf.tera`), and
//! installing them safely (`control`: `nginx -t`, atomic write, reload, restore on failure).
//!
//! For route `/api`:
//! - `location = /api` redirects (308) to `/api/`, keeping the query string;
//! - `location ^~ /api/` proxies to `http://unix:<socket>:` with the request's own URI and the
//!   header `SCRIPT_NAME: /api`. gunicorn trusts that header from a unix-socket peer (its
//!   `forwarder_headers`) and splits the path the WSGI way: `SCRIPT_NAME=/api`, `PATH_INFO=/x`
//!   for `/api/x`. The app routes as if mounted at `/` and generates URLs under `/api`
//!   (redirects, `reverse()`/`url_for`, forms, Django's relative `STATIC_URL`). Requests that
//!   reach the socket without the header (the health gate, curl) are served at `/`.
//!   `/apix` and `/api-x` match neither location. `^~` keeps the server's regex locations from
//!   taking the build's requests.
//! - with `[static]`, `location ^~ /api/static/` serves `<root>/<build>/current/<dir>/` itself,
//!   then what only the release that served before has (`.relctl-previous`, asset bridging: pages
//!   the old release rendered keep their hashed assets until the next deploy); through the links,
//!   a rollback serves that release's files first;
//! - with `websocket = true`, upgrades pass (HTTP/1.1, the client's Upgrade and Connection
//!   headers, no buffering); `read_timeout_s` sets nginx's read/send timeouts for the route;
//! - nested routes (`/api` and `/api/v2`) each win for their own prefix (longest prefix match).

pub mod control;
pub mod site;
pub mod snippet;

use std::path::PathBuf;

use serde::Serialize;

use crate::name::BuildName;
use crate::release::id::ReleaseId;

/// One build's route, as nginx needs it.
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    pub app: String,
    /// The host name its server block answers (`relctl site`); none: a location for the user's
    /// own server (`relctl nginx-snippet`).
    pub domain: Option<String>,
    pub build: BuildName,
    /// Normalized: starts with `/`, no trailing `/` except for the root route `/`.
    pub route: crate::route::Route,
    pub socket: PathBuf,
    pub release: Option<ReleaseId>,
    pub allow: Vec<String>,
    pub htpasswd: Option<PathBuf>,
    pub static_files: Option<StaticRoute>,
    pub websocket: bool,
    pub read_timeout_s: Option<u64>,
    /// `relctl maintenance`: where its flag and page are, and what it answers.
    pub maintenance: MaintenanceRoute,
}

/// A build's maintenance mode as nginx sees it: while `flag` exists (`relctl maintenance on`),
/// the route answers 503 with the page `<build_dir>/.relctl-maintenance.html` and `Retry-After`;
/// the health check's path still reaches the app.
#[derive(Debug, Clone, Serialize)]
pub struct MaintenanceRoute {
    pub flag: PathBuf,
    pub build_dir: PathBuf,
    pub retry_after_s: u64,
    /// `[health] path` under the route, when the manifest declares one.
    pub health_uri: Option<String>,
}

/// Where a build's static files are served from: `<build_dir>/current/<dir>/`, then (the files
/// only the release before it has: asset bridging) `<build_dir>/.relctl-previous/<dir>/`.
#[derive(Debug, Clone, Serialize)]
pub struct StaticRoute {
    /// Under the route, without slashes (`static`).
    pub url: String,
    /// `<root>/<build>`.
    pub build_dir: PathBuf,
    /// `[static] dir`, relative to the release.
    pub dir: String,
    pub max_age_s: u64,
}
