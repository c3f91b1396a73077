//! Command-line definitions. These types stay dumb: they only describe what the user typed.
//! `plan` turns them, together with the manifest, into something to act on.
//!
//! The doc comments here are the documentation: `--help`, the man pages in `man/` and the shell
//! completions are all generated from them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::name::BuildName;

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
/// that is not active (one that sleeps when idle counts as up), a process short of its instances, or a certificate that is missing,
/// expires within 14 days or whose last renewal failed. `exec` exits with its command's status;
/// `diff` exits as diff(1) does: 1 when something differs, 2 when it cannot tell.
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
    /// Use this manifest instead of searching upwards for relctl.toml.
    ///
    /// Without it, relctl uses the relctl.toml it finds first in the current directory or one of
    /// its parents.
    #[arg(short = 'f', long = "manifest", value_name = "PATH", global = true)]
    pub manifest: Option<PathBuf>,

    /// Print one JSON document on stdout instead of text.
    ///
    /// The document replaces the human-readable account; `logs` prints one JSON object a line
    /// instead.
    #[arg(long, global = true)]
    pub json: bool,

    /// Print nothing but errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print more: the full output of every hook.
    ///
    /// For exec, also the systemd-run command line.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// Run the command on HOST over SSH, like `systemctl -H`.
    ///
    /// HOST is `[user@]host[:port]`. Your OpenSSH client does the connecting, with your ~/.ssh/config, agent, known hosts and
    /// ProxyJump (set RELCTL_SSH to another ssh command line, e.g. `ssh -F deploy/ssh_config`);
    /// the host needs sshd and relctl of this same version, nothing else. The manifest is read and
    /// checked here; it, the settings template and (for `build` and `diff`) the sources, packed with the
    /// manifest's exclude rules, are shipped into a temporary directory on the host, relctl runs
    /// there as root (through `sudo -n` when the SSH user is not root), its output streams back
    /// and its exit code is relctl's. `root`, `secrets` and `htpasswd` name the host's files and
    /// must be absolute: secrets never leave their host. `init` and `completions` run here.
    #[arg(short = 'H', long = "host", value_name = "HOST", global = true)]
    pub host: Option<crate::manifest::target::Target>,

    /// Roll the command over these hosts instead of the build's `hosts`.
    ///
    /// A comma-separated list, each host as for -H; it replaces the build's `hosts` in the
    /// manifest.
    ///
    /// `build`, `restart BUILD`, `rollback` and `promote` run on --serial hosts at a time, each
    /// through its full gate; the first failure stops the roll: a host that failed is back on its
    /// previous release (its own gate saw to it), the hosts after it are not touched, and relctl
    /// exits 1. Each host's output comes back line by line behind `<host> | `; a table of host,
    /// result, release and seconds ends it (`--json`: one document with a row per host, each with
    /// the host's own document). `status` asks every host and prints one table. Other commands
    /// take one host: -H.
    #[arg(long, value_name = "HOST,...", value_delimiter = ',', global = true, conflicts_with = "host")]
    pub hosts: Vec<crate::manifest::target::Target>,

    /// How many hosts of a roll run at a time.
    #[arg(long, value_name = "N", default_value_t = 1, global = true, value_parser = clap::value_parser!(u16).range(1..))]
    pub serial: u16,

    /// Fail at once if another relctl is changing the same app.
    ///
    /// Without it, relctl waits while another relctl changes the same app (build, promote,
    /// rollback, start, stop, restart, reload, destroy), saying who holds the app's lock; with it,
    /// relctl exits 1 at once.
    #[arg(long, global = true)]
    pub no_wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter relctl.toml for a project.
    ///
    /// DIR is the project's directory, by default the current one. It looks for a Django project: `manage.py` (in DIR or up to two directories below it,
    /// skipping hidden directories, virtualenvs and node_modules), its settings module
    /// (`DJANGO_SETTINGS_MODULE` in manage.py or wsgi.py, else `<package>/settings.py` or a
    /// settings package), the WSGI or ASGI module beside them, a health URL (`health`, `healthz`,
    /// `ping`, ... in the root URL configuration), and the dependencies (`requirements.txt`, else
    /// the `[project] dependencies` of `pyproject.toml`). From them it writes: `[settings]` from
    /// `builtin:django`, `[service]` running gunicorn on the socket systemd passes it in
    /// manage.py's directory, `[deps.venv]` keyed on the dependency file and the Python version,
    /// a `release` hook running `migrate`, `[health]` when it found a health URL, and one build,
    /// `development`. Every section is commented. Without a Django project it writes a generic,
    /// commented manifest to fill in.
    ///
    /// For a Django project without gunicorn settings it also writes `gunicorn.conf.py` beside
    /// manage.py, named in `[service] exec`: it freezes what the gunicorn master imported before
    /// each fork (`gc.freeze()`), which makes stopping an instance, and so every restart and
    /// deploy, cost a fraction of the CPU. A project's own gunicorn.conf.py is used as it is
    /// (with a note when it does not call `gc.freeze()`) and never overwritten.
    ///
    /// The manifest passes relctl's manifest checks as written; read it, then run
    /// `sudo relctl build development`. An existing relctl.toml is never overwritten: that is a
    /// usage error (exit 2), and nothing is written. init writes nothing else and needs no root.
    Init(InitArgs),

    /// Build a new release of BUILD and make it live.
    ///
    /// In order: create `<root>/<build>` and the service user if missing; copy the sources into a
    /// new `releases/<id>/`, which only root can enter until it is sealed (skipping `.git`, the
    /// build root and the `exclude` patterns; no link followed, no mode copied); render the
    /// settings file; link each `[deps]` entry (built once per content under `<root>/.deps/`,
    /// reused when it exists); run the `build` hooks as root in the release directory; seal it;
    /// then run each `release` hook the way the service runs: in a unit of its own with the
    /// service's user, sandbox, environment and secrets, stopped after `[hooks]
    /// release_timeout_s`. Nothing live has changed up to here: a failure removes the half-built
    /// release and leaves the running build alone.
    ///
    /// Then: write the unit files to /etc/systemd/system and reload systemd if they changed, and
    /// enable `<app>@<build>.socket`, `<app>@<build>.service` and `<app>.target`.
    ///
    /// A build has two instances, main `<app>@<build>` and next `<app>_next@<build>`, each with a
    /// socket of its own; the public socket `<root>/<build>/<socket>` (a symlink) points at the
    /// one that serves. When the build already serves, the new release starts in the other
    /// instance, the candidate, and must pass the gate there (systemd's job done, the unit active,
    /// its main process holding the socket systemd passes it, `[health]` answering 2xx/3xx), then the
    /// `[hooks] verify` commands (as root in the release, with `RELCTL_SOCKET` the candidate's own
    /// socket and `RELCTL_URL=http://localhost`, e.g. `curl --fail --unix-socket "$RELCTL_SOCKET"
    /// "$RELCTL_URL/smoke"`): a release that fails is stopped and marked bad before it takes a
    /// single request, with the hook's last output lines, and relctl exits 1.
    ///
    /// Once it passes, the public socket points at the candidate and `current` at the new release;
    /// the instance that served drains and is kept ready through the candidate's probation: if the
    /// candidate fails or does not stay up, the public socket and `current` go straight back to
    /// it. Then it stops. One Python start per deploy. When nothing serves yet, main starts on the
    /// new release; if it fails, it is restarted on the previous one.
    ///
    /// Once web took the release, the build's processes (`[processes.*]`, e.g. a Celery worker)
    /// and timers (`[timers.*]`) become the release's: units of those the manifest no longer has
    /// are stopped, disabled and removed, and each process instance restarts on the release, one at
    /// a time, up (and past its `ready` check) before the next stops; they share web's probation.
    /// If one fails, the whole build, web and processes, goes back to the previous release, which
    /// is marked bad.
    Build(BuildArgs),

    /// Show, as a unified diff, what the next build of BUILD would change on this host.
    ///
    /// BUILD is planned as `relctl build BUILD --dry-run` plans it (the `[deps]` key commands are
    /// not run), and what the build would write is compared, file by file, with what is installed:
    /// the app's unit files; the build's drop-in (`50-relctl.conf` of the instance that serves); the
    /// unit files of its processes and timers; against the build's current release, the rendered
    /// settings file, `.relctl/environment`, `.relctl/start` and the scripts of the processes and
    /// timers, `.relctl/processes.json` and `.relctl/gunicorn-relctl.conf.py`; and, when `relctl
    /// site` is in use (its `[site] config` file exists) and BUILD has a domain, that nginx file as
    /// `relctl site` would write it now (a build writes it only for a domain the site does not
    /// serve yet; `relctl site` applies the rest). Nothing is changed and no lock is taken.
    ///
    /// Each file that differs gets a unified diff with 3 lines of context, headed `--- installed
    /// PATH` and `+++ next build PATH` (a file of the release is named by its path under
    /// `<root>/<BUILD>/current/`); nothing else goes to stdout. A file the next build adds or
    /// removes is diffed against nothing. A build never built has every file of its release added.
    /// With --json: one document, `{"build", "changed", "files": [{"path", "status", "diff"}]}`,
    /// each status `changed`, `added` or `removed`; with -q, nothing: the exit status says.
    ///
    /// What is masked. The next release gets a new id (and directory), so its files are compared
    /// and shown as if rendered with the current release's id: a build that changes nothing else
    /// shows no diff. Secret values are never printed: every value of the build's secrets file
    /// shows as `<secret>` wherever it occurs, on both sides, and the environment and settings are
    /// compared as rendered with each secret as `<secret>` (each release keeps such copies beside
    /// them); a file whose secret values alone differ is named, with `@@ only secret values
    /// differ; relctl does not show them @@`. For a release made before relctl had `diff`, which
    /// has no such copies, the values of its variables rendered from secrets (as the next build
    /// renders them) and of variables the next build drops show as `<secret>`, and so do the
    /// secrets in its settings lines that are unchanged but for them. In the site's nginx file, the
    /// comments naming each build's release and the manifest are not compared. A template that
    /// renders the time or anything else that changes by itself differs every time.
    ///
    /// Exit status, as diff(1): 0 when nothing differs, 1 when something does, 2 for a usage
    /// error (an undeclared build, a manifest or template error) or when relctl cannot compare (a
    /// file it cannot read). Needs root: the build's secrets file and its release's settings and
    /// environment are root's. With -H it runs on that host, the sources shipped as for `build`.
    Diff(BuildArg),

    /// Start BUILD and wait until systemd's job is done.
    ///
    /// Starts its socket and service over D-Bus. A build that was never built is refused.
    Start(BuildArg),

    /// Stop BUILD and wait until systemd's jobs are done.
    ///
    /// Stops both its instances, main and next: their services and sockets.
    Stop(BuildArg),

    /// Restart BUILD without users noticing; without BUILD, restart `<app>.target`.
    ///
    /// The current release starts in the instance that does not serve, passes the gate there,
    /// takes the public socket, and the one that served drains and stops (see `build`). A build
    /// that is not running is started. `systemctl restart|stop|start <app>@<build>` still do what
    /// they say, whichever instance serves: main (re)starts on `current` and takes the public
    /// socket once ready (a plain restart: connections wait in the sockets' backlogs), and a stop
    /// or restart of main reaches next too.
    ///
    /// The build's processes (`[processes.*]`) restart on the release too, one instance at a
    /// time, each up (and ready) before the next stops; with --process NAME, only that process's
    /// instances restart, and web is left alone.
    Restart(RestartArgs),

    /// List BUILD's releases: id, created, git revision, state, origin.
    ///
    /// Oldest first. Origin says `promoted from <build>@<id>` for a release `relctl promote` made. With --json,
    /// each release also has `verified`: when it last passed the gate and probation as the
    /// build's live release (what `promote` requires of the release it ships).
    ///
    /// State is `current` (what `current` points at), `previous` (what `rollback` would return
    /// to), `bad` (failed verification or rolled back from; with the reason), `incomplete` (its
    /// build never finished; removed by the next build) or `good` (any other finished release).
    Releases(BuildArg),

    /// Switch BUILD back to an earlier release, verified like `build`.
    ///
    /// The release starts and is verified and handed over as `build` does. Without --to: the newest good release older than the current one. The release left behind
    /// is marked bad. Code, settings, environment and the start command all come from the
    /// release, so they go back together.
    Rollback(RollbackArgs),

    /// Ship exactly what FROM runs to TO, verified and handed over like `build`.
    ///
    /// TO gets a new release whose files are a byte-for-byte copy of FROM's current release
    /// (sources and what its build hooks made: collected static files, compiled assets), linked to
    /// the same `[deps]` entries (nothing is rebuilt, no pip runs), except for FROM's own rendered
    /// settings file and relctl's `.relctl/`. Then, as `build` does for a new release: TO's
    /// settings are rendered (from the template in FROM's release when the template is one of the
    /// source's files, so a checkout that moved on does not matter), with TO's vars, secrets and
    /// environment; TO's `release` hooks run (migrations on TO's database; `build` hooks do not:
    /// their output is already in the files); the release starts in TO's candidate instance, must
    /// pass the gate and the `verify` hooks there before it takes any traffic, and is handed over.
    /// The release records where it came from: `relctl releases TO` shows `promoted from
    /// FROM@<id>`.
    ///
    /// Refused (exit 2, nothing changed) when FROM and TO are the same build, when FROM has no
    /// current release or it is incomplete, bad, or not verified (it never passed the gate and
    /// probation as FROM's live release; `relctl restart FROM` verifies it), when it belongs to
    /// another app, or when it lacks a `[deps]` entry the manifest declares.
    ///
    /// Files in the release that name FROM's release directory (a virtualenv made by a build hook
    /// inside the release has FROM's path in its scripts) still point at FROM's release: declare
    /// such things in `[deps]`, which live outside releases.
    Promote(PromoteArgs),

    /// Reload BUILD gracefully: new gunicorn workers, same main process.
    ///
    /// systemd's reload (SIGHUP to gunicorn); relctl waits for the job, then verifies the build.
    /// gunicorn starts new workers and retires the old ones once they finish their requests; the
    /// main process, its release and environment stay as they are (with --preload, the app code
    /// too). Nothing stops serving, so use it to refresh workers; use `restart` for a new process
    /// and `build` for new code.
    Reload(BuildArg),

    /// Tear BUILD down while the other builds keep serving.
    ///
    /// Stops it, disables its units and removes it from disk. BUILD must be declared in the manifest (by name, or as a member of a family such as
    /// `pr-*`) and `<root>/<BUILD>` must be a directory; otherwise relctl exits 2 and changes
    /// nothing. In order: with --output, the nginx snippet is rewritten without BUILD's routes
    /// (every other build's, as `nginx-snippet --output` writes them), checked and nginx reloaded
    /// as asked, so nginx stops sending requests to BUILD before
    /// it stops; if that fails, the previous file is put back and nothing else changes. Then the
    /// `<app>_next@<BUILD>` and `<app>@<BUILD>` services and sockets stop
    /// (gunicorn finishes the requests it has), `<app>@<BUILD>.socket` and `.service` are
    /// disabled, the build's drop-in directories (`/etc/systemd/system/<app>@<BUILD>.service.d`
    /// and next's, your own drop-ins in them included) are removed, systemd reloads and
    /// forgets the build's units (failed ones are reset). `<root>/<BUILD>` (every release, the
    /// sockets) is renamed to `<root>/.relctl-destroyed-<BUILD>` and removed; if relctl is
    /// interrupted there, the next destroy or build removes that leftover. Dependency entries
    /// under `<root>/.deps` that no kept release uses any more are removed.
    ///
    /// The state directory `/var/lib/<app>/<component>/<BUILD>` (the database, uploads) and the
    /// cache directory `/var/cache/<app>/<component>/<BUILD>` (the service's HOME) are kept,
    /// unless --purge is given. When BUILD was the app's last build on disk, `<app>.target` is
    /// disabled and stopped too: the app's unit files stay in /etc/systemd/system, but nothing of
    /// the app is enabled. The other builds' processes, sockets and drop-ins are not touched: they
    /// keep serving with the same main PIDs.
    ///
    /// Exits 0 when the build is gone; 1 when a step failed, with what is left to do (until its
    /// directory is removed, running destroy again finishes the job); 2 for a usage error, with
    /// nothing changed.
    Destroy(DestroyArgs),

    /// Show each build's state, release, main PID, route and serving instance.
    ///
    /// Every declared build and every member of a family (`[builds."pr-*"]`) that exists on disk
    /// (or only BUILD): the state, release, since and main PID of the instance that serves
    /// (the one the public socket points at; main when none does), the route, that instance, and
    /// the other instance and its release while it runs (a deploy's candidate). Then each build's
    /// processes (`[processes.*]`: running and desired instances, states, the release each runs,
    /// PIDs) and timers (`[timers.*]`: schedule, last run and its result, next run).
    ///
    /// With builds that have a `domain` (see relctl site): each domain's certificate (source,
    /// expiry, days left) and the renewal timer (last run, result, next run).
    ///
    /// A build with `idle_stop_s` that sleeps shows `sleeping` and for how long (JSON:
    /// `"sleeping": {"since", "for_s"}`); its next request through nginx wakes it.
    ///
    /// Exits 3 when a listed build is neither active nor asleep, or runs fewer instances of a process than its
    /// release wants, or a certificate is missing, expired or expires within 14 days, or the last
    /// renewal failed.
    Status(OptionalBuildArg),

    /// Show who changed what: every build, promote, rollback, restart, start, stop, reload,
    /// destroy, maintenance, site and renew.
    ///
    /// Each changing command run as root leaves a record (not a `--dry-run`, nor a usage error,
    /// which changes nothing): its time, who ran it (the user behind sudo, `SUDO_USER`, else the
    /// login user, and how: sudo, ssh from an address, relctl -H from user@host), the host, the
    /// command and its arguments, the build, its current release before and after, the result
    /// (with the error) and how long it took. Records are kept in
    /// `/var/lib/relctl/<app>/history.jsonl` (0600 root, one JSON object a line, oldest first) and
    /// written to the journal with `MESSAGE_ID=e9f6fc50b985472cb1378c3103c1040d` and `RELCTL_*`
    /// fields (`journalctl MESSAGE_ID=e9f6fc50b985472cb1378c3103c1040d`). With `--hosts` (or
    /// builds' `hosts`), every host's history in one table, by time. `[notify] commands` are run
    /// after the commands `[notify] on` names (by default build, adopt, promote, rollback and any
    /// that failed), with the record as JSON on stdin and `RELCTL_EVENT`, `RELCTL_RESULT`,
    /// `RELCTL_APP`, `RELCTL_BUILD`, `RELCTL_FROM`, `RELCTL_TO`, `RELCTL_USER`, `RELCTL_HOST`,
    /// `RELCTL_ERROR`, `RELCTL_SUMMARY` set; a notification that fails or runs past
    /// `[notify] timeout_s` is reported as a warning and never fails the command. Needs root.
    History(HistoryArgs),

    /// Take BUILD's route offline with a 503 page (on), or bring it back (off).
    ///
    /// `on` writes the page nginx serves, `<root>/<BUILD>/.relctl-maintenance.html` (the
    /// `[maintenance] page` of BUILD's current release, or relctl's own; 0644), then the flag
    /// `<root>/<BUILD>/.relctl-maintenance`. While the flag exists, the locations `nginx-snippet`
    /// writes answer BUILD's route with 503, that page, `Retry-After: [maintenance] retry_after_s`
    /// and `Cache-Control: no-store`; the `[health]` path and the static files still reach the
    /// app, and the build keeps running (migrate by hand meanwhile, e.g. with `relctl exec`). nginx
    /// tests for the flag on each request: no reload, and it survives one. `off` removes the flag.
    /// `status` shows it. Takes effect through a snippet written by this relctl (`relctl
    /// nginx-snippet --output ... --reload` once after upgrading).
    Maintenance(MaintenanceArgs),

    /// Show BUILD's journal: both instances' services and sockets, oldest first.
    ///
    /// The entries of `<app>@<build>.service`, `<app>@<build>.socket` (main) and of
    /// `<app>_next@<build>.service`/`.socket` (next; deploys alternate between the two),
    /// read with journalctl: gunicorn's output and systemd's messages about the units. One line an
    /// entry: local time, the instance (`main` or `next`) and the message. On a terminal,
    /// errors are red (journal priority err or worse, gunicorn's `[ERROR]` and `[CRITICAL]` lines,
    /// Python tracebacks) and warnings yellow (priority warning, gunicorn's `[WARNING]`); not when
    /// NO_COLOR is set or stdout is not a terminal.
    ///
    /// With --json: one JSON object a line (not one document), with `time` (RFC 3339, UTC),
    /// `unit`, `instance` (`main` or `next`), `pid`, `priority` (0 emerg .. 7 debug) and
    /// `message`.
    ///
    /// Reading the journal needs no root, but journalctl shows the system's entries only to root
    /// and to members of the `systemd-journal` or `adm` group. Exits 1 when journalctl fails.
    Logs(LogsArgs),

    /// Print nginx location blocks that route each build's URL prefix to its socket.
    ///
    /// For every declared build with a `route`, and every member of a family (`[builds."pr-*"]`,
    /// route e.g. `/review/{{ build }}`) that exists on disk (or only those given with --build):
    /// `<route>`
    /// redirects (308) to `<route>/`; `<route>/x?q=1` reaches the app through
    /// `<root>/<build>/<socket>` with its full path and the header `SCRIPT_NAME: <route>`, which
    /// gunicorn turns into `SCRIPT_NAME=<route>`, `PATH_INFO=/x`: the app routes as if mounted at
    /// `/` and generates its URLs under the route. `<route>x` is not routed to the build. The
    /// headers of /etc/nginx/proxy_params (Host, X-Real-IP, X-Forwarded-For, X-Forwarded-Proto)
    /// are passed on, set inline when the host has no proxy_params. With `[static]`, nginx serves
    /// `<route>/<url>/` itself from the build's current release; `websocket = true` passes
    /// upgrades and `read_timeout_s` sets the route's read timeout. A build's `allow` and
    /// `htpasswd` keys become allow/deny and auth_basic directives. Include the output inside a
    /// `server {}` block.
    #[command(name = "nginx-snippet")]
    NginxSnippet(NginxArgs),

    /// Serve the builds that have a `domain` over HTTPS: server blocks, certificates, renewal.
    ///
    /// Writes nginx's `server {}` blocks for every domain the manifest's builds name
    /// (`[builds.<BUILD>] domain`, route `/` unless it says otherwise; several builds may share a
    /// domain at different routes) to `[site] config` (default
    /// `/etc/nginx/conf.d/relctl-<app>.conf`): validated with `nginx -t`, written atomically,
    /// nginx reloaded, the previous file put back if any of it fails. Per domain: a server on
    /// `[site] http_port` (80) that answers the ACME CA's challenges
    /// (`/.well-known/acme-challenge/`) and redirects everything else to HTTPS (308), and a server
    /// on `[site] https_port` (443) with HTTP/2, the certificate, `Strict-Transport-Security` when
    /// `[site] hsts_max_age_s` is set, and the builds' locations (as `nginx-snippet` prints them:
    /// static files, WebSockets, maintenance, allow and htpasswd).
    ///
    /// Certificates come from `[site] acme_directory` (Let's Encrypt by default; `acme_email`,
    /// and `acme_ca_bundle` for a CA with a private root), obtained by certbot over HTTP-01
    /// through nginx and kept in `/var/lib/relctl/<app>/acme/` (mode 0700, keys 0600), or from
    /// `[site.certificates."<domain>"]` cert and key files (root's, the key readable by root
    /// alone). A domain with no certificate yet is served on HTTP only (so nginx always loads the
    /// file) until certbot obtained one; then the file is written again with HTTPS. A domain
    /// certbot fails for is named with certbot's reason, the others are served, and relctl exits
    /// with status 1. It installs `relctl-<app>-certs.timer`, which runs `relctl renew` twice a
    /// day. Needs root. Run it again after changing domains in the manifest.
    Site(SiteArgs),

    /// Renew the certificates of the app's domains that are due; what relctl site's timer runs.
    ///
    /// Asks the ACME CA (through certbot) for each domain's certificate that is missing or expires
    /// within 30 days, then reloads nginx only if a certificate changed (and writes the server
    /// blocks again if the manifest's domains changed). Exits 1 when a certificate could not be
    /// renewed, naming the domain and certbot's reason: `relctl-<app>-certs.service` then fails,
    /// and `relctl status` shows it. `relctl logs --certs` shows its runs. Needs root.
    Renew,

    /// Run CMD as BUILD's service runs: its user, environment, secrets, sandbox.
    ///
    /// CMD runs in BUILD's current release as the service runs: as its user, with its
    /// environment, secrets and sandbox. It runs in a transient unit `<app>-exec-<build>-<random>.service` that carries the
    /// `[Service]` settings systemd runs `<app>@<build>.service` with (the unit file relctl wrote
    /// and its drop-ins: `50-relctl.conf` with the secrets file, and your own), so what works here
    /// works in the service: the service user, `EnvironmentFile=` (the release's environment, then
    /// the secrets), `HOME` and `XDG_RUNTIME_DIR`, the state, cache and runtime directories,
    /// `ProtectSystem=strict` and the rest of the hardening, the IP address filter. Left out: what
    /// only a long-running service needs (`Type=`, `ExecStart=` and the other commands, `Restart=`,
    /// timeouts, `KillMode=`, `SuccessExitStatus=`, standard input and output). It leaves the
    /// service's runtime directory in place when it ends (`RuntimeDirectoryPreserve=yes`), and
    /// systemd unloads the unit once it ends, whatever its result.
    ///
    /// CMD runs in the release directory (the directory of the service's `WorkingDirectory=`, where
    /// the `release` hooks run too), so `.venv/bin/python API/manage.py ...` works as in a hook. A
    /// program path with a `/` that is not absolute resolves against the release, like
    /// `[service] exec`; a bare name is looked up in the service's PATH. The release is the one
    /// `current` points at when exec starts; exec does not take the app's lock, so a deploy may go
    /// on meanwhile.
    ///
    /// On a terminal (stdin and stdout both), CMD gets a terminal of its own (an interactive
    /// `manage.py shell` works); otherwise stdin, stdout and stderr are passed to it as they are.
    /// relctl exits with CMD's exit status: 255 when a signal killed CMD; 200 to 243 are also
    /// systemd's when it could not start CMD (relctl then points at the unit's journal). Interrupted
    /// by SIGINT, SIGTERM or SIGHUP, relctl stops the unit and exits 128 + the signal's number.
    /// Needs root.
    ///
    /// Example: relctl exec production -e DJANGO_SUPERUSER_USERNAME=admin -e
    /// DJANGO_SUPERUSER_EMAIL=admin@example.com -e DJANGO_SUPERUSER_PASSWORD -- .venv/bin/python
    /// API/manage.py createsuperuser --noinput
    Exec(ExecArgs),

    /// Print a shell completion script for relctl on stdout.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The project's directory (default: the current one).
    ///
    /// relctl.toml is written there.
    pub dir: Option<PathBuf>,

    /// The app's name, for its system user, units and /opt/<APP>/.
    ///
    /// It must match ^[a-z][a-z0-9-]{0,31}$. Default: the directory's name, or the project's when
    /// the directory's is generic (app, src, backend, ...).
    #[arg(long, value_name = "APP")]
    pub app: Option<String>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The build to make, e.g. development.
    ///
    /// It must be declared as [builds.<BUILD>] in the manifest, or belong to a family declared as [builds."<prefix>*"] (e.g. `pr-42` of
    /// [builds."pr-*"], a review build: `{{ build }}` in the family's `route` and `vars` becomes
    /// its name).
    pub build: BuildName,

    /// Print the plan (paths, units, files, hooks, jobs); change nothing.
    ///
    /// The manifest is resolved as for a real build, but the `[deps]` key commands are not run.
    /// Needs no root.
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
pub struct PromoteArgs {
    /// The build whose current release is shipped, e.g. testing.
    pub from: BuildName,

