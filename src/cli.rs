//! Command-line definitions. These types stay dumb: they only describe what the user typed.
//! `plan` turns them, together with the manifest, into something to act on.
//!
//! The doc comments here are the documentation: `--help`, the man pages in `man/` and the shell
//! completions are all generated from them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Build and release several builds of one web app side by side, under systemd.
///
/// relctl copies your sources into a new release directory for a build (development, testing,
/// production, ...), renders that build's settings, runs your build hooks, installs socket-activated
/// systemd units, switches the build's `current` symlink atomically, (re)starts the build over D-Bus
/// and checks that it answers.
///
/// The manifest `relctl.toml` is found by walking up from the current directory, or given with
/// `-f`. Builds live in `<root>/<build>/` (default root `/opt/<app>/<component>`), with
/// `current -> releases/<id>` and the gunicorn socket `<root>/<build>/gunicorn.sock`.
///
/// Exit codes: 0 ok; 1 the operation failed; 2 usage or manifest error; 3 `status` found a build
/// that is not active.
#[derive(Debug, Parser)]
#[command(name = "relctl", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Use this manifest instead of searching for relctl.toml upwards from the current directory.
    #[arg(short = 'f', long = "manifest", value_name = "PATH", global = true)]
    pub manifest: Option<PathBuf>,

    /// Print one JSON document on stdout instead of the human-readable account.
    #[arg(long, global = true)]
    pub json: bool,

    /// Print nothing but errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print more: the full output of every hook.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// When another relctl is changing the same app (build, rollback, start, stop, restart, reload),
    /// fail at once instead of waiting for it.
    #[arg(long, global = true)]
    pub no_wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a new release of BUILD and make it live.
    ///
    /// In order: create `<root>/<build>` and the service user if missing; copy the sources into a
    /// new `releases/<id>/` (skipping `.git`, the build root and the `exclude` patterns); render the
    /// settings file; link each `[deps]` entry (built once per content under `<root>/.deps/`,
    /// reused when it exists); run the `build` hooks in the release directory, then the `release`
    /// hooks with the build's environment as the service user. Nothing live has changed up to
    /// here: a failure removes the half-built release and leaves the running build alone.
    ///
    /// Then: write the unit files to /etc/systemd/system and reload systemd if they changed, and
    /// enable `<app>@<build>.socket`, `<app>@<build>.service` and `<app>.target`. When the build
    /// already serves, the new release starts in the candidate instance `<app>_next@<build>` on a
    /// socket of its own and must pass the gate there (systemd's job done, the unit active, its
    /// main process holding the socket systemd passes it, `[health]` answering 2xx/3xx): a release
    /// that fails is stopped and marked bad before it takes a single request, and relctl exits 1.
    /// Once it passes, the public socket `<root>/<build>/<socket>` (a symlink) points at the
    /// candidate, `current` switches to the new release, the live instance `<app>@<build>`
    /// restarts on it and passes the gate, the public socket points back at it, and the candidate
    /// drains and stops. If the live instance then fails (or does not stay up through the
    /// probation), `current` goes back to the previous release, which is restarted.
    Build(BuildArgs),

    /// Start BUILD (its socket and service) and wait until systemd's job is done.
    Start(BuildArg),

    /// Stop BUILD (its service and its socket) and wait until systemd's job is done.
    Stop(BuildArg),

    /// Restart BUILD without users noticing; without BUILD, restart `<app>.target`.
    ///
    /// The current release first starts in the candidate instance and passes the gate there; it
    /// serves while the live instance restarts, which then passes the gate and takes the public
    /// socket back. A build that is not running is started. `systemctl restart <app>@<build>` still
    /// works too: a plain restart, during which connections wait in the socket's backlog.
    Restart(OptionalBuildArg),

    /// List BUILD's releases, oldest first: id, created, git revision, state.
    ///
    /// State is `current` (what `current` points at), `previous` (what `rollback` would return
    /// to), `bad` (failed verification or rolled back from; with the reason), `incomplete` (its
    /// build never finished; removed by the next build) or `good` (any other finished release).
    Releases(BuildArg),

    /// Switch BUILD back to an earlier release, restart it and verify it like `build` does.
    ///
    /// Without --to: the newest good release older than the current one. The release left behind
    /// is marked bad. Code, settings, environment and the start command all come from the
    /// release, so they go back together.
    Rollback(RollbackArgs),

    /// Reload BUILD gracefully: systemd's reload (SIGHUP to gunicorn) and wait for the job, verify.
    ///
    /// gunicorn starts new workers and retires the old ones once they finish their requests; the
    /// main process, its release and environment stay as they are (with --preload, the app code
    /// too). Nothing stops serving, so use it to refresh workers; use `restart` for a new process
    /// and `build` for new code.
    Reload(BuildArg),

    /// Show every declared build (or only BUILD): state, release, since, main PID, route, and the
    /// candidate instance's release while a deploy runs one.
    ///
    /// Exits 3 when a listed build is not active.
    Status(OptionalBuildArg),

    /// Print nginx location blocks that route each build's URL prefix to its socket.
    ///
    /// For every declared build with a `route` (or only those given with --build): `<route>`
    /// redirects (308) to `<route>/`; `<route>/x?q=1` reaches the app as `/x?q=1` through
    /// `<root>/<build>/<socket>`; `<route>x` is not routed to the build. The headers of
    /// /etc/nginx/proxy_params (Host, X-Real-IP, X-Forwarded-For, X-Forwarded-Proto) are passed on,
    /// set inline when the host has no proxy_params. A build's `allow` and `htpasswd` keys become
    /// allow/deny and auth_basic directives. Include the output inside a `server {}` block.
    #[command(name = "nginx-snippet")]
    NginxSnippet(NginxArgs),

    /// Print a shell completion script for relctl on stdout.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The build to make, e.g. development; it must be declared as [builds.<BUILD>] in the manifest.
    pub build: String,

    /// Resolve the manifest and print the plan (paths, units, files, hooks, jobs); change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Take over a build set up by hand (e.g. by the app's own deployment guide).
    ///
    /// Without it, `build` refuses (exit 2) a build whose unit files relctl did not write, whose
    /// directory holds files relctl did not make, or whose public socket is a socket file its
    /// server binds itself, naming what it found. With it: the hand-made unit files are copied to
    /// /var/backups/relctl/<app>-<build>-<time>/ and replaced by relctl's; the new release is
    /// staged and verified in the candidate, which then takes the public socket (renamed over the
    /// hand-made server's socket, so nginx's config keeps working); the hand-made service is
    /// drained and stopped (the public socket re-made at once if it removes it as it exits; the
    /// report says for how long it was missing), and the files relctl did not make in the build
    /// directory are moved into the release `<time>-adopted`, with the start script and
    /// environment of the manifest, which `relctl rollback <BUILD> --to <time>-adopted` returns to.
    /// Files outside the build directory (a STATIC_ROOT, a database) are left alone. On a build
    /// with nothing hand-made, --adopt changes nothing: the build runs as usual.
    #[arg(long)]
    pub adopt: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// A build declared as [builds.<BUILD>] in the manifest.
    pub build: String,

    /// The release to return to (see `relctl releases BUILD`), e.g. 20261123T130501Z-abc1234.
    #[arg(long, value_name = "ID")]
    pub to: Option<String>,
}

#[derive(Debug, Args)]
pub struct NginxArgs {
    /// Only this build (repeatable).
    #[arg(long = "build", value_name = "BUILD")]
    pub builds: Vec<String>,

    /// Write the snippet to FILE atomically (mode 0644) instead of printing it.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Validate the snippet with the host's `nginx -t` (inside a throwaway wrapper config) before
    /// printing or writing it; with --output, also run the host's full `nginx -t` once it is in
    /// place, and put the previous file back if that fails.
    #[arg(long)]
    pub check: bool,

    /// After writing --output, reload nginx (over D-Bus when nginx.service is a systemd unit,
    /// else `nginx -s reload`); if the reload fails, the previous file is put back.
    #[arg(long, requires = "output")]
    pub reload: bool,
}

#[derive(Debug, Args)]
pub struct BuildArg {
    /// A build declared as [builds.<BUILD>] in the manifest.
    pub build: String,
}

#[derive(Debug, Args)]
pub struct OptionalBuildArg {
    /// A build declared as [builds.<BUILD>] in the manifest; all builds when left out.
    pub build: Option<String>,
}

/// The clap command, for man pages and completions.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
