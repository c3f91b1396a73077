//! Workers and scheduled jobs deployed with the release (issue 22), with real parts only: a
//! `django-admin startproject` project with Celery laid out as Celery's "First steps with Django"
//! describes (`proj/celery.py`, `proj/__init__.py`, a `demoapp` whose `tasks.py` has
//! `@shared_task`s), Debian's redis-server as broker and result backend (started in the sandbox, on
//! a unix socket only: the sandboxes share the host's network), two real `celery worker`s and
//! `celery beat` as `[processes.*]`, real systemd timers, real nginx in front. Tasks are queued
//! through nginx (a Django view calls `.delay()`) and each reports the release that ran it.
//!
//! One build of `production` after another: tasks queued before and during a deploy all complete
//! (acks-late, prefetch 1), a long task running when the deploy stops its worker finishes, tasks
//! queued after it run the new release; a release whose worker crashes at start is refused while
//! web and the old workers keep serving; rollback moves web and workers together; the timers run
//! from the current release and a failing one shows in `status` with its `on_failure` run; a worker
//! removed from the manifest leaves no unit; `status --json` agrees with systemd throughout.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::env::{Env, RELCTL};
use crate::common::scratch::{replace, scratch_dir};
use crate::common::{show, stderr};

const APP: &str = "mill";
const BUILD: &str = "production";
const ROUTE: &str = "/mill";
const ROOT: &str = "/opt/mill/web/production";
const STATE: &str = "/var/lib/mill/web/production";
/// What the units of the build's processes and timers are named with: `<app>_<build>_` (process
/// instances `mill_production_worker@1.service`, timers `mill_production_report.timer` and
/// `.service`).
const JOBS: &str = "mill_production_";
const SNIPPET: &str = "/etc/nginx/snippets/mill.conf";
/// Debian's redis-server, switched to its unix socket only (`port 0`): the sandboxes share the
/// host's network, so a TCP port could be another sandbox's redis.
const REDIS_SOCKET: &str = "/run/redis/redis-server.sock";

const REQUIREMENTS: &str = "Django==5.2.19\ngunicorn==23.0.0\ncelery==5.5.3\nredis==5.2.1\n";

const MANIFEST: &str = r#"# A Django project with Celery laid out as Celery's "First steps with Django" does, deployed by relctl.
app = "mill"
component = "web"
exclude = ["db.sqlite3"]

[settings]
template = "builtin:django"
path = "proj/deploy_{{ build }}.py"

[service]
exec = ".venv/bin/python -m gunicorn --workers 2 proj.wsgi:application"
environment = { DJANGO_SETTINGS_MODULE = "proj.deploy_{{ build }}" }

[deps.venv]
path = ".venv"
key = ["requirements.txt"]
build = [
  "/usr/bin/python3 -m venv \"$RELCTL_DEP_DIR\"",
  "\"$RELCTL_DEP_DIR/bin/python\" -m pip install --disable-pip-version-check -q -r requirements.txt",
]

[hooks]
release = [".venv/bin/python manage.py migrate --noinput -v 0"]

[health]
path = "/"

[vars]
settings_module = "proj.settings"

[processes.worker]
exec = ".venv/bin/celery -A proj worker --loglevel INFO --concurrency 1 -n worker$RELCTL_PROCESS_INSTANCE@%h"
stop_timeout_s = 60
ready = ".venv/bin/celery -A proj inspect ping -d worker$RELCTL_PROCESS_INSTANCE@$(hostname)"
ready_timeout_s = 60

[processes.beat]
exec = ".venv/bin/celery -A proj beat --loglevel INFO --schedule $STATE_DIRECTORY/celerybeat-schedule"

[timers.clearsessions]
# Each run appends "<when it started> <release>" to a file in the state directory.
exec = '''sh -c 'started=$(date +%s); .venv/bin/python manage.py clearsessions && echo "$started $RELCTL_RELEASE" >> "$STATE_DIRECTORY/clearsessions.log"' '''
on_calendar = "*:*:0/10"