    /// The build that gets it, e.g. production.
    pub to: BuildName,

    /// Print the plan; change nothing.
    ///
    /// Both builds are resolved; the plan says what is copied from where, the settings, hooks and
    /// jobs.
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub schema: SchemaArgs,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// The build to tear down.
    ///
    /// Declared as [builds.<BUILD>] in the manifest (or a member of a family such as
    /// [builds."pr-*"]), with a directory `<root>/<BUILD>`.
    pub build: BuildName,

    /// Also remove the build's state and cache (database, uploads).
    ///
    /// The state directory /var/lib/<app>/<component>/<BUILD> (its database and uploads: gone for
    /// good) and the cache directory /var/cache/<app>/<component>/<BUILD>.
    #[arg(long)]
    pub purge: bool,

    /// Print what would be stopped, disabled and removed; change nothing.
    ///
    /// With --json, as JSON.
    #[arg(long)]
    pub dry_run: bool,

    /// First rewrite the nginx snippet FILE without BUILD's routes.
    ///
    /// Atomically (mode 0644), as `nginx-snippet --output FILE` writes it for the other builds.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Validate the new snippet with the host's `nginx -t` before writing it.
    ///
    /// Then the host's full config once it is in place; if that fails, the previous file is put
    /// back and nothing of BUILD changes.
    #[arg(long, requires = "output")]
    pub check: bool,

