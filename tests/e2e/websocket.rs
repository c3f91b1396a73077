//! An ASGI app (Starlette under gunicorn's own ASGI worker) behind real nginx: a route that asks
//! for WebSockets echoes through them, one that does not refuses the upgrade; a long poll
//! outlives nginx's default 60 s read timeout only on the route whose manifest asks for longer.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::env::Env;
use crate::common::scratch::scratch_dir;
use crate::common::show;

const APP: &str = r#"import asyncio

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute


async def health(request):
    return PlainTextResponse("ok")


async def where(request):
    return JSONResponse({"path": request.url.path, "root_path": request.scope.get("root_path"),
                         "url": str(request.url_for("where"))})


async def slow(request):
    await asyncio.sleep(float(request.query_params.get("s", "65")))
    return PlainTextResponse("done")


async def echo(ws):
    await ws.accept()
    async for message in ws.iter_text():
        await ws.send_text("echo: " + message)


app = Starlette(routes=[Route("/health", health), Route("/where", where, name="where"),
                        Route("/slow", slow), WebSocketRoute("/ws", echo)])
"#;

const MANIFEST: &str = r#"app = "chat"
exclude = [".venv/"]

[service]
# gunicorn's ASGI worker takes the app's mount point as an option: the start script is sh, so
# $RELCTL_SCRIPT_NAME (the build's route) is expanded there.
exec = ".venv/bin/python -m gunicorn -k asgi --root-path \"$RELCTL_SCRIPT_NAME\" --workers 1 app:app"

[deps.venv]
path = ".venv"
key = ["requirements.txt"]
build = [
  "/usr/bin/python3 -m venv \"$RELCTL_DEP_DIR\"",
  "\"$RELCTL_DEP_DIR/bin/python\" -m pip install --disable-pip-version-check -q -r requirements.txt",
]

[health]
path = "/health"

[builds.live]
route = "/chat"
websocket = true
read_timeout_s = 90

[builds.plain]
route = "/plain"
"#;

/// A WebSocket client (the `websockets` package): connects, sends one message, prints the answer
/// or why the handshake failed.
const CLIENT: &str = r#"
import asyncio, sys
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
async def main(url):
    try:
        async with connect(url, open_timeout=10) as ws:
            await ws.send("hello through nginx")
            print(await asyncio.wait_for(ws.recv(), 10))
    except InvalidStatus as e:
        print("refused", e.response.status_code)
asyncio.run(main(sys.argv[1]))
"#;

#[test]
fn websockets_and_long_polls_pass_where_the_route_asks() {
    let env = Env::boot();
    let src = scratch_dir("websocket").join("chat");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("app.py"), APP).unwrap();
    std::fs::write(src.join("client.py"), CLIENT).unwrap();
    std::fs::write(src.join("requirements.txt"), "gunicorn==27.0.1\nstarlette==1.10.0\nwebsockets==15.0.1\n").unwrap();
    std::fs::write(src.join("relctl.toml"), MANIFEST).unwrap();
    let manifest = src.join("relctl.toml");
    for build in ["live", "plain"] {
        let out = env.relctl_with(&manifest, &["build", build]);
        assert!(out.status.success(), "build {build}: {}", show(&out));
    }
    let port = env.nginx_in_front(&manifest, "/etc/nginx/snippets/chat.conf");
    let base = format!("127.0.0.1:{port}");

    // The ASGI app knows its mount point and builds its URLs under it.
    let w: serde_json::Value =
        serde_json::from_str(&env.sh(&format!("curl -sS --fail http://{base}/chat/where"))).unwrap();
    assert_eq!(w["root_path"], "/chat", "{w}");
    // (the host without the port: proxy_params passes `Host $host`)
    assert_eq!((w["path"].as_str(), w["url"].as_str()), (Some("/chat/where"), Some("http://127.0.0.1/chat/where")));

    // The long polls run in the background while the WebSockets are tried.
    let poll = |route: &str| {
        Command::new("curl")
            .args(["-sS", "-o", "/dev/stdout", "-w", "\n%{http_code}", "--max-time", "120"])
            .arg(format!("http://{base}{route}/slow?s=65"))
            .spawn_piped()
    };
    let started = Instant::now();
    let (long, short) = (poll("/chat"), poll("/plain"));

    let python = "/opt/chat/app/live/current/.venv/bin/python";
    let client = src.join("client.py");
    let ws = |route: &str| env.sh(&format!("{python} {} ws://{base}{route}/ws", client.display()));
    assert_eq!(ws("/chat"), "echo: hello through nginx");
    // Without `websocket = true` nginx does not pass the upgrade on; the app refuses the request.
    assert!(ws("/plain").starts_with("refused "), "the plain route must not upgrade");

    let short = short.wait_with_output().unwrap();
    let short_text = String::from_utf8_lossy(&short.stdout).into_owned();
    assert!(short_text.ends_with("\n504"), "nginx's default 60 s read timeout cuts /plain: {short_text}");
    let long = long.wait_with_output().unwrap();
    let long_text = String::from_utf8_lossy(&long.stdout).into_owned();
    assert_eq!(long_text, "done\n200", "read_timeout_s = 90 lets /chat's 65 s poll finish");
    assert!(started.elapsed() > Duration::from_secs(64));
}

trait SpawnPiped {
    fn spawn_piped(&mut self) -> std::process::Child;
}

impl SpawnPiped for Command {
    fn spawn_piped(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped()).spawn().expect("curl runs")
    }
}

/// The same kind of app under uvicorn's gunicorn worker, the one FastAPI's docs deploy with, which
/// ignores the `SCRIPT_NAME` header: relctl's gunicorn configuration gives it the route.
const UVICORN_APP: &str = r#"from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse
from starlette.routing import Route, WebSocketRoute