[timers.report]
# No such command: every run fails (Django's "Unknown command", exit 1).
exec = ".venv/bin/python manage.py send_report"
on_calendar = "*:*:5/10"
on_failure = '''sh -c 'echo "$(date +%s) $RELCTL_RELEASE report failed" >> "$RELCTL_STATE_DIR/alerts"' '''

[builds.production]
route = "/mill"
processes = { worker = 2, beat = 1 }
timers = ["clearsessions", "report"]
"#;

/// `proj/celery.py`, as "First steps with Django" has it.
const CELERY_PY: &str = r#"import os

from celery import Celery

# Set the default Django settings module for the 'celery' program.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = Celery("proj")

# Using a string here means the worker doesn't have to serialize
# the configuration object to child processes.
# - namespace='CELERY' means all celery-related configuration keys
#   should have a `CELERY_` prefix.
app.config_from_object("django.conf:settings", namespace="CELERY")

# Load task modules from all registered Django apps.
app.autodiscover_tasks()
"#;

/// `proj/__init__.py`, as "First steps with Django" has it.
const INIT_PY: &str = r#"# This will make sure the app is always imported when
# Django starts so that shared_task will use this app.
from .celery import app as celery_app

__all__ = ("celery_app",)
"#;

/// Appended to startproject's `proj/settings.py`.
const SETTINGS: &str = r#"

# Celery, configured from Django's settings (the CELERY_ namespace): Debian's redis-server, on its
# unix socket, as broker and result backend. Acks late and one task at a time per worker process:
# a task is taken off the queue only once it ran, so a worker stopping for a deploy loses none.
INSTALLED_APPS += ["demoapp"]
CELERY_BROKER_URL = "redis+socket:///run/redis/redis-server.sock"
CELERY_RESULT_BACKEND = "redis+socket:///run/redis/redis-server.sock"
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TRACK_STARTED = True
CELERY_BEAT_SCHEDULE = {"tick": {"task": "demoapp.tasks.tick", "schedule": 2.0}}
"#;

/// `demoapp/tasks.py`.
const TASKS_PY: &str = r#"import os
import time
from pathlib import Path

from celery import shared_task


def ran_by(task):
    """Which release and which worker ran `task`."""
    return {"release": os.environ["RELCTL_RELEASE"], "worker": task.request.hostname}


@shared_task(bind=True)
def where(self, sleep=0.0):
    time.sleep(sleep)
    return ran_by(self)


@shared_task(bind=True)
def hold(self, name):
    """A long task: says it started (a file `<name>.started` in the state directory, naming the
    worker), then runs until a file `<name>` appears there (at most 120 s)."""
    state = Path(os.environ["RELCTL_STATE_DIR"])
    (state / f"{name}.started").write_text(self.request.hostname)
    deadline = time.monotonic() + 120
    while not (state / name).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    return ran_by(self)


@shared_task
def tick():
    """Sent by beat every 2 s: appends "<time> <release>" to beat.log in the state directory."""
    with open(Path(os.environ["RELCTL_STATE_DIR"]) / "beat.log", "a") as log:
        log.write(f"{time.time():.0f} {os.environ['RELCTL_RELEASE']}\n")
"#;

/// `demoapp/views.py`: the release web runs, a task queued, a task's state and result.
const VIEWS_PY: &str = r#"import os

from celery.result import AsyncResult
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import tasks


def index(request):
    return JsonResponse({"release": os.environ["RELCTL_RELEASE"]})


@csrf_exempt
@require_POST
def enqueue(request):
    if "hold" in request.POST:
        result = tasks.hold.delay(request.POST["hold"])
    else:
        result = tasks.where.delay(float(request.POST.get("sleep", "0")))
    return JsonResponse({"id": result.id})


def result(request, task_id):
    r = AsyncResult(task_id)
    return JsonResponse({"state": r.state, "result": r.result if r.state == "SUCCESS" else repr(r.result)})
"#;

/// Appended to startproject's `proj/urls.py`.
const URLS: &str = r#"

from demoapp import views  # noqa: E402