    /// After writing --output, reload nginx and wait for the new configuration.
    ///
    /// If the reload fails, the previous file is put back and nothing of BUILD changes.
    #[arg(long, requires = "output")]
    pub reload: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// A build declared as [builds.<BUILD>] in the manifest.
    #[arg(required_unless_present = "certs")]
    pub build: Option<BuildName>,

    /// The runs of the certificate renewal (`relctl-<app>-certs.service`, see relctl site)
    /// instead of a build's entries.
    #[arg(long, conflicts_with_all = ["build", "process"])]
    pub certs: bool,

    /// Keep printing entries as they are written, until interrupted.
    ///
    /// It starts after the last 10 entries, unless --lines or --since says otherwise. `-F`, as
    /// `-f` is --manifest.
    #[arg(short = 'F', long)]
    pub follow: bool,

    /// Only the last N entries (default: all of them, or 10 with --follow).
    #[arg(short = 'n', long, value_name = "N")]
    pub lines: Option<u64>,

    /// Only entries at or after TIME, in journalctl's syntax.
    ///
    /// E.g. `2026-11-23 13:05:00`, `today`, `-1h`, `10 min ago` (passed to journalctl as it is).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub since: Option<String>,

    /// The entries of one of BUILD's processes (every instance) or timers (its runs and its
    /// failure notification) instead of web's, by its name in the manifest.
    #[arg(long, value_name = "NAME")]
    pub process: Option<String>,
}