async def health(request):
    return PlainTextResponse("ok")


async def where(request):
    return JSONResponse({"path": request.url.path, "root_path": request.scope.get("root_path"),
                         "url": str(request.url_for("where")), "ws": str(request.url_for("ws")),
                         "item": str(request.url_for("item", id=7))})


async def item(request):
    return JSONResponse({"item": request.path_params["id"]})


async def go(request):
    return RedirectResponse(request.url_for("item", id=7), status_code=303)


async def echo(ws):
    await ws.accept()
    async for message in ws.iter_text():
        await ws.send_text("echo: " + message)


app = Starlette(routes=[Route("/health", health), Route("/where", where, name="where"),
                        Route("/items/{id:int}/", item, name="item"), Route("/go", go),
                        WebSocketRoute("/ws", echo, name="ws")])
"#;

const UVICORN_MANIFEST: &str = r#"app = "rooms"
exclude = [".venv/"]

[service]
exec = ".venv/bin/python -m gunicorn -k uvicorn_worker.UvicornWorker --workers 1 app:app"

[deps.venv]
path = ".venv"
key = ["requirements.txt"]
build = [
  "/usr/bin/python3 -m venv \"$RELCTL_DEP_DIR\"",
  "\"$RELCTL_DEP_DIR/bin/python\" -m pip install --disable-pip-version-check -q -r requirements.txt",
]

[health]
path = "/health"

[builds.nested]
route = "/rooms/chat"
websocket = true

[builds.top]
route = "/"
websocket = true
"#;

#[test]
fn uvicorns_worker_serves_its_routes_and_websockets_under_a_nested_route() {
    let env = Env::boot();
    let src = scratch_dir("uvicorn-worker").join("rooms");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("app.py"), UVICORN_APP).unwrap();
    std::fs::write(src.join("client.py"), CLIENT).unwrap();
    std::fs::write(
        src.join("requirements.txt"),
        "gunicorn==27.0.1\nstarlette==1.10.0\nuvicorn-worker==0.4.0\nuvicorn==0.55.0\nwebsockets==15.0.1\n",
    )
    .unwrap();
    // The project's own gunicorn.conf.py still applies: its setting and its hook.
    std::fs::write(
        src.join("gunicorn.conf.py"),
        "timeout = 45\n\ndef post_worker_init(worker):\n    worker.log.info(\"project hook ran, timeout %s\", worker.cfg.timeout)\n",
    )
    .unwrap();
    std::fs::write(src.join("relctl.toml"), UVICORN_MANIFEST).unwrap();
    let manifest = src.join("relctl.toml");
    for build in ["nested", "top"] {
        let out = env.relctl_with(&manifest, &["build", build]);
        assert!(out.status.success(), "build {build}: {}\n{}", show(&out), env.journal_tail());
    }
    let port = env.nginx_in_front(&manifest, "/etc/nginx/snippets/rooms.conf");
    let base = format!("127.0.0.1:{port}");
    let json = |path: &str| -> serde_json::Value {
        let body = env.sh(&format!("curl -sS --fail http://{base}{path}"));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    };

    // The page, and the URLs the app makes, under the nested route.
    let w = json("/rooms/chat/where");
    assert_eq!(w["root_path"], "/rooms/chat", "{w}");
    assert_eq!(w["path"], "/rooms/chat/where", "{w}");
    assert_eq!(w["url"], "http://127.0.0.1/rooms/chat/where", "{w}");
    assert_eq!(w["ws"], "ws://127.0.0.1/rooms/chat/ws", "{w}");
    assert_eq!(w["item"], "http://127.0.0.1/rooms/chat/items/7/", "{w}");
    assert_eq!(json("/rooms/chat/items/7/")["item"], 7);
    // Redirects stay under the route: Starlette's trailing slash, and one to url_for.
    let location = |path: &str| {
        env.sh(&format!("curl -sS -o /dev/null -w '%{{http_code}} %{{redirect_url}}' http://{base}{path}"))
    };
    assert_eq!(location("/rooms/chat/items/7"), "307 http://127.0.0.1/rooms/chat/items/7/");
    assert_eq!(location("/rooms/chat/go"), "303 http://127.0.0.1/rooms/chat/items/7/");
    assert!(location("/rooms/chat/nothing").starts_with("404"));
    // The WebSocket, at the URL the app gave.
    let python = "/opt/rooms/app/nested/current/.venv/bin/python";
    let client = src.join("client.py");
    let ws = |url: &str| env.sh(&format!("{python} {} {url}", client.display()));
    assert_eq!(ws(&format!("ws://{base}/rooms/chat/ws")), "echo: hello through nginx");
    assert!(ws(&format!("ws://{base}/rooms/chat/nope")).starts_with("refused 403"), "an unknown socket is refused");

    // At "/", the same app with no prefix.
    let w = json("/where");
    assert_eq!((w["root_path"].as_str(), w["path"].as_str()), (Some(""), Some("/where")), "{w}");
    assert_eq!(ws(&format!("ws://{base}/ws")), "echo: hello through nginx");

    // The project's gunicorn.conf.py was loaded, through relctl's.
    let journal = env.sh("journalctl -u 'rooms*' --no-pager -o cat | grep 'project hook ran' | head -1");
    assert!(journal.contains("project hook ran, timeout 45"), "{journal}");
    let conf = env.sh("cat /opt/rooms/app/nested/current/.relctl/environment");
    assert!(conf.contains("GUNICORN_CMD_ARGS=\"--config /opt/rooms/app/nested/releases/"), "{conf}");
}