urlpatterns += [
    path("", views.index),
    path("tasks/", views.enqueue),
    path("tasks/<task_id>/", views.result),
]
"#;

/// What the test reads of `relctl --json status` (issue 22's shape), all in this module, so a
/// change of the JSON's shape is a change here only.
mod status {
    use serde_json::Value;

    /// One running instance of a process.
    #[derive(Debug)]
    pub struct Instance {
        pub unit: String,
        pub state: String,
        pub main_pid: u64,
        pub release: String,
    }

    #[derive(Debug)]
    pub struct Process {
        pub name: String,
        pub desired: u64,
        pub instances: Vec<Instance>,
    }

    #[derive(Debug)]
    pub struct Timer {
        pub name: String,
        pub unit: String,
        /// systemd's result of the last run (`success`, `exit-code`, …); None before the first.
        pub last_result: Option<String>,
        pub next_run: Option<String>,
    }

    fn build<'a>(doc: &'a Value, build: &str) -> &'a Value {
        let builds = doc["builds"].as_array().unwrap_or_else(|| panic!("no builds in {doc}"));
        builds.iter().find(|b| b["build"] == build).unwrap_or_else(|| panic!("no build {build} in {doc}"))
    }

    fn text(v: &Value, key: &str, doc: &Value) -> String {
        v[key].as_str().unwrap_or_else(|| panic!("no string {key:?} in {v} of {doc}")).to_string()
    }

    pub fn processes(doc: &Value, name: &str) -> Vec<Process> {
        let list = build(doc, name)["processes"].as_array().unwrap_or_else(|| panic!("no processes in {doc}"));
        list.iter()
            .map(|p| Process {
                name: text(p, "name", doc),
                desired: p["desired"].as_u64().unwrap_or_else(|| panic!("no desired in {p}")),
                instances: p["instances"]
                    .as_array()
                    .unwrap_or_else(|| panic!("no instances in {p}"))
                    .iter()
                    .map(|i| Instance {
                        unit: text(i, "unit", doc),
                        state: text(i, "state", doc),
                        main_pid: i["main_pid"].as_u64().unwrap_or(0),
                        release: text(i, "release", doc),
                    })
                    .collect(),
            })
            .collect()
    }

    pub fn timers(doc: &Value, name: &str) -> Vec<Timer> {
        let list = build(doc, name)["timers"].as_array().unwrap_or_else(|| panic!("no timers in {doc}"));
        list.iter()
            .map(|t| Timer {
                name: text(t, "name", doc),
                unit: text(t, "unit", doc),
                last_result: t["last_result"].as_str().map(str::to_string),
                next_run: t["next_run"].as_str().map(str::to_string),
            })
            .collect()
    }
}

/// A task's end: its state and what it returned (release and worker when it succeeded).
#[derive(Debug, Clone)]
struct Done {
    state: String,
    result: Value,
}

impl Done {
    fn release(&self) -> &str {
        self.result["release"].as_str().unwrap_or("")
    }
}

/// The sandbox with redis and nginx, the project's source and the port nginx listens on.
struct Mill {
    env: Env,
    manifest: PathBuf,
    port: u16,
}

impl Mill {
    fn relctl(&self, args: &[&str]) -> Output {
        self.env.relctl_with(&self.manifest, args)
    }

    fn relctl_ok(&self, args: &[&str]) -> String {
        let out = self.relctl(args);
        assert!(out.status.success(), "relctl {args:?}: {}\n{}", show(&out), self.journals());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn journals(&self) -> String {
        journals(&self.env)
    }

    /// One HTTP request through nginx: status and body.
    fn http(&self, method: &str, path: &str, form: &str) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(
            s,
            "{method} {ROUTE}{path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        )
        .unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (status, body.to_string())
    }

    fn json(&self, method: &str, path: &str, form: &str) -> Value {
        let (status, body) = self.http(method, path, form);
        assert_eq!(status, 200, "{method} {path}: {body}\n{}", self.journals());
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body}"))
    }