#[derive(Debug, Args)]
pub struct MaintenanceArgs {
    /// `on` takes the route offline, `off` brings it back.
    #[arg(value_enum)]
    pub state: OnOff,

    /// A build declared as [builds.<BUILD>] in the manifest.
    pub build: BuildName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// A build declared as [builds.<BUILD>]; all builds when left out.
    pub build: Option<BuildName>,

    /// Restart only this process of BUILD (a `[processes.<NAME>]`), instance by instance.
    #[arg(long, value_name = "NAME", requires = "build")]
    pub process: Option<String>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// A build declared as [builds.<BUILD>] in the manifest.
    pub build: BuildName,

    /// The release to return to, e.g. 20261123T130501Z-abc1234.
    ///
    /// `relctl releases BUILD` lists them. Without --to: the newest good release older than the
    /// current one.
    #[arg(long, value_name = "ID")]
    pub to: Option<String>,

    #[command(flatten)]
    pub schema: SchemaArgs,
}

/// With `[schema]`: what to do with migrations applied now that the older code does not know.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Unapply the migrations the older code does not know first, with the current release's
    /// code (`[hooks] pre_migrate`, then `[schema] unapply` per app); an irreversible migration
    /// makes it fail, with the current release still serving.
    #[arg(long, conflicts_with = "schema_compatible")]
    pub migrate: bool,

    /// Go ahead leaving those migrations applied: the older code works with them.
    #[arg(long)]
    pub schema_compatible: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// A build declared in the manifest, with a current release.
    pub build: BuildName,

    /// Set KEY to VALUE for CMD, or to relctl's own KEY (repeatable).
    ///
    /// Without `=VALUE`, KEY gets the value it has in relctl's environment (`-e KEY` keeps a
    /// password off relctl's command line). These win over
    /// the service's environment and secrets; relctl hands them to systemd in a file only root can
    /// read, so they do not show in the unit's properties (`systemctl show`) or CMD's command line.
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,

    /// The command and its arguments, after `--`.
    ///
    /// E.g. `-- .venv/bin/python API/manage.py shell`.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct NginxArgs {
    /// Only this build (repeatable).
    #[arg(long = "build", value_name = "BUILD")]
    pub builds: Vec<BuildName>,

    /// Write the snippet to FILE atomically (mode 0644) instead of printing it.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Validate the snippet with the host's `nginx -t` first.
    ///
    /// Inside a throwaway wrapper config, before printing or writing it; with --output, also run
    /// the host's full `nginx -t` once it is in place, and put the previous file back if that
    /// fails.
    #[arg(long)]
    pub check: bool,

    /// After writing --output, reload nginx.
    ///
    /// Over D-Bus when nginx.service is a systemd unit, else `nginx -s reload`; if the reload
    /// fails, the previous file is put back.
    #[arg(long, requires = "output")]
    pub reload: bool,
}