    /// The release web answers with, through nginx.
    fn web_release(&self) -> String {
        self.json("GET", "/", "")["release"].as_str().unwrap().to_string()
    }

    /// Queues a task (`sleep=…` or `hold=NAME`) through nginx; its id.
    fn enqueue(&self, form: &str) -> String {
        self.json("POST", "/tasks/", form)["id"].as_str().unwrap().to_string()
    }

    /// Waits until every task ended (SUCCESS or FAILURE), at most `timeout`; panics naming the
    /// ones that did not.
    fn wait_done(&self, ids: &[String], timeout: Duration) -> BTreeMap<String, Done> {
        let deadline = Instant::now() + timeout;
        let mut done = BTreeMap::new();
        loop {
            for id in ids.iter().filter(|id| !done.contains_key(*id)).cloned().collect::<Vec<_>>() {
                let r = self.json("GET", &format!("/tasks/{id}/"), "");
                let state = r["state"].as_str().unwrap().to_string();
                if state == "SUCCESS" || state == "FAILURE" {
                    done.insert(id, Done { state, result: r["result"].clone() });
                }
            }
            if done.len() == ids.len() {
                return done;
            }
            let pending: Vec<&String> = ids.iter().filter(|id| !done.contains_key(*id)).collect();
            assert!(
                Instant::now() < deadline,
                "{} of {} tasks never ended: {pending:?}\n{}",
                pending.len(),
                ids.len(),
                self.journals()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Queues `n` tasks and waits for them; each must succeed on `release`. Returns the workers
    /// that ran them.
    fn tasks_run_on(&self, n: usize, release: &str) -> BTreeSet<String> {
        let ids: Vec<String> = (0..n).map(|_| self.enqueue("sleep=1")).collect();
        let done = self.wait_done(&ids, Duration::from_secs(60));
        for d in done.values() {
            assert_eq!((d.state.as_str(), d.release()), ("SUCCESS", release), "{done:?}");
        }
        done.values().map(|d| d.result["worker"].as_str().unwrap().to_string()).collect()
    }

    fn status(&self) -> Value {
        serde_json::from_str(&self.relctl_ok(&["--json", "status", BUILD])).unwrap()
    }

    /// `systemctl show -P PROPERTY unit`.
    fn prop(&self, unit: &str, property: &str) -> String {
        self.env.sh(&format!("systemctl show -P {property} {unit}"))
    }

    /// The release a process runs in: where its working directory is (the start script enters the
    /// release itself, not `current`).
    fn release_of_pid(&self, pid: u64) -> String {
        let cwd = self.env.sh(&format!("readlink /proc/{pid}/cwd"));
        cwd.strip_prefix(&format!("{ROOT}/releases/"))
            .unwrap_or_else(|| panic!("pid {pid} runs in {cwd}, not a release of {ROOT}"))
            .to_string()
    }

    fn current(&self) -> String {
        self.env.sh(&format!("readlink {ROOT}/current")).trim_start_matches("releases/").to_string()
    }

    fn release_state(&self, id: &str) -> String {
        let doc: Value = serde_json::from_str(&self.relctl_ok(&["--json", "releases", BUILD])).unwrap();
        let r = doc["releases"].as_array().unwrap().iter().find(|r| r["id"] == id);
        r.map(|r| r["state"].as_str().unwrap().to_string()).unwrap_or_else(|| format!("missing from {doc}"))
    }

    /// `relctl status --json` and systemd agree on every process instance (unit, state, main
    /// PID), each runs `release` (by status and by its working directory) as the service user,
    /// and the instances are exactly `want` (process name, count) and all that systemd runs.
    fn processes_agree(&self, want: &[(&str, u64)], release: &str) {
        let doc = self.status();
        let procs = status::processes(&doc, BUILD);
        let names: Vec<(&str, u64)> = procs.iter().map(|p| (p.name.as_str(), p.desired)).collect();
        assert_eq!(names, want, "{doc}");
        let mut units = BTreeSet::new();
        for p in &procs {
            assert_eq!(p.instances.len() as u64, p.desired, "{}: {doc}", p.name);
            for (n, i) in p.instances.iter().enumerate() {
                assert_eq!(i.unit, format!("{JOBS}{}@{}.service", p.name, n + 1), "{doc}");
                assert_eq!(i.state, self.prop(&i.unit, "ActiveState"), "{}: {doc}", i.unit);
                assert_eq!(i.state, "active", "{}: {doc}", i.unit);
                assert_eq!(i.main_pid.to_string(), self.prop(&i.unit, "MainPID"), "{}: {doc}", i.unit);
                assert_eq!(i.release, release, "{}: {doc}", i.unit);
                assert_eq!(self.release_of_pid(i.main_pid), release, "{} runs another release", i.unit);
                assert_eq!(self.env.sh(&format!("ps -o user= -p {}", i.main_pid)), APP, "{}", i.unit);
                units.insert(i.unit.clone());
            }
        }
        // Every process instance systemd runs for the build is one status shows.
        let running: BTreeSet<String> = self
            .env
            .sh(&format!("systemctl list-units --no-legend --plain --state=active '{JOBS}*@*.service' | cut -d' ' -f1"))
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(running, units, "{doc}");
    }

    /// The timers as `relctl status --json` shows them, each with the last result systemd has for
    /// its service (`systemctl show -P Result`), read again until no run starts or ends meanwhile
    /// (a run every 10 s takes about half a second; during one, systemd has reset Result= and
    /// status says `running`).
    fn timers_at_rest(&self) -> (Value, Vec<status::Timer>) {
        let results =
            || ["clearsessions", "report"].map(|t| self.prop(&format!("{JOBS}{t}.service"), "Result")).to_vec();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let before = results();
            let doc = self.status();
            let after = results();
            let timers = status::timers(&doc, BUILD);
            let shown: Vec<String> = timers.iter().map(|t| t.last_result.clone().unwrap_or_default()).collect();
            if before == after && shown == after {
                return (doc, timers);
            }
            assert!(
                Instant::now() < deadline,
                "status never showed the timers' last results as systemd has them ({after:?}): {doc}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Waits until `file` in the state directory has a line "<time> <release> …" whose time is
    /// `since` or later (seconds since the epoch); returns that line's release. systemd may start
    /// a timer's run up to its AccuracySec= late (1 min unless the unit sets it), hence the
    /// callers' timeouts.
    fn wait_line_since(&self, file: &str, since: u64, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.env.sh(&format!("cat {STATE}/{file} 2>/dev/null || true"));
            let line = text.lines().find(|l| l.split(' ').next().and_then(|t| t.parse::<u64>().ok()) >= Some(since));
            if let Some(line) = line {
                return line.split(' ').nth(1).unwrap_or("").to_string();
            }
            assert!(Instant::now() < deadline, "no line since {since} in {STATE}/{file}: {text}\n{}", self.journals());
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn now(&self) -> u64 {
        self.env.sh("date +%s").parse().unwrap()
    }
}

/// Starts Debian's redis-server in the sandbox through its own unit, on its unix socket only.
fn start_redis(env: &Env) {
    env.sh(&format!(
        "sed -i -e 's/^port 6379$/port 0/' -e 's|^# unixsocket {REDIS_SOCKET}$|unixsocket {REDIS_SOCKET}|' \
         -e 's/^# unixsocketperm 700$/unixsocketperm 777/' /etc/redis/redis.conf \
         && grep -qx 'unixsocket {REDIS_SOCKET}' /etc/redis/redis.conf && systemctl start redis-server.service"
    ));
    assert_eq!(env.sh(&format!("redis-cli -s {REDIS_SOCKET} ping")), "PONG");
}

/// `django-admin startproject proj` and `startapp demoapp` in a scratch dir, then Celery added
/// as "First steps with Django" does; returns the manifest.
fn project(env: &Env) -> PathBuf {
    let src = scratch_dir("workers").join("mill");
    env.sh(&format!(
        "python3 -m venv /root/dj && /root/dj/bin/pip install --disable-pip-version-check -q Django==5.2.19 \
         && mkdir -p {src} && /root/dj/bin/django-admin startproject proj {src} \
         && cd {src} && /root/dj/bin/python manage.py startapp demoapp",
        src = src.display()
    ));
    let append = |file: &str, text: &str| {
        let path = src.join(file);
        let mut s = std::fs::read_to_string(&path).unwrap();
        s.push_str(text);
        std::fs::write(path, s).unwrap();
    };
    append("proj/settings.py", SETTINGS);
    append("proj/urls.py", URLS);
    for (file, text) in [
        ("proj/celery.py", CELERY_PY),
        ("proj/__init__.py", INIT_PY),
        ("demoapp/tasks.py", TASKS_PY),
        ("demoapp/views.py", VIEWS_PY),
        ("requirements.txt", REQUIREMENTS),
        ("relctl.toml", MANIFEST),
    ] {
        std::fs::write(src.join(file), text).unwrap();
    }
    src.join("relctl.toml")
}

/// The last lines of web's, the processes' and the timers' journals, for failure messages.
fn journals(env: &Env) -> String {
    env.sh("journalctl --no-pager -n 80 -o short-precise -u 'mill*' 2>&1 || true")
}

fn unit_files(env: &Env, pattern: &str) -> String {
    env.sh(&format!("find /etc/systemd/system -name '{pattern}' | sort"))
}

fn loaded_units(env: &Env, pattern: &str) -> String {
    env.sh(&format!("systemctl list-units --all --no-legend --plain '{pattern}' | cut -d' ' -f1"))
}

#[test]
fn celery_workers_beat_and_timers_move_with_the_release() {
    let env = Env::boot();
    start_redis(&env);
    let manifest = project(&env);
    let started = Instant::now();

    // -- 1. the first build: web, two workers, beat and two timers, all on release 1 ------------
    let out = env.relctl_with(&manifest, &["build", BUILD]);
    assert!(out.status.success(), "build: {}\n{}", show(&out), journals(&env));
    let port = env.nginx_in_front(&manifest, SNIPPET);
    let mill = Mill { env, manifest, port };
    let r1 = mill.current();
    assert_eq!(mill.web_release(), r1);
    let host = mill.env.sh("hostname");
    mill.processes_agree(&[("worker", 2), ("beat", 1)], &r1);
    // Both workers take tasks (one at a time each: a 1 s task keeps one busy), on release 1.
    let workers = mill.tasks_run_on(4, &r1);
    assert_eq!(workers, BTreeSet::from([format!("worker1@{host}"), format!("worker2@{host}")]));
    // The units: the process templates PartOf the build's main instance, the timers' pairs.
    for unit in ["worker@.service", "beat@.service"] {
        let text = mill.env.sh(&format!("cat /etc/systemd/system/{JOBS}{unit}"));
        assert!(text.contains("PartOf=mill@production.service"), "{unit}:\n{text}");
    }
    assert_eq!(
        mill.env.sh(&format!("ls /etc/systemd/system/{JOBS}*.timer")),
        format!("/etc/systemd/system/{JOBS}clearsessions.timer\n/etc/systemd/system/{JOBS}report.timer")
    );
    for timer in ["clearsessions", "report"] {
        assert_eq!(mill.prop(&format!("{JOBS}{timer}.timer"), "ActiveState"), "active", "{timer}");
    }
    // beat sends a task every 2 s, which a worker runs on release 1.
    let t0 = mill.now();
    assert_eq!(mill.wait_line_since("beat.log", t0, Duration::from_secs(20)), r1);
    // clearsessions runs every 10 s, in release 1.
    assert_eq!(mill.wait_line_since("clearsessions.log", t0, Duration::from_secs(75)), r1);
    eprintln!("workers: first build and checks done after {:?}", started.elapsed());

    // -- 2. a deploy under tasks: none lost, the long one finishes, the next ones run release 2 --
    let long = mill.enqueue("hold=long1");
    let deadline = Instant::now() + Duration::from_secs(30);
    let holder = loop {
        let who = mill.env.sh(&format!("cat {STATE}/long1.started 2>/dev/null || true"));
        if !who.is_empty() {
            break who;
        }
        assert!(Instant::now() < deadline, "the long task never started\n{}", mill.journals());
        std::thread::sleep(Duration::from_millis(200));
    };
    let n = holder.strip_prefix("worker").and_then(|w| w.split('@').next()).unwrap().to_string();
    let holder_unit = format!("{JOBS}worker@{n}.service");
    let mut before: Vec<String> = (0..8).map(|_| mill.enqueue("sleep=1")).collect();
    let mut build = mill
        .env
        .sb
        .command(RELCTL)
        .args(["-f", mill.manifest.to_str().unwrap(), "build", BUILD])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut during = Vec::new();
    let mut held_while_stopping = false;
    let mut last = Instant::now() - Duration::from_secs(1);
    while build.try_wait().unwrap().is_none() {
        // The deploy stops the worker that runs the long task: only then may the task end.
        if !held_while_stopping && mill.prop(&holder_unit, "ActiveState") == "deactivating" {
            held_while_stopping = true;
            mill.env.sh(&format!("touch {STATE}/long1"));
        }
        if last.elapsed() >= Duration::from_millis(500) && during.len() < 60 {
            during.push(mill.enqueue("sleep=0.2"));
            last = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    mill.env.sh(&format!("touch {STATE}/long1"));
    let out = build.wait_with_output().unwrap();
    assert!(out.status.success(), "second build: {}\n{}", show(&out), mill.journals());
    assert!(held_while_stopping, "the deploy never stopped {holder_unit}, which ran the long task");
    assert!(during.len() >= 5, "only {} tasks queued during the deploy", during.len());
    let r2 = mill.current();
    assert_ne!(r2, r1);
    assert_eq!(mill.web_release(), r2);
    let after: Vec<String> = (0..4).map(|_| mill.enqueue("sleep=0.5")).collect();
    let mut all = vec![long.clone()];
    all.append(&mut before);
    all.extend(during.iter().cloned());
    let done = mill.wait_done(&all, Duration::from_secs(90));
    let failed: Vec<&Done> = done.values().filter(|d| d.state != "SUCCESS").collect();
    assert!(failed.is_empty(), "tasks queued before and during the deploy failed: {failed:?}");
    for d in done.values() {
        assert!([r1.as_str(), r2.as_str()].contains(&d.release()), "{d:?}");
    }
    // The long task ran to its end on release 1, in the worker the deploy was stopping.
    assert_eq!(done[&long].release(), r1, "{:?}", done[&long]);
    assert_eq!(done[&long].result["worker"], holder.as_str());
    let journal = mill.env.sh(&format!("journalctl --no-pager -o cat -u {holder_unit}"));
    let shutdown =
        journal.find("Warm shutdown").unwrap_or_else(|| panic!("{holder_unit} had no warm shutdown:\n{journal}"));
    let finished = journal
        .find(&format!("Task demoapp.tasks.hold[{long}] succeeded"))
        .unwrap_or_else(|| panic!("the long task's success is not in {holder_unit}'s journal:\n{journal}"));
    assert!(shutdown < finished, "the long task ended before its worker was told to stop:\n{journal}");
    let done = mill.wait_done(&after, Duration::from_secs(60));
    for d in done.values() {
        assert_eq!((d.state.as_str(), d.release()), ("SUCCESS", r2.as_str()), "queued after the deploy: {done:?}");
    }
    // -- 7. status --json is what systemd says, every process on release 2 ---------------------
    mill.processes_agree(&[("worker", 2), ("beat", 1)], &r2);
    eprintln!("workers: deploy under tasks done after {:?}", started.elapsed());

    // -- 3. a release whose worker crashes at start is refused; web and workers stay on 2 -------
    replace(&mill.manifest, "celery -A proj worker", "celery -A proj_missing worker");
    let out = mill.relctl(&["build", BUILD]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains("worker"), "the error names the process: {err}");
    assert!(err.contains("proj_missing"), "the error shows the worker's last log lines: {err}");
    let releases: Vec<String> = mill.env.sh(&format!("ls {ROOT}/releases")).lines().map(str::to_string).collect();
    let r3 = releases.last().unwrap().clone();
    assert!(r3 > r2, "{releases:?}");
    assert_eq!(mill.release_state(&r3), "bad");
    assert_eq!(mill.current(), r2);
    assert_eq!(mill.web_release(), r2, "web still serves release 2 through nginx");
    mill.processes_agree(&[("worker", 2), ("beat", 1)], &r2);
    mill.tasks_run_on(4, &r2);
    let logs = mill.relctl_ok(&["logs", BUILD, "--process", "worker", "-n", "300"]);
    assert!(logs.contains("The module proj_missing was not found"), "relctl logs --process worker:\n{logs}");
    replace(&mill.manifest, "celery -A proj_missing worker", "celery -A proj worker");
    eprintln!("workers: refused release done after {:?}", started.elapsed());

    // -- 4. rollback moves web and the workers together ---------------------------------------
    mill.relctl_ok(&["rollback", BUILD]);
    assert_eq!(mill.current(), r1);
    assert_eq!(mill.web_release(), r1);
    mill.processes_agree(&[("worker", 2), ("beat", 1)], &r1);
    mill.tasks_run_on(4, &r1);

    // -- 5. the timers run from the current release; a failing one shows in status -------------
    let t1 = mill.now();
    assert_eq!(mill.wait_line_since("clearsessions.log", t1, Duration::from_secs(75)), r1);
    assert_eq!(mill.wait_line_since("alerts", t1, Duration::from_secs(75)), r1, "report's on_failure ran");
    let (doc, timers) = mill.timers_at_rest();
    let names: Vec<&str> = timers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["clearsessions", "report"], "{doc}");
    for t in &timers {
        assert_eq!(t.unit, format!("{JOBS}{}.timer", t.name), "{doc}");
        assert!(t.next_run.is_some(), "{}: {doc}", t.name);
    }
    assert_eq!(timers[0].last_result.as_deref(), Some("success"), "{doc}");
    assert_eq!(timers[1].last_result.as_deref(), Some("exit-code"), "{doc}");
    let table = mill.relctl_ok(&["status", BUILD]);
    assert!(table.contains("clearsessions") && table.contains("report"), "{table}");
    eprintln!("workers: rollback and timers done after {:?}", started.elapsed());

    // -- 6. a worker removed from the manifest leaves no unit behind ---------------------------
    let text = std::fs::read_to_string(&mill.manifest).unwrap();
    let (head, rest) = text.split_once("[processes.worker]").unwrap();
    let (_, tail) = rest.split_once("[processes.beat]").unwrap();
    let without = format!("{head}[processes.beat]{tail}").replace("{ worker = 2, beat = 1 }", "{ beat = 1 }");
    std::fs::write(&mill.manifest, without).unwrap();
    mill.relctl_ok(&["build", BUILD]);
    let r4 = mill.current();
    assert!(r4 > r3, "{r4}");
    assert_eq!(unit_files(&mill.env, &format!("{JOBS}worker*")), "", "worker unit files left");
    assert_eq!(loaded_units(&mill.env, &format!("{JOBS}worker*")), "", "worker units still loaded");
    assert_eq!(mill.env.sh("pgrep -fc '[c]elery -A proj worker' || true"), "0", "a worker still runs");
    mill.processes_agree(&[("beat", 1)], &r4);
    assert_eq!(mill.web_release(), r4);

    // -- destroy removes every unit of the build -----------------------------------------------
    mill.relctl_ok(&["destroy", BUILD]);
    assert_eq!(unit_files(&mill.env, &format!("{JOBS}*")), "", "unit files left after destroy");
    assert_eq!(loaded_units(&mill.env, &format!("{JOBS}*")), "", "units still loaded after destroy");
    eprintln!("workers: all done after {:?}", started.elapsed());
}