#[derive(Debug, Args)]
pub struct SiteArgs {
    /// Print the server blocks and what would be done (certificates to obtain, the timer), and
    /// change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct BuildArg {
    /// A build declared as [builds.<BUILD>] in the manifest.
    pub build: BuildName,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this build's records (a build declared as [builds.<BUILD>] in the manifest).
    pub build: Option<BuildName>,

    /// Only the last N records.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 20)]
    pub lines: usize,
}

#[derive(Debug, Args)]
pub struct OptionalBuildArg {
    /// A build declared as [builds.<BUILD>]; all builds when left out.
    pub build: Option<BuildName>,
}

/// The clap command, for man pages and completions.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

#[cfg(test)]
mod tests {
    /// clap's own checks (e.g. a subcommand's short option clashing with a global one), which a
    /// release build would not run.
    #[test]
    fn clap_definitions_are_consistent() {
        super::command().debug_assert();
    }

    #[test]
    fn logs_takes_journalctls_relative_times() {
        use clap::Parser;
        let cli = super::Cli::try_parse_from(["relctl", "logs", "development", "--since", "-1h", "-F"]).unwrap();
        let super::Command::Logs(args) = cli.command else { panic!("not logs: {:?}", cli.command) };
        assert_eq!(args.since.as_deref(), Some("-1h"));
        assert!(args.follow);
    }
}
